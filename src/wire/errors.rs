//! The public error codes: the table of every `code` an error answer can carry, and how the ticket
//! service reads vacancy's error answers back.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Error;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// One of [`ErrorCode`]'s names.
    pub code: String,
    pub message: String,
}

/// Every `code` an error answer can carry: the API's names for what went wrong, as README.md's
/// error table lists them. Which error is sent as which code, and with which status, is decided
/// in one place (`http::error`); the ticket service reads vacancy's codes back with
/// [`ErrorDetail::into_domain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidBody,
    InvalidContentType,
    InvalidIdempotencyKey,
    InvalidQuery,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    UnknownEvent,
    UnknownOrder,
    MethodNotAllowed,
    EventExists,
    WrongState,
    CapacityExceeded,
    HoldExpired,
    BodyTooLarge,
    InvalidQuantity,
    QuantityOverLimit,
    InvalidEvent,
    InvalidEventId,
    InvalidReservationId,
    ReservationConflict,
    IdempotencyKeyReused,
    Internal,
    Unavailable,
    Timeout,
    Overloaded,
    StorageFailure,
}

impl ErrorCode {
    /// Every code, for reading one back and for the tests that hold README.md to the code.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::InvalidBody,
        ErrorCode::InvalidContentType,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::InvalidQuery,
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UnknownEvent,
        ErrorCode::UnknownOrder,
        ErrorCode::MethodNotAllowed,
        ErrorCode::EventExists,
        ErrorCode::WrongState,
        ErrorCode::CapacityExceeded,
        ErrorCode::HoldExpired,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidQuantity,
        ErrorCode::QuantityOverLimit,
        ErrorCode::InvalidEvent,
        ErrorCode::InvalidEventId,
        ErrorCode::InvalidReservationId,
        ErrorCode::ReservationConflict,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Overloaded,
        ErrorCode::StorageFailure,
    ];

    /// The name sent in `{"error": {"code": ...}}`; stable, clients match on it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidContentType => "invalid_content_type",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::UnknownOrder => "unknown_order",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::EventExists => "event_exists",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::CapacityExceeded => "capacity_exceeded",
            ErrorCode::HoldExpired => "hold_expired",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidQuantity => "invalid_quantity",
            ErrorCode::QuantityOverLimit => "quantity_over_limit",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::InvalidEventId => "invalid_event_id",
            ErrorCode::InvalidReservationId => "invalid_reservation_id",
            ErrorCode::ReservationConflict => "reservation_conflict",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::StorageFailure => "storage_failure",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == raw)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorDetail {
    /// Vacancy's error as the ticket service's own, so that the ticket service answers a remote
    /// failure exactly as the monolith answers the local one (`http::error` sends each of these
    /// back with the code it came with). What is no fault of the client's request to the ticket
    /// service (vacancy refusing this service's credentials, a body or route vacancy did not
    /// take, vacancy's own time limit) is vacancy being unavailable to it.
    pub fn into_domain(self) -> Error {
        let ErrorDetail { code, message } = self;
        let Some(known) = ErrorCode::parse(&code) else {
            return Error::Unavailable(format!("{code}: {message}"));
        };
        match known {
            ErrorCode::InvalidQuantity => Error::InvalidQuantity(message),
            ErrorCode::QuantityOverLimit => Error::OverLimit(message),
            ErrorCode::InvalidEventId => Error::InvalidEventId(message),
            ErrorCode::InvalidReservationId => Error::InvalidReservationId(message),
            ErrorCode::InvalidEvent => Error::InvalidEvent(message),
            ErrorCode::InvalidIdempotencyKey => Error::InvalidIdempotencyKey(message),
            ErrorCode::InvalidQuery => Error::InvalidQuery(message),
            ErrorCode::IdempotencyKeyReused => Error::IdempotencyKeyReused(message),
            ErrorCode::EventExists => Error::EventExists(message),
            ErrorCode::UnknownEvent => Error::UnknownEvent(message),
            ErrorCode::UnknownOrder => Error::UnknownOrder(message),
            ErrorCode::HoldExpired => Error::HoldExpired(message),
            ErrorCode::WrongState => Error::WrongState(message),
            ErrorCode::CapacityExceeded => Error::CapacityExceeded(message),
            ErrorCode::ReservationConflict => Error::ReservationConflict(message),
            ErrorCode::Overloaded => Error::Overloaded,
            ErrorCode::StorageFailure => Error::Storage(message),
            ErrorCode::Timeout => Error::Unavailable(message),
            ErrorCode::Unauthorized | ErrorCode::Forbidden => Error::Unavailable(format!(
                "vacancy refused this service's credentials: {message}"
            )),
            ErrorCode::InvalidBody
            | ErrorCode::InvalidContentType
            | ErrorCode::BadRequest
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::BodyTooLarge
            | ErrorCode::Internal
            | ErrorCode::Unavailable => Error::Unavailable(format!("{code}: {message}")),
        }
    }
}
