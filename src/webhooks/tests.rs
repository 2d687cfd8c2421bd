//! Delivery against a fake feed and a real receiver on 127.0.0.1 that checks every signature by
//! hand (HMAC-SHA256 from the `hmac` and `sha2` crates, not the signing crate).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use hmac::{KeyInit, Mac};
use parking_lot::Mutex;

use super::deliver::{Deliverer, DeliveryConfig, retry_delay};
use super::*;
use crate::domain::{ATTEMPTS_KEPT_MAX, ChangeFeed, ChangesPage, ChangesQuery};
use crate::vacancy::SystemClock;

/// Changes appended by the test, read as the outbox's feed would serve them.
#[derive(Default)]
pub struct FakeFeed {
    changes: Mutex<Vec<Change>>,
    added: tokio::sync::Notify,
}

impl FakeFeed {
    pub fn push(&self, kind: ChangeType, event: &str, data: &str) -> u64 {
        let mut changes = self.changes.lock();
        let seq = changes.len() as u64 + 1;
        changes.push(Change {
            seq,
            kind,
            event: EventId::parse(event).unwrap(),
            at_ms: 1_795_000_000_000 + seq as i64,
            data: Arc::from(data),
        });
        drop(changes);
        self.added.notify_waiters();
        seq
    }
}

#[async_trait]
impl ChangeFeed for FakeFeed {
    async fn changes(&self, query: ChangesQuery) -> Result<ChangesPage, Error> {
        let read = |changes: &Vec<Change>| -> Vec<Change> {
            changes
                .iter()
                .filter(|c| c.seq > query.after)
                .take(query.limit)
                .cloned()
                .collect()
        };
        let mut found = read(&self.changes.lock());
        if found.is_empty() && !query.wait.is_zero() {
            let _ = tokio::time::timeout(query.wait, self.added.notified()).await;
            found = read(&self.changes.lock());
        }
        let next_after = found.last().map_or(query.after, |c| c.seq);
        Ok(ChangesPage {
            changes: found,
            next_after,
        })
    }
}

/// What the receiver saw of one request.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub verified: bool,
    pub body: serde_json::Value,
}

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Redirect,
    Large,
    Slow,
}

struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    failures_left: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    url: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        actix_rt::System::new().block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn verify(secret: &str, request: &HttpRequest, body: &[u8]) -> bool {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or_default())
        .unwrap_or_default();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header("webhook-signature")
        .split(' ')
        .any(|s| s == format!("v1,{expected}"))
}

fn receiver(secret: Arc<Mutex<String>>, failures: usize, answer: Answer) -> Receiver {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failures_left = Arc::new(AtomicUsize::new(failures));
    let (tx, rx) = std::sync::mpsc::channel();
    let (seen_in, failures_in) = (Arc::clone(&seen), Arc::clone(&failures_left));
    let thread = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let server = HttpServer::new(move || {
                let (seen, failures, secret) = (
                    Arc::clone(&seen_in),
                    Arc::clone(&failures_in),
                    Arc::clone(&secret),
                );
                App::new().default_service(web::to(
                    move |request: HttpRequest, body: web::Bytes| {
                        let (seen, failures, secret) = (
                            Arc::clone(&seen),
                            Arc::clone(&failures),
                            Arc::clone(&secret),
                        );
                        async move {
                            let verified = verify(&secret.lock(), &request, &body);
                            let id = request
                                .headers()
                                .get("webhook-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            seen.lock().push(Received {
                                path: request.path().to_owned(),
                                id,
                                verified,
                                body: serde_json::from_slice(&body).unwrap_or_default(),
                            });
                            let fail = failures
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            if fail {
                                return HttpResponse::ServiceUnavailable().finish();
                            }
                            match answer {
                                Answer::Ok => HttpResponse::NoContent().finish(),
                                Answer::Redirect => HttpResponse::Found()
                                    .insert_header(("location", "/elsewhere"))
                                    .finish(),
                                Answer::Large => HttpResponse::Ok().body(vec![b'x'; 1 << 20]),
                                Answer::Slow => {
                                    actix_rt::time::sleep(Duration::from_secs(5)).await;
                                    HttpResponse::Ok().finish()
                                }
                            }
                        }
                    },
                ))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .bind(("127.0.0.1", 0))
            .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((server.handle(), addr)).unwrap();
            let _ = server.await;
        });
    });
    let (handle, addr) = rx.recv().unwrap();
    Receiver {
        seen,
        failures_left,
        handle,
        thread: Some(thread),
        url: format!("http://{addr}/hooks"),
    }
}

