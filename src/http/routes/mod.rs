pub(crate) mod changes;
pub(crate) mod events;
pub(crate) mod meta;
pub(crate) mod orders;
pub(crate) mod purchase;
pub(crate) mod reserve;
pub(crate) mod waitlist;
pub(crate) mod webhooks;

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Mode;
use crate::domain::{Error, EventId, IdempotencyKey};
use crate::http::ApiError;
use crate::wire::{CALL_ID_HEADER, IDEMPOTENCY_KEY_HEADER, JsonObject};

// Header names as values: looking a header up by a `&str` that is not a standard name builds
// (and allocates) a `HeaderName` on every request.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(IDEMPOTENCY_KEY_HEADER);
const CALL_ID: HeaderName = HeaderName::from_static(CALL_ID_HEADER);

/// A JSON object body as `T`. Taking `JsonObject` (not any `Value`) is what keeps a repeated key
/// or a non-object out of every route.
fn body<T: DeserializeOwned>(raw: web::Json<JsonObject>) -> Result<T, ApiError> {
    crate::wire::from_object(raw.into_inner()).map_err(ApiError::InvalidBody)
}

/// A required whole number from a body field; whether it is in range is the service's call.
fn whole_number(field: &str, value: Option<&Value>) -> Result<i64, Error> {
    optional_whole_number(field, value)?
        .ok_or_else(|| Error::InvalidQuantity(format!("{field} is required")))
}

/// An optional whole number from a body field (absent or `null`: `None`).
fn optional_whole_number(field: &str, value: Option<&Value>) -> Result<Option<i64>, Error> {
    crate::wire::whole(field, value)
}

fn event_id(raw: &str) -> Result<EventId, Error> {
    EventId::parse(raw).map_err(|_| Error::UnknownEvent(format!("unknown event '{raw}'")))
}

/// The request's `Idempotency-Key`, if it sent one. Vacancy also takes the ticket service's call
/// id in its place (a change the client sent without a key); everywhere else that header means
/// nothing, so no client can reach the keys made for calls.
fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, Error> {
    let on_vacancy = request
        .app_data::<web::Data<Mode>>()
        .is_some_and(|mode| *mode.as_ref() == Mode::Vacancy);
    let headers = request.headers();
    let call_id = headers.get(CALL_ID).filter(|_| on_vacancy);
    match (headers.get(IDEMPOTENCY_KEY), call_id) {
        (None, None) => Ok(None),
        (Some(key), None) => {
            let key = key.to_str().map_err(|_| {
                Error::InvalidIdempotencyKey("Idempotency-Key must be visible ASCII".into())
            })?;
            IdempotencyKey::parse(key).map(Some)
        }
        (None, Some(id)) => id
            .to_str()
            .ok()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(|id| Some(IdempotencyKey::for_call(id)))
            .ok_or_else(|| {
                Error::InvalidIdempotencyKey(format!("{CALL_ID_HEADER} must be a UUID"))
            }),
        (Some(_), Some(_)) => Err(Error::InvalidIdempotencyKey(format!(
            "send Idempotency-Key or {CALL_ID_HEADER}, not both"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_must_be_whole_numbers() {
        assert_eq!(whole_number("qty", Some(&json!(3))), Ok(3));
        assert_eq!(whole_number("qty", Some(&json!(-3))), Ok(-3));
        assert_eq!(whole_number("qty", Some(&json!(2.0))), Ok(2));
        assert_eq!(whole_number("qty", Some(&json!(u64::MAX))), Ok(i64::MAX));
        assert_eq!(whole_number("qty", Some(&json!(1e300))), Ok(i64::MAX));
        for bad in [json!(1.5), json!("2"), json!(true), json!([1]), json!({})] {
            assert!(whole_number("qty", Some(&bad)).is_err(), "{bad}");
        }
        assert!(whole_number("qty", None).is_err());
        assert!(whole_number("qty", Some(&Value::Null)).is_err());
    }
}
