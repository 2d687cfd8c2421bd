//! The JSON shapes of the HTTP API, shared by the routes that send them and the remote client that
//! reads them back, so the two can never drift apart. Conversions between these and the domain
//! types live here too, in one place.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::domain::{
    Catalogue, Category, CategoryId, CustomerId, Error, Event, EventDraft, EventId, EventsPage,
    Order, OrderStatus, PageLimit, PageQuery, Quota, QuotaId, ReservationId, SalesWindow, Stock,
};

mod catalogue;
mod changes;
mod errors;
mod object;
mod waitlist;
mod webhooks;

pub use catalogue::{
    CategoryBody, CategoryPatchRequest, CategoryResponse, LineBody, LineResponse, PriceBody,
    QuotaBody, QuotaPatchRequest, QuotaResponse, ShortResponse, customer_from, line_responses,
    lines_from, lines_json, short_from_vacancy, short_response, total_price_body,
};
pub use changes::{
    CHANGES_LIMIT_DEFAULT, CHANGES_LIMIT_MAX, CHANGES_WAIT_SECONDS_MAX, ChangeResponse,
    ChangesParams, ChangesResponse, changes_path,
};
pub use errors::{ErrorCode, ErrorDetail, ErrorResponse};
pub use object::{JsonObject, from_object};
pub use waitlist::{OfferResponse, WaitlistEntryResponse, WaitlistRequest};
pub use webhooks::{
    CreateWebhookRequest, CreatedWebhookResponse, DeliveriesResponse, DeliveryResponse,
    WebhookResponse, WebhooksResponse,
};

/// What `GET /` names as the service, and what the ticket service looks for there in vacancy.
pub const SERVICE_NAME: &str = "ticketd";

// The headers ticketd reads and sends besides the standard ones, named once for every side.

/// A client's idempotency key, from the client and on to vacancy.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The service token, from ticket to vacancy.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";

/// In place of a client's idempotency key, the id ticket gives one change it passes on to
/// vacancy: the same on every try of that call, so vacancy answers a retry with the first try's
/// answer rather than deciding afresh (a cancel that cancelled must not come back as "already
/// cancelled; nothing changed").
pub const CALL_ID_HEADER: &str = "x-call-id";

/// The request id, accepted from clients, returned to them and passed on to vacancy.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

// Request bodies keep their numbers raw, so a fractional, negative or missing one gets the precise
// `invalid_quantity` answer instead of a parse error. Each documents its bounds: the ones that
// depend on settings (`max_per_order`, `hold_ttl_seconds_max`) and on the store (`CAPACITY_MAX`)
// are filled in when the app's document is built (`http::openapi`).

/// Body of `purchase`: `qty` (with `category` for an event of several), or `lines`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct PurchaseRequest {
    /// Tickets: a whole number from 1 to `max_per_order`. Required unless `lines` is given.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 1, example = 2)]
    pub qty: Option<Value>,
    /// The category of `qty`; may be left out when the event sells only one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, example = "standing")]
    pub category: Option<Value>,
    /// Tickets of several categories, all or none: in place of `qty` and `category`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Vec<LineBody>, min_items = 1, max_items = 32)]
    pub lines: Option<Value>,
    /// The buyer, as the integrator identifies them (1 to 128 visible ASCII characters): what
    /// the event's `max_per_customer` counts.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[!-~]+$", example = "c-81")]
    pub customer: Option<Value>,
}

/// Body of `holds`: as a purchase's, and how long to hold.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct HoldRequest {
    /// Tickets: a whole number from 1 to `max_per_order`. Required unless `lines` is given.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 1, example = 2)]
    pub qty: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, example = "standing")]
    pub category: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Vec<LineBody>, min_items = 1, max_items = 32)]
    pub lines: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[!-~]+$", example = "c-81")]
    pub customer: Option<Value>,
    /// How long to hold, in seconds, from 1 to `hold_ttl_seconds_max`; absent or null:
    /// `hold_ttl_seconds_default`.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, example = 300)]
    pub ttl_seconds: Option<Value>,
}

