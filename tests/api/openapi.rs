//! The OpenAPI document describes every route, and every route it describes exists.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Deployment, Launch, Options, TestApp};

/// The route modules, read as text: every `web::resource("PATH")` with the methods routed on it.
const ROUTE_SOURCES: [&str; 7] = [
    include_str!("../../src/http/routes/meta.rs"),
    include_str!("../../src/http/routes/changes.rs"),
    include_str!("../../src/http/routes/waitlist.rs"),
    include_str!("../../src/http/routes/events.rs"),
    include_str!("../../src/http/routes/orders.rs"),
    include_str!("../../src/http/routes/purchase.rs"),
    include_str!("../../src/http/routes/reserve.rs"),
];

fn registered_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for source in ROUTE_SOURCES {
        for resource in source.split("web::resource(\"").skip(1) {
            let (path, rest) = resource.split_once('"').expect("a closing quote");
            let registration = rest.split(".service(").next().unwrap_or(rest);
            for method in ["get", "post", "put", "patch", "delete"] {
                if registration.contains(&format!("web::{method}()")) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

#[actix_web::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let app = TestApp::spawn(Deployment::Monolith, Launch::InProcess, Options::default()).await;
    let document = app.get("/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    let documented: BTreeSet<(String, String)> = document.body["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();

    let registered = registered_routes();
    assert!(
        registered.len() >= 17,
        "the source scan found too few routes: {registered:?}"
    );
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );

    // And nothing is documented that the server does not route.
    for (method, path) in &documented {
        let concrete = path
            .replace("{event}", "default")
            .replace("{id}", &uuid::Uuid::now_v7().to_string());
        let mut response = app
            .client()
            .request(method.parse().unwrap(), format!("{}{concrete}", app.base))
            .send()
            .await
            .unwrap();
        let body = response.body().limit(1 << 22).await.unwrap();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        assert!(
            !matches!(code.as_str(), "not_found" | "method_not_allowed"),
            "{method} {path} is documented but not routed: {}",
            response.status()
        );
    }
}

#[actix_web::test]
async fn swagger_ui_is_served_offline() {
    let app = TestApp::spawn(Deployment::Split, Launch::InProcess, Options::default()).await;
    let page = app
        .client()
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let mut script = app
        .client()
        .get(format!("{}/docs/swagger-ui-bundle.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.body().limit(8 << 20).await.unwrap().len() > 100_000);
}

/// The methods `/openapi.json` documents for each path of the app.
async fn documented_methods(app: &TestApp) -> Vec<(String, BTreeSet<String>)> {
    let document = app.get("/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    document.body["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, methods)| {
            let methods = methods.as_object().expect("operations").keys();
            (path.clone(), methods.map(|m| m.to_uppercase()).collect())
        })
        .collect()
}

/// A method no path serves gets 405 with an `Allow` header naming exactly the documented methods
/// (RFC 9110), so a client can tell what would have worked.
pub async fn wrong_methods_get_405_with_allow(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    for (path, methods) in documented_methods(&app).await {
        let concrete = path
            .replace("{event}", "default")
            .replace("{id}", &uuid::Uuid::now_v7().to_string());
        let answer = app
            .client()
            .request(
                actix_web::http::Method::TRACE,
                format!("{}{concrete}", app.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "TRACE {path}"
        );
        let allow: BTreeSet<String> = answer
            .headers()
            .get("allow")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("TRACE {path}: 405 without Allow"))
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect();
        assert_eq!(allow, methods, "TRACE {path}");
    }
}

/// The request bounds in the document are the ones the server enforces, from its settings.
pub async fn the_document_states_the_limits_it_enforces(deployment: Deployment, launch: Launch) {
    let options = Options {
        max_per_order: 7,
        ..Options::default()
    };
    let app = TestApp::spawn(deployment, launch, options).await;
    let document = app.get("/openapi.json").await;
    let schemas = &document.body["components"]["schemas"];
    let qty = &schemas["PurchaseRequest"]["properties"]["qty"];
    assert_eq!((&qty["minimum"], &qty["maximum"]), (&json!(1), &json!(7)));
    // `qty`, or `lines` in its place: neither alone is required.
    assert_eq!(schemas["PurchaseRequest"]["required"], Value::Null);
    let line_qty = &schemas["LineBody"]["properties"]["qty"];
    assert_eq!(
        (&line_qty["minimum"], &line_qty["maximum"]),
        (&json!(1), &json!(7))
    );
    let ttl = &schemas["HoldRequest"]["properties"]["ttl_seconds"];
    assert_eq!(
        (&ttl["minimum"], &ttl["maximum"]),
        (&json!(1), &json!(3600))
    );
    // `capacity`, or `quotas` in its place.
    assert_eq!(schemas["CreateEventRequest"]["required"], json!(["name"]));
    let size = &schemas["QuotaBody"]["properties"]["size"];
    assert_eq!(size["maximum"], json!(1_000_000_000_000_u64));

    assert_eq!(app.purchase(json!(7)).await.status, StatusCode::OK);
    let over = app.purchase(json!(8)).await;
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "quantity_over_limit")
    );
    let held = |ttl_seconds: u64| {
        app.post(
            "/api/v1/events/default/holds",
            json!({"qty": 1, "ttl_seconds": ttl_seconds}),
        )
    };
    assert_eq!(held(3600).await.status, StatusCode::CREATED);
    assert_eq!(held(3601).await.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Idempotency keys and event ids: pattern and length as the server parses them.
    let hold = &document.body["paths"]["/api/v1/events/{event}/holds"]["post"]["parameters"];
    let schema_of = |name: &str| {
        hold.as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == name)
            .map(|parameter| parameter["schema"].clone())
            .unwrap_or_else(|| panic!("no {name} parameter"))
    };
    assert_eq!(
        schema_of("Idempotency-Key"),
        json!({"type": "string", "pattern": "^[!-~]+$", "minLength": 1, "maxLength": 255})
    );
    assert_eq!(
        schema_of("event"),
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": 64})
    );
    let longest_key = "k".repeat(255);
    let keyed = app
        .request(
            "POST",
            "/api/v1/purchase",
            &[("idempotency-key", &longest_key)],
            Some(json!({"qty": 1})),
        )
        .await;
    assert_eq!(keyed.status, StatusCode::OK, "{keyed:?}");
    let too_long_key = format!("{longest_key}k");
    let too_long = app
        .request(
            "POST",
            "/api/v1/purchase",
            &[("idempotency-key", &too_long_key)],
            Some(json!({"qty": 1})),
        )
        .await;
    assert_eq!(
        (too_long.status, too_long.code()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );
}

/// Opening `/docs` makes no call beyond ticketd: the page loads only its own files, and Swagger UI
/// is told not to send the document to its online validator (which it does by default whenever
/// the page is opened under a host name other than localhost).
#[actix_web::test]
async fn the_docs_page_calls_nothing_outside_ticketd() {
    let app = TestApp::spawn(Deployment::Monolith, Launch::InProcess, Options::default()).await;
    let fetch = |path: String| {
        let request = app.client().get(format!("{}/docs/{path}", app.base));
        async move {
            let mut response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "/docs/{path}");
            let body = response.body().limit(8 << 20).await.unwrap();
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    let page = fetch(String::new()).await;
    let loaded: Vec<String> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .filter_map(|rest| rest.split_once('"').map(|(url, _)| url.to_owned()))
        .collect();
    assert!(
        loaded
            .iter()
            .any(|url| url.ends_with("swagger-initializer.js")),
        "the page loads no initializer: {page}"
    );

    // What decides where the page goes: the page itself, its initializer and its own stylesheet.
    // (The vendored bundle holds Swagger UI's defaults, among them the validator's address; the
    // initializer is where they are overridden.)
    let mut texts = vec![("index.html".to_owned(), page.clone())];
    for url in &loaded {
        assert!(
            !url.contains("//") && !url.contains(':'),
            "/docs loads {url} from elsewhere"
        );
        let path = url.trim_start_matches("./").to_owned();
        if path.contains("initializer") || path.ends_with("index.css") {
            texts.push((path.clone(), fetch(path).await));
        }
    }
    for (name, text) in &texts {
        for outside in ["http://", "https://", "validator.swagger.io"] {
            assert!(!text.contains(outside), "{name} names {outside}:\n{text}");
        }
    }
    let initializer = &texts
        .iter()
        .find(|(name, _)| name.contains("initializer"))
        .expect("the initializer was fetched")
        .1;
    assert!(
        initializer.contains(r#""validatorUrl": "none""#),
        "the online validator is not turned off:\n{initializer}"
    );
}
