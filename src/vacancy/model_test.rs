//! Model-based test: random sequences of create / purchase / hold / confirm / release / cancel /
//! quota resizes / opening, closing and moving the sales windows of categories / joining and
//! leaving waiting lists and answering their offers / time passing / restart, run against the
//! real inventory and, step by step, against a small reference model written for clarity rather
//! than speed. After every step the answers must agree; every quota's counts must match the
//! model's and add up, an offer's hold counting as held like any hold; every waiting-list entry
//! the step changed must be as the model has it (status, place in the queue, offer and when it
//! lapses), and so must every order it changed; and the changes it told must be the model's
//! (see [`check_told`]). At the end the stored orders and entries must be exactly the model's and
//! the stored state must pass [`ledger::audit`].
//!
//! The waiting list is modelled from its rules (see `waitlist.rs`), not from its code: a
//! category's list may be joined only while the category cannot sell the quantity asked; nobody
//! is sold a category anyone waits for; the head of a category's queue is offered a hold of its
//! whole quantity as soon as the category has that many seats, and keeps its turn until then
//! (nobody behind it is served first); an offer that runs out goes to the next entry; confirming
//! the offer's hold accepts it, releasing it or leaving declines it; entries count against
//! `max_per_customer`. Offers last [`OFFER_TTL_SECONDS`], short enough for `Advance` steps to let
//! them run out.
//!
//! Events are today's single counter, or a venue with a VIP cap: quotas `venue`, `vip` and `bar`;
//! categories `standing` → [venue], `vip` → [venue, vip] (two quotas at once) and `bar` → [bar]
//! (disjoint), with or without a per-customer limit. Orders have one to three lines, for a
//! customer or for nobody in particular.
//!
//! The same sequences run on the memory ledger, on the durable SQLite ledger, and on two replicas
//! sharing one PostgreSQL schema, taking turns step by step: to a client they must be
//! indistinguishable from one inventory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;

use super::ledger::{self, Batch, Kept, Ledger, LocalLedger, MemoryLedger};
use super::postgres::{PostgresConfig, PostgresLedger};
use super::sqlite::SqliteLedger;
use super::{CategoryChange, Clock, Inventory, InventoryConfig, Resize};
use crate::domain::{
    CategoryDraft, CategoryId, Change, ChangeFeed, ChangeType, ChangesQuery, CustomerId, Entry,
    EntryStatus, EntryView, Error, Event, EventDraft, EventId, HoldTtl, IdempotencyKey, Joining,
    KeyRecord, LineRequest, Lines, Order, OrderStatus, PageLimit, PageQuery, Quantity, QuotaId,
    Reservation, ReservationId, SalesWindow,
};
use crate::wire::{OrderResponse, WaitlistEntryResponse};

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
/// Most tickets one order (or one entry) may have here.
const QTY_MAX: u32 = 10;
/// How long a waiting-list offer's hold lasts here: short, so that `Advance` steps let offers run
/// out and pass to the next entry.
const OFFER_TTL_SECONDS: u32 = 2;
const OFFER_TTL_MS: i64 = OFFER_TTL_SECONDS as i64 * 1000;

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

/// How an entrant answers an offer: the offer's hold has the entry's id.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// Confirms the hold.
    Accept,
    /// Releases the hold.
    Decline,
    /// Leaves the list, which releases the hold.
    Leave,
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
    /// Joins the waiting list of a category, picked when the step runs (see [`line_category`]).
    Join {
        event: usize,
        category: usize,
        qty: u32,
        customer: Option<usize>,
    },
    /// Leaves a waiting list: an entry joined earlier, or with `None` an id no entry has.
    Leave {
        entry: Option<usize>,
    },
    /// Answers the offer made to an entry earlier (see [`Reply`]).
    Answer {
        offer: usize,
        reply: Reply,
    },
    /// Reservations, changes to orders and to waiting lists sent at once (see [`burst`]).
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
        1 => (0..9u64).prop_map(|capacity| Layout::Single { capacity }),
        2 => (
            (0..9u64, 0..5u64, 0..6u64),
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

/// An event of [`EVENTS`] to reserve, wait for or change: `gala` most often, so that within a
/// case its tickets run out, its waiting lists fill up and tickets come back to them.
fn event() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0), 3 => Just(1), 1 => Just(2)]
}