/// Body of `stock`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StockRequest {
    /// Tickets to add: a whole number of at least 1. The event's capacity may not grow past the
    /// store's limit (409 `capacity_exceeded`).
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 1, example = 100)]
    pub qty: Option<Value>,
    /// The quota that grows; the event's first when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "general")]
    pub quota: Option<Value>,
}

/// Body of `reserve`, the inventory's own operation.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ReserveRequest {
    /// Tickets: a whole number from 1 to `max_per_order`. Required unless `lines` is given.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = i64, minimum = 1, example = 2)]
    pub qty: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, example = "standing")]
    pub category: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Vec<LineBody>, min_items = 1, max_items = 32)]
    pub lines: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[!-~]+$", example = "c-81")]
    pub customer: Option<Value>,
    /// Hold instead of selling, for this many seconds (1 to `hold_ttl_seconds_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, example = 300)]
    pub ttl_seconds: Option<Value>,
    /// The caller's id for this reservation (a UUID); made up when absent. Asking again with the
    /// same id gets the first answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    pub reservation_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReserveResponse {
    pub success: bool,
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reservation_id: Option<ReservationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<ShortResponse>,
    pub message: String,
}

/// Most reservations in one call to the batch route, `POST /api/v1/reservations`.
pub const RESERVE_BATCH_MAX: usize = 64;

/// Body of `reserve_batch`: reservations the ticket service coalesced into one call, decided by
/// vacancy in one batch. Each is what one `reserve` call would carry.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBatchRequest {
    #[schema(min_items = 1, max_items = 64)]
    pub reservations: Vec<BatchReservation>,
}

/// One reservation of a batch: the event, the client's idempotency key (the header of a single
/// call) and the body of a single call. Each is checked as its own call would be, and one that
/// is not valid is answered with that call's error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchReservation {
    #[schema(example = "default")]
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "order-7")]
    pub idempotency_key: Option<String>,
    /// The body of a `reserve` call; one that is not valid is answered with its error.
    #[schema(value_type = Object)]
    pub reserve: ReserveRequest,
}

/// An answer for each reservation of a batch, in the order they were sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReserveBatchResponse {
    pub answers: Vec<BatchAnswer>,
}

/// What one reservation of a batch got: what a single call would have answered, its body on
/// success or its error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchAnswer {
    Reserved(ReserveResponse),
    Error(ErrorDetail),
}

/// A purchase: the order's lines, or `success: false` and which line was short.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseResponse {
    pub success: bool,
    /// Tickets of the event still available (its first quota's; see the event).
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub order_id: Option<ReservationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineResponse>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_price: Option<PriceBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<ShortResponse>,
    pub message: String,
}

/// A new hold: `201` with the hold, or `200` with `success: false` when stock is short.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HoldResponse {
    pub success: bool,
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub hold_id: Option<ReservationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineResponse>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_price: Option<PriceBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<ShortResponse>,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AvailableResponse {
    pub qty: u64,
}

/// Body of `POST /api/v1/events`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateEventRequest {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`; made up when absent or null.
    #[serde(default)]
    #[schema(min_length = 1, example = "spring-gala")]
    pub id: Option<String>,
    /// 1 to 200 characters, not all blank; the blanks around it are trimmed.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, example = "Spring Gala")]
    pub name: Option<String>,
    /// Tickets on sale: a whole number from 0 to the store's limit. Required unless `quotas` is
    /// given; then it must be left out.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = i64, minimum = 0, example = 500)]
    pub capacity: Option<Value>,
    /// The event's quotas (1 to 32), in place of `capacity`. List the one every ticket counts
    /// against (the venue) first: its counts are the event's top-level counts.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Vec<QuotaBody>, min_items = 1, max_items = 32)]
    pub quotas: Option<Value>,
    /// What the event sells (1 to 32), each drawing on its quotas (`general` for an event made
    /// with a `capacity`); one per quota, named after it, when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<CategoryBody>>, min_items = 1, max_items = 32)]
    pub categories: Option<Value>,
    /// Most tickets one `customer` may hold or have bought in the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, example = 4)]
    pub max_per_customer: Option<Value>,
    /// Whether every purchase and hold must name its `customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    pub customer_required: Option<Value>,
}

