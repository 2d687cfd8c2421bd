pub mod meta;
pub mod purchase;
pub mod reserve;
pub mod stock;

use serde_json::Value;

use actix_web::web;

use crate::domain::{Error, EventId};
use crate::http::ApiError;
use crate::wire::QtyRequest;

/// The body of `purchase` and `reserve`: a JSON object.
fn qty_request(body: web::Json<Value>) -> Result<QtyRequest, ApiError> {
    QtyRequest::from_json(body.into_inner()).map_err(ApiError::InvalidBody)
}

/// The `qty` of a request body as a whole number; whether it is in range is the service's call.
fn raw_qty(qty: Option<&Value>) -> Result<i64, Error> {
    let whole = |qty: &Value| match qty {
        Value::Number(n) => n
            .as_i64()
            // Past i64: certainly over any limit; keep it so the answer says "over the limit".
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates, so 1e300 becomes i64::MAX: over the limit, as it should be.
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    };
    match qty {
        None | Some(Value::Null) => Err(Error::InvalidQuantity("qty is required".into())),
        Some(qty) => whole(qty).ok_or_else(|| {
            Error::InvalidQuantity(format!("qty must be a whole number, got {qty}"))
        }),
    }
}

fn event_id(raw: &str) -> Result<EventId, Error> {
    EventId::parse(raw).map_err(|_| Error::UnknownEvent(format!("unknown event '{raw}'")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_must_be_whole_numbers() {
        assert_eq!(raw_qty(Some(&json!(3))), Ok(3));
        assert_eq!(raw_qty(Some(&json!(-3))), Ok(-3));
        assert_eq!(raw_qty(Some(&json!(2.0))), Ok(2));
        assert_eq!(raw_qty(Some(&json!(u64::MAX))), Ok(i64::MAX));
        assert_eq!(raw_qty(Some(&json!(1e300))), Ok(i64::MAX));
        for bad in [json!(1.5), json!("2"), json!(true), json!([1]), json!({})] {
            assert!(raw_qty(Some(&bad)).is_err(), "{bad}");
        }
        assert!(raw_qty(None).is_err());
        assert!(raw_qty(Some(&Value::Null)).is_err());
    }
}
