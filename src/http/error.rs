//! Every error answer, decided in one place: `{"error": {"code": "...", "message": "..."}}`.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

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
                Error::EventExists(_) | Error::WrongState(_) | Error::CapacityExceeded(_) => {
                    StatusCode::CONFLICT
                }
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
        HttpResponse::build(self.status_code()).json(ErrorResponse {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        })
    }
}
