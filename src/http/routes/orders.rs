//! Orders and holds by id: read, confirm, release, cancel. The same in every mode, through
//! whichever `VacancyClient` the app has. Each of these is idempotent by nature: confirming a
//! confirmed hold, releasing a released one or cancelling a cancelled order changes nothing.

use actix_web::{HttpResponse, web};

use super::idempotency_key;
use crate::domain::{Error, ReservationId};
use crate::http::ApiError;
use crate::ticket::VacancyClient;
use crate::wire::{CancelResponse, OrderResponse};

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

async fn read(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    let order = vacancy.order(order_id(&path)?).await?;
    Ok(web::Json(OrderResponse::from(&order)))
}

async fn confirm(
    request: actix_web::HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    idempotency_key(&request)?;
    let order = vacancy.confirm(order_id(&path)?).await?;
    Ok(web::Json(OrderResponse::from(&order)))
}

async fn release(
    request: actix_web::HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    idempotency_key(&request)?;
    vacancy.release(order_id(&path)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn cancel(
    request: actix_web::HttpRequest,
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<CancelResponse>, ApiError> {
    idempotency_key(&request)?;
    let cancelled = vacancy.cancel(order_id(&path)?).await?;
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
