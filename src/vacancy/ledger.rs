//! Where committed events and orders live.
//!
//! A [`Ledger`] only stores: it never decides. The inventory's writer decides every request against
//! its in-memory state and hands the ledger one [`Batch`] per group commit, so each backend has a
//! single, simple job: make a whole batch durable, or none of it.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{
    Error, Event, EventId, IdempotencyKey, KeyRecord, Order, OrderStatus, ReservationId,
};

/// Everything one group commit writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// The new state of every event the batch created or changed.
    pub events: Vec<Event>,
    /// The new state of every order the batch created or changed.
    pub orders: Vec<Order>,
    /// Idempotency keys first used (or reused after they lapsed) in this batch.
    pub keys: Vec<KeyRecord>,
    /// Forget idempotency keys created before this time.
    pub purge_keys_before_ms: Option<i64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.orders.is_empty()
            && self.keys.is_empty()
            && self.purge_keys_before_ms.is_none()
    }
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

    /// Stores `batch`: on `Ok` all of it is committed, on `Err` none of it is.
    fn commit(&mut self, batch: &Batch) -> Result<(), Error>;
}

/// Keeps everything in process memory: for tests and throwaway demos. A restart forgets it all,
/// and every order stays in memory until then. Orders sit in a B-tree rather than a hash map so
/// that a growing store never stalls the writer for a whole-table rehash.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    events: HashMap<EventId, Event>,
    orders: BTreeMap<ReservationId, Order>,
    keys: HashMap<IdempotencyKey, KeyRecord>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Ledger for MemoryLedger {
    fn load(&mut self) -> Result<Vec<Event>, Error> {
        Ok(self.events.values().cloned().collect())
    }

    fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
        Ok(self
            .orders
            .values()
            .filter(|order| order.status == OrderStatus::Held)
            .map(|order| (order.expires_at_ms.unwrap_or(i64::MAX), order.id))
            .collect())
    }

    fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
        Ok(self.orders.get(&id).cloned())
    }

    fn find_key(&mut self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
        Ok(self.keys.get(key).cloned())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        if let Some(before) = batch.purge_keys_before_ms {
            self.keys.retain(|_, record| record.created_at_ms >= before);
        }
        for record in &batch.keys {
            self.keys.insert(record.key.clone(), record.clone());
        }
        for event in &batch.events {
            self.events.insert(event.id.clone(), event.clone());
        }
        for order in &batch.orders {
            self.orders.insert(order.id, order.clone());
        }
        Ok(())
    }
}
