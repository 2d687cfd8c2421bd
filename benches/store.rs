//! What durability costs: purchase throughput with the embedded (durable) store against the memory
//! store, under 64 concurrent clients, measured side by side in one run.
//!
//!     cargo bench --bench store
//!
//! Two levels, each run in alternating rounds (memory, embedded, memory, embedded, ...) and
//! reported as medians, since a 2-core machine is noisy:
//!
//! 1. inventory: 64 concurrent reservations against `Inventory` directly, no HTTP. This isolates
//!    the ledger: the memory ledger's figure is the ceiling of the decision loop itself.
//! 2. http: `wrk` drives `POST /api/v1/purchase` on the real release binary (`ticketd monolith`)
//!    with 64 connections. Skipped, with a note, when `wrk` is not installed
//!    (`apt-get install wrk`).
//!
//! Environment: `BENCH_ROUNDS` (default 5), `BENCH_SECONDS` per measurement (default 3).

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ticketd::domain::EventId;
use ticketd::vacancy::ledger::{Ledger, LocalLedger, MemoryLedger};
use ticketd::vacancy::sqlite::SqliteLedger;
use ticketd::vacancy::{Inventory, InventoryConfig};

#[path = "support/mod.rs"]
mod support;

use support::{QUIET, buy_until, confirmed_order, env_number, median, spawn_ticketd};

const CLIENTS: usize = 64;
const STOCK: u64 = 1_000_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    Embedded,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Embedded => "embedded",
        }
    }
}

fn main() {
    let rounds = env_number("BENCH_ROUNDS", 5);
    let seconds = env_number("BENCH_SECONDS", 3);
    let duration = Duration::from_secs(seconds);
    println!(
        "# store throughput: {CLIENTS} concurrent clients, {rounds} rounds of {seconds} s, medians\n"
    );

    let mut inventory = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, store) in [Store::Memory, Store::Embedded].into_iter().enumerate() {
            let rate = inventory_rate(store, duration);
            eprintln!(
                "inventory round {round}: {:>8} {rate:>10.0} reservations/s",
                store.name()
            );
            inventory[i].push(rate);
        }
    }

    let wrk_found = Command::new("wrk").arg("--version").output().is_ok();
    let mut http = [Vec::new(), Vec::new()];
    if wrk_found {
        for round in 0..rounds {
            for (i, store) in [Store::Memory, Store::Embedded].into_iter().enumerate() {
                let rate = http_rate(store, duration);
                eprintln!(
                    "http round {round}: {:>8} {rate:>10.0} purchases/s",
                    store.name()
                );
                http[i].push(rate);
            }
        }
    }

    println!("| level | memory (/s) | embedded, durable (/s) | memory / embedded |");
    println!("|---|---:|---:|---:|");
    let row = |level: &str, rates: &mut [Vec<f64>; 2]| {
        let memory = median(&mut rates[0]);
        let embedded = median(&mut rates[1]);
        println!(
            "| {level} | {memory:.0} | {embedded:.0} | {:.2} |",
            memory / embedded
        );
    };
    row("inventory (no HTTP)", &mut inventory);
    if wrk_found {
        row("HTTP purchase (wrk, 64 connections)", &mut http);
    } else {
        println!("\nHTTP level skipped: wrk is not installed (apt-get install wrk).");
    }

    let orders = env_number("BENCH_ORDERS", 1_000_000);
    let (fill_seconds, mut starts) = recovery(orders, rounds);
    println!(
        "\nStart-up with {orders} orders in the store (filled in {fill_seconds:.1} s): \
         median {:.0} ms from exec to ready, over {rounds} starts",
        median(&mut starts) * 1000.0
    );
}

/// Fills a store with `orders` orders, then times `ticketd monolith` from exec until `/ready`
/// answers, `rounds` times. Returns the fill time and each start time, in seconds.
fn recovery(orders: u64, rounds: u64) -> (f64, Vec<f64>) {
    use ticketd::domain::{Event, Stock};
    use ticketd::vacancy::ledger::Batch;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let filled = Instant::now();
    {
        let mut ledger = SqliteLedger::open(dir.path()).expect("the store opens");
        let mut stock = Stock::new(STOCK);
        let mut left = orders;
        while left > 0 {
            let size = left.min(20_000);
            stock.available -= size;
            stock.sold += size;
            let batch = Batch {
                events: vec![{
                    let mut event = Event::single(EventId::default_event(), "default".into(), 0);
                    *event.stock_mut() = stock;
                    event
                }],
                orders: (0..size)
                    .map(|_| confirmed_order(&EventId::default_event()))
                    .collect(),
                ..Batch::default()
            };
            ledger.commit(&batch).expect("the orders are stored");
            left -= size;
        }
    }
    let fill_seconds = filled.elapsed().as_secs_f64();
    let starts = (0..rounds)
        .map(|round| {
            let started = Instant::now();
            let mut server = Server::start(Store::Embedded, dir.path());
            let ready = Command::new(env!("CARGO_BIN_EXE_ticketd"))
                .args(["probe", &format!("http://{}/ready", server.addr)])
                .status()
                .is_ok_and(|status| status.success());
            let seconds = started.elapsed().as_secs_f64();
            server.stop();
            assert!(ready, "the restarted store did not become ready");
            eprintln!("recovery round {round}: {:.0} ms", seconds * 1000.0);
            seconds
        })
        .collect();
    (fill_seconds, starts)
}

/// Reservations per second through `Inventory`, with `CLIENTS` requests always in flight.
fn inventory_rate(store: Store, duration: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger: Box<dyn LocalLedger> = match store {
        Store::Memory => Box::new(MemoryLedger::new()),
        Store::Embedded => Box::new(SqliteLedger::open(dir.path()).expect("the store opens")),
    };
    let config = InventoryConfig {
        initial_stock: STOCK,
        ..InventoryConfig::default()
    };
    let inventory = Arc::new(Inventory::open(ledger, config).expect("the inventory opens"));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let clients = (0..CLIENTS).map(|_| {
            let inventory = Arc::clone(&inventory);
            let done = Arc::clone(&done);
            let stop = Arc::clone(&stop);
            async move { buy_until(&inventory, &done, &stop).await }
        });
        let timer = async {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        };
        tokio::join!(futures_util::future::join_all(clients), timer);
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Purchases per second over HTTP, measured by wrk against the real binary.
fn http_rate(store: Store, duration: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut server = Server::start(store, dir.path());
    let script = dir.path().join("purchase.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"qty\": 1}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .expect("the wrk script is written");
    let output = Command::new("wrk")
        .args(["-t", "1", "-c", &CLIENTS.to_string(), "-d"])
        .arg(format!("{}s", duration.as_secs()))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{}/api/v1/purchase", server.addr))
        .output()
        .expect("wrk runs");
    server.stop();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!report.contains("Non-2xx"), "purchases failed:\n{report}");
    report
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's report:\n{report}"))
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(store: Store, data_dir: &std::path::Path) -> Self {
        let (child, addr) = spawn_ticketd(
            Command::new(env!("CARGO_BIN_EXE_ticketd"))
                .args(["monolith", "--host", "127.0.0.1", "--port", "0"])
                .args(["--store", store.name(), "--max-per-order", "10"])
                .args(["--initial-stock", &STOCK.to_string(), "--data-dir"])
                .arg(data_dir)
                .args(QUIET),
        );
        Self { child, addr }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
