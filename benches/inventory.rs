//! In-process benches (criterion), no HTTP:
//!
//! - `purchase`: one purchase through `Tickets` + `LocalVacancyClient` against a reservation
//!   straight into `Inventory`: what the abstraction between ticket and vacancy costs.
//! - `decisions`: reservations per second through the writer with the memory ledger, 64 in flight.
//! - `commit`: one SQLite commit of a batch of N orders, by N: why group commit pays.
//!
//!     cargo bench --bench inventory

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use ticketd::domain::{Event, EventId, Lines, Quantity, Reservation, ReservationId};
use ticketd::ticket::{LocalVacancyClient, Tickets};
use ticketd::vacancy::ledger::{Batch, Ledger, MemoryLedger};
use ticketd::vacancy::sqlite::SqliteLedger;
use ticketd::vacancy::{Inventory, InventoryConfig, SystemClock};
use ticketd::webhooks::{MemoryWebhookStore, Webhooks};

#[path = "support/mod.rs"]
mod support;

use support::confirmed_order;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

fn inventory() -> Arc<Inventory> {
    let config = InventoryConfig {
        initial_stock: 1_000_000_000_000,
        ..InventoryConfig::default()
    };
    Arc::new(Inventory::open(Box::new(MemoryLedger::new()), config).expect("the inventory opens"))
}

fn reservation() -> Reservation {
    Reservation::new(
        ReservationId::generate(),
        EventId::default_event(),
        Quantity::parse(1, 10).expect("a quantity"),
    )
}

fn purchase(c: &mut Criterion) {
    let runtime = runtime();
    let inventory = inventory();
    let webhooks = Arc::new(Webhooks::new(
        Arc::new(MemoryWebhookStore::new()),
        Arc::new(SystemClock),
    ));
    let tickets = Tickets::new(Arc::new(LocalVacancyClient::new(
        Arc::clone(&inventory),
        webhooks,
    )));
    let one = Lines::one(Quantity::parse(1, 10).expect("a quantity"));
    let mut group = c.benchmark_group("purchase");
    group.bench_function("inventory directly", |b| {
        b.iter(|| {
            runtime
                .block_on(inventory.reserve(reservation()))
                .expect("reserved")
        })
    });
    group.bench_function("tickets via LocalVacancyClient", |b| {
        b.iter(|| {
            runtime
                .block_on(tickets.purchase(EventId::default_event(), one.clone(), None, None))
                .expect("bought")
        })
    });
    group.finish();
}

fn decisions(c: &mut Criterion) {
    let runtime = runtime();
    let inventory = inventory();
    let mut group = c.benchmark_group("decisions");
    group.throughput(Throughput::Elements(64));
    group.bench_function("64 concurrent reservations, memory ledger", |b| {
        b.iter(|| {
            runtime.block_on(futures_util::future::join_all(
                (0..64).map(|_| inventory.reserve(reservation())),
            ))
        })
    });
    group.finish();
}

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a directory");
    let mut ledger = SqliteLedger::open(dir.path()).expect("the store opens");
    let event = Event::single(
        EventId::default_event(),
        "default".into(),
        1_000_000_000_000,
    );
    let batch = |size: usize| Batch {
        events: vec![event.clone()],
        orders: (0..size).map(|_| confirmed_order(&event.id)).collect(),
        ..Batch::default()
    };
    let mut group = c.benchmark_group("commit");
    for size in [1usize, 8, 64, 512] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("{size} orders per fsync'd commit"), |b| {
            b.iter_batched(
                || batch(size),
                |batch| ledger.commit(&batch).expect("committed"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = purchase, decisions, commit
}
criterion_main!(benches);
