use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use async_trait::async_trait;
use awc::http::Uri;
use serde::de::DeserializeOwned;

use super::VacancyClient;
use crate::domain::{Error, EventId, Reservation, Reserved, Stock};
use crate::telemetry::{self, REQUEST_ID_HEADER};
use crate::wire;

/// How the ticket service reaches a vacancy service.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// Base URL of the vacancy service, e.g. `http://127.0.0.1:8001`.
    pub url: String,
    /// Longest wait for one call, connecting included; past it the call fails as `timeout`.
    pub timeout: Duration,
    /// Most open connections to vacancy, per worker thread.
    pub connections_max: usize,
    /// How long an idle connection is kept for reuse.
    pub keep_alive: Duration,
    /// Most tries of one call when vacancy cannot be reached, all within `timeout`. Safe because a
    /// reservation carries its own id: vacancy answers a repeated one with the first answer.
    pub attempts_max: u32,
}

/// Wait before the first retry; doubled for each further one.
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(10);

/// Why one try failed: only a failure to get an answer is worth another try.
enum Failure {
    Transport(Error),
    Answer(Error),
}

/// Largest answer body read from vacancy; ours are well under 1 KiB.
const ANSWER_SIZE_MAX: usize = 64 * 1024;

static NEXT_CLIENT_KEY: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// One awc client (and so one keep-alive pool) per worker thread and per remote client.
    ///
    /// awc's `Client` is built on `Rc` and cannot cross threads, while `VacancyClient` must be
    /// `Send + Sync` to be shared as `Arc<dyn VacancyClient>`. So the shared value holds only
    /// settings, and each actix worker thread builds its own awc client on first use and keeps it
    /// here: no lock on the hot path, no client per request. Clients die with their thread.
    static CLIENTS: RefCell<HashMap<u64, awc::Client>> = RefCell::new(HashMap::new());
}

/// The split deployment's client: calls vacancy's HTTP API with awc.
pub struct RemoteVacancyClient {
    key: u64,
    base_url: String,
    config: RemoteConfig,
}

impl RemoteVacancyClient {
    pub fn new(config: RemoteConfig) -> Result<Self, Error> {
        let base_url = config.url.trim_end_matches('/').to_owned();
        let uri: Uri = base_url.parse().map_err(|e| {
            Error::Internal(format!("vacancy_url '{}' is not a URL: {e}", config.url))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(Error::Internal(format!(
                "vacancy_url '{}' must look like http://host:port",
                config.url
            )));
        }
        Ok(Self {
            key: NEXT_CLIENT_KEY.fetch_add(1, Ordering::Relaxed),
            base_url,
            config,
        })
    }

    fn client(&self) -> awc::Client {
        CLIENTS.with(|clients| {
            clients
                .borrow_mut()
                .entry(self.key)
                .or_insert_with(|| {
                    let connector = awc::Connector::new()
                        .limit(self.config.connections_max)
                        .conn_keep_alive(self.config.keep_alive)
                        .timeout(self.config.timeout);
                    awc::Client::builder()
                        .connector(connector)
                        .timeout(self.config.timeout)
                        .disable_redirects()
                        .finish()
                })
                .clone()
        })
    }

    /// Sends one request and reads its JSON answer. Tries again, with backoff, while vacancy
    /// cannot be reached, up to `attempts_max` tries; everything happens within `timeout`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&wire::QtyRequest>,
    ) -> Result<T, Error> {
        let request_id = telemetry::current_request_id();
        let deadline = Instant::now() + self.config.timeout;
        let timeout = Error::Timeout(self.config.timeout.as_millis() as u64);
        let mut backoff = RETRY_BACKOFF_FIRST;
        let mut attempt = 1;
        loop {
            let mut request = self.client().request(method.clone(), url);
            if let Some(id) = &request_id {
                request = request.insert_header((REQUEST_ID_HEADER, id.as_str()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let failure = match actix_rt::time::timeout(left, self.exchange(request, body)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(Failure::Answer(error))) => return Err(error),
                Ok(Err(Failure::Transport(error))) => error,
                Err(_) => return Err(timeout),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if attempt >= self.config.attempts_max || left <= backoff {
                return Err(failure);
            }
            tracing::debug!(attempt, error = %failure, "vacancy call failed; trying again");
            actix_rt::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        request: awc::ClientRequest,
        body: Option<&wire::QtyRequest>,
    ) -> Result<T, Failure> {
        let sent = match body {
            Some(body) => request.send_json(body),
            None => request.send(),
        };
        let mut response = sent
            .await
            .map_err(|e| Failure::Transport(self.send_error(e)))?;
        let bytes = response.body().limit(ANSWER_SIZE_MAX).await.map_err(|e| {
            Failure::Transport(Error::Unavailable(format!(
                "reading vacancy's answer failed: {e}"
            )))
        })?;
        decode(response.status(), &bytes).map_err(Failure::Answer)
    }

    fn send_error(&self, error: awc::error::SendRequestError) -> Error {
        use awc::error::{ConnectError, SendRequestError};
        match error {
            SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
                Error::Timeout(self.config.timeout.as_millis() as u64)
            }
            other => Error::Unavailable(format!(
                "cannot reach vacancy at {}: {other}",
                self.base_url
            )),
        }
    }
}

/// Turns vacancy's answer into ours: its JSON on success, the same domain error on failure.
fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, Error> {
    if status.is_success() {
        return serde_json::from_slice(bytes).map_err(|e| {
            Error::Unavailable(format!("vacancy sent an answer that cannot be read: {e}"))
        });
    }
    match serde_json::from_slice::<wire::ErrorResponse>(bytes) {
        Ok(answer) => Err(Error::from_code(&answer.error.code, answer.error.message)),
        Err(_) => Err(Error::Unavailable(format!("vacancy answered {status}"))),
    }
}

#[async_trait(?Send)]
impl VacancyClient for RemoteVacancyClient {
    async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        let url = format!(
            "{}/api/v1/events/{}/reserve",
            self.base_url, reservation.event
        );
        let body = wire::QtyRequest {
            qty: Some(reservation.qty.get().into()),
            reservation_id: Some(reservation.id.to_string()),
        };
        let answer: wire::ReserveResponse = self.call(Method::POST, &url, Some(&body)).await?;
        Ok(Reserved {
            accepted: answer.success,
            remaining: answer.remaining,
        })
    }

    async fn stock(&self, event: &EventId) -> Result<Stock, Error> {
        let url = format!("{}/api/v1/events/{event}", self.base_url);
        let answer: wire::EventResponse = self.call(Method::GET, &url, None).await?;
        Ok(answer.stock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RemoteConfig {
        RemoteConfig {
            url: url.into(),
            timeout: Duration::from_millis(100),
            connections_max: 4,
            keep_alive: Duration::from_secs(5),
            attempts_max: 3,
        }
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        assert!(RemoteVacancyClient::new(config("http://127.0.0.1:8001/")).is_ok());
        for bad in ["127.0.0.1:8001", "ftp://x", "http://", "not a url"] {
            assert!(RemoteVacancyClient::new(config(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_from_vacancy_keep_their_code() {
        let body = br#"{"error":{"code":"unknown_event","message":"unknown event 'x'"}}"#;
        let error = decode::<wire::EventResponse>(StatusCode::NOT_FOUND, body).unwrap_err();
        assert_eq!(error, Error::UnknownEvent("unknown event 'x'".into()));

        let error = decode::<wire::EventResponse>(StatusCode::BAD_GATEWAY, b"<html>").unwrap_err();
        assert_eq!(error.code(), "unavailable");
    }
}
