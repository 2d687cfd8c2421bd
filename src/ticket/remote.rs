use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use async_trait::async_trait;
use awc::error::PayloadError;
use awc::http::Uri;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{VacancyClient, coalesce};
use crate::config::{Mode, Secret};
use crate::domain::{
    Attempt, Cancelled, CategoryChange, CategoryId, ChangesPage, ChangesQuery, EntryView, Error,
    Event, EventDraft, EventId, EventsPage, IdempotencyKey, Joining, Order, PageLimit, PageQuery,
    QuotaId, Reservation, ReservationId, Reserved, Resize, SigningSecret, WebhookId, WebhookTypes,
    WebhookUrl, WebhookView,
};
use crate::telemetry;
use crate::wire::{
    self, CALL_ID_HEADER, IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER, SERVICE_TOKEN_HEADER,
};

/// How the ticket service reaches a vacancy service.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// Base URLs of the vacancy replicas, e.g. `http://127.0.0.1:8001`. Calls go to each in turn;
    /// one that cannot be reached is skipped for a while, and the call goes to the next.
    pub urls: Vec<String>,
    /// Longest wait for one call, connecting included; past it the call fails as `timeout`.
    pub timeout: Duration,
    /// Most open connections to vacancy, per worker thread.
    pub connections_max: usize,
    /// How long an idle connection is kept for reuse.
    pub keep_alive: Duration,
    /// Most tries of one call when vacancy cannot be reached, all within `timeout`. Safe because a
    /// reservation carries its own id (vacancy answers a repeated one with the first answer), and
    /// confirm, release and cancel carry the client's idempotency key or, without one, an id of
    /// their own (vacancy answers their repeats with the first answer too). Creating and
    /// replenishing events are tried once.
    pub attempts_max: u32,
    /// Sent as `x-service-token` on every call, when vacancy requires one.
    pub service_token: Option<Secret>,
    /// Sent as the bearer token on admin calls; the same admin token vacancy checks.
    pub admin_token: Option<Secret>,
}

/// What lets vacancy recognise a repeat of a call.
#[derive(Clone, Copy)]
enum Repeat<'a> {
    /// Nothing beyond the call itself: reads, and reservations (which carry their own id).
    Plain,
    /// The client's `Idempotency-Key`, passed on.
    Key(&'a IdempotencyKey),
    /// No client key: an id of this call's own, the same on every try.
    CallId(uuid::Uuid),
}

impl<'a> Repeat<'a> {
    /// For a change that is not a reservation: the client's key, or else a new id for this call.
    fn change(key: Option<&'a IdempotencyKey>) -> Self {
        key.map_or_else(|| Repeat::CallId(uuid::Uuid::now_v7()), Repeat::Key)
    }
}

/// How one call may be repeated and what it carries.
#[derive(Clone, Copy)]
enum Call {
    /// Safe to repeat: reads, and changes that are idempotent by id.
    Idempotent,
    /// An admin change that must not be repeated blindly.
    AdminOnce,
    /// An admin read: repeated like `Idempotent`, sent with the admin token.
    AdminRead,
}

/// Wait before the first retry; doubled for each further one.
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(10);

/// Why one try failed: only a failure to get an answer is worth another try.
enum Failure {
    Transport(Error),
    Answer(Error),
}

/// How long a replica that could not be reached is passed over (unless every replica is).
const REPLICA_COOLDOWN: Duration = Duration::from_secs(2);

/// The most bytes one event takes in a list answer: the longest id, the longest name with every
/// character escaped (`\u001f`: 6 bytes, more than any character takes in UTF-8), four counts of
/// 20 digits (`u64::MAX`), and under 100 bytes of keys and punctuation.
const EVENT_JSON_SIZE_MAX: usize = EventId::LEN_MAX + Event::NAME_LEN_MAX * 6 + 4 * 20 + 100;

/// Largest answer body read from vacancy. The largest the API gives is a full page of events
/// (`PageLimit::MAX` of the longest, plus the cursor: about 1.4 MB); this is twice that, so a
/// modest new field cannot turn full pages into errors. Every other answer is under 2 KiB.
pub const ANSWER_SIZE_MAX: usize = 2 * (PageLimit::MAX as usize * EVENT_JSON_SIZE_MAX + 1024);

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

/// One vacancy replica and when it may be tried again after failing.
struct Replica {
    base_url: String,
    /// Passed over until this time, in ms since the client started (not since the epoch, unlike
    /// `Clock::now_ms`); 0 when healthy.
    down_until_elapsed_ms: AtomicU64,
    /// It said it shares the store of the other replicas.
    vetted: AtomicBool,
    /// Why it is never used (it keeps stock of its own, or another database's).
    refused: OnceLock<String>,
}

