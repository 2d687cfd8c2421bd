//! Model-based test: random sequences of create / purchase / hold / confirm / release / cancel /
//! quota resizes / opening, closing and moving the sales windows of categories / time passing /
//! restart, run against the real inventory on the durable SQLite ledger and, step by step, against
//! a small reference model written for clarity rather than speed. After every step the answers
//! must agree and every quota's counts must match the model's and add up; at the end the stored
//! orders must be exactly the model's and the stored state must pass [`ledger::audit`].
//!
//! Events are today's single counter, or a venue with a VIP cap: quotas `venue`, `vip` and `bar`;
//! categories `standing` → [venue], `vip` → [venue, vip] (two quotas at once) and `bar` → [bar]
//! (disjoint), with or without a per-customer limit. Orders have one to three lines, for a
//! customer or for nobody in particular.
//!
//! The same sequences run against two replicas sharing one PostgreSQL schema, taking turns step
//! by step: to a client they must be indistinguishable from one inventory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;

use super::ledger;
use super::postgres::{PostgresConfig, PostgresLedger};
use super::sqlite::SqliteLedger;
use super::{CategoryChange, Clock, Inventory, InventoryConfig, Resize};
use crate::domain::{
    CategoryDraft, CategoryId, Change, ChangeFeed, ChangeType, ChangesQuery, CustomerId, Error,
    Event, EventDraft, EventId, HoldTtl, LineRequest, Lines, Order, OrderStatus, PageLimit,
    PageQuery, Quantity, QuotaId, Reservation, ReservationId, SalesWindow,
};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves with the wall clock, which these tests only ever move forwards.
    fn monotonic(&self) -> std::time::Instant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(std::time::Instant::now);
        start + std::time::Duration::from_millis(self.now_ms() as u64)
    }
}

const EVENTS: [&str; 3] = ["default", "gala", "matinee"];
/// The quotas of a venue event, in the event's order.
const VENUE_QUOTAS: [&str; 3] = ["venue", "vip", "bar"];
/// The categories of a venue event and the quotas (indexes into [`VENUE_QUOTAS`]) each draws on,
/// as declared: `vip` names its quotas out of the event's order on purpose.
const VENUE_CATEGORIES: [(&str, &[usize]); 3] =
    [("standing", &[0]), ("vip", &[1, 0]), ("bar", &[2])];
/// A quota no event has.
const UNKNOWN_QUOTA: &str = "stage";
/// A category no event has.
const UNKNOWN_CATEGORY: &str = "box";
const CUSTOMERS: [&str; 3] = ["c-1", "c-2", "c-3"];

#[derive(Clone, Debug)]
enum Layout {
    /// Today's event: one `general` quota and category of `capacity` places.
    Single { capacity: u64 },
    /// Quotas [`VENUE_QUOTAS`] of these sizes, categories [`VENUE_CATEGORIES`].
    Venue {
        sizes: [u64; 3],
        max_per_customer: Option<u32>,
        customer_required: bool,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        event: usize,
        layout: Layout,
    },
    /// A purchase, or a hold when `ttl_seconds` is set. Each line is `(category, qty)`, the
    /// category picked when the step runs (see [`line_category`]).
    Reserve {
        event: usize,
        lines: Vec<(usize, u32)>,
        customer: Option<usize>,
        ttl_seconds: Option<u32>,
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
    /// Resizes a quota, picked when the step runs (see [`admin_pick`]).
    Resize {
        event: usize,
        quota: usize,
        resize: Resize,
    },
    /// Opens or closes a category, picked when the step runs (see [`admin_pick`]), or moves
    /// either end of its sales window: `None` keeps it, `Some(None)` removes it, `Some(Some(ms))`
    /// puts it `ms` from now.
    Change {
        event: usize,
        category: usize,
        open: Option<bool>,
        sales_start: Option<Option<i64>>,
        sales_end: Option<Option<i64>>,
    },
    /// Reservations and changes to orders sent at once (see [`burst`]).
    Burst {
        ops: Vec<Op>,
    },
    Advance {
        ms: i64,
    },
    Restart,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        1 => (0..15u64).prop_map(|capacity| Layout::Single { capacity }),
        2 => (
            (0..12u64, 0..5u64, 0..6u64),
            proptest::option::weighted(0.7, 1..6u32),
            proptest::bool::weighted(0.2),
        )
            .prop_map(
                |((venue, vip, bar), max_per_customer, customer_required)| Layout::Venue {
                    sizes: [venue, vip, bar],
                    max_per_customer,
                    customer_required,
                }
            ),
    ]
}

fn reserve(ttl_seconds: impl Strategy<Value = Option<u32>>) -> impl Strategy<Value = Op> {
    (
        0..EVENTS.len(),
        proptest::collection::vec((0..16usize, 1..4u32), 1..=3),
        proptest::option::weighted(0.7, 0..CUSTOMERS.len()),
        ttl_seconds,
    )
        .prop_map(|(event, lines, customer, ttl_seconds)| Op::Reserve {
            event,
            lines,
            customer,
            ttl_seconds,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..EVENTS.len(), layout()).prop_map(|(event, layout)| Op::Create { event, layout }),
        2 => reserve(Just(None)),
        2 => reserve((1..4u32).prop_map(Some)),
        1 => any::<usize>().prop_map(|order| Op::Confirm { order }),
        1 => any::<usize>().prop_map(|order| Op::Release { order }),
        1 => any::<usize>().prop_map(|order| Op::Cancel { order }),
        1 => (0..EVENTS.len(), 0..8usize, any::<bool>(), 0..10u64).prop_map(
            |(event, quota, add, n)| Op::Resize {
                event,
                quota,
                resize: if add { Resize::Add(n % 5 + 1) } else { Resize::To(n) },
            }
        ),
        1 => (
            (0..EVENTS.len(), 0..8usize),
            proptest::option::weighted(0.7, proptest::bool::weighted(0.6)),
            window_end(),
            window_end(),
        )
            .prop_map(|((event, category), open, sales_start, sales_end)| Op::Change {
                event,
                category,
                open,
                sales_start,
                sales_end,
            }),
        1 => burst(),
        1 => (0..2500i64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Restart),
    ]
}

