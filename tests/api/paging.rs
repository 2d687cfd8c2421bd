//! The event list, page by page: every event exactly once whatever the deployment and however long
//! the list, and a ticket service that tells an answer it cannot take from a vacancy that is down.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::join_all;
use serde_json::json;
use ticketd::ticket::ANSWER_SIZE_MAX;

use crate::helpers::{Deployment, Launch, Options, TestApp};

/// Enough events with long names that the whole list is far over 64 KiB.
const EVENTS_COUNT: usize = 300;

/// A name of the longest allowed length whose characters take two bytes each, so the list is as
/// large as names can make it.
fn long_name(n: usize) -> String {
    let name = format!("Événement {n:04} ");
    let padding = "é".repeat(200 - name.chars().count());
    name + &padding
}

/// Walks the list from the start with `params` (e.g. `limit=50`), calling `between` after the
/// first page; returns every id seen, in the order seen. Each page must answer 200, hold at most
/// `limit_max` events, and follow the previous one in id order.
async fn walk(
    app: &TestApp,
    params: &str,
    limit_max: usize,
    between: impl AsyncFnOnce(),
) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut between = Some(between);
    // Bounded: more pages than the events could fill means the cursor does not move on.
    let pages_max = (EVENTS_COUNT + 20) / limit_max + 3;
    for _ in 0..pages_max {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/events?{params}&cursor={cursor}"),
            None => format!("/api/v1/events?{params}"),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {page:?}");
        let events = page.body["events"].as_array().expect("events");
        assert!(events.len() <= limit_max, "{path}: {} events", events.len());
        for event in events {
            let id = event["id"].as_str().expect("an id").to_owned();
            if let Some(last) = ids.last() {
                assert!(last < &id, "{path}: {id} came after {last}");
            }
            ids.push(id);
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(page.body["next_cursor"], json!(null), "{path}");
                return ids;
            }
        }
        if let Some(between) = between.take() {
            between().await;
        }
    }
    panic!("{params}: still more pages after {pages_max}");
}

pub async fn every_event_is_listed_once_across_pages(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    let ids: Vec<String> = (0..EVENTS_COUNT).map(|n| format!("event-{n:04}")).collect();
    // A few at a time, so the store commits them in batches.
    for chunk in ids.chunks(10) {
        let created = join_all(chunk.iter().enumerate().map(|(n, id)| {
            let body = json!({"id": id, "name": long_name(n), "capacity": 10});
            app.admin("POST", "/api/v1/events", body)
        }))
        .await;
        for answer in created {
            assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        }
    }
    let mut expected: BTreeSet<String> = ids.iter().cloned().collect();
    expected.insert("default".into());
    let expected: Vec<String> = expected.into_iter().collect();

    // Clients that know nothing of pages still find `events`: the first page, by id.
    let first = app.get("/api/v1/events").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let first_ids: Vec<&str> = first.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["id"].as_str().unwrap())
        .collect();
    assert_eq!(first_ids, expected[..100]);
    assert_eq!(first.body["events"][1]["name"], long_name(0));

    // The largest page there is: every event in one answer, well over 64 KiB.
    assert_eq!(walk(&app, "limit=1000", 1000, async || {}).await, expected);
    // The default page size, and a small one.
    assert_eq!(walk(&app, "", 100, async || {}).await, expected);

    // Events created during a walk do not disturb it: those after the cursor are listed, those
    // before it are not, and nothing is listed twice or left out.
    let added = walk(&app, "limit=64", 64, async || {
        for id in ["a-before-the-cursor", "event-0100-b", "zz-after-the-cursor"] {
            let body = json!({"id": id, "name": "Added", "capacity": 1});
            let created = app.admin("POST", "/api/v1/events", body).await;
            assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        }
    })
    .await;
    let mut with_added = expected.clone();
    with_added.extend(["event-0100-b".to_owned(), "zz-after-the-cursor".to_owned()]);
    with_added.sort();
    assert_eq!(added, with_added);

    // No call was taken for a replica being down.
    let passed_over = app
        .ticket()
        .logs()
        .into_iter()
        .filter(|line| line.contains("unreachable"))
        .collect::<Vec<_>>();
    assert!(passed_over.is_empty(), "{passed_over:?}");
}

pub async fn bad_page_requests_get_a_json_error(deployment: Deployment, launch: Launch) {
    let app = TestApp::spawn(deployment, launch, Options::default()).await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=1.5",
        "limit=ten",
        "limit=",
        "limit=99999999999999999999999",
        "limit=1&limit=2",
        "cursor=",
        "cursor=a%2Fb",
        "cursor=a%20b",
        "cursor=%FF",
        &format!("cursor={}", "a".repeat(65)),
        "limt=5",
    ] {
        let answer = app.get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{query}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{query}: {answer:?}");
    }
    let fine = app.get("/api/v1/events?limit=1").await;
    assert_eq!(fine.status, StatusCode::OK, "{fine:?}");
    assert_eq!(fine.body["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        fine.body["next_cursor"],
        json!(null),
        "only `default` exists"
    );
}