impl CreateEventRequest {
    /// The draft of a new event with `id` and `name`: of its `quotas` and `categories`, or of one
    /// `general` quota and category of `capacity`.
    pub fn into_draft(self, id: EventId, name: std::sync::Arc<str>) -> Result<EventDraft, Error> {
        // A field sent as `null` is sent: only one of the two may be.
        let quotas = match (self.capacity.is_some(), self.quotas) {
            (true, Some(_)) => {
                return Err(Error::InvalidEvent(
                    "give capacity or quotas, not both".into(),
                ));
            }
            (_, Some(Value::Array(quotas))) => quotas,
            (_, Some(quotas)) => {
                return Err(Error::InvalidEvent(format!(
                    "quotas must be an array of {{\"id\", \"size\"}}, got {quotas}"
                )));
            }
            // One quota, `general`, of `capacity` places.
            _ => {
                let capacity = whole("capacity", self.capacity.as_ref())?.ok_or_else(|| {
                    Error::InvalidEvent("capacity (or quotas) is required".into())
                })?;
                let capacity = u64::try_from(capacity)
                    .map_err(|_| Error::InvalidEvent("capacity must be 0 or more".into()))?;
                vec![serde_json::json!({"id": crate::domain::GENERAL, "size": capacity})]
            }
        };
        let categories = match &self.categories {
            None | Some(Value::Null) => None,
            Some(Value::Array(categories)) => Some(categories),
            Some(other) => {
                return Err(Error::InvalidEvent(format!(
                    "categories must be an array, got {other}"
                )));
            }
        };
        catalogue::draft_from(
            id,
            name,
            &quotas,
            categories,
            self.max_per_customer.as_ref(),
            self.customer_required.as_ref(),
        )
    }

    /// The request that asks vacancy for `draft`.
    pub fn from_draft(draft: &EventDraft) -> Self {
        let (quotas, categories) = catalogue::draft_json(draft);
        Self {
            id: Some(draft.id.as_str().to_owned()),
            name: Some(draft.name.to_string()),
            capacity: None,
            quotas: Some(quotas),
            categories: Some(categories),
            max_per_customer: draft.max_per_customer.map(Value::from),
            customer_required: Some(Value::Bool(draft.customer_required)),
        }
    }
}

/// An event and its counts: `available + held + sold = capacity`. The top-level counts are those
/// of the event's first quota: all of its tickets for an event of one quota (every event made
/// with a `capacity`); the venue's, as organisers list it first, for an event of several.
/// One event (`GET /api/v1/events/{id}`, and what admin changes answer) also shows its
/// `quotas`, `categories` and customer rules; the list leaves them out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventResponse {
    pub id: String,
    pub name: String,
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Vec<QuotaResponse>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<CategoryResponse>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_customer: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_required: Option<bool>,
}

/// One page of events, in id order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    pub events: Vec<EventResponse>,
    /// Pass as `cursor` to read the next page; `null` on the last page.
    // `default`: a vacancy that predates paging sends the whole list and no cursor.
    #[serde(default)]
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The query of `GET /api/v1/events`: `?limit=N&cursor=C`, both optional. Values are kept as
/// text so a bad one gets the precise `invalid_query` answer; a parameter the route does not take
/// is refused rather than ignored, so a misspelt `limit` cannot pass unnoticed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl EventsParams {
    pub fn into_query(self) -> Result<PageQuery, Error> {
        Ok(PageQuery {
            after: self.cursor.as_deref().map(parse_cursor).transpose()?,
            limit: match self.limit.as_deref() {
                Some(limit) => PageLimit::parse(limit)?,
                None => PageLimit::default(),
            },
        })
    }
}

