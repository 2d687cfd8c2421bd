//! Reserving stock: the inventory's own operation (monolith and vacancy).

use actix_web::web;

use super::{event_id, qty_request, raw_qty};
use crate::domain::{EventId, Quantity, Reservation, ReservationId};
use crate::http::ApiError;
use crate::vacancy::Inventory;
use crate::wire::{QtyRequest, ReserveResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/reserve").route(web::post().to(reserve_default)))
        .service(web::resource("/api/v1/events/{event}/reserve").route(web::post().to(reserve)));
}

async fn reserve_default(
    inventory: web::Data<Inventory>,
    body: web::Json<serde_json::Value>,
) -> Result<web::Json<ReserveResponse>, ApiError> {
    reserve_in(&inventory, EventId::default_event(), &qty_request(body)?).await
}

async fn reserve(
    inventory: web::Data<Inventory>,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<web::Json<ReserveResponse>, ApiError> {
    reserve_in(&inventory, event_id(&path)?, &qty_request(body)?).await
}

async fn reserve_in(
    inventory: &Inventory,
    event: EventId,
    body: &QtyRequest,
) -> Result<web::Json<ReserveResponse>, ApiError> {
    let qty = Quantity::parse(raw_qty(body.qty.as_ref())?, inventory.max_per_order())?;
    let id = match &body.reservation_id {
        Some(id) => id.parse::<ReservationId>()?,
        None => ReservationId::generate(),
    };
    let reserved = inventory.reserve(Reservation { id, event, qty }).await?;
    let message = if reserved.accepted {
        format!("Reserved {qty} tickets")
    } else {
        "Insufficient inventory".to_owned()
    };
    Ok(web::Json(ReserveResponse {
        success: reserved.accepted,
        remaining: reserved.remaining,
        reservation_id: reserved.accepted.then_some(id),
        message,
    }))
}
