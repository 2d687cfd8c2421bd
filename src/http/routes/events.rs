//! Events and their stock: read by anyone, created and replenished by the admin. The same in every
//! mode, through whichever `VacancyClient` the app has.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{body, event_id, whole_number};
use crate::domain::{CategoryId, Error, Event, EventId, QuotaId, Resize};
use crate::http::ApiError;
use crate::http::auth::Admin;
use crate::ticket::VacancyClient;
use crate::vacancy::{Clock, SystemClock};
use crate::wire::{
    AvailableResponse, CategoryPatchRequest, CreateEventRequest, ErrorResponse, EventResponse,
    EventsParams, EventsResponse, JsonObject, QuotaPatchRequest, StockRequest,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/available").route(web::get().to(available)))
        .service(
            web::resource("/api/v1/events")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(web::resource("/api/v1/events/{event}").route(web::get().to(read)))
        .service(web::resource("/api/v1/events/{event}/stock").route(web::post().to(replenish)))
        .service(
            web::resource("/api/v1/events/{event}/quotas/{quota}")
                .route(web::patch().to(resize_quota)),
        )
        .service(
            web::resource("/api/v1/events/{event}/categories/{category}")
                .route(web::patch().to(change_category)),
        );
}

/// The whole event, with whether each category is on sale now.
fn detail(event: &Event) -> EventResponse {
    EventResponse::detail(event, SystemClock.now_ms())
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
        qty: event.stock().available,
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
    (status = 200, description = "The event, its counts, and its quotas and categories", body = EventResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn read(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<EventResponse>, ApiError> {
    let event = vacancy.event(&event_id(&path)?).await?;
    Ok(web::Json(detail(&event)))
}

/// Admin: `{"name", "capacity", "id"?}`, or `{"name", "quotas", "categories"?, "id"?,
/// "max_per_customer"?, "customer_required"?}` → 201 with the event.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = CreateEventRequest,
    security(("admin" = [])), responses(
    (status = 201, description = "Created", body = EventResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 409, description = "An event with this id exists", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "Invalid name, id, capacity, quotas or categories (`invalid_event`)", body = ErrorResponse),
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
        .as_deref()
        .ok_or_else(|| Error::InvalidEvent("name is required".into()))
        .and_then(Event::parse_name)?;
    let draft = body.into_draft(id, name)?;
    let event = vacancy.create(draft).await?;
    Ok(HttpResponse::Created().json(detail(&event)))
}

/// Admin: `{"qty"}` more tickets for the event (the seed's `add_stock`): places added to its first
/// quota, or to `quota`.
#[utoipa::path(post, path = "/api/v1/events/{event}/stock", tag = "events", request_body = StockRequest,
    params(("event" = String, Path, description = "Event id", example = "default")),
    security(("admin" = [])), responses(
    (status = 200, description = "The event with its new capacity", body = EventResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 404, description = "No such event, or no such `quota` (`unknown_quota`)", body = ErrorResponse),
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
    let event = match body.quota {
        None | Some(serde_json::Value::Null) => vacancy.replenish(event, qty).await?,
        Some(serde_json::Value::String(quota)) => {
            let quota = QuotaId::parse(&quota).map_err(|_| {
                Error::UnknownQuota(format!("event '{event}' has no quota '{quota}'"))
            })?;
            vacancy.resize_quota(event, quota, Resize::Add(qty)).await?
        }
        Some(other) => {
            return Err(
                Error::UnknownQuota(format!("quota must be a quota id, got {other}")).into(),
            );
        }
    };
    Ok(web::Json(detail(&event)))
}

/// Admin: `{"size"}` sets a quota's size, never below its places held and sold.
#[utoipa::path(patch, path = "/api/v1/events/{event}/quotas/{quota}", tag = "events",
    request_body = QuotaPatchRequest,
    params(("event" = String, Path, description = "Event id", example = "default"),
        ("quota" = String, Path, description = "Quota id", example = "general")),
    security(("admin" = [])), responses(
    (status = 200, description = "The event with the quota's new size", body = EventResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 404, description = "No such event or quota (`unknown_quota`)", body = ErrorResponse),
    (status = 409, description = "`quota_in_use`: smaller than its places held and sold; `capacity_exceeded`: past the store's limit", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "size not a whole number in range", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn resize_quota(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<(String, String)>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<EventResponse>, ApiError> {
    let (event, quota) = path.into_inner();
    let event = event_id(&event)?;
    let quota = QuotaId::parse(&quota)
        .map_err(|_| Error::UnknownQuota(format!("event '{event}' has no quota '{quota}'")))?;
    let body: QuotaPatchRequest = body(raw)?;
    let event = vacancy
        .resize_quota(event, quota, body.into_resize()?)
        .await?;
    Ok(web::Json(detail(&event)))
}

/// Admin: open or close a category (`{"open": false}`), or move its sales window
/// (`{"sales_start": "2027-05-01T10:00:00Z", "sales_end": null}`).
#[utoipa::path(patch, path = "/api/v1/events/{event}/categories/{category}", tag = "events",
    request_body = CategoryPatchRequest,
    params(("event" = String, Path, description = "Event id", example = "default"),
        ("category" = String, Path, description = "Category id", example = "general")),
    security(("admin" = [])), responses(
    (status = 200, description = "The event with the category changed", body = EventResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token (checked before the body)", body = ErrorResponse),
    (status = 403, description = "No admin token is configured (whatever the body)", body = ErrorResponse),
    (status = 404, description = "No such event or category (`category_not_found`)", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "`invalid_event`: a time that is not RFC 3339, or a window that ends before it starts", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn change_category(
    _: Admin,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<(String, String)>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<EventResponse>, ApiError> {
    let (event, category) = path.into_inner();
    let event = event_id(&event)?;
    let category = CategoryId::parse(&category).map_err(|_| {
        Error::CategoryNotFound(format!("event '{event}' has no category '{category}'"))
    })?;
    let body: CategoryPatchRequest = body(raw)?;
    let event = vacancy
        .change_category(event, category, body.into_change()?)
        .await
        // The category is the path's: one the event lacks is not found.
        .map_err(|error| match error {
            Error::UnknownCategory(message) => Error::CategoryNotFound(message),
            other => other,
        })?;
    Ok(web::Json(detail(&event)))
}
