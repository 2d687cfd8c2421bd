//! Span export over OTLP/HTTP (protobuf), when `otlp_endpoint` is set.
//!
//! Spans go from the request's thread into a bounded queue; the SDK's batch processor sends them
//! from a thread of its own, so a slow or absent collector never holds up a request. What does
//! not fit in the queue is dropped, and counted, rather than waited for:
//!
//! - `ticketd_otlp_spans_exported_total`: spans the collector took;
//! - `ticketd_otlp_spans_dropped_total{reason}`: `queue_full` (the collector is slower than
//!   ticketd, or away), `export_failed` (it refused them or could not be reached).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter,
    SpanProcessor,
};

/// Longest wait for the collector to take one batch (retries included).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long spans wait in the queue before they are sent, at most.
const EXPORT_DELAY: Duration = Duration::from_millis(500);
/// Most spans sent in one request to the collector.
const EXPORT_BATCH_SPANS_MAX: usize = 512;

/// Where and how spans are exported.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// Base URL of an OTLP/HTTP receiver, e.g. `http://collector:4318`; spans go to
    /// `/v1/traces` under it.
    pub endpoint: String,
    /// `service.name` of the spans, e.g. `ticketd-vacancy`.
    pub service_name: String,
    /// Most spans waiting to be sent; more are dropped (and counted).
    pub queue_spans_max: usize,
}

impl OtlpConfig {
    /// Where spans are posted: the OTLP/HTTP traces path under the base URL.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
    }
}

/// The tracer provider that sends this process's spans; shut it down to send what is queued.
pub fn provider(config: &OtlpConfig) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_url())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up span export to {}: {e}", config.endpoint))?;
    let queued = Arc::new(AtomicUsize::new(0));
    let batches = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        queued: Arc::clone(&queued),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(config.queue_spans_max)
            .with_max_export_batch_size(EXPORT_BATCH_SPANS_MAX.min(config.queue_spans_max))
            .with_scheduled_delay(EXPORT_DELAY)
            .build(),
    )
    .build();
    let processor = Bounded {
        inner: batches,
        queued,
        queue_spans_max: config.queue_spans_max,
    };
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

fn dropped(reason: &'static str, spans: usize) {
    metrics::counter!("ticketd_otlp_spans_dropped_total", "reason" => reason)
        .increment(spans as u64);
}

/// Keeps count of the spans handed to the batch processor and not yet settled (sent or failed),
/// and drops a span, counting it, once `queue_spans_max` are. The count includes the batch being
/// sent, so the processor's own queue (of the same size) is never full: every span it would
/// drop silently is dropped here, where it is counted.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    queued: Arc<AtomicUsize>,
    queue_spans_max: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < self.queue_spans_max).then_some(queued + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            dropped("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, counting what becomes of each batch and settling it in [`Bounded`]'s count.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
}

/// Takes a batch's spans off the queued count however its export ends (even if abandoned).
struct Settle<'a> {
    queued: &'a AtomicUsize,
    spans: usize,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.spans, Ordering::AcqRel);
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let _settle = Settle {
            queued: &self.queued,
            spans: batch.len(),
        };
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                metrics::counter!("ticketd_otlp_spans_exported_total").increment(spans as u64)
            }
            Err(error) => {
                dropped("export_failed", spans);
                tracing::debug!(%error, spans, "span export failed");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use opentelemetry::trace::{Tracer, TracerProvider};

    /// An exporter that blocks until told to go on, so the queue can be filled.
    #[derive(Debug, Default)]
    struct Gate {
        exported: Arc<Mutex<usize>>,
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl SpanExporter for Gate {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let (lock, ready) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                let (guard, timeout) = ready.wait_timeout(open, Duration::from_secs(10)).unwrap();
                open = guard;
                assert!(!timeout.timed_out(), "the gate was never opened");
            }
            *self.exported.lock().unwrap() += batch.len();
            Ok(())
        }
    }

    /// More spans than the queue holds while the collector does not answer: the surplus is
    /// dropped at once (the caller never waits), and every span is either sent or dropped.
    #[test]
    fn a_stalled_collector_costs_dropped_spans_not_waiting() {
        let gate = Gate::default();
        let exported = Arc::clone(&gate.exported);
        let open = Arc::clone(&gate.open);
        let queued = Arc::new(AtomicUsize::new(0));
        let queue_spans_max = 8;
        let batches = BatchSpanProcessor::builder(Counted {
            inner: gate,
            queued: Arc::clone(&queued),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(queue_spans_max)
                .with_max_export_batch_size(4)
                .with_scheduled_delay(Duration::from_millis(10))
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batches,
                queued: Arc::clone(&queued),
                queue_spans_max,
            })
            .build();
        let tracer = provider.tracer("test");
        let sent = 100;
        for _ in 0..sent {
            tracer.in_span("work", |_| {});
        }
        assert!(queued.load(Ordering::Acquire) <= queue_spans_max);
        {
            let (lock, ready) = &*open;
            *lock.lock().unwrap() = true;
            ready.notify_all();
        }
        provider.force_flush().unwrap();
        let exported = *exported.lock().unwrap();
        // The first `queue_spans_max` were taken and sent; every later one was dropped.
        assert_eq!(exported, queue_spans_max);
        assert_eq!(queued.load(Ordering::Acquire), 0);
        provider.shutdown().unwrap();
    }

    #[test]
    fn spans_go_to_the_traces_path_under_the_endpoint() {
        for endpoint in ["http://collector:4318", "http://collector:4318/"] {
            let config = OtlpConfig {
                endpoint: endpoint.into(),
                service_name: "ticketd-test".into(),
                queue_spans_max: 1,
            };
            assert_eq!(config.traces_url(), "http://collector:4318/v1/traces");
        }
    }
}