/// Two to five reservations and changes to orders, sent together so one batch decides them:
/// where a customer's tickets are counted within a batch as well as across them.
fn burst() -> impl Strategy<Value = Op> {
    let one = prop_oneof![
        3 => reserve(Just(None)),
        3 => reserve((1..4u32).prop_map(Some)),
        1 => any::<usize>().prop_map(|order| Op::Confirm { order }),
        1 => any::<usize>().prop_map(|order| Op::Release { order }),
        1 => any::<usize>().prop_map(|order| Op::Cancel { order }),
    ];
    proptest::collection::vec(one, 2..6).prop_map(|ops| Op::Burst { ops })
}

/// A change to one end of a sales window, from now (see [`Op::Change`]).
fn window_end() -> impl Strategy<Value = Option<Option<i64>>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(None)),
        1 => (-3000..3000i64).prop_map(|ms| Some(Some(ms))),
    ]
}

/// A case: the events other than `default` mostly made first, then anything.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let create = |event| {
        proptest::option::weighted(
            0.9,
            layout().prop_map(move |layout| Op::Create { event, layout }),
        )
    };
    (create(1), create(2), proptest::collection::vec(op(), 1..40))
        .prop_map(|(gala, matinee, ops)| gala.into_iter().chain(matinee).chain(ops).collect())
}

