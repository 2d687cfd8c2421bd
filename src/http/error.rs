//! Every error answer, decided in one place: `{"error": {"code": "...", "message": "..."}}`.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

use crate::domain::Error;
use crate::telemetry;
use crate::wire::{ErrorCode, ErrorDetail, ErrorResponse};

/// Why a request failed, as the HTTP layer answers it: a domain error, or one of HTTP alone.
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
    /// No token, or not the right one (admin calls; vacancy's service token).
    #[error("{0}")]
    Unauthorized(String),
    /// An admin call while no admin token is configured.
    #[error("{0}")]
    Forbidden(String),
    /// An error status produced outside our handlers (no such route, wrong method...).
    #[error("{}", .0.canonical_reason().unwrap_or("error"))]
    Status(StatusCode),
}

/// Seconds a client is asked to wait before trying again after a 503. Every 503 is a passing
/// condition (a full queue, vacancy or the database away for a moment, a lock held elsewhere), and
/// clients that retry at once only deepen it; one second is long enough to let a queue drain and
/// short enough that a buyer hardly notices.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// What a client is told in place of [`Error::Contention`]'s own text, which names rows and
/// statements: the writer has already decided the batch again as often as it may.
const CONTENTION_MESSAGE: &str = "the store was busy with other changes to the same tickets and \
                                  nothing was changed; try again";

/// What a client is told in place of [`Error::Storage`]'s own text, which can name the store's
/// file or repeat the database server's message. A failed write changes nothing (the batch is
/// refused whole), so that is all a client needs to know.
pub const STORAGE_FAILURE_MESSAGE: &str =
    "the store could not record this request; nothing was changed";

/// What a client is told in place of [`Error::Internal`]'s own text: a fault in ticketd is no
/// business of the client's, and its text is written for whoever fixes it.
pub const INTERNAL_MESSAGE: &str = "ticketd met an internal fault";

/// An answer with `status` and the headers that status always carries: `Retry-After` on 503, so
/// every client backs off the same way whichever part of ticketd refused it.
pub fn respond(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((RETRY_AFTER, RETRY_AFTER_SECONDS));
    }
    response
}