fn config() -> DeliveryConfig {
    DeliveryConfig {
        timeout: Duration::from_millis(500),
        retry_first: Duration::from_millis(20),
        retry_span: super::deliver::RETRY_SPAN,
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(50),
    }
}

/// The change's `seq` in a `webhook-id` (`chg_{source}_{seq}_{at_ms}`).
fn seq_of(id: &str) -> u64 {
    let parts: Vec<&str> = id.split('_').collect();
    assert!(parts.len() == 4 && parts[0] == "chg", "{id}");
    parts[2].parse().unwrap()
}

/// Waits, within 20 s, until `done` holds.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    actix_rt::System::new().block_on(future)
}

struct Setup {
    feed: Arc<FakeFeed>,
    store: Arc<MemoryWebhookStore>,
    webhooks: Webhooks,
    secret: Arc<Mutex<String>>,
}

fn setup() -> Setup {
    let store = Arc::new(MemoryWebhookStore::new());
    Setup {
        feed: Arc::new(FakeFeed::default()),
        webhooks: Webhooks::new(store.clone(), Arc::new(SystemClock)),
        store,
        secret: Arc::new(Mutex::new(String::new())),
    }
}

impl Setup {
    fn subscribe(&self, url: &str, types: Option<&[&str]>) -> Webhook {
        let webhook = block_on(self.webhooks.create(
            WebhookUrl::parse(url).unwrap(),
            WebhookTypes::parse(types).unwrap(),
        ))
        .unwrap();
        *self.secret.lock() = webhook.secret.expose().to_owned();
        webhook
    }

