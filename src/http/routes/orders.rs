//! Orders and holds by id: read, confirm, release, cancel. The same in every mode, through
//! whichever `VacancyClient` the app has. Each of these is idempotent by nature (confirming a
//! confirmed hold, releasing a released one or cancelling a cancelled order changes nothing), and
//! with an `Idempotency-Key` a repeat also gets the first answer.

use actix_web::{HttpResponse, web};

use super::idempotency_key;
use crate::domain::{Error, ReservationId};
use crate::http::ApiError;
use crate::ticket::VacancyClient;
use crate::wire::{CancelResponse, ErrorResponse, OrderResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/orders/{id}").route(web::get().to(read)))
        .service(web::resource("/api/v1/orders/{id}/cancel").route(web::post().to(cancel)))
        .service(web::resource("/api/v1/holds/{id}").route(web::delete().to(release)))
        .service(web::resource("/api/v1/holds/{id}/confirm").route(web::post().to(confirm)));
}

fn order_id(raw: &str) -> Result<ReservationId, Error> {
    raw.parse()
        .map_err(|_| Error::UnknownOrder(format!("unknown order or hold '{raw}'")))
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order or hold id")), responses(
    (status = 200, description = "The order or hold", body = OrderResponse),
    (status = 404, description = "No such order", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn read(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    let order = vacancy.order(order_id(&path)?).await?;
    Ok(web::Json(OrderResponse::from(&order)))
}

#[utoipa::path(post, path = "/api/v1/holds/{id}/confirm", tag = "holds",
    params(("id" = uuid::Uuid, Path, description = "Hold id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    responses(
    (status = 200, description = "The hold is now a confirmed order (again: the same answer)", body = OrderResponse),
    (status = 400, description = "`invalid_idempotency_key`", body = ErrorResponse),
    (status = 404, description = "No such hold", body = ErrorResponse),
    (status = 409, description = "The hold was released or cancelled", body = ErrorResponse),
    (status = 410, description = "The hold expired; its tickets went back on sale", body = ErrorResponse),
    (status = 422, description = "`idempotency_key_reused`: the key was used with another request", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn confirm(
    request: actix_web::HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    let key = idempotency_key(&request)?;
    let order = vacancy.confirm(order_id(&path)?, key).await?;
    Ok(web::Json(OrderResponse::from(&order)))
}

#[utoipa::path(delete, path = "/api/v1/holds/{id}", tag = "holds",
    params(("id" = uuid::Uuid, Path, description = "Hold id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    responses(
    (status = 204, description = "Released (or already released or expired)"),
    (status = 400, description = "`invalid_idempotency_key`", body = ErrorResponse),
    (status = 404, description = "No such hold", body = ErrorResponse),
    (status = 409, description = "Already confirmed: cancel the order instead", body = ErrorResponse),
    (status = 422, description = "`idempotency_key_reused`: the key was used with another request", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn release(
    request: actix_web::HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&request)?;
    vacancy.release(order_id(&path)?, key).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with this key get the first answer")),
    responses(
    (status = 200, description = "Cancelled; `cancelled: false` when it already was (nothing changed)", body = CancelResponse),
    (status = 400, description = "`invalid_idempotency_key`", body = ErrorResponse),
    (status = 404, description = "No such order", body = ErrorResponse),
    (status = 409, description = "Not a confirmed order", body = ErrorResponse),
    (status = 422, description = "`idempotency_key_reused`: the key was used with another request", body = ErrorResponse),
    (status = 503, description = "The inventory is unreachable or busy", body = ErrorResponse)))]
async fn cancel(
    request: actix_web::HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<CancelResponse>, ApiError> {
    let key = idempotency_key(&request)?;
    let cancelled = vacancy.cancel(order_id(&path)?, key).await?;
    let qty = cancelled.order.qty;
    let message = if cancelled.changed {
        format!("Order cancelled; {qty} tickets returned to stock")
    } else {
        "Order was already cancelled; nothing changed".to_owned()
    };
    Ok(web::Json(CancelResponse {
        cancelled: cancelled.changed,
        message,
        order: OrderResponse::from(&cancelled.order),
    }))
}
