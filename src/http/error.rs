//! Every error answer, decided in one place: `{"error": {"code": "...", "message": "..."}}`.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

use crate::domain::Error;
use crate::wire::{ErrorDetail, ErrorResponse};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidContentType(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// An error status produced outside our handlers (no such route, wrong method...).
    #[error("{}", .0.canonical_reason().unwrap_or("error"))]
    Status(StatusCode),
}

/// Seconds a client is asked to wait before trying again after a 503. Every 503 is a passing
/// condition (a full queue, vacancy or the database away for a moment, a lock held elsewhere), and
/// clients that retry at once only deepen it; one second is long enough to let a queue drain and
/// short enough that a buyer hardly notices.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An answer with `status` and the headers that status always carries: `Retry-After` on 503, so
/// every client backs off the same way whichever part of ticketd refused it.
pub fn respond(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((RETRY_AFTER, RETRY_AFTER_SECONDS));
    }
    response
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Domain(error) => error.code(),
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidContentType(_) => "invalid_content_type",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::Status(StatusCode::NOT_FOUND) => "not_found",
            ApiError::Status(StatusCode::METHOD_NOT_ALLOWED) => "method_not_allowed",
            ApiError::Status(status) if status.is_server_error() => "internal",
            ApiError::Status(_) => "bad_request",
        }
    }

    /// Maps a failure to read a JSON body; `limit` is the configured body size limit.
    pub fn from_json(error: JsonPayloadError, limit: usize) -> Self {
        match error {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::BodyTooLarge(limit)
            }
            JsonPayloadError::ContentType => ApiError::InvalidContentType(
                "send the body as JSON with Content-Type: application/json".into(),
            ),
            JsonPayloadError::Deserialize(e) => {
                ApiError::InvalidBody(format!("the body is not the expected JSON object: {e}"))
            }
            other => ApiError::InvalidBody(format!("cannot read the request body: {other}")),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Domain(error) => match error {
                Error::InvalidQuantity(_)
                | Error::OverLimit(_)
                | Error::InvalidEventId(_)
                | Error::InvalidEvent(_)
                | Error::InvalidReservationId(_)
                | Error::ReservationConflict(_)
                | Error::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                Error::InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
                Error::UnknownEvent(_) | Error::UnknownOrder(_) => StatusCode::NOT_FOUND,
                Error::EventExists(_) | Error::WrongState(_) => StatusCode::CONFLICT,
                Error::HoldExpired(_) => StatusCode::GONE,
                Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                Error::Forbidden(_) => StatusCode::FORBIDDEN,
                Error::Overloaded
                | Error::Unavailable(_)
                | Error::Timeout(_)
                | Error::Storage(_)
                | Error::Contention(_) => StatusCode::SERVICE_UNAVAILABLE,
                Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::InvalidBody(_) | ApiError::InvalidContentType(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Status(status) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        respond(self.status_code()).json(ErrorResponse {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 503, whatever refused the request, tells the client when to come back; no other
    /// status does.
    #[test]
    fn every_503_carries_retry_after() {
        let why = || "why".to_owned();
        let errors = [
            Error::InvalidQuantity(why()),
            Error::OverLimit(why()),
            Error::InvalidEventId(why()),
            Error::InvalidReservationId(why()),
            Error::InvalidEvent(why()),
            Error::InvalidIdempotencyKey(why()),
            Error::IdempotencyKeyReused(why()),
            Error::EventExists(why()),
            Error::UnknownOrder(why()),
            Error::HoldExpired(why()),
            Error::WrongState(why()),
            Error::Unauthorized(why()),
            Error::Forbidden(why()),
            Error::UnknownEvent(why()),
            Error::ReservationConflict(why()),
            Error::Overloaded,
            Error::Unavailable(why()),
            Error::Timeout(5),
            Error::Storage(why()),
            Error::Contention(why()),
            Error::Internal(why()),
        ];
        let mut unavailable = 0;
        for error in errors.map(ApiError::from).into_iter().chain([
            ApiError::Status(StatusCode::SERVICE_UNAVAILABLE),
            ApiError::Status(StatusCode::NOT_FOUND),
            ApiError::InvalidBody(why()),
        ]) {
            let response = error.error_response();
            let retry_after = response.headers().get(RETRY_AFTER);
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                unavailable += 1;
                assert_eq!(
                    retry_after.and_then(|v| v.to_str().ok()),
                    Some("1"),
                    "{error:?}"
                );
            } else {
                assert!(retry_after.is_none(), "{error:?}");
            }
        }
        assert_eq!(
            unavailable, 6,
            "overloaded, unavailable, timeout, storage, contention, 503"
        );
    }
}
