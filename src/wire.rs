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

/// Reads a request body that must be a JSON object. (A derived `Deserialize` alone would also take
/// `[5]` as `{"qty": 5}`, since serde lets structs come from arrays.)
pub fn from_object<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    serde_json::from_value(body).map_err(|e| format!("the body is not as expected: {e}"))
}

/// Body of `purchase`, `reserve`, `holds` and `stock`. Numbers are kept raw so a fractional,
/// negative or missing one gets the precise `invalid_quantity` answer instead of a parse error.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct QtyRequest {
    /// Tickets: a whole number from 1 to `max_per_order`.
    #[serde(default)]
    #[schema(value_type = i64, example = 2)]
    pub qty: Option<Value>,
    /// `holds` and `reserve`: how long to hold, in seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, example = 300)]
    pub ttl_seconds: Option<Value>,
    /// `reserve` only: the caller's id for this reservation (a UUID); made up when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateEventRequest {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`; made up when absent.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(example = "Spring Gala")]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = i64, example = 500)]
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

/// The `cursor` that continues a list after `after`: the id, hex-encoded. Clients are told it is
/// opaque, so what it holds can change without breaking them; hex keeps it URL-safe as it is.
pub fn cursor(after: &EventId) -> String {
    after.as_str().bytes().map(|b| format!("{b:02x}")).collect()
}

/// The event id a `cursor` continues after.
pub fn parse_cursor(raw: &str) -> Result<EventId, Error> {
    let invalid = || {
        Error::InvalidQuery(format!(
            "cursor '{raw}' is not one this service gave out; pass `next_cursor` from the \
             previous page, or no cursor for the first page"
        ))
    };
    // An id is ASCII, so its hex is too: byte offsets below are character boundaries.
    if raw.is_empty() || !raw.len().is_multiple_of(2) || !raw.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..raw.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&raw[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid())?;
    EventId::parse(&id).map_err(|_| invalid())
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
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
            id: EventId::parse(&self.id)?,
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
            event: EventId::parse(&self.event)?,
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
    fn cursors_round_trip_and_refuse_what_was_never_given_out() {
        for id in ["default", "a", &"Z_-9".repeat(16)] {
            let id = EventId::parse(id).unwrap();
            assert_eq!(parse_cursor(&cursor(&id)).unwrap(), id);
        }
        // Empty, odd length, not hex, not an id ("/"), not UTF-8, non-ASCII (even in length, so
        // it would split a character), too long an id.
        let too_long = "61".repeat(EventId::LEN_MAX + 1);
        for bad in ["", "6", "zz", "2f", "ff", "aéb", too_long.as_str()] {
            let error = parse_cursor(bad).unwrap_err();
            assert_eq!(error.code(), "invalid_query", "{bad:?}");
        }
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(from_object::<QtyRequest>(serde_json::json!([5])).is_err());
        let body: QtyRequest = from_object(serde_json::json!({"qty": 5})).unwrap();
        assert_eq!(body.qty, Some(serde_json::json!(5)));
    }
}
