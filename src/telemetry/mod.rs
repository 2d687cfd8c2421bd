//! Logs, traces and metrics: the logging set-up, the request id and W3C trace context that follow
//! one request across services, span export over OTLP (off unless `otlp_endpoint` is set), and
//! the Prometheus registry with every metric ticketd exports.

mod catalogue;
pub mod otlp;
pub mod trace;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use parking_lot::Mutex;
use tracing::Level;
use tracing::Metadata;
use tracing::field::Empty;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{FilterExt, FilterFn, filter_fn};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Mode};
pub use catalogue::{VACANCY_CALL_OUTCOMES, register_metrics};
pub use otlp::OtlpConfig;
pub use trace::TraceContext;

/// What the task serving a request knows of it.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The client's `x-request-id` when it sent a sane one, otherwise a new one.
    pub request_id: String,
    /// The request's place in its trace.
    pub trace: TraceContext,
}

tokio::task_local! {
    /// The request the current task is serving; set by the HTTP layer.
    static REQUEST: RequestContext;
}

/// Runs `future` as the serving of `request`.
pub async fn with_request<F: Future>(request: RequestContext, future: F) -> F::Output {
    REQUEST.scope(request, future).await
}

/// The current request's id, for passing on to the next service.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|request| request.request_id.clone()).ok()
}

/// The current request's trace id (32 hex digits), for log lines.
pub fn current_trace_id() -> Option<String> {
    REQUEST
        .try_with(|request| request.trace.trace_id().to_string())
        .ok()
}

/// Whether spans are exported (set once, by [`init`] with an endpoint).
static EXPORTING: AtomicBool = AtomicBool::new(false);

fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The process's telemetry once installed; [`Telemetry::shutdown`] sends the spans still queued.
#[must_use = "shut it down at exit, or queued spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is queued and stops the exporter; waits at most a few seconds for a collector
    /// that does not answer. Call it outside any async runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(%error, "spans still queued at exit may be lost");
        }
    }
}

/// Installs the global subscriber: one line per event on stdout, human-readable or JSON, and,
/// with `otlp`, span export. `level` takes `tracing` filter directives, e.g. `info` or
/// `info,ticketd=debug`; it filters log lines only: exported spans are ticketd's own, at info.
pub fn init(
    format: LogFormat,
    level: &str,
    otlp: Option<&OtlpConfig>,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("log_level '{level}' is not a valid filter: {e}"))?;
    let logs = log_lines(
        format,
        filter,
        std::io::stdout,
        std::io::stdout().is_terminal(),
    );
    let provider = otlp.map(otlp::provider).transpose()?;
    // Only ticketd's own spans (request, vacancy call, ledger batch) and its warnings go to the
    // collector; the libraries' debug spans would cost more than they tell.
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ticketd"))
            .with_filter(exported())
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    if let Some(otlp) = otlp {
        tracing::info!(endpoint = %otlp.traces_url(), service = %otlp.service_name, "exporting spans");
    }
    Ok(Telemetry { provider })
}

/// What span export takes: ticketd's own spans at info and its warnings.
///
/// Every filter states the most verbose level it can let through. A filter that does not leaves
/// the subscriber without a level hint, and then every `trace!` the libraries write (actix-http
/// writes about twenty per request) is dispatched to the subscriber to be refused one by one,
/// instead of being skipped where it is written.
fn exported() -> FilterFn<impl Fn(&Metadata<'_>) -> bool> {
    filter_fn(|meta: &Metadata<'_>| {
        meta.target().starts_with("ticketd")
            && if meta.is_span() {
                *meta.level() <= Level::INFO
            } else {
                *meta.level() <= Level::WARN
            }
    })
    .with_max_level_hint(Level::INFO)
}

/// The layer that writes log lines to `writer`, one per event that `filter` lets through, as
/// text or JSON. Spans are not its business: they are exported, or not made at all (see
/// [`request_span`]), and a line names its request the same way in both cases ([`InRequest`]).
fn log_lines<S, W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // `filter` alone says which levels can pass (see [`exported`]).
    let filter =
        filter.and(filter_fn(|meta| !meta.is_span()).with_max_level_hint(LevelFilter::TRACE));
    let builder = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Pretty => builder
            .event_format(InRequest {
                inner: tracing_subscriber::fmt::format(),
                json: false,
            })
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(InRequest {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
                json: true,
            })
            .with_filter(filter)
            .boxed(),
    }
}

