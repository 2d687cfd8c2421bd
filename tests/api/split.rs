//! What only the split deployment can get wrong: vacancy down, slow, or back again; and whether
//! it answers exactly like the monolith.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use ticketd::config::Mode;

use crate::helpers::{
    Deployment, Launch, Options, Server, TestApp, closed_port_url, settings, start_server,
};

async fn vacancy_down_means_503_then_recovery(launch: Launch) {
    let options = Options {
        vacancy_timeout_ms: 2000,
        ..Options::default()
    };
    let mut app = TestApp::spawn(Deployment::Split, launch, options).await;
    assert_eq!(app.purchase(json!(1)).await.body["success"], true);

    let addr = app.kill_vacancy().await;
    let refused = app.purchase(json!(1)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let available = app.get("/api/v1/available").await;
    assert_eq!(available.status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["status"], "unavailable");
    assert_eq!(app.get("/health").await.status, StatusCode::OK);

    app.restart_vacancy(addr).await;
    app.wait_until_ready().await;
    // Every worker's pooled connections went stale with the old vacancy; the client must cope.
    for _ in 0..8 {
        let bought = app.purchase(json!(1)).await;
        assert_eq!(bought.status, StatusCode::OK, "{bought:?}");
        assert_eq!(bought.body["success"], true);
    }
}

async fn a_silent_vacancy_times_out_with_503(launch: Launch) {
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = Options {
        vacancy_timeout_ms: 300,
        ..Options::default()
    };
    let url = format!("http://{}", silent.local_addr().unwrap());
    let app = TestApp::ticket_only(launch, url, options).await;

    let answer = app.purchase(json!(1)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout")
    );
    let message = answer.body["error"]["message"].as_str().unwrap_or("");
    assert!(message.ends_with("within 300 ms"), "{message}");
    assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.retry_after.as_deref(), Some("1"), "{ready:?}");
    drop(silent);
}

async fn ticket_starts_without_vacancy(launch: Launch) {
    let app = TestApp::ticket_only(launch, closed_port_url(), Options::default()).await;
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["error"]["code"], "unavailable");
    // Every 503 tells the client when to try again, so retries back off instead of piling up.
    assert_eq!(ready.retry_after.as_deref(), Some("1"), "{ready:?}");
    let answer = app.purchase(json!(1)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
    assert_eq!(app.get("/health").await.retry_after, None);
}

/// The same script against a monolith and a split pair gives the same statuses and bodies
/// (order ids aside, which are unique by design).
async fn both_deployments_answer_alike(launch: Launch) {
    let options = Options {
        initial_stock: 20,
        ..Options::default()
    };
    let monolith = TestApp::spawn(Deployment::Monolith, launch, options.clone()).await;
    let split = TestApp::spawn(Deployment::Split, launch, options).await;

    let script: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/api/v1/available", None),
        ("POST", "/api/v1/purchase", Some(json!({"qty": 3}))),
        ("POST", "/api/v1/purchase", Some(json!({"qty": 0}))),
        ("POST", "/api/v1/purchase", Some(json!({"qty": 11}))),
        ("POST", "/api/v1/purchase", Some(json!({"qty": 2.5}))),
        ("POST", "/api/v1/purchase", Some(json!({}))),
        (
            "POST",
            "/api/v1/events/default/purchase",
            Some(json!({"qty": 10})),
        ),
        ("POST", "/api/v1/purchase", Some(json!({"qty": 10}))),
        (
            "POST",
            "/api/v1/events/missing/purchase",
            Some(json!({"qty": 1})),
        ),
        ("GET", "/api/v1/events/default", None),
        ("GET", "/api/v1/events/missing", None),
        ("POST", "/api/v1/purchase", Some(json!({"qty": 7}))),
        ("GET", "/api/v1/available", None),
        ("GET", "/health", None),
        ("GET", "/nowhere", None),
    ];
    for (method, path, body) in script {
        let on_monolith = ask(&monolith, method, path, body.clone()).await;
        let on_split = ask(&split, method, path, body).await;
        assert_eq!(on_monolith, on_split, "{method} {path}");
    }
}

