//! Waiting lists: join a sold-out category's list, look an entry up, leave. The same in every
//! mode, through whichever `VacancyClient` the app has.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{body, event_id};
use crate::config::Mode;
use crate::domain::{Error, Joining, OrderLimits, ReservationId};
use crate::http::ApiError;
use crate::ticket::VacancyClient;
use crate::wire::{self, CALL_ID_HEADER, ErrorResponse, WaitlistEntryResponse, WaitlistRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/waitlist/{id}")
            .route(web::get().to(read))
            .route(web::delete().to(leave)),
    )
    .service(web::resource("/api/v1/events/{event}/waitlist").route(web::post().to(join)));
}

fn entry_id(raw: &str) -> Result<ReservationId, Error> {
    raw.parse()
        .map_err(|_| Error::UnknownEntry(format!("unknown waiting-list entry '{raw}'")))
}

/// The new entry's id: picked here, except on vacancy, where the ticket service sends the one it
/// picked (as its call id), so that a retried join joins once.
fn new_entry_id(request: &HttpRequest) -> Result<ReservationId, Error> {
    let on_vacancy = request
        .app_data::<web::Data<Mode>>()
        .is_some_and(|mode| *mode.as_ref() == Mode::Vacancy);
    match request.headers().get(CALL_ID_HEADER).filter(|_| on_vacancy) {
        None => Ok(ReservationId::generate()),
        Some(id) => id
            .to_str()
            .ok()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(ReservationId::from)
            .ok_or_else(|| {
                Error::InvalidIdempotencyKey(format!("{CALL_ID_HEADER} must be a UUID"))
            }),
    }
}

#[utoipa::path(post, path = "/api/v1/events/{event}/waitlist", tag = "waitlist", request_body = WaitlistRequest,
    params(("event" = String, Path, description = "Event id", example = "default")),
    responses(
    (status = 201, description = "On the list, `waiting`, at `position`", body = WaitlistEntryResponse),
    (status = 400, description = "`invalid_body` or `invalid_content_type`", body = ErrorResponse),
    (status = 404, description = "No such event", body = ErrorResponse),
    (status = 409, description = "The category can sell the quantity asked (`tickets_available`: buy instead), is closed or outside its sales window (`not_on_sale`), or the customer would pass the event's `max_per_customer` (`customer_limit_reached`)", body = ErrorResponse),
    (status = 413, description = "Body over `body_limit_bytes`", body = ErrorResponse),
    (status = 422, description = "Invalid qty, or more than the category holds in all (`invalid_quantity`), a category the event does not sell (`unknown_category`), a bad customer or none where the event requires one", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn join(
    request: HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    limits: web::Data<OrderLimits>,
    path: web::Path<String>,
    raw: web::Json<wire::JsonObject>,
) -> Result<HttpResponse, ApiError> {
    let event = event_id(&path)?;
    let id = new_entry_id(&request)?;
    let body: WaitlistRequest = body(raw)?;
    let lines = wire::lines_from(&limits, body.qty.as_ref(), body.category.as_ref(), None)?;
    let line = lines
        .iter()
        .next()
        .ok_or_else(|| Error::InvalidQuantity("qty is required".into()))?;
    let joining = Joining {
        id,
        event,
        category: line.category.clone(),
        qty: line.qty,
        customer: wire::customer_from(body.customer.as_ref())?,
    };
    let view = vacancy.join_waitlist(joining).await?;
    Ok(HttpResponse::Created().json(WaitlistEntryResponse::from(&view)))
}

#[utoipa::path(get, path = "/api/v1/waitlist/{id}", tag = "waitlist",
    params(("id" = uuid::Uuid, Path, description = "Waiting-list entry id")), responses(
    (status = 200, description = "The entry: its status, its place while waiting, its offer once offered", body = WaitlistEntryResponse),
    (status = 404, description = "No such entry", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn read(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<WaitlistEntryResponse>, ApiError> {
    let view = vacancy.waitlist_entry(entry_id(&path)?).await?;
    Ok(web::Json(WaitlistEntryResponse::from(&view)))
}

#[utoipa::path(delete, path = "/api/v1/waitlist/{id}", tag = "waitlist",
    params(("id" = uuid::Uuid, Path, description = "Waiting-list entry id")), responses(
    (status = 200, description = "Off the list (`left`; an open offer is declined and its seats go to the next entry). An entry already off the list (`accepted`, `expired`, `left`) is answered as it is", body = WaitlistEntryResponse),
    (status = 404, description = "No such entry", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn leave(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<WaitlistEntryResponse>, ApiError> {
    let view = vacancy.leave_waitlist(entry_id(&path)?).await?;
    Ok(web::Json(WaitlistEntryResponse::from(&view)))
}
