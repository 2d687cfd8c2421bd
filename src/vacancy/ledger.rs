//! Where committed events and orders live.
//!
//! A [`Ledger`] only stores: it never decides. The inventory's writer reads what a batch names,
//! decides every request against that, and hands the ledger one [`Batch`] per group commit, so
//! each backend has a single, simple job: make a whole batch durable, or none of it.
//!
//! Two kinds of store, two types, chosen once at start-up:
//! - a [`LocalLedger`] belongs to one process: nothing changes it but this process's writer, so
//!   the writer's memory of its events is the truth and reads are served from that memory;
//! - a [`SharedLedger`] sits under several vacancy replicas. Before the writer decides a batch,
//!   [`SharedLedger::begin`] opens a transaction, locks the rows the batch will touch and hands
//!   back their committed state, which replaces the writer's memory for that batch; reads go to
//!   the database. Decisions stay in one place and stay the same; only their starting point
//!   comes from the database.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::outbox::Kept;
use crate::domain::{
    Change, ChangeType, CustomerId, Entry, EntryStatus, Error, Event, EventId, EventsPage,
    IdempotencyKey, KeyRecord, Order, OrderStatus, PageQuery, ReservationId,
};

/// The deadline of a held order read from a store. ticketd gives every hold a deadline (every hold
/// has a ttl), so a held order without one was not written by ticketd: it is refused, naming the
/// order, rather than left to hold its tickets forever. Stores call this where they decode rows.
pub fn hold_deadline(id: ReservationId, expires_at_ms: Option<i64>) -> Result<i64, Error> {
    expires_at_ms.ok_or_else(|| {
        Error::Storage(format!(
            "order {id} is held but has no deadline; ticketd never writes such an order"
        ))
    })
}

/// A change as a store keeps it, read back: its kind and event are checked as strictly as when
/// it was written. Stores call this where they decode rows.
pub fn stored_change(
    seq: i64,
    kind: &str,
    event: &str,
    at_ms: i64,
    data: String,
) -> Result<Change, Error> {
    Ok(Change {
        seq: u64::try_from(seq).unwrap_or(0),
        kind: ChangeType::parse(kind).ok_or_else(|| {
            Error::Storage(format!(
                "change {seq} is of a kind ticketd does not know: {kind:?}"
            ))
        })?,
        event: EventId::parse(event)
            .map_err(|e| Error::Storage(format!("change {seq} names an unreadable event: {e}")))?,
        at_ms,
        data: data.into(),
    })
}

/// Checks that every quota's `held` and `sold` equal the tickets of the live holds and confirmed
/// orders drawing on it: a store that fails this was changed behind ticketd's back or lost writes.
pub fn audit(events: &[Event], orders: &[Order]) -> Result<(), Error> {
    let mut counted: HashMap<&EventId, Vec<[u64; 2]>> = events
        .iter()
        .map(|event| (&event.id, vec![[0, 0]; event.quotas.len()]))
        .collect();
    let by_id: HashMap<&EventId, &Event> = events.iter().map(|event| (&event.id, event)).collect();
    for order in orders {
        let slot = match order.status {
            OrderStatus::Held => 0,
            OrderStatus::Confirmed => 1,
            OrderStatus::Cancelled | OrderStatus::Released | OrderStatus::Expired => continue,
        };
        let (Some(event), Some(counts)) = (by_id.get(&order.event), counted.get_mut(&order.event))
        else {
            return Err(Error::Storage(format!(
                "order {} is of '{}', which is not stored",
                order.id, order.event
            )));
        };
        for line in order.lines.iter() {
            let category = event.catalogue.category(&line.category).ok_or_else(|| {
                Error::Storage(format!(
                    "order {} has a line of category '{}', which '{}' does not have",
                    order.id, line.category, order.event
                ))
            })?;
            for &quota in &category.quotas {
                counts[quota][slot] += u64::from(line.qty);
            }
        }
    }
    for event in events {
        for (quota, counts) in event.quotas.iter().zip(&counted[&event.id]) {
            let stored = [quota.stock.held, quota.stock.sold];
            if stored != *counts {
                return Err(Error::Storage(format!(
                    "quota '{}' of '{}' counts {stored:?} held/sold but its orders add up to {counts:?}",
                    quota.id, event.id
                )));
            }
        }
    }
    Ok(())
}

