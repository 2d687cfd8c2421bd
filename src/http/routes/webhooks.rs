//! Webhooks (admin): make, list, read and delete them, and read a webhook's recent delivery
//! attempts. The same in every mode, through whichever `VacancyClient` the app has: the ticket
//! service forwards to vacancy, which keeps and delivers them.

use actix_web::{HttpResponse, web};

use super::body;
use crate::domain::{Error, WebhookId};
use crate::http::ApiError;
use crate::http::auth::Admin;
use crate::ticket::VacancyClient;
use crate::wire::{
    CreateWebhookRequest, CreatedWebhookResponse, DeliveriesResponse, DeliveryResponse,
    ErrorResponse, JsonObject, WebhookResponse, WebhooksResponse,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/webhooks")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/api/v1/webhooks/{id}")
            .route(web::get().to(read))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/api/v1/webhooks/{id}/deliveries").route(web::get().to(deliveries)));
}

fn webhook_id(raw: &str) -> Result<WebhookId, Error> {
    raw.parse()
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    security(("admin" = [])), responses(
    (status = 201, description = "Made; `secret` is shown only in this answer", body = CreatedWebhookResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 409, description = "50 webhooks are kept already (`webhooks_limit_reached`)", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "A url that is not http(s), has no host, carries credentials or a fragment, or is too long; a type that is not a change type (`invalid_webhook`)", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn create(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    raw: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    let request: CreateWebhookRequest = body(raw)?;
    let (url, types) = request.parse()?;
    let (view, secret) = vacancy.create_webhook(url, types).await?;
    Ok(HttpResponse::Created().json(CreatedWebhookResponse::new(&view, &secret)))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("admin" = [])),
    responses(
    (status = 200, description = "Every webhook, oldest first, without secrets", body = WebhooksResponse),
    (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
    (status = 403, description = "No admin token is configured", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn list(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<WebhooksResponse>, ApiError> {
    let webhooks = vacancy.webhooks().await?;
    Ok(web::Json(WebhooksResponse {
        webhooks: webhooks.iter().map(WebhookResponse::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin" = [])),
    params(("id" = uuid::Uuid, Path, description = "Webhook id")), responses(
    (status = 200, description = "The webhook, without its secret", body = WebhookResponse),
    (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
    (status = 403, description = "No admin token is configured", body = ErrorResponse),
    (status = 404, description = "No such webhook (`unknown_webhook`)", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn read(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<WebhookResponse>, ApiError> {
    let view = vacancy.webhook(webhook_id(&path)?).await?;
    Ok(web::Json(WebhookResponse::from(&view)))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin" = [])),
    params(("id" = uuid::Uuid, Path, description = "Webhook id")), responses(
    (status = 204, description = "Deleted: no more deliveries are started for it, and its attempts are forgotten"),
    (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
    (status = 403, description = "No admin token is configured", body = ErrorResponse),
    (status = 404, description = "No such webhook (`unknown_webhook`)", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn delete(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    vacancy.delete_webhook(webhook_id(&path)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("admin" = [])),
    params(("id" = uuid::Uuid, Path, description = "Webhook id")), responses(
    (status = 200, description = "The webhook's last 100 delivery attempts, newest first", body = DeliveriesResponse),
    (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
    (status = 403, description = "No admin token is configured", body = ErrorResponse),
    (status = 404, description = "No such webhook (`unknown_webhook`)", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn deliveries(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<DeliveriesResponse>, ApiError> {
    let attempts = vacancy.webhook_deliveries(webhook_id(&path)?).await?;
    Ok(web::Json(DeliveriesResponse {
        deliveries: attempts.iter().map(DeliveryResponse::from).collect(),
    }))
}