/// The category a line names: mostly one of the event's (`event` lists them), sometimes none (a
/// line of "the only category") or one the event does not have.
fn line_category(pick: usize, event: &[&'static str]) -> Option<&'static str> {
    match pick {
        0 => None,
        1 => Some(UNKNOWN_CATEGORY),
        _ if event.is_empty() => Some("general"),
        n => Some(event[(n - 2) % event.len()]),
    }
}

/// What an admin change names: one of `event`'s ids, or sometimes one it does not have.
fn admin_pick(pick: usize, event: &[&'static str], unknown: &'static str) -> &'static str {
    match pick {
        _ if event.is_empty() => unknown,
        0 => unknown,
        n => event[(n - 1) % event.len()],
    }
}

/// What a step answered, reduced to what both sides must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    /// A reservation made; `remaining`: what the event's first quota has left after it.
    Reserved {
        remaining: u64,
    },
    /// A reservation refused for want of places: the first line short, the quota it is short in
    /// and what that quota has left.
    Short {
        category: String,
        quota: String,
        available: u64,
        remaining: u64,
    },
    LimitReached {
        may_still: u64,
    },
    Status(OrderStatus),
    Cancelled {
        changed: bool,
    },
    Failed(&'static str),
    Skipped,
    /// The answers to a burst, in the order sent.
    Burst(Vec<Outcome>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    capacity: u64,
    available: u64,
    held: u64,
    sold: u64,
}

impl Counts {
    fn new(capacity: u64) -> Self {
        Self {
            capacity,
            available: capacity,
            held: 0,
            sold: 0,
        }
    }
}

struct ModelCategory {
    id: &'static str,
    /// Indexes into the event's quotas, as declared.
    quotas: Vec<usize>,
    open: bool,
    /// Sells from `start` (inclusive) until `end` (exclusive), each unbounded when `None`.
    start_ms: Option<i64>,
    end_ms: Option<i64>,
}

impl ModelCategory {
    fn on_sale(&self, now_ms: i64) -> bool {
        self.open
            && self.start_ms.is_none_or(|start| start <= now_ms)
            && self.end_ms.is_none_or(|end| now_ms < end)
    }
}

struct ModelEvent {
    quotas: Vec<(&'static str, Counts)>,
    categories: Vec<ModelCategory>,
    max_per_customer: Option<u64>,
    customer_required: bool,
}

impl ModelEvent {
    fn new(layout: &Layout) -> Self {
        match layout {
            Layout::Single { capacity } => Self {
                quotas: vec![("general", Counts::new(*capacity))],
                categories: vec![ModelCategory {
                    id: "general",
                    quotas: vec![0],
                    open: true,
                    start_ms: None,
                    end_ms: None,
                }],
                max_per_customer: None,
                customer_required: false,
            },
            Layout::Venue {
                sizes,
                max_per_customer,
                customer_required,
            } => Self {
                quotas: VENUE_QUOTAS
                    .iter()
                    .zip(sizes)
                    .map(|(id, size)| (*id, Counts::new(*size)))
                    .collect(),
                categories: VENUE_CATEGORIES
                    .iter()
                    .map(|(id, quotas)| ModelCategory {
                        id,
                        quotas: quotas.to_vec(),
                        open: true,
                        start_ms: None,
                        end_ms: None,
                    })
                    .collect(),
                max_per_customer: max_per_customer.map(u64::from),
                customer_required: *customer_required,
            },
        }
    }

    /// Whether the public could buy a seat: a category with a place in every quota it draws on
    /// (sales windows do not count; see `outbox.rs`).
    fn on_sale(&self) -> bool {
        self.categories.iter().any(|category| {
            !category.quotas.is_empty()
                && category
                    .quotas
                    .iter()
                    .all(|&quota| self.quotas[quota].1.available > 0)
        })
    }

    fn quota_ids(&self) -> Vec<&'static str> {
        self.quotas.iter().map(|(id, _)| *id).collect()
    }

    fn category_ids(&self) -> Vec<&'static str> {
        self.categories.iter().map(|category| category.id).collect()
    }

    /// Moves the places of `lines` in every quota of their categories from one count to another.
    fn shift(&mut self, lines: &[(usize, u64)], from: OrderStatus, to: OrderStatus) {
        for &(category, qty) in lines {
            for &quota in &self.categories[category].quotas {
                let counts = &mut self.quotas[quota].1;
                *slot(counts, from) -= qty;
                *slot(counts, to) += qty;
            }
        }
    }
}

/// The count of a quota an order in `status` is part of.
fn slot(counts: &mut Counts, status: OrderStatus) -> &mut u64 {
    match status {
        OrderStatus::Held => &mut counts.held,
        OrderStatus::Confirmed => &mut counts.sold,
        OrderStatus::Cancelled | OrderStatus::Released | OrderStatus::Expired => {
            &mut counts.available
        }
    }
}

struct ModelOrder {
    event: &'static str,
    /// `(category index, qty)`, as asked.
    lines: Vec<(usize, u64)>,
    customer: Option<&'static str>,
    status: OrderStatus,
    expires_at_ms: Option<i64>,
}

/// The reference: plain counts per quota, a list of orders; no batching, no storage.
#[derive(Default)]
struct Model {
    events: BTreeMap<&'static str, ModelEvent>,
    orders: HashMap<ReservationId, ModelOrder>,
    /// The changes each order's committed transitions must tell, in order.
    told: HashMap<ReservationId, Vec<ChangeType>>,
    /// Whether each event was on sale when created.
    began_on_sale: HashMap<&'static str, bool>,
}

impl Model {
    fn expire(&mut self, now: i64) {
        for (id, order) in self.orders.iter_mut() {
            if order.status == OrderStatus::Held && order.expires_at_ms.is_some_and(|d| d <= now) {
                let event = self.events.get_mut(order.event).unwrap();
                event.shift(&order.lines, OrderStatus::Held, OrderStatus::Expired);
                order.status = OrderStatus::Expired;
                self.told
                    .entry(*id)
                    .or_default()
                    .push(ChangeType::HoldExpired);
            }
        }
    }

    /// Tickets `customer` holds or has bought in `event`.
    fn taken(&self, event: &str, customer: &str) -> u64 {
        self.orders
            .values()
            .filter(|order| order.event == event && order.customer == Some(customer))
            .filter(|order| matches!(order.status, OrderStatus::Held | OrderStatus::Confirmed))
            .flat_map(|order| order.lines.iter().map(|(_, qty)| qty))
            .sum()
    }

    fn reserve(
        &mut self,
        id: ReservationId,
        name: &'static str,
        lines: &[(Option<&'static str>, u32)],
        customer: Option<&'static str>,
        ttl: Option<u32>,
        now: i64,
    ) -> Outcome {
        let Some(event) = self.events.get(name) else {
            return Outcome::Failed("unknown_event");
        };
        let mut resolved = Vec::new();
        for &(category, qty) in lines {
            let index = match category {
                Some(id) => event.categories.iter().position(|c| c.id == id),
                None if event.categories.len() == 1 => Some(0),
                None => None,
            };
            let Some(index) = index else {
                return Outcome::Failed("unknown_category");
            };
            resolved.push((index, u64::from(qty)));
        }
        // A line that names no category and one that names the only one are one category twice.
        if (1..resolved.len()).any(|n| resolved[..n].iter().any(|&(c, _)| c == resolved[n].0)) {
            return Outcome::Failed("invalid_quantity");
        }
        if resolved
            .iter()
            .any(|&(c, _)| !event.categories[c].on_sale(now))
        {
            return Outcome::Failed("not_on_sale");
        }
        if customer.is_none() && event.customer_required {
            return Outcome::Failed("customer_required");
        }
        let total: u64 = resolved.iter().map(|(_, qty)| qty).sum();
        if let (Some(customer), Some(max)) = (customer, event.max_per_customer) {
            let taken = self.taken(name, customer);
            if taken + total > max {
                return Outcome::LimitReached {
                    may_still: max.saturating_sub(taken),
                };
            }
        }
        // What all lines together need of each quota; the first line, as asked, with a quota (in
        // the event's order) short of that is named.
        let mut need = vec![0; event.quotas.len()];
        for &(category, qty) in &resolved {
            for &quota in &event.categories[category].quotas {
                need[quota] += qty;
            }
        }
        for &(category, _) in &resolved {
            let draws = &event.categories[category].quotas;
            for quota in (0..event.quotas.len()).filter(|q| draws.contains(q)) {
                let (quota_id, counts) = event.quotas[quota];
                if counts.available < need[quota] {
                    return Outcome::Short {
                        category: event.categories[category].id.into(),
                        quota: quota_id.into(),
                        available: counts.available,
                        remaining: event.quotas[0].1.available,
                    };
                }
            }
        }
        let (status, expires_at_ms) = match ttl {
            Some(ttl) => (OrderStatus::Held, Some(now + i64::from(ttl) * 1000)),
            None => (OrderStatus::Confirmed, None),
        };
        let told = match status {
            OrderStatus::Held => ChangeType::HoldCreated,
            _ => ChangeType::OrderConfirmed,
        };
        self.told.insert(id, vec![told]);
        let event = self.events.get_mut(name).unwrap();
        // Fresh places are `available`, as those of a released hold.
        event.shift(&resolved, OrderStatus::Released, status);
        let remaining = event.quotas[0].1.available;
        let order = ModelOrder {
            event: name,
            lines: resolved,
            customer,
            status,
            expires_at_ms,
        };
        self.orders.insert(id, order);
        Outcome::Reserved { remaining }
    }

    fn apply(&mut self, id: ReservationId, op: &Op) -> Outcome {
        let order = self.orders.get_mut(&id).unwrap();
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
        let event = self.events.get_mut(order.event).unwrap();
        event.shift(&order.lines, from, to);
        order.status = to;
        let told = match to {
            OrderStatus::Confirmed => ChangeType::OrderConfirmed,
            OrderStatus::Released => ChangeType::HoldReleased,
            OrderStatus::Cancelled => ChangeType::OrderCancelled,
            OrderStatus::Held | OrderStatus::Expired => unreachable!("no request makes these"),
        };
        self.told.entry(id).or_default().push(told);
        match op {
            Op::Cancel { .. } => Outcome::Cancelled { changed: true },
            _ => Outcome::Status(to),
        }
    }

    fn resize(&mut self, name: &str, quota: &str, resize: Resize) -> Outcome {
        let Some(event) = self.events.get_mut(name) else {
            return Outcome::Failed("unknown_event");
        };
        let Some((_, counts)) = event.quotas.iter_mut().find(|(id, _)| *id == quota) else {
            return Outcome::Failed("unknown_quota");
        };
        let size = match resize {
            Resize::Add(n) => counts.capacity + n,
            Resize::To(n) => n,
        };
        let taken = counts.held + counts.sold;
        if size < taken {
            return Outcome::Failed("quota_in_use");
        }
        counts.capacity = size;
        counts.available = size - taken;
        Outcome::Accepted
    }

    fn change(&mut self, name: &str, category: &str, change: CategoryChange) -> Outcome {
        let Some(event) = self.events.get_mut(name) else {
            return Outcome::Failed("unknown_event");
        };
        let Some(found) = event.categories.iter_mut().find(|c| c.id == category) else {
            return Outcome::Failed("unknown_category");
        };
        let start_ms = change.sales_start.unwrap_or(found.start_ms);
        let end_ms = change.sales_end.unwrap_or(found.end_ms);
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && start >= end
        {
            return Outcome::Failed("invalid_event");
        }
        found.open = change.open.unwrap_or(found.open);
        found.start_ms = start_ms;
        found.end_ms = end_ms;
        Outcome::Accepted
    }
}

fn outcome<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => ok(value),
        Err(Error::CustomerLimitReached { may_still, .. }) => Outcome::LimitReached { may_still },
        Err(error) => Outcome::Failed(error.code()),
    }
}

fn draft(name: &'static str, layout: &Layout) -> EventDraft {
    let Layout::Venue {
        sizes,
        max_per_customer,
        customer_required,
    } = layout
    else {
        unreachable!("single events are made with a capacity")
    };
    let vip_price = crate::domain::Price::parse(9900, "EUR").unwrap();
    EventDraft {
        id: EventId::parse(name).unwrap(),
        name: name.into(),
        quotas: VENUE_QUOTAS
            .iter()
            .zip(sizes)
            .map(|(id, size)| (QuotaId::parse(id).unwrap(), *size))
            .collect(),
        categories: VENUE_CATEGORIES
            .iter()
            .map(|(id, quotas)| CategoryDraft {
                id: CategoryId::parse(id).unwrap(),
                name: (*id).into(),
                quotas: quotas
                    .iter()
                    .map(|&q| QuotaId::parse(VENUE_QUOTAS[q]).unwrap())
                    .collect(),
                price: (*id == "vip").then_some(vip_price),
                window: SalesWindow::default(),
            })
            .collect(),
        max_per_customer: *max_per_customer,
        customer_required: *customer_required,
    }
}

/// Where the inventories under test keep their stock.
enum Store {
    Sqlite(tempfile::TempDir),
    /// A schema of its own, shared by every replica.
    Postgres {
        url: String,
    },
}

impl Store {
    /// `replicas` inventories on this store.
    fn open(&self, replicas: usize, clock: &Arc<TestClock>) -> Vec<Inventory> {
        (0..replicas)
            .map(|_| {
                let config = InventoryConfig {
                    initial_stock: 10,
                    ..InventoryConfig::default()
                };
                let clock = Arc::clone(clock) as Arc<dyn Clock>;
                match self {
                    Store::Sqlite(dir) => {
                        let ledger = SqliteLedger::open(dir.path()).expect("the store opens");
                        Inventory::open_with_clock(Box::new(ledger), config, clock)
                    }
                    Store::Postgres { url } => {
                        let ledger = PostgresLedger::open(&PostgresConfig {
                            url: crate::config::Secret::new(url.clone()),
                            connections_max: 2,
                            timeout: std::time::Duration::from_secs(10),
                        })
                        .expect("the store opens");
                        Inventory::open_shared_with_clock(Box::new(ledger), config, clock)
                    }
                }
                .expect("the inventory opens")
            })
            .collect()
    }
}

/// What a step asks of the inventory.
enum Request {
    /// Today's form, as before categories.
    CreateSingle(EventId, u64),
    Create(EventDraft),
    Reserve(Reservation),
    Confirm(ReservationId),
    Release(ReservationId),
    Cancel(ReservationId),
    Resize(EventId, QuotaId, Resize),
    Change(EventId, CategoryId, CategoryChange),
    Nothing,
}

/// Runs `op` on the model: what it answers, and what to ask of the inventory.
fn plan(op: &Op, model: &mut Model, now: i64, ids: &mut Vec<ReservationId>) -> (Outcome, Request) {
    let event_id = |event: usize| EventId::parse(EVENTS[event]).unwrap();
    match op {
        Op::Create { event, layout } => {
            let name = EVENTS[*event];
            let expected = if model.events.contains_key(name) {
                Outcome::Failed("event_exists")
            } else {
                let created = ModelEvent::new(layout);
                // A new event counts as on sale before it existed: made with nothing to sell,
                // it is told sold out (see `outbox.rs`).
                model.began_on_sale.insert(name, true);
                model.events.insert(name, created);
                Outcome::Accepted
            };
            let request = match layout {
                Layout::Single { capacity } => Request::CreateSingle(event_id(*event), *capacity),
                Layout::Venue { .. } => Request::Create(draft(name, layout)),
            };
            (expected, request)
        }
        Op::Reserve {
            event,
            lines,
            customer,
            ttl_seconds,
        } => {
            let name = EVENTS[*event];
            let categories = model
                .events
                .get(name)
                .map(ModelEvent::category_ids)
                .unwrap_or_default();
            let mut asked: Vec<(Option<&'static str>, u32)> = Vec::new();
            for &(pick, qty) in lines {
                let category = line_category(pick, &categories);
                // A request names each category once (that is checked before the inventory).
                if asked.iter().all(|(c, _)| *c != category) {
                    asked.push((category, qty));
                }
            }
            let customer = customer.map(|c| CUSTOMERS[c]);
            let id = ReservationId::generate();
            let expected = model.reserve(id, name, &asked, customer, *ttl_seconds, now);
            if let Outcome::Reserved { .. } = expected {
                ids.push(id);
            }
            let lines = asked
                .iter()
                .map(|(category, qty)| LineRequest {
                    category: category.map(|c| CategoryId::parse(c).unwrap()),
                    qty: Quantity::parse(i64::from(*qty), 10).unwrap(),
                })
                .collect();
            let reservation = Reservation {
                id,
                event: event_id(*event),
                lines: Lines::parse(lines, 10).unwrap(),
                customer: customer.map(|c| CustomerId::parse(c).unwrap()),
                hold_ttl_seconds: ttl_seconds.map(|t| HoldTtl::parse(t.into(), u32::MAX).unwrap()),
                key: None,
            };
            (expected, Request::Reserve(reservation))
        }
        Op::Confirm { order } | Op::Release { order } | Op::Cancel { order } => {
            if ids.is_empty() {
                return (Outcome::Skipped, Request::Nothing);
            }
            let id = ids[order % ids.len()];
            let request = match op {
                Op::Confirm { .. } => Request::Confirm(id),
                Op::Release { .. } => Request::Release(id),
                _ => Request::Cancel(id),
            };
            (model.apply(id, op), request)
        }
        Op::Resize {
            event,
            quota,
            resize,
        } => {
            let name = EVENTS[*event];
            let quotas = model.events.get(name).map(ModelEvent::quota_ids);
            let quota = admin_pick(*quota, &quotas.unwrap_or_default(), UNKNOWN_QUOTA);
            let expected = model.resize(name, quota, *resize);
            let quota = QuotaId::parse(quota).unwrap();
            (expected, Request::Resize(event_id(*event), quota, *resize))
        }
        Op::Change {
            event,
            category,
            open,
            sales_start,
            sales_end,
        } => {
            let name = EVENTS[*event];
            let categories = model.events.get(name).map(ModelEvent::category_ids);
            let category = admin_pick(*category, &categories.unwrap_or_default(), UNKNOWN_CATEGORY);
            let from_now = |end: &Option<Option<i64>>| end.map(|at| at.map(|ms| now + ms));
            let change = CategoryChange {
                open: *open,
                sales_start: from_now(sales_start),
                sales_end: from_now(sales_end),
            };
            let expected = model.change(name, category, change);
            let category = CategoryId::parse(category).unwrap();
            (
                expected,
                Request::Change(event_id(*event), category, change),
            )
        }
        Op::Burst { .. } | Op::Advance { .. } | Op::Restart => {
            unreachable!("run by the case itself")
        }
    }
}

/// Asks `request` of `real`: what it answered.
async fn send(real: &Inventory, request: Request) -> Outcome {
    let accepted = |_| Outcome::Accepted;
    match request {
        Request::CreateSingle(id, capacity) => {
            let name = id.to_string();
            outcome(real.create_event(id, name, capacity).await, accepted)
        }
        Request::Create(draft) => outcome(real.create(draft).await, accepted),
        Request::Reserve(reservation) => outcome(real.reserve(reservation).await, |r| {
            match (r.order, r.short) {
                (Some(_), None) => Outcome::Reserved {
                    remaining: r.remaining,
                },
                (None, Some(short)) => Outcome::Short {
                    category: short.category.to_string(),
                    quota: short.quota.to_string(),
                    available: short.available,
                    remaining: r.remaining,
                },
                _ => Outcome::Failed("an order and a shortage, or neither"),
            }
        }),
        Request::Confirm(id) => {
            outcome(real.confirm(id, None).await, |o| Outcome::Status(o.status))
        }
        Request::Release(id) => {
            outcome(real.release(id, None).await, |o| Outcome::Status(o.status))
        }
        Request::Cancel(id) => outcome(real.cancel(id, None).await, |c| Outcome::Cancelled {
            changed: c.changed,
        }),
        Request::Resize(event, quota, resize) => {
            outcome(real.resize_quota(event, quota, resize).await, accepted)
        }
        Request::Change(event, category, change) => outcome(
            real.change_category(event, category, change).await,
            accepted,
        ),
        Request::Nothing => Outcome::Skipped,
    }
}

/// Every event as `real` lists it, walking the list two at a time.
fn listed(real: &Inventory, runtime: &tokio::runtime::Runtime) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    let mut query = PageQuery {
        after: None,
        limit: PageLimit::parse("2").unwrap(),
    };
    // Bounded: a cursor that never ends would otherwise hang the test.
    for _ in 0..=EVENTS.len() {
        let page = runtime.block_on(real.events(&query))?;
        events.extend(page.events);
        query.after = page.next_after;
        if query.after.is_none() {
            return Ok(events);
        }
    }
    Err(Error::Internal("the list of events does not end".into()))
}

/// `events` are the model's, in id order: every quota's counts (which add up) and every
/// category's availability and whether it sells at `now_ms`.
fn check_events(model: &Model, events: &[Event], now_ms: i64) -> Result<(), String> {
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    let modelled: Vec<&str> = model.events.keys().copied().collect();
    if ids != modelled {
        return Err(format!("events {ids:?}, the model's {modelled:?}"));
    }
    for (event, modelled) in events.iter().zip(model.events.values()) {
        let name = &event.id;
        if !event.is_consistent() {
            return Err(format!("{name} does not add up: {:?}", event.quotas));
        }
        for (id, counts) in &modelled.quotas {
            if counts.available + counts.held + counts.sold != counts.capacity {
                return Err(format!(
                    "the model's {id} of {name} does not add up: {counts:?}"
                ));
            }
        }
        let quotas: Vec<(&str, Counts)> = event
            .quotas
            .iter()
            .map(|quota| {
                let stock = quota.stock;
                let counts = Counts {
                    capacity: stock.capacity,
                    available: stock.available,
                    held: stock.held,
                    sold: stock.sold,
                };
                (quota.id.as_str(), counts)
            })
            .collect();
        if quotas != modelled.quotas {
            return Err(format!(
                "{name}: quotas {quotas:?}, the model's {:?}",
                modelled.quotas
            ));
        }
        let categories: Vec<(&str, bool, u64)> = event
            .catalogue
            .categories
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.on_sale(now_ms),
                    event.category_available(c),
                )
            })
            .collect();
        let expected: Vec<(&str, bool, u64)> = modelled
            .categories
            .iter()
            .map(|c| {
                let available = c.quotas.iter().map(|&q| modelled.quotas[q].1.available);
                (c.id, c.on_sale(now_ms), available.min().unwrap_or(0))
            })
            .collect();
        if categories != expected {
            return Err(format!(
                "{name}: categories {categories:?}, the model's {expected:?}"
            ));
        }
    }
    Ok(())
}