/// One call, with what legitimately differs between deployments masked.
async fn ask(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let body = body.map(|b| (Some("application/json"), serde_json::to_vec(&b).unwrap()));
    let mut answer = app.call(method.parse().unwrap(), path, body).await;
    if let Some(id) = answer.body.get_mut("order_id") {
        *id = json!("<order id>");
    }
    if let Some(mode) = answer.body.get_mut("mode") {
        *mode = json!("<mode>");
    }
    (answer.status, answer.body)
}

macro_rules! in_process_and_binary {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use crate::helpers::Launch;

            #[actix_web::test]
            async fn in_process() {
                super::$test(Launch::InProcess).await
            }

            #[actix_web::test]
            async fn binary() {
                super::$test(Launch::Binary).await
            }
        }
    )*};
}

in_process_and_binary!(
    vacancy_down_means_503_then_recovery,
    a_silent_vacancy_times_out_with_503,
    ticket_starts_without_vacancy,
    both_deployments_answer_alike,
    vacancy_takes_calls_only_with_the_service_token,
    a_lost_answer_is_retried_without_selling_twice,
    a_lost_answer_to_a_change_is_retried_with_the_first_answer,
    a_lost_answer_to_a_webhook_delete_still_says_deleted,
    something_that_is_not_a_vacancy_is_named_as_such,
    a_lost_answer_to_a_batch_is_retried_without_selling_twice,
    a_vacancy_without_the_batch_route_gets_one_call_each,
    the_batch_route_answers_each_reservation_as_its_own_call,
);

