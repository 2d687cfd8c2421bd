//! The store behind the writer, as a type chosen once at start-up: [`Local`] for a store of this
//! process alone, [`Shared`] for one several replicas share. The writer is generic over it, so
//! nothing asks at run time whether a store is shared: what differs is written here, once.
//!
//! A local store is the truth of the writer's memory, so a batch needs nothing before it is
//! decided, and one that decided nothing writes nothing. A shared store opens every batch by
//! locking the rows it will touch and reading them (its transaction then owns its connection
//! until commit), and looks for due holds of other replicas now and then.

use std::time::Instant;

use super::expiry::{Holds, SWEEP_INTERVAL};
use super::ledger::{Batch, Ledger, LocalLedger, Plan, SharedLedger};
use super::writer::{Command, Events, Time};
use crate::domain::Error;

/// The store behind a writer, as a type: a local one, or one shared with other replicas.
pub(crate) trait Store: Send + 'static {
    fn ledger(&mut self) -> &mut dyn Ledger;

    /// Readies the batch's state before anything is read or decided. A shared store locks the
    /// batch's events here and its committed state replaces `events` (and, when it sweeps, the
    /// due holds of `holds`).
    fn begin(
        &mut self,
        batch: &[Command],
        events: &Events,
        holds: &mut Holds,
        time: Time,
        sweep_max: usize,
    ) -> Result<(), Error>;

    /// Commits what the batch decided.
    fn commit(&mut self, batch: &Batch) -> Result<(), Error>;

    /// When the writer must look at the store for due holds it does not know of yet, if ever.
    fn next_sweep(&self) -> Option<Instant>;

    /// What identifies a shared store (the same for every replica on it); `None` for a store of
    /// one process.
    fn store_id(&self) -> Option<String>;
}

/// A store of this process alone: the writer's memory is the truth, nothing to lock.
pub(crate) struct Local(pub Box<dyn LocalLedger>);

impl Store for Local {
    fn ledger(&mut self) -> &mut dyn Ledger {
        self.0.as_mut()
    }

    fn begin(
        &mut self,
        _: &[Command],
        _: &Events,
        _: &mut Holds,
        _: Time,
        _: usize,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        timed_commit(self.0.as_mut(), batch)
    }

    fn next_sweep(&self) -> Option<Instant> {
        None
    }

    fn store_id(&self) -> Option<String> {
        None
    }
}

/// A store other replicas change too: every batch begins by locking and reading it.
pub(crate) struct Shared {
    pub ledger: Box<dyn SharedLedger>,
    /// When the store is next looked at for due holds (monotonic).
    pub sweep_due: Instant,
}

impl Store for Shared {
    fn ledger(&mut self) -> &mut dyn Ledger {
        self.ledger.as_mut()
    }

    fn begin(
        &mut self,
        batch: &[Command],
        events: &Events,
        holds: &mut Holds,
        time: Time,
        sweep_max: usize,
    ) -> Result<(), Error> {
        // Holds made by other replicas are found by looking: when one of ours is due, and now
        // and then anyway.
        let sweep = holds.any_due(time.now_ms) || time.now >= self.sweep_due;
        let mut plan = Plan {
            now_ms: time.now_ms,
            sweep_max: if sweep { sweep_max } else { 0 },
            ..Plan::default()
        };
        for command in batch {
            command.plan(&mut plan);
        }
        let snapshot = self.ledger.begin(&plan)?;
        let mut events = events.write();
        events.clear();
        events.extend(snapshot.events.into_iter().map(|e| (e.id.clone(), e)));
        drop(events);
        if sweep {
            // Due holds are swept only as the database lists them, with their events locked.
            holds.swept(time.now_ms, snapshot.due);
            self.sweep_due = time.now + SWEEP_INTERVAL;
        }
        Ok(())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        // The batch's transaction is open and must end, even with nothing to write.
        timed_commit(self.ledger.as_mut(), batch)
    }

    fn next_sweep(&self) -> Option<Instant> {
        Some(self.sweep_due)
    }

    fn store_id(&self) -> Option<String> {
        Some(self.ledger.store_id())
    }
}

fn timed_commit(ledger: &mut dyn Ledger, batch: &Batch) -> Result<(), Error> {
    let started = Instant::now();
    ledger.commit(batch)?;
    metrics::histogram!("ticketd_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}
