//! Stores outlive releases: a store written by an earlier release opens in this one with
//! everything intact, and carries on. The fixtures are made by `tests/fixtures/make-*.sh` with the
//! release named in each fixture's `manifest.json`.

use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

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

/// The first release's embedded store: events, sales, holds (live, released, confirmed),
/// a cancellation, and idempotency keys of each kind, all as it left them; and every keyed
/// request repeated now gets the answer the old release gave.
#[actix_web::test]
async fn an_embedded_store_of_the_first_release_opens_intact() {
    let app = opens_embedded("embedded-v1").await;
    the_feed_begins_with_this_release(&app).await;
}

/// The same, from the release before categories: every event becomes one `general` quota and
/// category, every order one `general` line.
#[actix_web::test]
async fn an_embedded_store_of_the_release_before_categories_opens_intact() {
    let app = opens_embedded("embedded-v2").await;
    the_feed_begins_with_this_release(&app).await;
}

/// The changes `make-store.sh` makes a release with the outbox tell, in order.
const TOLD_BY_THE_FIXTURE: [&str; 10] = [
    "order.confirmed",
    "order.confirmed",
    "order.cancelled",
    "hold.created",
    "hold.created",
    "hold.released",
    "hold.created",
    "order.confirmed",
    "order.confirmed",
    "event.sold_out",
];

/// The same, from the last release with the outbox on schema 4 (changes numbered by
/// AUTOINCREMENT, indexed by age): the changes it told are kept with their numbers, in order, and
/// the ones this release tells follow on from them without a gap.
#[actix_web::test]
async fn an_embedded_store_of_the_release_before_schema_5_keeps_its_changes() {
    let name = "embedded-v3";
    let app = opens_embedded(name).await;
    let types = app.change_types().await;
    assert_eq!(
        types[..TOLD_BY_THE_FIXTURE.len()],
        TOLD_BY_THE_FIXTURE,
        "{types:?}"
    );
    assert!(
        types.len() > TOLD_BY_THE_FIXTURE.len(),
        "this release told more: {types:?}"
    );
    let ids = manifest(name);
    let first = app.changes("after=0&limit=3").await;
    let orders: Vec<&Value> = first.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|change| &change["data"]["order"]["order_id"])
        .collect();
    assert_eq!(
        orders,
        [&ids["bought"], &ids["cancelled"], &ids["cancelled"]],
        "{first:?}"
    );
}

