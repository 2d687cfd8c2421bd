//! The repeated-key JSON object parser: every request body is read through it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PurchaseRequest;

    #[test]
    fn bodies_must_be_objects() {
        for bad in ["[5]", "5", "\"qty\"", "null"] {
            let error = serde_json::from_str::<JsonObject>(bad).unwrap_err();
            assert!(error.to_string().contains("JSON object"), "{bad}: {error}");
        }
        let object = serde_json::from_str::<JsonObject>(r#"{"qty": 5}"#).unwrap();
        let body: PurchaseRequest = from_object(object).unwrap();
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