    fn start(&self, config: DeliveryConfig) -> Deliverer {
        Deliverer::start(
            self.store.clone(),
            self.feed.clone(),
            None,
            config,
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    fn attempts(&self, webhook: &Webhook) -> Vec<Attempt> {
        block_on(self.webhooks.attempts(webhook.id)).unwrap()
    }
}

#[test]
fn retries_back_off_for_more_than_a_day_then_stop() {
    let first = Duration::from_secs(5);
    let delays: Vec<Duration> = (1..=7).map(|n| retry_delay(first, n).unwrap()).collect();
    assert_eq!(delays[0], first);
    assert_eq!(delays[1], Duration::from_secs(300));
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert!(delays.iter().sum::<Duration>() > Duration::from_secs(86_400));
    assert_eq!(retry_delay(first, 8), None);
    assert_eq!(retry_delay(first, 0), None);
}

/// Whatever `webhook_retry_first_ms` says (0 included), a change is retried until at least a day
/// has passed since its first attempt; the knob only shapes the early delays.
#[test]
fn retries_span_at_least_a_day_whatever_the_first_delay() {
    for first_ms in [0, 1, 200, 1_000, 4_000, 5_000, 60_000, 3_600_000] {
        let first = Duration::from_millis(first_ms);
        let mut span = Duration::ZERO;
        let mut failed = 1;
        while let Some(delay) = retry_delay(first, failed) {
            span += delay;
            failed += 1;
            assert!(failed < 1000, "first {first_ms} ms: no end to the retries");
        }
        assert!(
            span >= Duration::from_secs(86_400),
            "first {first_ms} ms: the last retry comes {span:?} after the first attempt"
        );
        assert!(
            span <= Duration::from_secs(36 * 3600),
            "first {first_ms} ms: retries for {span:?}"
        );
    }
}

#[test]
fn progress_and_attempts_read_back_as_stored() {
    let progress = Progress {
        cursor: 9,
        pending: vec![Pending {
            change: Change {
                seq: 7,
                kind: ChangeType::HoldExpired,
                event: EventId::parse("gig").unwrap(),
                at_ms: 5,
                data: Arc::from("{\"a\":\"\\u00e9\"}"),
            },
            attempts: 2,
            next_at_ms: 11,
        }],
    };
    assert_eq!(
        Progress::from_stored(&progress.to_stored()).unwrap(),
        progress
    );
    assert!(Progress::from_stored("{").is_err());
    let attempt = Attempt {
        seq: 7,
        kind: ChangeType::HoldExpired,
        message_id: "chg_7".into(),
        attempt: 3,
        at_ms: 12,
        outcome: crate::domain::AttemptOutcome::Error("refused".into()),
        next_retry_at_ms: None,
        failed: true,
    };
    assert_eq!(
        attempt_from_stored(&attempt_to_stored(&attempt)).unwrap(),
        attempt
    );
}

/// What is saved stays small however far behind a webhook is: changes never attempted are read
/// from the feed again after a restart, and come back in order, without the finished ones.
#[test]
fn saved_progress_keeps_only_attempted_changes_and_reads_the_rest_again() {
    let change = |seq: u64, event: &str| Change {
        seq,
        kind: ChangeType::OrderConfirmed,
        event: EventId::parse(event).unwrap(),
        at_ms: 0,
        data: Arc::from("{}"),
    };
    // Event a: 3 was delivered, 5 is being retried, 8 waits. Event b: 4 waits.
    let mut progress = Progress::default();
    for (seq, event) in [(4, "b"), (5, "a"), (8, "a")] {
        progress.add(change(seq, event), 0);
    }
    progress.cursor = 9;
    progress.pending[1].attempts = 2;
    progress.pending[1].next_at_ms = 77;
    let stored = Progress::from_stored(&progress.to_stored()).unwrap();
    assert_eq!(
        stored.cursor, 3,
        "back before the first change never attempted"
    );
    assert_eq!(stored.pending.len(), 1);
    // Read again from the feed after the restart: 3 (a, older than the pending 5) is skipped as
    // finished, 5 is pending already, 4 and 8 come back, in feed order.
    let mut reloaded = stored;
    for (seq, event) in [(3, "a"), (4, "b"), (5, "a"), (8, "a")] {
        reloaded.add(change(seq, event), 0);
    }
    reloaded.cursor = 9;
    assert_eq!(reloaded, progress);
}

/// A receiver that fails for a while, then recovers: every change of the subscribed types arrives,
/// signed, in order per event; the retries carry the first attempt's `webhook-id`.
#[test]
fn a_receiver_that_fails_for_a_while_gets_everything_in_order_per_event() {
    let setup = setup();
    let receiver = receiver(Arc::clone(&setup.secret), 5, Answer::Ok);
    let webhook = setup.subscribe(&receiver.url, Some(&["order.confirmed", "hold.expired"]));
    let mut wanted = Vec::new();
    for n in 0..20 {
        let event = ["a", "b", "c"][n % 3];
        let kind = [
            ChangeType::OrderConfirmed,
            ChangeType::HoldCreated,
            ChangeType::HoldExpired,
        ][n % 4 % 3];
        let seq = setup.feed.push(kind, event, &format!("{{\"n\":{n}}}"));
        if kind != ChangeType::HoldCreated {
            wanted.push((seq, event));
        }
    }
    let deliverer = setup.start(config());
    until("every change delivered", || {
        let seen = receiver.seen.lock();
        let ok: HashSet<&str> = seen.iter().map(|r| r.id.as_str()).collect();
        ok.len() == wanted.len() && receiver.failures_left.load(Ordering::SeqCst) == 0
    });
    // And one more, after the receiver recovered.
    let late = setup
        .feed
        .push(ChangeType::OrderConfirmed, "a", "{\"late\":true}");
    wanted.push((late, "a"));
    until("the late change", || {
        receiver.seen.lock().iter().any(|r| seq_of(&r.id) == late)
    });
    until("the attempts saved", || {
        setup
            .attempts(&webhook)
            .iter()
            .any(|a| a.seq == late && a.outcome.delivered())
    });
    drop(deliverer);

    let seen = receiver.seen.lock().clone();
    assert!(seen.iter().all(|r| r.verified), "{seen:?}");
    let unique: HashSet<&str> = seen.iter().map(|r| r.id.as_str()).collect();
    let seqs: HashSet<u64> = unique.iter().map(|id| seq_of(id)).collect();
    let expected: HashSet<u64> = wanted.iter().map(|&(seq, _)| seq).collect();
    assert_eq!(seqs, expected);
    assert_eq!(
        unique.len(),
        expected.len(),
        "one webhook-id a change: {unique:?}"
    );
    assert!(seen.len() > wanted.len(), "the failures were retried");
    // Each event's changes arrive in feed order, counting the first arrival of each.
    for event in ["a", "b", "c"] {
        let mut first_arrivals = Vec::new();
        for received in &seen {
            let seq = seq_of(&received.id);
            let of_event = wanted.iter().any(|&(s, e)| s == seq && e == event);
            if of_event && !first_arrivals.contains(&seq) {
                first_arrivals.push(seq);
            }
        }
        let mut sorted = first_arrivals.clone();
        sorted.sort();
        assert_eq!(first_arrivals, sorted, "event {event}");
    }
    let body = &seen.last().unwrap().body;
    assert_eq!(body["type"], "order.confirmed");
    assert_eq!(body["data"]["late"], true);
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let attempts = setup.attempts(&webhook);
    assert!(
        attempts
            .iter()
            .any(|a| a.outcome == crate::domain::AttemptOutcome::Status(503)
                && a.next_retry_at_ms.is_some()
                && !a.failed)
    );
}

fn failing_answer_is_retried_and_recorded(answer: Answer, config: DeliveryConfig) -> Vec<Attempt> {
    let setup = setup();
    let receiver = receiver(Arc::clone(&setup.secret), 0, answer);
    let webhook = setup.subscribe(&receiver.url, None);
    setup.feed.push(ChangeType::EventSoldOut, "gig", "{}");
    let deliverer = setup.start(config);
    until("two attempts", || setup.attempts(&webhook).len() >= 2);
    drop(deliverer);
    setup.attempts(&webhook)
}

#[test]
fn a_redirect_is_a_failure_and_is_not_followed() {
    let attempts = failing_answer_is_retried_and_recorded(Answer::Redirect, config());
    assert!(
        attempts
            .iter()
            .all(|a| a.outcome == crate::domain::AttemptOutcome::Status(302)),
        "{attempts:?}"
    );
    assert_eq!(attempts[0].message_id, attempts[1].message_id);
}

#[test]
fn an_oversized_answer_is_a_failure() {
    let attempts = failing_answer_is_retried_and_recorded(Answer::Large, config());
    assert!(
        attempts.iter().all(|a| !a.outcome.delivered()),
        "{attempts:?}"
    );
}

#[test]
fn a_slow_answer_is_a_failure() {
    let config = DeliveryConfig {
        timeout: Duration::from_millis(200),
        ..config()
    };
    let attempts = failing_answer_is_retried_and_recorded(Answer::Slow, config);
    assert!(
        attempts.iter().all(|a| matches!(
            &a.outcome,
            crate::domain::AttemptOutcome::Error(e) if e.contains("200 ms")
        )),
        "{attempts:?}"
    );
}

#[test]
fn a_change_whose_retries_run_out_is_given_up_and_the_next_goes() {
    let setup = setup();
    let receiver = receiver(Arc::clone(&setup.secret), 8, Answer::Ok);
    let webhook = setup.subscribe(&receiver.url, None);
    let first = setup.feed.push(ChangeType::EventSoldOut, "gig", "{}");
    let second = setup.feed.push(ChangeType::EventBackOnSale, "gig", "{}");
    // Retries 0.1 ms apart and then a few hundred ms, for 1.5 s: the eight attempts of the first
    // change run out.
    let deliverer = setup.start(DeliveryConfig {
        retry_first: Duration::from_micros(100),
        retry_span: Duration::from_millis(1500),
        ..config()
    });
    until("the second change delivered", || {
        setup
            .attempts(&webhook)
            .iter()
            .any(|a| a.seq == second && a.outcome.delivered())
    });
    drop(deliverer);
    let attempts = setup.attempts(&webhook);
    let of_first: Vec<&Attempt> = attempts.iter().filter(|a| a.seq == first).collect();
    assert_eq!(of_first.len(), 8, "{attempts:?}");
    assert!(
        of_first[0].failed && of_first[0].attempt == 8 && of_first[0].next_retry_at_ms.is_none()
    );
    assert!(of_first[1..].iter().all(|a| !a.failed));
}

#[test]
fn a_deleted_webhook_hears_no_more() {
    let setup = setup();
    let receiver = receiver(Arc::clone(&setup.secret), 0, Answer::Ok);
    let old = setup.subscribe(&format!("{}/old", receiver.url), None);
    let deliverer = setup.start(config());
    setup.feed.push(ChangeType::EventSoldOut, "gig", "{}");
    until("the first change", || receiver.seen.lock().len() == 1);
    block_on(setup.webhooks.delete(old.id)).unwrap();
    assert!(matches!(
        block_on(setup.webhooks.attempts(old.id)),
        Err(Error::UnknownWebhook(_))
    ));
    // The round that starts the new webhook's task stops the deleted one's first.
    setup.subscribe(&format!("{}/new", receiver.url), None);
    until("the new webhook's first delivery", || {
        receiver
            .seen
            .lock()
            .iter()
            .any(|r| r.path.ends_with("/new"))
    });
    let last = setup.feed.push(ChangeType::EventBackOnSale, "gig", "{}");
    until("the new webhook's second delivery", || {
        receiver
            .seen
            .lock()
            .iter()
            .any(|r| r.path.ends_with("/new") && seq_of(&r.id) == last)
    });
    drop(deliverer);
    let seen = receiver.seen.lock().clone();
    assert!(
        !seen
            .iter()
            .any(|r| r.path.ends_with("/old") && seq_of(&r.id) == last),
        "{seen:?}"
    );
}

#[test]
fn the_store_keeps_at_most_the_limit_of_webhooks() {
    let setup = setup();
    for _ in 0..WEBHOOKS_MAX {
        setup.subscribe("http://127.0.0.1:9/", None);
    }
    let refused = block_on(setup.webhooks.create(
        WebhookUrl::parse("http://127.0.0.1:9/").unwrap(),
        WebhookTypes::all(),
    ));
    assert!(matches!(refused, Err(Error::WebhooksLimitReached(_))));
    assert_eq!(block_on(setup.webhooks.list()).unwrap().len(), WEBHOOKS_MAX);
}

#[test]
fn the_sqlite_store_keeps_webhooks_progress_and_recent_attempts_across_reopening() {
    use super::sqlite::SqliteWebhookStore;
    let dir = tempfile::tempdir().unwrap();
    let owner = Uuid::now_v7();
    let webhook = Webhook {
        id: WebhookId::generate(),
        url: WebhookUrl::parse("https://example.com/hooks").unwrap(),
        types: WebhookTypes::parse(Some(&["order.cancelled"])).unwrap(),
        secret: SigningSecret::generate().unwrap(),
        created_at_ms: 1_795_000_000_000,
    };
    let progress = Progress {
        cursor: 42,
        pending: vec![Pending {
            change: Change {
                seq: 40,
                kind: ChangeType::OrderCancelled,
                event: EventId::parse("gig").unwrap(),
                at_ms: 1,
                data: Arc::from("{}"),
            },
            attempts: 1,
            next_at_ms: 2,
        }],
    };
    let attempt = |n: u32| Attempt {
        seq: 40,
        kind: ChangeType::OrderCancelled,
        message_id: "chg_40".into(),
        attempt: n,
        at_ms: i64::from(n),
        outcome: crate::domain::AttemptOutcome::Status(500),
        next_retry_at_ms: Some(9),
        failed: false,
    };
    block_on(async {
        let store = SqliteWebhookStore::open(dir.path()).unwrap();
        store.create(&webhook).await.unwrap();
        for n in 0..3 {
            let attempts: Vec<Attempt> = (n * 50..(n + 1) * 50).map(attempt).collect();
            assert!(
                store
                    .save(webhook.id, owner, &progress, &attempts, 0, 0)
                    .await
                    .unwrap()
            );
        }
    });
    block_on(async {
        let store = SqliteWebhookStore::open(dir.path()).unwrap();
        assert_eq!(store.list().await.unwrap(), vec![webhook.clone()]);
        assert_eq!(store.get(webhook.id).await.unwrap(), Some(webhook.clone()));
        let claimed = store.claim(owner, 0, 0).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].progress, progress);
        let attempts = store.attempts(webhook.id).await.unwrap();
        assert_eq!(attempts.len(), ATTEMPTS_KEPT_MAX);
        assert_eq!(attempts[0], attempt(149));
        assert_eq!(attempts[ATTEMPTS_KEPT_MAX - 1], attempt(50));
        assert!(store.delete(webhook.id).await.unwrap());
        assert!(!store.delete(webhook.id).await.unwrap());
        assert!(
            !store
                .save(webhook.id, owner, &progress, &[], 0, 0)
                .await
                .unwrap()
        );
        assert!(store.attempts(webhook.id).await.unwrap().is_empty());
        for _ in 0..WEBHOOKS_MAX {
            let other = Webhook {
                id: WebhookId::generate(),
                ..webhook.clone()
            };
            store.create(&other).await.unwrap();
        }
        assert!(matches!(
            store.create(&webhook).await,
            Err(Error::WebhooksLimitReached(_))
        ));
    });
}