/// The same, from the last release on schema 5, whose orders and waiting list checked their
/// status with `IN`: both tables are rebuilt by the migration to schema 6, and every order, the
/// waiting entry (still first in line) and the changes come through.
#[actix_web::test]
async fn an_embedded_store_of_the_release_before_schema_6_keeps_orders_and_waiting_list() {
    let name = "embedded-v4";
    let app = opens_embedded(name).await;
    let ids = manifest(name);
    let waiting = ids["waiting"]
        .as_str()
        .expect("the fixture has a waiting entry");
    let entry = app.get(&format!("/api/v1/waitlist/{waiting}")).await;
    assert_eq!(entry.status, StatusCode::OK, "{entry:?}");
    assert_eq!(
        (
            &entry.body["status"],
            &entry.body["event"],
            &entry.body["qty"],
            &entry.body["position"]
        ),
        (&json!("waiting"), &json!("tiny"), &json!(1), &json!(1)),
        "{entry:?}"
    );
    let types = app.change_types().await;
    assert_eq!(
        types[..TOLD_BY_THE_FIXTURE.len()],
        TOLD_BY_THE_FIXTURE,
        "the changes the release before told are kept: {types:?}"
    );
    // The rebuilt tables take new rows: a second customer joins behind the first.
    let second = app
        .post(
            "/api/v1/events/tiny/waitlist",
            json!({"qty": 1, "customer": "another-fan"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
    assert_eq!(second.body["position"], 2, "{second:?}");
}

/// Opens the fixture's data directory (a copy) and checks it carries on.
async fn opens_embedded(name: &str) -> TestApp {
    let app = TestApp::monolith_tuned(
        Launch::InProcess,
        Options::default(),
        Some(&fixture(&format!("{name}/data"))),
        |settings| settings.idempotency_ttl_seconds = KEY_TTL_SECONDS,
    )
    .await;
    carries_on_from_the_fixture(&app, &manifest(name)).await;
    app
}

/// The changes feed of a store from before it existed starts empty: what this release did with the
/// fixture is numbered from 1 without a gap, and nothing of the earlier history is made up.
async fn the_feed_begins_with_this_release(app: &TestApp) {
    let types = app.change_types().await;
    assert!(!types.is_empty(), "the fixture test changes orders");
    assert!(
        types
            .iter()
            .all(|kind| ticketd::domain::ChangeType::parse(kind).is_some()),
        "{types:?}"
    );
}

/// The same, for what the first release left in a PostgreSQL database.
#[actix_web::test]
async fn a_postgres_store_of_the_first_release_opens_intact() {
    opens_postgres(
        "a_postgres_store_of_the_first_release_opens_intact",
        "postgres-v1",
    )
    .await;
}

/// And what the release before categories left there.
#[actix_web::test]
async fn a_postgres_store_of_the_release_before_categories_opens_intact() {
    opens_postgres(
        "a_postgres_store_of_the_release_before_categories_opens_intact",
        "postgres-v2",
    )
    .await;
}

async fn opens_postgres(test: &str, name: &str) {
    if !postgres_available(test) {
        return;
    }
    let database = TestDatabase::create().await;
    let dump = std::fs::read_to_string(fixture(&format!("{name}/dump.sql"))).unwrap();
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
    carries_on_from_the_fixture(&app, &manifest(name)).await;
    the_feed_begins_with_this_release(&app).await;
    let migrations = database
        .query("SELECT version FROM ticketd_migrations ORDER BY version")
        .await;
    assert_eq!(
        migrations,
        ["1", "2", "3", "4", "5", "6"],
        "each migration applied once"
    );
    an_earlier_release_still_running_cannot_write(&app, &database).await;
}

/// A replica of an earlier release still running while the database is migrated (a rolling
/// restart) must not sell past what it does not know: its statements, as that release sends them,
/// are refused, while this release's writes go through.
async fn an_earlier_release_still_running_cannot_write(app: &TestApp, database: &TestDatabase) {
    let fest = json!({"id": "fest", "name": "Fest",
        "quotas": [{"id": "venue", "size": 10}, {"id": "vip", "size": 2}],
        "categories": [{"id": "vip", "quotas": ["venue", "vip"]}]});
    let created = app.admin("POST", "/api/v1/events", fest).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let attempt = |statement: &str| {
        format!(
            "CREATE FUNCTION pg_temp.attempt(statement TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
             BEGIN EXECUTE statement; RETURN 'accepted';
             EXCEPTION WHEN OTHERS THEN RETURN 'refused'; END $$;
             SELECT pg_temp.attempt($${statement}$$)"
        )
    };
    let old_sale = "UPDATE events SET available = available - 1, sold = sold + 1 \
                    WHERE id = 'fest'";
    let old_order = "INSERT INTO orders (id, event, qty, status, remaining, created_at_ms, \
                     updated_at_ms, expires_at_ms) VALUES \
                     ('01a2f000-0000-7000-8000-000000000001', 'default', 1, 'confirmed', 0, 1, 1, NULL)";
    // The release before the outbox knew quotas, lines and customers, but writes no changes.
    let no_changes_sale = "UPDATE events SET available = available - 1, sold = sold + 1 \
                           WHERE id = 'default'";
    let no_changes_order = "INSERT INTO orders (id, event, qty, status, remaining, \
                            created_at_ms, updated_at_ms, expires_at_ms, lines, customer, \
                            schema_version) SELECT * , 2 FROM UNNEST(\
                            ARRAY['01a2f000-0000-7000-8000-000000000002'::uuid], \
                            ARRAY['default'], ARRAY[1], ARRAY['confirmed'], ARRAY[0::int8], \
                            ARRAY[1::int8], ARRAY[1::int8], ARRAY[NULL::int8], \
                            ARRAY[NULL::text], ARRAY[NULL::text])";
    let no_changes_cancel = "UPDATE orders SET status = 'cancelled', updated_at_ms = 2 \
                             WHERE status = 'confirmed'";
    let no_changes_entry = "INSERT INTO waitlist (id, event, category, qty, customer, status, \
                            joined_at_ms, updated_at_ms, offer_expires_at_ms) VALUES \
                            ('01a2f000-0000-7000-8000-000000000003', 'default', 'general', 1, \
                            NULL, 'waiting', 1, 1, NULL)";
    for statement in [
        old_sale,
        old_order,
        no_changes_sale,
        no_changes_order,
        no_changes_cancel,
        no_changes_entry,
    ] {
        assert_eq!(
            database.query(&attempt(statement)).await,
            ["refused"],
            "{statement}"
        );
    }
    let sold = app
        .post("/api/v1/events/fest/purchase", json!({"qty": 1}))
        .await;
    assert_eq!(sold.body["success"], true, "{sold:?}");
    assert_eq!(app.counts("fest").await, (9, 0, 1));
}

/// What both fixtures hold (see `tests/fixtures/make-store.sh`), checked through the API.
async fn carries_on_from_the_fixture(app: &TestApp, ids: &Value) {
    let id = |name: &str| ids[name].as_str().unwrap().to_owned();
    // The live hold lasts as long as the old release allowed (a year, for later fixtures): once
    // that has passed it has expired, and its tickets are back.
    let held = app.get(&format!("/api/v1/orders/{}", id("held"))).await;
    let expires_at = held.body["expires_at"]
        .as_str()
        .expect("the hold has a deadline");
    let expires_at = time::OffsetDateTime::parse(expires_at, &Rfc3339).unwrap();
    let live = expires_at > time::OffsetDateTime::now_utc();
    let (gala_available, gala_held, held_status) = if live {
        (44, 4, "held")
    } else {
        (48, 0, "expired")
    };
    assert_eq!(app.counts("default").await, (98, 0, 2));
    assert_eq!(app.counts("gala").await, (gala_available, gala_held, 2));
    assert_eq!(app.counts("tiny").await, (0, 0, 1));
    // Each event is one `general` quota and category, as before categories.
    let gala = app.get("/api/v1/events/gala").await;
    assert_eq!(
        gala.body["quotas"],
        json!([{"id": "general", "size": 50, "available": gala_available, "held": gala_held, "sold": 2}]),
        "{gala:?}"
    );
    let general = &gala.body["categories"][0];
    assert_eq!(
        (
            &general["id"],
            &general["quotas"],
            &general["available"],
            &general["on_sale"]
        ),
        (
            &json!("general"),
            &json!(["general"]),
            &json!(gala_available),
            &json!(true)
        ),
        "{gala:?}"
    );
    assert_eq!(gala.body["categories"].as_array().map(Vec::len), Some(1));
    for (order, status, qty) in [
        ("bought", "confirmed", 2),
        ("cancelled", "cancelled", 3),
        ("held", held_status, 4),
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
        assert_eq!(
            answer.body["lines"],
            json!([{"category": "general", "qty": qty}]),
            "{order}: {answer:?}"
        );
        assert!(answer.body.get("customer").is_none(), "{answer:?}");
    }

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

    // And the store carries on: the old live hold is confirmed (or found expired), and a new
    // sale is made, in the old way and in the new.
    let confirm = format!("/api/v1/holds/{}/confirm", id("held"));
    let confirmed = app.request("POST", &confirm, &[], None).await;
    if live {
        assert_eq!(confirmed.body["status"], "confirmed", "{confirmed:?}");
        assert_eq!(app.counts("gala").await, (44, 0, 6));
    } else {
        assert_eq!(confirmed.code(), "hold_expired", "{confirmed:?}");
    }
    let lines = json!({"lines": [{"category": "general", "qty": 1}], "customer": "c-1"});
    let sold = app.post("/api/v1/events/gala/purchase", lines).await;
    assert_eq!(sold.body["success"], true, "{sold:?}");
    assert_eq!(
        sold.body["lines"],
        json!([{"category": "general", "qty": 1}])
    );
    let sold = app.purchase(json!(1)).await;
    assert_eq!(sold.body["success"], true, "{sold:?}");
    assert_eq!(app.counts("default").await, (97, 0, 3));
}
