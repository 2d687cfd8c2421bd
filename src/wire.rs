//! The JSON shapes of the HTTP API, shared by the routes that send them and the remote client that
//! reads them back, so the two can never drift apart.

use serde::{Deserialize, Serialize};

use crate::domain::{ReservationId, Stock};

/// Body of `purchase` and `reserve`. `qty` is kept raw so a fractional, negative or missing
/// quantity gets the precise `invalid_quantity` answer instead of a generic parse error.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct QtyRequest {
    #[serde(default)]
    pub qty: Option<serde_json::Value>,
    /// Only for `reserve`: the caller's id for this reservation (a UUID); made up when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
}

impl QtyRequest {
    /// Reads a request body, which must be a JSON object. (A derived `Deserialize` alone would
    /// also take `[5]` as `{"qty": 5}`, since serde lets structs come from arrays.)
    pub fn from_json(body: serde_json::Value) -> Result<Self, String> {
        if !body.is_object() {
            return Err("the body must be a JSON object like {\"qty\": 2}".into());
        }
        serde_json::from_value(body).map_err(|e| format!("the body is not as expected: {e}"))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveResponse {
    pub success: bool,
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PurchaseResponse {
    pub success: bool,
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<ReservationId>,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AvailableResponse {
    pub qty: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EventResponse {
    pub id: String,
    #[serde(flatten)]
    pub stock: Stock,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
