//! W3C trace context across the hop, and spans sent over OTLP/HTTP to a collector: a small OTLP
//! receiver runs in the test, on 127.0.0.1, and decodes what the real executables send it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{
    Deployment, Launch, Options, Server, TestApp, closed_port_url, settings, start_binary,
};
use ticketd::config::Mode;

/// Bound on waiting for spans to arrive (they are sent at least every 0.5 s).
const ARRIVAL_TRIES: u32 = 150;
const ARRIVAL_PAUSE: Duration = Duration::from_millis(100);

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One span as the collector received it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    /// 1 internal, 2 server, 3 client (OTLP's `SpanKind`).
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP receiver on 127.0.0.1: takes `POST /v1/traces` (protobuf) and keeps the spans.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Collector {
    fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            let kept = Arc::clone(&kept);
            App::new()
                .app_data(web::PayloadConfig::new(16 << 20))
                .route(
                    "/v1/traces",
                    web::post().to(move |body: web::Bytes| {
                        let kept = Arc::clone(&kept);
                        async move {
                            match ExportTraceServiceRequest::decode(body.as_ref()) {
                                Ok(request) => {
                                    kept.lock().unwrap().extend(flatten(request));
                                    HttpResponse::Ok()
                                        .content_type("application/x-protobuf")
                                        .finish()
                                }
                                Err(_) => HttpResponse::BadRequest().finish(),
                            }
                        }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self { url, spans, handle }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits, a bounded time, until `done` holds for the spans received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..ARRIVAL_TRIES {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            actix_web::rt::time::sleep(ARRIVAL_PAUSE).await;
        }
        panic!(
            "{what}: not received; the collector has {:#?}",
            self.spans()
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Received> {
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .map(|r| text(&r.attributes))
            .and_then(|attributes| attributes.get("service.name").cloned())
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name.clone(),
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: text(&span.attributes),
                });
            }
        }
    }
    spans
}

/// A split deployment of real processes, both sending spans to `otlp_endpoint`.
struct Traced {
    vacancy: Server,
    ticket: Server,
    client: awc::Client,
    _data: tempfile::TempDir,
}

