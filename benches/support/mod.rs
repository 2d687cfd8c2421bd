//! Helpers shared by the benches (included with `#[path]`; not a bench of its own).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ticketd::domain::{EventId, Order, OrderStatus, Quantity, Reservation, ReservationId};
use ticketd::vacancy::Inventory;

/// Log filter for servers under load: start-up lines only, no line per request.
pub const QUIET: [&str; 4] = [
    "--log-level",
    "warn,ticketd=info,ticketd::access=warn",
    "--log-format",
    "json",
];

/// Starts ticketd and reads its address from the "listening on" log line; the rest of the log is
/// drained on a thread so the server never blocks on a full pipe.
pub fn spawn_ticketd(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("ticketd starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("ticketd printed its address")
            .expect("a log line");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('"').next().unwrap_or_default().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// A confirmed order of one ticket, for filling a store directly.
pub fn confirmed_order(event: &EventId) -> Order {
    Order {
        id: ReservationId::generate(),
        event: event.clone(),
        qty: 1,
        lines: vec![ticketd::domain::OrderLine::general(1)].into(),
        customer: None,
        status: OrderStatus::Confirmed,
        remaining: 0,
        created_at_ms: 0,
        updated_at_ms: 0,
        expires_at_ms: None,
    }
}

/// One client: buys one ticket of the `default` event after another until `stop`, counting each
/// sale in `done`.
pub async fn buy_until(inventory: &Inventory, done: &AtomicU64, stop: &AtomicBool) {
    let qty = Quantity::parse(1, 10).expect("1 is a quantity");
    while !stop.load(Ordering::Relaxed) {
        let reservation = Reservation {
            id: ReservationId::generate(),
            event: EventId::default_event(),
            lines: ticketd::domain::Lines::one(qty),
            customer: None,
            hold_ttl_seconds: None,
            key: None,
        };
        let reserved = inventory.reserve(reservation).await.expect("reserved");
        assert!(reserved.accepted());
        done.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
