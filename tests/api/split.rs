//! What only the split deployment can get wrong: vacancy down, slow, or back again; and whether
//! it answers exactly like the monolith.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Deployment, Launch, Options, TestApp, closed_port_url};

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
    assert_eq!(
        app.get("/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(silent);
}

async fn ticket_starts_without_vacancy(launch: Launch) {
    let app = TestApp::ticket_only(launch, closed_port_url(), Options::default()).await;
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["error"]["code"], "unavailable");
    let answer = app.purchase(json!(1)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
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
);
