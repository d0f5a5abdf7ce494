//! The HTTP API: routes (`http`, `txbatch`, `health`, `dashboard`) and the server that accepts
//! and limits connections (`httpserve`).

pub(crate) mod dashboard;
pub(crate) mod health;
pub(crate) mod http;
pub mod httpserve;
pub(crate) mod txbatch;
