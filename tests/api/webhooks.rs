//! Webhooks through the admin API, the same in every deployment: made (the secret shown once),
//! listed, read, deleted, and kept across a crash of the store's owner; bad input changes nothing.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

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
