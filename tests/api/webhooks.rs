//! Webhooks through the admin API, the same in every deployment: made (the secret shown once),
//! listed, read, deleted, and kept across a crash of the store's owner; bad input changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Deployment, Launch, Options, TestApp};

const EVERY_TYPE: [&str; 9] = [
    "order.confirmed",
    "order.cancelled",
    "hold.created",
    "hold.expired",
    "hold.released",
    "waitlist.offered",
    "waitlist.offer_expired",
    "event.sold_out",
    "event.back_on_sale",
];

async fn listed(app: &TestApp) -> Vec<Value> {
    let answer = app.admin("GET", "/api/v1/webhooks", Value::Null).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["webhooks"].as_array().unwrap().clone()
}

pub async fn admins_subscribe_list_and_delete_webhooks(deployment: Deployment, launch: Launch) {
    let mut app = TestApp::spawn(deployment, launch, Options::default()).await;

    // Without the admin token: nothing.
    let anonymous = app
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hooks"}),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    let anonymous = app.get("/api/v1/webhooks").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");

    // Bad input: a clear error each, and nothing made.
    let long = format!("http://127.0.0.1:9/{}", "x".repeat(2048));
    for (body, code) in [
        (json!({}), "invalid_webhook"),
        (json!({"url": null}), "invalid_webhook"),
        (json!({"url": 7}), "invalid_webhook"),
        (json!({"url": "ftp://127.0.0.1/hooks"}), "invalid_webhook"),
        (json!({"url": "file:///etc/passwd"}), "invalid_webhook"),
        (
            json!({"url": "http://user:pw@127.0.0.1/"}),
            "invalid_webhook",
        ),
        (json!({"url": "http:///hooks"}), "invalid_webhook"),
        (json!({"url": "http://127.0.0.1/a b"}), "invalid_webhook"),
        (json!({"url": long}), "invalid_webhook"),
        (
            json!({"url": "http://127.0.0.1:9/", "types": []}),
            "invalid_webhook",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "types": ["order"]}),
            "invalid_webhook",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "types": "order.confirmed"}),
            "invalid_webhook",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "types": [1]}),
            "invalid_webhook",
        ),
    ] {
        let refused = app.admin("POST", "/api/v1/webhooks", body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused:?}"
        );
        assert_eq!(refused.code(), code, "{body}: {refused:?}");
    }
    let refused = app.admin("POST", "/api/v1/webhooks", json!([1])).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(listed(&app).await.is_empty());

    // Made: the secret is shown here only.
    let made = app
        .admin(
            "POST",
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hooks", "types": ["hold.expired", "order.confirmed"]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let id = made.body["id"].as_str().unwrap().to_owned();
    let secret = made.body["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{made:?}"
    );
    assert_eq!(
        made.body["types"],
        json!(["order.confirmed", "hold.expired"])
    );
    assert_eq!(made.body["url"], "http://127.0.0.1:9/hooks");
    assert!(made.body["created_at"].as_str().unwrap().ends_with('Z'));

    let every = app
        .admin(
            "POST",
            "/api/v1/webhooks",
            json!({"url": "https://127.0.0.1:9/all"}),
        )
        .await;
    assert_eq!(every.status, StatusCode::CREATED, "{every:?}");
    assert_eq!(every.body["types"], json!(EVERY_TYPE));
    let every_id = every.body["id"].as_str().unwrap().to_owned();

    let webhooks = listed(&app).await;
    assert_eq!(webhooks.len(), 2, "{webhooks:?}");
    assert_eq!(webhooks[0]["id"], json!(id));
    assert!(
        webhooks.iter().all(|w| w.get("secret").is_none()),
        "{webhooks:?}"
    );

    let one = app
        .admin("GET", &format!("/api/v1/webhooks/{id}"), Value::Null)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(one.body, webhooks[0]);
    let deliveries = app
        .admin(
            "GET",
            &format!("/api/v1/webhooks/{id}/deliveries"),
            Value::Null,
        )
        .await;
    assert_eq!(deliveries.status, StatusCode::OK, "{deliveries:?}");
    assert!(deliveries.body["deliveries"].is_array(), "{deliveries:?}");

    for path in [
        "/api/v1/webhooks/0195f3a8-0000-7000-8000-000000000000",
        "/api/v1/webhooks/not-a-webhook",
        "/api/v1/webhooks/0195f3a8-0000-7000-8000-000000000000/deliveries",
    ] {
        let unknown = app.admin("GET", path, Value::Null).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{path}: {unknown:?}");
        assert_eq!(unknown.code(), "unknown_webhook", "{path}: {unknown:?}");
    }

    // Kept across a crash of the store's owner (the memory store aside).
    let addr = app.kill_store_owner().await;
    app.restart_store_owner(addr).await;
    assert_eq!(listed(&app).await, webhooks);

    let deleted = app
        .admin(
            "DELETE",
            &format!("/api/v1/webhooks/{every_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    let again = app
        .admin(
            "DELETE",
            &format!("/api/v1/webhooks/{every_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again:?}");
    assert_eq!(again.code(), "unknown_webhook");
    let left = listed(&app).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], json!(id));
}

// Deliveries, to a receiver this test runs on 127.0.0.1. It checks every signature by hand (HMAC-
// SHA256 from the `hmac` and `sha2` crates; ticketd signs with the `standardwebhooks` crate).

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail,
    /// Takes every request and answers none (until the mode changes).
    Hang,
}

