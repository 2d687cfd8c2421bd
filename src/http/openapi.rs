//! The OpenAPI document, generated from the handlers' annotations, served at `/openapi.json`, with
//! Swagger UI at `/docs` (its assets are compiled in, so the page works offline).
//!
//! Each app serves the document of what it serves: the operations of the route modules it mounts,
//! with the bounds its settings enforce, so generated clients, gateways and fuzzers can trust it.

use actix_web::web;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ArrayItems, Object, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::routes::{changes, events, meta, orders, purchase, reserve, waitlist, webhooks};
use crate::domain::{ChangeType, Event, EventId, IdempotencyKey, WEBHOOK_URL_LEN_MAX};
use crate::vacancy::CAPACITY_MAX;
use crate::wire;

/// What a webhook url looks like: http or https, a host of visible ASCII without `@`, `#` or
/// `/`, then a path and query without `#`. (That a port is a number, and an IPv6 host closes its
/// bracket, is past what the document says.)
const WEBHOOK_URL_PATTERN: &str = "^[hH][tT][tT][pP][sS]?://[!-\"$-.0-?A-~]+(/[!-\"$-~]*)?$";

/// What every mode serves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ticketd",
        description = "Sells a limited stock of tickets without overselling. The same API is served \
                       by `ticketd monolith` and by the `ticketd ticket` + `ticketd vacancy` pair; \
                       `inventory` operations are served by the monolith and vacancy. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`; a wrong or missing `Content-Type` \
                       is 400 `invalid_content_type`."
    ),
    paths(
        meta::root, meta::health, meta::health_api, meta::ready, meta::metrics,
        events::available, events::list, events::read, events::create, events::replenish,
        events::resize_quota, events::change_category,
        orders::read, orders::confirm, orders::release, orders::cancel,
        waitlist::join, waitlist::read, waitlist::leave,
        webhooks::create, webhooks::list, webhooks::read, webhooks::delete, webhooks::deliveries,
        changes::changes,
    ),
    components(schemas(
        wire::CreateEventRequest, wire::StockRequest, wire::AvailableResponse,
        wire::QuotaBody, wire::CategoryBody, wire::PriceBody, wire::LineBody,
        wire::QuotaResponse, wire::CategoryResponse, wire::LineResponse, wire::ShortResponse,
        wire::QuotaPatchRequest, wire::CategoryPatchRequest,
        wire::EventResponse, wire::EventsResponse, wire::OrderResponse, wire::CancelResponse,
        wire::AboutResponse, wire::HealthResponse, wire::ReadyResponse,
        wire::WaitlistRequest, wire::WaitlistEntryResponse, wire::OfferResponse,
        wire::CreateWebhookRequest, wire::CreatedWebhookResponse, wire::WebhookResponse,
        wire::WebhooksResponse, wire::DeliveryResponse, wire::DeliveriesResponse,
        wire::ChangesResponse, wire::ChangeResponse,
        wire::ErrorResponse, wire::ErrorDetail,
    )),
    modifiers(&Security),
)]
struct Common;

/// Buying and holding: the monolith and the ticket service.
#[derive(OpenApi)]
#[openapi(
    paths(purchase::purchase_default, purchase::purchase, purchase::hold),
    components(schemas(
        wire::PurchaseRequest,
        wire::HoldRequest,
        wire::PurchaseResponse,
        wire::HoldResponse,
    ))
)]
struct Purchases;

/// The inventory's own operation: the monolith and vacancy.
#[derive(OpenApi)]
#[openapi(
    paths(reserve::reserve_default, reserve::reserve, reserve::reserve_batch),
    components(schemas(
        wire::ReserveRequest,
        wire::ReserveResponse,
        wire::ReserveBatchRequest,
        wire::BatchReservation,
        wire::ReserveBatchResponse,
        wire::BatchAnswer,
    ))
)]
struct Reservations;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "service",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(wire::SERVICE_TOKEN_HEADER))),
        );
    }
}

/// The settings that decide what an app's document says.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    /// Purchases and holds are mounted.
    pub purchases: bool,
    /// The inventory's `reserve` is mounted.
    pub reservations: bool,
    pub max_per_order: u32,
    pub hold_ttl_seconds_max: u32,
}

/// The document of an app serving `served`.
pub fn document(served: &Served) -> Document {
    let mut document = Common::openapi();
    if served.purchases {
        document.merge(Purchases::openapi());
    }
    if served.reservations {
        document.merge(Reservations::openapi());
    }
    state_bounds(&mut document, served);
    document
}

