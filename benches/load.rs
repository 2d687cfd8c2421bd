//! Load benchmark: the real release binary in each deployment under wrk, side by side with the
//! ceiling of one HTTP hop on this machine.
//!
//!     apt-get install wrk            # once
//!     cargo bench --bench load
//!
//! For each target it starts the server(s) on 127.0.0.1, drives `POST /api/v1/purchase` and
//! `GET /api/v1/available` with wrk for a fixed time at fixed concurrency, and records req/s,
//! latency (mean, p50, p99, max), errors, and the peak RSS of the server processes. Targets run in
//! alternating rounds (A B C D A B C D ...) and the median of the rounds is reported, with every
//! throughput also given as a ratio to the ceiling measured in the same run.
//!
//! The ceiling is a minimal actix-web server (this same bench executable, started again in a
//! second role) that parses the same JSON and decrements a locked counter: what one HTTP hop
//! costs here, with no inventory behind it.
//!
//! wrk shares the machine's cores with the servers, so more server threads are not always
//! faster: every server (the ceiling and each ticketd deployment) runs with each of
//! [`WORKER_COUNTS`] HTTP workers, and the report gives each its best count, says which, and
//! measures against the best ceiling. The access log and metrics are measured as costs of their
//! own: the durable monolith with each turned on or off against itself at the same worker count.
//!
//! Writes `target/bench-report/load.md` and `target/bench-report/load.svg`.
//!
//! Environment: `BENCH_ROUNDS` (default 3), `BENCH_SECONDS` per measurement (default 5),
//! `BENCH_CONNECTIONS` (default 64), `BENCH_SWEEP=1` adds a concurrency sweep
//! (1, 16, 64, 256, 1024 connections) of the durable monolith and the split pair.
//! The webhooks section runs the durable monolith with and without a webhook subscribed to every
//! type, pointing at a receiver on 127.0.0.1 (this executable again, in a third role, answering
//! 204 to everything), in alternating rounds, and gives the ratio of the medians.
//! `BENCH_BASELINE_TICKETD=PATH` adds the memory and durable monoliths and the split pair of
//! another `ticketd` build (say, the last release) to the same rounds, each run right beside its
//! counterpart at the same worker count, the two swapping order every round, so a change is
//! measured against what it replaces on the same machine at the same moments. The report's
//! "Against the baseline build" section gives the ratio of the medians and the ratio round by
//! round.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::{QUIET, env_number, spawn_ticketd};

/// Log filter with the access log on: a JSON line per request, as an operator would run it.
const ACCESS_LOG: [&str; 4] = ["--log-level", "warn,ticketd=info", "--log-format", "json"];

/// The allocator ticketd runs with (see src/main.rs), so the ceiling differs from ticketd only
/// in what it does per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CEILING_ROLE: &str = "BENCH_CEILING_PORT";
const CEILING_WORKERS: &str = "BENCH_CEILING_WORKERS";
const STOCK: &str = "1000000000";

