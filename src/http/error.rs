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
                Error::InvalidIdempotencyKey(_) | Error::InvalidQuery(_) => StatusCode::BAD_REQUEST,
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
    use std::collections::BTreeSet;

    use super::*;

    /// The codes a `code()` function can return: the string literals its arms give.
    fn codes_in(source: &str) -> BTreeSet<String> {
        let start = source
            .find("pub fn code(&self)")
            .expect("a code() function");
        let body = &source[start..];
        let body = &body[..body[1..].find("pub fn ").map_or(body.len(), |end| end + 1)];
        body.split("=> \"")
            .skip(1)
            .filter_map(|arm| arm.split_once('"').map(|(code, _)| code.to_owned()))
            .collect()
    }

    /// README.md's error table: (status, code) for every code listed on a status's row.
    fn readme_table() -> BTreeSet<(u16, String)> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split_once("| status | when | codes |")
            .expect("README.md has the error table")
            .1;
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|row| {
                let columns: Vec<&str> = row.split('|').collect();
                let status: u16 = columns[1].trim().parse().expect("a status");
                let codes = columns[columns.len() - 2];
                codes
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(move |code| (status, code.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// An error answered with `code`, to learn its status.
    fn error_with(code: &str) -> ApiError {
        let message = String::new();
        match code {
            "invalid_body" => ApiError::InvalidBody(message),
            "invalid_content_type" => ApiError::InvalidContentType(message),
            "body_too_large" => ApiError::BodyTooLarge(0),
            "not_found" => ApiError::Status(StatusCode::NOT_FOUND),
            "method_not_allowed" => ApiError::Status(StatusCode::METHOD_NOT_ALLOWED),
            "bad_request" => ApiError::Status(StatusCode::BAD_REQUEST),
            "internal" => Error::Internal(message).into(),
            // Rebuilt as something else when they come from vacancy: not this side's fault.
            "unauthorized" => Error::Unauthorized(message).into(),
            "forbidden" => Error::Forbidden(message).into(),
            "timeout" => Error::Timeout(0).into(),
            "unavailable" => Error::Unavailable(message).into(),
            code => Error::from_code(code, message).into(),
        }
    }

    /// Every code the server can send is in README.md's error table, on its status's row, and
    /// the table lists nothing else.
    #[test]
    fn the_readme_error_table_lists_every_code_the_server_sends() {
        let mut sent = codes_in(include_str!("../domain.rs"));
        sent.extend(codes_in(include_str!("error.rs")));
        assert!(
            sent.len() >= 25,
            "the source scan found too few codes: {sent:?}"
        );
        let table = readme_table();
        let listed: BTreeSet<String> = table.iter().map(|(_, code)| code.clone()).collect();
        let missing: Vec<_> = sent.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "codes missing from README.md: {missing:?}"
        );
        let stale: Vec<_> = listed.difference(&sent).collect();
        assert!(
            stale.is_empty(),
            "README.md lists codes never sent: {stale:?}"
        );
        for (status, code) in &table {
            let error = error_with(code);
            assert_eq!(
                (error.status_code().as_u16(), error.code()),
                (*status, code.as_str()),
                "README.md's row for {code}"
            );
        }
    }

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
