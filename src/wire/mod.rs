//! The JSON shapes of the HTTP API, shared by the routes that send them and the remote client that
//! reads them back, so the two can never drift apart. Conversions between these and the domain
//! types live here too, in one place.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::domain::{
    Error, Event, EventId, EventsPage, Order, OrderStatus, PageLimit, PageQuery, ReservationId,
    Stock,
};

mod errors;
mod object;

pub use errors::{ErrorCode, ErrorDetail, ErrorResponse};
pub use object::{JsonObject, from_object};

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

/// Body of `purchase`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct PurchaseRequest {
    /// Tickets: a whole number from 1 to `max_per_order`.
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 1, example = 2)]
    pub qty: Option<Value>,
}

/// Body of `holds`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct HoldRequest {
    /// Tickets: a whole number from 1 to `max_per_order`.
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 1, example = 2)]
    pub qty: Option<Value>,
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
}

/// Body of `reserve`, the inventory's own operation.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ReserveRequest {
    /// Tickets: a whole number from 1 to `max_per_order`.
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 1, example = 2)]
    pub qty: Option<Value>,
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
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseResponse {
    pub success: bool,
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub order_id: Option<ReservationId>,
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
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AvailableResponse {
    pub qty: u64,
}

/// Body of `POST /api/v1/events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateEventRequest {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`; made up when absent or null.
    #[serde(default)]
    #[schema(min_length = 1, example = "spring-gala")]
    pub id: Option<String>,
    /// 1 to 200 characters, not all blank; the blanks around it are trimmed.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, example = "Spring Gala")]
    pub name: Option<String>,
    /// Tickets on sale: a whole number from 0 to the store's limit.
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 0, example = 500)]
    pub capacity: Option<Value>,
}

/// An event and its counts: `available + held + sold = capacity`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventResponse {
    pub id: String,
    pub name: String,
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
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
            events: page.events.iter().map(EventResponse::from).collect(),
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
    pub qty: u32,
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

impl From<&Event> for EventResponse {
    fn from(event: &Event) -> Self {
        Self {
            id: event.id.as_str().to_owned(),
            name: event.name.to_string(),
            capacity: event.stock.capacity,
            available: event.stock.available,
            held: event.stock.held,
            sold: event.stock.sold,
        }
    }
}

impl EventResponse {
    pub fn into_domain(self) -> Result<Event, Error> {
        Ok(Event {
            id: event_id_from_vacancy(&self.id)?,
            name: self.name.into(),
            stock: Stock {
                capacity: self.capacity,
                available: self.available,
                held: self.held,
                sold: self.sold,
            },
        })
    }
}

impl From<&Order> for OrderResponse {
    fn from(order: &Order) -> Self {
        Self {
            order_id: order.id,
            event: order.event.as_str().to_owned(),
            qty: order.qty,
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
        Ok(Order {
            id: self.order_id,
            event: event_id_from_vacancy(&self.event)?,
            qty: self.qty,
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

fn parse_timestamp(raw: &str) -> Result<i64, Error> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| Error::Unavailable(format!("unreadable timestamp '{raw}' from vacancy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
