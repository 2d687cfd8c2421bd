//! Thin actix adapters: parse the request, call the service, map the error. One function builds
//! the app for every mode from the same route modules; which modules are mounted is the only
//! difference between a monolith, a vacancy service and a ticket service.

pub mod auth;
mod error;
mod middleware;
pub mod openapi;
mod routes;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, Error, web};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::{ApiError, respond};

use crate::config::Mode;
use crate::domain::OrderLimits;
use crate::ticket::{Tickets, VacancyClient};
use crate::vacancy::Inventory;

/// What an app serves. Cloned once per worker thread; everything inside is shared.
#[derive(Clone)]
pub struct Parts {
    pub mode: Mode,
    /// How stock is read: the inventory itself, or vacancy over HTTP.
    pub vacancy: Arc<dyn VacancyClient>,
    /// Purchases: in the monolith and the ticket service.
    pub tickets: Option<Arc<Tickets>>,
    /// Reservations: in the monolith and the vacancy service.
    pub inventory: Option<Arc<Inventory>>,
    pub tokens: auth::Tokens,
    /// The metrics registry `/metrics` renders; `None` when metrics are disabled.
    pub metrics: Option<PrometheusHandle>,
    pub body_limit_bytes: usize,
    /// What one request may ask for: enforced by the routes, stated by the API description.
    pub limits: OrderLimits,
}

/// How the HTTP server listens and runs, whatever the mode serves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long requests in flight may finish once the server is told to stop.
    pub shutdown_timeout_seconds: u64,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
}

pub fn app(
    parts: Parts,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let limit = parts.body_limit_bytes;
    let document = openapi::document(&openapi::Served {
        purchases: parts.tickets.is_some(),
        reservations: parts.inventory.is_some(),
        max_per_order: parts.limits.max_per_order,
        hold_ttl_seconds_max: parts.limits.hold_ttl_seconds_max,
    });
    let json = web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |error, _| ApiError::from_json(error, limit).into());

    // Registration order is match order: the hot, static purchase routes go first, and the
    // patterns that need a regex to match (`{event}`, `{id}`, `/docs/{_:.*}`) go last, so a purchase
    // never pays for trying them.
    let mut app = App::new()
        .app_data(json)
        .app_data(web::PayloadConfig::new(limit))
        .app_data(web::Data::new(parts.mode))
        .app_data(web::Data::new(parts.limits))
        .app_data(web::Data::from(parts.vacancy))
        .app_data(web::Data::new(parts.tokens))
        .app_data(web::Data::new(parts.metrics));
    if let Some(tickets) = parts.tickets {
        app = app
            .app_data(web::Data::from(tickets))
            .configure(routes::purchase::configure);
    }
    if let Some(inventory) = parts.inventory {
        app = app
            .app_data(web::Data::from(inventory))
            .configure(|cfg| routes::reserve::configure(cfg, limit));
    }
    let app = app
        .configure(routes::events::configure)
        .configure(routes::meta::configure)
        .configure(routes::orders::configure)
        .configure(routes::waitlist::configure)
        .configure(routes::webhooks::configure)
        .configure(routes::changes::configure)
        .configure(|cfg| openapi::configure(cfg, document));
    app.default_service(web::to(routes::meta::not_found))
        .wrap(actix_web::middleware::from_fn(auth::require_service_token))
        .wrap(actix_web::middleware::from_fn(middleware::request_context))
}
