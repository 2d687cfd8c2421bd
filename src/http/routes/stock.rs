//! Reading stock: the same in every mode, through whichever `VacancyClient` the app has.

use actix_web::web;

use super::event_id;
use crate::domain::EventId;
use crate::http::ApiError;
use crate::ticket::VacancyClient;
use crate::wire::{AvailableResponse, EventResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/available").route(web::get().to(available)))
        .service(web::resource("/api/v1/events/{event}").route(web::get().to(event)));
}

async fn available(
    vacancy: web::Data<dyn VacancyClient>,
) -> Result<web::Json<AvailableResponse>, ApiError> {
    let stock = vacancy.stock(&EventId::default_event()).await?;
    Ok(web::Json(AvailableResponse {
        qty: stock.available,
    }))
}

async fn event(
    vacancy: web::Data<dyn VacancyClient>,
    path: web::Path<String>,
) -> Result<web::Json<EventResponse>, ApiError> {
    let event = event_id(&path)?;
    let stock = vacancy.stock(&event).await?;
    Ok(web::Json(EventResponse {
        id: event.as_str().to_owned(),
        stock,
    }))
}
