//! Scenarios every deployment must pass alike.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Deployment, Launch, Options, TestApp, headline};

pub async fn describes_itself(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;

    let root = app.get("/").await;
    assert_eq!(root.status, StatusCode::OK);
    assert_eq!(root.body["service"], "ticketd");
    assert_eq!(root.body["mode"], app.public_mode());
    assert!(root.body["version"].is_string());

    // `/api/v1/health` is the seed's path for the same check, in both of its services.
    for path in ["/health", "/api/v1/health"] {
        let health = app.get(path).await;
        assert_eq!(health.status, StatusCode::OK, "{path}: {health:?}");
        assert_eq!(
            health.body,
            json!({"status": "healthy", "mode": app.public_mode()}),
            "{path}"
        );
    }

    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
}

pub async fn purchase_flow(deployment: Deployment, launch: Launch) {
    let options = Options {
        initial_stock: 100,
        ..Options::default()
    };
    let app = TestApp::spawn(deployment, launch, options).await;
    assert_eq!(app.available().await, 100);

    let bought = app.purchase(json!(5)).await;
    assert_eq!(bought.status, StatusCode::OK);
    assert_eq!(bought.body["success"], true);
    assert_eq!(bought.body["remaining"], 95);
    assert_eq!(bought.body["message"], "Purchase successful!");
    let order_id = bought.body["order_id"].as_str().expect("an order id");
    assert!(uuid::Uuid::parse_str(order_id).is_ok(), "{order_id}");

    let again = app.purchase(json!(5)).await;
    assert_ne!(again.body["order_id"], bought.body["order_id"]);
    assert_eq!(again.body["remaining"], 90);
    assert_eq!(app.available().await, 90);

    let event = app.get("/api/v1/events/default").await;
    assert_eq!(event.status, StatusCode::OK);
    assert_eq!(
        headline(&event.body),
        json!({"id": "default", "name": "default", "capacity": 100, "available": 90, "held": 0, "sold": 10})
    );
    let on_event = app
        .post("/api/v1/events/default/purchase", json!({"qty": 1}))
        .await;
    assert_eq!(on_event.body["remaining"], 89);
}

pub async fn selling_out_is_an_answer_not_an_error(deployment: Deployment, launch: Launch) {
    let options = Options {
        initial_stock: 12,
        ..Options::default()
    };
    let app = TestApp::spawn(deployment, launch, options).await;
    assert_eq!(app.purchase(json!(10)).await.body["remaining"], 2);

    let short = app.purchase(json!(5)).await;
    assert_eq!(short.status, StatusCode::OK);
    assert_eq!(
        short.body,
        json!({"success": false, "remaining": 2, "message": "Insufficient inventory",
               "short": {"category": "general", "quota": "general", "available": 2}})
    );
    assert_eq!(app.purchase(json!(2)).await.body["remaining"], 0);
    assert_eq!(app.purchase(json!(1)).await.body["success"], false);
    assert_eq!(app.available().await, 0);
}

