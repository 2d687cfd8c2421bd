//! Every metric ticketd exports, described once (the `# HELP` lines of `/metrics`).
//!
//! Names follow Prometheus' conventions: base units in the name (`_seconds`), counters end in
//! `_total`, and nothing else does. The metrics whose labels are all known up front are exported
//! from start-up (at zero when nothing else in the process counted yet), so that rates and alerts over them have a series before the first
//! event (a counter that appears only at its first increment hides that increment from `rate`).
//!
//! | metric | kind | labels | parts |
//! |---|---|---|---|
//! | `http_requests_total` | counter | route, method, status | every mode |
//! | `http_request_duration_seconds` | histogram | route, method, status | every mode |
//! | `ticketd_reservations_total` | counter | outcome: accepted, refused | inventory |
//! | `ticketd_event_tickets` | gauge | event, state: available, held, sold | inventory |
//! | `ticketd_event_series_refused_total` | counter | | inventory |
//! | `ticketd_ledger_batch_size` | histogram | | inventory |
//! | `ticketd_ledger_commit_seconds` | histogram | | inventory |
//! | `ticketd_ledger_contention_retries_total` | counter | | inventory |
//! | `ticketd_ledger_failures_total` | counter | | inventory |
//! | `ticketd_ledger_failing` | gauge | | inventory |
//! | `ticketd_inventory_queue_requests` | gauge | | inventory |
//! | `ticketd_inventory_queue_requests_max` | gauge | | inventory |
//! | `ticketd_inventory_overloaded_total` | counter | | inventory |
//! | `ticketd_vacancy_calls_total` | counter | outcome: ok, error, unavailable, timeout | ticket |
//! | `ticketd_vacancy_call_duration_seconds` | histogram | | ticket |
//! | `ticketd_vacancy_retries_total` | counter | | ticket |
//! | `ticketd_otlp_spans_exported_total` | counter | | every mode |
//! | `ticketd_otlp_spans_dropped_total` | counter | reason: queue_full, export_failed | every mode |

use metrics::Unit;

use crate::config::Mode;

/// The outcomes of a call to vacancy, as `ticketd_vacancy_calls_total` labels them.
pub const VACANCY_CALL_OUTCOMES: [&str; 4] = ["ok", "error", "unavailable", "timeout"];

/// Describes the metrics `mode` exports and exports those with known labels at zero.
pub fn register_metrics(mode: Mode) {
    metrics::describe_counter!(
        "http_requests_total",
        Unit::Count,
        "HTTP requests answered, by route pattern, method and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by route pattern, method and status"
    );
    metrics::describe_counter!(
        "ticketd_otlp_spans_exported_total",
        Unit::Count,
        "Spans the OTLP collector took (zero while otlp_endpoint is not set)"
    );
    metrics::describe_counter!(
        "ticketd_otlp_spans_dropped_total",
        Unit::Count,
        "Spans dropped: queue_full (the collector is slow or away), export_failed (it refused \
         them or could not be reached)"
    );
    metrics::counter!("ticketd_otlp_spans_exported_total").increment(0);
    for reason in ["queue_full", "export_failed"] {
        metrics::counter!("ticketd_otlp_spans_dropped_total", "reason" => reason).increment(0);
    }
    match mode {
        Mode::Monolith | Mode::Vacancy => inventory(),
        Mode::Ticket => remote(),
    }
}

fn inventory() {
    metrics::describe_counter!(
        "ticketd_reservations_total",
        Unit::Count,
        "Reservations (purchases and holds) decided: accepted, or refused for want of stock"
    );
    metrics::describe_gauge!(
        "ticketd_event_tickets",
        Unit::Count,
        "Tickets of an event by state, as last committed by this process (at most \
         metrics_events_max events)"
    );
    metrics::describe_counter!(
        "ticketd_event_series_refused_total",
        Unit::Count,
        "Stock changes not exported per event because metrics_events_max events already are"
    );
    metrics::describe_histogram!(
        "ticketd_ledger_batch_size",
        Unit::Count,
        "Requests decided and committed together by the inventory writer"
    );
    metrics::describe_histogram!(
        "ticketd_ledger_commit_seconds",
        Unit::Seconds,
        "Time the store took to commit one batch"
    );
    metrics::describe_counter!(
        "ticketd_ledger_contention_retries_total",
        Unit::Count,
        "Batches decided again because another replica changed the same rows first"
    );
    metrics::describe_counter!(
        "ticketd_ledger_failures_total",
        Unit::Count,
        "Batches the store refused (database unreachable, disk full...); each answered 503"
    );
    metrics::describe_gauge!(
        "ticketd_ledger_failing",
        Unit::Count,
        "1 while the store refuses batches, 0 once one commits again"
    );
    metrics::describe_gauge!(
        "ticketd_inventory_queue_requests",
        Unit::Count,
        "Requests waiting for the inventory writer"
    );
    metrics::describe_gauge!(
        "ticketd_inventory_queue_requests_max",
        Unit::Count,
        "Most requests that may wait for the inventory writer (inventory_queue_size_max)"
    );
    metrics::describe_counter!(
        "ticketd_inventory_overloaded_total",
        Unit::Count,
        "Requests refused with 503 overloaded because the writer's queue was full"
    );
    for outcome in ["accepted", "refused"] {
        metrics::counter!("ticketd_reservations_total", "outcome" => outcome).increment(0);
    }
    for counter in [
        "ticketd_event_series_refused_total",
        "ticketd_ledger_contention_retries_total",
        "ticketd_ledger_failures_total",
        "ticketd_inventory_overloaded_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    metrics::gauge!("ticketd_ledger_failing").increment(0.0);
    metrics::gauge!("ticketd_inventory_queue_requests").increment(0.0);
    // Histograms too: an empty one is exported with zero counts.
    let _ = metrics::histogram!("ticketd_ledger_batch_size");
    let _ = metrics::histogram!("ticketd_ledger_commit_seconds");
}

fn remote() {
    metrics::describe_counter!(
        "ticketd_vacancy_calls_total",
        Unit::Count,
        "Calls to vacancy by outcome: ok, error (vacancy answered with an error), unavailable \
         (it could not be reached or used), timeout"
    );
    metrics::describe_histogram!(
        "ticketd_vacancy_call_duration_seconds",
        Unit::Seconds,
        "Time one call to vacancy took, retries included"
    );
    metrics::describe_counter!(
        "ticketd_vacancy_retries_total",
        Unit::Count,
        "Calls to vacancy tried again after a try got no answer"
    );
    for outcome in VACANCY_CALL_OUTCOMES {
        metrics::counter!("ticketd_vacancy_calls_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("ticketd_vacancy_retries_total").increment(0);
    let _ = metrics::histogram!("ticketd_vacancy_call_duration_seconds");
}
