//! The JSON shapes of the HTTP API, shared by the routes that send them and the remote client that
//! reads them back, so the two can never drift apart. Conversions between these and the domain
//! types live here too, in one place.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::domain::{Error, Event, EventId, Order, OrderStatus, ReservationId, Stock};

/// A request body: one JSON object in which no object, at any depth, names a key twice. Every
/// route that takes a body reads it as this, so the rule holds for all of them.
///
/// JSON parsers disagree about repeated keys (serde_json keeps the last, many keep the first), and
/// that disagreement gets requests past checks: a gateway that reads the first `qty` of
/// `{"qty":1,"qty":2}` approves one ticket while we would sell two. Refusing the repeat leaves no
/// reading to disagree on. It also has to be a JSON object: a derived `Deserialize` alone would
/// take `[5]` as `{"qty": 5}`, since serde lets structs come from arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(UniqueKeys)? {
            Value::Object(object) => Ok(Self(object)),
            _ => Err(de::Error::custom("the body must be a JSON object")),
        }
    }
}

/// Builds a `Value` as serde_json's own visitor does, except that a key seen twice in one object
/// is an error naming it.
struct UniqueKeys;

/// Any JSON value, read with [`UniqueKeys`]; what arrays and objects hold.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys).map(Unique)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so this is always a number.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {key:?}: each key may appear once per object"
                )));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Reads a request body as `T`.
pub fn from_object<T: serde::de::DeserializeOwned>(body: JsonObject) -> Result<T, String> {
    serde_json::from_value(Value::Object(body.0))
        .map_err(|e| format!("the body is not as expected: {e}"))
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    pub events: Vec<EventResponse>,
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
    fn bodies_must_be_objects() {
        for bad in ["[5]", "5", "\"qty\"", "null"] {
            let error = serde_json::from_str::<JsonObject>(bad).unwrap_err();
            assert!(error.to_string().contains("JSON object"), "{bad}: {error}");
        }
        let object = serde_json::from_str::<JsonObject>(r#"{"qty": 5}"#).unwrap();
        let body: QtyRequest = from_object(object).unwrap();
        assert_eq!(body.qty, Some(serde_json::json!(5)));
    }

    #[test]
    fn a_key_repeated_at_any_depth_is_refused_by_name() {
        for (body, key) in [
            (r#"{"qty":1,"qty":2}"#, "qty"),
            (r#"{"a":{"b":1,"c":{"d":1,"d":1}}}"#, "d"),
            (r#"{"a":[1,{"e":null,"e":null}]}"#, "e"),
            (r#"{"\u0071ty":1,"qty":2}"#, "qty"),
        ] {
            let error = serde_json::from_str::<JsonObject>(body).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&format!("duplicate key \"{key}\"")),
                "{body}: {message}"
            );
        }
    }

    #[test]
    fn bodies_without_repeats_read_as_serde_json_reads_them() {
        let text = r#"{"qty":2,"ttl_seconds":1.5e3,"big":18446744073709551615,"neg":-7,
            "s":"\u00e9","n":null,"t":true,"list":[{"a":1},{"a":2}],"deep":{"a":{"a":[]}}}"#;
        let strict = serde_json::from_str::<JsonObject>(text).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Value::Object(strict.0), plain);
    }
}