/// Reads a body field that is present as `Some`, even when it is `null`: of two fields only one of
/// which a request may send, one sent as `null` is still sent.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The path and query that ask for `query`'s page, as the ticket service asks vacancy.
pub fn events_path(query: &PageQuery) -> String {
    let mut path = format!("/api/v1/events?limit={}", query.limit.get());
    if let Some(after) = &query.after {
        path.push_str("&cursor=");
        path.push_str(&cursor(after));
    }
    path
}

/// The `cursor` that continues a list after `after`: that event's id. Any id is a valid cursor
/// (the page is the events after it in id order, whether or not it names an event), so a client
/// or a generated one can never hold a cursor the service would refuse.
pub fn cursor(after: &EventId) -> String {
    after.as_str().to_owned()
}

/// The event id a `cursor` continues after.
pub fn parse_cursor(raw: &str) -> Result<EventId, Error> {
    EventId::parse(raw).map_err(|_| {
        Error::InvalidQuery(format!(
            "cursor '{raw}' is not an event id; pass `next_cursor` from the previous page, or no \
             cursor for the first page"
        ))
    })
}

impl From<&EventsPage> for EventsResponse {
    fn from(page: &EventsPage) -> Self {
        Self {
            events: page.events.iter().map(EventResponse::summary).collect(),
            next_cursor: page.next_after.as_ref().map(cursor),
        }
    }
}

