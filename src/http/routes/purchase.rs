//! Buying and holding tickets (monolith and ticket service). Both take an `Idempotency-Key`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{body, event_id, idempotency_key, optional_whole_number};
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
    (status = 409, description = "A line's category is closed or outside its sales window (`not_on_sale`), or the customer would pass the event's `max_per_customer` (`customer_limit_reached`)", body = ErrorResponse),
    (status = 422, description = "Invalid qty or lines, a category the event does not sell (`unknown_category`), a bad customer or none where the event requires one, or the key was used with another request", body = ErrorResponse),
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
    (status = 409, description = "A line's category is closed or outside its sales window (`not_on_sale`), or the customer would pass the event's `max_per_customer` (`customer_limit_reached`)", body = ErrorResponse),
    (status = 422, description = "Invalid qty or lines, a category the event does not sell (`unknown_category`), a bad customer or none where the event requires one, or the key was used with another request", body = ErrorResponse),
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
    let lines = wire::lines_from(
        limits,
        body.qty.as_ref(),
        body.category.as_ref(),
        body.lines.as_ref(),
    )?;
    let customer = wire::customer_from(body.customer.as_ref())?;
    let reserved = tickets.purchase(event, lines, customer, key).await?;
    let message = match reserved.order {
        Some(_) => "Purchase successful!".to_owned(),
        None => REFUSED.to_owned(),
    };
    Ok(web::Json(PurchaseResponse {
        success: reserved.accepted(),
        remaining: reserved.remaining,
        order_id: reserved.order.as_ref().map(|order| order.id),
        lines: reserved
            .order
            .as_ref()
            .map(|order| wire::line_responses(&order.lines)),
        total_price: reserved
            .order
            .as_ref()
            .and_then(|order| wire::total_price_body(&order.lines)),
        short: reserved.short.as_ref().map(wire::short_response),
        message,
    }))
}

/// The message of a purchase or hold refused for want of places: as it has always been (scripts
/// match on it); `short` says which category and quota.
pub(super) const REFUSED: &str = "Insufficient inventory";

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
    (status = 409, description = "A line's category is closed or outside its sales window (`not_on_sale`), or the customer would pass the event's `max_per_customer` (`customer_limit_reached`)", body = ErrorResponse),
    (status = 422, description = "Invalid qty, lines or ttl_seconds, a category the event does not sell (`unknown_category`), a bad customer or none where the event requires one, or the key was used with another request", body = ErrorResponse),
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
    let ttl = optional_whole_number("ttl_seconds", body.ttl_seconds.as_ref())?;
    // The length first, then the tickets: the order these have always been checked in.
    let ttl = limits.hold_ttl(ttl)?;
    let lines = wire::lines_from(
        &limits,
        body.qty.as_ref(),
        body.category.as_ref(),
        body.lines.as_ref(),
    )?;
    let customer = wire::customer_from(body.customer.as_ref())?;
    let reserved = tickets.hold(event, lines, customer, ttl, key).await?;
    let Some(order) = &reserved.order else {
        return Ok(HttpResponse::Ok().json(HoldResponse {
            success: false,
            remaining: reserved.remaining,
            hold_id: None,
            event: None,
            qty: None,
            expires_at: None,
            lines: None,
            total_price: None,
            short: reserved.short.as_ref().map(wire::short_response),
            message: REFUSED.into(),
        }));
    };
    Ok(HttpResponse::Created().json(HoldResponse {
        success: true,
        remaining: reserved.remaining,
        hold_id: Some(order.id),
        event: Some(order.event.as_str().to_owned()),
        qty: Some(order.qty),
        expires_at: order.expires_at_ms.map(wire::timestamp),
        lines: Some(wire::line_responses(&order.lines)),
        total_price: wire::total_price_body(&order.lines),
        short: None,
        message: "Hold placed; confirm it before it expires".into(),
    }))
}
