//! Moving from the embedded store to PostgreSQL with `ticketd copy-to-postgres`: everything sold,
//! held and remembered arrives, and the copy is refused whenever it could lose or mix anything.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{
    Deployment, Launch, Options, TestApp, TestDatabase, exit_within, postgres_available,
};
use ticketd::config::{Secret, StoreKind};
use ticketd::domain::{Error, Event, EventId};
use ticketd::vacancy::ledger::Batch;
use ticketd::vacancy::postgres::{self, PostgresConfig};

/// Runs `ticketd copy-to-postgres` from `data_dir` into `database_url`.
fn copy(data_dir: &Path, database_url: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketd"));
    command
        .arg("copy-to-postgres")
        .arg("--data-dir")
        .arg(data_dir)
        .env("TICKETD_DATABASE_URL", database_url)
        .env_remove("TICKETD_CONFIG");
    exit_within(command, Duration::from_secs(30))
}

fn said(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[actix_web::test]
async fn an_embedded_store_moves_to_postgres_with_its_orders_holds_and_keys() {
    if !postgres_available("an_embedded_store_moves_to_postgres_with_its_orders_holds_and_keys") {
        return;
    }
    let options = Options {
        initial_stock: 100,
        ..Options::default()
    };
    let mut app = TestApp::spawn(Deployment::Monolith, Launch::Binary, options).await;

    // A little of everything: sales on two events, a live hold, a cancelled order, a keyed purchase.
    let created = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"id": "gala", "name": "Gala", "capacity": 40}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let mut orders = Vec::new();
    for path in ["/api/v1/purchase", "/api/v1/events/gala/purchase"] {
        let bought = app.post(path, json!({"qty": 2})).await;
        assert_eq!(bought.body["success"], true, "{bought:?}");
        orders.push(bought.body["order_id"].as_str().unwrap().to_owned());
    }
    let cancelled = app.post("/api/v1/purchase", json!({"qty": 5})).await;
    let cancelled = cancelled.body["order_id"].as_str().unwrap().to_owned();
    let undone = app
        .post(&format!("/api/v1/orders/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(undone.body["cancelled"], true, "{undone:?}");
    orders.push(cancelled);
    let hold = app
        .post(
            "/api/v1/events/gala/holds",
            json!({"qty": 3, "ttl_seconds": 600}),
        )
        .await;
    let hold = hold.body["hold_id"].as_str().unwrap().to_owned();
    let keyed = [("idempotency-key", "move-me-1")];
    let first = app
        .request("POST", "/api/v1/purchase", &keyed, Some(json!({"qty": 1})))
        .await;
    assert_eq!(first.body["success"], true, "{first:?}");
    let before = [app.counts("default").await, app.counts("gala").await];
    let feed = app.changes("after=0&limit=1000").await;
    assert_eq!(feed.status, StatusCode::OK, "{feed:?}");
    let mut stored = Vec::new();
    for order in &orders {
        stored.push(app.get(&format!("/api/v1/orders/{order}")).await.body);
    }

    // While ticketd runs on the store, the copy is refused: sales could go on behind it.
    let database = TestDatabase::create().await;
    let busy = copy(app.data_dir(), &database.url);
    assert!(!busy.status.success());
    assert!(
        said(&busy).contains("in use by another ticketd"),
        "{busy:?}"
    );
    let tables =
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()";
    assert_eq!(
        database.query(tables).await,
        ["0"],
        "the refused copy wrote"
    );

    let addr = app.kill_store_owner().await;
    let copied = copy(app.data_dir(), &database.url);
    assert!(copied.status.success(), "{copied:?}");
    assert!(
        said(&copied).contains("events 2, orders 5, idempotency keys 1"),
        "{copied:?}"
    );
    // Copying again would mix two stores' counts: refused, and nothing changes.
    let again = copy(app.data_dir(), &database.url);
    assert!(!again.status.success());
    assert!(said(&again).contains("already holds events"), "{again:?}");
    assert_eq!(database.query("SELECT COUNT(*) FROM orders").await, ["5"]);

    // The same monolith on PostgreSQL carries on where the embedded store stopped.
    app.options_mut().store = StoreKind::Postgres;
    app.options_mut().database_url = Some(database.url.clone());
    app.restart_store_owner(addr).await;
    assert_eq!(
        [app.counts("default").await, app.counts("gala").await],
        before
    );
    for (order, body) in orders.iter().zip(&stored) {
        assert_eq!(
            &app.get(&format!("/api/v1/orders/{order}")).await.body,
            body
        );
    }
    // The feed too, numbers and all, and the next change follows on from the last.
    let moved = app.changes("after=0&limit=1000").await;
    assert_eq!(moved.body, feed.body, "the changes did not move");
    let last = feed.body["next_after"].as_u64().unwrap();
    assert!(last > 0, "{feed:?}");
    let repeat = app
        .request("POST", "/api/v1/purchase", &keyed, Some(json!({"qty": 1})))
        .await;
    assert_eq!(repeat.body, first.body, "the key was forgotten");
    let confirmed = app
        .post(&format!("/api/v1/holds/{hold}/confirm"), json!({}))
        .await;
    assert_eq!(confirmed.body["status"], "confirmed", "{confirmed:?}");
    let (_, held, sold) = app.counts("gala").await;
    assert_eq!((held, sold), (before[1].1 - 3, before[1].2 + 3));
    let next = app.changes(&format!("after={last}")).await;
    assert_eq!(next.body["changes"][0]["seq"], json!(last + 1), "{next:?}");
}

#[test]
fn a_missing_store_or_database_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let missing = copy(
        empty.path(),
        "postgres://nobody@127.0.0.1:1/none", // never contacted: the store is checked first
    );
    assert!(!missing.status.success());
    assert!(said(&missing).contains("no embedded store"), "{missing:?}");
    assert!(
        !empty.path().join("ticketd.db").exists(),
        "the copy created a store"
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketd"));
    command
        .args(["copy-to-postgres", "--data-dir"])
        .arg(empty.path())
        .env_remove("TICKETD_DATABASE_URL")
        .env_remove("TICKETD_CONFIG");
    let unset = exit_within(command, Duration::from_secs(10));
    assert!(!unset.status.success());
    assert!(said(&unset).contains("TICKETD_DATABASE_URL"), "{unset:?}");
}

/// A copy that fails part way (a damaged row, a lost connection) leaves the database as it was,
/// so it can simply be run again.
#[actix_web::test]
async fn a_copy_that_fails_part_way_leaves_nothing() {
    if !postgres_available("a_copy_that_fails_part_way_leaves_nothing") {
        return;
    }
    let database = TestDatabase::create().await;
    let config = PostgresConfig {
        url: Secret::new(database.url.clone()),
        connections_max: 2,
        timeout: Duration::from_secs(10),
    };
    let gala = Event::single(EventId::parse("gala").unwrap(), "Gala".into(), 10);
    let failed = std::thread::spawn(move || {
        postgres::import(&config, |sink| {
            sink(Batch {
                events: vec![gala],
                ..Batch::default()
            })?;
            Err(Error::Storage("the source broke".into()))
        })
    })
    .join()
    .unwrap();
    assert_eq!(failed.unwrap_err().to_string(), "the source broke");
    assert_eq!(database.query("SELECT COUNT(*) FROM events").await, ["0"]);
}