impl Traced {
    async fn start(otlp_endpoint: &str, queue_spans_max: usize) -> Self {
        let data = tempfile::tempdir().unwrap();
        let options = Options {
            store: ticketd::config::StoreKind::Memory,
            ..Options::default()
        };
        let queue = queue_spans_max.to_string();
        let env = [
            ("TICKETD_OTLP_ENDPOINT", otlp_endpoint),
            ("TICKETD_OTLP_QUEUE_SPANS_MAX", queue.as_str()),
        ];
        let vacancy_settings = settings(Mode::Vacancy, 0, &options, None, data.path());
        let vacancy = start_binary(Mode::Vacancy, &vacancy_settings, &env);
        let ticket_settings = settings(Mode::Ticket, 0, &options, Some(vacancy.url()), data.path());
        let ticket = start_binary(Mode::Ticket, &ticket_settings, &env);
        let traced = Self {
            vacancy,
            ticket,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
            _data: data,
        };
        for _ in 0..200 {
            if let Ok(answer) = traced
                .client
                .get(format!("{}/ready", traced.ticket.url()))
                .send()
                .await
                && answer.status() == StatusCode::OK
            {
                return traced;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the traced deployment did not become ready");
    }

    async fn purchase(&self, headers: &[(&str, &str)]) -> StatusCode {
        let mut request = self
            .client
            .post(format!("{}/api/v1/purchase", self.ticket.url()))
            .insert_header(("content-type", "application/json"));
        for &header in headers {
            request = request.insert_header(header);
        }
        let mut answer = request.send_json(&json!({"qty": 1})).await.unwrap();
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["success"], true, "{body}");
        answer.status()
    }

    async fn metrics(&self, server: &Server) -> String {
        let mut answer = self
            .client
            .get(format!("{}/metrics", server.url()))
            .send()
            .await
            .unwrap();
        String::from_utf8(answer.body().limit(1 << 22).await.unwrap().to_vec()).unwrap()
    }
}

/// The value of one sample in Prometheus text, e.g. `name{label="x"}`; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The access line a process logged for `request_id`, once it is there (a bounded wait).
async fn access_line(server: &Server, request_id: &str) -> Value {
    for _ in 0..ARRIVAL_TRIES {
        let found = server.logs().iter().find_map(|line| {
            let line: Value = serde_json::from_str(line).ok()?;
            (line["request_id"] == request_id && line["message"] == "request").then_some(line)
        });
        if let Some(line) = found {
            return line;
        }
        actix_web::rt::time::sleep(ARRIVAL_PAUSE).await;
    }
    panic!("no access line for {request_id}: {:#?}", server.logs());
}

/// One purchase through the split deployment arrives at the collector as one trace: the
/// caller's, with the ticket service's request span under the caller's span, the call to
/// vacancy under it, vacancy's request span under that call, and the writer's batch under
/// vacancy's request, with its size and commit time. Both logs carry the trace id.
#[actix_web::test]
async fn one_purchase_is_one_trace_across_both_services() {
    let collector = Collector::start();
    let deployment = Traced::start(&collector.url, 2048).await;
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let status = deployment
        .purchase(&[
            ("traceparent", traceparent.as_str()),
            ("tracestate", "gateway=7f3a"),
            ("x-request-id", "traced-purchase-1"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);

    let in_trace = |spans: &[Received], service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.trace_id == TRACE && s.service == service && s.name == name)
            .cloned()
    };
    let spans = collector
        .wait_for("the purchase's spans from both services", |spans| {
            in_trace(spans, "ticketd-ticket", "POST /api/v1/purchase").is_some()
                && in_trace(spans, "ticketd-ticket", "POST vacancy").is_some()
                && in_trace(
                    spans,
                    "ticketd-vacancy",
                    "POST /api/v1/events/{event}/reserve",
                )
                .is_some()
                && in_trace(spans, "ticketd-vacancy", "ledger batch").is_some()
        })
        .await;
    let ticket_request = in_trace(&spans, "ticketd-ticket", "POST /api/v1/purchase").unwrap();
    let hop = in_trace(&spans, "ticketd-ticket", "POST vacancy").unwrap();
    let vacancy_request = in_trace(
        &spans,
        "ticketd-vacancy",
        "POST /api/v1/events/{event}/reserve",
    )
    .unwrap();
    let batch = in_trace(&spans, "ticketd-vacancy", "ledger batch").unwrap();

    assert_eq!(ticket_request.kind, 2, "{ticket_request:?}");
    assert_eq!(ticket_request.parent_span_id, CALLER_SPAN);
    assert_eq!(
        ticket_request.attributes["http.response.status_code"],
        "200"
    );
    assert_eq!(hop.kind, 3, "{hop:?}");
    assert_eq!(hop.parent_span_id, ticket_request.span_id);
    assert_eq!(hop.attributes["ticketd.vacancy.outcome"], "ok");
    assert_eq!(vacancy_request.kind, 2);
    assert_eq!(
        vacancy_request.parent_span_id, hop.span_id,
        "the hop joins the trace"
    );
    assert_eq!(batch.parent_span_id, vacancy_request.span_id);
    let size: u64 = batch.attributes["ticketd.batch.size"].parse().unwrap();
    assert!(size >= 1, "{batch:?}");
    let commit_ms: f64 = batch.attributes["ticketd.batch.commit_ms"].parse().unwrap();
    assert!(commit_ms >= 0.0, "{batch:?}");

    // Log lines of both processes name the trace, and the request id still follows the hop.
    let ticket_line = access_line(&deployment.ticket, "traced-purchase-1").await;
    let vacancy_line = access_line(&deployment.vacancy, "traced-purchase-1").await;
    assert_eq!(ticket_line["trace_id"], TRACE, "{ticket_line}");
    assert_eq!(vacancy_line["trace_id"], TRACE, "{vacancy_line}");

    // Without a traceparent, the ticket service starts the trace and vacancy joins it.
    let status = deployment
        .purchase(&[("x-request-id", "traced-purchase-2")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let started = access_line(&deployment.ticket, "traced-purchase-2").await;
    let trace = started["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace.len(), 32, "{started}");
    assert_ne!(trace, TRACE);
    let spans = collector
        .wait_for(
            "the spans of the trace the ticket service started",
            |spans| {
                ["ticketd-ticket", "ticketd-vacancy"].iter().all(|service| {
                    spans
                        .iter()
                        .any(|s| s.trace_id == trace && s.service == *service)
                })
            },
        )
        .await;
    let root = spans
        .iter()
        .find(|s| s.trace_id == trace && s.name == "POST /api/v1/purchase")
        .unwrap();
    assert_eq!(
        root.parent_span_id, "",
        "the ticket service's span is the root"
    );
    let joined = access_line(&deployment.vacancy, "traced-purchase-2").await;
    assert_eq!(joined["trace_id"], trace.as_str());
}

/// A TCP port that takes connections and never answers: a collector that has hung.
struct Hung {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hung {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: at most a minute, whatever the test does.
            for _ in 0..6_000 {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A collector that takes connections and never answers: every purchase still succeeds, the
/// spans that do not fit in the (small) queue are dropped and counted, none is exported.
#[actix_web::test]
async fn a_hung_collector_costs_dropped_spans_and_nothing_else() {
    let hung = Hung::start();
    let deployment = Traced::start(&hung.url, 4).await;
    for i in 0..40 {
        let id = format!("hung-{i}");
        assert_eq!(
            deployment.purchase(&[("x-request-id", &id)]).await,
            StatusCode::OK
        );
    }
    for server in [&deployment.ticket, &deployment.vacancy] {
        let text = deployment.metrics(server).await;
        let dropped = sample(
            &text,
            "ticketd_otlp_spans_dropped_total{reason=\"queue_full\"}",
        );
        // Each purchase is two spans here (request and call, or request and batch): 80, with
        // room for 4.
        assert!(dropped >= 40.0, "dropped {dropped}:\n{text}");
        assert_eq!(sample(&text, "ticketd_otlp_spans_exported_total"), 0.0);
    }
}

/// A collector that is not there (connection refused): purchases succeed, failed exports are
/// counted.
#[actix_web::test]
async fn an_absent_collector_costs_failed_exports_and_nothing_else() {
    let deployment = Traced::start(&closed_port_url(), 2048).await;
    for i in 0..5 {
        let id = format!("absent-{i}");
        assert_eq!(
            deployment.purchase(&[("x-request-id", &id)]).await,
            StatusCode::OK
        );
    }
    // Spans are sent within 0.5 s, and the exporter gives up on a refused connection after a
    // few quick retries: a bounded wait.
    for _ in 0..ARRIVAL_TRIES {
        let text = deployment.metrics(&deployment.ticket).await;
        if sample(
            &text,
            "ticketd_otlp_spans_dropped_total{reason=\"export_failed\"}",
        ) >= 1.0
        {
            return;
        }
        actix_web::rt::time::sleep(ARRIVAL_PAUSE).await;
    }
    panic!(
        "no failed export counted:\n{}",
        deployment.metrics(&deployment.ticket).await
    );
}

/// Without a collector, the trace context still crosses the hop: both access lines carry the
/// caller's trace id; a traceparent that breaks the standard starts a new trace instead of
/// failing the request.
#[actix_web::test]
async fn the_trace_crosses_the_hop_without_a_collector() {
    let app = TestApp::spawn(Deployment::Split, Launch::Binary, Options::default()).await;
    let vacancy = app.vacancy().expect("split has vacancy");
    for (request_id, traceparent, expected) in [
        (
            "plain-1",
            format!("00-{TRACE}-{CALLER_SPAN}-01"),
            Some(TRACE),
        ),
        (
            "plain-2",
            format!("00-{TRACE}-{CALLER_SPAN}-00"),
            Some(TRACE),
        ),
        ("plain-3", "00-not-a-trace-01".to_owned(), None),
        ("plain-4", format!("ff-{TRACE}-{CALLER_SPAN}-01"), None),
    ] {
        let request = app
            .client()
            .post(format!("{}/api/v1/purchase", app.base))
            .insert_header(("x-request-id", request_id))
            .insert_header(("traceparent", traceparent.as_str()))
            .insert_header(("content-type", "application/json"));
        let body = serde_json::to_vec(&json!({"qty": 1})).unwrap();
        let answer = app.send(request, Some((None, body))).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{traceparent}");

        let ticket_line = access_line(app.ticket(), request_id).await;
        let vacancy_line = access_line(vacancy, request_id).await;
        let trace = ticket_line["trace_id"].as_str().unwrap();
        assert_eq!(vacancy_line["trace_id"], trace, "{traceparent}");
        match expected {
            Some(expected) => assert_eq!(trace, expected, "{traceparent}"),
            None => {
                assert_eq!(trace.len(), 32, "{ticket_line}");
                assert_ne!(trace, TRACE, "{traceparent}");
            }
        }
    }
}