/// What a store holds at the end of a case: it passes [`ledger::audit`], its events are the
/// model's, and its orders are exactly the model's (none for a refused reservation), each with
/// the model's status, lines and customer.
fn check_stored(
    model: &Model,
    events: &[Event],
    orders: &[Order],
    now_ms: i64,
) -> Result<(), String> {
    ledger::audit(events, orders).map_err(|e| e.to_string())?;
    check_events(model, events, now_ms)?;
    if orders.len() != model.orders.len() {
        return Err(format!(
            "{} orders stored, the model has {}",
            orders.len(),
            model.orders.len()
        ));
    }
    for order in orders {
        let Some(modelled) = model.orders.get(&order.id) else {
            return Err(format!("order {} is stored, not in the model", order.id));
        };
        let event = &model.events[modelled.event];
        let lines: Vec<(&str, u64)> = order
            .lines
            .iter()
            .map(|line| (line.category.as_str(), u64::from(line.qty)))
            .collect();
        let expected: Vec<(&str, u64)> = modelled
            .lines
            .iter()
            .map(|&(c, qty)| (event.categories[c].id, qty))
            .collect();
        let customer = order.customer.as_ref().map(CustomerId::as_str);
        let stored = (order.event.as_str(), order.status, lines, customer);
        let wanted = (modelled.event, modelled.status, expected, modelled.customer);
        if stored != wanted {
            return Err(format!(
                "order {} is {stored:?}, the model's {wanted:?}",
                order.id
            ));
        }
    }
    Ok(())
}

