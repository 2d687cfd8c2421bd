//! The changes feed through the public API: a sold-out story told in commit order, a long poll
//! answered when a purchase commits, a change that survives a crash, and bad reads refused.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Answer, Deployment, Launch, Options, TestApp};

async fn create_gala(app: &TestApp, capacity: u64) {
    let created = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"id": "gala", "name": "Gala", "capacity": capacity}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
}

async fn ok(answer: Answer) -> Value {
    assert!(answer.status.is_success(), "{answer:?}");
    answer.body
}

fn id(body: &Value, key: &str) -> String {
    body[key].as_str().expect("an id").to_owned()
}

/// Sold out → waiting list → offer → confirm → cancel: each committed step is one change, in
/// order, with what an integrator needs in `data`; refusals and repeats tell nothing.
pub async fn a_sold_out_story_is_told_in_commit_order(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    create_gala(&app, 2).await;
    let order = ok(app
        .post(
            "/api/v1/events/gala/purchase",
            json!({"qty": 2, "customer": "c-7"}),
        )
        .await)
    .await;
    let order = id(&order, "order_id");
    // Refused: sold out. Tells nothing.
    let refused = ok(app
        .post("/api/v1/events/gala/purchase", json!({"qty": 1}))
        .await)
    .await;
    assert_eq!(refused["success"], json!(false));
    let entry = ok(app
        .post(
            "/api/v1/events/gala/waitlist",
            json!({"qty": 2, "customer": "c-81"}),
        )
        .await)
    .await;
    let entry = id(&entry, "entry_id");
    ok(app
        .post(&format!("/api/v1/orders/{order}/cancel"), json!({}))
        .await)
    .await;
    // Cancelled again: nothing changes, nothing is told.
    ok(app
        .post(&format!("/api/v1/orders/{order}/cancel"), json!({}))
        .await)
    .await;
    ok(app
        .post(&format!("/api/v1/holds/{entry}/confirm"), json!({}))
        .await)
    .await;
    ok(app
        .post(&format!("/api/v1/orders/{entry}/cancel"), json!({}))
        .await)
    .await;

    assert_eq!(
        app.change_types().await,
        [
            "order.confirmed",
            "event.sold_out",
            "order.cancelled",
            "waitlist.offered",
            "order.confirmed",
            "order.cancelled",
            "event.back_on_sale",
        ]
    );
    let all = ok(app.changes("after=0").await).await;
    let changes = all["changes"].as_array().unwrap();
    let data = |n: usize| &changes[n]["data"];
    assert!(changes.iter().all(|c| c["event"] == json!("gala")), "{all}");
    assert!(
        changes
            .iter()
            .all(|c| c["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))),
        "{all}"
    );
    assert_eq!(data(0)["order"]["order_id"], json!(order));
    assert_eq!(data(0)["order"]["customer"], json!("c-7"));
    assert_eq!(data(0)["order"]["status"], json!("confirmed"));
    assert_eq!(data(0)["order"]["lines"][0]["qty"], json!(2));
    assert_eq!(data(1)["event"]["available"], json!(0));
    assert_eq!(data(2)["order"]["status"], json!("cancelled"));
    assert_eq!(data(3)["entry"]["entry_id"], json!(entry));
    assert_eq!(data(3)["entry"]["customer"], json!("c-81"));
    assert_eq!(data(3)["entry"]["offer"]["hold_id"], json!(entry));
    assert!(data(3)["entry"]["offer"]["expires_at"].is_string(), "{all}");
    assert_eq!(data(4)["order"]["order_id"], json!(entry));
    assert_eq!(data(6)["event"]["available"], json!(2));

    // Paging after a cursor.
    let page = ok(app.changes("after=2&limit=2").await).await;
    let seqs: Vec<&Value> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["seq"])
        .collect();
    assert_eq!(seqs, [&json!(3), &json!(4)]);
    assert_eq!(page["next_after"], json!(4));
    let end = ok(app.changes("after=7").await).await;
    assert_eq!(end, json!({"changes": [], "next_after": 7}));
    // Past the last change: a store restored or restarted numbers again from lower down, and a
    // reader left waiting there would miss every change up to its cursor.
    let ahead = app.changes("after=8").await;
    assert_eq!(ahead.status, StatusCode::CONFLICT, "{ahead:?}");
    assert_eq!(ahead.code(), "cursor_ahead", "{ahead:?}");
    assert_eq!(ahead.body["error"]["last"], json!(7), "{ahead:?}");
}

/// A reader waiting for the next change is answered as soon as a purchase commits, well before
/// its wait runs out; a reader with nothing to wait for gets an empty page when it does.
pub async fn a_long_poll_is_answered_when_a_purchase_commits(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    create_gala(&app, 10).await;
    let wait_seconds = 8;
    let started = Instant::now();
    let query = format!("after=0&wait_seconds={wait_seconds}");
    let poll = app.changes(&query);
    let purchase = async {
        // Not for correctness: a poll that starts after the purchase finds it at once.
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        ok(app
            .post("/api/v1/events/gala/purchase", json!({"qty": 1}))
            .await)
        .await
    };
    let (polled, bought) = futures_util::future::join(poll, purchase).await;
    let waited = started.elapsed();
    let polled = ok(polled).await;
    assert_eq!(
        polled["changes"][0]["type"],
        json!("order.confirmed"),
        "{polled}"
    );
    assert_eq!(
        polled["changes"][0]["data"]["order"]["order_id"],
        bought["order_id"]
    );
    assert!(
        waited < Duration::from_secs(wait_seconds - 2),
        "the poll waited {waited:?} for a purchase that committed at once"
    );

    let started = Instant::now();
    let empty = ok(app.changes("after=1&wait_seconds=1").await).await;
    assert_eq!(empty, json!({"changes": [], "next_after": 1}));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it did wait"
    );
}

/// What reads the feed must be the admin; bad parameters are refused by name.
pub async fn bad_change_reads_get_a_json_error(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let anonymous = app.get("/api/v1/changes").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "after=-1",
        "after=1.5",
        "after=9007199254740992",
        "wait_seconds=61",
        "wait_seconds=-1",
        "cursor=3",
        "after=1&after=2",
    ] {
        let answer = app.changes(query).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {answer:?}"
        );
        assert_eq!(answer.code(), "invalid_query", "{query}: {answer:?}");
    }
    let fine = ok(app.changes("after=0&limit=1000&wait_seconds=0").await).await;
    assert_eq!(fine, json!({"changes": [], "next_after": 0}));
}

/// A purchase answered just before the process is killed keeps its change: it was committed with
/// the order.
pub async fn an_answered_purchase_keeps_its_change_through_a_crash(
    deployment: Deployment,
    launch: Launch,
) {
    let mut app = TestApp::spawn(deployment, launch, Options::default()).await;
    let bought = ok(app.purchase(json!(2)).await).await;
    let addr = app.kill_store_owner().await;
    app.restart_store_owner(addr).await;
    assert_eq!(app.change_types().await, ["order.confirmed"]);
    let all = ok(app.changes("after=0").await).await;
    assert_eq!(
        all["changes"][0]["data"]["order"]["order_id"],
        bought["order_id"]
    );
    // Numbering carries on after the restart.
    ok(app.purchase(json!(1)).await).await;
    assert_eq!(
        app.change_types().await,
        ["order.confirmed", "order.confirmed"]
    );
}
