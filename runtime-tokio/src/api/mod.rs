//! The HTTP API: routes (`http`, `explorer`, `txbatch`, `health`, `dashboard`, `validators`), the
//! server that accepts connections (`httpserve`) and the limits it applies (`limits`).

pub(crate) mod dashboard;
pub(crate) mod explorer;
pub(crate) mod health;
pub(crate) mod http;
pub mod httpserve;
pub(crate) mod limits;
pub(crate) mod snapshots;
pub(crate) mod txbatch;
pub(crate) mod validators;