fn main() {
    if let Ok(port) = std::env::var(CEILING_ROLE) {
        let workers = env_number(CEILING_WORKERS, 1) as usize;
        ceiling::serve(port.parse().expect("a port"), workers);
        return;
    }
    if let Ok(port) = std::env::var(webhooks::RECEIVER_ROLE) {
        webhooks::receive(port.parse().expect("a port"));
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("load bench skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let rounds = env_number("BENCH_ROUNDS", 3);
    let seconds = env_number("BENCH_SECONDS", 5);
    let connections = env_number("BENCH_CONNECTIONS", 64);
    let work = tempfile::tempdir().expect("a temporary directory");
    let scripts = Scripts::write(work.path());

    // Each baseline target runs right beside the target it is compared with, at the same
    // worker count, and the two swap places every round: the machine's drift over a run (and on
    // a shared VM it drifts) then falls on both alike, and a round's ratio compares moments
    // seconds apart rather than minutes.
    // An even number of rounds gives each build the first place equally often. The access log
    // and metrics variants run right after the durable monolith they are compared with.
    let pairs = [
        (Target::MonolithMemory, Target::BaselineMemory),
        (Target::MonolithDurable, Target::BaselineDurable),
        (Target::Split, Target::BaselineSplit),
    ];
    let mut runs = Runs::new();
    for round in 0..rounds {
        let pair = |(this, other)| match (baseline().is_some(), round % 2) {
            (false, _) => vec![this],
            (true, 0) => vec![this, other],
            (true, _) => vec![other, this],
        };
        let slots = [
            vec![Target::Ceiling],
            pair(pairs[0]),
            pair(pairs[1]),
            vec![Target::MonolithAccessLog],
            vec![Target::MonolithNoMetrics],
            pair(pairs[2]),
        ];
        for slot in &slots {
            for &endpoint in slot[0].endpoints() {
                for workers in WORKER_COUNTS {
                    for &target in slot {
                        let run = measure(
                            target,
                            workers,
                            endpoint,
                            connections,
                            seconds,
                            &scripts,
                            work.path(),
                        );
                        eprintln!(
                            "round {round}: {:<27} {:<9} {workers}w {run}",
                            target.name(),
                            endpoint.name()
                        );
                        runs.entry((target, endpoint))
                            .or_default()
                            .entry(workers)
                            .or_default()
                            .push(run);
                    }
                }
            }
        }
    }

    let mut report = String::new();
    let machine = machine();
    let _ = writeln!(
        report,
        "# Load: {connections} connections, {rounds} rounds of {seconds} s, medians\n\n{machine}\n"
    );
    let (ceiling_workers, ceiling) = best(&runs[&(Target::Ceiling, Endpoint::Purchase)]);
    let ceiling = ceiling.rps;
    let _ = writeln!(
        report,
        "The ceiling is the faster of its worker counts ({ceiling_workers}); every target is \
         given at its own best worker count, with its req/s at each count beside it.\n"
    );
    let _ = writeln!(
        report,
        "| target | endpoint | workers | req/s | × ceiling | req/s by workers | mean ms | p50 ms | p99 ms | max ms | errors | peak RSS MB |"
    );
    let _ = writeln!(
        report,
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    let mut chart = Vec::new();
    for ((target, endpoint), by_workers) in &runs {
        let (workers, run) = best(by_workers);
        let _ = writeln!(
            report,
            "| {} | {} | {workers} | {:.0} | {:.2} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} |",
            target.name(),
            endpoint.name(),
            run.rps,
            run.rps / ceiling,
            by_workers_text(by_workers),
            run.mean_ms,
            run.p50_ms,
            run.p99_ms,
            run.max_ms,
            run.errors,
            run.peak_rss_mb
        );
        chart.push((
            format!("{} {}", target.name(), endpoint.name()),
            run.rps,
            run.p99_ms,
        ));
    }

    // What the access log and metrics cost: the durable monolith against itself at the same
    // worker count (its best), measured in the same alternating rounds.
    let durable = &runs[&(Target::MonolithDurable, Endpoint::Purchase)];
    let (durable_workers, durable_run) = best(durable);
    let _ = writeln!(
        report,
        "\n## What each costs (POST purchase, durable monolith, workers: {durable_workers})\n"
    );
    let _ = writeln!(
        report,
        "| variant | req/s | durable monolith req/s | × durable monolith |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|");
    for (target, what) in [
        (
            Target::MonolithAccessLog,
            "access log on (a line per request)",
        ),
        (Target::MonolithNoMetrics, "metrics off"),
    ] {
        let with = median_run(&runs[&(target, Endpoint::Purchase)][&durable_workers]);
        let _ = writeln!(
            report,
            "| {what} | {:.0} | {:.0} | {:.2} |",
            with.rps,
            durable_run.rps,
            with.rps / durable_run.rps
        );
    }

    if baseline().is_some() {
        against_baseline(&mut report, &runs, pairs);
    }

    // The sections below run the durable monolith at the worker count it did best with.
    let purchase = |target, connections| {
        measure(
            target,
            durable_workers,
            Endpoint::Purchase,
            connections,
            seconds,
            &scripts,
            work.path(),
        )
    };

    // One event everyone wants against 10,000 events bought at random, in alternating rounds.
    let _ = writeln!(
        report,
        "\n## One event or 10,000 (POST purchase, durable monolith)\n"
    );
    let _ = writeln!(report, "| events | req/s | p50 ms | p99 ms | errors |");
    let _ = writeln!(report, "|---:|---:|---:|---:|---:|");
    let mut events_runs: BTreeMap<Target, Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for target in [Target::MonolithDurable, Target::MonolithManyEvents] {
            let run = purchase(target, connections);
            eprintln!("events round {round}: {:<18} {run}", target.name());
            events_runs.entry(target).or_default().push(run);
        }
    }
    for (target, events) in [
        (Target::MonolithDurable, 1),
        (Target::MonolithManyEvents, EVENTS),
    ] {
        let run = median_run(&events_runs[&target]);
        let _ = writeln!(
            report,
            "| {events} | {:.0} | {:.3} | {:.3} | {} |",
            run.rps, run.p50_ms, run.p99_ms, run.errors
        );
    }

    // Orders of three lines on overlapping quotas against one-line purchases of a one-quota
    // event, in alternating rounds.
    let _ = writeln!(
        report,
        "\n## Orders of three lines on overlapping quotas (POST purchase, durable monolith)\n"
    );
    let _ = writeln!(
        report,
        "| order | req/s | tickets/s | p50 ms | p99 ms | errors |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|");
    let mut lines_runs: BTreeMap<Target, Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for target in [Target::MonolithDurable, Target::MonolithThreeLines] {
            let run = purchase(target, connections);
            eprintln!("lines round {round}: {:<18} {run}", target.name());
            lines_runs.entry(target).or_default().push(run);
        }
    }
    for (target, order, tickets) in [
        (Target::MonolithDurable, "1 line, 1 quota", 1.0),
        (Target::MonolithThreeLines, "3 lines, 3 quotas", 3.0),
    ] {
        let run = median_run(&lines_runs[&target]);
        let _ = writeln!(
            report,
            "| {order} | {:.0} | {:.0} | {:.3} | {:.3} | {} |",
            run.rps,
            run.rps * tickets,
            run.p50_ms,
            run.p99_ms,
            run.errors
        );
    }

    webhooks::section(&mut report, rounds, &purchase);

    if env_number("BENCH_SWEEP", 0) == 1 {
        let _ = writeln!(
            report,
            "\n## Concurrency sweep (POST /api/v1/purchase, one round each)\n"
        );
        let _ = writeln!(
            report,
            "| target | connections | req/s | p50 ms | p99 ms | errors |"
        );
        let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|");
        for target in [Target::MonolithDurable, Target::Split] {
            for connections in [1, 16, 64, 256, 1024] {
                let run = purchase(target, connections);
                eprintln!("sweep: {:<18} {connections:>5} {run}", target.name());
                let _ = writeln!(
                    report,
                    "| {} | {connections} | {:.0} | {:.3} | {:.3} | {} |",
                    target.name(),
                    run.rps,
                    run.p50_ms,
                    run.p99_ms,
                    run.errors
                );
            }
        }
    }

    println!("{report}");
    let out = report_dir();
    std::fs::create_dir_all(&out).expect("the report directory");
    std::fs::write(out.join("load.md"), &report).expect("the report is written");
    std::fs::write(out.join("load.svg"), svg_chart(&chart)).expect("the chart is written");
    eprintln!("wrote {}", out.display());
}

/// HTTP worker threads each server is measured with; the best counts.
const WORKER_COUNTS: [usize; 2] = [1, 2];

/// Every run of a target and endpoint, by worker count.
type Runs = BTreeMap<(Target, Endpoint), BTreeMap<usize, Vec<Run>>>;

/// The worker count whose median throughput is highest, and that median.
fn best(by_workers: &BTreeMap<usize, Vec<Run>>) -> (usize, Run) {
    by_workers
        .iter()
        .map(|(&workers, runs)| (workers, median_run(runs)))
        .max_by(|a, b| a.1.rps.total_cmp(&b.1.rps))
        .expect("at least one worker count was measured")
}

/// `1: 150,123 · 2: 130,456`: the median req/s at each worker count.
fn by_workers_text(by_workers: &BTreeMap<usize, Vec<Run>>) -> String {
    by_workers
        .iter()
        .map(|(workers, runs)| format!("{workers}: {:.0}", median_run(runs).rps))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// This build against the baseline, target by target: each at its own best worker count and the
/// ratio of the medians; and the ratio round by round at this build's best worker count (the
/// two runs of a round at one worker count were taken seconds apart), with its median.
fn against_baseline(report: &mut String, runs: &Runs, pairs: [(Target, Target); 3]) {
    let _ = writeln!(
        report,
        "\n## Against the baseline build (`BENCH_BASELINE_TICKETD`)\n\n\
         Each target of this build and of the baseline at its own best worker count; at each \
         worker count the two ran one right after the other, swapping order each round. The \
         ratio by round is at this build's best worker count.\n"
    );
    let _ = writeln!(
        report,
        "| target | endpoint | this build req/s (workers) | baseline req/s (workers) | ratio of medians | ratio by round | median of rounds |"
    );
    let _ = writeln!(report, "|---|---|---:|---:|---:|---|---:|");
    for (this, other) in pairs {
        for &endpoint in this.endpoints() {
            let (Some(ours), Some(theirs)) =
                (runs.get(&(this, endpoint)), runs.get(&(other, endpoint)))
            else {
                continue;
            };
            let (our_workers, our_run) = best(ours);
            let (their_workers, their_run) = best(theirs);
            let Some(their_rounds) = theirs.get(&our_workers) else {
                continue;
            };
            let mut by_round: Vec<f64> = ours[&our_workers]
                .iter()
                .zip(their_rounds)
                .map(|(a, b)| a.rps / b.rps)
                .collect();
            let text = by_round
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" · ");
            by_round.sort_by(f64::total_cmp);
            let _ = writeln!(
                report,
                "| {} | {} | {:.0} ({our_workers}) | {:.0} ({their_workers}) | **{:.3}** | {text} | {:.3} |",
                this.name(),
                endpoint.name(),
                our_run.rps,
                their_run.rps,
                our_run.rps / their_run.rps,
                by_round[by_round.len() / 2]
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Ceiling,
    MonolithMemory,
    MonolithDurable,
    /// The durable monolith with its access log on: what a log line per request costs.
    MonolithAccessLog,
    /// The durable monolith with metrics off: what metrics cost.
    MonolithNoMetrics,
    /// The durable monolith selling 10,000 events at random instead of one.
    MonolithManyEvents,
    /// The durable monolith selling orders of three lines, each of a category drawing on two of
    /// three quotas (`fest`).
    MonolithThreeLines,
    /// The durable monolith with a webhook of every type to a receiver on this machine.
    MonolithWebhook,
    Split,
    /// The same three of the `BENCH_BASELINE_TICKETD` build.
    BaselineMemory,
    BaselineDurable,
    BaselineSplit,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ceiling => "ceiling (1 hop)",
            Target::MonolithMemory => "monolith, memory",
            Target::MonolithDurable => "monolith, durable",
            Target::MonolithAccessLog => "… access log on",
            Target::MonolithNoMetrics => "… metrics off",
            Target::MonolithManyEvents => "… 10,000 events",
            Target::MonolithThreeLines => "… 3-line orders",
            Target::MonolithWebhook => "… webhook of every type",
            Target::Split => "split, durable",
            Target::BaselineMemory => "baseline: monolith, memory",
            Target::BaselineDurable => "baseline: monolith, durable",
            Target::BaselineSplit => "baseline: split, durable",
        }
    }

    /// What is measured of it: the cost variants and the ceiling only purchase.
    fn endpoints(self) -> &'static [Endpoint] {
        match self {
            Target::Ceiling | Target::MonolithAccessLog | Target::MonolithNoMetrics => {
                &[Endpoint::Purchase]
            }
            _ => &[Endpoint::Purchase, Endpoint::Available],
        }
    }

    /// The executable to run and the target it is measured as.
    fn binary(self) -> (String, Target) {
        let this = env!("CARGO_BIN_EXE_ticketd").to_owned();
        let other = || baseline().expect("BENCH_BASELINE_TICKETD is set");
        match self {
            Target::BaselineMemory => (other(), Target::MonolithMemory),
            Target::BaselineDurable => (other(), Target::MonolithDurable),
            Target::BaselineSplit => (other(), Target::Split),
            target => (this, target),
        }
    }
}

/// Another build of `ticketd` to measure side by side with this one.
fn baseline() -> Option<String> {
    std::env::var("BENCH_BASELINE_TICKETD")
        .ok()
        .filter(|path| !path.is_empty())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Purchase,
    Available,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Purchase => "purchase",
            Endpoint::Available => "available",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Run {
    rps: f64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    peak_rss_mb: f64,
    /// Requests wrk completed.
    requests: u64,
    /// With a webhook: how far delivery kept up.
    delivery: Option<webhooks::Delivery>,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}  rss {:.1} MB",
            self.rps, self.p50_ms, self.p99_ms, self.errors, self.peak_rss_mb
        )
    }
}

