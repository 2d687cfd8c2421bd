//! Buying tickets.

use actix_web::web;

use super::{event_id, qty_request, raw_qty};
use crate::domain::EventId;
use crate::http::ApiError;
use crate::ticket::Tickets;
use crate::wire::{PurchaseResponse, QtyRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/purchase").route(web::post().to(purchase_default)))
        .service(web::resource("/api/v1/events/{event}/purchase").route(web::post().to(purchase)));
}

async fn purchase_default(
    tickets: web::Data<Tickets>,
    body: web::Json<serde_json::Value>,
) -> Result<web::Json<PurchaseResponse>, ApiError> {
    buy(&tickets, EventId::default_event(), &qty_request(body)?).await
}

async fn purchase(
    tickets: web::Data<Tickets>,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<web::Json<PurchaseResponse>, ApiError> {
    buy(&tickets, event_id(&path)?, &qty_request(body)?).await
}

async fn buy(
    tickets: &Tickets,
    event: EventId,
    body: &QtyRequest,
) -> Result<web::Json<PurchaseResponse>, ApiError> {
    let purchase = tickets.purchase(event, raw_qty(body.qty.as_ref())?).await?;
    let message = match purchase.order_id {
        Some(_) => "Purchase successful!",
        None => "Insufficient inventory",
    };
    Ok(web::Json(PurchaseResponse {
        success: purchase.order_id.is_some(),
        remaining: purchase.remaining,
        order_id: purchase.order_id,
        message: message.into(),
    }))
}