/// Log lines written while a request is served carry its `request_id` and `trace_id`, taken from
/// the request's context: under `span` in JSON, after the line's own fields in text. A span per
/// request would carry them too, but making one and entering it on every poll cost a purchase
/// about 8% of its instructions, so one is made only when spans are exported. The line is
/// written whole before the ids are added, so on a terminal it is not coloured.
struct InRequest<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for InRequest<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let request = REQUEST
            .try_with(|request| (request.request_id.clone(), request.trace.trace_id()))
            .ok();
        let Some((request_id, trace_id)) = request else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match (self.json, line.strip_suffix('}')) {
            (true, Some(object)) => {
                // A request id is visible ASCII, but may hold quotes or backslashes.
                let request_id = serde_json::to_string(&request_id).map_err(|_| std::fmt::Error)?;
                writeln!(
                    writer,
                    "{object},\"span\":{{\"name\":\"request\",\"request_id\":{request_id},\"trace_id\":\"{trace_id}\"}}}}"
                )
            }
            // Not an object after all: written as it is rather than made invalid JSON.
            (true, None) => writeln!(writer, "{line}"),
            // Quoted, as the line's own text fields are: an id may hold `"` or `=`.
            (false, _) => writeln!(
                writer,
                "{line} request_id={request_id:?} trace_id={trace_id}"
            ),
        }
    }
}