struct Scripts {
    purchase: PathBuf,
    /// Purchases spread at random over `EVENTS` events.
    purchase_many: PathBuf,
    /// Orders of three lines of `fest`.
    purchase_lines: PathBuf,
}

/// Events in the many-events target.
const EVENTS: usize = 10_000;

impl Scripts {
    fn write(dir: &Path) -> Self {
        let purchase = dir.join("purchase.lua");
        std::fs::write(
            &purchase,
            "wrk.method = \"POST\"\nwrk.body = '{\"qty\": 1}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        )
        .expect("the wrk script is written");
        let purchase_many = dir.join("purchase-many.lua");
        std::fs::write(
            &purchase_many,
            format!(
                "local headers = {{[\"Content-Type\"] = \"application/json\"}}\n\
                 request = function()\n\
                   local path = \"/api/v1/events/e\" .. math.random(1, {EVENTS}) .. \"/purchase\"\n\
                   return wrk.format(\"POST\", path, headers, '{{\"qty\": 1}}')\n\
                 end\n"
            ),
        )
        .expect("the wrk script is written");
        let purchase_lines = dir.join("purchase-lines.lua");
        std::fs::write(
            &purchase_lines,
            "local headers = {[\"Content-Type\"] = \"application/json\"}\n\
             local body = '{\"lines\": [{\"category\": \"standing\", \"qty\": 1}, \
             {\"category\": \"seated\", \"qty\": 1}, {\"category\": \"vip\", \"qty\": 1}]}'\n\
             request = function()\n\
               return wrk.format(\"POST\", \"/api/v1/events/fest/purchase\", headers, body)\n\
             end\n",
        )
        .expect("the wrk script is written");
        Self {
            purchase,
            purchase_many,
            purchase_lines,
        }
    }
}

/// Writes `count` events (`e1` ...) into a new store in `data`, before ticketd opens it.
fn create_events(data: &Path, count: usize) {
    use ticketd::domain::{Event, EventId};
    use ticketd::vacancy::ledger::{Batch, Ledger};
    let mut ledger = ticketd::vacancy::sqlite::SqliteLedger::open(data).expect("the store opens");
    let events = (1..=count)
        .map(|n| {
            let id = EventId::parse(&format!("e{n}")).expect("an event id");
            Event::single(id, format!("Event {n}").into(), 1_000_000_000)
        })
        .collect();
    ledger
        .commit(&Batch {
            events,
            ..Batch::default()
        })
        .expect("the events are stored");
}

/// Writes `fest` into a new store in `data`: quotas venue, seated and vip; categories standing
/// (venue), seated (venue, seated) and vip (venue, vip), so every order of one of each takes
/// five places from three quotas.
fn create_festival(data: &Path) {
    use ticketd::domain::{CategoryDraft, CategoryId, EventDraft, EventId, QuotaId, SalesWindow};
    use ticketd::vacancy::CAPACITY_MAX;
    use ticketd::vacancy::ledger::{Batch, Ledger};
    let quota = |id: &str| QuotaId::parse(id).expect("a quota id");
    let category = |id: &str, quotas: &[&str]| CategoryDraft {
        id: CategoryId::parse(id).expect("a category id"),
        name: id.into(),
        quotas: quotas.iter().map(|q| quota(q)).collect(),
        price: None,
        window: SalesWindow::default(),
    };
    let size = 1_000_000_000;
    let event = EventDraft {
        id: EventId::parse("fest").expect("an event id"),
        name: "Fest".into(),
        quotas: vec![
            (quota("venue"), size),
            (quota("seated"), size),
            (quota("vip"), size),
        ],
        categories: vec![
            category("standing", &["venue"]),
            category("seated", &["venue", "seated"]),
            category("vip", &["venue", "vip"]),
        ],
        max_per_customer: None,
        customer_required: false,
    }
    .check(CAPACITY_MAX)
    .expect("the festival holds together");
    let mut ledger = ticketd::vacancy::sqlite::SqliteLedger::open(data).expect("the store opens");
    ledger
        .commit(&Batch {
            events: vec![event],
            ..Batch::default()
        })
        .expect("the festival is stored");
}

/// Starts `target`, loads it with wrk, stops it.
fn measure(
    target: Target,
    workers: usize,
    endpoint: Endpoint,
    connections: u64,
    seconds: u64,
    scripts: &Scripts,
    work: &Path,
) -> Run {
    let data = tempfile::tempdir_in(work).expect("a data directory");
    let servers = start(target, workers, data.path());
    let url = match endpoint {
        Endpoint::Purchase => format!("http://{}/api/v1/purchase", servers.public),
        Endpoint::Available => format!("http://{}/api/v1/available", servers.public),
    };
    let mut wrk = Command::new("wrk");
    wrk.args(["-t", "1", "-c", &connections.to_string(), "-d"])
        .arg(format!("{seconds}s"))
        .args(["--timeout", "5s", "--latency"]);
    if endpoint == Endpoint::Purchase {
        let script = match target {
            Target::MonolithManyEvents => &scripts.purchase_many,
            Target::MonolithThreeLines => &scripts.purchase_lines,
            _ => &scripts.purchase,
        };
        wrk.arg("-s").arg(script);
    }
    let output = wrk.arg(&url).output().expect("wrk runs");
    let peak_rss_mb = servers.peak_rss_kb() as f64 / 1024.0;
    let mut run = parse_wrk(&String::from_utf8_lossy(&output.stdout));
    run.peak_rss_mb = peak_rss_mb;
    if let Some(receiver) = &servers.receiver {
        run.delivery = Some(webhooks::follow(receiver, run.requests - run.errors));
    }
    drop(servers);
    run
}

struct Servers {
    children: Vec<Child>,
    public: String,
    /// The webhook receiver's address, when one is subscribed.
    receiver: Option<String>,
}

impl Servers {
    /// Sum of the processes' peak resident set (VmHWM), in KiB.
    fn peak_rss_kb(&self) -> u64 {
        self.children
            .iter()
            .filter_map(|child| {
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()
            })
            .filter_map(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .sum()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `target` with `workers` HTTP worker threads per server process.
fn start(target: Target, workers: usize, data: &Path) -> Servers {
    let (ticketd, target) = target.binary();
    let ticketd = ticketd.as_str();
    let worker_count = workers;
    let workers = workers.to_string();
    match target {
        Target::Ceiling => {
            let port = free_port();
            let child = Command::new(std::env::current_exe().expect("this bench"))
                .env(CEILING_ROLE, port.to_string())
                .env(CEILING_WORKERS, &workers)
                .stdout(Stdio::null())
                .spawn()
                .expect("the ceiling server starts");
            let public = format!("127.0.0.1:{port}");
            wait_ready(&format!("http://{public}/ready"));
            Servers {
                children: vec![child],
                public,
                receiver: None,
            }
        }
        Target::MonolithWebhook => {
            let (receiver, address) = webhooks::start_receiver(data);
            let mut servers = start(Target::MonolithDurable, worker_count, data);
            servers.children.push(receiver);
            servers.receiver = Some(address);
            servers
        }
        Target::MonolithMemory
        | Target::MonolithDurable
        | Target::MonolithAccessLog
        | Target::MonolithNoMetrics
        | Target::MonolithManyEvents
        | Target::MonolithThreeLines => {
            let store = if target == Target::MonolithMemory {
                "memory"
            } else {
                "embedded"
            };
            if target == Target::MonolithManyEvents {
                create_events(data, EVENTS);
            }
            if target == Target::MonolithThreeLines {
                create_festival(data);
            }
            let metrics = if target == Target::MonolithNoMetrics {
                "false"
            } else {
                "true"
            };
            let log = if target == Target::MonolithAccessLog {
                ACCESS_LOG
            } else {
                QUIET
            };
            let (child, public) = spawn_ticketd(
                Command::new(ticketd)
                    .args(["monolith", "--host", "127.0.0.1", "--port", "0"])
                    .args(["--workers", &workers])
                    .args(["--store", store, "--initial-stock", STOCK, "--data-dir"])
                    .arg(data)
                    .args(["--metrics-enabled", metrics])
                    .args(log),
            );
            Servers {
                children: vec![child],
                public,
                receiver: None,
            }
        }
        Target::Split => {
            let (vacancy, vacancy_addr) = spawn_ticketd(
                Command::new(ticketd)
                    .args(["vacancy", "--host", "127.0.0.1", "--port", "0"])
                    .args(["--workers", &workers])
                    .args(["--initial-stock", STOCK, "--data-dir"])
                    .arg(data)
                    .args(QUIET),
            );
            let (ticket, public) = spawn_ticketd(
                Command::new(ticketd)
                    .args([
                        "ticket",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "0",
                        "--vacancy-url",
                    ])
                    .arg(format!("http://{vacancy_addr}"))
                    .args(["--workers", &workers])
                    .args(QUIET),
            );
            wait_ready(&format!("http://{public}/ready"));
            Servers {
                children: vec![vacancy, ticket],
                public,
                receiver: None,
            }
        }
        Target::BaselineMemory | Target::BaselineDurable | Target::BaselineSplit => {
            unreachable!("Target::binary names what a baseline target runs as")
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// Polls `url` until it answers 200; bounded.
fn wait_ready(url: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let ok = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .args(["probe", url, "--timeout-ms", "500"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} did not become ready");
}

/// Reads wrk's report (with `--latency`).
fn parse_wrk(report: &str) -> Run {
    let ms = |text: &str| -> f64 {
        let text = text.trim();
        let (number, unit) = text.split_at(
            text.find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(text.len()),
        );
        let value: f64 = number.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => value / 1000.0,
            "ms" => value,
            "s" => value * 1000.0,
            "m" => value * 60_000.0,
            _ => f64::NAN,
        }
    };
    let mut run = Run::default();
    for line in report.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Latency", mean, _stdev, max, ..] => {
                run.mean_ms = ms(mean);
                run.max_ms = ms(max);
            }
            ["50%", value] => run.p50_ms = ms(value),
            ["99%", value] => run.p99_ms = ms(value),
            ["Requests/sec:", value] => run.rps = value.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                run.errors += n.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|f| f.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    run
}

fn median_run(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mut median = sorted[sorted.len() / 2].clone();
    let pick = |f: fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    median.p50_ms = pick(|r| r.p50_ms);
    median.p99_ms = pick(|r| r.p99_ms);
    median.mean_ms = pick(|r| r.mean_ms);
    median.peak_rss_mb = pick(|r| r.peak_rss_mb);
    median
}

/// Two horizontal bar charts side by side: throughput and p99 per target.
fn svg_chart(rows: &[(String, f64, f64)]) -> String {
    let (label_w, bar_w, row_h, top) = (260.0, 300.0, 26.0, 40.0);
    let height = top + row_h * rows.len() as f64 + 20.0;
    let width = label_w + 2.0 * (bar_w + 100.0);
    let max_rps = rows.iter().map(|r| r.1).fold(1.0, f64::max);
    let max_p99 = rows
        .iter()
        .map(|r| r.2)
        .filter(|v| v.is_finite())
        .fold(0.001, f64::max);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{label_w}\" y=\"20\" font-weight=\"bold\">requests/s (higher is better)</text>\n\
         <text x=\"{}\" y=\"20\" font-weight=\"bold\">p99 latency, ms (lower is better)</text>\n",
        label_w + bar_w + 100.0
    );
    for (i, (label, rps, p99)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let rps_w = bar_w * rps / max_rps;
        let p99_w = if p99.is_finite() {
            bar_w * p99 / max_p99
        } else {
            0.0
        };
        let x2 = label_w + bar_w + 100.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{rps_w:.1}\" height=\"{}\" fill=\"#3b7dd8\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{rps:.0}</text>\n\
             <rect x=\"{x2}\" y=\"{}\" width=\"{p99_w:.1}\" height=\"{}\" fill=\"#d8703b\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{p99:.2}</text>\n",
            label_w - 8.0,
            y + 15.0,
            y + 3.0,
            row_h - 8.0,
            label_w + rps_w + 4.0,
            y + 15.0,
            y + 3.0,
            row_h - 8.0,
            x2 + p99_w + 4.0,
            y + 15.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Machine: {cores} cores, {cpu}; wrk (1 thread) on the same cores as the servers; \
         release build."
    )
}

fn report_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-report")
}

/// The ceiling: one HTTP hop, the same JSON parsed, a locked counter decremented.
mod ceiling {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use parking_lot::Mutex;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Purchase {
        qty: u64,
    }

    pub fn serve(port: u16, workers: usize) {
        let stock = web::Data::new(Mutex::new(u64::MAX));
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(stock.clone())
                    .route(
                        "/ready",
                        web::get().to(|| async { HttpResponse::Ok().finish() }),
                    )
                    .route(
                        "/api/v1/purchase",
                        web::post().to(
                            |stock: web::Data<Mutex<u64>>, body: web::Json<Purchase>| async move {
                                let mut left = stock.lock();
                                let success = *left >= body.qty;
                                if success {
                                    *left -= body.qty;
                                }
                                HttpResponse::Ok().json(
                                    serde_json::json!({"success": success, "remaining": *left}),
                                )
                            },
                        ),
                    )
            })
            .workers(workers)
            .bind(("127.0.0.1", port))
            .expect("the ceiling binds")
            .run()
            .await
            .expect("the ceiling runs");
        });
    }
}