impl EventsResponse {
    pub fn into_domain(self) -> Result<EventsPage, Error> {
        let next_after = self
            .next_cursor
            .as_deref()
            .map(parse_cursor)
            .transpose()
            .map_err(|e| Error::Unavailable(format!("vacancy sent an unreadable cursor: {e}")))?;
        Ok(EventsPage {
            events: self
                .events
                .into_iter()
                .map(EventResponse::into_domain)
                .collect::<Result<_, _>>()?,
            next_after,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderResponse {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: ReservationId,
    pub event: String,
    /// Tickets in all lines.
    pub qty: u32,
    /// What was bought, by category, at the price then.
    pub lines: Vec<LineResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The lines' prices added up; absent when no line is priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_price: Option<PriceBody>,
    /// `held`, `confirmed`, `cancelled`, `released` or `expired`.
    #[schema(value_type = String, example = "confirmed")]
    pub status: OrderStatus,
    /// Tickets available right after the order (or hold) was accepted.
    pub remaining: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// False when the order was already cancelled and nothing changed.
    pub cancelled: bool,
    pub message: String,
    pub order: OrderResponse,
}

/// `GET /`: what is running.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AboutResponse {
    /// Always `ticketd`.
    pub service: String,
    /// `monolith`, `ticket` or `vacancy`.
    #[schema(example = "monolith")]
    pub mode: String,
    pub version: String,
    /// The store's id, when the inventory shares its store with other replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `healthy`: the process answers.
    #[schema(example = "healthy")]
    pub status: String,
    #[schema(example = "monolith")]
    pub mode: String,
}

/// `GET /ready`: `ready`, or `unavailable` with the reason in `error`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    #[schema(example = "ready")]
    pub status: String,
    #[schema(example = "monolith")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl EventResponse {
    /// The event's top-level counts alone, as the list shows it.
    pub fn summary(event: &Event) -> Self {
        let stock = event.stock();
        Self {
            id: event.id.as_str().to_owned(),
            name: event.name.to_string(),
            capacity: stock.capacity,
            available: stock.available,
            held: stock.held,
            sold: stock.sold,
            quotas: None,
            categories: None,
            max_per_customer: None,
            customer_required: None,
        }
    }

    /// The whole event, with whether each category is on sale at `now_ms`.
    pub fn detail(event: &Event, now_ms: i64) -> Self {
        Self {
            quotas: Some(catalogue::quota_responses(event)),
            categories: Some(catalogue::category_responses(event, now_ms)),
            max_per_customer: event.catalogue.max_per_customer,
            customer_required: Some(event.catalogue.customer_required),
            ..Self::summary(event)
        }
    }

    /// Vacancy's answer as the event: whole from a detail, its top-level counts alone (as one
    /// `general` quota) from a summary, which is all the list shows.
    pub fn into_domain(self) -> Result<Event, Error> {
        let unreadable =
            |e: Error| Error::Unavailable(format!("vacancy sent an unreadable event: {e}"));
        let headline = Stock {
            capacity: self.capacity,
            available: self.available,
            held: self.held,
            sold: self.sold,
        };
        let id = event_id_from_vacancy(&self.id)?;
        let (Some(quotas), Some(categories)) = (self.quotas, self.categories) else {
            let mut event = Event::single(id, self.name.into(), headline.capacity);
            *event.stock_mut() = headline;
            return Ok(event);
        };
        let quotas = quotas
            .into_iter()
            .map(|quota| {
                Ok(Quota {
                    id: QuotaId::parse(&quota.id)?,
                    stock: Stock {
                        capacity: quota.size,
                        available: quota.available,
                        held: quota.held,
                        sold: quota.sold,
                    },
                })
            })
            .collect::<Result<Vec<_>, Error>>()
            .map_err(unreadable)?;
        let categories = categories
            .into_iter()
            .map(|category| {
                let indexes = crate::domain::quota_indexes(
                    &quotas,
                    category.quotas.iter().map(String::as_str),
                )?;
                let time = |raw: &Option<String>| raw.as_deref().map(parse_timestamp).transpose();
                Ok(Category {
                    id: CategoryId::parse(&category.id)?,
                    name: category.name.into(),
                    quotas: indexes,
                    price: category
                        .price
                        .as_ref()
                        .map(catalogue::price_from_vacancy)
                        .transpose()?,
                    open: category.open,
                    window: SalesWindow::new(
                        time(&category.sales_start)?,
                        time(&category.sales_end)?,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()
            .map_err(unreadable)?;
        let event = Event {
            id,
            name: self.name.into(),
            quotas,
            catalogue: std::sync::Arc::new(Catalogue {
                categories,
                max_per_customer: self.max_per_customer,
                customer_required: self.customer_required.unwrap_or(false),
            }),
        };
        if !event.is_consistent() || event.stock() != headline {
            return Err(Error::Unavailable(format!(
                "vacancy sent counts of '{}' that do not add up",
                event.id
            )));
        }
        Ok(event)
    }
}

impl From<&Order> for OrderResponse {
    fn from(order: &Order) -> Self {
        Self {
            order_id: order.id,
            event: order.event.as_str().to_owned(),
            qty: order.qty,
            lines: line_responses(&order.lines),
            customer: order.customer.as_ref().map(CustomerId::to_string),
            total_price: catalogue::total_price_body(&order.lines),
            status: order.status,
            remaining: order.remaining,
            created_at: timestamp(order.created_at_ms),
            updated_at: timestamp(order.updated_at_ms),
            expires_at: order.expires_at_ms.map(timestamp),
        }
    }
}

impl OrderResponse {
    pub fn into_domain(self) -> Result<Order, Error> {
        let lines = catalogue::lines_from_vacancy(&self.lines)?;
        let total: u64 = lines.iter().map(|line| u64::from(line.qty)).sum();
        if lines.is_empty() || total != u64::from(self.qty) {
            return Err(Error::Unavailable(format!(
                "vacancy sent order {} with lines that do not add up to its qty",
                self.order_id
            )));
        }
        let customer = self
            .customer
            .as_deref()
            .map(CustomerId::parse)
            .transpose()
            .map_err(|e| Error::Unavailable(format!("vacancy sent an unreadable customer: {e}")))?;
        Ok(Order {
            id: self.order_id,
            event: event_id_from_vacancy(&self.event)?,
            qty: self.qty,
            lines: lines.into(),
            customer,
            status: self.status,
            remaining: self.remaining,
            created_at_ms: parse_timestamp(&self.created_at)?,
            updated_at_ms: parse_timestamp(&self.updated_at)?,
            expires_at_ms: self
                .expires_at
                .as_deref()
                .map(parse_timestamp)
                .transpose()?,
        })
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, e.g. `2026-11-24T18:40:11.123Z`.
pub fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An event id in vacancy's answer. One the ticket service cannot read is vacancy's fault, not
/// the client's: vacancy is unavailable to it, whatever the client asked.
fn event_id_from_vacancy(raw: &str) -> Result<EventId, Error> {
    EventId::parse(raw)
        .map_err(|e| Error::Unavailable(format!("vacancy sent an unreadable event id: {e}")))
}

/// An optional whole number from a body field (absent or `null`: `None`); whether it is in range
/// is the caller's call. A number past `i64` is kept as `i64::MAX`, so it is "over the limit".
pub fn whole(field: &str, value: Option<&Value>) -> Result<Option<i64>, Error> {
    let whole = |value: &Value| match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates, so 1e300 becomes i64::MAX: over the limit, as it should be.
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => whole(value).map(Some).ok_or_else(|| {
            Error::InvalidQuantity(format!("{field} must be a whole number, got {value}"))
        }),
    }
}

/// The times [`parse_timestamp_field`] takes, as a regular expression: RFC 3339 (a day that does
/// not exist in its month aside), in the years 0001 to 9998, so that whatever its offset the
/// time is one [`timestamp`] can write back.
pub const TIMESTAMP_PATTERN: &str = "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// A time a client wrote (RFC 3339), as milliseconds since the Unix epoch.
pub fn parse_timestamp_field(field: &str, raw: &str) -> Result<i64, Error> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        // Only a time that can be shown again: years 0000 to 9999 once moved to UTC.
        .filter(|ms| !timestamp(*ms).is_empty())
        .ok_or_else(|| {
            Error::InvalidEvent(format!(
                "{field} must be a time as RFC 3339 writes it (e.g. 2027-05-01T10:00:00Z), \
                 from year 0001 to 9998, got '{raw}'"
            ))
        })
}

fn parse_timestamp(raw: &str) -> Result<i64, Error> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| Error::Unavailable(format!("unreadable timestamp '{raw}' from vacancy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times of every shape the document's pattern allows are read, whatever their offset,
    /// precision or year, as long as their day exists (the fuzz tests send the rest).
    #[test]
    fn times_of_every_shape_the_pattern_allows_are_read() {
        for raw in [
            "2027-05-01T10:00:00Z",
            "0001-01-01T00:00:00+23:59",
            "9998-12-31T23:59:59.123456789-23:59",
            "0589-12-31T06:54:27.19-20:23",
            "2028-02-29T00:00:00-00:00",
        ] {
            assert!(parse_timestamp_field("t", raw).is_ok(), "{raw}");
        }
        for raw in [
            "",
            "2027-05-01",
            "2027-05-01T10:00:00",
            "2027-02-30T00:00:00Z",
            // Found reading the window's round trip: these were taken, then shown as "".
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+01:00",
        ] {
            let error = parse_timestamp_field("t", raw).unwrap_err();
            assert_eq!(error.code(), "invalid_event", "{raw}");
        }
    }

    #[test]
    fn timestamps_round_trip_to_the_millisecond() {
        let ms = 1_795_000_000_123;
        let text = timestamp(ms);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse_timestamp(&text).unwrap(), ms);
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_is_no_event_id() {
        for id in ["default", "a", &"Z_-9".repeat(16)] {
            let id = EventId::parse(id).unwrap();
            assert_eq!(parse_cursor(&cursor(&id)).unwrap(), id);
        }
        let too_long = "a".repeat(EventId::LEN_MAX + 1);
        for bad in ["", "a/b", "a b", "é", too_long.as_str()] {
            let error = parse_cursor(bad).unwrap_err();
            assert_eq!(error.code(), "invalid_query", "{bad:?}");
        }
    }
}
