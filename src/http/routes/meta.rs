//! `/`, `/health` and `/ready`: what is running and whether it can serve.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Mode;
use crate::domain::EventId;
use crate::http::ApiError;
use crate::ticket::VacancyClient;
use crate::vacancy::Inventory;
use crate::wire::{self, AboutResponse, ErrorResponse, HealthResponse, ReadyResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(root)))
        .service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/api/v1/health").route(web::get().to(health_api)))
        .service(web::resource("/ready").route(web::get().to(ready)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "What is running", body = AboutResponse)))]
async fn root(
    mode: web::Data<Mode>,
    inventory: Option<web::Data<Inventory>>,
) -> web::Json<AboutResponse> {
    web::Json(AboutResponse {
        service: wire::SERVICE_NAME.into(),
        mode: mode.as_str().into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store_id: inventory
            .as_ref()
            .and_then(|inventory| inventory.store_id())
            .map(str::to_owned),
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process answers", body = HealthResponse)))]
async fn health(mode: web::Data<Mode>) -> web::Json<HealthResponse> {
    web::Json(HealthResponse {
        status: "healthy".into(),
        mode: mode.as_str().into(),
    })
}

/// Liveness under the seed's path, which both of its services served: probes and scripts written
/// for the seed keep working unchanged.
#[utoipa::path(get, path = "/api/v1/health", tag = "service",
    responses((status = 200, description = "The process answers (the same as `/health`)", body = HealthResponse)))]
async fn health_api(mode: web::Data<Mode>) -> web::Json<HealthResponse> {
    health(mode).await
}

/// Readiness: stock can be read right now, locally or from vacancy.
#[utoipa::path(get, path = "/ready", tag = "service", responses(
    (status = 200, description = "Stock can be read (ticket: vacancy answers)", body = ReadyResponse),
    (status = 503, description = "Not ready; `error` says why", body = ReadyResponse)))]
async fn ready(mode: web::Data<Mode>, vacancy: web::Data<dyn VacancyClient>) -> HttpResponse {
    match vacancy.event(&EventId::default_event()).await {
        Ok(_) => HttpResponse::Ok().json(ReadyResponse {
            status: "ready".into(),
            mode: mode.as_str().into(),
            error: None,
        }),
        Err(error) => crate::http::respond(StatusCode::SERVICE_UNAVAILABLE).json(ReadyResponse {
            status: "unavailable".into(),
            mode: mode.as_str().into(),
            error: Some(ApiError::from(error).detail()),
        }),
    }
}

/// Prometheus text format: requests, reservations, stock per event, ledger and remote calls.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
    (status = 200, description = "Metrics in Prometheus text format", body = String, content_type = "text/plain"),
    (status = 404, description = "Metrics are disabled (`metrics_enabled = false`)", body = ErrorResponse)))]
async fn metrics(registry: web::Data<Option<PrometheusHandle>>) -> HttpResponse {
    match registry.as_ref() {
        Some(registry) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(registry.render()),
        None => ApiError::Status(StatusCode::NOT_FOUND).error_response(),
    }
}

pub async fn not_found() -> HttpResponse {
    ApiError::Status(StatusCode::NOT_FOUND).error_response()
}
