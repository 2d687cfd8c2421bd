//! The public error codes: the table of every `code` an error answer can carry, and how the ticket
//! service reads vacancy's error answers back.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{CategoryId, Error, SalesWindow};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// One of [`ErrorCode`]'s names.
    pub code: String,
    pub message: String,
    /// `customer_limit_reached`: how many more tickets the customer may still take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_still: Option<u64>,
    /// `not_on_sale`: the category, and its sales window (`null` ends are open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_end: Option<String>,
    /// `cursor_expired`: the number of the oldest change still kept (or of the next to come,
    /// when none is); read on from `after` = this minus 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<u64>,
    /// `cursor_ahead`: the number of the last change committed (0 if none ever was); read on
    /// from `after` = this (or 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
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
    UnknownWaitlistEntry,
    TicketsAvailable,
    InvalidWebhook,
    UnknownWebhook,
    WebhooksLimitReached,
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
    InvalidCustomer,
    CustomerRequired,
    UnknownCategory,
    CategoryNotFound,
    UnknownQuota,
    NotOnSale,
    CustomerLimitReached,
    QuotaInUse,
    CursorExpired,
    CursorAhead,
    Internal,
    Unavailable,
    Timeout,
    Overloaded,
    StorageFailure,
}

impl ErrorCode {
    /// Every code, for reading one back and for the tests that hold README.md to the code.
    pub const ALL: [ErrorCode; 43] = [
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
        ErrorCode::UnknownWaitlistEntry,
        ErrorCode::TicketsAvailable,
        ErrorCode::InvalidWebhook,
        ErrorCode::UnknownWebhook,
        ErrorCode::WebhooksLimitReached,
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
        ErrorCode::InvalidCustomer,
        ErrorCode::CustomerRequired,
        ErrorCode::UnknownCategory,
        ErrorCode::CategoryNotFound,
        ErrorCode::UnknownQuota,
        ErrorCode::NotOnSale,
        ErrorCode::CustomerLimitReached,
        ErrorCode::QuotaInUse,
        ErrorCode::CursorExpired,
        ErrorCode::CursorAhead,
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
            ErrorCode::UnknownWaitlistEntry => "unknown_waitlist_entry",
            ErrorCode::TicketsAvailable => "tickets_available",
            ErrorCode::InvalidWebhook => "invalid_webhook",
            ErrorCode::UnknownWebhook => "unknown_webhook",
            ErrorCode::WebhooksLimitReached => "webhooks_limit_reached",
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
            ErrorCode::InvalidCustomer => "invalid_customer",
            ErrorCode::CustomerRequired => "customer_required",
            ErrorCode::UnknownCategory => "unknown_category",
            ErrorCode::CategoryNotFound => "category_not_found",
            ErrorCode::UnknownQuota => "unknown_quota",
            ErrorCode::NotOnSale => "not_on_sale",
            ErrorCode::CustomerLimitReached => "customer_limit_reached",
            ErrorCode::QuotaInUse => "quota_in_use",
            ErrorCode::CursorExpired => "cursor_expired",
            ErrorCode::CursorAhead => "cursor_ahead",
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
    /// Adds what a client needs besides the message to act on `error`.
    pub fn add_context(&mut self, error: &Error) {
        match error {
            Error::CustomerLimitReached { may_still, .. } => self.may_still = Some(*may_still),
            Error::CursorExpired { oldest, .. } => self.oldest = Some(*oldest),
            Error::CursorAhead { last, .. } => self.last = Some(*last),
            Error::NotOnSale {
                category, window, ..
            } => {
                self.category = Some(category.to_string());
                self.sales_start = window.start_ms.map(super::timestamp);
                self.sales_end = window.end_ms.map(super::timestamp);
            }
            _ => {}
        }
    }

    /// Vacancy's error as the ticket service's own, so that the ticket service answers a remote
    /// failure exactly as the monolith answers the local one (`http::error` sends each of these
    /// back with the code it came with). What is no fault of the client's request to the ticket
    /// service (vacancy refusing this service's credentials, a body or route vacancy did not
    /// take, vacancy's own time limit) is vacancy being unavailable to it.
    pub fn into_domain(self) -> Error {
        let ErrorDetail {
            code,
            message,
            may_still,
            category,
            sales_start,
            sales_end,
            oldest,
            last,
        } = self;
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
            ErrorCode::InvalidCustomer => Error::InvalidCustomer(message),
            ErrorCode::CustomerRequired => Error::CustomerRequired(message),
            ErrorCode::UnknownCategory => Error::UnknownCategory(message),
            ErrorCode::CategoryNotFound => Error::CategoryNotFound(message),
            ErrorCode::UnknownQuota => Error::UnknownQuota(message),
            ErrorCode::QuotaInUse => Error::QuotaInUse(message),
            ErrorCode::CursorExpired => match oldest {
                Some(oldest) => Error::CursorExpired { message, oldest },
                None => Error::Unavailable(format!(
                    "vacancy sent a cursor_expired without the oldest change kept: {message}"
                )),
            },
            ErrorCode::CursorAhead => match last {
                Some(last) => Error::CursorAhead { message, last },
                None => Error::Unavailable(format!(
                    "vacancy sent a cursor_ahead without the last change: {message}"
                )),
            },
            ErrorCode::CustomerLimitReached => Error::CustomerLimitReached {
                message,
                may_still: may_still.unwrap_or(0),
            },
            ErrorCode::NotOnSale => {
                let time = |raw: Option<String>| {
                    raw.and_then(|raw| super::parse_timestamp_field("sales window", &raw).ok())
                };
                let category = category
                    .as_deref()
                    .and_then(|id| CategoryId::parse(id).ok());
                let window = SalesWindow::new(time(sales_start), time(sales_end)).ok();
                match (category, window) {
                    (Some(category), Some(window)) => Error::NotOnSale {
                        message,
                        category,
                        window,
                    },
                    _ => Error::Unavailable(format!(
                        "vacancy sent an unreadable not_on_sale: {message}"
                    )),
                }
            }
            ErrorCode::EventExists => Error::EventExists(message),
            ErrorCode::UnknownEvent => Error::UnknownEvent(message),
            ErrorCode::UnknownOrder => Error::UnknownOrder(message),
            ErrorCode::UnknownWaitlistEntry => Error::UnknownEntry(message),
            ErrorCode::TicketsAvailable => Error::TicketsAvailable(message),
            ErrorCode::InvalidWebhook => Error::InvalidWebhook(message),
            ErrorCode::UnknownWebhook => Error::UnknownWebhook(message),
            ErrorCode::WebhooksLimitReached => Error::WebhooksLimitReached(message),
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