/// What a neighbour answers on every path: status, content type, body.
type Answers = Vec<(&'static str, StatusCode, &'static str, &'static str)>;

/// A small HTTP server on 127.0.0.1 that answers fixed bodies by path (404 elsewhere), standing in
/// for whatever else a `vacancy_url` may point at. Stopped when dropped.
struct Neighbour {
    url: String,
    handle: actix_web::dev::ServerHandle,
}

impl Neighbour {
    fn start(answers: Answers, otherwise: (StatusCode, &'static str, &'static str)) -> Self {
        let answers = Arc::new(answers);
        let server = actix_web::HttpServer::new(move || {
            let answers = Arc::clone(&answers);
            actix_web::App::new().default_service(actix_web::web::to(
                move |request: actix_web::HttpRequest| {
                    let (status, content_type, body) = answers
                        .iter()
                        .find(|(path, ..)| *path == request.path())
                        .map_or(otherwise, |(_, status, content_type, body)| {
                            (*status, *content_type, *body)
                        });
                    let response = actix_web::HttpResponse::build(status)
                        .content_type(content_type)
                        .body(body);
                    async move { response }
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self { url, handle }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Pointed at something that is not a ticketd vacancy (the seed's own Python vacancy, a web
/// server answering 404 pages, a web page), the ticket service says exactly that, in `/ready`
/// and in its 503s, instead of a bare "vacancy answered 404".
async fn something_that_is_not_a_vacancy_is_named_as_such(launch: Launch) {
    const JSON: &str = "application/json";
    const HTML: &str = "text/html";
    let not_found_page = "<html><body><h1>404 Not Found</h1></body></html>";
    let neighbours = [
        // The seed's vacancy service: JSON, but its own.
        Neighbour::start(
            vec![
                (
                    "/",
                    StatusCode::OK,
                    JSON,
                    r#"{"message":"Vacancy Service","version":"1.0.0"}"#,
                ),
                ("/health", StatusCode::OK, JSON, r#"{"status":"healthy"}"#),
                (
                    "/api/v1/health",
                    StatusCode::OK,
                    JSON,
                    r#"{"status":"healthy"}"#,
                ),
                ("/api/v1/available", StatusCode::OK, JSON, r#"{"qty":100}"#),
            ],
            (StatusCode::NOT_FOUND, JSON, r#"{"detail":"Not Found"}"#),
        ),
        // A web server with nothing of ours on it.
        Neighbour::start(vec![], (StatusCode::NOT_FOUND, HTML, not_found_page)),
        // A web page at /.
        Neighbour::start(
            vec![(
                "/",
                StatusCode::OK,
                HTML,
                "<html><body>Welcome</body></html>",
            )],
            (StatusCode::NOT_FOUND, HTML, not_found_page),
        ),
    ];
    for neighbour in &neighbours {
        let url = &neighbour.url;
        let app = TestApp::ticket_only(launch, url.clone(), Options::default()).await;
        let expected = format!("vacancy at {url} is not a ticketd vacancy: ");

        let ready = app.get("/ready").await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
        let message = ready.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with(&expected),
            "{url}: /ready says {message}"
        );

        for answer in [
            app.purchase(json!(1)).await,
            app.get("/api/v1/available").await,
        ] {
            assert_eq!(
                (answer.status, answer.code()),
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                "{url}: {answer:?}"
            );
            assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
            let message = answer.body["error"]["message"].as_str().unwrap_or("");
            assert!(message.starts_with(&expected), "{url}: {message}");
        }
    }
}

/// Vacancy with a service token refuses callers without it; the ticket service sends it.
async fn vacancy_takes_calls_only_with_the_service_token(launch: Launch) {
    let app = TestApp::spawn(Deployment::Split, launch, Options::default()).await;
    let vacancy = app.vacancy().expect("split has vacancy").url();
    let direct = app
        .send(
            app.client().get(format!("{vacancy}/api/v1/available")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (direct.status, direct.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let with_token = app
        .client()
        .get(format!("{vacancy}/api/v1/available"))
        .insert_header(("x-service-token", crate::helpers::SERVICE_TOKEN));
    assert_eq!(
        app.send(with_token, None).await.unwrap().status,
        StatusCode::OK
    );
    // Health checks stay open, so orchestrators need no token; the seed's path too.
    for path in ["/health", "/api/v1/health"] {
        let health = app
            .send(app.client().get(format!("{vacancy}{path}")), None)
            .await
            .unwrap();
        assert_eq!(health.status, StatusCode::OK, "{path}: {health:?}");
        assert_eq!(health.body["mode"], "vacancy", "{path}");
    }

    assert_eq!(app.purchase(json!(1)).await.body["success"], true);
}

/// Vacancy commits a reservation but its answer never reaches the ticket service (the connection
/// drops). The ticket service tries again with the same reservation id; vacancy recognises it and
/// answers as the first time. One purchase, one sale.
async fn a_lost_answer_is_retried_without_selling_twice(launch: Launch) {
    let hop = LossyHop::start(launch, &["/reserve"], &[]).await;
    let LossyHop { app, proxy, .. } = &hop;

    let bought = app.purchase(json!(2)).await;
    assert_eq!(bought.status, StatusCode::OK, "{bought:?}");
    assert_eq!(bought.body["success"], true);
    assert_eq!(bought.body["remaining"], 98);
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "no answer was lost"
    );

    assert_eq!(
        app.counts("default").await,
        (98, 0, 2),
        "the retry sold again"
    );
    let order_id = bought.body["order_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/orders/{order_id}")).await.body["qty"],
        2
    );
}

/// Vacancy deletes a webhook, but its answer never reaches the ticket service, which tries again:
/// the admin hears that it is deleted, not 404 because the first attempt deleted it.
async fn a_lost_answer_to_a_webhook_delete_still_says_deleted(launch: Launch) {
    let losses = ["DELETE /api/v1/webhooks/"];
    let hop = LossyHop::start(launch, &losses, &[]).await;
    let LossyHop { app, proxy, .. } = &hop;
    let made = app
        .admin(
            "POST",
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hooks"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let path = format!("/api/v1/webhooks/{}", made.body["id"].as_str().unwrap());
    let deleted = app.admin("DELETE", &path, Value::Null).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "no answer was lost"
    );
    let gone = app.admin("GET", &path, Value::Null).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{gone:?}");
    let again = app.admin("DELETE", &path, Value::Null).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again:?}");
}

/// Vacancy confirms, cancels or releases, but its answer never reaches the ticket service, which
/// tries again. The client must get the first attempt's answer: above all, a cancel that did
/// cancel says so (`cancelled: true`), not "already cancelled; nothing changed". With the
/// client's own Idempotency-Key too, and that key goes on working as before.
async fn a_lost_answer_to_a_change_is_retried_with_the_first_answer(launch: Launch) {
    let losses = ["/confirm", "/cancel", "DELETE ", "/cancel"];
    let hop = LossyHop::start(launch, &losses, &[]).await;
    let LossyHop {
        app,
        proxy,
        vacancy,
        ..
    } = &hop;
    let hold = async |qty: u32| {
        let held = app
            .post("/api/v1/events/default/holds", json!({ "qty": qty }))
            .await;
        assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
        held.body["hold_id"].as_str().unwrap().to_owned()
    };

    let id = hold(2).await;
    let confirmed = app
        .post(&format!("/api/v1/holds/{id}/confirm"), json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(confirmed.body["status"], "confirmed");
    assert_eq!(app.counts("default").await, (98, 0, 2));

    let cancelled = app
        .post(&format!("/api/v1/orders/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["cancelled"], true, "{cancelled:?}");
    assert_eq!(
        cancelled.body["message"],
        "Order cancelled; 2 tickets returned to stock"
    );
    assert_eq!(app.counts("default").await, (100, 0, 0));

    let id = hold(3).await;
    let path = format!("/api/v1/holds/{id}");
    let released = app.request("DELETE", &path, &[], None).await;
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{released:?}");
    assert_eq!(app.counts("default").await, (100, 0, 0));
    let order = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order.body["status"], "released");

    // The client's own key: its repeat gets the first answer; a call without it, the truth now.
    let bought = app.purchase(json!(1)).await;
    let id = bought.body["order_id"].as_str().unwrap();
    let path = format!("/api/v1/orders/{id}/cancel");
    let keyed = [("idempotency-key", "cancel-order-7")];
    let cancel = async |headers: &[(&str, &str)]| {
        let answer = app.request("POST", &path, headers, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["cancelled"].clone()
    };
    assert_eq!(cancel(&keyed).await, true);
    assert_eq!(cancel(&keyed).await, true);
    assert_eq!(cancel(&[]).await, false);
    assert_eq!(app.counts("default").await, (100, 0, 0));

    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        losses.len(),
        "an answer was not lost"
    );

    // Vacancy itself: a call id stands for a key, and must be one id, not a key beside it.
    let bought = app.purchase(json!(1)).await;
    let id = bought.body["order_id"].as_str().unwrap();
    let cancel = async |headers: &[(&str, &str)]| {
        let url = format!("{}/api/v1/orders/{id}/cancel", vacancy.url());
        let mut request = app
            .client()
            .post(url)
            .insert_header(("x-service-token", crate::helpers::SERVICE_TOKEN));
        for header in headers {
            request = request.insert_header(*header);
        }
        app.send(request, None).await.unwrap()
    };
    let call = uuid::Uuid::now_v7().to_string();
    for bad in [
        vec![("x-call-id", "not-a-uuid")],
        vec![("x-call-id", call.as_str()), ("idempotency-key", "k-1")],
    ] {
        let refused = cancel(&bad).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            "{bad:?}"
        );
    }
    assert_eq!(
        app.counts("default").await,
        (99, 0, 1),
        "a refusal changed stock"
    );
    let first = cancel(&[("x-call-id", &call)]).await;
    let repeat = cancel(&[("x-call-id", &call)]).await;
    assert_eq!((first.status, &first.body), (StatusCode::OK, &repeat.body));
    assert_eq!(repeat.body["cancelled"], true);
    assert_eq!(cancel(&[]).await.body["cancelled"], false);
}

/// Purchases in flight at once, as many clients make them: `count` of one ticket each.
async fn purchases_at_once(app: &TestApp, count: usize) -> Vec<crate::helpers::Answer> {
    futures_util::future::join_all((0..count).map(|_| app.purchase(json!(1)))).await
}

/// Every purchase was sold once, under an order id of its own.
fn sold_once_each(answers: &[crate::helpers::Answer]) {
    let mut ids = std::collections::HashSet::new();
    for answer in answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["success"], true, "{answer:?}");
        assert!(ids.insert(answer.body["order_id"].as_str().unwrap().to_owned()));
    }
}

/// Purchases that arrive while a call to vacancy is in flight go together in the next call, and
/// that call's answer is lost. The ticket service sends the batch again; every reservation in it
/// keeps its id, so vacancy answers each as the first time. Each purchase sells once.
async fn a_lost_answer_to_a_batch_is_retried_without_selling_twice(launch: Launch) {
    let hop = LossyHop::start(launch, &["POST /api/v1/reservations "], &[]).await;
    let LossyHop { app, proxy, .. } = &hop;

    let answers = purchases_at_once(app, 20).await;
    sold_once_each(&answers);
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "no batch call was made, or its answer was not lost"
    );
    assert_eq!(
        app.counts("default").await,
        (80, 0, 20),
        "the retry sold again"
    );
}

/// During a rolling upgrade a new ticket service may meet a vacancy without the batch route
/// (404 `not_found`). The reservations of that call go one call each, and so do later ones.
async fn a_vacancy_without_the_batch_route_gets_one_call_each(launch: Launch) {
    let hop = LossyHop::start(launch, &[], &["POST /api/v1/reservations "]).await;
    let LossyHop { app, proxy, .. } = &hop;

    sold_once_each(&purchases_at_once(app, 20).await);
    let refused = proxy.refused.load(Ordering::SeqCst);
    assert!(refused >= 1, "no batch call was made");
    assert_eq!(app.counts("default").await, (80, 0, 20));

    sold_once_each(&purchases_at_once(app, 20).await);
    assert_eq!(
        proxy.refused.load(Ordering::SeqCst),
        refused,
        "batches were tried again at once"
    );
    assert_eq!(app.counts("default").await, (60, 0, 40));
}

/// Vacancy's batch route: each reservation gets what its own call would get, an invalid one
/// changes nothing and stops nothing else, a repeat gets the first answers, and a batch that is
/// not one changes nothing at all.
async fn the_batch_route_answers_each_reservation_as_its_own_call(launch: Launch) {
    let options = Options {
        initial_stock: 5,
        ..Options::default()
    };
    let app = TestApp::spawn(Deployment::Split, launch, options).await;
    let vacancy = app.vacancy().expect("split has vacancy").url();
    let batch = async |body: Value| {
        let request = app
            .client()
            .post(format!("{vacancy}/api/v1/reservations"))
            .insert_header(("x-service-token", crate::helpers::SERVICE_TOKEN));
        let body = serde_json::to_vec(&body).unwrap();
        app.send(request, Some((Some("application/json"), body)))
            .await
            .unwrap()
    };
    let item = |event: &str, qty: Value, id: &str| json!({"event": event, "reserve": {"qty": qty, "reservation_id": id}});
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let body = json!({"reservations": [
        item("default", json!(2), &ids[0]),
        item("nowhere", json!(1), &ids[1]),
        item("default", json!(5), &ids[2]),
    ]});
    let first = batch(body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let answers = first.body["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 3, "{first:?}");
    assert_eq!(answers[0]["reserved"]["success"], true, "{first:?}");
    assert_eq!(answers[0]["reserved"]["remaining"], 3, "{first:?}");
    assert_eq!(answers[1]["error"]["code"], "unknown_event", "{first:?}");
    assert_eq!(answers[2]["reserved"]["success"], false, "{first:?}");
    assert_eq!(app.counts("default").await, (3, 0, 2));

    let again = batch(body).await;
    assert_eq!(
        again.body["answers"][0], first.body["answers"][0],
        "{again:?}"
    );
    assert_eq!(
        app.counts("default").await,
        (3, 0, 2),
        "a repeat sold again"
    );

    // An invalid reservation gets its own call's error and sells nothing; the others sell.
    let fresh = uuid::Uuid::now_v7().to_string();
    let mixed = json!({"reservations": [
        item("default", json!(1), &fresh),
        item("default", json!(0), &uuid::Uuid::now_v7().to_string()),
    ]});
    let answered = batch(mixed).await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    assert_eq!(
        answered.body["answers"][0]["reserved"]["success"], true,
        "{answered:?}"
    );
    assert_eq!(
        answered.body["answers"][1]["error"]["code"], "invalid_quantity",
        "{answered:?}"
    );
    assert_eq!(app.counts("default").await, (2, 0, 3));

    let many: Vec<Value> = (0..65)
        .map(|_| item("default", json!(1), &uuid::Uuid::now_v7().to_string()))
        .collect();
    for bad in [
        json!({"reservations": []}),
        json!({"reservations": many}),
        json!({"reservations": [1]}),
        json!({"reservations": [item("default", json!(1), &ids[0])], "more": true}),
        json!([item("default", json!(1), &ids[0])]),
    ] {
        let refused = batch(bad.clone()).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::BAD_REQUEST, "invalid_body"),
            "{bad}: {refused:?}"
        );
    }
    assert_eq!(
        app.counts("default").await,
        (2, 0, 3),
        "a refusal changed stock"
    );
}

/// An HTTP/1.1 relay to `target` that loses one answer for each of `losses`: to the first request
/// whose request line contains it (and was not picked by an earlier one). It passes the request
/// on, waits for vacancy's answer, and then closes the caller's connection without sending it.
/// Stops when dropped.
struct LossyProxy {
    addr: SocketAddr,
    dropped: Arc<AtomicUsize>,
    /// Requests answered 404 for a route `missing` names.
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// A vacancy with 100 tickets and a ticket service that reaches it through a [`LossyProxy`]
/// losing the answers `losses` name and answering 404 for the routes `missing` names, as a
/// vacancy without them would. Fields drop in order: the ticket service first.
struct LossyHop {
    app: TestApp,
    proxy: LossyProxy,
    vacancy: Server,
    _data: tempfile::TempDir,
}

impl LossyHop {
    async fn start(launch: Launch, losses: &[&'static str], missing: &[&'static str]) -> Self {
        let options = Options {
            initial_stock: 100,
            ..Options::default()
        };
        let data = tempfile::tempdir().unwrap();
        let vacancy_settings = settings(Mode::Vacancy, 0, &options, None, data.path());
        let vacancy = start_server(launch, vacancy_settings, Mode::Vacancy);
        let proxy = LossyProxy::start(vacancy.addr(), losses, missing);
        let app = TestApp::ticket_only(launch, format!("http://{}", proxy.addr), options).await;
        app.wait_until_ready().await;
        Self {
            app,
            proxy,
            vacancy,
            _data: data,
        }
    }
}

impl LossyProxy {
    fn start(target: SocketAddr, losses: &[&'static str], missing: &[&'static str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let losses = Arc::new(Mutex::new(losses.to_vec()));
        let missing = Arc::new(missing.to_vec());
        let (dropped_by_relay, refused_by_relay, stop_relay) = (
            Arc::clone(&dropped),
            Arc::clone(&refused),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop_relay.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let hop = Hop {
                    target,
                    losses: Arc::clone(&losses),
                    missing: Arc::clone(&missing),
                    dropped: Arc::clone(&dropped_by_relay),
                    refused: Arc::clone(&refused_by_relay),
                };
                std::thread::spawn(move || relay(client, &hop));
            }
        });
        Self {
            addr,
            dropped,
            refused,
            stop,
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// What a relay does with the requests it passes on.
struct Hop {
    target: SocketAddr,
    losses: Arc<Mutex<Vec<&'static str>>>,
    missing: Arc<Vec<&'static str>>,
    dropped: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

/// What ticketd answers for a route it does not have.
const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                         content-length: 52\r\n\r\n\
                         {\"error\":{\"code\":\"not_found\",\"message\":\"Not Found\"}}";

fn relay(mut client: TcpStream, hop: &Hop) {
    let Hop {
        target,
        losses,
        missing,
        dropped,
        refused,
    } = hop;
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    // Requests on one kept-alive connection, one after another.
    while let Some(request) = read_message(&mut client) {
        let request_line = String::from_utf8_lossy(&request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if missing.iter().any(|route| request_line.contains(route)) {
            refused.fetch_add(1, Ordering::SeqCst);
            if client.write_all(NOT_FOUND.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let Ok(mut upstream) = TcpStream::connect(target) else {
            return;
        };
        let _ = upstream.set_read_timeout(Some(Duration::from_secs(10)));
        if upstream.write_all(&request).is_err() {
            return;
        }
        let Some(answer) = read_message(&mut upstream) else {
            return;
        };
        let lose = {
            let mut losses = losses.lock().unwrap();
            let found = losses.iter().position(|loss| request_line.contains(loss));
            found.map(|at| losses.remove(at)).is_some()
        };
        if lose {
            dropped.fetch_add(1, Ordering::SeqCst);
            return; // vacancy did the work; the caller never hears of it
        }
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 message (head and a `Content-Length` body) from `stream`; `None` at the end.
fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = message.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut buffer).ok().filter(|n| *n > 0)?;
        message.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&message[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    while message.len() < head_end + length {
        let read = stream.read(&mut buffer).ok().filter(|n| *n > 0)?;
        message.extend_from_slice(&buffer[..read]);
    }
    Some(message)
}

/// A vacancy whose answer names an event by an id that is no event id has sent something the
/// ticket service cannot read: that is vacancy's fault, answered 503 `unavailable`, never the
/// 422 `invalid_event_id` that tells a client its own request was wrong.
#[actix_web::test]
async fn an_unreadable_event_id_from_vacancy_is_no_fault_of_the_client() {
    const JSON: &str = "application/json";
    const ORDER: &str = "/api/v1/orders/01936b9e-1c2d-7a3b-8c4d-5e6f7a8b9c0d";
    let vacancy = Neighbour::start(
        vec![
            (
                "/",
                StatusCode::OK,
                JSON,
                r#"{"service":"ticketd","mode":"vacancy","version":"0.1.0"}"#,
            ),
            (
                "/api/v1/events/gala",
                StatusCode::OK,
                JSON,
                r#"{"id":"not an id","name":"Gala","capacity":5,"available":5,"held":0,"sold":0}"#,
            ),
            (
                ORDER,
                StatusCode::OK,
                JSON,
                r#"{"order_id":"01936b9e-1c2d-7a3b-8c4d-5e6f7a8b9c0d","event":"not an id",
                    "qty":1,"status":"confirmed","remaining":4,
                    "created_at":"2026-11-24T18:40:11.123Z","updated_at":"2026-11-24T18:40:11.123Z"}"#,
            ),
        ],
        (StatusCode::NOT_FOUND, JSON, r#"{"detail":"Not Found"}"#),
    );
    let app =
        TestApp::ticket_only(Launch::InProcess, vacancy.url.clone(), Options::default()).await;
    for path in ["/api/v1/events/gala", ORDER] {
        let answer = app.get(path).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "{path}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("vacancy"), "{path}: {message}");
    }
}
