//! The one middleware every app runs: request id, access log line, JSON error bodies.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use tracing::Instrument;

use super::error::ApiError;
use crate::telemetry;
use crate::wire::REQUEST_ID_HEADER;

const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Longest request id accepted from a client; a longer or odd one is replaced by a fresh id.
const REQUEST_ID_LEN_MAX: usize = 128;

/// Gives each request an id (the client's `x-request-id` when it sends a sane one), runs it inside
/// a span carrying that id, returns the id in the response, and logs one line when it is done.
/// Error answers that did not come from our handlers (404 for no such route, 405...) are given
/// the same JSON error body as every other error.
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let method = request.method().clone();
    let path = request.path().to_owned();

    // A span costs a formatted allocation per request; it exists only when debug logging is on.
    // The access line below carries the request id at every level.
    let span = tracing::debug_span!("request", request_id = %request_id);
    let response = telemetry::with_request_id(request_id.clone(), next.call(request))
        .instrument(span)
        .await?;

    let mut response = if response.status().as_u16() >= 400 && !is_json(&response) {
        let status = response.status();
        let (request, original) = response.into_parts();
        let mut replacement = ApiError::Status(status).error_response();
        // Only the body is replaced: what the original said in its other headers still holds,
        // such as the `Allow` of a 405, which tells the client the methods that would work.
        for (name, value) in original.headers() {
            if !matches!(*name, CONTENT_TYPE | CONTENT_LENGTH) {
                replacement
                    .headers_mut()
                    .append(name.clone(), value.clone());
            }
        }
        ServiceResponse::new(request, replacement).map_into_right_body()
    } else {
        response.map_into_left_body()
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let latency_us = elapsed.as_micros() as u64;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let labels = [
        ("route", route),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    if status >= 500 {
        tracing::warn!(target: "ticketd::access", %method, %path, status, latency_us, %request_id, "request");
    } else {
        tracing::info!(target: "ticketd::access", %method, %path, status, latency_us, %request_id, "request");
    }
    Ok(response)
}

fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= REQUEST_ID_LEN_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

fn is_json<B>(response: &ServiceResponse<B>) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"))
}
