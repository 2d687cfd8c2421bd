//! The store behind the writer, as a type chosen once at start-up: [`Local`] for a store of this
//! process alone, [`Shared`] for one several replicas share. The writer is generic over it, so
//! nothing asks at run time whether a store is shared: what differs is written here, once.
//!
//! A local store is the truth of the writer's memory, so a batch needs nothing before it is
//! decided, and one that decided nothing writes nothing. A shared store opens every batch by
//! locking the rows it will touch and reading them (its transaction then owns its connection
//! until commit), and looks for due holds of other replicas now and then.
//!
//! Reads differ too, as [`Reads`]: a local store's events come from the writer's memory and its
//! orders from the writer, a shared store's from the database, since other replicas change it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, Either, Ready, ready};

use super::Queue;
use super::expiry::{Holds, SWEEP_INTERVAL};
use super::ledger::{Batch, Kept, Ledger, LocalLedger, Plan, SharedLedger, SharedReads};
use super::writer::{Command, Events, Time};
use crate::domain::{Error, Event, EventId, EventsPage, Order, PageQuery, ReservationId};

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

    /// Longest a request may wait for the store, its time in the writer's queue included; `None`
    /// for a store of this process, whose queue is its only wait.
    fn request_timeout(&self) -> Option<Duration> {
        None
    }

    /// Ends the coming batch's work on the store by `deadline` (see [`SharedLedger::bound`]).
    fn bound(&mut self, deadline: Option<Instant>) {
        let _ = deadline;
    }

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
        events.write().replace_with_locked(snapshot.events);
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

    fn request_timeout(&self) -> Option<Duration> {
        self.ledger.request_timeout()
    }

    fn bound(&mut self, deadline: Option<Instant>) {
        self.ledger.bound(deadline);
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

/// A read: answered at once from memory (no allocation, no wait), or a future to await.
pub(crate) type Read<'a, T> = Either<Ready<Result<T, Error>>, BoxFuture<'a, Result<T, Error>>>;

/// How the inventory reads, chosen once when it opens, so no read asks which kind of store it has.
pub(crate) trait Reads: Send + Sync {
    /// One event as last committed.
    fn event<'a>(&'a self, id: &'a EventId) -> Read<'a, Option<Event>>;
    /// One page of the events as last committed, in id order.
    fn events<'a>(&'a self, query: &'a PageQuery) -> Read<'a, EventsPage>;
    /// One order or hold as committed; `queue` is the writer's, for a store only it may read.
    fn order<'a>(&'a self, id: ReservationId, queue: &'a Queue) -> Read<'a, Order>;
    /// At most `limit` kept changes after `after`, with the last number given.
    fn changes<'a>(&'a self, after: u64, limit: usize, queue: &'a Queue) -> Read<'a, Kept>;
}

/// A store of this process alone: events from the writer's committed memory.
pub(crate) struct FromMemory(pub Events);

impl Reads for FromMemory {
    fn event<'a>(&'a self, id: &'a EventId) -> Read<'a, Option<Event>> {
        Either::Left(ready(Ok(self.0.read().get(id).cloned())))
    }

    fn events<'a>(&'a self, query: &'a PageQuery) -> Read<'a, EventsPage> {
        let lookahead = self
            .0
            .read()
            .after(query.after.as_ref())
            .take(query.limit.get() as usize + 1)
            .cloned()
            .collect();
        Either::Left(ready(Ok(EventsPage::from_lookahead(
            lookahead,
            query.limit,
        ))))
    }

    /// Orders are not kept in memory: they live in the store, which only the writer touches, so
    /// the lookup waits in the writer's queue like a change.
    fn order<'a>(&'a self, id: ReservationId, queue: &'a Queue) -> Read<'a, Order> {
        Either::Right(Box::pin(queue.ask(Command::Find, id)))
    }

    /// Changes live in the store too: the writer answers the read as it takes it from the queue,
    /// before deciding the batch it is gathering.
    fn changes<'a>(&'a self, after: u64, limit: usize, queue: &'a Queue) -> Read<'a, Kept> {
        Either::Right(Box::pin(queue.ask(Command::Changes, (after, limit))))
    }
}

/// A shared store: everything from the database, since other replicas change it too.
pub(crate) struct FromDatabase(pub Arc<dyn SharedReads>);

impl Reads for FromDatabase {
    fn event<'a>(&'a self, id: &'a EventId) -> Read<'a, Option<Event>> {
        Either::Right(self.0.event(id))
    }

    fn events<'a>(&'a self, query: &'a PageQuery) -> Read<'a, EventsPage> {
        Either::Right(self.0.events(query))
    }

    fn order<'a>(&'a self, id: ReservationId, _queue: &'a Queue) -> Read<'a, Order> {
        Either::Right(Box::pin(async move {
            self.0
                .order(id)
                .await?
                .ok_or_else(|| Error::UnknownOrder(format!("unknown order or hold '{id}'")))
        }))
    }

    fn changes<'a>(&'a self, after: u64, limit: usize, _queue: &'a Queue) -> Read<'a, Kept> {
        Either::Right(self.0.changes(after, limit))
    }
}
