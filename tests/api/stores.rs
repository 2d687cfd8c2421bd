//! Stores outlive releases: a store written by an earlier release opens in this one with
//! everything intact, and carries on. The fixtures are made by `tests/fixtures/make-*.sh` with the
//! release named in each fixture's `manifest.json`.

use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use ticketd::config::StoreKind;

use crate::helpers::{Launch, Options, TestApp, TestDatabase, postgres_available};

/// Ten years, so the fixture's idempotency keys are still remembered when the test reads them.
const KEY_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn manifest(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The previous release's embedded store: events, sales, holds (live, released, confirmed),
/// a cancellation, and idempotency keys of each kind, all as it left them; and every keyed
/// request repeated now gets the answer the old release gave.
#[actix_web::test]
async fn an_embedded_store_of_the_previous_release_opens_intact() {
    let app = TestApp::monolith_tuned(
        Launch::InProcess,
        Options::default(),
        Some(&fixture("embedded-v1/data")),
        |settings| settings.idempotency_ttl_seconds = KEY_TTL_SECONDS,
    )
    .await;
    carries_on_from_the_fixture(&app, &manifest("embedded-v1")).await;
}

/// The same, for what the previous release left in a PostgreSQL database.
#[actix_web::test]
async fn a_postgres_store_of_the_previous_release_opens_intact() {
    if !postgres_available("a_postgres_store_of_the_previous_release_opens_intact") {
        return;
    }
    let database = TestDatabase::create().await;
    let dump = std::fs::read_to_string(fixture("postgres-v1/dump.sql")).unwrap();
    database.query(&dump).await;
    let options = Options {
        store: StoreKind::Postgres,
        database_url: Some(database.url.clone()),
        ..Options::default()
    };
    let app = TestApp::monolith_tuned(Launch::InProcess, options, None, |settings| {
        settings.idempotency_ttl_seconds = KEY_TTL_SECONDS
    })
    .await;
    carries_on_from_the_fixture(&app, &manifest("postgres-v1")).await;
    let migrations = database
        .query("SELECT COUNT(*) FROM ticketd_migrations")
        .await;
    assert_eq!(
        migrations,
        ["1"],
        "nothing to migrate, nothing migrated twice"
    );
}

/// What both fixtures hold (see `tests/fixtures/make-store.sh`), checked through the API.
async fn carries_on_from_the_fixture(app: &TestApp, ids: &Value) {
    let id = |name: &str| ids[name].as_str().unwrap().to_owned();
    assert_eq!(app.counts("default").await, (98, 0, 2));
    assert_eq!(app.counts("gala").await, (44, 4, 2));
    assert_eq!(app.counts("tiny").await, (0, 0, 1));
    for (order, status, qty) in [
        ("bought", "confirmed", 2),
        ("cancelled", "cancelled", 3),
        ("held", "held", 4),
        ("released", "released", 1),
        ("confirmed", "confirmed", 2),
    ] {
        let answer = app.get(&format!("/api/v1/orders/{}", id(order))).await;
        assert_eq!(answer.status, StatusCode::OK, "{order}: {answer:?}");
        assert_eq!(
            (answer.body["status"].as_str(), answer.body["qty"].as_u64()),
            (Some(status), Some(qty)),
            "{order}: {answer:?}"
        );
    }
    let held = app.get(&format!("/api/v1/orders/{}", id("held"))).await;
    assert!(held.body["expires_at"].is_string(), "{held:?}");

    // Every key the old release remembered answers as it did then, and changes nothing.
    let key = |key: &'static str| [("idempotency-key", key)];
    let bought = app
        .request(
            "POST",
            "/api/v1/purchase",
            &key("fixture-buy"),
            Some(json!({"qty": 2})),
        )
        .await;
    assert_eq!(bought.status, StatusCode::OK, "{bought:?}");
    assert_eq!(bought.body["order_id"], id("bought").as_str());
    assert_eq!(bought.body["remaining"], 98);
    let cancel = format!("/api/v1/orders/{}/cancel", id("cancelled"));
    let cancelled = app
        .request("POST", &cancel, &key("fixture-cancel"), None)
        .await;
    assert_eq!(cancelled.body["cancelled"], true, "{cancelled:?}");
    let confirm = format!("/api/v1/holds/{}/confirm", id("confirmed"));
    let confirmed = app
        .request("POST", &confirm, &key("fixture-confirm"), None)
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(confirmed.body["status"], "confirmed");
    let refused = app
        .request(
            "POST",
            "/api/v1/events/tiny/purchase",
            &key("fixture-refused"),
            Some(json!({"qty": 1})),
        )
        .await;
    assert_eq!(refused.body["success"], false, "{refused:?}");
    let reused = app
        .request(
            "POST",
            "/api/v1/purchase",
            &key("fixture-buy"),
            Some(json!({"qty": 3})),
        )
        .await;
    assert_eq!(reused.code(), "idempotency_key_reused", "{reused:?}");
    assert_eq!(app.counts("default").await, (98, 0, 2));
    assert_eq!(app.counts("tiny").await, (0, 0, 1));

    // And the store carries on: the old live hold is confirmed, and a new sale is made.
    let confirm = format!("/api/v1/holds/{}/confirm", id("held"));
    let confirmed = app.request("POST", &confirm, &[], None).await;
    assert_eq!(confirmed.body["status"], "confirmed", "{confirmed:?}");
    assert_eq!(app.counts("gala").await, (44, 0, 6));
    let sold = app.purchase(json!(1)).await;
    assert_eq!(sold.body["success"], true, "{sold:?}");
    assert_eq!(app.counts("default").await, (97, 0, 3));
}
