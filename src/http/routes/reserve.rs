//! Reserving stock: the inventory's own operation (monolith and vacancy). The ticket service calls
//! it with its own reservation id, which makes the call safe to repeat.

use actix_web::{HttpRequest, web};

use super::{body, event_id, idempotency_key, optional_whole_number};
use crate::domain::{
    Error, EventId, HoldTtl, IdempotencyKey, OrderLimits, Reservation, ReservationId, Reserved,
};
use crate::http::ApiError;
use crate::vacancy::Inventory;
use crate::wire::{
    self, BatchAnswer, ErrorResponse, JsonObject, OrderResponse, RESERVE_BATCH_MAX,
    ReserveBatchRequest, ReserveBatchResponse, ReserveRequest, ReserveResponse,
};

/// `body_limit_bytes` bounds one reservation's body; a batch may carry `RESERVE_BATCH_MAX` of them.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit_bytes: usize) {
    let batch_limit = body_limit_bytes.saturating_mul(RESERVE_BATCH_MAX);
    let batch_json = web::JsonConfig::default()
        .limit(batch_limit)
        .error_handler(move |error, _| ApiError::from_json(error, batch_limit).into());
    cfg.service(web::resource("/api/v1/reserve").route(web::post().to(reserve_default)))
        .service(
            web::resource("/api/v1/reservations")
                .app_data(batch_json)
                .route(web::post().to(reserve_batch)),
        )
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
    let (mut reservation, total) = reservation_from(limits, event, &body, None)?;
    reservation.key = idempotency_key(request)?;
    let reserved = inventory.reserve(reservation).await?;
    Ok(web::Json(answer(&reserved, total)))
}

/// Decides every reservation of the batch together: they are queued as one, so the writer takes
/// them into one batch and one commit. Each gets the answer its own `reserve` call would have
/// got, success or error, in the order sent: one that is not valid gets its error, changes
/// nothing and stops nothing else. Each reservation is the body of a `reserve` call, so the
/// document gives it as an object: its rules are `reserve`'s, answered reservation by
/// reservation, never by refusing the batch.
#[utoipa::path(post, path = "/api/v1/reservations", tag = "inventory", request_body = ReserveBatchRequest,
    security((), ("service" = [])),
    responses(
    (status = 200, description = "An answer for each reservation, in order: `reserved` (as `reserve` answers it, `success: false` when stock is short) or `error` (as `reserve` would have refused it)", body = ReserveBatchResponse),
    (status = 400, description = "`invalid_body` (not 1 to 64 reservations, or not of this shape) or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Vacancy with a service token: `x-service-token` missing or wrong", body = ErrorResponse),
    (status = 413, description = "Body over 64 times `body_limit_bytes`", body = ErrorResponse),
    (status = 503, description = "The inventory is busy or closing", body = ErrorResponse)))]
async fn reserve_batch(
    inventory: web::Data<Inventory>,
    limits: web::Data<OrderLimits>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<ReserveBatchResponse>, ApiError> {
    let batch: BatchIn = body(raw)?;
    let count = batch.reservations.len();
    if !(1..=RESERVE_BATCH_MAX).contains(&count) {
        return Err(ApiError::InvalidBody(format!(
            "reservations must hold 1 to {RESERVE_BATCH_MAX} reservations, got {count}"
        )));
    }
    let mut answers: Vec<Option<BatchAnswer>> = Vec::with_capacity(count);
    let mut asked = Vec::with_capacity(count);
    let mut totals = Vec::with_capacity(count);
    for item in &batch.reservations {
        let parsed = crate::wire::from_object::<ReserveRequest>(item.reserve.clone())
            .map_err(ApiError::InvalidBody)
            .and_then(|reserve| {
                let event = event_id(&item.event)?;
                let key = item
                    .idempotency_key
                    .as_deref()
                    .map(IdempotencyKey::parse)
                    .transpose()?;
                Ok(reservation_from(&limits, event, &reserve, key)?)
            });
        match parsed {
            Ok((reservation, total)) => {
                asked.push(reservation);
                totals.push(total);
                answers.push(None);
            }
            Err(error) => answers.push(Some(BatchAnswer::Error(error.detail()))),
        }
    }
    let mut decided = inventory
        .reserve_many(asked)
        .await
        .into_iter()
        .zip(totals)
        .map(|(reserved, total)| match reserved {
            Ok(reserved) => BatchAnswer::Reserved(answer(&reserved, total)),
            Err(error) => BatchAnswer::Error(ApiError::from(error).detail()),
        });
    let answers = answers
        .into_iter()
        .map(|refused| {
            refused.or_else(|| decided.next()).unwrap_or_else(|| {
                BatchAnswer::Error(
                    ApiError::from(Error::Internal(
                        "a reservation of the batch got no answer".into(),
                    ))
                    .detail(),
                )
            })
        })
        .collect();
    Ok(web::Json(ReserveBatchResponse { answers }))
}

/// A batch as read: each reservation's body a JSON object, read as `reserve` reads its own, so
/// that a reservation that is not valid is answered alone. Written as [`ReserveBatchRequest`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    reservations: Vec<BatchItemIn>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItemIn {
    event: String,
    #[serde(default)]
    idempotency_key: Option<String>,
    reserve: JsonObject,
}

/// The reservation a `reserve` body asks for, and how many tickets it takes.
fn reservation_from(
    limits: &OrderLimits,
    event: EventId,
    body: &ReserveRequest,
    key: Option<IdempotencyKey>,
) -> Result<(Reservation, u32), Error> {
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
        key,
    };
    Ok((reservation, total))
}

fn answer(reserved: &Reserved, total: u32) -> ReserveResponse {
    let message = if reserved.accepted() {
        format!("Reserved {total} tickets")
    } else {
        super::purchase::REFUSED.to_owned()
    };
    ReserveResponse {
        success: reserved.accepted(),
        remaining: reserved.remaining,
        reservation_id: reserved.order.as_ref().map(|order| order.id),
        order: reserved.order.as_ref().map(OrderResponse::from),
        short: reserved.short.as_ref().map(wire::short_response),
        message,
    }
}
