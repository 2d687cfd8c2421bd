//! Reserving stock: the inventory's own operation (monolith and vacancy). The ticket service calls
//! it with its own reservation id, which makes the call safe to repeat.

use actix_web::{HttpRequest, web};

use super::{body, event_id, idempotency_key, optional_whole_number};
use crate::domain::{EventId, HoldTtl, OrderLimits, Reservation, ReservationId};
use crate::http::ApiError;
use crate::vacancy::Inventory;
use crate::wire::{
    self, ErrorResponse, JsonObject, OrderResponse, ReserveRequest, ReserveResponse,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/reserve").route(web::post().to(reserve_default)))
        .service(web::resource("/api/v1/events/{event}/reserve").route(web::post().to(reserve)));
}

#[utoipa::path(post, path = "/api/v1/reserve", tag = "inventory", request_body = ReserveRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    security((), ("service" = [])),
    responses(
    (status = 200, description = "Reserved or held, or `success: false` when stock is short; a repeated `reservation_id` gets the first answer", body = ReserveResponse),
    (status = 400, description = "`invalid_body`, `invalid_content_type` or `invalid_idempotency_key`", body = ErrorResponse),
    (status = 401, description = "Vacancy with a service token: `x-service-token` missing or wrong", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 409, description = "A line's category is closed or outside its sales window (`not_on_sale`), or the customer would pass the event's `max_per_customer` (`customer_limit_reached`)", body = ErrorResponse),
    (status = 422, description = "Invalid qty, lines, ttl_seconds, customer or reservation_id; a category the event does not sell; or the id or key was used for another request", body = ErrorResponse),
    (status = 503, description = "The inventory is busy or its store failed", body = ErrorResponse)))]
async fn reserve_default(
    request: HttpRequest,
    inventory: web::Data<Inventory>,
    limits: web::Data<OrderLimits>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<ReserveResponse>, ApiError> {
    reserve_in(&request, &inventory, &limits, EventId::default_event(), raw).await
}

#[utoipa::path(post, path = "/api/v1/events/{event}/reserve", tag = "inventory", request_body = ReserveRequest,
    params(("event" = String, Path, description = "Event id", example = "default"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    security((), ("service" = [])),
    responses(
    (status = 200, description = "Reserved or held, or `success: false` when stock is short; a repeated `reservation_id` gets the first answer", body = ReserveResponse),
    (status = 400, description = "`invalid_body`, `invalid_content_type` or `invalid_idempotency_key`", body = ErrorResponse),
    (status = 401, description = "Vacancy with a service token: `x-service-token` missing or wrong", body = ErrorResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 409, description = "A line's category is closed or outside its sales window (`not_on_sale`), or the customer would pass the event's `max_per_customer` (`customer_limit_reached`)", body = ErrorResponse),
    (status = 422, description = "Invalid qty, lines, ttl_seconds, customer or reservation_id; a category the event does not sell; or the id or key was used for another request", body = ErrorResponse),
    (status = 503, description = "The inventory is busy or its store failed", body = ErrorResponse)))]
async fn reserve(
    request: HttpRequest,
    inventory: web::Data<Inventory>,
    limits: web::Data<OrderLimits>,
    path: web::Path<String>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<ReserveResponse>, ApiError> {
    reserve_in(&request, &inventory, &limits, event_id(&path)?, raw).await
}

async fn reserve_in(
    request: &HttpRequest,
    inventory: &Inventory,
    limits: &OrderLimits,
    event: EventId,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<ReserveResponse>, ApiError> {
    let body: ReserveRequest = body(raw)?;
    let lines = wire::lines_from(
        limits,
        body.qty.as_ref(),
        body.category.as_ref(),
        body.lines.as_ref(),
    )?;
    let customer = wire::customer_from(body.customer.as_ref())?;
    // Without a length it is a sale, not a hold: no default applies here.
    let hold_ttl_seconds = optional_whole_number("ttl_seconds", body.ttl_seconds.as_ref())?
        .map(|ttl| HoldTtl::parse(ttl, limits.hold_ttl_seconds_max))
        .transpose()?;
    let id = match &body.reservation_id {
        Some(id) => id.parse::<ReservationId>()?,
        None => ReservationId::generate(),
    };
    let total = lines.total();
    let reservation = Reservation {
        id,
        event,
        lines,
        customer,
        hold_ttl_seconds,
        key: idempotency_key(request)?,
    };
    let reserved = inventory.reserve(reservation).await?;
    let message = if reserved.accepted() {
        format!("Reserved {total} tickets")
    } else {
        super::purchase::REFUSED.to_owned()
    };
    Ok(web::Json(ReserveResponse {
        success: reserved.accepted(),
        remaining: reserved.remaining,
        reservation_id: reserved.order.as_ref().map(|order| order.id),
        order: reserved.order.as_ref().map(OrderResponse::from),
        short: reserved.short.as_ref().map(wire::short_response),
        message,
    }))
}
