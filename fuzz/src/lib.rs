//! Fuzz targets arrive with issue 5; this crate is a placeholder so the layout is fixed.