/// The split deployment's client: calls vacancy's HTTP API with awc.
///
/// With several vacancy replicas (which must share one database) calls are spread over them in
/// turn. A replica that cannot be reached, or does not answer within its share of the timeout, is
/// passed over for a while and the call goes on to the next: a reservation retried on another
/// replica is still made once, because it carries its own id. That holds only if the replicas
/// share one store, so before its first call to a replica the client asks it (`GET /`) for its
/// `store_id`: a replica without one, or with another than the first replica's, is never used.
pub struct RemoteVacancyClient {
    key: u64,
    replicas: Vec<Replica>,
    /// Which replica the next call starts with.
    next: AtomicUsize,
    /// The store every replica must share: the first vetted replica's.
    store_id: OnceLock<String>,
    started: Instant,
    /// Reservations go one call each until then (ms since start): a vacancy answered that it has
    /// no batch route (an older version, during a rolling upgrade). 0 while batches are taken.
    batches_refused_until_elapsed_ms: AtomicU64,
    config: RemoteConfig,
}

impl RemoteVacancyClient {
    pub fn new(config: RemoteConfig) -> Result<Self, Error> {
        if config.urls.is_empty() {
            return Err(Error::Internal("no vacancy_url given".into()));
        }
        let mut replicas = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let base_url = url.trim_end_matches('/').to_owned();
            let uri: Uri = base_url
                .parse()
                .map_err(|e| Error::Internal(format!("vacancy_url '{url}' is not a URL: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(Error::Internal(format!(
                    "vacancy_url '{url}' must look like http://host:port"
                )));
            }
            replicas.push(Replica {
                base_url,
                down_until_elapsed_ms: AtomicU64::new(0),
                vetted: AtomicBool::new(false),
                refused: OnceLock::new(),
            });
        }
        Ok(Self {
            key: NEXT_CLIENT_KEY.fetch_add(1, Ordering::Relaxed),
            replicas,
            next: AtomicUsize::new(0),
            store_id: OnceLock::new(),
            started: Instant::now(),
            batches_refused_until_elapsed_ms: AtomicU64::new(0),
            config,
        })
    }

    /// Milliseconds since this client started: monotonic, so a stepped wall clock cannot put a
    /// replica out of use for long or bring it back early.
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The replica for a call's `attempt` (0-based): the next in turn that is not passed over,
    /// or simply the next in turn when all are.
    fn replica(&self, first: usize, attempt: usize) -> &Replica {
        let count = self.replicas.len();
        let elapsed_ms = self.elapsed_ms();
        let nth = |offset: usize| &self.replicas[(first + attempt + offset) % count];
        (0..count)
            .map(nth)
            .find(|replica| replica.down_until_elapsed_ms.load(Ordering::Relaxed) <= elapsed_ms)
            .unwrap_or_else(|| nth(0))
    }

    fn pass_over(&self, replica: &Replica) {
        let until_elapsed_ms = self.elapsed_ms() + REPLICA_COOLDOWN.as_millis() as u64;
        replica
            .down_until_elapsed_ms
            .fetch_max(until_elapsed_ms, Ordering::Relaxed);
        if self.replicas.len() > 1 && replica.refused.get().is_none() {
            tracing::warn!(vacancy = %replica.base_url, "vacancy replica unreachable; trying the others");
        }
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

    /// Checks, before the first call to `replica`, that it is a ticketd vacancy (`GET /`), and
    /// with several replicas that it shares the store of the others.
    ///
    /// Something else at the URL (the seed's own vacancy, a web server) would answer our calls
    /// with 404s or JSON of its own, and the operator would see only "vacancy answered 404"; so
    /// it is named for what it is. That is not remembered: the right service may start there
    /// later, and the next call asks again.
    async fn vet(&self, replica: &Replica) -> Result<(), Failure> {
        if replica.vetted.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(reason) = replica.refused.get() {
            return Err(Failure::Transport(Error::Unavailable(reason.clone())));
        }
        let url = &replica.base_url;
        let mut response = self
            .client()
            .get(format!("{url}/"))
            .send()
            .await
            .map_err(|e| Failure::Transport(self.send_error(e, url)))?;
        let bytes = response.body().limit(ANSWER_SIZE_MAX).await.map_err(|e| {
            Failure::Transport(Error::Unavailable(format!(
                "reading vacancy's answer failed: {e}"
            )))
        })?;
        let about = identify(url, response.status(), &bytes)
            .map_err(|reason| Failure::Transport(Error::Unavailable(reason)))?;
        if self.replicas.len() == 1 {
            replica.vetted.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let Some(id) = about.store_id.as_deref() else {
            return Err(self.refuse(
                replica,
                format!(
                    "vacancy at {url} keeps stock of its own, and several vacancy replicas that do \
                     not share one store would sell the same tickets twice: give them all the \
                     postgres store; not using {url}"
                ),
            ));
        };
        let shared = self.store_id.get_or_init(|| id.to_owned());
        if shared != id {
            return Err(self.refuse(
                replica,
                format!(
                    "vacancy at {url} uses another store ({id}) than the other replicas \
                     ({shared}); not using {url}"
                ),
            ));
        }
        replica.vetted.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn refuse(&self, replica: &Replica, reason: String) -> Failure {
        tracing::error!("{reason}");
        replica
            .down_until_elapsed_ms
            .store(u64::MAX, Ordering::Relaxed);
        let _ = replica.refused.set(reason.clone());
        Failure::Transport(Error::Unavailable(reason))
    }

    /// Sends one request and returns the body of a 2xx answer. Tries again, with backoff, while
    /// vacancy cannot be reached (idempotent calls only, up to `attempts_max` tries); everything
    /// happens within `timeout`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        repeat: Repeat<'_>,
        kind: Call,
    ) -> Result<Bytes, Error> {
        self.call_within(method, path, body, repeat, kind, self.config.timeout)
            .await
    }

    /// As [`Self::call`], within `timeout` rather than the configured one.
    async fn call_within(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        repeat: Repeat<'_>,
        kind: Call,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let started = Instant::now();
        let deadline = started + timeout;
        let span = telemetry::vacancy_call_span(method.as_str(), path);
        let outcome = self
            .attempts(method, path, body.as_ref(), repeat, kind, deadline)
            .instrument(span.clone())
            .await;
        // Whether vacancy answered at all is what tells an operator it cannot be reached.
        let result = match &outcome {
            Ok(_) => "ok",
            Err(Error::Unavailable(_)) => "unavailable",
            Err(Error::Timeout { .. }) => "timeout",
            Err(_) => "error",
        };
        telemetry::finish_vacancy_call_span(&span, result);
        metrics::counter!("ticketd_vacancy_calls_total", "outcome" => result).increment(1);
        metrics::histogram!("ticketd_vacancy_call_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn attempts(
        &self,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        repeat: Repeat<'_>,
        kind: Call,
        deadline: Instant,
    ) -> Result<Bytes, Error> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let request_id = telemetry::current_request_id();
        let trace = telemetry::outgoing_trace();
        let timeout = Error::Timeout {
            limit_ms: self.config.timeout.as_millis() as u64,
        };
        let attempts_max = match kind {
            Call::Idempotent | Call::AdminRead => self.config.attempts_max,
            Call::AdminOnce => 1,
        };
        let mut backoff = RETRY_BACKOFF_FIRST;
        let mut attempt = 1;
        loop {
            let replica = self.replica(first, attempt as usize - 1);
            let url = format!("{}{path}", replica.base_url);
            let mut request = self.client().request(method.clone(), url);
            if matches!(kind, Call::AdminRead) {
                // The client's own limit is the configured one; a long poll needs its whole time
                // (the attempt is still bounded by `limit` below).
                request = request.timeout(deadline.saturating_duration_since(Instant::now()));
            }
            if let Some(id) = &request_id {
                request = request.insert_header((REQUEST_ID_HEADER, id.as_str()));
            }
            for header in trace.iter().flat_map(telemetry::TraceContext::headers) {
                request = request.insert_header(header);
            }
            match repeat {
                Repeat::Plain => {}
                Repeat::Key(key) => {
                    request = request.insert_header((IDEMPOTENCY_KEY_HEADER, key.as_str()));
                }
                Repeat::CallId(id) => {
                    request = request.insert_header((CALL_ID_HEADER, id.to_string()));
                }
            }
            if let Some(token) = &self.config.service_token {
                request = request.insert_header((SERVICE_TOKEN_HEADER, token.expose()));
            }
            if let (Call::AdminOnce | Call::AdminRead, Some(token)) =
                (kind, &self.config.admin_token)
            {
                request = request.bearer_auth(token.expose());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let last = attempt >= attempts_max;
            // With another replica to try, one that does not answer gets only half the time left;
            // but a read of changes may wait on vacancy for most of its time, by design.
            let limit = if last || self.replicas.len() == 1 || matches!(kind, Call::AdminRead) {
                left
            } else {
                left / 2
            };
            let exchange = async {
                self.vet(replica).await?;
                self.exchange(request, body, &replica.base_url).await
            };
            let failure = match actix_rt::time::timeout(limit, exchange).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(Failure::Answer(error))) => return Err(error),
                Ok(Err(Failure::Transport(error))) => error,
                Err(_) if limit == left => return Err(timeout),
                Err(_) => timeout.clone(),
            };
            self.pass_over(replica);
            let left = deadline.saturating_duration_since(Instant::now());
            if last || left <= backoff {
                return Err(failure);
            }
            tracing::debug!(attempt, error = %failure, "vacancy call failed; trying again");
            metrics::counter!("ticketd_vacancy_retries_total").increment(1);
            // Straight on to another replica; the same one again only after a pause.
            if std::ptr::eq(self.replica(first, attempt as usize), replica) {
                actix_rt::time::sleep(backoff).await;
                backoff *= 2;
            }
            attempt += 1;
        }
    }

    async fn exchange(
        &self,
        request: awc::ClientRequest,
        body: Option<&Bytes>,
        base_url: &str,
    ) -> Result<Bytes, Failure> {
        // A clone of `Bytes` shares the body: every try sends the one serialised at first.
        let sent = match body {
            Some(body) => request
                .insert_header((CONTENT_TYPE, "application/json"))
                .send_body(body.clone()),
            None => request.send(),
        };
        let mut response = sent
            .await
            .map_err(|e| Failure::Transport(self.send_error(e, base_url)))?;
        let bytes = response
            .body()
            .limit(ANSWER_SIZE_MAX)
            .await
            .map_err(|error| match error {
                // Vacancy did answer, with something this service will not read. That is this
                // call's error and says nothing about the replica: asking again, here or on
                // another replica, would get the same answer.
                PayloadError::Overflow => Failure::Answer(Error::Unavailable(format!(
                    "vacancy's answer is larger than the {ANSWER_SIZE_MAX} bytes this service \
                     reads"
                ))),
                PayloadError::EncodingCorrupted => Failure::Answer(Error::Unavailable(format!(
                    "vacancy's answer cannot be decoded: {error}"
                ))),
                // Cut off mid-answer: the connection failed, as good as no answer.
                other => Failure::Transport(Error::Unavailable(format!(
                    "reading vacancy's answer failed: {other}"
                ))),
            })?;
        check(response.status(), bytes).map_err(Failure::Answer)
    }

    fn send_error(&self, error: awc::error::SendRequestError, base_url: &str) -> Error {
        use awc::error::{ConnectError, SendRequestError};
        match error {
            SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
                Error::Timeout {
                    limit_ms: self.config.timeout.as_millis() as u64,
                }
            }
            other => Error::Unavailable(format!("cannot reach vacancy at {base_url}: {other}")),
        }
    }
}

