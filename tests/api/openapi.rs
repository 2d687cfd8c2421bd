//! The OpenAPI document describes every route, and every route it describes exists.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;

use crate::helpers::{Deployment, Launch, Options, TestApp};

/// The route modules, read as text: every `web::resource("PATH")` with the methods routed on it.
const ROUTE_SOURCES: [&str; 5] = [
    include_str!("../../src/http/routes/meta.rs"),
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
