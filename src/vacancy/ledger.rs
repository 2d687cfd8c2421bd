//! Where committed stock and reservations live.
//!
//! A [`Ledger`] only stores: it never decides. The inventory's writer decides every request against
//! its in-memory state and hands the ledger one [`Batch`] per group commit, so each backend has a
//! single, simple job: make a whole batch durable, or none of it.

use std::collections::HashMap;

use crate::domain::{Error, EventId, ReservationId, Stock};

/// One accepted reservation, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRecord {
    pub id: ReservationId,
    pub event: EventId,
    pub qty: u32,
    /// When the reservation was accepted, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Everything one group commit writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// The new stock of every event the batch touched (or created).
    pub stocks: Vec<(EventId, Stock)>,
    /// The reservations the batch accepted, in the order they were decided.
    pub reservations: Vec<ReservationRecord>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.stocks.is_empty() && self.reservations.is_empty()
    }
}

/// Durable (or not) storage behind the inventory. Called only from the inventory's writer thread,
/// so implementations may block and need no locking of their own.
pub trait Ledger: Send + 'static {
    /// Every event's stock as last committed.
    fn load(&mut self) -> Result<Vec<(EventId, Stock)>, Error>;

    /// The committed reservation with this id, if there is one.
    fn find_reservation(&mut self, id: ReservationId) -> Result<Option<ReservationRecord>, Error>;

    /// Stores `batch`: on `Ok` all of it is committed, on `Err` none of it is.
    fn commit(&mut self, batch: &Batch) -> Result<(), Error>;
}

/// Keeps everything in process memory: for tests and throwaway demos. A restart forgets it all.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    stocks: HashMap<EventId, Stock>,
    reservations: HashMap<ReservationId, ReservationRecord>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Ledger for MemoryLedger {
    fn load(&mut self) -> Result<Vec<(EventId, Stock)>, Error> {
        Ok(self
            .stocks
            .iter()
            .map(|(id, stock)| (id.clone(), *stock))
            .collect())
    }

    fn find_reservation(&mut self, id: ReservationId) -> Result<Option<ReservationRecord>, Error> {
        Ok(self.reservations.get(&id).cloned())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        for (event, stock) in &batch.stocks {
            self.stocks.insert(event.clone(), *stock);
        }
        for record in &batch.reservations {
            self.reservations.insert(record.id, record.clone());
        }
        Ok(())
    }
}
