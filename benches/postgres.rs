//! One hot event on PostgreSQL: purchases per second when everyone wants the same row.
//!
//!     TICKETD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench postgres
//!
//! Three contenders, measured in alternating rounds in one run and reported as medians, each with
//! 64 clients always in flight, each in a fresh schema:
//!
//! 1. naive: what most ticket shops do. Every purchase is its own transaction on its own pooled
//!    connection: `UPDATE events SET available = available - 1 ... WHERE available >= 1`, insert
//!    the order, commit. The hot row's lock is held through every commit, one buyer at a time.
//! 2. ticketd, one vacancy replica: `Inventory` on the postgres ledger (no HTTP), which gathers
//!    waiting reservations and decides and commits them in one transaction per batch.
//! 3. ticketd, two vacancy replicas on the same database, 32 clients each.
//!
//! Without a reachable database the bench says so and does nothing.
//! Environment: `BENCH_ROUNDS` (default 3), `BENCH_SECONDS` per measurement (default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ticketd::config::Secret;
use ticketd::domain::{EventId, ReservationId};
use ticketd::vacancy::postgres::{PostgresConfig, PostgresLedger};
use ticketd::vacancy::{Inventory, InventoryConfig};

#[path = "support/mod.rs"]
mod support;

use support::{buy_until, env_number, median};

const CLIENTS: usize = 64;
const STOCK: u64 = 1_000_000_000;

fn main() {
    let base = std::env::var("TICKETD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(error) = runtime.block_on(sql(&base, "SELECT 1")) {
        println!("PostgreSQL is not reachable ({error}); set TICKETD_TEST_DATABASE_URL. Skipped.");
        return;
    }
    let rounds = env_number("BENCH_ROUNDS", 3);
    let seconds = env_number("BENCH_SECONDS", 3);
    let duration = Duration::from_secs(seconds);
    println!(
        "# one hot event on PostgreSQL: {CLIENTS} concurrent clients, {rounds} rounds of \
         {seconds} s, medians\n"
    );

    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        let naive = runtime.block_on(naive_rate(&base, duration));
        eprintln!("round {round}: naive          {naive:>8.0} purchases/s");
        rates[0].push(naive);
        for replicas in [1, 2] {
            let rate = ticketd_rate(&runtime, &base, replicas, duration);
            eprintln!("round {round}: ticketd x{replicas}     {rate:>8.0} purchases/s");
            rates[replicas].push(rate);
        }
    }
    let naive = median(&mut rates[0]);
    println!("| one hot event, {CLIENTS} clients | purchases/s | × naive |");
    println!("|---|---:|---:|");
    println!("| naive: one transaction per purchase | {naive:.0} | 1.00 |");
    for replicas in [1, 2] {
        let rate = median(&mut rates[replicas]);
        let label = if replicas == 1 {
            "ticketd, one vacancy replica"
        } else {
            "ticketd, two vacancy replicas"
        };
        println!("| {label} | {rate:.0} | {:.1} |", rate / naive);
    }
}

/// A schema of its own for one measurement, dropped afterwards.
struct Schema {
    base: String,
    name: String,
    url: String,
}

impl Schema {
    async fn create(base: &str) -> Self {
        let name = format!("ticketd_bench_{}", uuid::Uuid::now_v7().simple());
        sql(base, &format!("CREATE SCHEMA {name}"))
            .await
            .expect("the schema is created");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Self {
            base: base.into(),
            name,
            url,
        }
    }

    async fn drop(self) {
        let _ = sql(&self.base, &format!("DROP SCHEMA {} CASCADE", self.name)).await;
    }
}

async fn sql(url: &str, statements: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(statements).await;
    drop(client);
    let _ = driver.await;
    result
}

fn open_replica(url: &str) -> Inventory {
    let ledger = PostgresLedger::open(&PostgresConfig {
        url: Secret::new(url),
        connections_max: 4,
        timeout: Duration::from_secs(10),
    })
    .expect("the ledger opens");
    let config = InventoryConfig {
        initial_stock: STOCK,
        ..InventoryConfig::default()
    };
    Inventory::open_shared(Box::new(ledger), config).expect("the inventory opens")
}

/// Purchases per second through `replicas` inventories sharing one schema.
fn ticketd_rate(
    runtime: &tokio::runtime::Runtime,
    base: &str,
    replicas: usize,
    duration: Duration,
) -> f64 {
    let schema = runtime.block_on(Schema::create(base));
    let inventories: Vec<Arc<Inventory>> = (0..replicas)
        .map(|_| Arc::new(open_replica(&schema.url)))
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    runtime.block_on(async {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let inventory = Arc::clone(&inventories[n % replicas]);
                let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
                tokio::spawn(async move { buy_until(&inventory, &done, &stop).await })
            })
            .collect();
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.expect("the client finished");
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let stock = runtime
        .block_on(inventories[0].event(&EventId::default_event()))
        .expect("the event")
        .stock();
    assert_eq!(
        stock.sold,
        done.load(Ordering::Relaxed),
        "every sale stored"
    );
    drop(inventories);
    runtime.block_on(schema.drop());
    rate
}

/// Purchases per second, one transaction each, on `CLIENTS` connections.
async fn naive_rate(base: &str, duration: Duration) -> f64 {
    let schema = Schema::create(base).await;
    // The same tables as ticketd's, made by its own migrations.
    drop(
        tokio::task::spawn_blocking({
            let url = schema.url.clone();
            move || open_replica(&url)
        })
        .await
        .expect("the schema is migrated"),
    );

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
            .await
            .expect("a connection");
        tokio::spawn(connection);
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let take = client
                .prepare(
                    "UPDATE events SET available = available - 1, sold = sold + 1
                     WHERE id = 'default' AND available >= 1",
                )
                .await
                .expect("prepared");
            let insert = client
                .prepare(
                    "INSERT INTO orders (id, event, qty, status, remaining, created_at_ms,
                                         updated_at_ms)
                     VALUES ($1, 'default', 1, 'confirmed', 0, 0, 0)",
                )
                .await
                .expect("prepared");
            while !stop.load(Ordering::Relaxed) {
                client.batch_execute("BEGIN").await.expect("begin");
                let taken = client.execute(&take, &[]).await.expect("update");
                assert_eq!(taken, 1, "the stock never runs out");
                let id = ReservationId::generate().as_uuid();
                client.execute(&insert, &[&id]).await.expect("insert");
                client.batch_execute("COMMIT").await.expect("commit");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("the client finished");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    schema.drop().await;
    rate
}