fn run_case(ops: &[Op], store: &Store, replicas: usize) -> Result<(), TestCaseError> {
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut inventories = store.open(replicas, &clock);
    let mut model = Model::default();
    model
        .events
        .insert("default", ModelEvent::new(&Layout::Single { capacity: 10 }));
    model.began_on_sale.insert("default", true);
    let mut ids: Vec<ReservationId> = Vec::new();

    for (step_no, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        // Replicas take turns: a client cannot tell which one answers.
        let real = &inventories[step_no % replicas];
        let (expected, actual) = match op {
            Op::Advance { ms } => {
                clock.0.fetch_add(*ms, Ordering::SeqCst);
                model.expire(clock.now_ms());
                // Any request makes a writer catch up on expiries before it is decided; every
                // replica sweeps the due holds it knows.
                let mut probes = Vec::new();
                for replica in &inventories {
                    let probe = runtime.block_on(replica.release(ReservationId::generate(), None));
                    probes.push(outcome(probe, |_| Outcome::Skipped));
                }
                (
                    Outcome::Failed("unknown_order"),
                    probes
                        .into_iter()
                        .find(|probe| *probe != Outcome::Failed("unknown_order"))
                        .unwrap_or(Outcome::Failed("unknown_order")),
                )
            }
            Op::Restart => {
                inventories.clear();
                inventories = store.open(replicas, &clock);
                (Outcome::Skipped, Outcome::Skipped)
            }
            Op::Burst { ops } => {
                // Sent at once, in this order, so the writer decides them in one batch (or a
                // few): the model decides them one after the other.
                let (expected, requests): (Vec<_>, Vec<_>) = ops
                    .iter()
                    .map(|op| plan(op, &mut model, now, &mut ids))
                    .unzip();
                let sent = requests.into_iter().map(|request| send(real, request));
                let actual = runtime.block_on(futures_util::future::join_all(sent));
                (Outcome::Burst(expected), Outcome::Burst(actual))
            }
            _ => {
                let (expected, request) = plan(op, &mut model, now, &mut ids);
                (expected, runtime.block_on(send(real, request)))
            }
        };
        prop_assert_eq!(&actual, &expected, "step {}: {:?}", step_no, op);

        let real = &inventories[0];
        let events = listed(real, &runtime).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let checked = check_events(&model, &events, clock.now_ms());
        prop_assert!(
            checked.is_ok(),
            "step {} ({:?}): {}",
            step_no,
            op,
            checked.unwrap_err()
        );
        // One event read alone too, as the API reads it: the same as listed.
        let one = &events[step_no % events.len()];
        let read = runtime.block_on(real.event(&one.id));
        prop_assert_eq!(read.as_ref(), Ok(one), "step {}", step_no);
    }
    let told = runtime
        .block_on(every_change(&inventories[0]))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let checked = check_told(&model, &told);
    prop_assert!(checked.is_ok(), "changes told: {}", checked.unwrap_err());
    let (mut events, orders) = match store {
        Store::Sqlite(dir) => {
            drop(inventories);
            let mut stored = ledger::Batch::default();
            SqliteLedger::open(dir.path())
                .and_then(|ledger| {
                    ledger.export(1000, &mut |batch| {
                        stored.events.extend(batch.events);
                        stored.orders.extend(batch.orders);
                        Ok(())
                    })
                })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            (stored.events, stored.orders)
        }
        Store::Postgres { url } => runtime
            .block_on(stored_postgres(url, &inventories[0]))
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
    };
    // A store hands its events over in no particular order.
    events.sort_by(|a, b| a.id.cmp(&b.id));
    let checked = check_stored(&model, &events, &orders, clock.now_ms());
    prop_assert!(
        checked.is_ok(),
        "stored at the end: {}",
        checked.unwrap_err()
    );
    Ok(())
}

