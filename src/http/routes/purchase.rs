//! Buying and holding tickets (monolith and ticket service). Both take an `Idempotency-Key`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{body, event_id, idempotency_key, optional_whole_number, whole_number};
use crate::domain::{EventId, OrderLimits};
use crate::http::ApiError;
use crate::ticket::Tickets;
use crate::wire::{
    self, ErrorResponse, HoldRequest, HoldResponse, JsonObject, PurchaseRequest, PurchaseResponse,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/purchase").route(web::post().to(purchase_default)))
        .service(web::resource("/api/v1/events/{event}/purchase").route(web::post().to(purchase)))
        .service(web::resource("/api/v1/events/{event}/holds").route(web::post().to(hold)));
}

#[utoipa::path(post, path = "/api/v1/purchase", tag = "purchases", request_body = PurchaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    responses(
    (status = 200, description = "Bought, or `success: false` when stock is short", body = PurchaseResponse),
    (status = 400, description = "`invalid_body`, `invalid_content_type` or `invalid_idempotency_key`", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "Invalid qty, or the key was used with another request", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn purchase_default(
    request: HttpRequest,
    tickets: web::Data<Tickets>,
    limits: web::Data<OrderLimits>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<PurchaseResponse>, ApiError> {
    buy(&request, &tickets, &limits, EventId::default_event(), raw).await
}

#[utoipa::path(post, path = "/api/v1/events/{event}/purchase", tag = "purchases", request_body = PurchaseRequest,
    params(("event" = String, Path, description = "Event id", example = "default"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    responses(
    (status = 200, description = "Bought, or `success: false` when stock is short", body = PurchaseResponse),
    (status = 400, description = "`invalid_body`, `invalid_content_type` or `invalid_idempotency_key`", body = ErrorResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "Invalid qty, or the key was used with another request", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn purchase(
    request: HttpRequest,
    tickets: web::Data<Tickets>,
    limits: web::Data<OrderLimits>,
    path: web::Path<String>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<PurchaseResponse>, ApiError> {
    buy(&request, &tickets, &limits, event_id(&path)?, raw).await
}

async fn buy(
    request: &HttpRequest,
    tickets: &Tickets,
    limits: &OrderLimits,
    event: EventId,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<PurchaseResponse>, ApiError> {
    let key = idempotency_key(request)?;
    let body: PurchaseRequest = body(raw)?;
    let qty = limits.quantity(whole_number("qty", body.qty.as_ref())?)?;
    let reserved = tickets.purchase(event, qty, key).await?;
    let message = match reserved.order {
        Some(_) => "Purchase successful!",
        None => "Insufficient inventory",
    };
    Ok(web::Json(PurchaseResponse {
        success: reserved.accepted(),
        remaining: reserved.remaining,
        order_id: reserved.order.map(|order| order.id),
        message: message.into(),
    }))
}

/// `{"qty", "ttl_seconds"?}` → 201 with the hold, or 200 `success: false` when stock is short.
#[utoipa::path(post, path = "/api/v1/events/{event}/holds", tag = "holds", request_body = HoldRequest,
    params(("event" = String, Path, description = "Event id", example = "default"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first hold")),
    responses(
    (status = 201, description = "Held until `expires_at`", body = HoldResponse),
    (status = 200, description = "`success: false`: not enough tickets", body = HoldResponse),
    (status = 400, description = "`invalid_body`, `invalid_content_type` or `invalid_idempotency_key`", body = ErrorResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "Invalid qty or ttl_seconds, or the key was used with another request", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn hold(
    request: HttpRequest,
    tickets: web::Data<Tickets>,
    limits: web::Data<OrderLimits>,
    path: web::Path<String>,
    raw: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    let event = event_id(&path)?;
    let key = idempotency_key(&request)?;
    let body: HoldRequest = body(raw)?;
    let qty = whole_number("qty", body.qty.as_ref())?;
    let ttl = optional_whole_number("ttl_seconds", body.ttl_seconds.as_ref())?;
    // The length first, then the quantity: the order these have always been checked in.
    let ttl = limits.hold_ttl(ttl)?;
    let qty = limits.quantity(qty)?;
    let reserved = tickets.hold(event, qty, ttl, key).await?;
    let Some(order) = reserved.order else {
        return Ok(HttpResponse::Ok().json(HoldResponse {
            success: false,
            remaining: reserved.remaining,
            hold_id: None,
            event: None,
            qty: None,
            expires_at: None,
            message: "Insufficient inventory".into(),
        }));
    };
    Ok(HttpResponse::Created().json(HoldResponse {
        success: true,
        remaining: reserved.remaining,
        hold_id: Some(order.id),
        event: Some(order.event.as_str().to_owned()),
        qty: Some(order.qty),
        expires_at: order.expires_at_ms.map(wire::timestamp),
        message: "Hold placed; confirm it before it expires".into(),
    }))
}
