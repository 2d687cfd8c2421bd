//! Events and their stock: read by anyone, created and replenished by the admin. The same in every
//! mode, through whichever `VacancyClient` the app has.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{body, event_id, whole_number};
use crate::domain::{Error, EventId};
use crate::http::ApiError;
use crate::http::auth::Admin;
use crate::ticket::VacancyClient;
use crate::wire::{
    AvailableResponse, CreateEventRequest, ErrorResponse, EventResponse, EventsParams,
    EventsResponse, JsonObject, StockRequest,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/available").route(web::get().to(available)))
        .service(
            web::resource("/api/v1/events")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(web::resource("/api/v1/events/{event}").route(web::get().to(read)))
        .service(web::resource("/api/v1/events/{event}/stock").route(web::post().to(replenish)));
}

/// Seed-compatible: tickets available for the `default` event.
#[utoipa::path(get, path = "/api/v1/available", tag = "events", responses(
    (status = 200, description = "Tickets available for the `default` event", body = AvailableResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn available(
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<AvailableResponse>, ApiError> {
    let event = vacancy.event(&EventId::default_event()).await?;
    Ok(web::Json(AvailableResponse {
        qty: event.stock.available,
    }))
}

/// One page of events, by id. Walk the list by passing each answer's `next_cursor` as `cursor`
/// until it is `null`; events created meanwhile never make a walk list one twice or skip one.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(
    ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
        description = "Most events in the page: 1 to 1000, default 100"),
    ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]+$", max_length = 64,
        description = "`next_cursor` of the previous page: the page holds the events whose ids \
        come after it; absent for the first page")),
    responses(
    (status = 200, description = "A page of events in id order, and the cursor of the next page \
        (`null` on the last)", body = EventsResponse),
    (status = 400, description = "`limit` or `cursor` is not valid, or the query has another \
        parameter (`invalid_query`)", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn list(
    request: HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<EventsResponse>, ApiError> {
    let params = web::Query::<EventsParams>::from_query(request.query_string())
        .map_err(|e| Error::InvalidQuery(format!("the query is not as expected: {e}")))?;
    let page = vacancy.events(params.into_inner().into_query()?).await?;
    Ok(web::Json(EventsResponse::from(&page)))
}

#[utoipa::path(get, path = "/api/v1/events/{event}", tag = "events",
    params(("event" = String, Path, description = "Event id", example = "default")), responses(
    (status = 200, description = "The event and its counts", body = EventResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn read(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<EventResponse>, ApiError> {
    let event = vacancy.event(&event_id(&path)?).await?;
    Ok(web::Json(EventResponse::from(&event)))
}

/// Admin: `{"name", "capacity", "id"?}` → 201 with the event.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = CreateEventRequest,
    security(("admin" = [])), responses(
    (status = 201, description = "Created", body = EventResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 409, description = "An event with this id exists", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "Invalid name, id or capacity", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn create(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    raw: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateEventRequest = body(raw)?;
    let id = match body.id.as_deref() {
        Some(id) => EventId::parse(id)?,
        None => EventId::parse(&uuid::Uuid::now_v7().to_string())?,
    };
    let name = body
        .name
        .ok_or_else(|| Error::InvalidEvent("name is required".into()))?;
    let capacity = whole_number("capacity", body.capacity.as_ref())?;
    let capacity = u64::try_from(capacity)
        .map_err(|_| Error::InvalidEvent("capacity must be 0 or more".into()))?;
    let event = vacancy.create_event(id, name, capacity).await?;
    Ok(HttpResponse::Created().json(EventResponse::from(&event)))
}

/// Admin: `{"qty"}` more tickets for the event (the seed's `add_stock`).
#[utoipa::path(post, path = "/api/v1/events/{event}/stock", tag = "events", request_body = StockRequest,
    params(("event" = String, Path, description = "Event id", example = "default")),
    security(("admin" = [])), responses(
    (status = 200, description = "The event with its new capacity", body = EventResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 409, description = "`capacity_exceeded`: the event would grow past the store's limit", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "qty is not a whole number in range", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn replenish(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<EventResponse>, ApiError> {
    let event = event_id(&path)?;
    let body: StockRequest = body(raw)?;
    let qty = whole_number("qty", body.qty.as_ref())?;
    let qty = u64::try_from(qty)
        .ok()
        .filter(|qty| *qty > 0)
        .ok_or_else(|| Error::InvalidQuantity(format!("qty must be at least 1, got {qty}")))?;
    let event = vacancy.replenish(event, qty).await?;
    Ok(web::Json(EventResponse::from(&event)))
}