fn reserve(ttl_seconds: impl Strategy<Value = Option<u32>>) -> impl Strategy<Value = Op> {
    (
        event(),
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

/// Joining a list, mostly for one or two tickets: few enough to be served by what one order
/// gives back.
fn join() -> impl Strategy<Value = Op> {
    (
        event(),
        0..16usize,
        prop_oneof![3 => Just(1), 2 => Just(2), 1 => Just(3)],
        proptest::option::weighted(0.7, 0..CUSTOMERS.len()),
    )
        .prop_map(|(event, category, qty, customer)| Op::Join {
            event,
            category,
            qty,
            customer,
        })
}

fn leave() -> impl Strategy<Value = Op> {
    proptest::option::weighted(0.9, any::<usize>()).prop_map(|entry| Op::Leave { entry })
}

fn answer() -> impl Strategy<Value = Op> {
    let reply = prop_oneof![
        3 => Just(Reply::Accept),
        1 => Just(Reply::Decline),
        1 => Just(Reply::Leave),
    ];
    (any::<usize>(), reply).prop_map(|(offer, reply)| Op::Answer { offer, reply })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..EVENTS.len(), layout()).prop_map(|(event, layout)| Op::Create { event, layout }),
        2 => reserve(Just(None)),
        3 => reserve((1..4u32).prop_map(Some)),
        1 => any::<usize>().prop_map(|order| Op::Confirm { order }),
        2 => any::<usize>().prop_map(|order| Op::Release { order }),
        2 => any::<usize>().prop_map(|order| Op::Cancel { order }),
        4 => join(),
        1 => leave(),
        2 => answer(),
        2 => (event(), 0..8usize, any::<bool>(), 0..10u64).prop_map(
            |(event, quota, add, n)| Op::Resize {
                event,
                quota,
                resize: if add { Resize::Add(n % 5 + 1) } else { Resize::To(n) },
            }
        ),
        1 => (
            (event(), 0..8usize),
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
        2 => burst(),
        2 => (0..2500i64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Restart),
    ]
}

/// Two to five reservations and changes to orders and waiting lists, sent together so one batch
/// decides them: where a customer's tickets are counted within a batch as well as across them,
/// and an offer may be made and answered in the batch that made it.
fn burst() -> impl Strategy<Value = Op> {
    let one = prop_oneof![
        3 => reserve(Just(None)),
        3 => reserve((1..4u32).prop_map(Some)),
        1 => any::<usize>().prop_map(|order| Op::Confirm { order }),
        1 => any::<usize>().prop_map(|order| Op::Release { order }),
        1 => any::<usize>().prop_map(|order| Op::Cancel { order }),
        2 => join(),
        1 => answer(),
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
    (create(1), create(2), proptest::collection::vec(op(), 1..80))
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
    /// A waiting-list entry as joined, left or read.
    Entry(EntryView),
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

    /// The least of `count` over the quotas `category` (an index) draws on.
    fn least(&self, category: usize, count: impl Fn(&Counts) -> u64) -> u64 {
        let quotas = self.categories[category].quotas.iter();
        quotas
            .map(|&quota| count(&self.quotas[quota].1))
            .min()
            .unwrap_or(0)
    }

    /// Places `category` (an index) can still have: the least of its quotas'.
    fn category_available(&self, category: usize) -> u64 {
        self.least(category, |counts| counts.available)
    }

    /// Places `category` (an index) has in all: the least size of its quotas.
    fn category_places(&self, category: usize) -> u64 {
        self.least(category, |counts| counts.capacity)
    }

    /// The category a line or a join names: by id, or the only one when it names none.
    fn category_index(&self, category: Option<&str>) -> Option<usize> {
        match category {
            Some(id) => self.categories.iter().position(|c| c.id == id),
            None if self.categories.len() == 1 => Some(0),
            None => None,
        }
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

/// Whether an order in `status` holds its places (and counts against its customer's limit).
fn takes_places(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Held | OrderStatus::Confirmed)
}

struct ModelEntry {
    event: &'static str,
    /// Index into the event's categories.
    category: usize,
    qty: u32,
    customer: Option<&'static str>,
    status: EntryStatus,
    joined_at_ms: i64,
    updated_at_ms: i64,
    /// When the offer's hold lapses (or lapsed), once offered.
    offer_expires_at_ms: Option<i64>,
}

impl ModelEntry {
    fn waits_for(&self, event: &str, category: usize) -> bool {
        self.status == EntryStatus::Waiting && self.event == event && self.category == category
    }

    /// Its place among the entries of its list: served in `(joined_at_ms, id)` order.
    fn turn(&self, id: ReservationId) -> (i64, ReservationId) {
        (self.joined_at_ms, id)
    }
}

/// What a request does to an existing order.
#[derive(Clone, Copy, Debug)]
enum Act {
    Confirm,
    Release,
    Cancel,
}

/// The reference: plain counts per quota, a list of orders and one of waiting-list entries; no
/// batching, no storage.
#[derive(Default)]
struct Model {
    events: BTreeMap<&'static str, ModelEvent>,
    orders: HashMap<ReservationId, ModelOrder>,
    entries: HashMap<ReservationId, ModelEntry>,
    /// The changes to orders and offers the step so far must tell, in the order they were made
    /// (see [`check_told`]); taken at the end of every step.
    told: Vec<(ReservationId, ChangeType)>,
}

impl Model {
    /// Expires every hold due by `now`, soonest first and then by id, as a writer does: each
    /// expiry may serve a waiting list before the next.
    fn expire(&mut self, now: i64) {
        let mut due: Vec<(i64, ReservationId)> = self
            .orders
            .iter()
            .filter(|(_, order)| order.status == OrderStatus::Held)
            .filter_map(|(id, order)| Some((order.expires_at_ms?, *id)))
            .filter(|(expires_at_ms, _)| *expires_at_ms <= now)
            .collect();
        due.sort();
        for (_, id) in due {
            self.transition(id, OrderStatus::Expired, now);
        }
    }

    /// Tickets `customer` holds, has bought or waits for in `event`.
    fn taken(&self, event: &str, customer: &str) -> u64 {
        let ordered: u64 = self
            .orders
            .values()
            .filter(|order| order.event == event && order.customer == Some(customer))
            .filter(|order| takes_places(order.status))
            .flat_map(|order| order.lines.iter().map(|(_, qty)| qty))
            .sum();
        let waiting: u64 = self
            .entries
            .values()
            .filter(|entry| entry.event == event && entry.customer == Some(customer))
            .filter(|entry| entry.status == EntryStatus::Waiting)
            .map(|entry| u64::from(entry.qty))
            .sum();
        ordered + waiting
    }

    /// Whether anyone waits for `category` (an index) of `event`.
    fn anyone_waits(&self, event: &str, category: usize) -> bool {
        self.entries
            .values()
            .any(|entry| entry.waits_for(event, category))
    }

    /// The entry `category` of `event` serves next: the first of its waiting entries in turn.
    fn head(&self, event: &str, category: usize) -> Option<ReservationId> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.waits_for(event, category))
            .min_by_key(|(id, entry)| entry.turn(**id))
            .map(|(id, _)| *id)
    }

    /// Whether the public could buy a seat of `event`: a category with a place in every quota it
    /// draws on, that nobody waits for (sales windows do not count; see `outbox.rs`).
    fn on_sale(&self, event: &str) -> bool {
        let modelled = &self.events[event];
        (0..modelled.categories.len()).any(|category| {
            modelled.category_available(category) > 0 && !self.anyone_waits(event, category)
        })
    }

    /// Whether each event is on sale now.
    fn on_sale_by_event(&self) -> BTreeMap<&'static str, bool> {
        let names = self.events.keys();
        names.map(|name| (*name, self.on_sale(name))).collect()
    }

    /// The entry with `id` as the inventory shows it: while waiting, its place among the waiting
    /// entries of its category (1 is next).
    fn view(&self, id: ReservationId) -> EntryView {
        let entry = &self.entries[&id];
        let position = (entry.status == EntryStatus::Waiting).then(|| {
            let ahead = self
                .entries
                .iter()
                .filter(|(other, e)| {
                    e.waits_for(entry.event, entry.category) && e.turn(**other) < entry.turn(id)
                })
                .count();
            u32::try_from(ahead + 1).unwrap()
        });
        let category = self.events[entry.event].categories[entry.category].id;
        EntryView {
            entry: Entry {
                id,
                event: EventId::parse(entry.event).unwrap(),
                category: CategoryId::parse(category).unwrap(),
                qty: entry.qty,
                customer: entry.customer.map(|c| CustomerId::parse(c).unwrap()),
                status: entry.status,
                joined_at_ms: entry.joined_at_ms,
                updated_at_ms: entry.updated_at_ms,
                offer_expires_at_ms: entry.offer_expires_at_ms,
            },
            position,
        }
    }

    /// Every entry as the inventory shows it.
    fn views(&self) -> HashMap<ReservationId, EntryView> {
        let ids = self.entries.keys();
        ids.map(|id| (*id, self.view(*id))).collect()
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
            let Some(index) = event.category_index(category) else {
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
        // Nobody is sold a category anyone waits for: the first line of one is short of all of
        // it, in the first quota (in the event's order) the category draws on.
        let waited = resolved.iter().find(|&&(c, _)| self.anyone_waits(name, c));
        if let Some(&(category, _)) = waited {
            let quota = event.categories[category].quotas.iter().min().unwrap();
            return Outcome::Short {
                category: event.categories[category].id.into(),
                quota: event.quotas[*quota].0.into(),
                available: 0,
                remaining: event.quotas[0].1.available,
            };
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
        self.told.push((id, told));
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

    /// Joins the list of a category that cannot sell `qty` to the public.
    fn join(
        &mut self,
        id: ReservationId,
        name: &'static str,
        category: Option<&'static str>,
        qty: u32,
        customer: Option<&'static str>,
        now: i64,
    ) -> Outcome {
        let Some(event) = self.events.get(name) else {
            return Outcome::Failed("unknown_event");
        };
        let Some(index) = event.category_index(category) else {
            return Outcome::Failed("unknown_category");
        };
        if !event.categories[index].on_sale(now) {
            return Outcome::Failed("not_on_sale");
        }
        if customer.is_none() && event.customer_required {
            return Outcome::Failed("customer_required");
        }
        if let (Some(customer), Some(max)) = (customer, event.max_per_customer) {
            let taken = self.taken(name, customer);
            if taken + u64::from(qty) > max {
                return Outcome::LimitReached {
                    may_still: max.saturating_sub(taken),
                };
            }
        }
        if u64::from(qty) > event.category_places(index) {
            return Outcome::Failed("invalid_quantity");
        }
        if !self.anyone_waits(name, index) && event.category_available(index) >= u64::from(qty) {
            return Outcome::Failed("tickets_available");
        }
        let entry = ModelEntry {
            event: name,
            category: index,
            qty,
            customer,
            status: EntryStatus::Waiting,
            joined_at_ms: now,
            updated_at_ms: now,
            offer_expires_at_ms: None,
        };
        self.entries.insert(id, entry);
        Outcome::Entry(self.view(id))
    }

    /// Leaves a list: a waiting entry just leaves, an offered one declines its offer; either way
    /// the seats may go to the next entry. An entry off the list already is answered as it is.
    fn leave(&mut self, id: ReservationId, now: i64) -> Outcome {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Outcome::Failed("unknown_waitlist_entry");
        };
        match entry.status {
            EntryStatus::Waiting => {
                entry.status = EntryStatus::Left;
                entry.updated_at_ms = now;
                let event = entry.event;
                self.offer(event, now);
            }
            EntryStatus::Offered => self.transition(id, OrderStatus::Released, now),
            EntryStatus::Accepted | EntryStatus::Expired | EntryStatus::Left => {}
        }
        Outcome::Entry(self.view(id))
    }

    fn apply(&mut self, id: ReservationId, act: Act, now: i64) -> Outcome {
        let Some(order) = self.orders.get(&id) else {
            return Outcome::Failed("unknown_order");
        };
        let to = match (act, order.status, order.expires_at_ms) {
            (Act::Confirm, OrderStatus::Held, _) => OrderStatus::Confirmed,
            (Act::Confirm, OrderStatus::Confirmed, Some(_)) => {
                return Outcome::Status(OrderStatus::Confirmed);
            }
            (Act::Confirm, OrderStatus::Expired, _) => return Outcome::Failed("hold_expired"),
            (Act::Release, OrderStatus::Held, _) => OrderStatus::Released,
            (Act::Release, status @ (OrderStatus::Released | OrderStatus::Expired), _) => {
                return Outcome::Status(status);
            }
            (Act::Cancel, OrderStatus::Confirmed, _) => OrderStatus::Cancelled,
            (Act::Cancel, OrderStatus::Cancelled, _) => {
                return Outcome::Cancelled { changed: false };
            }
            _ => return Outcome::Failed("wrong_state"),
        };
        self.transition(id, to, now);
        match act {
            Act::Cancel => Outcome::Cancelled { changed: true },
            Act::Confirm | Act::Release => Outcome::Status(to),
        }
    }

    /// Moves order `id` to `to`: its places, the entry whose offer it is (accepted, expired or
    /// left), and what it tells. Places that come back go to the event's waiting lists first.
    fn transition(&mut self, id: ReservationId, to: OrderStatus, now: i64) {
        let order = self.orders.get_mut(&id).unwrap();
        let from = order.status;
        order.status = to;
        let event = order.event;
        let lines = order.lines.clone();
        self.events.get_mut(event).unwrap().shift(&lines, from, to);
        let offer = self
            .entries
            .get_mut(&id)
            .filter(|entry| entry.status == EntryStatus::Offered);
        let told = match (to, offer.is_some()) {
            (OrderStatus::Confirmed, _) => ChangeType::OrderConfirmed,
            (OrderStatus::Released, _) => ChangeType::HoldReleased,
            (OrderStatus::Cancelled, _) => ChangeType::OrderCancelled,
            (OrderStatus::Expired, true) => ChangeType::WaitlistOfferExpired,
            (OrderStatus::Expired, false) => ChangeType::HoldExpired,
            (OrderStatus::Held, _) => unreachable!("no request makes a hold of an order"),
        };
        if let Some(entry) = offer {
            entry.status = match to {
                OrderStatus::Confirmed => EntryStatus::Accepted,
                OrderStatus::Expired => EntryStatus::Expired,
                _ => EntryStatus::Left,
            };
            entry.updated_at_ms = now;
        }
        self.told.push((id, told));
        if takes_places(from) && !takes_places(to) {
            self.offer(event, now);
        }
    }

    /// Serves `event`'s waiting lists, category by category in the event's order: the head of a
    /// queue is offered a hold of its whole quantity while the category has that many places; a
    /// head that does not fit keeps its turn, and nobody behind it is served.
    fn offer(&mut self, event: &'static str, now: i64) {
        for category in 0..self.events[event].categories.len() {
            while let Some(id) = self.head(event, category) {
                let modelled = self.events.get_mut(event).unwrap();
                let entry = self.entries.get_mut(&id).unwrap();
                let qty = u64::from(entry.qty);
                if modelled.category_available(category) < qty {
                    break;
                }
                let lines = vec![(category, qty)];
                modelled.shift(&lines, OrderStatus::Released, OrderStatus::Held);
                let expires_at_ms = now + OFFER_TTL_MS;
                entry.status = EntryStatus::Offered;
                entry.updated_at_ms = now;
                entry.offer_expires_at_ms = Some(expires_at_ms);
                let hold = ModelOrder {
                    event,
                    lines,
                    customer: entry.customer,
                    status: OrderStatus::Held,
                    expires_at_ms: Some(expires_at_ms),
                };
                self.orders.insert(id, hold);
                self.told.push((id, ChangeType::WaitlistOffered));
            }
        }
    }

    fn resize(&mut self, name: &'static str, quota: &str, resize: Resize, now: i64) -> Outcome {
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
        // Places a quota grows by go to the waiting lists first.
        self.offer(name, now);
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

    /// The model's own books, so that a slip in the model is not mistaken for one of the
    /// inventory's: every quota's held and sold places are exactly its orders' (offers' holds
    /// among them); every offered entry has its hold, of its whole quantity, lapsing when the
    /// offer does; and no waiting head fits its category (it would have been offered).
    fn audit(&self) -> Result<(), String> {
        for (name, event) in &self.events {
            let mut counted = vec![(0, 0); event.quotas.len()];
            let orders = self.orders.values().filter(|order| order.event == *name);
            for order in orders {
                for &(category, qty) in &order.lines {
                    for &quota in &event.categories[category].quotas {
                        match order.status {
                            OrderStatus::Held => counted[quota].0 += qty,
                            OrderStatus::Confirmed => counted[quota].1 += qty,
                            _ => {}
                        }
                    }
                }
            }
            for ((quota, counts), held_sold) in event.quotas.iter().zip(counted) {
                if (counts.held, counts.sold) != held_sold {
                    return Err(format!(
                        "the model's {quota} of {name} counts {counts:?}, its orders {held_sold:?}"
                    ));
                }
            }
            for category in 0..event.categories.len() {
                if let Some(head) = self.head(name, category) {
                    let qty = u64::from(self.entries[&head].qty);
                    if event.category_available(category) >= qty {
                        return Err(format!("the model left {head} of {name} waiting"));
                    }
                }
            }
        }
        for (id, entry) in &self.entries {
            let hold = self.orders.get(id).map(|hold| {
                let lines = (hold.lines.clone(), hold.customer, hold.expires_at_ms);
                (hold.status == OrderStatus::Held, lines)
            });
            let offer = entry.offer_expires_at_ms.map(|expires_at_ms| {
                let lines = vec![(entry.category, u64::from(entry.qty))];
                (
                    entry.status == EntryStatus::Offered,
                    (lines, entry.customer, Some(expires_at_ms)),
                )
            });
            if hold != offer {
                return Err(format!(
                    "the model's entry {id} and its offer's hold disagree"
                ));
            }
        }
        Ok(())
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
    Memory(KeptMemory),
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
                    waitlist_offer_ttl_seconds: OFFER_TTL_SECONDS,
                    ..InventoryConfig::default()
                };
                let clock = Arc::clone(clock) as Arc<dyn Clock>;
                match self {
                    Store::Memory(ledger) => {
                        Inventory::open_with_clock(Box::new(ledger.clone()), config, clock)
                    }
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

/// The memory ledger of a case, kept when its inventory is dropped: a restart opens what was
/// committed, as it would a file, and the end of the case reads what is stored.
#[derive(Clone, Default)]
struct KeptMemory(Arc<parking_lot::Mutex<MemoryLedger>>);

impl LocalLedger for KeptMemory {}

impl Ledger for KeptMemory {
    fn load(&mut self) -> Result<Vec<Event>, Error> {
        self.0.lock().load()
    }

    fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
        self.0.lock().live_holds()
    }

    fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
        self.0.lock().find_order(id)
    }

    fn find_key(&mut self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
        self.0.lock().find_key(key)
    }

    fn customer_taken(&mut self, event: &EventId, customer: &CustomerId) -> Result<u64, Error> {
        self.0.lock().customer_taken(event, customer)
    }

    fn waitlist(&mut self, event: &EventId) -> Result<Vec<Entry>, Error> {
        self.0.lock().waitlist(event)
    }

    fn find_entry(&mut self, id: ReservationId) -> Result<Option<Entry>, Error> {
        self.0.lock().find_entry(id)
    }

    fn last_change_seq(&mut self) -> Result<u64, Error> {
        self.0.lock().last_change_seq()
    }

    fn changes(&mut self, after: u64, limit: usize) -> Result<Kept, Error> {
        self.0.lock().changes(after, limit)
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        self.0.lock().commit(batch)
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
    Join(Joining),
    Leave(ReservationId),
    Nothing,
}

/// What earlier steps made, for later steps to name.
#[derive(Default)]
struct Made {
    /// Orders made: reservations accepted and offers' holds.
    orders: Vec<ReservationId>,
    /// Waiting-list entries made.
    entries: Vec<ReservationId>,
    /// Entries offered a hold.
    offers: Vec<ReservationId>,
    /// Every id a reservation or a join was asked under, made or refused.
    asked: Vec<ReservationId>,
    /// Every id a join was asked under, made or refused.
    joins: Vec<ReservationId>,
}

/// One of `made`, picked by `n`; none when nothing was made yet.
fn pick(made: &[ReservationId], n: usize) -> Option<ReservationId> {
    (!made.is_empty()).then(|| made[n % made.len()])
}

/// Runs `op` on the model: what it answers, and what to ask of the inventory.
fn plan(op: &Op, model: &mut Model, now: i64, made: &mut Made) -> (Outcome, Request) {
    let event_id = |event: usize| EventId::parse(EVENTS[event]).unwrap();
    match op {
        Op::Create { event, layout } => {
            let name = EVENTS[*event];
            let expected = if model.events.contains_key(name) {
                Outcome::Failed("event_exists")
            } else {
                // Made with nothing to sell, it is told sold out (see [`expected_told`]).
                model.events.insert(name, ModelEvent::new(layout));
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
            made.asked.push(id);
            if let Outcome::Reserved { .. } = expected {
                made.orders.push(id);
            }
            let lines = asked
                .iter()
                .map(|(category, qty)| LineRequest {
                    category: category.map(|c| CategoryId::parse(c).unwrap()),
                    qty: Quantity::parse(i64::from(*qty), QTY_MAX).unwrap(),
                })
                .collect();
            let reservation = Reservation {
                id,
                event: event_id(*event),
                lines: Lines::parse(lines, QTY_MAX).unwrap(),
                customer: customer.map(|c| CustomerId::parse(c).unwrap()),
                hold_ttl_seconds: ttl_seconds.map(|t| HoldTtl::parse(t.into(), u32::MAX).unwrap()),
                key: None,
            };
            (expected, Request::Reserve(reservation))
        }
        Op::Confirm { order } | Op::Release { order } | Op::Cancel { order } => {
            let Some(id) = pick(&made.orders, *order) else {
                return (Outcome::Skipped, Request::Nothing);
            };
            let (act, request) = match op {
                Op::Confirm { .. } => (Act::Confirm, Request::Confirm(id)),
                Op::Release { .. } => (Act::Release, Request::Release(id)),
                _ => (Act::Cancel, Request::Cancel(id)),
            };
            (model.apply(id, act, now), request)
        }
        Op::Join {
            event,
            category,
            qty,
            customer,
        } => {
            let name = EVENTS[*event];
            let categories = model
                .events
                .get(name)
                .map(ModelEvent::category_ids)
                .unwrap_or_default();
            let category = line_category(*category, &categories);
            let customer = customer.map(|c| CUSTOMERS[c]);
            let id = ReservationId::generate();
            let expected = model.join(id, name, category, *qty, customer, now);
            made.asked.push(id);
            made.joins.push(id);
            if let Outcome::Entry(_) = expected {
                made.entries.push(id);
            }
            let joining = Joining {
                id,
                event: event_id(*event),
                category: category.map(|c| CategoryId::parse(c).unwrap()),
                qty: Quantity::parse(i64::from(*qty), QTY_MAX).unwrap(),
                customer: customer.map(|c| CustomerId::parse(c).unwrap()),
            };
            (expected, Request::Join(joining))
        }
        Op::Leave { entry } => {
            let id = match entry {
                None => ReservationId::generate(),
                Some(entry) => match pick(&made.entries, *entry) {
                    Some(id) => id,
                    None => return (Outcome::Skipped, Request::Nothing),
                },
            };
            (model.leave(id, now), Request::Leave(id))
        }
        Op::Answer { offer, reply } => {
            let Some(id) = pick(&made.offers, *offer) else {
                return (Outcome::Skipped, Request::Nothing);
            };
            match reply {
                Reply::Accept => (model.apply(id, Act::Confirm, now), Request::Confirm(id)),
                Reply::Decline => (model.apply(id, Act::Release, now), Request::Release(id)),
                Reply::Leave => (model.leave(id, now), Request::Leave(id)),
            }
        }
        Op::Resize {
            event,
            quota,
            resize,
        } => {
            let name = EVENTS[*event];
            let quotas = model.events.get(name).map(ModelEvent::quota_ids);
            let quota = admin_pick(*quota, &quotas.unwrap_or_default(), UNKNOWN_QUOTA);
            let expected = model.resize(name, quota, *resize, now);
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
        Request::Join(joining) => outcome(real.join_waitlist(joining).await, Outcome::Entry),
        Request::Leave(id) => outcome(real.leave_waitlist(id).await, Outcome::Entry),
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

/// `order` (stored, read, or as a change tells it) is the model's: its event, status, lines,
/// customer and deadline.
fn order_as_modelled(model: &Model, order: &Order) -> Result<(), String> {
    let Some(modelled) = model.orders.get(&order.id) else {
        return Err(format!("order {} is not in the model", order.id));
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
    let status = (order.event.as_str(), order.status, order.expires_at_ms);
    let wanted = (modelled.event, modelled.status, modelled.expires_at_ms);
    if (status, lines, customer) != (wanted, expected.clone(), modelled.customer) {
        return Err(format!(
            "order {} is {status:?} of {:?} for {customer:?}, the model's {wanted:?} of \
             {expected:?} for {:?}",
            order.id, order.lines, modelled.customer
        ));
    }
    Ok(())
}

/// What a store holds at the end of a case: it passes [`ledger::audit`], its events are the
/// model's, and its orders are exactly the model's (none for a refused reservation), offers'
/// holds among them, each as the model has it.
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
        order_as_modelled(model, order)?;
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
    let mut made = Made::default();
    // The last change read from the feed.
    let mut cursor = 0;

    for (step_no, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        let on_sale_before = model.on_sale_by_event();
        let views_before = model.views();
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
                    .map(|op| plan(op, &mut model, now, &mut made))
                    .unzip();
                let sent = requests.into_iter().map(|request| send(real, request));
                let actual = runtime.block_on(futures_util::future::join_all(sent));
                (Outcome::Burst(expected), Outcome::Burst(actual))
            }
            _ => {
                let (expected, request) = plan(op, &mut model, now, &mut made);
                (expected, runtime.block_on(send(real, request)))
            }
        };
        prop_assert_eq!(&actual, &expected, "step {}: {:?}", step_no, op);
        let changed = std::mem::take(&mut model.told);
        // An offer's hold is an order like any: later steps may confirm, release or cancel it.
        let offers = changed
            .iter()
            .filter(|(_, kind)| *kind == ChangeType::WaitlistOffered);
        let offers: Vec<ReservationId> = offers.map(|(id, _)| *id).collect();
        made.orders.extend(&offers);
        made.offers.extend(offers);
        let failed = |what: String| TestCaseError::fail(format!("step {step_no} ({op:?}): {what}"));
        model.audit().map_err(failed)?;

        let real = &inventories[0];
        let events = listed(real, &runtime).map_err(|e| failed(e.to_string()))?;
        check_events(&model, &events, clock.now_ms()).map_err(failed)?;
        // One event read alone too, as the API reads it: the same as listed.
        let one = &events[step_no % events.len()];
        let read = runtime.block_on(real.event(&one.id));
        prop_assert_eq!(read.as_ref(), Ok(one), "step {}", step_no);

        let told = runtime
            .block_on(changes_after(real, cursor))
            .map_err(|e| failed(e.to_string()))?;
        let one_batch = !matches!(op, Op::Burst { .. });
        check_told(&model, &on_sale_before, &changed, &told, cursor, one_batch).map_err(failed)?;
        cursor = told.last().map_or(cursor, |change| change.seq);

        // Every entry the step changed (itself, or its place in the queue), and one more.
        let views = model.views();
        let mut entries: Vec<ReservationId> = views
            .iter()
            .filter(|(id, view)| views_before.get(id) != Some(view))
            .map(|(id, _)| *id)
            .collect();
        entries.extend(pick(&made.entries, step_no));
        entries.sort();
        entries.dedup();
        for id in entries {
            let read = runtime.block_on(real.waitlist_entry(id));
            prop_assert_eq!(read.as_ref(), Ok(&views[&id]), "step {}: {:?}", step_no, op);
        }
        // Every order the step changed, offers' holds among them.
        let mut orders: Vec<ReservationId> = changed.iter().map(|(id, _)| *id).collect();
        orders.sort();
        orders.dedup();
        for id in orders {
            let read = runtime
                .block_on(real.order(id))
                .map_err(|e| failed(format!("order {id}: {e}")))?;
            order_as_modelled(&model, &read).map_err(failed)?;
        }
    }
    // Every join's entry as the model has it, and none for a refused one.
    for id in &made.joins {
        let read = runtime.block_on(inventories[0].waitlist_entry(*id));
        let expected = match model.entries.contains_key(id) {
            true => Outcome::Entry(model.view(*id)),
            false => Outcome::Failed("unknown_waitlist_entry"),
        };
        prop_assert_eq!(outcome(read, Outcome::Entry), expected, "at the end");
    }
    let (mut events, orders) = match store {
        Store::Memory(ledger) => {
            drop(inventories);
            stored_memory(ledger, &made.asked).map_err(|e| TestCaseError::fail(e.to_string()))?
        }
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

/// Everything a memory ledger stores: its events, and its orders. The ledger lists no orders, so
/// every id a case asked for is looked up: no order can have another (an offer's hold has its
/// entry's).
fn stored_memory(
    ledger: &KeptMemory,
    asked: &[ReservationId],
) -> Result<(Vec<Event>, Vec<Order>), Error> {
    let mut ledger = ledger.clone();
    let events = ledger.load()?;
    let mut orders = Vec::new();
    for id in asked {
        orders.extend(ledger.find_order(*id)?);
    }
    Ok((events, orders))
}

/// Every change kept after `after`, read page by page.
async fn changes_after(real: &Inventory, after: u64) -> Result<Vec<Change>, Error> {
    let mut all: Vec<Change> = Vec::new();
    for _ in 0..10_000 {
        let query = ChangesQuery {
            after: all.last().map_or(after, |c| c.seq),
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

/// What one change tells, reduced: its type, and what it is about (an order's or an entry's id,
/// or an event's).
type Told = (ChangeType, String);

fn is_about_event(kind: ChangeType) -> bool {
    matches!(kind, ChangeType::EventSoldOut | ChangeType::EventBackOnSale)
}

/// The changes of one step, numbered on from `after`, against the model. Each must be about an
/// order, entry or event of the model and carry it as the model has it (see [`about`]). The
/// orders' and offers' changes must be those the step made (`changed`, in the order made), and
/// every event's `sold_out` and `back_on_sale` must take turns from whether it was on sale
/// before the step (`before`) to whether it is now.
///
/// A step decided in one batch (`one_batch`) tells exactly that, in the outbox's order (see
/// [`expected_told`]). A burst may be decided in several batches, each telling its own changes
/// and comparing its events with the batch before: there each order's changes must be in order,
/// and each event's must take turns.
fn check_told(
    model: &Model,
    before: &BTreeMap<&str, bool>,
    changed: &[(ReservationId, ChangeType)],
    told: &[Change],
    after: u64,
    one_batch: bool,
) -> Result<(), String> {
    let mut actual: Vec<Told> = Vec::new();
    for (n, change) in told.iter().enumerate() {
        let seq = after + 1 + n as u64;
        if change.seq != seq {
            return Err(format!("change {seq} is numbered {}", change.seq));
        }
        actual.push((change.kind, about(model, change, one_batch)?));
    }
    let expected = expected_told(model, before, changed);
    if one_batch {
        if actual != expected {
            return Err(format!("told {actual:?}, the model's {expected:?}"));
        }
        return Ok(());
    }
    let of_orders = |told: &[Told]| {
        let mut by_order: BTreeMap<String, Vec<ChangeType>> = BTreeMap::new();
        for (kind, about) in told.iter().filter(|(kind, _)| !is_about_event(*kind)) {
            by_order.entry(about.clone()).or_default().push(*kind);
        }
        by_order
    };
    if of_orders(&actual) != of_orders(&expected) {
        return Err(format!("told {actual:?}, the model's {expected:?}"));
    }
    for name in model.events.keys() {
        let kinds: Vec<ChangeType> = actual
            .iter()
            .filter(|(kind, about)| is_about_event(*kind) && about == name)
            .map(|(kind, _)| *kind)
            .collect();
        let mut on_sale = before.get(name).copied().unwrap_or(true);
        for kind in &kinds {
            let turn = if on_sale {
                ChangeType::EventSoldOut
            } else {
                ChangeType::EventBackOnSale
            };
            if *kind != turn {
                return Err(format!("event {name}: {kinds:?} do not take turns"));
            }
            on_sale = !on_sale;
        }
        if on_sale != model.on_sale(name) {
            return Err(format!("event {name}: told {kinds:?}, but it is not so"));
        }
    }
    Ok(())
}

/// The changes a step decided in one batch tells, as the model has it and in the outbox's
/// order: every order's (and offer's) changes together, the orders in the order first changed;
/// then, by id, each event that went from on sale to sold out or back (from `before`: an event
/// the step made counts as on sale before it, so one made with nothing to sell is sold out).
fn expected_told(
    model: &Model,
    before: &BTreeMap<&str, bool>,
    changed: &[(ReservationId, ChangeType)],
) -> Vec<Told> {
    let mut firsts: Vec<ReservationId> = Vec::new();
    for (id, _) in changed {
        if !firsts.contains(id) {
            firsts.push(*id);
        }
    }
    let mut told: Vec<Told> = Vec::new();
    for first in firsts {
        let kinds = changed.iter().filter(|(id, _)| *id == first);
        told.extend(kinds.map(|(id, kind)| (*kind, id.to_string())));
    }
    for name in model.events.keys() {
        let was = before.get(name).copied().unwrap_or(true);
        if was != model.on_sale(name) {
            let kind = if was {
                ChangeType::EventSoldOut
            } else {
                ChangeType::EventBackOnSale
            };
            told.push((kind, (*name).to_owned()));
        }
    }
    told
}

/// What `change` is about, once its data is checked against the model: an event's change carries
/// the event; an offer's, the entry as the model has it (as offered, for `waitlist.offered`:
/// whatever became of it later in the step); an order's, the order, as the model has it at the
/// end of the step when the step was decided in one batch (`settled`).
fn about(model: &Model, change: &Change, settled: bool) -> Result<String, String> {
    let data: serde_json::Value =
        serde_json::from_str(&change.data).map_err(|e| format!("{change:?}: {e}"))?;
    let event = change.event.as_str();
    match change.kind {
        ChangeType::EventSoldOut | ChangeType::EventBackOnSale => {
            if data["event"]["id"] != event || !model.events.contains_key(event) {
                return Err(format!(
                    "{change:?} carries another event, or one not modelled"
                ));
            }
            Ok(event.to_owned())
        }
        ChangeType::WaitlistOffered | ChangeType::WaitlistOfferExpired => {
            let entry: WaitlistEntryResponse = serde_json::from_value(data["entry"].clone())
                .map_err(|e| format!("{change:?}: {e}"))?;
            let told = entry
                .into_domain()
                .map_err(|e| format!("{change:?}: {e}"))?;
            let id = told.entry.id;
            if !model.entries.contains_key(&id) {
                return Err(format!("{change:?} tells of an entry not modelled"));
            }
            let mut expected = model.view(id);
            expected.position = None;
            if change.kind == ChangeType::WaitlistOffered {
                expected.entry.status = EntryStatus::Offered;
            }
            if told != expected || told.entry.event.as_str() != event {
                return Err(format!(
                    "{change:?} tells {told:?}, the model's {expected:?}"
                ));
            }
            Ok(id.to_string())
        }
        ChangeType::OrderConfirmed
        | ChangeType::OrderCancelled
        | ChangeType::HoldCreated
        | ChangeType::HoldExpired
        | ChangeType::HoldReleased => {
            let order: OrderResponse = serde_json::from_value(data["order"].clone())
                .map_err(|e| format!("{change:?}: {e}"))?;
            let order = order
                .into_domain()
                .map_err(|e| format!("{change:?}: {e}"))?;
            if order.event.as_str() != event {
                return Err(format!("{change:?} carries an order of another event"));
            }
            if settled {
                order_as_modelled(model, &order)?;
            } else if !model.orders.contains_key(&order.id) {
                return Err(format!("{change:?} tells of an order not modelled"));
            }
            Ok(order.id.to_string())
        }
    }
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

proptest! {
    // The quickest store runs the most cases, so that rare sequences (a customer's join and
    // purchase decided in one batch, an offer running out while the next entry waits) come up
    // more often.
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_memory_store_behaves_like_the_model(ops in ops()) {
        run_case(&ops, &Store::Memory(KeptMemory::default()), 1)?;
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
    // Fewer cases than on the stores of one process: every step is several round trips to the
    // database, and these already take the best part of a minute on a small machine. What the
    // stores share is checked on many more cases by the tests above.
    let config = ProptestConfig {
        cases: 64,
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
