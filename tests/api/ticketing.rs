//! Events, holds, orders, cancellation, idempotency and admin auth: each scenario runs in every
//! deployment (see `main.rs`).

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Answer, Deployment, Launch, Options, TestApp, headline};

async fn new_event(app: &TestApp, id: &str, capacity: u64) {
    let created = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"id": id, "name": format!("Event {id}"), "capacity": capacity}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
}

async fn hold(app: &TestApp, event: &str, qty: u64, ttl_seconds: u64) -> String {
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/holds"),
            json!({"qty": qty, "ttl_seconds": ttl_seconds}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["hold_id"]
        .as_str()
        .expect("a hold id")
        .to_owned()
}

pub async fn admins_manage_events(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let body = json!({"id": "spring-gala", "name": "Spring Gala", "capacity": 120});

    let anonymous = app.post("/api/v1/events", body.clone()).await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let wrong = app
        .request(
            "POST",
            "/api/v1/events",
            &[("authorization", "Bearer not-the-token-at-all")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // The token is checked before the body: a caller without it learns nothing about the body.
    for path in ["/api/v1/events", "/api/v1/events/default/stock"] {
        let malformed = app
            .post_raw(path, Some("application/json"), b"{\"qty\":".to_vec())
            .await;
        assert_eq!(
            (malformed.status, malformed.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
        let not_json = app.post_raw(path, Some("text/plain"), b"x".to_vec()).await;
        assert_eq!(not_json.status, StatusCode::UNAUTHORIZED, "{path}");
    }

    let created = app.admin("POST", "/api/v1/events", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(
        headline(&created.body),
        json!({"id": "spring-gala", "name": "Spring Gala", "capacity": 120, "available": 120, "held": 0, "sold": 0})
    );
    // An event made with a capacity is one `general` quota and category of that size.
    assert_eq!(
        created.body["quotas"],
        json!([{"id": "general", "size": 120, "available": 120, "held": 0, "sold": 0}])
    );
    assert_eq!(created.body["categories"][0]["id"], "general");
    let again = app.admin("POST", "/api/v1/events", body).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "event_exists")
    );
    let unnamed = app
        .admin("POST", "/api/v1/events", json!({"capacity": 5}))
        .await;
    assert_eq!(
        (unnamed.status, unnamed.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event")
    );
    let generated = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"name": "Pop-up", "capacity": 5}),
        )
        .await;
    assert_eq!(generated.status, StatusCode::CREATED);
    assert!(
        generated.body["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    let list = app.get("/api/v1/events").await;
    let ids: Vec<&str> = list.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"default") && ids.contains(&"spring-gala"),
        "{ids:?}"
    );

    let bought = app
        .post("/api/v1/events/spring-gala/purchase", json!({"qty": 4}))
        .await;
    assert_eq!(bought.body["remaining"], 116);
    let anonymous = app
        .post("/api/v1/events/spring-gala/stock", json!({"qty": 10}))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let replenished = app
        .admin(
            "POST",
            "/api/v1/events/spring-gala/stock",
            json!({"qty": 10}),
        )
        .await;
    assert_eq!(replenished.status, StatusCode::OK, "{replenished:?}");
    assert_eq!(
        (
            replenished.body["capacity"].as_u64(),
            replenished.body["available"].as_u64()
        ),
        (Some(130), Some(126))
    );
    let zero = app
        .admin(
            "POST",
            "/api/v1/events/spring-gala/stock",
            json!({"qty": 0}),
        )
        .await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Past the largest capacity a store keeps: by itself a bad qty (422); added to what the
    // event has, a conflict with its state (409), which a smaller qty would not have.
    let too_many = app
        .admin(
            "POST",
            "/api/v1/events/spring-gala/stock",
            json!({"qty": 1_000_000_000_001_u64}),
        )
        .await;
    assert_eq!(
        (too_many.status, too_many.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_quantity")
    );
    let past_capacity = app
        .admin(
            "POST",
            "/api/v1/events/spring-gala/stock",
            json!({"qty": 1_000_000_000_000_u64}),
        )
        .await;
    assert_eq!(
        (past_capacity.status, past_capacity.code()),
        (StatusCode::CONFLICT, "capacity_exceeded"),
        "{past_capacity:?}"
    );
    assert_eq!(app.counts("spring-gala").await, (126, 0, 4));

    let missing = app
        .admin("POST", "/api/v1/events/nope/stock", json!({"qty": 1}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

pub async fn admin_calls_are_refused_without_a_configured_token(
    deployment: Deployment,
    launch: Launch,
) {
    let options = Options {
        admin_token: None,
        ..Options::default()
    };
    let app = TestApp::spawn(deployment, launch, options).await;
    let refused = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"name": "x", "capacity": 1}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TICKETD_ADMIN_TOKEN")
    );
    // Whatever the body.
    for path in ["/api/v1/events", "/api/v1/events/default/stock"] {
        let malformed = app
            .post_raw(path, Some("application/json"), b"[".to_vec())
            .await;
        assert_eq!(
            (malformed.status, malformed.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{path}"
        );
    }
}

pub async fn holds_confirm_into_orders_that_cancel_once(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    new_event(&app, "gala", 10).await;

    let placed = app
        .post(
            "/api/v1/events/gala/holds",
            json!({"qty": 3, "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    assert_eq!(
        (
            placed.body["qty"].as_u64(),
            placed.body["remaining"].as_u64()
        ),
        (Some(3), Some(7))
    );
    assert!(
        placed.body["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let hold_id = placed.body["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(app.counts("gala").await, (7, 3, 0));

    let confirmed = app
        .post(&format!("/api/v1/holds/{hold_id}/confirm"), json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(
        (
            confirmed.body["status"].as_str(),
            confirmed.body["order_id"].as_str()
        ),
        (Some("confirmed"), Some(hold_id.as_str()))
    );
    assert_eq!(app.counts("gala").await, (7, 0, 3));
    let again = app
        .post(&format!("/api/v1/holds/{hold_id}/confirm"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(app.counts("gala").await, (7, 0, 3));

    let order = app.get(&format!("/api/v1/orders/{hold_id}")).await;
    assert_eq!(order.status, StatusCode::OK);
    assert_eq!(
        (order.body["event"].as_str(), order.body["qty"].as_u64()),
        (Some("gala"), Some(3))
    );
    assert!(order.body["created_at"].is_string() && order.body["updated_at"].is_string());

    let cancelled = app
        .post(&format!("/api/v1/orders/{hold_id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(
        (
            cancelled.body["cancelled"].as_bool(),
            cancelled.body["order"]["status"].as_str()
        ),
        (Some(true), Some("cancelled"))
    );
    assert_eq!(app.counts("gala").await, (10, 0, 0));
    let twice = app
        .post(&format!("/api/v1/orders/{hold_id}/cancel"), json!({}))
        .await;
    assert_eq!(twice.status, StatusCode::OK);
    assert_eq!(twice.body["cancelled"], false);
    assert!(
        twice.body["message"]
            .as_str()
            .unwrap()
            .contains("already cancelled")
    );
    assert_eq!(
        app.counts("gala").await,
        (10, 0, 0),
        "a second cancel returned stock again"
    );

    // A purchase is an order too, and cancels the same way.
    let bought = app
        .post("/api/v1/events/gala/purchase", json!({"qty": 2}))
        .await;
    let order_id = bought.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/api/v1/orders/{order_id}")).await.body["status"],
        "confirmed"
    );
    app.post(&format!("/api/v1/orders/{order_id}/cancel"), json!({}))
        .await;
    assert_eq!(app.counts("gala").await, (10, 0, 0));
}

pub async fn released_holds_return_stock_and_cannot_be_confirmed(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    new_event(&app, "gala", 5).await;
    let hold_id = hold(&app, "gala", 4, 60).await;

    let short = app
        .post("/api/v1/events/gala/holds", json!({"qty": 2}))
        .await;
    assert_eq!(short.status, StatusCode::OK);
    assert_eq!(
        short.body,
        json!({"success": false, "remaining": 1, "message": "Insufficient inventory",
               "short": {"category": "general", "quota": "general", "available": 1}})
    );

    let released = app
        .request("DELETE", &format!("/api/v1/holds/{hold_id}"), &[], None)
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    assert_eq!(app.counts("gala").await, (5, 0, 0));
    let again = app
        .request("DELETE", &format!("/api/v1/holds/{hold_id}"), &[], None)
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    assert_eq!(app.counts("gala").await, (5, 0, 0));

    let confirm = app
        .post(&format!("/api/v1/holds/{hold_id}/confirm"), json!({}))
        .await;
    assert_eq!(
        (confirm.status, confirm.code()),
        (StatusCode::CONFLICT, "wrong_state")
    );
    let cancel = app
        .post(&format!("/api/v1/orders/{hold_id}/cancel"), json!({}))
        .await;
    assert_eq!(cancel.status, StatusCode::CONFLICT);
    assert_eq!(
        app.get(&format!("/api/v1/orders/{hold_id}")).await.body["status"],
        "released"
    );

    let unknown = uuid::Uuid::now_v7();
    for (method, path) in [
        ("GET", format!("/api/v1/orders/{unknown}")),
        ("POST", format!("/api/v1/orders/{unknown}/cancel")),
        ("POST", format!("/api/v1/holds/{unknown}/confirm")),
        ("DELETE", format!("/api/v1/holds/{unknown}")),
        ("GET", "/api/v1/orders/not-a-uuid".to_owned()),
    ] {
        let answer = app.request(method, &path, &[], None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "unknown_order"),
            "{method} {path}"
        );
    }
    let nowhere = app
        .post("/api/v1/events/nope/holds", json!({"qty": 1}))
        .await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    for ttl in [json!(0), json!(-5), json!(1.5), json!(100_000)] {
        let answer = app
            .post(
                "/api/v1/events/gala/holds",
                json!({"qty": 1, "ttl_seconds": ttl}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttl {ttl}: {answer:?}"
        );
    }
    assert_eq!(app.counts("gala").await, (5, 0, 0));
}

/// Polls the event until `held` reaches 0 (the sweeper's work); bounded.
async fn until_released(app: &TestApp, event: &str) {
    for _ in 0..100 {
        if app.counts(event).await.1 == 0 {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the expired hold's tickets never came back");
}

pub async fn expired_holds_return_their_tickets_by_themselves(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    new_event(&app, "flash", 4).await;
    let hold_id = hold(&app, "flash", 3, 1).await;
    assert_eq!(app.counts("flash").await, (1, 3, 0));

    until_released(&app, "flash").await;
    assert_eq!(app.counts("flash").await, (4, 0, 0));
    let confirm = app
        .post(&format!("/api/v1/holds/{hold_id}/confirm"), json!({}))
        .await;
    assert_eq!(
        (confirm.status, confirm.code()),
        (StatusCode::GONE, "hold_expired")
    );
    assert_eq!(
        app.get(&format!("/api/v1/orders/{hold_id}")).await.body["status"],
        "expired"
    );
    assert_eq!(app.counts("flash").await, (4, 0, 0));
}

pub async fn live_holds_survive_a_restart(deployment: Deployment, launch: Launch) {
    let mut app = TestApp::spawn(deployment, launch, Options::default()).await;
    new_event(&app, "gala", 10).await;
    let long = hold(&app, "gala", 2, 600).await;
    let short = hold(&app, "gala", 3, 2).await;

    let addr = app.kill_store_owner().await;
    app.restart_store_owner(addr).await;
    assert_eq!(
        app.get(&format!("/api/v1/orders/{long}")).await.body["status"],
        "held"
    );

    // The short hold still expires on time after the restart...
    for _ in 0..100 {
        if app.counts("gala").await.1 == 2 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.counts("gala").await, (8, 2, 0));
    assert_eq!(
        app.get(&format!("/api/v1/orders/{short}")).await.body["status"],
        "expired"
    );
    // ...and the long one can still be confirmed.
    let confirmed = app
        .post(&format!("/api/v1/holds/{long}/confirm"), json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(app.counts("gala").await, (8, 0, 2));
}

/// Confirm, release and expiry race for the same hold: exactly one of them wins, and the counts
/// agree with the winner.
pub async fn confirm_release_and_expiry_races_have_one_winner(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    new_event(&app, "race", 1000).await;
    let mut outcomes = std::collections::HashMap::<String, usize>::new();
    for round in 0..10u64 {
        let hold_id = hold(&app, "race", 1, 1).await;
        // Spread the racers around the one-second deadline.
        actix_web::rt::time::sleep(Duration::from_millis(round * 150)).await;
        let confirm_path = format!("/api/v1/holds/{hold_id}/confirm");
        let release_path = format!("/api/v1/holds/{hold_id}");
        let (confirm, release) = tokio::join!(
            app.request("POST", &confirm_path, &[], None),
            app.request("DELETE", &release_path, &[], None),
        );
        let status = app.get(&format!("/api/v1/orders/{hold_id}")).await.body["status"]
            .as_str()
            .unwrap()
            .to_owned();
        match status.as_str() {
            "confirmed" => assert_eq!(
                (confirm.status, release.status),
                (StatusCode::OK, StatusCode::CONFLICT)
            ),
            "released" => {
                assert_eq!(release.status, StatusCode::NO_CONTENT);
                assert_eq!(confirm.status, StatusCode::CONFLICT, "{confirm:?}");
            }
            "expired" => {
                assert_eq!(confirm.status, StatusCode::GONE, "{confirm:?}");
                assert_eq!(release.status, StatusCode::NO_CONTENT);
            }
            other => panic!("hold ended {other}"),
        }
        *outcomes.entry(status).or_default() += 1;
    }
    eprintln!("race outcomes: {outcomes:?}");
    let sold = *outcomes.get("confirmed").unwrap_or(&0) as u64;
    assert_eq!(
        app.counts("race").await,
        (1000 - sold, 0, sold),
        "{outcomes:?}"
    );
}

async fn keyed(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    app.request(method, path, &[("idempotency-key", key)], body)
        .await
}

async fn buy(app: &TestApp, key: &str, qty: u64) -> Answer {
    let body = Some(json!({ "qty": qty }));
    keyed(app, "POST", "/api/v1/events/gala/purchase", key, body).await
}

pub async fn idempotency_keys_make_repeats_harmless(deployment: Deployment, launch: Launch) {
    let mut app = TestApp::spawn(deployment, launch, Options::default()).await;
    new_event(&app, "gala", 20).await;

    let first = buy(&app, "checkout-1", 3).await;
    let second = buy(&app, "checkout-1", 3).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.body, second.body,
        "a repeat must get the first answer"
    );
    assert_eq!(app.counts("gala").await, (17, 0, 3));

    let changed = buy(&app, "checkout-1", 4).await;
    assert_eq!(
        (changed.status, changed.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    assert_eq!(app.counts("gala").await, (17, 0, 3));
    let other = buy(&app, "checkout-2", 3).await;
    assert_ne!(other.body["order_id"], first.body["order_id"]);

    // Keys are stored with the inventory: they survive a restart.
    let addr = app.kill_store_owner().await;
    app.restart_store_owner(addr).await;
    assert_eq!(buy(&app, "checkout-1", 3).await.body, first.body);
    assert_eq!(app.counts("gala").await, (14, 0, 6));

    let holds = "/api/v1/events/gala/holds";
    let a = keyed(&app, "POST", holds, "hold-9", Some(json!({"qty": 2}))).await;
    let b = keyed(&app, "POST", holds, "hold-9", Some(json!({"qty": 2}))).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body, b.body);
    assert_eq!(app.counts("gala").await, (12, 2, 6));

    // Confirm and cancel with keys: a repeat gets the first answer, and a key cannot move to
    // another request.
    let confirm = format!(
        "/api/v1/holds/{}/confirm",
        a.body["hold_id"].as_str().unwrap()
    );
    assert_eq!(
        keyed(&app, "POST", &confirm, "confirm-1", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        keyed(&app, "POST", &confirm, "confirm-1", None)
            .await
            .status,
        StatusCode::OK
    );
    let cancel = format!(
        "/api/v1/orders/{}/cancel",
        first.body["order_id"].as_str().unwrap()
    );
    let cancelled = keyed(&app, "POST", &cancel, "cancel-1", None).await;
    assert_eq!(cancelled.body["cancelled"], true);
    let repeated = keyed(&app, "POST", &cancel, "cancel-1", None).await;
    assert_eq!(
        repeated.body["cancelled"], true,
        "a keyed repeat gets the first answer"
    );
    let unkeyed = app.post(&cancel, json!({})).await;
    assert_eq!(unkeyed.body["cancelled"], false);
    let moved = keyed(&app, "POST", &cancel, "confirm-1", None).await;
    assert_eq!(
        (moved.status, moved.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    assert_eq!(app.counts("gala").await, (15, 0, 5));

    // `x-call-id` stands for a key only between the ticket service and vacancy: from a client it
    // is nothing, so it can never reach the answer of a call the ticket service made.
    let order = buy(&app, "checkout-3", 1).await.body["order_id"].clone();
    let cancel = format!("/api/v1/orders/{}/cancel", order.as_str().unwrap());
    let call_id = uuid::Uuid::now_v7().to_string();
    let with_call_id = [("x-call-id", call_id.as_str())];
    let answer = app.request("POST", &cancel, &with_call_id, None).await;
    assert_eq!(answer.body["cancelled"], true, "{answer:?}");
    let answer = app.request("POST", &cancel, &with_call_id, None).await;
    assert_eq!(answer.body["cancelled"], false, "{answer:?}");
    assert_eq!(app.counts("gala").await, (15, 0, 5));

    // A refusal is an answer too: repeating it must not buy tickets that came back since.
    buy(&app, "drain-1", 10).await;
    buy(&app, "drain-2", 5).await;
    let refused = buy(&app, "late-1", 10).await;
    assert_eq!(refused.body["success"], false, "{refused:?}");
    app.admin("POST", "/api/v1/events/gala/stock", json!({"qty": 50}))
        .await;
    assert_eq!(buy(&app, "late-1", 10).await.body, refused.body);
    assert_eq!(buy(&app, "late-2", 10).await.body["success"], true);

    let bad = keyed(
        &app,
        "POST",
        "/api/v1/purchase",
        "",
        Some(json!({"qty": 1})),
    )
    .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );
}