/// The span that stands for one request in this process, and its place in the trace: a child of
/// the caller's span (`parent`, from its `traceparent`) or the root of a new trace. When spans
/// are not exported, no span is made ([`Span::none`](tracing::Span::none)); log lines get the
/// request's ids from its context either way (see [`InRequest`]).
pub fn request_span(
    method: &str,
    route: &str,
    request_id: &str,
    parent: Option<SpanContext>,
) -> (tracing::Span, TraceContext) {
    if !exporting() {
        let trace = TraceContext::continue_or_start(parent.as_ref());
        return (tracing::Span::none(), trace);
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        request_id,
        trace_id = Empty,
    );
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
    if let Some(parent) = parent {
        // Only fails when the span is disabled or already started; neither is the case here.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    let trace = TraceContext::from_span(span.context().span().span_context().clone())
        .unwrap_or_else(|| TraceContext::continue_or_start(None));
    span.record("trace_id", tracing::field::display(trace.trace_id()));
    (span, trace)
}

/// Notes a request's answer on its span; a 5xx marks it failed.
pub fn finish_request_span(span: &tracing::Span, status: u16) {
    if exporting() {
        span.set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The span of one call to vacancy (all its tries), a child of the request's; none when spans
/// are not exported.
pub fn vacancy_call_span(method: &str, path: &str) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "vacancy call",
        otel.name = %format_args!("{method} vacancy"),
        otel.kind = "client",
        otel.status_code = Empty,
    );
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("url.path", path.to_owned());
    span
}

/// Notes how a call to vacancy ended (`ok`, `error`, `unavailable`, `timeout`) on its span.
pub fn finish_vacancy_call_span(span: &tracing::Span, outcome: &'static str) {
    if exporting() {
        span.set_attribute("ticketd.vacancy.outcome", outcome);
        if matches!(outcome, "unavailable" | "timeout") {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The trace context to send with a call made now: the current span's when spans are exported
/// (the vacancy call's, inside [`vacancy_call_span`]), otherwise the request's.
pub fn outgoing_trace() -> Option<TraceContext> {
    if exporting()
        && let Some(trace) = TraceContext::from_span(
            tracing::Span::current()
                .context()
                .span()
                .span_context()
                .clone(),
        )
    {
        return Some(trace);
    }
    REQUEST.try_with(|request| request.trace.clone()).ok()
}

/// Where a request to the inventory writer came from: the span that asked, when spans are
/// exported, so the batch that decides it can be found from the request's trace.
#[derive(Clone, Debug, Default)]
pub struct Origin(Option<SpanContext>);

impl Origin {
    pub fn current() -> Self {
        if !exporting() {
            return Self(None);
        }
        let span = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone();
        Self(span.is_valid().then_some(span))
    }
}

/// Most links from one batch span to the requests it decided; the rest are counted on it.
const BATCH_LINKS_MAX: usize = 32;

/// The span of one batch of the inventory writer: a child of the first request in it that has a
/// trace, linked to the others (up to [`BATCH_LINKS_MAX`]). None when spans are not exported.
pub fn batch_span<'a>(size: usize, origins: impl Iterator<Item = &'a Origin>) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("ledger batch", otel.status_code = Empty);
    span.set_attribute("ticketd.batch.size", size as i64);
    let mut traced = origins.filter_map(|origin| origin.0.as_ref());
    if let Some(first) = traced.next() {
        let parent = opentelemetry::Context::new().with_remote_span_context(first.clone());
        let _ = span.set_parent(parent);
    }
    for origin in traced.by_ref().take(BATCH_LINKS_MAX) {
        span.add_link(origin.clone());
    }
    let unlinked = traced.count();
    if unlinked > 0 {
        span.set_attribute("ticketd.batch.unlinked", unlinked as i64);
    }
    span
}

/// Notes the time the batch's commit took on the current batch span.
pub fn record_commit(elapsed: Duration) {
    if exporting() {
        tracing::Span::current()
            .set_attribute("ticketd.batch.commit_ms", elapsed.as_secs_f64() * 1000.0);
    }
}

/// Marks the current batch span failed, with why.
pub fn record_batch_failure(error: &dyn std::fmt::Display) {
    if exporting() {
        let span = tracing::Span::current();
        span.record("otel.status_code", "ERROR");
        span.set_attribute("error.message", error.to_string());
    }
}

/// Latency buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];
const BATCH_SIZE_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// The process's Prometheus registry, installed as the `metrics` recorder on first use. One per
/// process: every app in it (tests start several) reports into the same registry.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &BATCH_SIZE_BUCKETS)
            })
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        // Histograms buffer samples until upkeep folds them in; do it even if nobody scrapes.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// The events whose stock is exported per event (`ticketd_event_tickets{event}`), at most
/// `metrics_events_max` of them: the first that change in this process. One set per process,
/// like the registry it bounds.
struct EventSeries {
    max: AtomicUsize,
    events: Mutex<HashSet<String>>,
}

fn event_series() -> &'static EventSeries {
    static SERIES: OnceLock<EventSeries> = OnceLock::new();
    SERIES.get_or_init(|| EventSeries {
        max: AtomicUsize::new(DEFAULT_EVENTS_MAX),
        events: Mutex::new(HashSet::new()),
    })
}

/// The built-in `metrics_events_max`.
pub const DEFAULT_EVENTS_MAX: usize = 1000;

/// Sets how many events get series of their own (see [`record_event_tickets`]).
pub fn set_metrics_events_max(max: usize) {
    event_series().max.store(max, Ordering::Relaxed);
}

/// Exports an event's ticket counts, `ticketd_event_tickets{event, state}`, if the event has
/// series, or can be given them without passing `metrics_events_max`. Otherwise it counts
/// `ticketd_event_series_refused_total`: the per-event series stay bounded however many events
/// there are (100,000 events would otherwise be 300,000 series).
pub fn record_event_tickets(event: &str, available: u64, held: u64, sold: u64) {
    let series = event_series();
    let admitted = {
        let mut events = series.events.lock();
        events.contains(event)
            || (events.len() < series.max.load(Ordering::Relaxed)
                && events.insert(event.to_owned()))
    };
    if !admitted {
        metrics::counter!("ticketd_event_series_refused_total").increment(1);
        return;
    }
    for (state, count) in [("available", available), ("held", held), ("sold", sold)] {
        metrics::gauge!("ticketd_event_tickets", "event" => event.to_owned(), "state" => state)
            .set(count as f64);
    }
}