/// Vacancy's answer as ours: the body of a success, or the same domain error as vacancy's.
fn check(status: StatusCode, bytes: Bytes) -> Result<Bytes, Error> {
    if status.is_success() {
        return Ok(bytes);
    }
    match serde_json::from_slice::<wire::ErrorResponse>(&bytes) {
        Ok(answer) => Err(answer.error.into_domain()),
        Err(_) => Err(Error::Unavailable(format!("vacancy answered {status}"))),
    }
}

/// What answers `GET /` at `url`, when it is a ticketd that serves the inventory's API (vacancy,
/// or a monolith, which serves the same routes); otherwise why it is not, for the operator.
fn identify(url: &str, status: StatusCode, bytes: &[u8]) -> Result<wire::AboutResponse, String> {
    let not_ours = |why: String| format!("vacancy at {url} is not a ticketd vacancy: {why}");
    if !status.is_success() {
        return Err(not_ours(format!("GET / answered {status}")));
    }
    let Ok(about) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(not_ours(format!(
            "GET / answered {status} with something other than JSON"
        )));
    };
    let keeps_stock = |mode: &str| {
        [Mode::Vacancy, Mode::Monolith]
            .iter()
            .any(|m| m.as_str() == mode)
    };
    match wire::AboutResponse::deserialize(&about) {
        Ok(ours) if ours.service == wire::SERVICE_NAME && keeps_stock(&ours.mode) => Ok(ours),
        Ok(ours) if ours.service == wire::SERVICE_NAME => Err(not_ours(format!(
            "it is {} {}, which keeps no stock",
            wire::SERVICE_NAME,
            ours.mode
        ))),
        _ => {
            // Enough of the answer to recognise what is there, not a whole page in every log line.
            const SHOWN_CHARS_MAX: usize = 120;
            let text = about.to_string();
            let shown: String = text.chars().take(SHOWN_CHARS_MAX).collect();
            let more = if shown.len() < text.len() { "…" } else { "" };
            Err(not_ours(format!("GET / answered {shown}{more}")))
        }
    }
}

