//! Waiting lists through the public API: sold out → join → seats come back → offer → confirm.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Deployment, Launch, Options, TestApp};

async fn join(app: &TestApp, body: Value) -> crate::helpers::Answer {
    app.post("/api/v1/events/gala/waitlist", body).await
}

async fn entry(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/api/v1/waitlist/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body
}

async fn buy(app: &TestApp, qty: u64) -> crate::helpers::Answer {
    let answer = app
        .post("/api/v1/events/gala/purchase", json!({"qty": qty}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer
}

async fn cancel(app: &TestApp, order: &str) {
    let answer = app
        .post(&format!("/api/v1/orders/{order}/cancel"), json!({}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["cancelled"], json!(true), "{answer:?}");
}

pub async fn seats_that_come_back_go_to_the_waiting_list_first(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let created = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"id": "gala", "name": "Gala", "capacity": 3}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");

    // While tickets can be bought, nobody waits.
    let early = join(&app, json!({"qty": 2})).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    assert_eq!(early.code(), "tickets_available");

    let a = buy(&app, 2).await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = buy(&app, 1).await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.counts("gala").await, (0, 0, 3));

    // Bad input changes nothing.
    let bad = join(&app, json!({"qty": 0})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    let unknown = app
        .post("/api/v1/events/nope/waitlist", json!({"qty": 1}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");

    let first = join(&app, json!({"qty": 2, "customer": "c-1"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(
        (&first.body["status"], &first.body["position"]),
        (&json!("waiting"), &json!(1))
    );
    let first = first.body["entry_id"].as_str().unwrap().to_owned();
    let second = join(&app, json!({"qty": 1})).await;
    assert_eq!(second.body["position"], json!(2), "{second:?}");
    let second = second.body["entry_id"].as_str().unwrap().to_owned();

    // One seat back, but the head wants two: it keeps its turn, the seat waits for it, and the
    // public gets none of it.
    cancel(&app, &b).await;
    assert_eq!(app.counts("gala").await, (1, 0, 2));
    assert_eq!(entry(&app, &first).await["status"], json!("waiting"));
    assert_eq!(entry(&app, &second).await["position"], json!(2));
    let public = buy(&app, 1).await;
    assert_eq!(public.body["success"], json!(false), "{public:?}");

    // Three back: the head is offered its two, the next its one, in the same commit.
    cancel(&app, &a).await;
    assert_eq!(app.counts("gala").await, (0, 3, 0));
    let offered = entry(&app, &first).await;
    assert_eq!(offered["status"], json!("offered"), "{offered}");
    assert_eq!(offered["offer"]["hold_id"], json!(first));
    assert!(
        offered["offer"]["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(entry(&app, &second).await["status"], json!("offered"));

    // The entrant confirms the hold as usual.
    let confirmed = app
        .post(&format!("/api/v1/holds/{first}/confirm"), json!({}))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(confirmed.body["qty"], json!(2));
    assert_eq!(entry(&app, &first).await["status"], json!("accepted"));

    // The other declines by leaving: its seat goes back, and with nobody waiting, on sale.
    let left = app
        .request("DELETE", &format!("/api/v1/waitlist/{second}"), &[], None)
        .await;
    assert_eq!(left.status, StatusCode::OK, "{left:?}");
    assert_eq!(left.body["status"], json!("left"));
    assert_eq!(app.counts("gala").await, (1, 0, 2));
    assert_eq!(buy(&app, 1).await.body["success"], json!(true));

    // Leaving an accepted entry changes nothing; unknown entries are not found.
    let again = app
        .request("DELETE", &format!("/api/v1/waitlist/{first}"), &[], None)
        .await;
    assert_eq!(again.body["status"], json!("accepted"), "{again:?}");
    for id in ["0191d6b2-7a1c-7000-8000-000000000000", "not-an-id"] {
        let missing = app.get(&format!("/api/v1/waitlist/{id}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
        assert_eq!(missing.code(), "unknown_waitlist_entry");
    }
    assert_eq!(app.counts("gala").await, (0, 0, 3));
}
