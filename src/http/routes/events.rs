//! Events and their stock: read by anyone, created and replenished by the admin. The same in every
//! mode, through whichever `VacancyClient` the app has.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{body, event_id, whole_number};
use crate::domain::{Error, EventId};
use crate::http::ApiError;
use crate::http::auth::require_admin;
use crate::ticket::VacancyClient;
use crate::wire::{
    AvailableResponse, CreateEventRequest, EventResponse, EventsResponse, JsonObject, QtyRequest,
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
    (status = 503, description = "The inventory is unreachable", body = crate::wire::ErrorResponse)))]
async fn available(
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<AvailableResponse>, ApiError> {
    let event = vacancy.event(&EventId::default_event()).await?;
    Ok(web::Json(AvailableResponse {
        qty: event.stock.available,
    }))
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", responses(
    (status = 200, description = "Every event", body = EventsResponse),
    (status = 503, description = "The inventory is unreachable", body = crate::wire::ErrorResponse)))]
async fn list(
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<EventsResponse>, ApiError> {
    let events = vacancy.events().await?;
    Ok(web::Json(EventsResponse {
        events: events.iter().map(EventResponse::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/events/{event}", tag = "events",
    params(("event" = String, Path, description = "Event id")), responses(
    (status = 200, description = "The event and its counts", body = EventResponse),
    (status = 404, description = "No such event", body = crate::wire::ErrorResponse)))]
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
    (status = 401, description = "Missing or wrong admin token", body = crate::wire::ErrorResponse),
    (status = 403, description = "No admin token is configured", body = crate::wire::ErrorResponse),
    (status = 409, description = "An event with this id exists", body = crate::wire::ErrorResponse),
    (status = 422, description = "Invalid name, id or capacity", body = crate::wire::ErrorResponse)))]
async fn create(
    request: HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    raw: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request)?;
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
#[utoipa::path(post, path = "/api/v1/events/{event}/stock", tag = "events", request_body = QtyRequest,
    params(("event" = String, Path, description = "Event id")), security(("admin" = [])), responses(
    (status = 200, description = "The event with its new capacity", body = EventResponse),
    (status = 401, description = "Missing or wrong admin token", body = crate::wire::ErrorResponse),
    (status = 404, description = "No such event", body = crate::wire::ErrorResponse),
    (status = 422, description = "qty is not a whole number of at least 1", body = crate::wire::ErrorResponse)))]
async fn replenish(
    request: HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
    raw: web::Json<JsonObject>,
) -> Result<web::Json<EventResponse>, ApiError> {
    require_admin(&request)?;
    let event = event_id(&path)?;
    let body: QtyRequest = body(raw)?;
    let qty = whole_number("qty", body.qty.as_ref())?;
    let qty = u64::try_from(qty)
        .ok()
        .filter(|qty| *qty > 0)
        .ok_or_else(|| Error::InvalidQuantity(format!("qty must be at least 1, got {qty}")))?;
    let event = vacancy.replenish(event, qty).await?;
    Ok(web::Json(EventResponse::from(&event)))
}