/// Writes into the document the bounds the server enforces, from the constants and settings that
/// enforce them, so the two cannot drift apart.
fn state_bounds(document: &mut Document, served: &Served) {
    let schemas = &mut document
        .components
        .get_or_insert_with(Default::default)
        .schemas;
    let mut bound = |schema: &str, property: &str, change: &dyn Fn(&mut Object)| {
        if let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema)
            && let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property)
        {
            change(field);
        }
    };
    for schema in [
        "PurchaseRequest",
        "HoldRequest",
        "ReserveRequest",
        "WaitlistRequest",
    ] {
        bound(schema, "qty", &|qty| {
            qty.maximum = Some(served.max_per_order.into());
        });
        bound(schema, "ttl_seconds", &|ttl| {
            ttl.maximum = Some(served.hold_ttl_seconds_max.into());
        });
    }
    bound("LineBody", "qty", &|qty| {
        qty.maximum = Some(served.max_per_order.into());
    });
    bound("StockRequest", "qty", &|qty| {
        qty.maximum = Some(CAPACITY_MAX.into());
    });
    bound("QuotaBody", "size", &|size| {
        size.maximum = Some(CAPACITY_MAX.into());
    });
    for (schema, field) in [("QuotaPatchRequest", "size"), ("QuotaPatchRequest", "add")] {
        bound(schema, field, &|n| {
            n.maximum = Some(CAPACITY_MAX.into());
        });
    }
    for (schema, field) in [
        ("QuotaBody", "id"),
        ("CategoryBody", "id"),
        ("LineBody", "category"),
        ("PurchaseRequest", "category"),
        ("HoldRequest", "category"),
        ("ReserveRequest", "category"),
        ("WaitlistRequest", "category"),
    ] {
        bound(schema, field, &|id| {
            id.pattern = Some(EventId::PATTERN.to_owned());
            id.max_length = Some(EventId::LEN_MAX);
        });
    }
    bound("CategoryBody", "name", &|name| {
        name.pattern = Some(Event::name_pattern());
        name.max_length = Some(Event::NAME_LEN_MAX);
    });
    bound("CreateEventRequest", "max_per_customer", &|max| {
        max.maximum = Some(u32::MAX.into());
    });
    bound("CreateEventRequest", "capacity", &|capacity| {
        capacity.maximum = Some(CAPACITY_MAX.into());
    });
    bound("CreateEventRequest", "id", &|id| {
        id.pattern = Some(EventId::PATTERN.to_owned());
        id.max_length = Some(EventId::LEN_MAX);
    });
    bound("CreateEventRequest", "name", &|name| {
        name.pattern = Some(Event::name_pattern());
        name.max_length = Some(Event::NAME_LEN_MAX);
    });
    // Times a client writes: RFC 3339 as `time` reads it (whether the day exists in its month is
    // past what a pattern can say).
    for schema in ["CategoryBody", "CategoryPatchRequest"] {
        for field in ["sales_start", "sales_end"] {
            bound(schema, field, &|time| {
                time.pattern = Some(wire::TIMESTAMP_PATTERN.to_owned());
            });
        }
    }
    bound("CreateWebhookRequest", "url", &|url| {
        url.pattern = Some(WEBHOOK_URL_PATTERN.to_owned());
        url.max_length = Some(WEBHOOK_URL_LEN_MAX);
    });
    // The quotas a category draws on are quota ids.
    if let Some(RefOr::T(Schema::Object(category))) = schemas.get_mut("CategoryBody")
        && let Some(RefOr::T(Schema::Array(quotas))) = category.properties.get_mut("quotas")
        && let ArrayItems::RefOrSchema(item) = &mut quotas.items
        && let RefOr::T(Schema::Object(id)) = item.as_mut()
    {
        id.pattern = Some(EventId::PATTERN.to_owned());
        id.min_length = Some(1);
        id.max_length = Some(EventId::LEN_MAX);
    }
    // A webhook's url and the names of its types, as `WebhookUrl` and `ChangeType` read them.
    if let Some(RefOr::T(Schema::Object(request))) = schemas.get_mut("CreateWebhookRequest")
        && let Some(RefOr::T(Schema::Array(types))) = request.properties.get_mut("types")
        && let ArrayItems::RefOrSchema(item) = &mut types.items
        && let RefOr::T(Schema::Object(name)) = item.as_mut()
    {
        name.enum_values = Some(
            ChangeType::ALL
                .iter()
                .map(|kind| kind.as_str().into())
                .collect(),
        );
    }
    // Of two ways to say what to buy or what to sell, a request takes one: JSON Schema says so
    // with `oneOf`, which the document's object type has no field for; it is written beside the
    // properties, where a JSON Schema reader looks for it.
    for (schema, one, other) in [
        ("PurchaseRequest", "qty", "lines"),
        ("HoldRequest", "qty", "lines"),
        ("ReserveRequest", "qty", "lines"),
        ("CreateEventRequest", "capacity", "quotas"),
    ] {
        if let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema) {
            let either = serde_json::json!([{"required": [one]}, {"required": [other]}]);
            object
                .extensions
                .get_or_insert_with(Default::default)
                .insert("oneOf".to_owned(), either);
        }
    }

    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            bound_parameters(operation);
        }
    }
}

/// Event ids and idempotency keys in paths and headers, as [`EventId`] and [`IdempotencyKey`]
/// parse them.
fn bound_parameters(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        let (pattern, length_max) = match (&parameter.parameter_in, parameter.name.as_str()) {
            // Quota and category ids follow the same rule as event ids.
            (ParameterIn::Path, "event" | "quota" | "category") => {
                (EventId::PATTERN, EventId::LEN_MAX)
            }
            // Header names are case-insensitive; the document spells this one as clients do.
            (ParameterIn::Header, name)
                if name.eq_ignore_ascii_case(wire::IDEMPOTENCY_KEY_HEADER) =>
            {
                (IdempotencyKey::PATTERN, IdempotencyKey::LEN_MAX)
            }
            _ => continue,
        };
        let mut schema = Object::with_type(Type::String);
        schema.pattern = Some(pattern.to_owned());
        schema.min_length = Some(1);
        schema.max_length = Some(length_max);
        parameter.schema = Some(RefOr::T(Schema::Object(schema)));
    }
}

pub fn configure(cfg: &mut web::ServiceConfig, document: Document) {
    // Swagger UI sends the document to validator.swagger.io whenever the page is opened under a
    // host name other than localhost: an outside call, from the operator's network, with our API
    // description in it. The page must work offline and call nothing but ticketd.
    let ui = Config::default().validator_url("none");
    cfg.service(
        SwaggerUi::new("/docs/{_:.*}")
            .url("/openapi.json", document)
            .config(ui),
    )
    .service(web::redirect("/docs", "/docs/"));
}
