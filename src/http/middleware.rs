//! The one middleware every app runs: request id and trace context, access log line, metrics,
//! JSON error bodies.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use foldhash::HashMap;
use tracing::Instrument;

use super::error::ApiError;
use crate::telemetry;
use crate::telemetry::trace::{TRACEPARENT_HEADER, TRACESTATE_HEADER};
use crate::wire::REQUEST_ID_HEADER;

// Header names as values: looking a header up by a `&str` that is not a standard name builds
// (and allocates) a `HeaderName` on every request.
const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const TRACEPARENT: HeaderName = HeaderName::from_static(TRACEPARENT_HEADER);
const TRACESTATE: HeaderName = HeaderName::from_static(TRACESTATE_HEADER);

/// Longest request id accepted from a client; a longer or odd one is replaced by a fresh id.
const REQUEST_ID_LEN_MAX: usize = 128;

/// Gives each request an id (the client's `x-request-id` when it sends a sane one) and a place in
/// a trace (under the caller's `traceparent` when it sends a valid one, otherwise at the root of a
/// new trace), serves it with both in its context (and inside a span carrying both when spans are
/// exported), returns the id in the response, and logs one line, with both, when it is done.
/// Error answers that did not come from our handlers (404 for no such route, 405...) are given
/// the same JSON error body as every other error.
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let method = request.method().clone();
    let path = request.path().to_owned();
    // The route pattern is known before routing: the app's resource map gives it.
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let header = |name: HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let parent = telemetry::trace::parent_from_headers(header(TRACEPARENT), header(TRACESTATE));

    // Log lines written while the request is served carry its request id and trace id from the
    // request's context (see `telemetry::with_request`); the access line below carries them
    // itself. The span is a real one only when spans are exported.
    let (span, trace) = telemetry::request_span(method.as_str(), &route, &request_id, parent);
    let trace_id = trace.trace_id();
    let context = telemetry::RequestContext {
        request_id: request_id.clone(),
        trace,
    };
    let response = telemetry::with_request(context, next.call(request))
        .instrument(span.clone())
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
    telemetry::finish_request_span(&span, status);
    drop(span);
    let elapsed = started.elapsed();
    let latency_us = elapsed.as_micros() as u64;
    RequestMetrics::record(&route, &method, status, elapsed);
    if status >= 500 {
        tracing::warn!(target: "ticketd::access", %method, %path, status, latency_us, %request_id, %trace_id, "request");
    } else {
        tracing::info!(target: "ticketd::access", %method, %path, status, latency_us, %request_id, %trace_id, "request");
    }
    Ok(response)
}

/// One route, method and status's request metrics, as handles.
struct RequestMetrics {
    method: Method,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Most handles one worker keeps for one route: methods times statuses seen, far above what
/// clients of the API send; past it (a client trying odd methods) handles are looked up each time.
const REQUEST_METRICS_PER_ROUTE_MAX: usize = 64;

thread_local! {
    /// This worker thread's request metric handles, by route. Looking a handle up in the
    /// recorder builds, hashes and compares a key of three owned labels on every request (about
    /// 4,000 instructions, three allocations); a handle kept here records in a few dozen. The
    /// routes are the API's own (the router's patterns), so a fast hasher is safe here.
    static REQUEST_METRICS: RefCell<HashMap<String, Vec<RequestMetrics>>> =
        RefCell::new(HashMap::default());
}

impl RequestMetrics {
    fn record(route: &str, method: &Method, status: u16, elapsed: Duration) {
        REQUEST_METRICS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if !cache.contains_key(route) {
                cache.insert(route.to_owned(), Vec::new());
            }
            let kept = cache.get_mut(route).expect("inserted above");
            let found = kept
                .iter()
                .position(|m| m.status == status && m.method == method);
            let metrics = match found {
                Some(at) => &kept[at],
                None => {
                    let metrics = Self::look_up(route, method, status);
                    if kept.len() >= REQUEST_METRICS_PER_ROUTE_MAX {
                        metrics.count(elapsed);
                        return;
                    }
                    kept.push(metrics);
                    kept.last().expect("pushed above")
                }
            };
            metrics.count(elapsed);
        });
    }

    fn look_up(route: &str, method: &Method, status: u16) -> Self {
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_string()),
            ("status", status.to_string()),
        ];
        Self {
            method: method.clone(),
            status,
            requests: metrics::counter!("http_requests_total", &labels),
            duration: metrics::histogram!("http_request_duration_seconds", &labels),
        }
    }

    fn count(&self, elapsed: Duration) {
        self.requests.increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
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