/// An https url is reached over TLS (rustls with the ring provider): against a receiver that
/// speaks plain HTTP, the handshake fails and the attempt says so, and nothing is delivered.
#[test]
fn an_https_url_is_reached_over_tls() {
    let setup = setup();
    let receiver = receiver(Arc::clone(&setup.secret), 0, Answer::Ok);
    let url = receiver.url.replace("http://", "https://");
    let webhook = setup.subscribe(&url, None);
    setup.feed.push(ChangeType::EventSoldOut, "gig", "{}");
    let deliverer = setup.start(config());
    until("an attempt", || !setup.attempts(&webhook).is_empty());
    drop(deliverer);
    let attempts = setup.attempts(&webhook);
    assert!(
        matches!(
            &attempts[0].outcome,
            crate::domain::AttemptOutcome::Error(_)
        ),
        "{attempts:?}"
    );
    assert!(
        receiver.seen.lock().iter().all(|r| r.id.is_empty()),
        "no plain request with a webhook-id got through"
    );
}

/// A store that can be cut off, as a replica's database connection can be: claims and saves
/// fail while it is down. Notes when a claim or save last succeeded.
struct CutStore {
    inner: MemoryWebhookStore,
    down: std::sync::atomic::AtomicBool,
    last_ok: Mutex<Option<Instant>>,
}