/// One request the receiver took.
#[derive(Clone, Debug)]
struct Received {
    /// `chg_{seq}`, the change's place in the feed, from the `webhook-id`.
    id: String,
    /// The `webhook-id` as sent: `chg_{source}_{seq}_{at_ms}`.
    full_id: String,
    verified: bool,
    body: Value,
    /// The answer was 2xx.
    taken: bool,
}

struct Receiver {
    url: String,
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<Mode>>,
    secret: Arc<Mutex<String>>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        *self.mode.lock().unwrap() = Mode::Fail;
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        })
        .join();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn signed_by(secret: &str, request: &HttpRequest, body: &[u8]) -> bool {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let fresh = header("webhook-timestamp")
        .parse::<u64>()
        .is_ok_and(|at| at.abs_diff(now_seconds()) < 300);
    fresh
        && header("webhook-signature")
            .split(' ')
            .any(|signature| signature == format!("v1,{expected}"))
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Receiver {
    /// Listens on 127.0.0.1, on `port` (0: any free one).
    fn start(port: u16, failures: usize) -> Self {
        Self::start_with(
            port,
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(String::new())),
            failures,
        )
    }

    fn start_with(
        port: u16,
        seen: Arc<Mutex<Vec<Received>>>,
        secret: Arc<Mutex<String>>,
        failures: usize,
    ) -> Self {
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let failures_left = Arc::new(AtomicUsize::new(failures));
        let (tx, rx) = std::sync::mpsc::channel();
        let state = (
            Arc::clone(&seen),
            Arc::clone(&mode),
            Arc::clone(&failures_left),
            Arc::clone(&secret),
        );
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let state = state.clone();
                    App::new().default_service(web::to(
                        move |request: HttpRequest, body: web::Bytes| {
                            let (seen, mode, failures, secret) = state.clone();
                            async move {
                                let failing = failures
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                                let mode = *mode.lock().unwrap();
                                let taken = !failing && mode == Mode::Ok;
                                let verified = signed_by(&secret.lock().unwrap(), &request, &body);
                                let full_id = request
                                    .headers()
                                    .get("webhook-id")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                seen.lock().unwrap().push(Received {
                                    id: seq_id(&full_id),
                                    full_id,
                                    verified,
                                    body: serde_json::from_slice(&body).unwrap_or_default(),
                                    taken,
                                });
                                if !failing && mode == Mode::Hang {
                                    // Longer than ticketd's attempt may take: no answer at all.
                                    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
                                }
                                if taken {
                                    HttpResponse::NoContent().finish()
                                } else {
                                    HttpResponse::ServiceUnavailable().finish()
                                }
                            }
                        },
                    ))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .bind(("127.0.0.1", port))
                .expect("the receiver listens");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((server.handle(), addr)).unwrap();
                let _ = server.await;
            });
        });
        let (handle, addr) = rx.recv().expect("the receiver starts");
        Self {
            url: format!("http://{addr}/ticketd"),
            port: addr.port(),
            seen,
            mode,
            secret,
            handle,
            thread: Some(thread),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits, a bounded while, until every id of `ids` was taken (answered 2xx).
    async fn until_taken(&self, ids: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| !seen.iter().any(|r| r.taken && &r.id == *id))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never delivered: {missing:?}; the receiver saw {seen:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits, a bounded while, until some request with `id` came in.
    async fn until_seen(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen().iter().any(|r| r.id == id) {
            assert!(
                Instant::now() < deadline,
                "{id} never came: {:?}",
                self.seen()
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn subscribe(app: &TestApp, receiver: &Receiver) -> String {
    let made = app
        .admin("POST", "/api/v1/webhooks", json!({"url": receiver.url}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    *receiver.secret.lock().unwrap() = made.body["secret"].as_str().unwrap().to_owned();
    made.body["id"].as_str().unwrap().to_owned()
}

/// `chg_{seq}` from a `webhook-id` `chg_{source}_{seq}_{at_ms}` (the source, the store's id,
/// tells apart changes numbered alike by stores that started again).
fn seq_id(full: &str) -> String {
    let parts: Vec<&str> = full.split('_').collect();
    match parts.as_slice() {
        ["chg", source, seq, at_ms]
            if !source.is_empty() && seq.parse::<u64>().is_ok() && at_ms.parse::<i64>().is_ok() =>
        {
            format!("chg_{seq}")
        }
        _ => format!("malformed webhook-id {full:?}"),
    }
}

/// Every change the feed holds, as `(chg_{seq}, event, type, data)`.
async fn every_change(app: &TestApp) -> Vec<(String, String, String, Value)> {
    let answer = app.changes("after=0&limit=1000").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| {
            (
                format!("chg_{}", change["seq"]),
                change["event"].as_str().unwrap_or_default().to_owned(),
                change["type"].as_str().unwrap().to_owned(),
                change["data"].clone(),
            )
        })
        .collect()
}

async fn create(app: &TestApp, event: &str, capacity: usize) {
    let created = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"id": event, "name": event, "capacity": capacity}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
}

async fn buy(app: &TestApp, event: &str, purchases: usize) {
    for _ in 0..purchases {
        let bought = app
            .post(
                &format!("/api/v1/events/{event}/purchase"),
                json!({"qty": 1}),
            )
            .await;
        assert_eq!(bought.body["success"], true, "{bought:?}");
    }
}

async fn sell(app: &TestApp, event: &str, purchases: usize) {
    create(app, event, purchases).await;
    buy(app, event, purchases).await;
}

/// A receiver that fails for a while, then recovers: every change arrives, signed, with the
/// feed's data; a change sent again carries the same `webhook-id`; each event's changes arrive
/// in the order they were committed.
pub async fn deliveries_reach_a_receiver_that_fails_for_a_while(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let receiver = Receiver::start(0, 4);
    let webhook = subscribe(&app, &receiver).await;
    sell(&app, "gig", 3).await;
    sell(&app, "fair", 2).await;
    let hold = app
        .admin("POST", "/api/v1/events/gig/stock", json!({"qty": 1}))
        .await;
    assert_eq!(hold.status, StatusCode::OK, "{hold:?}");

    let changes = every_change(&app).await;
    let ids: Vec<String> = changes.iter().map(|c| c.0.clone()).collect();
    assert!(
        ids.len() >= 7,
        "purchases, sold out twice, back on sale: {changes:?}"
    );
    receiver.until_taken(&ids).await;

    let seen = receiver.seen();
    assert!(seen.iter().all(|r| r.verified), "{seen:?}");
    assert!(seen.iter().any(|r| !r.taken), "the first were refused");
    // A change sent again carries the very same `webhook-id`.
    for received in &seen {
        assert!(
            seen.iter()
                .filter(|r| r.id == received.id)
                .all(|r| r.full_id == received.full_id),
            "{seen:?}"
        );
    }
    for (id, _, kind, data) in &changes {
        for received in seen.iter().filter(|r| &r.id == id) {
            assert_eq!(received.body["type"], json!(kind), "{received:?}");
            assert_eq!(&received.body["data"], data, "{received:?}");
            assert!(received.body["timestamp"].as_str().unwrap().ends_with('Z'));
        }
    }
    for event in ["gig", "fair"] {
        let order: Vec<&String> = changes
            .iter()
            .filter(|c| c.1 == event)
            .map(|c| &c.0)
            .collect();
        let mut arrived: Vec<&String> = Vec::new();
        for received in &seen {
            if let Some(id) = order.iter().find(|id| ***id == received.id)
                && !arrived.contains(id)
            {
                arrived.push(id);
            }
        }
        assert_eq!(arrived, order, "{event}: first arrivals in commit order");
    }

    let deliveries = app
        .admin(
            "GET",
            &format!("/api/v1/webhooks/{webhook}/deliveries"),
            Value::Null,
        )
        .await;
    assert_eq!(deliveries.status, StatusCode::OK, "{deliveries:?}");
    let attempts = deliveries.body["deliveries"].as_array().unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a["status"] == 503 && a["next_retry_at"].is_string() && a["failed"] == false),
        "{attempts:?}"
    );
    assert!(
        attempts
            .iter()
            .any(|a| a["status"] == 204 && a["attempt"].as_u64() > Some(1)),
        "{attempts:?}"
    );
}

/// Committed while the receiver is down, then the store's owner is killed (SIGKILL for a
/// process): once both are back, the change is delivered.
pub async fn a_crash_between_commit_and_delivery_delays_it_only(
    deployment: Deployment,
    launch: Launch,
) {
    let mut app = TestApp::spawn(deployment, launch, Options::default()).await;
    let receiver = Receiver::start(0, 0);
    subscribe(&app, &receiver).await;
    let (port, seen, secret) = (
        receiver.port,
        Arc::clone(&receiver.seen),
        Arc::clone(&receiver.secret),
    );
    drop(receiver);
    sell(&app, "gig", 2).await;
    let ids: Vec<String> = every_change(&app).await.into_iter().map(|c| c.0).collect();

    let addr = app.kill_store_owner().await;
    let receiver = Receiver::start_with(port, seen, secret, 0);
    app.restart_store_owner(addr).await;
    receiver.until_taken(&ids).await;
    assert!(receiver.seen().iter().all(|r| r.verified));
}

/// Two replicas on one database: each change is delivered once while nothing fails; a replica
/// killed while delivering leaves the webhook to the other, which delivers again (the same
/// `webhook-id`) what the first did not finish.
#[actix_web::test]
async fn postgres_replicas_deliver_each_change_once_and_take_over_from_a_dead_one() {
    if !crate::helpers::postgres_available(
        "postgres_replicas_deliver_each_change_once_and_take_over_from_a_dead_one",
    ) {
        return;
    }
    let mut app = TestApp::spawn(Deployment::Replicated, Launch::Binary, Options::default()).await;
    let receiver = Receiver::start(0, 0);
    subscribe(&app, &receiver).await;
    // Admin calls go to one replica, once: made while both run.
    create(&app, "fair", 10).await;
    create(&app, "late", 10).await;
    sell(&app, "gig", 20).await;
    let ids: Vec<String> = every_change(&app).await.into_iter().map(|c| c.0).collect();
    receiver.until_taken(&ids).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), ids.len(), "each change once: {seen:?}");

    // Whichever replica delivers, with the first one gone the second does (taking over once the
    // first one's lease runs out, if it held it).
    let first = app.kill_store_owner().await;
    buy(&app, "fair", 1).await;
    let after_first: Vec<String> = every_change(&app).await.into_iter().map(|c| c.0).collect();
    receiver.until_taken(&after_first).await;
    app.restart_store_owner(first).await;

    // Now the second replica holds the webhook. It dies while a delivery hangs.
    receiver.set(Mode::Hang);
    let known = after_first.len();
    buy(&app, "late", 1).await;
    let all: Vec<String> = every_change(&app).await.into_iter().map(|c| c.0).collect();
    let late = all[known].clone();
    receiver.until_seen(&late).await;
    app.kill_replica().await;
    receiver.set(Mode::Ok);
    receiver.until_taken(&all).await;
    let seen = receiver.seen();
    assert!(seen.iter().all(|r| r.verified), "{seen:?}");
    let late_arrivals = seen.iter().filter(|r| r.id == late).count();
    assert!(
        late_arrivals >= 2,
        "sent again by the other replica: {seen:?}"
    );
}