/// Every change kept, read page by page after the last cursor.
async fn every_change(real: &Inventory) -> Result<Vec<Change>, Error> {
    let mut all: Vec<Change> = Vec::new();
    for _ in 0..10_000 {
        let query = ChangesQuery {
            after: all.last().map_or(0, |c| c.seq),
            limit: 7,
            wait: std::time::Duration::ZERO,
        };
        let page = real.changes(query).await?;
        if page.changes.is_empty() {
            return Ok(all);
        }
        all.extend(page.changes);
    }
    Err(Error::Internal("the feed did not end".into()))
}

/// The outbox against the model: numbered 1, 2, ... in order; for every order exactly the
/// changes of its committed transitions, in order (none for refusals); for every event, sold
/// out and back on sale taking turns from how it began, ending where the model's event is.
fn check_told(model: &Model, told: &[Change]) -> Result<(), String> {
    let mut orders: HashMap<ReservationId, Vec<ChangeType>> = HashMap::new();
    let mut events: HashMap<String, Vec<ChangeType>> = HashMap::new();
    for (n, change) in told.iter().enumerate() {
        if change.seq != n as u64 + 1 {
            return Err(format!("change {n} is numbered {}", change.seq));
        }
        let data: serde_json::Value =
            serde_json::from_str(&change.data).map_err(|e| format!("{change:?}: {e}"))?;
        match change.kind {
            ChangeType::EventSoldOut | ChangeType::EventBackOnSale => {
                if data["event"]["id"] != change.event.as_str() {
                    return Err(format!("{change:?} carries another event"));
                }
                events
                    .entry(change.event.as_str().to_owned())
                    .or_default()
                    .push(change.kind);
            }
            ChangeType::WaitlistOffered | ChangeType::WaitlistOfferExpired => {
                return Err(format!("no one waits in this model: {change:?}"));
            }
            _ => {
                let id = data["order"]["order_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| format!("{change:?} names no order"))?;
                orders.entry(id).or_default().push(change.kind);
            }
        }
    }
    for (id, expected) in &model.told {
        let actual = orders.remove(id).unwrap_or_default();
        if &actual != expected {
            return Err(format!(
                "order {id}: told {actual:?}, expected {expected:?}"
            ));
        }
    }
    if let Some((id, kinds)) = orders.into_iter().next() {
        return Err(format!("order {id} never committed, yet told {kinds:?}"));
    }
    for (name, event) in &model.events {
        let kinds = events.remove(*name).unwrap_or_default();
        let mut on_sale = model.began_on_sale[name];
        for kind in &kinds {
            let expected = if on_sale {
                ChangeType::EventSoldOut
            } else {
                ChangeType::EventBackOnSale
            };
            if *kind != expected {
                return Err(format!("event {name}: {kinds:?} do not take turns"));
            }
            on_sale = !on_sale;
        }
        if on_sale != event.on_sale() {
            return Err(format!(
                "event {name}: told {kinds:?}, but it is {}on sale",
                if event.on_sale() { "" } else { "not " }
            ));
        }
    }
    if let Some((name, kinds)) = events.into_iter().next() {
        return Err(format!("event {name} does not exist, yet told {kinds:?}"));
    }
    Ok(())
}

/// Everything the schema at `url` stores: every event as `real` (a replica on it) lists it, and
/// every order in the table, as `real` reads it.
async fn stored_postgres(url: &str, real: &Inventory) -> Result<(Vec<Event>, Vec<Order>), Error> {
    let mut events = Vec::new();
    let mut query = PageQuery {
        after: None,
        limit: PageLimit::parse("1000").unwrap(),
    };
    loop {
        let page = real.events(&query).await?;
        events.extend(page.events);
        query.after = page.next_after;
        if query.after.is_none() {
            break;
        }
    }
    let mut orders = Vec::new();
    for id in sql(url, "SELECT id::text FROM orders").await {
        let id = uuid::Uuid::parse_str(&id)
            .map_err(|e| Error::Storage(format!("order id '{id}': {e}")))?;
        orders.push(real.order(ReservationId::from(id)).await?);
    }
    Ok((events, orders))
}

/// A schema of its own for one case; dropped on drop, so also when the case panics.
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    fn create(base: &str) -> Self {
        let name = format!("ticketd_model_{}", uuid::Uuid::now_v7().simple());
        block_on(sql(base, &format!("CREATE SCHEMA {name}")));
        Self {
            base: base.to_owned(),
            name,
        }
    }

    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Never panics: this may run while a failed case unwinds.
        let drop_schema = format!("DROP SCHEMA {} CASCADE", self.name);
        block_on(async {
            let Ok((client, connection)) =
                tokio_postgres::connect(&self.base, tokio_postgres::NoTls).await
            else {
                return;
            };
            let driver = tokio::spawn(connection);
            let _ = client.batch_execute(&drop_schema).await;
            drop(client);
            let _ = driver.await;
        });
    }
}