/// What delivering webhooks costs a purchase: the durable monolith with and without a webhook of
/// every type (each purchase is an `order.confirmed`) to a receiver on 127.0.0.1.
mod webhooks {
    use std::fmt::Write as _;
    use std::io::{Read as _, Write as _};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use actix_web::{App, HttpResponse, HttpServer, web};
    use ticketd::domain::{WebhookTypes, WebhookUrl};
    use ticketd::vacancy::SystemClock;
    use ticketd::webhooks::Webhooks;
    use ticketd::webhooks::sqlite::SqliteWebhookStore;

    use super::{Run, Target, free_port, median_run};

    pub const RECEIVER_ROLE: &str = "BENCH_WEBHOOK_RECEIVER_PORT";

    /// Longest wait, after the load, for the last deliveries.
    const DRAIN_MAX: Duration = Duration::from_secs(120);

    /// How far delivery kept up with a run's purchases.
    #[derive(Clone, Copy, Debug)]
    pub struct Delivery {
        /// Share of the run's purchases delivered when the load ended.
        pub at_end: f64,
        /// Seconds after the load until all were delivered; `None` if not within [`DRAIN_MAX`].
        pub drained_after_s: Option<f64>,
    }

    /// The receiver: 204 to every POST, as fast as one worker can; `GET /count` says how many
    /// it took. It stands in for an integrator's server, which runs on a machine of its own: at
    /// the lowest priority, it takes the cores only when ticketd leaves them idle, rather than
    /// charging its own work to the purchases measured.
    pub fn receive(port: u16) {
        // SAFETY: setpriority takes plain integers. Threads started after it inherit it.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        let received = web::Data::new(AtomicU64::new(0));
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(received.clone())
                    .route(
                        "/count",
                        web::get().to(|received: web::Data<AtomicU64>| async move {
                            HttpResponse::Ok().body(received.load(Ordering::Relaxed).to_string())
                        }),
                    )
                    .default_service(web::to(|received: web::Data<AtomicU64>| async move {
                        received.fetch_add(1, Ordering::Relaxed);
                        HttpResponse::NoContent().finish()
                    }))
            })
            .workers(1)
            .bind(("127.0.0.1", port))
            .expect("the receiver binds")
            .run()
            .await
            .expect("the receiver runs");
        });
    }

    /// How many deliveries the receiver at `address` took; `None` if it does not answer.
    fn received(address: &str) -> Option<u64> {
        let mut stream = std::net::TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET /count HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.rsplit("\r\n\r\n").next()?.trim().parse().ok()
    }

    /// How far delivery of `purchases` (one `order.confirmed` each) kept up: what had arrived
    /// when the load ended, and how long the rest took (polled, for at most [`DRAIN_MAX`]).
    pub fn follow(address: &str, purchases: u64) -> Delivery {
        let ended = Instant::now();
        let share = |count: u64| count as f64 / purchases.max(1) as f64;
        let at_end = share(received(address).unwrap_or(0));
        let mut drained_after_s = None;
        while ended.elapsed() < DRAIN_MAX {
            if received(address).unwrap_or(0) >= purchases {
                drained_after_s = Some(ended.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Delivery {
            at_end,
            drained_after_s,
        }
    }

    /// Starts the receiver and subscribes to it, in the store in `data`, before ticketd opens it.
    /// Returns it and its address.
    pub fn start_receiver(data: &Path) -> (Child, String) {
        let port = free_port();
        let child = Command::new(std::env::current_exe().expect("this bench"))
            .env(RECEIVER_ROLE, port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("the receiver starts");
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hooks")).expect("a url");
        let store = Arc::new(SqliteWebhookStore::open(data).expect("the webhooks store"));
        let webhooks = Webhooks::new(store, Arc::new(SystemClock));
        actix_web::rt::System::new()
            .block_on(webhooks.create(url, WebhookTypes::all()))
            .expect("subscribed");
        (child, format!("127.0.0.1:{port}"))
    }

    pub fn section(report: &mut String, rounds: u64, purchase: &dyn Fn(Target, u64) -> Run) {
        let connections = super::env_number("BENCH_CONNECTIONS", 64);
        let _ = writeln!(
            report,
            "\n## Webhooks under purchase load (POST purchase, durable monolith)\n"
        );
        let _ = writeln!(report, "| webhooks | req/s | p50 ms | p99 ms | errors |");
        let _ = writeln!(report, "|---|---:|---:|---:|---:|");
        let mut runs: Vec<(Target, Vec<Run>)> = vec![
            (Target::MonolithDurable, Vec::new()),
            (Target::MonolithWebhook, Vec::new()),
        ];
        for round in 0..rounds {
            for (target, list) in &mut runs {
                let run = purchase(*target, connections);
                eprintln!("webhooks round {round}: {:<24} {run}", target.name());
                list.push(run);
            }
        }
        let medians: Vec<Run> = runs.iter().map(|(_, list)| median_run(list)).collect();
        for (label, run) in ["none", "one, every type"].iter().zip(&medians) {
            let _ = writeln!(
                report,
                "| {label} | {:.0} | {:.3} | {:.3} | {} |",
                run.rps, run.p50_ms, run.p99_ms, run.errors
            );
        }
        let _ = writeln!(
            report,
            "\nWith a webhook / without: {:.3} (issue 14 asks for at least 0.90).",
            medians[1].rps / medians[0].rps
        );
        // Delivery yields to sales: what it did not deliver during the load, it delivers after.
        let _ = writeln!(
            report,
            "\n| round | delivered when the load ended | all delivered after |"
        );
        let _ = writeln!(report, "|---:|---:|---:|");
        for (round, run) in runs[1].1.iter().enumerate() {
            let Some(delivery) = run.delivery else {
                continue;
            };
            let drained = delivery.drained_after_s.map_or_else(
                || format!("not within {} s", DRAIN_MAX.as_secs()),
                |s| format!("{s:.1} s"),
            );
            let _ = writeln!(
                report,
                "| {round} | {:.0}% | {drained} |",
                delivery.at_end * 100.0
            );
        }
    }
}