pub async fn bad_input_gets_a_json_error_and_changes_nothing(
    deployment: Deployment,
    launch: Launch,
) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let before = app.available().await;
    let purchase = "/api/v1/purchase";

    // (what, content type, body, expected status, expected error code)
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Some("application/json"),
            b"{\"qty\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "not an object",
            Some("application/json"),
            b"[1]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            b"{\"qty\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        ),
        (
            "no content type",
            None,
            b"{\"qty\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        ),
        (
            "qty missing",
            Some("application/json"),
            b"{}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "qty null",
            Some("application/json"),
            b"{\"qty\":null}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "qty zero",
            Some("application/json"),
            b"{\"qty\":0}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "qty negative",
            Some("application/json"),
            b"{\"qty\":-4}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "qty fractional",
            Some("application/json"),
            b"{\"qty\":1.5}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "qty a string",
            Some("application/json"),
            b"{\"qty\":\"2\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "qty over the limit",
            Some("application/json"),
            b"{\"qty\":11}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity_over_limit",
        ),
        (
            "qty huge",
            Some("application/json"),
            b"{\"qty\":99999999999999999999}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity_over_limit",
        ),
        (
            "body too large",
            Some("application/json"),
            vec![b' '; 17 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let answer = app.post_raw(purchase, content_type, body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{what}: {answer:?}"
        );
        assert!(answer.body["error"]["message"].is_string(), "{what}");
    }

    let unknown_event = app
        .post("/api/v1/events/nope/purchase", json!({"qty": 1}))
        .await;
    assert_eq!(
        (unknown_event.status, unknown_event.code()),
        (StatusCode::NOT_FOUND, "unknown_event")
    );
    let bad_event = app.get("/api/v1/events/not%20an%20id").await;
    assert_eq!(
        (bad_event.status, bad_event.code()),
        (StatusCode::NOT_FOUND, "unknown_event")
    );

    let no_route = app.get("/api/v1/nothing-here").await;
    assert_eq!(
        (no_route.status, no_route.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let wrong_method = app.get(purchase).await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    assert_eq!(
        app.available().await,
        before,
        "a refused request changed stock"
    );
}

pub async fn concurrent_buyers_never_oversell(deployment: Deployment, launch: Launch) {
    let options = Options {
        initial_stock: 50,
        ..Options::default()
    };
    let app = TestApp::spawn(deployment, launch, options).await;

    let buyers = (0..200).map(|_| app.purchase(json!(1)));
    let answers = futures_util::future::join_all(buyers).await;
    assert!(
        answers.iter().all(|a| a.status == StatusCode::OK),
        "{answers:?}"
    );
    let orders: Vec<&str> = answers
        .iter()
        .filter(|a| a.body["success"] == true)
        .map(|a| a.body["order_id"].as_str().expect("an order id"))
        .collect();
    assert_eq!(orders.len(), 50);
    assert_eq!(
        orders.iter().collect::<HashSet<_>>().len(),
        50,
        "an order id was reused"
    );
    assert_eq!(app.available().await, 0);
    let event = app.get("/api/v1/events/default").await;
    assert_eq!(event.body["sold"], 50);
}

pub async fn request_ids_are_returned(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let request = app
        .client()
        .get(format!("{}/api/v1/available", app.base))
        .insert_header(("x-request-id", "checkout-42"));
    let answer = app.send(request, None).await.unwrap();
    assert_eq!(answer.request_id.as_deref(), Some("checkout-42"));

    let generated = app
        .get("/api/v1/available")
        .await
        .request_id
        .expect("an id");
    let other = app
        .get("/api/v1/available")
        .await
        .request_id
        .expect("an id");
    assert_ne!(generated, other);
}

pub async fn metrics_are_exported_in_prometheus_format(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    assert_eq!(app.purchase(json!(1)).await.status, StatusCode::OK);

    let mut response = app
        .client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(response.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    for expected in [
        "http_requests_total{route=\"/api/v1/purchase\",method=\"POST\",status=\"200\"}",
        "http_request_duration_seconds_bucket{route=\"/api/v1/purchase\"",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // The inventory's own figures come from whichever process owns it.
    let owner = match deployment {
        Deployment::Monolith => text,
        Deployment::Split | Deployment::Replicated => {
            assert!(
                text.contains("ticketd_vacancy_calls_total{outcome=\"ok\"}"),
                "{text}"
            );
            // Replicas each count what they did themselves: one of them made the sale.
            let mut owners = String::new();
            for vacancy in app.vacancy().into_iter().chain(app.replica()) {
                let mut response = app
                    .client()
                    .get(format!("{}/metrics", vacancy.url()))
                    .send()
                    .await
                    .unwrap();
                let body = response.body().limit(1 << 22).await.unwrap();
                owners.push_str(std::str::from_utf8(&body).unwrap());
            }
            owners
        }
    };
    for expected in [
        "ticketd_reservations_total{outcome=\"accepted\"}",
        "ticketd_event_tickets{event=\"default\",state=\"sold\"}",
        "ticketd_ledger_batch_size_bucket",
        "ticketd_ledger_commit_seconds_bucket",
    ] {
        assert!(
            owner.contains(expected),
            "{expected} missing from:\n{owner}"
        );
    }
}

/// A JSON object that names a key twice is refused on every route that takes a body, public and
/// the inventory's own, at any depth: `{"qty":1,"qty":2}` must not sell 2 here while a gateway in
/// front, reading the first `qty`, let through a purchase of 1.
pub async fn duplicate_keys_are_refused_and_change_nothing(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let created = app
        .admin(
            "POST",
            "/api/v1/events",
            json!({"id": "gala", "name": "Gala", "capacity": 50}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let before = (app.counts("default").await, app.counts("gala").await);
    let events_before = app.get("/api/v1/events").await.body;

    let bearer = format!("Bearer {}", crate::helpers::ADMIN_TOKEN);
    let admin = [("authorization", bearer.as_str())];
    // The inventory's own routes: the monolith serves them, vacancy does in the split deployment.
    let (inventory, service) = match app.vacancy() {
        Some(vacancy) => (vacancy.url(), crate::helpers::SERVICE_TOKEN),
        None => (app.base.clone(), ""),
    };
    let inventory_headers = [("x-service-token", service)];
    // (base, path, headers, body, the repeated key)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 11] = [
        (
            &app.base,
            "/api/v1/purchase",
            &[],
            r#"{"qty":1,"qty":2}"#,
            "qty",
        ),
        (
            &app.base,
            "/api/v1/events/gala/purchase",
            &[],
            r#"{"qty":2,"qty":1}"#,
            "qty",
        ),
        (
            &app.base,
            "/api/v1/events/gala/holds",
            &[],
            r#"{"qty":1,"ttl_seconds":60,"ttl_seconds":600}"#,
            "ttl_seconds",
        ),
        (
            &app.base,
            "/api/v1/purchase",
            &[],
            r#"{"qty":1,"x":{"y":1,"y":2}}"#,
            "y",
        ),
        (
            &app.base,
            "/api/v1/purchase",
            &[],
            r#"{"qty":1,"x":[[{"z":1,"z":1}]]}"#,
            "z",
        ),
        (
            &app.base,
            "/api/v1/events",
            &admin,
            r#"{"id":"dup","name":"Dup","capacity":5,"capacity":500}"#,
            "capacity",
        ),
        (
            &app.base,
            "/api/v1/events/gala/stock",
            &admin,
            r#"{"qty":1,"qty":100}"#,
            "qty",
        ),
        (
            &inventory,
            "/api/v1/reserve",
            &inventory_headers,
            r#"{"qty":1,"qty":3}"#,
            "qty",
        ),
        (
            &inventory,
            "/api/v1/events/gala/reserve",
            &inventory_headers,
            r#"{"qty":1,"qty":3}"#,
            "qty",
        ),
        (
            &inventory,
            "/api/v1/events/gala/reserve",
            &inventory_headers,
            r#"{"qty":1,"ttl_seconds":60,"ttl_seconds":null}"#,
            "ttl_seconds",
        ),
        (
            &inventory,
            "/api/v1/events",
            &[("x-service-token", service), admin[0]],
            r#"{"id":"dup","id":"dup2","name":"Dup","capacity":5}"#,
            "id",
        ),
    ];
    for (base, path, headers, body, key) in cases {
        let mut request = app
            .client()
            .post(format!("{base}{path}"))
            .insert_header(("content-type", "application/json"));
        for header in headers.iter().filter(|(_, value)| !value.is_empty()) {
            request = request.insert_header(*header);
        }
        let answer = app
            .send(request, Some((None, body.as_bytes().to_vec())))
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "invalid_body"),
            "{path} {body}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("duplicate") && message.contains(&format!("\"{key}\"")),
            "{path} {body}: the message does not name the key: {message}"
        );
    }

    assert_eq!(
        (app.counts("default").await, app.counts("gala").await),
        before,
        "a refused request changed stock"
    );
    assert_eq!(app.get("/api/v1/events").await.body, events_before);
    // The same bodies without the repeat are fine: it is the repeat that is refused.
    assert_eq!(app.purchase(json!(2)).await.body["success"], true);
}

/// The inventory's own route refuses the quantities and hold lengths the public routes refuse,
/// changing nothing: it parses them against the same per-order limits where the request comes in.
pub async fn the_inventorys_own_route_refuses_bad_numbers(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    // The monolith serves the inventory's routes itself, vacancy does in the split deployment.
    let (inventory, service) = match app.vacancy() {
        Some(vacancy) => (vacancy.url(), crate::helpers::SERVICE_TOKEN),
        None => (app.base.clone(), ""),
    };
    let before = app.counts("default").await;
    for (body, code) in [
        (json!({"qty": 11}), "quantity_over_limit"),
        (json!({"qty": 0}), "invalid_quantity"),
        (json!({"qty": 1, "ttl_seconds": 0}), "invalid_quantity"),
        (json!({"qty": 1, "ttl_seconds": -5}), "invalid_quantity"),
        (json!({"qty": 1, "ttl_seconds": 3601}), "invalid_quantity"),
        (json!({"qty": 1, "ttl_seconds": 1e20}), "invalid_quantity"),
    ] {
        let mut request = app
            .client()
            .post(format!("{inventory}/api/v1/reserve"))
            .insert_header(("content-type", "application/json"));
        if !service.is_empty() {
            request = request.insert_header(("x-service-token", service));
        }
        let answer = app
            .send(request, Some((None, body.to_string().into_bytes())))
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}: {answer:?}"
        );
    }
    assert_eq!(
        app.counts("default").await,
        before,
        "a refused request changed stock"
    );
}

/// The largest quantity, capacity and hold a client can ask for are stored and read back intact
/// by every store (PostgreSQL keeps a quantity in a 32-bit signed `INTEGER`, counts in `BIGINT`),
/// and one more is refused with 422, changing nothing.
pub async fn the_largest_requests_fit_every_store(deployment: Deployment, launch: Launch) {
    const QTY_MAX: u64 = i32::MAX as u64;
    const CAPACITY_MAX: u64 = 1_000_000_000_000;
    const TTL_MAX: u64 = 3600;
    let options = Options {
        max_per_order: QTY_MAX as u32,
        ..Options::default()
    };
    let app = TestApp::spawn(deployment, launch, options).await;
    let create = |id: &str, capacity: u64| {
        app.admin(
            "POST",
            "/api/v1/events",
            json!({"id": id, "name": id, "capacity": capacity}),
        )
    };
    let refused = create("too-big", CAPACITY_MAX + 1).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(
        create("huge", CAPACITY_MAX).await.status,
        StatusCode::CREATED
    );

    let bought = app
        .post("/api/v1/events/huge/purchase", json!({"qty": QTY_MAX}))
        .await;
    assert_eq!(bought.body["success"], true, "{bought:?}");
    let held = app
        .post(
            "/api/v1/events/huge/holds",
            json!({"qty": QTY_MAX, "ttl_seconds": TTL_MAX}),
        )
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
    for order in [&bought.body["order_id"], &held.body["hold_id"]] {
        let order = app
            .get(&format!("/api/v1/orders/{}", order.as_str().unwrap()))
            .await;
        assert_eq!(order.body["qty"], QTY_MAX, "{order:?}");
    }
    let expected = (CAPACITY_MAX - 2 * QTY_MAX, QTY_MAX, QTY_MAX);
    assert_eq!(app.counts("huge").await, expected);

    type Case = (&'static str, &'static str, serde_json::Value, &'static str);
    let over: [Case; 5] = [
        (
            "POST",
            "/api/v1/events/huge/purchase",
            json!({"qty": QTY_MAX + 1}),
            "quantity_over_limit",
        ),
        (
            "POST",
            "/api/v1/events/huge/purchase",
            json!({"qty": u64::MAX}),
            "quantity_over_limit",
        ),
        (
            "POST",
            "/api/v1/events/huge/holds",
            json!({"qty": 1, "ttl_seconds": TTL_MAX + 1}),
            "invalid_quantity",
        ),
        (
            "POST",
            "/api/v1/events/huge/holds",
            json!({"qty": 1, "ttl_seconds": 1e20}),
            "invalid_quantity",
        ),
        (
            "POST",
            "/api/v1/events/huge/stock",
            json!({"qty": u64::MAX}),
            "invalid_quantity",
        ),
    ];
    for (method, path, body, code) in over {
        let answer = app.admin(method, path, body.clone()).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{path} {body}: {answer:?}"
        );
    }
    // One more ticket for an event at the limit: a well-formed request the event's state refuses.
    let answer = app
        .admin("POST", "/api/v1/events/huge/stock", json!({"qty": 1}))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::CONFLICT, "capacity_exceeded"),
        "{answer:?}"
    );
    assert_eq!(
        app.counts("huge").await,
        expected,
        "a refusal changed stock"
    );
}
