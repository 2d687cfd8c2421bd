//! Model-based test: random sequences of create / purchase / hold / confirm / release / cancel /
//! time passing / restart, run against the real inventory on the durable SQLite ledger and, step
//! by step, against a small reference model written for clarity rather than speed. After every
//! step the answers must agree and every event's counts must match the model's and add up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;

use super::sqlite::SqliteLedger;
use super::{Clock, Inventory, InventoryConfig};
use crate::domain::{Error, EventId, OrderStatus, Quantity, Reservation, ReservationId};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        event: usize,
        capacity: u64,
    },
    Purchase {
        event: usize,
        qty: u32,
    },
    Hold {
        event: usize,
        qty: u32,
        ttl_seconds: u32,
    },
    Confirm {
        order: usize,
    },
    Release {
        order: usize,
    },
    Cancel {
        order: usize,
    },
    Advance {
        ms: i64,
    },
    Restart,
}

const EVENTS: [&str; 3] = ["default", "gala", "matinee"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..EVENTS.len(), 0..15u64).prop_map(|(event, capacity)| Op::Create { event, capacity }),
        (0..EVENTS.len(), 1..5u32).prop_map(|(event, qty)| Op::Purchase { event, qty }),
        (0..EVENTS.len(), 1..5u32, 1..4u32).prop_map(|(event, qty, ttl_seconds)| Op::Hold {
            event,
            qty,
            ttl_seconds
        }),
        any::<usize>().prop_map(|order| Op::Confirm { order }),
        any::<usize>().prop_map(|order| Op::Release { order }),
        any::<usize>().prop_map(|order| Op::Cancel { order }),
        (0..2500i64).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Restart),
    ]
}

/// What a step answered, reduced to what both sides must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused,
    Status(OrderStatus),
    Cancelled { changed: bool },
    Failed(&'static str),
    Skipped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    capacity: u64,
    available: u64,
    held: u64,
    sold: u64,
}

struct ModelOrder {
    event: &'static str,
    qty: u64,
    status: OrderStatus,
    expires_at_ms: Option<i64>,
}

/// The reference: plain maps, no batching, no storage.
#[derive(Default)]
struct Model {
    events: BTreeMap<&'static str, Counts>,
    orders: HashMap<ReservationId, ModelOrder>,
}

impl Model {
    fn expire(&mut self, now: i64) {
        for order in self.orders.values_mut() {
            if order.status == OrderStatus::Held && order.expires_at_ms.is_some_and(|d| d <= now) {
                order.status = OrderStatus::Expired;
                let counts = self.events.get_mut(order.event).unwrap();
                counts.held -= order.qty;
                counts.available += order.qty;
            }
        }
    }

    fn reserve(
        &mut self,
        id: ReservationId,
        event: &'static str,
        qty: u32,
        ttl: Option<u32>,
        now: i64,
    ) -> Outcome {
        let Some(counts) = self.events.get_mut(event) else {
            return Outcome::Failed("unknown_event");
        };
        let qty = u64::from(qty);
        if counts.available < qty {
            return Outcome::Refused;
        }
        counts.available -= qty;
        let (status, expires_at_ms) = match ttl {
            Some(ttl) => {
                counts.held += qty;
                (OrderStatus::Held, Some(now + i64::from(ttl) * 1000))
            }
            None => {
                counts.sold += qty;
                (OrderStatus::Confirmed, None)
            }
        };
        self.orders.insert(
            id,
            ModelOrder {
                event,
                qty,
                status,
                expires_at_ms,
            },
        );
        Outcome::Accepted
    }

    fn apply(&mut self, id: ReservationId, op: &Op) -> Outcome {
        let order = self.orders.get_mut(&id).unwrap();
        let counts = self.events.get_mut(order.event).unwrap();
        let (from, to) = match (op, order.status, order.expires_at_ms) {
            (Op::Confirm { .. }, OrderStatus::Held, _) => {
                (OrderStatus::Held, OrderStatus::Confirmed)
            }
            (Op::Confirm { .. }, OrderStatus::Confirmed, Some(_)) => {
                return Outcome::Status(OrderStatus::Confirmed);
            }
            (Op::Confirm { .. }, OrderStatus::Expired, _) => {
                return Outcome::Failed("hold_expired");
            }
            (Op::Release { .. }, OrderStatus::Held, _) => {
                (OrderStatus::Held, OrderStatus::Released)
            }
            (Op::Release { .. }, status @ (OrderStatus::Released | OrderStatus::Expired), _) => {
                return Outcome::Status(status);
            }
            (Op::Cancel { .. }, OrderStatus::Confirmed, _) => {
                (OrderStatus::Confirmed, OrderStatus::Cancelled)
            }
            (Op::Cancel { .. }, OrderStatus::Cancelled, _) => {
                return Outcome::Cancelled { changed: false };
            }
            _ => return Outcome::Failed("wrong_state"),
        };
        *slot(counts, from) -= order.qty;
        *slot(counts, to) += order.qty;
        order.status = to;
        match op {
            Op::Cancel { .. } => Outcome::Cancelled { changed: true },
            _ => Outcome::Status(to),
        }
    }
}