/// Runs `work` on a runtime of its own (callers may be inside another, or unwinding).
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// Runs `statements`; the first column of every row, as text.
async fn sql(url: &str, statements: &str) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test database accepts connections");
    let driver = tokio::spawn(connection);
    let messages = client
        .simple_query(statements)
        .await
        .expect("the test SQL runs");
    drop(client);
    let _ = driver.await;
    messages
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_inventory_behaves_like_the_model(ops in ops()) {
        run_case(&ops, &Store::Sqlite(tempfile::tempdir().unwrap()), 1)?;
    }
}

/// Replicas committing purchases at once, while a reader walks the feed: every page carries on
/// exactly after the reader's cursor. Were numbers given before commit (a sequence), a reader
/// could see 8 while 7 was still to commit, move past it, and never read 7: here that reader
/// would find its next page starting past its cursor (a `cursor_expired`, or a gap).
#[test]
fn replicas_number_changes_in_commit_order() {
    let Some(base) = test_database("replicas_number_changes_in_commit_order") else {
        return;
    };
    const REPLICAS: usize = 3;
    const BUYERS_PER_REPLICA: usize = 4;
    const PURCHASES: usize = 60;
    let schema = Schema::create(&base);
    let store = Store::Postgres { url: schema.url() };
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let inventories: Vec<Arc<Inventory>> = store
        .open(REPLICAS, &clock)
        .into_iter()
        .map(Arc::new)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gala = EventId::parse("gala").unwrap();
    runtime
        .block_on(inventories[0].create_event(gala.clone(), "Gala".into(), 1_000_000))
        .unwrap();
    let total = REPLICAS * BUYERS_PER_REPLICA * PURCHASES;
    let seen = runtime.block_on(async {
        let mut buyers = Vec::new();
        for inventory in &inventories {
            for _ in 0..BUYERS_PER_REPLICA {
                let inventory = Arc::clone(inventory);
                let gala = gala.clone();
                buyers.push(tokio::spawn(async move {
                    for _ in 0..PURCHASES {
                        let one = Quantity::parse(1, 10).unwrap();
                        let reservation =
                            Reservation::new(ReservationId::generate(), gala.clone(), one);
                        inventory.reserve(reservation).await.unwrap();
                    }
                }));
            }
        }
        // The reader walks while they buy, on another replica than most of them.
        let reader = Arc::clone(&inventories[1]);
        let started = std::time::Instant::now();
        let mut cursor = 0;
        let mut seen = 0;
        for _ in 0..100_000 {
            if seen == total || started.elapsed() > std::time::Duration::from_secs(120) {
                break;
            }
            let query = ChangesQuery {
                after: cursor,
                limit: 50,
                wait: std::time::Duration::from_millis(100),
            };
            let page = reader
                .changes(query)
                .await
                .unwrap_or_else(|e| panic!("after {cursor}: {e}"));
            for change in &page.changes {
                assert_eq!(change.seq, cursor + 1, "a change skipped after {cursor}");
                assert_eq!(change.kind, ChangeType::OrderConfirmed);
                cursor = change.seq;
                seen += 1;
            }
        }
        for buyer in buyers {
            buyer.await.unwrap();
        }
        seen
    });
    assert_eq!(seen, total, "every purchase told once");
}

/// The test database's address, from `TICKETD_TEST_DATABASE_URL`. Without it the test named
/// `test` is skipped with a line on stderr, and fails when `CI` is set, so CI cannot skip it by
/// accident.
fn test_database(test: &str) -> Option<String> {
    use std::io::Write;
    let url = std::env::var("TICKETD_TEST_DATABASE_URL").ok();
    if url.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "TICKETD_TEST_DATABASE_URL is not set, and CI must run the PostgreSQL tests"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: set TICKETD_TEST_DATABASE_URL"
        );
    }
    url
}

#[test]
fn replicas_on_postgres_behave_like_the_model() {
    let Some(base) = test_database("replicas_on_postgres_behave_like_the_model") else {
        return;
    };
    let config = ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = ops();
    let result = runner.run(&strategy, |ops| {
        let schema = Schema::create(&base);
        run_case(&ops, &Store::Postgres { url: schema.url() }, 2)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