impl CutStore {
    fn check(&self) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            Err(Error::Unavailable("the store is cut off".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl WebhookStore for CutStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), Error> {
        self.inner.create(webhook).await
    }
    async fn list(&self) -> Result<Vec<Webhook>, Error> {
        self.inner.list().await
    }
    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, Error> {
        self.inner.get(id).await
    }
    async fn delete(&self, id: WebhookId) -> Result<bool, Error> {
        self.inner.delete(id).await
    }
    async fn attempts(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        self.inner.attempts(id).await
    }
    async fn claim(&self, owner: Uuid, now_ms: i64, lease_ms: i64) -> Result<Vec<Claimed>, Error> {
        let started = Instant::now();
        self.check()?;
        let claimed = self.inner.claim(owner, now_ms, lease_ms).await?;
        *self.last_ok.lock() = Some(started);
        Ok(claimed)
    }
    async fn save(
        &self,
        id: WebhookId,
        owner: Uuid,
        progress: &Progress,
        attempts: &[Attempt],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, Error> {
        let started = Instant::now();
        self.check()?;
        let saved = self
            .inner
            .save(id, owner, progress, attempts, now_ms, lease_ms)
            .await?;
        *self.last_ok.lock() = Some(started);
        Ok(saved)
    }
    async fn release(&self, owner: Uuid) -> Result<(), Error> {
        self.inner.release(owner).await
    }
}

/// A replica that loses its database but still reaches the receiver sends nothing once its
/// lease may have run out: another replica may be delivering the same webhook by then, from the
/// stored progress, and a stale retry would break the order per event.
#[test]
fn a_deliverer_cut_off_from_its_store_sends_nothing_past_its_lease() {
    let store = Arc::new(CutStore {
        inner: MemoryWebhookStore::new(),
        down: Default::default(),
        last_ok: Mutex::new(None),
    });
    let webhooks = Webhooks::new(store.clone(), Arc::new(SystemClock));
    let secret = Arc::new(Mutex::new(String::new()));
    // The receiver fails every attempt: the change is retried again and again.
    let receiver = receiver(Arc::clone(&secret), usize::MAX, Answer::Ok);
    let webhook = block_on(webhooks.create(
        WebhookUrl::parse(&receiver.url).unwrap(),
        WebhookTypes::parse::<&str>(None).unwrap(),
    ))
    .unwrap();
    *secret.lock() = webhook.secret.expose().to_owned();
    let feed = Arc::new(FakeFeed::default());
    feed.push(ChangeType::EventSoldOut, "gig", "{}");
    let lease = Duration::from_millis(400);
    let config = DeliveryConfig {
        timeout: Duration::from_millis(100),
        retry_first: Duration::from_millis(1),
        retry_span: super::deliver::RETRY_SPAN,
        lease,
        poll: Duration::from_millis(20),
    };
    let deliverer =
        Deliverer::start(store.clone(), feed, None, config, Arc::new(SystemClock)).unwrap();
    until("the first attempt", || !receiver.seen.lock().is_empty());
    store.down.store(true, Ordering::SeqCst);
    let last_ok = store.last_ok.lock().expect("a claim succeeded");
    // Wait out the lease, then watch: nothing more may arrive.
    until("the lease to run out", || Instant::now() > last_ok + lease);
    let seen_then = receiver.seen.lock().len();
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        assert_eq!(
            receiver.seen.lock().len(),
            seen_then,
            "an attempt was made after the deliverer's lease may have run out"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(deliverer);
}

/// A memory store numbers its changes from 1 again after a restart: the new, different changes
/// must not carry the `webhook-id`s of the ones before, or a receiver that deduplicates on it
/// drops them.
#[test]
fn changes_after_a_restart_of_a_memory_store_carry_new_webhook_ids() {
    let secret = Arc::new(Mutex::new(String::new()));
    let receiver = receiver(Arc::clone(&secret), 0, Answer::Ok);
    for run in 0..2 {
        // A fresh process: a new feed and a new webhook store, numbering from 1.
        let setup = setup();
        let webhook = setup.subscribe(&receiver.url, None);
        *secret.lock() = webhook.secret.expose().to_owned();
        setup.feed.push(
            ChangeType::EventSoldOut,
            "gig",
            &format!("{{\"run\":{run}}}"),
        );
        let deliverer = setup.start(config());
        until("the change delivered", || {
            receiver.seen.lock().len() == run + 1
        });
        drop(deliverer);
    }
    let seen = receiver.seen.lock().clone();
    assert!(seen.iter().all(|r| r.verified), "{seen:?}");
    assert_ne!(seen[0].id, seen[1].id, "{seen:?}");
}

/// Four slow receivers with eight events each fill 32 connections for a whole timeout: another
/// webhook's attempts neither wait for them nor fail for it.
#[test]
fn slow_webhooks_do_not_starve_the_others() {
    let setup = setup();
    let slow = receiver(Arc::new(Mutex::new(String::new())), 0, Answer::Slow);
    for n in 0..4 {
        setup.subscribe(&format!("{}/slow{n}", slow.url), None);
    }
    let fast = receiver(Arc::clone(&setup.secret), 0, Answer::Ok);
    let webhook = setup.subscribe(&fast.url, None);
    let mut seqs = Vec::new();
    for event in 0..8 {
        seqs.push(
            setup
                .feed
                .push(ChangeType::EventSoldOut, &format!("e{event}"), "{}"),
        );
    }
    let deliverer = setup.start(DeliveryConfig {
        timeout: Duration::from_secs(2),
        ..config()
    });
    until("every change at the fast receiver", || {
        fast.seen.lock().len() >= seqs.len()
    });
    until("the attempts saved", || {
        setup.attempts(&webhook).len() >= seqs.len()
    });
    drop(deliverer);
    let attempts = setup.attempts(&webhook);
    assert!(
        attempts
            .iter()
            .all(|a| a.outcome.delivered() && a.attempt == 1),
        "{attempts:?}"
    );
}

/// Two webhooks whose attempts are saved in turn: each keeps a bounded number of attempts (the
/// trim once went by the global row number, which one of them could never hit).
#[test]
fn the_sqlite_store_trims_every_webhooks_attempts() {
    use super::sqlite::SqliteWebhookStore;
    let dir = tempfile::tempdir().unwrap();
    let owner = Uuid::now_v7();
    let webhook = || Webhook {
        id: WebhookId::generate(),
        url: WebhookUrl::parse("https://example.com/hooks").unwrap(),
        types: WebhookTypes::parse::<&str>(None).unwrap(),
        secret: SigningSecret::generate().unwrap(),
        created_at_ms: 1_795_000_000_000,
    };
    let (a, b) = (webhook(), webhook());
    let attempt = Attempt {
        seq: 1,
        kind: ChangeType::OrderCancelled,
        message_id: "chg_x_1_1".into(),
        attempt: 1,
        at_ms: 1,
        outcome: crate::domain::AttemptOutcome::Status(500),
        next_retry_at_ms: Some(9),
        failed: false,
    };
    block_on(async {
        let store = SqliteWebhookStore::open(dir.path()).unwrap();
        store.create(&a).await.unwrap();
        store.create(&b).await.unwrap();
        for _ in 0..4 * ATTEMPTS_KEPT_MAX {
            for id in [a.id, b.id] {
                let progress = Progress::default();
                let attempts = std::slice::from_ref(&attempt);
                assert!(
                    store
                        .save(id, owner, &progress, attempts, 0, 0)
                        .await
                        .unwrap()
                );
            }
        }
    });
    let connection = rusqlite::Connection::open(dir.path().join("webhooks.sqlite3")).unwrap();
    for id in [a.id, b.id] {
        let kept: i64 = connection
            .query_row(
                "SELECT count(*) FROM webhook_attempts WHERE webhook_id = ?1",
                [id.to_string()],
                |row| row.get(0),
            )
            .unwrap();
        assert!(
            kept <= 2 * ATTEMPTS_KEPT_MAX as i64,
            "{id}: {kept} attempts kept"
        );
    }
}

/// The nice value of every thread of this process named `name` (field 19 of its `stat`).
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // The name, in parentheses, may hold spaces: count fields after its closing one.
            let after_name = &stat[stat.rfind(')')? + 2..];
            after_name.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn delivery_runs_below_the_priority_of_sales() {
    use super::deliver::{DELIVERY_NICE, DELIVERY_THREAD};
    // SAFETY: gettid and getpriority take plain integers and touch no memory of ours.
    let own_nice =
        || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    let before = own_nice();
    let setup = setup();
    let _deliverer = setup.start(config());
    // Other tests' deliverers run in this process too: one at the lower priority is enough to
    // show it is set.
    until("a delivery thread at the lower priority", || {
        nice_of_threads(DELIVERY_THREAD).contains(&i64::from(DELIVERY_NICE))
    });
    // Only the delivery thread: the one that started it (as the HTTP workers and the writer)
    // keeps its priority.
    assert_eq!(own_nice(), before);
}