/// What the `message` of an answer says.
enum Message {
    /// The error's own text: written for the client.
    Own,
    /// A text of its own in place of one about ticketd's insides.
    Public(&'static str),
    /// A text of its own, while the error's own text, which can hold file paths or the
    /// database's messages, goes to the log at error level with the request id: the one place
    /// an operator can read what the client was not told.
    Withheld(&'static str),
}

impl ApiError {
    /// The status, public code and message of this error: the one place that decides what a
    /// client is told. No arm is a catch-all, so a new error does not compile until it is given
    /// an answer here, and nothing internal reaches a client by default.
    fn answer(&self) -> (StatusCode, ErrorCode, Message) {
        use ErrorCode as Code;
        use Message::Own;
        use StatusCode as Status;
        match self {
            ApiError::Domain(error) => match error {
                Error::InvalidQuantity(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::InvalidQuantity, Own)
                }
                Error::OverLimit(_) => (Status::UNPROCESSABLE_ENTITY, Code::QuantityOverLimit, Own),
                // Its own type inside; the API has always named it a bad quantity.
                Error::InvalidHoldTtl(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::InvalidQuantity, Own)
                }
                Error::InvalidEventId(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::InvalidEventId, Own)
                }
                Error::InvalidEvent(_) => (Status::UNPROCESSABLE_ENTITY, Code::InvalidEvent, Own),
                Error::InvalidReservationId(_) => (
                    Status::UNPROCESSABLE_ENTITY,
                    Code::InvalidReservationId,
                    Own,
                ),
                Error::ReservationConflict(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::ReservationConflict, Own)
                }
                Error::IdempotencyKeyReused(_) => (
                    Status::UNPROCESSABLE_ENTITY,
                    Code::IdempotencyKeyReused,
                    Own,
                ),
                Error::InvalidIdempotencyKey(_) => {
                    (Status::BAD_REQUEST, Code::InvalidIdempotencyKey, Own)
                }
                Error::InvalidQuery(_) => (Status::BAD_REQUEST, Code::InvalidQuery, Own),
                Error::InvalidCustomer(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::InvalidCustomer, Own)
                }
                Error::CustomerRequired(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::CustomerRequired, Own)
                }
                Error::UnknownCategory(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::UnknownCategory, Own)
                }
                Error::CategoryNotFound(_) => (Status::NOT_FOUND, Code::CategoryNotFound, Own),
                Error::UnknownQuota(_) => (Status::NOT_FOUND, Code::UnknownQuota, Own),
                Error::NotOnSale { .. } => (Status::CONFLICT, Code::NotOnSale, Own),
                Error::CustomerLimitReached { .. } => {
                    (Status::CONFLICT, Code::CustomerLimitReached, Own)
                }
                Error::QuotaInUse(_) => (Status::CONFLICT, Code::QuotaInUse, Own),
                Error::CursorExpired { .. } => (Status::GONE, Code::CursorExpired, Own),
                Error::CursorAhead { .. } => (Status::CONFLICT, Code::CursorAhead, Own),
                Error::UnknownEvent(_) => (Status::NOT_FOUND, Code::UnknownEvent, Own),
                Error::UnknownOrder(_) => (Status::NOT_FOUND, Code::UnknownOrder, Own),
                Error::UnknownEntry(_) => (Status::NOT_FOUND, Code::UnknownWaitlistEntry, Own),
                Error::TicketsAvailable(_) => (Status::CONFLICT, Code::TicketsAvailable, Own),
                Error::InvalidWebhook(_) => {
                    (Status::UNPROCESSABLE_ENTITY, Code::InvalidWebhook, Own)
                }
                Error::UnknownWebhook(_) => (Status::NOT_FOUND, Code::UnknownWebhook, Own),
                Error::WebhooksLimitReached(_) => {
                    (Status::CONFLICT, Code::WebhooksLimitReached, Own)
                }
                Error::EventExists(_) => (Status::CONFLICT, Code::EventExists, Own),
                Error::WrongState(_) => (Status::CONFLICT, Code::WrongState, Own),
                Error::CapacityExceeded(_) => (Status::CONFLICT, Code::CapacityExceeded, Own),
                Error::HoldExpired(_) => (Status::GONE, Code::HoldExpired, Own),
                Error::Overloaded => (Status::SERVICE_UNAVAILABLE, Code::Overloaded, Own),
                Error::Unavailable(_) => (Status::SERVICE_UNAVAILABLE, Code::Unavailable, Own),
                Error::Timeout { .. } => (Status::SERVICE_UNAVAILABLE, Code::Timeout, Own),
                Error::Storage(_) => (
                    Status::SERVICE_UNAVAILABLE,
                    Code::StorageFailure,
                    Message::Withheld(STORAGE_FAILURE_MESSAGE),
                ),
                // The writer's signal to decide again; here its tries are spent. To a client the
                // store was simply unavailable for a moment.
                Error::Contention(_) => (
                    Status::SERVICE_UNAVAILABLE,
                    Code::Unavailable,
                    Message::Public(CONTENTION_MESSAGE),
                ),
                Error::Internal(_) => (
                    Status::INTERNAL_SERVER_ERROR,
                    Code::Internal,
                    Message::Withheld(INTERNAL_MESSAGE),
                ),
            },
            ApiError::InvalidBody(_) => (Status::BAD_REQUEST, Code::InvalidBody, Own),
            ApiError::InvalidContentType(_) => (Status::BAD_REQUEST, Code::InvalidContentType, Own),
            ApiError::BodyTooLarge(_) => (Status::PAYLOAD_TOO_LARGE, Code::BodyTooLarge, Own),
            ApiError::Unauthorized(_) => (Status::UNAUTHORIZED, Code::Unauthorized, Own),
            ApiError::Forbidden(_) => (Status::FORBIDDEN, Code::Forbidden, Own),
            ApiError::Status(status) => {
                let code = match *status {
                    Status::NOT_FOUND => Code::NotFound,
                    Status::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
                    status if status.is_server_error() => Code::Internal,
                    _ => Code::BadRequest,
                };
                (*status, code, Own)
            }
        }
    }

    /// The public code of this error.
    pub fn code(&self) -> ErrorCode {
        self.answer().1
    }

    /// What the client reads of this error: its code and message. Every error answer is built
    /// from this, so this is also where a withheld text is logged: whatever sends the answer,
    /// the operator can find the cause under the request id the client was given.
    pub fn detail(&self) -> ErrorDetail {
        let (_, code, message) = self.answer();
        let mut detail = ErrorDetail {
            code: code.as_str().to_owned(),
            message: match message {
                Message::Own => self.to_string(),
                Message::Public(text) => text.to_owned(),
                Message::Withheld(text) => {
                    let request_id = telemetry::current_request_id().unwrap_or_default();
                    let trace_id = telemetry::current_trace_id().unwrap_or_default();
                    tracing::error!(%request_id, %trace_id, code = code.as_str(), error = %self, "withheld from the client");
                    text.to_owned()
                }
            },
            ..ErrorDetail::default()
        };
        if let ApiError::Domain(error) = self {
            detail.add_context(error);
        }
        detail
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
        self.answer().0
    }

    fn error_response(&self) -> HttpResponse {
        respond(self.status_code()).json(ErrorResponse {
            error: self.detail(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The codes a function returns: the string literals its arms give.
    fn codes_in(source: &str, function: &str) -> BTreeSet<String> {
        let start = source.find(function).expect("the function");
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
            "unauthorized" => ApiError::Unauthorized(message),
            "forbidden" => ApiError::Forbidden(message),
            "internal" => Error::Internal(message).into(),
            // Read as something else when they come from vacancy: not this side's fault.
            "timeout" => Error::Timeout { limit_ms: 0 }.into(),
            "unavailable" => Error::Unavailable(message).into(),
            "not_on_sale" => Error::NotOnSale {
                message,
                category: crate::domain::CategoryId::general(),
                window: crate::domain::SalesWindow::default(),
            }
            .into(),
            "cursor_expired" => Error::CursorExpired { message, oldest: 1 }.into(),
            "cursor_ahead" => Error::CursorAhead { message, last: 0 }.into(),
            code => ErrorDetail {
                code: code.to_owned(),
                message,
                ..ErrorDetail::default()
            }
            .into_domain()
            .into(),
        }
    }

    /// One error of every domain kind.
    fn every_domain_error() -> [Error; 32] {
        let why = || "why".to_owned();
        [
            Error::InvalidQuantity(why()),
            Error::OverLimit(why()),
            Error::InvalidHoldTtl(why()),
            Error::InvalidEventId(why()),
            Error::InvalidReservationId(why()),
            Error::InvalidEvent(why()),
            Error::InvalidIdempotencyKey(why()),
            Error::InvalidQuery(why()),
            Error::IdempotencyKeyReused(why()),
            Error::EventExists(why()),
            Error::UnknownOrder(why()),
            Error::HoldExpired(why()),
            Error::WrongState(why()),
            Error::CapacityExceeded(why()),
            Error::UnknownEvent(why()),
            Error::ReservationConflict(why()),
            Error::InvalidCustomer(why()),
            Error::CustomerRequired(why()),
            Error::UnknownCategory(why()),
            Error::CategoryNotFound(why()),
            Error::UnknownQuota(why()),
            Error::QuotaInUse(why()),
            Error::CustomerLimitReached {
                message: why(),
                may_still: 2,
            },
            Error::NotOnSale {
                message: why(),
                category: crate::domain::CategoryId::general(),
                window: crate::domain::SalesWindow::new(Some(1), None).unwrap(),
            },
            Error::CursorExpired {
                message: why(),
                oldest: 7,
            },
            Error::CursorAhead {
                message: why(),
                last: 7,
            },
            Error::Overloaded,
            Error::Unavailable(why()),
            Error::Timeout { limit_ms: 5 },
            Error::Storage(why()),
            Error::Contention(why()),
            Error::Internal(why()),
        ]
    }

    /// Every code the server can send is in README.md's error table, on its status's row, and
    /// the table lists nothing else.
    #[test]
    fn the_readme_error_table_lists_every_code_the_server_sends() {
        let sent = codes_in(include_str!("../wire/errors.rs"), "pub fn as_str(self)");
        let all: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.to_string()).collect();
        assert_eq!(sent, all, "ErrorCode::ALL must list every code");
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
                (error.status_code().as_u16(), error.code().as_str()),
                (*status, code.as_str()),
                "README.md's row for {code}"
            );
        }
    }

    /// A domain error a client may see is sent under its own name; only internal ones are not.
    #[test]
    fn domain_errors_keep_their_names_unless_internal() {
        for error in every_domain_error() {
            let name = error.code();
            let sent = ApiError::from(error).code();
            if name == "contention" {
                assert_eq!(sent, ErrorCode::Unavailable);
            } else if name == "invalid_hold_ttl" {
                assert_eq!(sent, ErrorCode::InvalidQuantity);
            } else {
                assert_eq!(sent.as_str(), name);
            }
        }
    }

    /// What a client needs besides the message crosses the hop too.
    #[test]
    fn the_context_of_an_error_crosses_the_hop() {
        let with_context = every_domain_error().into_iter().filter(|error| {
            matches!(
                error,
                Error::CustomerLimitReached { .. }
                    | Error::NotOnSale { .. }
                    | Error::CursorExpired { .. }
                    | Error::CursorAhead { .. }
            )
        });
        for error in with_context {
            let local = ApiError::from(error).detail();
            assert!(
                local.may_still.is_some()
                    || local.sales_start.is_some()
                    || local.oldest.is_some()
                    || local.last.is_some(),
                "{local:?}"
            );
            let remote = ApiError::from(local.clone().into_domain()).detail();
            assert_eq!(
                serde_json::to_value(&remote).unwrap(),
                serde_json::to_value(&local).unwrap()
            );
        }
    }

    /// The ticket service answers an error of vacancy's as the monolith answers it. Only what
    /// is no fault of the client's request to the ticket service (vacancy refusing its
    /// credentials, running out of its own time, failing in itself) is vacancy being
    /// unavailable to it.
    #[test]
    fn errors_from_vacancy_are_answered_as_the_monolith_answers_them() {
        let over_the_hop = |local: &ApiError| {
            let remote = ApiError::from(local.detail().into_domain());
            (remote.status_code(), remote.code())
        };
        for error in every_domain_error().map(ApiError::from) {
            let local = (error.status_code(), error.code());
            let expected = match local.1 {
                ErrorCode::Timeout | ErrorCode::Internal => {
                    (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
                }
                _ => local,
            };
            assert_eq!(over_the_hop(&error), expected, "{error:?}");
        }
        for refused in [
            ApiError::Unauthorized("no".into()),
            ApiError::Forbidden("no".into()),
        ] {
            let answer = (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable);
            assert_eq!(over_the_hop(&refused), answer, "{refused:?}");
        }
    }

    /// Every 503, whatever refused the request, tells the client when to come back; no other
    /// status does.
    #[test]
    fn every_503_carries_retry_after() {
        let why = || "why".to_owned();
        let mut unavailable = 0;
        for error in every_domain_error().map(ApiError::from).into_iter().chain([
            ApiError::Unauthorized(why()),
            ApiError::Forbidden(why()),
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

    /// Replicas kept changing the same rows until the writer's tries were spent. That is the
    /// inventory's own retry signal: the client is told the store was unavailable for a moment
    /// (503 `unavailable`, with `Retry-After`), never `contention` or which rows collided.
    #[test]
    fn contention_reaches_clients_as_unavailable() {
        let internal = "updated 0 of 1 locked events: one was no longer as read under its lock";
        let response = ApiError::from(Error::Contention(internal.into())).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        assert_eq!(
            retry_after.as_ref().and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let body = actix_web::rt::System::new()
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("locked"), "{message}");
        assert!(
            message.contains("busy") && message.contains("try again"),
            "{message}"
        );
    }

    /// The JSON body of `response`.
    fn body_of(response: HttpResponse) -> serde_json::Value {
        let body = actix_web::rt::System::new()
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// A failed store write or a fault in ticketd is answered with its status and code and a
    /// fixed text: the error's own text names the store's file or repeats the database server,
    /// and is for the log only. Across the hop the ticket service answers what vacancy sent.
    #[test]
    fn storage_and_internal_faults_reach_clients_without_their_own_text() {
        let path = "/srv/ticketd/data/ticketd.db";
        for (error, status, code, public) in [
            (
                Error::Storage(format!("commit to {path} failed: database or disk is full")),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_failure",
                STORAGE_FAILURE_MESSAGE,
            ),
            (
                Error::Storage(format!(
                    "inserting an order: ERROR: relation \"{path}\" does not exist"
                )),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_failure",
                STORAGE_FAILURE_MESSAGE,
            ),
            (
                Error::Internal(format!("the writer thread for {path} is gone")),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                INTERNAL_MESSAGE,
            ),
        ] {
            let local = ApiError::from(error);
            let response = local.error_response();
            assert_eq!(response.status(), status, "{local:?}");
            let body = body_of(response);
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["message"], public, "{body}");
            assert!(!body.to_string().contains(path), "{body}");
            // The ticket service reads vacancy's answer back and answers with what it was told.
            let remote = ApiError::from(local.detail().into_domain());
            let message = remote.detail().message;
            assert!(!message.contains(path), "{message}");
            if code == "storage_failure" {
                assert_eq!(message, public);
            }
        }
    }
}
