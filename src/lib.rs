//! ticketd sells a limited stock of tickets without overselling, as one process (`monolith`) or as
//! an inventory service (`vacancy`) and a purchase service (`ticket`) talking over HTTP.
//!
//! Dependencies point one way: `http` → `ticket` / `vacancy` → `domain`.

pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod startup;
pub mod telemetry;
pub mod ticket;
pub mod vacancy;
pub mod webhooks;
pub mod wire;