/// Everything one group commit writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// The new state of every event the batch created or changed.
    pub events: Vec<Event>,
    /// The new state of every order the batch created or changed.
    pub orders: Vec<Order>,
    /// The new state of every waiting-list entry the batch created or changed.
    pub entries: Vec<Entry>,
    /// Idempotency keys first used (or reused after they lapsed) in this batch.
    pub keys: Vec<KeyRecord>,
    /// Forget idempotency keys created before this time.
    pub purge_keys_before_ms: Option<i64>,
    /// Keys created before this time have lapsed: `keys` may replace them, and nothing younger.
    pub keys_lapsed_before_ms: i64,
    /// What integrators hear about the batch, in order. A store of one process stores them with
    /// the numbers the writer gave them (the last committed, plus one on); a shared store numbers
    /// them itself, in commit order among the replicas.
    pub changes: Vec<Change>,
    /// Forget changes committed before this time (with `purge_keys_before_ms`): a prefix by
    /// number, every change up to the last one older than this, so what is kept has no hole.
    pub purge_changes_before_ms: Option<i64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.orders.is_empty()
            && self.entries.is_empty()
            && self.keys.is_empty()
            && self.changes.is_empty()
            && self.purge_keys_before_ms.is_none()
            && self.purge_changes_before_ms.is_none()
    }
}

/// What a batch is about to touch, for a shared ledger to lock and read before the writer decides.
#[derive(Debug, Default)]
pub struct Plan {
    /// Events the batch may change (reserve, create, replenish).
    pub events: Vec<EventId>,
    /// Existing orders the batch may change (confirm, release, cancel): their events are locked.
    pub changes: Vec<ReservationId>,
    /// Orders the batch reads, once their events are locked.
    pub orders: Vec<ReservationId>,
    pub keys: Vec<IdempotencyKey>,
    /// Customers whose tickets the batch counts, once their events are locked: one customer is
    /// named once per request of theirs, so possibly more than once.
    pub customers: Vec<(EventId, CustomerId)>,
    /// Waiting-list entries the batch names (their events are locked, with their lists).
    pub entries: Vec<ReservationId>,
    /// Holds due at this time are swept in the same batch.
    pub now_ms: i64,
    /// Most due holds to sweep in this batch; 0 for none.
    pub sweep_max: usize,
}

/// The committed state a shared ledger locked for one batch.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every event the batch may change, locked until the batch commits or rolls back. An event
    /// of the plan that is missing does not exist.
    pub events: Vec<Event>,
    /// Holds due for expiry whose events are locked, as `(expires_at_ms, id)`.
    pub due: Vec<(i64, ReservationId)>,
}

/// Reads of a shared ledger, served from the database rather than one replica's memory.
#[async_trait::async_trait]
pub trait SharedReads: Send + Sync {
    async fn event(&self, id: &EventId) -> Result<Option<Event>, Error>;
    /// One page of events, in id order (byte order, as the other stores).
    async fn events(&self, query: &PageQuery) -> Result<EventsPage, Error>;
    async fn order(&self, id: ReservationId) -> Result<Option<Order>, Error>;
    /// At most `limit` changes after `after`, in commit order, with the last number given.
    async fn changes(&self, after: u64, limit: usize) -> Result<Kept, Error>;
}

