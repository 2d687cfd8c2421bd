//! The changes feed: what integrators hear about, in commit order, read after a cursor, with an
//! optional long poll. The same in every mode, through whichever `VacancyClient` the app has; the
//! vacancy side owns the outbox.

use actix_web::{HttpRequest, web};

use crate::config::Mode;
use crate::domain::Error;
use crate::http::ApiError;
use crate::http::auth::{Tokens, require_admin};
use crate::ticket::VacancyClient;
use crate::wire::{ChangesParams, ChangesResponse, ErrorResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/changes").route(web::get().to(changes)));
}

/// The admin token, or, on vacancy with a service token set, that token (which vacancy's
/// middleware has already checked on every `/api/` call): the ticket service reads the feed for
/// its own clients.
fn may_read(request: &HttpRequest) -> Result<(), ApiError> {
    let on_vacancy = request
        .app_data::<web::Data<Mode>>()
        .is_some_and(|mode| *mode.as_ref() == Mode::Vacancy);
    let service_token_set = request
        .app_data::<web::Data<Tokens>>()
        .is_some_and(|tokens| tokens.service.is_some());
    if on_vacancy && service_token_set {
        return Ok(());
    }
    require_admin(request)
}

/// Changes after `after`, in commit order. Read on by passing `next_after` as `after`. With
/// `wait_seconds`, an empty page waits (up to that long) for the next change to commit.
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes", params(ChangesParams),
    security(("admin" = []), ("service" = [])), responses(
    (status = 200, description = "Changes after `after` in commit order (none when there is \
        none yet and `wait_seconds` ran out), and the cursor to read on from", body = ChangesResponse),
    (status = 400, description = "`after`, `limit` or `wait_seconds` is not valid, or the query \
        has another parameter (`invalid_query`)", body = ErrorResponse),
    (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
    (status = 403, description = "No admin token is configured", body = ErrorResponse),
    (status = 409, description = "`after` is past the last change committed (a store restored \
        or a memory store restarted: numbers began again lower): `cursor_ahead`, with `last`, \
        the last number given; read on from `last` (or 0), knowing the numbers were reused",
        body = ErrorResponse),
    (status = 410, description = "Changes after `after` are no longer kept \
        (`changes_retention_hours`): `cursor_expired`, with `oldest`, the first kept; read on \
        from `oldest - 1` (or 0), knowing changes in between were missed", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn changes(
    request: HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<ChangesResponse>, ApiError> {
    may_read(&request)?;
    let params = web::Query::<ChangesParams>::from_query(request.query_string())
        .map_err(|e| Error::InvalidQuery(format!("the query is not as expected: {e}")))?;
    let page = vacancy.changes(params.into_inner().into_query()?).await?;
    Ok(web::Json(ChangesResponse::from_page(&page)?))
}