fn slot(counts: &mut Counts, status: OrderStatus) -> &mut u64 {
    match status {
        OrderStatus::Held => &mut counts.held,
        OrderStatus::Confirmed => &mut counts.sold,
        _ => &mut counts.available,
    }
}

fn outcome<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => ok(value),
        Err(error) => Outcome::Failed(error.code()),
    }
}

fn open(dir: &std::path::Path, clock: &Arc<TestClock>) -> Inventory {
    let config = InventoryConfig {
        initial_stock: 10,
        ..InventoryConfig::default()
    };
    let ledger = SqliteLedger::open(dir).expect("the store opens");
    Inventory::open_with_clock(
        Box::new(ledger),
        config,
        Arc::clone(clock) as Arc<dyn Clock>,
    )
    .expect("the inventory opens")
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut inventory = Some(open(dir.path(), &clock));
    let mut model = Model::default();
    model.events.insert(
        "default",
        Counts {
            capacity: 10,
            available: 10,
            held: 0,
            sold: 0,
        },
    );
    let mut ids: Vec<ReservationId> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        let real = inventory.as_ref().unwrap();
        let pick = |n: usize| (!ids.is_empty()).then(|| ids[n % ids.len()]);
        let (expected, actual) = match op {
            Op::Create { event, capacity } => {
                let name = EVENTS[*event];
                let expected = if model.events.contains_key(name) {
                    Outcome::Failed("event_exists")
                } else {
                    let counts = Counts {
                        capacity: *capacity,
                        available: *capacity,
                        held: 0,
                        sold: 0,
                    };
                    model.events.insert(name, counts);
                    Outcome::Accepted
                };
                let id = EventId::parse(name).unwrap();
                let actual = runtime.block_on(real.create_event(id, name.into(), *capacity));
                (expected, outcome(actual, |_| Outcome::Accepted))
            }
            Op::Purchase { event, qty } | Op::Hold { event, qty, .. } => {
                let ttl = match op {
                    Op::Hold { ttl_seconds, .. } => Some(*ttl_seconds),
                    _ => None,
                };
                let id = ReservationId::generate();
                let expected = model.reserve(id, EVENTS[*event], *qty, ttl, now);
                if expected == Outcome::Accepted {
                    ids.push(id);
                }
                let reservation = Reservation {
                    id,
                    event: EventId::parse(EVENTS[*event]).unwrap(),
                    qty: Quantity::parse(i64::from(*qty), 10).unwrap(),
                    hold_ttl_seconds: ttl,
                    key: None,
                };
                let actual = runtime.block_on(real.reserve(reservation));
                (
                    expected,
                    outcome(actual, |r| {
                        if r.accepted() {
                            Outcome::Accepted
                        } else {
                            Outcome::Refused
                        }
                    }),
                )
            }
            Op::Confirm { order } | Op::Release { order } | Op::Cancel { order } => {
                let Some(id) = pick(*order) else {
                    continue;
                };
                let expected = model.apply(id, op);
                let actual = match op {
                    Op::Confirm { .. } => outcome(runtime.block_on(real.confirm(id, None)), |o| {
                        Outcome::Status(o.status)
                    }),
                    Op::Release { .. } => outcome(runtime.block_on(real.release(id, None)), |o| {
                        Outcome::Status(o.status)
                    }),
                    _ => outcome(runtime.block_on(real.cancel(id, None)), |c| {
                        Outcome::Cancelled { changed: c.changed }
                    }),
                };
                (expected, actual)
            }
            Op::Advance { ms } => {
                clock.0.fetch_add(*ms, Ordering::SeqCst);
                model.expire(clock.now_ms());
                // Any request makes the writer catch up on expiries before it is decided.
                let probe = runtime.block_on(real.order(ReservationId::generate()));
                (
                    Outcome::Failed("unknown_order"),
                    outcome(probe, |_| Outcome::Skipped),
                )
            }
            Op::Restart => {
                drop(inventory.take());
                inventory = Some(open(dir.path(), &clock));
                (Outcome::Skipped, Outcome::Skipped)
            }
        };
        prop_assert_eq!(&actual, &expected, "step {}: {:?}", step, op);

        let real = inventory.as_ref().unwrap();
        for (name, counts) in &model.events {
            let stock = runtime
                .block_on(real.event(&EventId::parse(name).unwrap()))
                .unwrap()
                .stock;
            prop_assert!(stock.is_consistent(), "step {}: {:?}", step, stock);
            let actual = Counts {
                capacity: stock.capacity,
                available: stock.available,
                held: stock.held,
                sold: stock.sold,
            };
            prop_assert_eq!(actual, *counts, "step {}: {} after {:?}", step, name, op);
        }
        prop_assert_eq!(
            runtime.block_on(real.events()).unwrap().len(),
            model.events.len()
        );
    }
    drop(inventory);
    let ledger = SqliteLedger::open(dir.path()).unwrap();
    ledger
        .audit()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_inventory_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(&ops)?;
    }
}