/// Durable (or not) storage behind the inventory. Called only from the inventory's writer thread,
/// so implementations may block and need no locking of their own.
pub trait Ledger: Send + 'static {
    /// Every event as last committed.
    fn load(&mut self) -> Result<Vec<Event>, Error>;

    /// Every hold still `Held`, as `(expires_at_ms, id)`.
    fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error>;

    /// The committed order with this id, if there is one.
    fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error>;

    /// The stored record of an idempotency key, if there is one (lapsed or not).
    fn find_key(&mut self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error>;

    /// Tickets `customer` holds, has bought or waits for in `event`, as committed: the sum of
    /// their held and confirmed orders' quantities and their waiting entries'.
    fn customer_taken(&mut self, event: &EventId, customer: &CustomerId) -> Result<u64, Error>;

    /// The live (waiting or offered) entries of `event`'s waiting list, in `(joined_at_ms, id)`
    /// order.
    fn waitlist(&mut self, event: &EventId) -> Result<Vec<Entry>, Error>;

    /// The waiting-list entry with this id, if there is one.
    fn find_entry(&mut self, id: ReservationId) -> Result<Option<Entry>, Error>;

    /// The number of the last change ever committed (0 if none), kept or purged since.
    fn last_change_seq(&mut self) -> Result<u64, Error>;

    /// At most `limit` kept changes after `after`, in commit order, with the last number given.
    fn changes(&mut self, after: u64, limit: usize) -> Result<Kept, Error>;

    /// Stores `batch`: on `Ok` all of it is committed, on `Err` none of it is. After
    /// [`SharedLedger::begin`], this ends the batch's transaction even when `batch` is empty.
    fn commit(&mut self, batch: &Batch) -> Result<(), Error>;

    /// Creates `event` unless an event with its id exists; `false` if one did. Replicas starting
    /// at once may all try.
    fn insert_event_if_absent(&mut self, event: &Event) -> Result<bool, Error> {
        if self.load()?.iter().any(|stored| stored.id == event.id) {
            return Ok(false);
        }
        self.commit(&Batch {
            events: vec![event.clone()],
            ..Batch::default()
        })?;
        Ok(true)
    }
}

/// A store of one process: only this process's writer changes it.
pub trait LocalLedger: Ledger {}

/// A store other processes change too: the writer calls [`Self::begin`] before every batch, and
/// reads go to the database.
pub trait SharedLedger: Ledger {
    /// What identifies the shared store (the same for every replica on it). Read by the first
    /// [`Ledger::load`]; the writer asks only once that has succeeded.
    fn store_id(&self) -> String;

    /// Reads served from the database rather than one replica's memory.
    fn shared_reads(&self) -> Arc<dyn SharedReads>;

    /// Opens the batch's transaction, locks what `plan` touches (events in id order, so replicas
    /// never deadlock) and returns its committed state. On `Err` nothing is held.
    fn begin(&mut self, plan: &Plan) -> Result<Snapshot, Error>;

    /// Longest a request may wait for the database, its time in the writer's queue included;
    /// `None` for no limit.
    fn request_timeout(&self) -> Option<Duration> {
        None
    }

    /// Every call of the coming batch ends by `deadline` (its oldest request's limit), or by the
    /// usual limit of one call when `None`.
    fn bound(&mut self, deadline: Option<Instant>) {
        let _ = deadline;
    }
}

/// Keeps everything in process memory: for tests and throwaway demos. A restart forgets it all,
/// and every order stays in memory until then. Orders sit in a B-tree rather than a hash map so
/// that a growing store never stalls the writer for a whole-table rehash.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    events: HashMap<EventId, Event>,
    orders: BTreeMap<ReservationId, Order>,
    keys: HashMap<IdempotencyKey, KeyRecord>,
    /// Tickets of held and confirmed orders and waiting entries, by customer: kept as they
    /// change.
    customers: HashMap<(EventId, CustomerId), u64>,
    entries: BTreeMap<ReservationId, Entry>,
    /// The changes kept, oldest first: at most [`MEMORY_CHANGES_MAX`].
    changes: VecDeque<Change>,
    last_change_seq: u64,
}

/// Most changes a memory store keeps: the oldest go first beyond this, whatever their age.
pub const MEMORY_CHANGES_MAX: usize = 100_000;

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }
}

impl LocalLedger for MemoryLedger {}

impl Ledger for MemoryLedger {
    fn load(&mut self) -> Result<Vec<Event>, Error> {
        Ok(self.events.values().cloned().collect())
    }

    fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
        self.orders
            .values()
            .filter(|order| order.status == OrderStatus::Held)
            .map(|order| Ok((hold_deadline(order.id, order.expires_at_ms)?, order.id)))
            .collect()
    }

    fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
        Ok(self.orders.get(&id).cloned())
    }

    fn find_key(&mut self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
        Ok(self.keys.get(key).cloned())
    }

    fn customer_taken(&mut self, event: &EventId, customer: &CustomerId) -> Result<u64, Error> {
        let of = (event.clone(), customer.clone());
        Ok(self.customers.get(&of).copied().unwrap_or(0))
    }

    fn waitlist(&mut self, event: &EventId) -> Result<Vec<Entry>, Error> {
        let mut live: Vec<Entry> = self
            .entries
            .values()
            .filter(|entry| &entry.event == event && entry.status.is_live())
            .cloned()
            .collect();
        live.sort_by_key(Entry::turn);
        Ok(live)
    }

    fn find_entry(&mut self, id: ReservationId) -> Result<Option<Entry>, Error> {
        Ok(self.entries.get(&id).cloned())
    }

    fn last_change_seq(&mut self) -> Result<u64, Error> {
        Ok(self.last_change_seq)
    }

    fn changes(&mut self, after: u64, limit: usize) -> Result<Kept, Error> {
        // Kept changes are numbered without a gap, so the one after `after` is found by place.
        let first = self.changes.front().map_or(0, |c| c.seq);
        let skip = usize::try_from((after + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        Ok(Kept {
            changes: self
                .changes
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
            last_seq: self.last_change_seq,
        })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        if let Some(before) = batch.purge_keys_before_ms {
            self.keys.retain(|_, record| record.created_at_ms >= before);
        }
        if let Some(before) = batch.purge_changes_before_ms {
            // A prefix by number, never a hole: everything up to the last change older than
            // `before` (a wall clock stepped back can make a later change older).
            if let Some(last) = self.changes.iter().rposition(|c| c.at_ms < before) {
                self.changes.drain(..=last);
            }
        }
        for change in &batch.changes {
            if change.seq != self.last_change_seq + 1 {
                return Err(Error::Internal(format!(
                    "change {} would follow {}: changes are numbered without a gap",
                    change.seq, self.last_change_seq
                )));
            }
            self.last_change_seq = change.seq;
        }
        self.changes.extend(batch.changes.iter().cloned());
        while self.changes.len() > MEMORY_CHANGES_MAX {
            self.changes.pop_front();
        }
        for record in &batch.keys {
            self.keys.insert(record.key.clone(), record.clone());
        }
        for event in &batch.events {
            self.events.insert(event.id.clone(), event.clone());
        }
        for order in &batch.orders {
            let counted = |order: &Order| match order.status {
                OrderStatus::Held | OrderStatus::Confirmed => u64::from(order.qty),
                _ => 0,
            };
            let before = self.orders.insert(order.id, order.clone());
            if let Some(customer) = &order.customer {
                let taken = self
                    .customers
                    .entry((order.event.clone(), customer.clone()))
                    .or_default();
                *taken =
                    (*taken + counted(order)).saturating_sub(before.as_ref().map_or(0, counted));
            }
        }
        for entry in &batch.entries {
            let counted = |entry: &Entry| match entry.status {
                EntryStatus::Waiting => u64::from(entry.qty),
                _ => 0,
            };
            let before = self.entries.insert(entry.id, entry.clone());
            if let Some(customer) = &entry.customer {
                let taken = self
                    .customers
                    .entry((entry.event.clone(), customer.clone()))
                    .or_default();
                *taken =
                    (*taken + counted(entry)).saturating_sub(before.as_ref().map_or(0, counted));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderLine;

    /// The memory ledger keeps what it is given; a held order without a deadline is refused when
    /// the holds are read, as the durable stores refuse it.
    #[test]
    fn a_held_order_without_a_deadline_is_refused() {
        let gala = Event::single(EventId::parse("gala").unwrap(), "gala".into(), 10);
        let held = Order {
            id: ReservationId::generate(),
            event: gala.id.clone(),
            qty: 2,
            lines: vec![OrderLine::general(2)].into(),
            customer: None,
            status: OrderStatus::Held,
            remaining: 8,
            created_at_ms: 1,
            updated_at_ms: 1,
            expires_at_ms: None,
        };
        let mut ledger = MemoryLedger::default();
        ledger
            .commit(&Batch {
                events: vec![gala],
                orders: vec![held.clone()],
                ..Batch::default()
            })
            .unwrap();
        let refused = ledger.live_holds().unwrap_err();
        assert_eq!(refused.code(), "storage_failure", "{refused}");
        assert!(
            refused.to_string().contains(&held.id.to_string()),
            "{refused}"
        );
    }
}