/// `service.name` of the spans of a mode, e.g. `ticketd-vacancy`.
pub fn service_name(mode: Mode) -> String {
    format!("ticketd-{mode}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Log lines as the subscriber wrote them.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs a warning inside a request and one outside any, in `format`: the two lines written,
    /// and the request's trace.
    fn warnings(format: LogFormat) -> (String, String, TraceContext) {
        let lines = Lines::default();
        let writer = {
            let lines = lines.clone();
            move || lines.clone()
        };
        let filter = EnvFilter::new("trace");
        let subscriber =
            tracing_subscriber::registry().with(log_lines(format, filter, writer, false));
        let trace = TraceContext::continue_or_start(None);
        let request = RequestContext {
            request_id: "req-\"7\"".into(),
            trace: trace.clone(),
        };
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(with_request(request, async {
                // Inside any span (here one as the split's vacancy calls make), the line names
                // the request, once.
                let call = tracing::info_span!("vacancy call", otel.kind = "client");
                let _entered = call.enter();
                tracing::warn!(replica = "a", "inside");
            }));
            tracing::warn!("outside");
        });
        let text = String::from_utf8(lines.0.lock().clone()).unwrap();
        let mut lines = text.lines().map(str::to_owned);
        let inside = lines.next().expect("a line inside the request");
        let outside = lines.next().expect("a line outside it");
        (inside, outside, trace)
    }

    /// The subscriber tells `tracing` the most verbose level any of its filters lets through, so
    /// a library's `trace!` is skipped where it is written rather than offered to the subscriber
    /// and refused (found in a profile: ~20 such calls per request, 8% of a purchase).
    #[test]
    fn the_subscriber_admits_no_level_its_filters_refuse() {
        use tracing::Subscriber as _;
        use tracing_subscriber::Registry;
        let logs = |level: &str| {
            log_lines::<Registry, _>(LogFormat::Json, EnvFilter::new(level), std::io::sink, false)
        };
        // As the bench and most operators run it: warnings, and ticketd's own info lines.
        let quiet = tracing_subscriber::registry().with(logs("warn,ticketd=info"));
        assert_eq!(quiet.max_level_hint(), Some(LevelFilter::INFO));
        let warn = tracing_subscriber::registry().with(logs("warn"));
        assert_eq!(warn.max_level_hint(), Some(LevelFilter::WARN));
        // Exporting spans adds ticketd's info spans, nothing more verbose.
        let exporting = tracing_subscriber::registry().with(logs("warn")).with(Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(exported()),
        ));
        assert_eq!(exporting.max_level_hint(), Some(LevelFilter::INFO));
        let debugging = tracing_subscriber::registry().with(logs("debug"));
        assert_eq!(debugging.max_level_hint(), Some(LevelFilter::DEBUG));
    }

    #[test]
    fn a_json_line_written_in_a_request_carries_its_ids_under_span() {
        let (inside, outside, trace) = warnings(LogFormat::Json);
        assert_eq!(inside.matches("\"span\"").count(), 1, "{inside}");
        let inside: serde_json::Value = serde_json::from_str(&inside).unwrap();
        assert_eq!(inside["message"], "inside", "{inside}");
        assert_eq!(inside["replica"], "a", "{inside}");
        assert_eq!(inside["span"]["request_id"], "req-\"7\"", "{inside}");
        assert_eq!(
            inside["span"]["trace_id"],
            trace.trace_id().to_string(),
            "{inside}"
        );
        let outside: serde_json::Value = serde_json::from_str(&outside).unwrap();
        assert_eq!(outside["message"], "outside", "{outside}");
        assert!(outside.get("span").is_none(), "{outside}");
    }

    #[test]
    fn a_text_line_written_in_a_request_ends_with_its_ids() {
        let (inside, outside, trace) = warnings(LogFormat::Pretty);
        let ids = format!(
            " request_id=\"req-\\\"7\\\"\" trace_id={}",
            trace.trace_id()
        );
        assert!(inside.ends_with(&ids), "{inside}");
        assert!(inside.contains("inside replica=\"a\""), "{inside}");
        assert!(!inside.contains("vacancy call"), "{inside}");
        assert!(!outside.contains("request_id"), "{outside}");
    }
}