/// A request body as sent: the request types the routes read, so the two cannot drift apart.
fn encode<T: Serialize>(body: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot write a request to vacancy: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Unavailable(format!("vacancy sent an answer that cannot be read: {e}")))
}

#[async_trait(?Send)]
impl VacancyClient for RemoteVacancyClient {
    async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        if self.batches_refused() {
            return self.reserve_one(&reservation).await;
        }
        coalesce::reserve(
            self.key,
            reservation,
            async |reservations: &[Reservation]| self.reserve_together(reservations).await,
        )
        .await
    }

    async fn confirm(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, Error> {
        let path = format!("/api/v1/holds/{id}/confirm");
        let repeat = Repeat::change(key.as_ref());
        let bytes = self
            .call(Method::POST, &path, None, repeat, Call::Idempotent)
            .await?;
        decode::<wire::OrderResponse>(&bytes)?.into_domain()
    }

    async fn release(&self, id: ReservationId, key: Option<IdempotencyKey>) -> Result<(), Error> {
        let path = format!("/api/v1/holds/{id}");
        let repeat = Repeat::change(key.as_ref());
        self.call(Method::DELETE, &path, None, repeat, Call::Idempotent)
            .await?;
        Ok(())
    }

    async fn cancel(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Cancelled, Error> {
        let path = format!("/api/v1/orders/{id}/cancel");
        let repeat = Repeat::change(key.as_ref());
        let bytes = self
            .call(Method::POST, &path, None, repeat, Call::Idempotent)
            .await?;
        let answer: wire::CancelResponse = decode(&bytes)?;
        Ok(Cancelled {
            order: answer.order.into_domain()?,
            changed: answer.cancelled,
        })
    }

    async fn order(&self, id: ReservationId) -> Result<Order, Error> {
        let path = format!("/api/v1/orders/{id}");
        let bytes = self
            .call(Method::GET, &path, None, Repeat::Plain, Call::Idempotent)
            .await?;
        decode::<wire::OrderResponse>(&bytes)?.into_domain()
    }

    async fn event(&self, id: &EventId) -> Result<Event, Error> {
        let path = format!("/api/v1/events/{id}");
        let bytes = self
            .call(Method::GET, &path, None, Repeat::Plain, Call::Idempotent)
            .await?;
        decode::<wire::EventResponse>(&bytes)?.into_domain()
    }

    async fn events(&self, query: PageQuery) -> Result<EventsPage, Error> {
        let path = wire::events_path(&query);
        let bytes = self
            .call(Method::GET, &path, None, Repeat::Plain, Call::Idempotent)
            .await?;
        decode::<wire::EventsResponse>(&bytes)?.into_domain()
    }

    async fn create_event(&self, id: EventId, name: String, capacity: u64) -> Result<Event, Error> {
        let body = encode(&wire::CreateEventRequest {
            id: Some(id.as_str().to_owned()),
            name: Some(name),
            capacity: Some(capacity.into()),
            ..wire::CreateEventRequest::default()
        })?;
        let bytes = self
            .call(
                Method::POST,
                "/api/v1/events",
                Some(body),
                Repeat::Plain,
                Call::AdminOnce,
            )
            .await?;
        decode::<wire::EventResponse>(&bytes)?.into_domain()
    }

    async fn replenish(&self, id: EventId, qty: u64) -> Result<Event, Error> {
        let path = format!("/api/v1/events/{id}/stock");
        let body = encode(&wire::StockRequest {
            qty: Some(qty.into()),
            quota: None,
        })?;
        let bytes = self
            .call(
                Method::POST,
                &path,
                Some(body),
                Repeat::Plain,
                Call::AdminOnce,
            )
            .await?;
        decode::<wire::EventResponse>(&bytes)?.into_domain()
    }

    async fn create(&self, draft: EventDraft) -> Result<Event, Error> {
        let body = encode(&wire::CreateEventRequest::from_draft(&draft))?;
        self.admin(Method::POST, "/api/v1/events", body).await
    }

    async fn resize_quota(
        &self,
        id: EventId,
        quota: QuotaId,
        resize: Resize,
    ) -> Result<Event, Error> {
        match resize {
            Resize::To(size) => {
                let path = format!("/api/v1/events/{id}/quotas/{quota}");
                let body = encode(&wire::QuotaPatchRequest {
                    size: Some(size.into()),
                })?;
                self.admin(Method::PATCH, &path, body).await
            }
            Resize::Add(qty) => {
                let path = format!("/api/v1/events/{id}/stock");
                let body = encode(&wire::StockRequest {
                    qty: Some(qty.into()),
                    quota: Some(quota.as_str().into()),
                })?;
                self.admin(Method::POST, &path, body).await
            }
        }
    }

    async fn change_category(
        &self,
        id: EventId,
        category: CategoryId,
        change: CategoryChange,
    ) -> Result<Event, Error> {
        let path = format!("/api/v1/events/{id}/categories/{category}");
        let body = encode(&wire::CategoryPatchRequest::from(change))?;
        self.admin(Method::PATCH, &path, body).await
    }

    async fn join_waitlist(&self, joining: Joining) -> Result<EntryView, Error> {
        let path = format!("/api/v1/events/{}/waitlist", joining.event);
        let body = encode(&wire::WaitlistRequest {
            qty: Some(joining.qty.get().into()),
            category: joining.category.as_ref().map(|c| c.as_str().into()),
            customer: joining.customer.as_ref().map(|c| c.as_str().into()),
        })?;
        // The entry's id goes as the call's id: vacancy joins under it, so a retry joins once.
        let repeat = Repeat::CallId(joining.id.as_uuid());
        let bytes = self
            .call(Method::POST, &path, Some(body), repeat, Call::Idempotent)
            .await?;
        decode::<wire::WaitlistEntryResponse>(&bytes)?.into_domain()
    }

    async fn waitlist_entry(&self, id: ReservationId) -> Result<EntryView, Error> {
        let path = format!("/api/v1/waitlist/{id}");
        let bytes = self
            .call(Method::GET, &path, None, Repeat::Plain, Call::Idempotent)
            .await?;
        decode::<wire::WaitlistEntryResponse>(&bytes)?.into_domain()
    }

    /// A long poll waits on vacancy: the call's time limit is the wait plus this service's
    /// usual limit for an answer.
    async fn changes(&self, query: ChangesQuery) -> Result<ChangesPage, Error> {
        let path = wire::changes_path(&query);
        let timeout = self.config.timeout + query.wait;
        let bytes = self
            .call_within(
                Method::GET,
                &path,
                None,
                Repeat::Plain,
                Call::AdminRead,
                timeout,
            )
            .await?;
        decode::<wire::ChangesResponse>(&bytes)?.into_domain()
    }

    async fn leave_waitlist(&self, id: ReservationId) -> Result<EntryView, Error> {
        let path = format!("/api/v1/waitlist/{id}");
        let bytes = self
            .call(Method::DELETE, &path, None, Repeat::Plain, Call::Idempotent)
            .await?;
        decode::<wire::WaitlistEntryResponse>(&bytes)?.into_domain()
    }

    async fn create_webhook(
        &self,
        url: WebhookUrl,
        types: WebhookTypes,
    ) -> Result<(WebhookView, SigningSecret), Error> {
        let names: Vec<serde_json::Value> =
            types.as_slice().iter().map(|t| t.as_str().into()).collect();
        let body = encode(&wire::CreateWebhookRequest {
            url: Some(url.as_str().into()),
            types: Some(names.into()),
        })?;
        let bytes = self
            .call(
                Method::POST,
                "/api/v1/webhooks",
                Some(body),
                Repeat::Plain,
                Call::AdminOnce,
            )
            .await?;
        decode::<wire::CreatedWebhookResponse>(&bytes)?.into_domain()
    }

    async fn webhooks(&self) -> Result<Vec<WebhookView>, Error> {
        let bytes = self
            .call(
                Method::GET,
                "/api/v1/webhooks",
                None,
                Repeat::Plain,
                Call::AdminRead,
            )
            .await?;
        decode::<wire::WebhooksResponse>(&bytes)?
            .webhooks
            .into_iter()
            .map(wire::WebhookResponse::into_domain)
            .collect()
    }

    async fn webhook(&self, id: WebhookId) -> Result<WebhookView, Error> {
        let path = format!("/api/v1/webhooks/{id}");
        let bytes = self
            .call(Method::GET, &path, None, Repeat::Plain, Call::AdminRead)
            .await?;
        decode::<wire::WebhookResponse>(&bytes)?.into_domain()
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<(), Error> {
        let path = format!("/api/v1/webhooks/{id}");
        // Once: a blind repeat of a delete whose answer was lost would say 404. When the outcome
        // is unknown, it is asked again, and "unknown webhook" then means this call deleted it
        // (or someone else did meanwhile: gone either way).
        match self
            .call(Method::DELETE, &path, None, Repeat::Plain, Call::AdminOnce)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Unavailable(_) | Error::Timeout { .. }) => {
                match self
                    .call(Method::DELETE, &path, None, Repeat::Plain, Call::AdminRead)
                    .await
                {
                    Ok(_) | Err(Error::UnknownWebhook(_)) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn webhook_deliveries(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        let path = format!("/api/v1/webhooks/{id}/deliveries");
        let bytes = self
            .call(Method::GET, &path, None, Repeat::Plain, Call::AdminRead)
            .await?;
        decode::<wire::DeliveriesResponse>(&bytes)?
            .deliveries
            .into_iter()
            .map(wire::DeliveryResponse::into_domain)
            .collect()
    }
}

impl RemoteVacancyClient {
    /// An admin change on vacancy, made once (never repeated: it may not be safe to), answered
    /// with the event as it then is.
    async fn admin(&self, method: Method, path: &str, body: Bytes) -> Result<Event, Error> {
        let bytes = self
            .call(method, path, Some(body), Repeat::Plain, Call::AdminOnce)
            .await?;
        decode::<wire::EventResponse>(&bytes)?.into_domain()
    }
}

/// How long reservations go one call each after a vacancy answered that it has no batch route.
const BATCHES_REFUSED_FOR: Duration = Duration::from_secs(60);

/// Reservations: one call for each, or one call for several (see [`coalesce`]).
impl RemoteVacancyClient {
    fn batches_refused(&self) -> bool {
        self.batches_refused_until_elapsed_ms
            .load(Ordering::Relaxed)
            > self.elapsed_ms()
    }

    /// One call for all of `reservations`, an answer for each in order. A vacancy without the
    /// batch route (an older version) gets them one call each, now and for a while.
    async fn reserve_together(&self, reservations: &[Reservation]) -> Vec<Result<Reserved, Error>> {
        if let [reservation] = reservations {
            return vec![self.reserve_one(reservation).await];
        }
        match self.reserve_batch(reservations).await {
            Ok(answers) => answers,
            Err(error) if route_missing(&error) => {
                let until_ms = self.elapsed_ms() + BATCHES_REFUSED_FOR.as_millis() as u64;
                self.batches_refused_until_elapsed_ms
                    .store(until_ms, Ordering::Relaxed);
                tracing::info!("vacancy has no batch route; sending reservations one call each");
                let each = reservations.iter().map(|r| self.reserve_one(r));
                futures_util::future::join_all(each).await
            }
            // Refused as a whole for what one of them asks (vacancy's limits may differ from this
            // service's during an upgrade): nothing was made, and alone each gets its own answer.
            Err(error) if refused_as_a_whole(&error) => {
                let each = reservations.iter().map(|r| self.reserve_one(r));
                futures_util::future::join_all(each).await
            }
            Err(error) => reservations.iter().map(|_| Err(error.clone())).collect(),
        }
    }

    async fn reserve_one(&self, reservation: &Reservation) -> Result<Reserved, Error> {
        let path = format!("/api/v1/events/{}/reserve", reservation.event);
        let body = encode(&reserve_request(reservation))?;
        let bytes = self
            .call(
                Method::POST,
                &path,
                Some(body),
                reservation.key.as_ref().map_or(Repeat::Plain, Repeat::Key),
                Call::Idempotent,
            )
            .await?;
        reserved(decode(&bytes)?)
    }

    /// The batch call. Safe to repeat like a single one: each reservation carries its own id
    /// (and its client's key), so a repeat gets the first answers and sells nothing twice.
    async fn reserve_batch(
        &self,
        reservations: &[Reservation],
    ) -> Result<Vec<Result<Reserved, Error>>, Error> {
        let body = encode(&wire::ReserveBatchRequest {
            reservations: reservations
                .iter()
                .map(|reservation| wire::BatchReservation {
                    event: reservation.event.to_string(),
                    idempotency_key: reservation.key.as_ref().map(|key| key.as_str().into()),
                    reserve: reserve_request(reservation),
                })
                .collect(),
        })?;
        let bytes = self
            .call(
                Method::POST,
                "/api/v1/reservations",
                Some(body),
                Repeat::Plain,
                Call::Idempotent,
            )
            .await?;
        let answer: wire::ReserveBatchResponse = decode(&bytes)?;
        if answer.answers.len() != reservations.len() {
            return Err(Error::Unavailable(format!(
                "vacancy answered {} of {} reservations",
                answer.answers.len(),
                reservations.len()
            )));
        }
        Ok(answer
            .answers
            .into_iter()
            .map(|answer| match answer {
                wire::BatchAnswer::Reserved(answer) => reserved(answer),
                wire::BatchAnswer::Error(error) => Err(error.into_domain()),
            })
            .collect())
    }
}

/// Vacancy answered 404 `not_found` (read as unavailable, see `ErrorDetail::into_domain`): the
/// route does not exist there. The batch route names no event, so nothing else answers so.
fn route_missing(error: &Error) -> bool {
    matches!(error, Error::Unavailable(message) if message.starts_with("not_found:"))
}

/// Vacancy refused the batch call for what it asked, not for being unable to answer: an invalid
/// reservation in it, or a body it would not read.
fn refused_as_a_whole(error: &Error) -> bool {
    match error {
        Error::Unavailable(message) => {
            message.starts_with("invalid_body:") || message.starts_with("body_too_large:")
        }
        Error::Timeout { .. } | Error::Overloaded | Error::Storage(_) | Error::Internal(_) => false,
        _ => true,
    }
}

/// The body of one reservation, as the single call and a batch both carry it.
fn reserve_request(reservation: &Reservation) -> wire::ReserveRequest {
    wire::ReserveRequest {
        qty: None,
        category: None,
        lines: Some(wire::lines_json(&reservation.lines)),
        customer: reservation
            .customer
            .as_ref()
            .map(|customer| customer.as_str().into()),
        ttl_seconds: reservation.hold_ttl_seconds.map(|ttl| ttl.seconds().into()),
        reservation_id: Some(reservation.id.to_string()),
    }
}

fn reserved(answer: wire::ReserveResponse) -> Result<Reserved, Error> {
    Ok(Reserved {
        order: answer
            .order
            .map(wire::OrderResponse::into_domain)
            .transpose()?,
        remaining: answer.remaining,
        short: answer
            .short
            .as_ref()
            .map(wire::short_from_vacancy)
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RemoteConfig {
        RemoteConfig {
            urls: vec![url.into()],
            timeout: Duration::from_millis(100),
            connections_max: 4,
            keep_alive: Duration::from_secs(5),
            attempts_max: 3,
            service_token: None,
            admin_token: None,
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
    fn the_largest_page_fits_in_an_answer() {
        // The longest id, and names whose every character JSON escapes the longest way.
        let event = |n: usize| wire::EventResponse {
            id: format!("{n:0>width$}", width = EventId::LEN_MAX),
            name: "\u{1}".repeat(Event::NAME_LEN_MAX),
            capacity: u64::MAX,
            available: u64::MAX,
            held: u64::MAX,
            sold: u64::MAX,
            quotas: None,
            categories: None,
            max_per_customer: None,
            customer_required: None,
        };
        let last_id = EventId::parse(&"z".repeat(EventId::LEN_MAX)).unwrap();
        let page = wire::EventsResponse {
            events: (0..PageLimit::MAX as usize).map(event).collect(),
            next_cursor: Some(wire::cursor(&last_id)),
        };
        let size = serde_json::to_vec(&page).unwrap().len();
        // The bound itself holds, before the margin.
        assert!(size <= ANSWER_SIZE_MAX / 2, "{size} bytes");
        assert!(
            size > ANSWER_SIZE_MAX / 4,
            "{size} bytes: the bound is far off"
        );
    }

    #[test]
    fn only_a_ticketd_serving_the_inventory_passes_for_a_vacancy() {
        let url = "http://127.0.0.1:8001";
        let ours = br#"{"service":"ticketd","mode":"vacancy","version":"0.1.0"}"#;
        assert!(identify(url, StatusCode::OK, ours).is_ok());
        let monolith = br#"{"service":"ticketd","mode":"monolith","version":"0.1.0"}"#;
        assert!(identify(url, StatusCode::OK, monolith).is_ok());

        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(500));
        for (status, body, why) in [
            (
                StatusCode::NOT_FOUND,
                &b"<html>404</html>"[..],
                "GET / answered 404 Not Found",
            ),
            (
                StatusCode::OK,
                b"<html>hello</html>",
                "something other than JSON",
            ),
            (
                StatusCode::OK,
                br#"{"message":"Vacancy Service"}"#,
                "Vacancy Service",
            ),
            (
                StatusCode::OK,
                br#"{"service":"ticketd","mode":"ticket","version":"0.1.0"}"#,
                "ticketd ticket",
            ),
            (StatusCode::OK, long.as_bytes(), "xxx…"),
        ] {
            let reason = identify(url, status, body).unwrap_err();
            let expected = format!("vacancy at {url} is not a ticketd vacancy: ");
            assert!(reason.starts_with(&expected), "{reason}");
            assert!(reason.contains(why), "{reason}");
            assert!(reason.len() < 300, "{reason}");
        }
    }

    #[test]
    fn errors_from_vacancy_keep_their_code() {
        let body = br#"{"error":{"code":"unknown_event","message":"unknown event 'x'"}}"#;
        let error = check(StatusCode::NOT_FOUND, Bytes::from_static(body)).unwrap_err();
        assert_eq!(error, Error::UnknownEvent("unknown event 'x'".into()));

        let error = check(StatusCode::BAD_GATEWAY, Bytes::from_static(b"<html>")).unwrap_err();
        assert_eq!(error.code(), "unavailable");
    }

    /// A vacancy from before `contention` became internal may still send it. The ticket service
    /// must not pass it on as it came: to its clients vacancy was unavailable for a moment.
    #[test]
    fn a_contention_code_from_vacancy_is_read_as_unavailable() {
        let body = br#"{"error":{"code":"contention","message":"updated 0 of 1 locked events"}}"#;
        let error = check(StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(body)).unwrap_err();
        assert_eq!(error.code(), "unavailable", "{error:?}");
    }
}