/// Two vacancy replicas, the first of which answers the event list with more than the ticket
/// service reads. The call fails with 503 and says why; it is not tried again on the other
/// replica, and the first keeps taking its turn: it is up, and said so. The same for an answer
/// that is not the JSON expected.
async fn an_answer_too_large_is_an_error_of_the_call_not_a_replica_down(launch: Launch) {
    let replicas = [FakeVacancy::start(true), FakeVacancy::start(false)];
    let urls = format!("{},{}", replicas[0].url(), replicas[1].url());
    let app = TestApp::ticket_only(launch, urls, Options::default()).await;
    let asked = |path: &str| replicas.each(path);

    // The first call goes to the first replica.
    let list = app.get("/api/v1/events").await;
    assert_eq!(
        (list.status, list.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{list:?}"
    );
    let message = list.body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("larger than the {ANSWER_SIZE_MAX} bytes")),
        "{message}"
    );
    assert_eq!(asked("/api/v1/events"), [1, 0], "tried again elsewhere");

    // Calls go on alternating: the first replica was not passed over.
    for _ in 0..4 {
        assert_eq!(app.available().await, 10);
    }
    assert_eq!(asked("/api/v1/events/default"), [2, 2]);

    // The next call goes to the second replica, which sends what is not an event.
    let garbled = app.get("/api/v1/events/garbled").await;
    assert_eq!(
        (garbled.status, garbled.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{garbled:?}"
    );
    assert_eq!(
        asked("/api/v1/events/garbled"),
        [0, 1],
        "tried again elsewhere"
    );
    for _ in 0..4 {
        assert_eq!(app.available().await, 10);
    }
    assert_eq!(asked("/api/v1/events/default"), [4, 4]);
}

mod an_answer_too_large_is_an_error_of_the_call_not_a_replica_down {
    use crate::helpers::Launch;

    #[actix_web::test]
    async fn in_process() {
        super::an_answer_too_large_is_an_error_of_the_call_not_a_replica_down(Launch::InProcess)
            .await
    }

    #[actix_web::test]
    async fn binary() {
        super::an_answer_too_large_is_an_error_of_the_call_not_a_replica_down(Launch::Binary).await
    }
}

/// A stand-in for a vacancy replica on 127.0.0.1: the event list is empty, or one byte over what
/// the ticket service reads when `oversized`; `/api/v1/events/garbled` is JSON but no event, and
/// `default` is a healthy event. Records the path of every request; stops when dropped.
struct FakeVacancy {
    addr: SocketAddr,
    handle: ServerHandle,
    asked: Arc<Mutex<Vec<String>>>,
}

impl FakeVacancy {
    fn start(oversized: bool) -> Self {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let data = web::Data::from(Arc::clone(&asked));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::Data::new(Oversized(oversized)))
                .default_service(web::to(fake_answer))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("a free port on 127.0.0.1");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            addr,
            handle,
            asked,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeVacancy {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

trait Asked {
    /// How many times each replica was asked for `path`.
    fn each(&self, path: &str) -> Vec<usize>;
}

impl Asked for [FakeVacancy; 2] {
    fn each(&self, path: &str) -> Vec<usize> {
        self.iter()
            .map(|fake| {
                fake.asked
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|p| *p == path)
                    .count()
            })
            .collect()
    }
}

struct Oversized(bool);

async fn fake_answer(
    request: HttpRequest,
    asked: web::Data<Mutex<Vec<String>>>,
    oversized: web::Data<Oversized>,
) -> HttpResponse {
    asked.lock().unwrap().push(request.path().to_owned());
    match request.path() {
        "/" => HttpResponse::Ok().json(json!({
            "service": "ticketd", "mode": "vacancy", "version": env!("CARGO_PKG_VERSION"),
            "store_id": "fake-store",
        })),
        "/api/v1/events" if !oversized.0 => {
            HttpResponse::Ok().json(json!({"events": [], "next_cursor": null}))
        }
        "/api/v1/events" => {
            // Well-formed JSON, one byte longer than the limit.
            let (head, tail) = (r#"{"events":[],"next_cursor":null,"padding":""#, r#""}"#);
            let padding = "x".repeat(ANSWER_SIZE_MAX + 1 - head.len() - tail.len());
            HttpResponse::Ok()
                .content_type("application/json")
                .body(format!("{head}{padding}{tail}"))
        }
        "/api/v1/events/garbled" => HttpResponse::Ok().json(json!({"not": "an event"})),
        "/api/v1/events/default" => HttpResponse::Ok().json(json!({
            "id": "default", "name": "default", "capacity": 10, "available": 10, "held": 0,
            "sold": 0,
        })),
        _ => HttpResponse::NotFound()
            .json(json!({"error": {"code": "not_found", "message": "not here"}})),
    }
}
