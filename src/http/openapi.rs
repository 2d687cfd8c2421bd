//! The OpenAPI document, generated from the handlers' annotations, served at `/openapi.json`, with
//! Swagger UI at `/docs` (its assets are compiled in, so the page works offline).

use actix_web::web;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::routes::{events, meta, orders, purchase, reserve};
use crate::wire;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ticketd",
        description = "Sells a limited stock of tickets without overselling. The same API is served \
                       by `ticketd monolith` and by the `ticketd ticket` + `ticketd vacancy` pair; \
                       `inventory` operations are served by the monolith and vacancy."
    ),
    paths(
        meta::root, meta::health, meta::health_api, meta::ready, meta::metrics,
        events::available, events::list, events::read, events::create, events::replenish,
        purchase::purchase_default, purchase::purchase, purchase::hold,
        orders::read, orders::confirm, orders::release, orders::cancel,
        reserve::reserve_default, reserve::reserve,
    ),
    components(schemas(
        wire::QtyRequest, wire::CreateEventRequest, wire::PurchaseResponse, wire::HoldResponse,
        wire::ReserveResponse, wire::AvailableResponse, wire::EventResponse, wire::EventsResponse,
        wire::OrderResponse, wire::CancelResponse, wire::ErrorResponse, wire::ErrorDetail,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "service",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-service-token"))),
        );
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Swagger UI sends the document to validator.swagger.io whenever the page is opened under a
    // host name other than localhost: an outside call, from the operator's network, with our API
    // description in it. The page must work offline and call nothing but ticketd.
    let ui = Config::default().validator_url("none");
    cfg.service(
        SwaggerUi::new("/docs/{_:.*}")
            .url("/openapi.json", ApiDoc::openapi())
            .config(ui),
    )
    .service(web::redirect("/docs", "/docs/"));
}
