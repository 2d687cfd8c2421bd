//! The inventory: the only place stock changes.
//!
//! [`Inventory`] is a cheap handle in front of one writer thread (see [`writer`]). Changes queue up
//! for it and are answered once committed. Reads of events come from the committed state (the
//! writer's memory for a store of this process, the database for a shared one) and never wait for
//! the writer. An order lookup on a store of this process does go through the writer's queue, since
//! orders live only in the store the writer owns; on a shared store it reads the database.
//!
//! Where to look: the decisions are in `rules.rs`, how a retry avoids selling twice in
//! `idempotency.rs`, how a hold expires in `expiry.rs`, the loop that reads, decides, commits and
//! answers in `writer.rs`, and what differs between a local and a shared store in `store.rs`.

mod codec;
pub mod copy;
mod events;
mod expiry;
mod idempotency;
pub mod ledger;
#[cfg(test)]
mod model_test;
mod outbox;
pub mod postgres;
mod rules;
pub mod sqlite;
mod store;
mod waitlist;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::domain::{
    Cancelled, CategoryChange, CategoryId, ChangeFeed, ChangesPage, ChangesQuery, EntryView, Error,
    Event, EventDraft, EventId, EventsPage, IdempotencyKey, Joining, Order, PageQuery, QuotaId,
    Reservation, ReservationId, Reserved, Resize,
};
use events::EventMap;
use ledger::{LocalLedger, SharedLedger};
use store::{FromDatabase, FromMemory, Local, Reads, Shared};
use writer::{
    Call, CategoryUpdate, Command, Events, OrderChange, Queued, QuotaResize, Replenishment, Writer,
};

/// Largest capacity of one event: far beyond any venue, well inside every store's integer range.
pub const CAPACITY_MAX: u64 = 1_000_000_000_000;

/// Where the inventory reads the time; tests substitute a clock they move by hand.
///
/// Two sides, for two jobs. The wall clock says when things happen: hold deadlines, `*_at_ms`,
/// what is stored and shown. It can be stepped, even backwards (NTP), so nothing is scheduled by
/// it: how long to wait, and when to do a periodic chore again, come from the monotonic side.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// A time that never goes backwards, for measuring waits and intervals; never stored.
    fn monotonic(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64)
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// Limits and start-up values of an inventory; `config` builds it from `Settings` (and its
/// `Default` from the built-in settings).
#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// Capacity of the `default` event when the store is new. Ignored for an existing store.
    pub initial_stock: u64,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl_seconds: u64,
    /// Most requests waiting for the writer; one more is refused as `overloaded`.
    pub queue_size_max: usize,
    /// Most requests decided and committed together.
    pub batch_size_max: usize,
    /// How long a waiting-list offer's hold lasts.
    pub waitlist_offer_ttl_seconds: u32,
    /// How long committed changes are kept for readers of the feed.
    pub changes_retention_hours: u32,
}

pub struct Inventory {
    queue: Queue,
    /// Counts this process's commits that wrote changes: readers of the feed wait on it.
    committed: tokio::sync::watch::Receiver<u64>,
    /// Where reads are served from, fixed by the kind of store when the inventory opens.
    reads: Box<dyn Reads>,
    /// The shared store's identity; `None` for a store of this process alone.
    store_id: Option<String>,
    writer: Option<JoinHandle<()>>,
}

/// The writer's queue: every change, and a local store's order lookups, wait in it.
///
/// It holds at most `queue_size_max` sends, counted beside the channel rather than by a
/// channel of that many slots: a bounded channel is a ring of `queue_size_max` slots that the
/// queue walks round one slot per send, so with 16,384 slots every send wrote to memory last
/// touched thousands of sends before, long gone from the CPU's caches. The unbounded channel
/// fills small blocks that the allocator hands back warm.
pub(crate) struct Queue {
    /// `None` only while dropping, so the writer sees the channel close before we join it.
    commands: Option<Sender<Queued>>,
    /// Sends not yet taken off by the writer (which takes one off for each it receives).
    waiting: Arc<AtomicUsize>,
    waiting_max: usize,
}

impl Inventory {
    /// Loads a store of this process, creates the `default` event if the store is new, and
    /// starts the writer.
    pub fn open(ledger: Box<dyn LocalLedger>, config: InventoryConfig) -> Result<Self, Error> {
        Self::open_with_clock(ledger, config, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        ledger: Box<dyn LocalLedger>,
        config: InventoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let events = Arc::new(RwLock::new(EventMap::default()));
        let reads = Box::new(FromMemory(Arc::clone(&events)));
        Self::start(Local(ledger), events, reads, config, clock)
    }

    /// As [`Self::open`], on a store other replicas share.
    pub fn open_shared(
        ledger: Box<dyn SharedLedger>,
        config: InventoryConfig,
    ) -> Result<Self, Error> {
        Self::open_shared_with_clock(ledger, config, Arc::new(SystemClock))
    }

    pub fn open_shared_with_clock(
        ledger: Box<dyn SharedLedger>,
        config: InventoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let events = Arc::new(RwLock::new(EventMap::default()));
        let reads = Box::new(FromDatabase(ledger.shared_reads()));
        let store = Shared {
            ledger,
            // A new writer sweeps first.
            sweep_due: clock.monotonic(),
        };
        Self::start(store, events, reads, config, clock)
    }

    fn start<S: store::Store>(
        store: S,
        events: Events,
        reads: Box<dyn Reads>,
        config: InventoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        assert!(config.queue_size_max > 0 && config.batch_size_max > 0);
        let (commands, queue) = mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        metrics::gauge!("ticketd_inventory_queue_requests_max").set(config.queue_size_max as f64);
        let (opened, open) = mpsc::sync_channel(1);
        let (committed_tx, committed) = tokio::sync::watch::channel(0);
        let writer = {
            let config = config.clone();
            let waiting = Arc::clone(&waiting);
            std::thread::Builder::new()
                .name("inventory-writer".into())
                .spawn(
                    move || match Writer::open(store, events, &config, clock, committed_tx) {
                        Ok(writer) => {
                            let _ = opened.send(Ok(writer.store_id()));
                            writer.run(queue, &waiting)
                        }
                        Err(error) => drop(opened.send(Err(error))),
                    },
                )
                .map_err(|e| Error::Internal(format!("cannot start the inventory writer: {e}")))?
        };
        let loaded = open.recv().unwrap_or_else(|_| {
            Err(Error::Internal(
                "the inventory writer stopped while loading".into(),
            ))
        });
        let store_id = match loaded {
            Ok(store_id) => store_id,
            Err(error) => {
                let _ = writer.join();
                return Err(error);
            }
        };
        Ok(Self {
            queue: Queue {
                commands: Some(commands),
                waiting,
                waiting_max: config.queue_size_max,
            },
            committed,
            reads,
            store_id,
            writer: Some(writer),
        })
    }

    /// What identifies the store this inventory shares with other replicas, if it shares one.
    pub fn store_id(&self) -> Option<&str> {
        self.store_id.as_deref()
    }

    /// One event as last committed.
    pub async fn event(&self, id: &EventId) -> Result<Event, Error> {
        self.ensure_running()?;
        self.reads
            .event(id)
            .await?
            .ok_or_else(|| Error::UnknownEvent(format!("unknown event '{id}'")))
    }

    /// One page of the events as last committed, in id order.
    pub async fn events(&self, query: &PageQuery) -> Result<EventsPage, Error> {
        self.ensure_running()?;
        self.reads.events(query).await
    }

    /// An inventory whose writer has stopped (it panicked on a broken invariant) can take no
    /// more changes: it must not look ready, and its reads say why.
    fn ensure_running(&self) -> Result<(), Error> {
        match &self.writer {
            Some(writer) if !writer.is_finished() => Ok(()),
            _ => Err(Error::Unavailable(
                "the inventory writer has stopped; see the log".into(),
            )),
        }
    }

    /// Sells or holds `reservation.qty` tickets if that many are available; answers once
    /// committed. A reservation id seen before returns the first answer and changes nothing.
    /// Its quantity and hold length were checked against the per-order limits where the request
    /// came in (they are settings of the API, not of the stock).
    pub async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        self.ask(Command::Reserve, reservation).await
    }

    /// Several reservations queued as one, so the writer takes them all into one batch and one
    /// commit; an answer for each, in order, each as [`Inventory::reserve`] would give it.
    pub async fn reserve_many(
        &self,
        reservations: Vec<Reservation>,
    ) -> Vec<Result<Reserved, Error>> {
        self.queue.ask_many(Command::Reserve, reservations).await
    }

    /// Turns a live hold into a sale; a hold past its time is `HoldExpired`.
    pub async fn confirm(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, Error> {
        self.ask(Command::Confirm, OrderChange { id, key }).await
    }

    /// Gives a hold's tickets back; releasing twice changes nothing.
    pub async fn release(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, Error> {
        self.ask(Command::Release, OrderChange { id, key }).await
    }

    /// Returns a confirmed order's tickets to stock, exactly once.
    pub async fn cancel(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Cancelled, Error> {
        self.ask(Command::Cancel, OrderChange { id, key }).await
    }

    /// One order or hold, as committed.
    pub async fn order(&self, id: ReservationId) -> Result<Order, Error> {
        self.ensure_running()?;
        self.reads.order(id, &self.queue).await
    }

    /// Creates an event of one `general` quota and category of `capacity` places.
    pub async fn create_event(
        &self,
        id: EventId,
        name: String,
        capacity: u64,
    ) -> Result<Event, Error> {
        if capacity > CAPACITY_MAX {
            return Err(Error::InvalidEvent(format!(
                "capacity must be at most {CAPACITY_MAX}"
            )));
        }
        let name = Event::parse_name(&name)?;
        let event = Event::single(id, name, capacity);
        self.ask(Command::CreateEvent, event).await
    }

    /// Creates an event of quotas and categories, every place available.
    pub async fn create(&self, draft: EventDraft) -> Result<Event, Error> {
        let event = draft.check(CAPACITY_MAX)?;
        self.ask(Command::CreateEvent, event).await
    }

    /// Grows or shrinks one quota of an event (never below its places held and sold).
    pub async fn resize_quota(
        &self,
        event: EventId,
        quota: QuotaId,
        resize: Resize,
    ) -> Result<Event, Error> {
        let (Resize::Add(n) | Resize::To(n)) = resize;
        if n > CAPACITY_MAX || resize == Resize::Add(0) {
            return Err(Error::InvalidQuantity(format!(
                "a quota's size and what is added to it are 0 to {CAPACITY_MAX} (at least 1 added), got {n}"
            )));
        }
        let resize = QuotaResize {
            event,
            quota,
            resize,
        };
        self.ask(Command::ResizeQuota, resize).await
    }

    /// Opens or closes a category of an event, or moves its sales window.
    pub async fn change_category(
        &self,
        event: EventId,
        category: CategoryId,
        change: CategoryChange,
    ) -> Result<Event, Error> {
        let update = CategoryUpdate {
            event,
            category,
            change,
        };
        self.ask(Command::ChangeCategory, update).await
    }

    /// Joins a sold-out category's waiting list (see `waitlist.rs` for the rules).
    pub async fn join_waitlist(&self, joining: Joining) -> Result<EntryView, Error> {
        self.ask(Command::JoinWaitlist, joining).await
    }

    /// One waiting-list entry, with its place in the queue.
    pub async fn waitlist_entry(&self, id: ReservationId) -> Result<EntryView, Error> {
        self.ensure_running()?;
        self.ask(Command::FindEntry, id).await
    }

    /// Leaves a waiting list, declining an open offer.
    pub async fn leave_waitlist(&self, id: ReservationId) -> Result<EntryView, Error> {
        self.ask(Command::LeaveWaitlist, id).await
    }

    /// Adds `qty` tickets to an event's capacity and availability.
    pub async fn replenish(&self, event: EventId, qty: u64) -> Result<Event, Error> {
        if qty == 0 || qty > CAPACITY_MAX {
            return Err(Error::InvalidQuantity(format!(
                "qty must be 1 to {CAPACITY_MAX}, got {qty}"
            )));
        }
        self.ask(Command::Replenish, Replenishment { event, qty })
            .await
    }

    async fn ask<R, T>(&self, command: fn(Call<R, T>) -> Command, request: R) -> Result<T, Error> {
        self.queue.ask(command, request).await
    }
}

/// How often a reader waiting for changes on a shared store looks again: other replicas' commits
/// are not signalled to this process, so it polls the database, at this pace, while it waits.
const CHANGES_POLL_INTERVAL: Duration = Duration::from_millis(200);

#[async_trait::async_trait]
impl ChangeFeed for Inventory {
    /// Changes after `query.after` in commit order. With nothing to return yet, waits up to
    /// `query.wait` for a commit: woken by this process's commits at once, and on a shared store
    /// also looking again every [`CHANGES_POLL_INTERVAL`] for other replicas'.
    async fn changes(&self, query: ChangesQuery) -> Result<ChangesPage, Error> {
        self.ensure_running()?;
        let deadline = tokio::time::Instant::now() + query.wait;
        let mut committed = self.committed.clone();
        loop {
            // Marked seen before reading, so a commit after the read wakes the wait below.
            committed.borrow_and_update();
            let kept = self
                .reads
                .changes(query.after, query.limit, &self.queue)
                .await?;
            let page = outbox::page(query.after, kept)?;
            let now = tokio::time::Instant::now();
            if !page.changes.is_empty() || now >= deadline {
                return Ok(page);
            }
            let mut wait = deadline - now;
            if self.store_id.is_some() {
                wait = wait.min(CHANGES_POLL_INTERVAL);
            }
            match tokio::time::timeout(wait, committed.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                // The writer is gone: nothing more will commit here.
                Ok(Err(_)) => return Ok(page),
            }
        }
    }
}

impl Queue {
    pub(crate) async fn ask<R, T>(
        &self,
        command: fn(Call<R, T>) -> Command,
        request: R,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let origin = crate::telemetry::Origin::current();
        self.send(command(Call {
            request,
            reply,
            origin,
            queued: Instant::now(),
        }))?;
        answer
            .await
            .map_err(|_| Error::Internal("the inventory writer stopped before answering".into()))?
    }

    /// Asks every request of `requests` in one message, so the writer finds them together; an
    /// answer for each, in order.
    pub(crate) async fn ask_many<R, T>(
        &self,
        command: fn(Call<R, T>) -> Command,
        requests: Vec<R>,
    ) -> Vec<Result<T, Error>> {
        let origin = crate::telemetry::Origin::current();
        let queued = Instant::now();
        let mut answers = Vec::with_capacity(requests.len());
        let commands = requests
            .into_iter()
            .map(|request| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                command(Call {
                    request,
                    reply,
                    origin: origin.clone(),
                    queued,
                })
            })
            .collect();
        if let Err(error) = self.send_queued(Queued::Many(commands)) {
            return answers.iter().map(|_| Err(error.clone())).collect();
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.unwrap_or_else(|_| {
                Err(Error::Internal(
                    "the inventory writer stopped before answering".into(),
                ))
            }));
        }
        results
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.send_queued(Queued::One(command))
    }

    fn send_queued(&self, queued_commands: Queued) -> Result<(), Error> {
        let commands = self
            .commands
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the inventory is closing".into()))?;
        // Counted before it is sent, so the writer never takes off what is not on yet.
        let queued = metrics::gauge!("ticketd_inventory_queue_requests");
        let count = queued_commands.len() as f64;
        queued.increment(count);
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.waiting_max {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            queued.decrement(count);
            metrics::counter!("ticketd_inventory_overloaded_total").increment(1);
            return Err(Error::Overloaded);
        }
        commands.send(queued_commands).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            queued.decrement(count);
            Error::Unavailable("the inventory writer has stopped".into())
        })
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop; waiting for it means a
        // durable ledger is closed cleanly before the process exits.
        drop(self.queue.commands.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the inventory writer panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{HoldTtl, Quantity, ReservationId};
    use ledger::{Batch, Ledger, MemoryLedger, SharedReads};

    fn inventory(initial_stock: u64) -> Inventory {
        let config = InventoryConfig {
            initial_stock,
            ..InventoryConfig::default()
        };
        Inventory::open(Box::new(MemoryLedger::new()), config).unwrap()
    }

    fn reservation(qty: i64) -> Reservation {
        Reservation {
            id: ReservationId::generate(),
            event: EventId::default_event(),
            lines: crate::domain::Lines::one(Quantity::parse(qty, 10).unwrap()),
            customer: None,
            hold_ttl_seconds: None,
            key: None,
        }
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn reserves_until_sold_out_then_refuses() {
        let inventory = inventory(5);
        run(async {
            let first = inventory.reserve(reservation(3)).await.unwrap();
            assert_eq!((first.accepted(), first.remaining), (true, 2));
            let refused = inventory.reserve(reservation(3)).await.unwrap();
            assert_eq!((refused.accepted(), refused.remaining), (false, 2));
            let last = inventory.reserve(reservation(2)).await.unwrap();
            assert_eq!((last.accepted(), last.remaining), (true, 0));
        });
        let stock = run(inventory.event(&EventId::default_event()))
            .unwrap()
            .stock();
        assert_eq!((stock.available, stock.sold, stock.capacity), (0, 5, 5));
    }

    #[test]
    fn a_repeated_reservation_id_reserves_once() {
        let inventory = inventory(10);
        let again = reservation(4);
        run(async {
            assert!(inventory.reserve(again.clone()).await.unwrap().accepted());
            let retry = inventory.reserve(again.clone()).await.unwrap();
            assert_eq!((retry.accepted(), retry.remaining), (true, 6));

            let changed = Reservation {
                lines: crate::domain::Lines::one(Quantity::parse(5, 10).unwrap()),
                customer: None,
                ..again
            };
            let conflict = inventory.reserve(changed).await.unwrap_err();
            assert_eq!(conflict.code(), "reservation_conflict");
        });
        assert_eq!(
            run(inventory.event(&EventId::default_event()))
                .unwrap()
                .stock()
                .sold,
            4
        );
    }

    /// (Orders over the per-order limit are refused where the request comes in: see the API's
    /// `the_inventorys_own_route_refuses_bad_numbers`.)
    #[test]
    fn unknown_events_change_nothing() {
        let inventory = inventory(10);
        run(async {
            let unknown = Reservation {
                event: EventId::parse("nope").unwrap(),
                ..reservation(1)
            };
            let error = inventory.reserve(unknown).await.unwrap_err();
            assert_eq!(error.code(), "unknown_event");
        });
        assert_eq!(
            run(inventory.event(&EventId::default_event()))
                .unwrap()
                .stock()
                .available,
            10
        );
    }

    /// 1,000 buyers on four OS threads race for 100 tickets: exactly 100 win, nothing is oversold.
    #[test]
    fn concurrent_reservations_never_oversell() {
        let inventory = Arc::new(inventory(100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let inventory = Arc::clone(&inventory);
                std::thread::spawn(move || {
                    run(async {
                        let attempts = (0..250).map(|_| inventory.reserve(reservation(1)));
                        let answers = futures_util::future::join_all(attempts).await;
                        answers
                            .into_iter()
                            .filter(|a| a.as_ref().unwrap().accepted())
                            .count()
                    })
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(accepted, 100);
        let stock = run(inventory.event(&EventId::default_event()))
            .unwrap()
            .stock();
        assert_eq!((stock.available, stock.sold), (0, 100));
    }

    /// The reads of a test ledger that keeps its state in `self.inner`, a [`MemoryLedger`]: what
    /// the test ledgers below change is when they commit, or how they sweep.
    macro_rules! reads_from_inner {
        () => {
            fn load(&mut self) -> Result<Vec<Event>, Error> {
                self.inner.load()
            }
            fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
                self.inner.live_holds()
            }
            fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
                self.inner.find_order(id)
            }
            fn find_key(
                &mut self,
                key: &IdempotencyKey,
            ) -> Result<Option<crate::domain::KeyRecord>, Error> {
                self.inner.find_key(key)
            }
            fn customer_taken(
                &mut self,
                event: &EventId,
                customer: &crate::domain::CustomerId,
            ) -> Result<u64, Error> {
                self.inner.customer_taken(event, customer)
            }
            fn waitlist(&mut self, event: &EventId) -> Result<Vec<crate::domain::Entry>, Error> {
                self.inner.waitlist(event)
            }
            fn find_entry(
                &mut self,
                id: ReservationId,
            ) -> Result<Option<crate::domain::Entry>, Error> {
                self.inner.find_entry(id)
            }
            fn last_change_seq(&mut self) -> Result<u64, Error> {
                self.inner.last_change_seq()
            }
            fn changes(&mut self, after: u64, limit: usize) -> Result<ledger::Kept, Error> {
                self.inner.changes(after, limit)
            }
        };
    }

    /// A memory ledger whose next commit fails while `fail` is set.
    struct FailingCommits {
        inner: MemoryLedger,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl LocalLedger for FailingCommits {}

    impl Ledger for FailingCommits {
        reads_from_inner!();
        fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
            if self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Storage("the disk is full".into()));
            }
            self.inner.commit(batch)
        }
    }

    /// A batch that fails to commit tells nothing, and takes no number: the next change is 1.
    #[test]
    fn a_batch_that_fails_tells_nothing() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ledger = FailingCommits {
            inner: MemoryLedger::new(),
            fail: Arc::clone(&fail),
        };
        let config = InventoryConfig {
            initial_stock: 5,
            ..InventoryConfig::default()
        };
        let inventory = Inventory::open(Box::new(ledger), config).unwrap();
        run(async {
            fail.store(true, std::sync::atomic::Ordering::SeqCst);
            let failed = inventory.reserve(reservation(1)).await.unwrap_err();
            assert_eq!(failed.code(), "storage_failure");
            let order = inventory
                .reserve(reservation(2))
                .await
                .unwrap()
                .order
                .unwrap();
            let query = ChangesQuery {
                after: 0,
                limit: 10,
                wait: Duration::ZERO,
            };
            let page = inventory.changes(query).await.unwrap();
            assert_eq!(outbox::kinds(&page.changes), ["order.confirmed"]);
            assert_eq!(page.changes[0].seq, 1);
            assert!(page.changes[0].data.contains(&order.id.to_string()));
        });
    }

    /// A memory ledger that runs `before_commit(n)` ahead of its n-th commit (the first is the one
    /// `open` makes for the default event).
    struct HookedLedger<F> {
        inner: MemoryLedger,
        commits: usize,
        before_commit: F,
    }

    fn hooked<F: FnMut(usize) + Send + 'static>(before_commit: F) -> Box<dyn LocalLedger> {
        Box::new(HookedLedger {
            inner: MemoryLedger::new(),
            commits: 0,
            before_commit,
        })
    }

    impl<F: FnMut(usize) + Send + 'static> LocalLedger for HookedLedger<F> {}

    impl<F: FnMut(usize) + Send + 'static> Ledger for HookedLedger<F> {
        reads_from_inner!();
        fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
            self.commits += 1;
            (self.before_commit)(self.commits);
            self.inner.commit(batch)
        }
    }

    /// The queue's room comes back as the writer takes what was sent, one send or many at once.
    #[test]
    fn the_queue_has_room_again_once_the_writer_took_what_waited() {
        let config = InventoryConfig {
            queue_size_max: 1,
            initial_stock: 1_000,
            ..InventoryConfig::default()
        };
        let inventory = Inventory::open(Box::new(MemoryLedger::new()), config).unwrap();
        for _ in 0..100 {
            assert!(run(inventory.reserve(reservation(1))).unwrap().accepted());
        }
        let many = run(inventory.reserve_many((0..5).map(|_| reservation(1)).collect()));
        assert!(
            many.iter()
                .all(|answer| answer.as_ref().unwrap().accepted())
        );
        assert_eq!(inventory.queue.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_queue_is_an_explicit_error() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        // Every commit after `open`'s waits until the test lets it go.
        let ledger = hooked(move |n| {
            if n > 1 {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            }
        });
        let config = InventoryConfig {
            queue_size_max: 1,
            ..InventoryConfig::default()
        };
        let inventory = Arc::new(Inventory::open(ledger, config).unwrap());

        // The first reservation holds the writer inside its commit...
        let first = {
            let inventory = Arc::clone(&inventory);
            std::thread::spawn(move || run(inventory.reserve(reservation(1))))
        };
        entered.recv().unwrap();
        // ...so the queue (room for one) takes the second and must refuse the third.
        let (second, third) = run(async {
            let second = inventory.reserve(reservation(1));
            let third = inventory.reserve(reservation(1));
            let third = async {
                let answer = third.await;
                // Overloaded is decided on sending, so by now the writer may go on.
                release.send(()).unwrap();
                release.send(()).unwrap();
                answer
            };
            tokio::join!(second, third)
        });
        assert!(first.join().unwrap().unwrap().accepted());
        assert!(second.unwrap().accepted());
        assert_eq!(third.unwrap_err(), Error::Overloaded);
        assert_eq!(
            run(inventory.event(&EventId::default_event()))
                .unwrap()
                .stock()
                .sold,
            2
        );
    }

    /// A clock moved by hand: time passing moves both its sides; the wall clock can also be
    /// stepped on its own, as NTP does.
    struct ManualClock {
        wall_ms: std::sync::atomic::AtomicI64,
        started: Instant,
        elapsed_ms: std::sync::atomic::AtomicU64,
    }

    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.wall_ms.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn monotonic(&self) -> Instant {
            let elapsed_ms = self.elapsed_ms.load(std::sync::atomic::Ordering::SeqCst);
            self.started + std::time::Duration::from_millis(elapsed_ms)
        }
    }

    impl ManualClock {
        fn new(wall_ms: i64) -> Self {
            Self {
                wall_ms: std::sync::atomic::AtomicI64::new(wall_ms),
                started: Instant::now(),
                elapsed_ms: std::sync::atomic::AtomicU64::new(0),
            }
        }

        fn advance_ms(&self, ms: u64) {
            self.step_wall_ms(ms as i64);
            self.elapsed_ms
                .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
        }

        fn step_wall_ms(&self, ms: i64) {
            self.wall_ms
                .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn holds_confirm_release_expire_and_cancel_move_tickets_exactly_once() {
        use crate::domain::OrderStatus::*;
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = InventoryConfig {
            initial_stock: 10,
            ..InventoryConfig::default()
        };
        let inventory =
            Inventory::open_with_clock(Box::new(MemoryLedger::new()), config, clock.clone())
                .unwrap();
        let counts = async || {
            let stock = inventory
                .event(&EventId::default_event())
                .await
                .unwrap()
                .stock();
            assert!(stock.is_consistent());
            (stock.available, stock.held, stock.sold)
        };
        let hold = |qty, ttl| Reservation {
            hold_ttl_seconds: Some(HoldTtl::parse(ttl, 3600).unwrap()),
            ..reservation(qty)
        };
        run(async {
            let a = inventory.reserve(hold(3, 60)).await.unwrap().order.unwrap();
            assert_eq!((a.status, a.expires_at_ms), (Held, Some(1_060_000)));
            assert_eq!(counts().await, (7, 3, 0));
            assert_eq!(
                inventory.confirm(a.id, None).await.unwrap().status,
                Confirmed
            );
            assert_eq!(counts().await, (7, 0, 3));
            assert_eq!(
                inventory.confirm(a.id, None).await.unwrap().status,
                Confirmed
            );
            assert_eq!(counts().await, (7, 0, 3));

            let b = inventory.reserve(hold(2, 60)).await.unwrap().order.unwrap();
            assert_eq!(
                inventory.release(b.id, None).await.unwrap().status,
                Released
            );
            assert_eq!(
                inventory.release(b.id, None).await.unwrap().status,
                Released
            );
            assert_eq!(counts().await, (7, 0, 3));
            assert_eq!(
                inventory.confirm(b.id, None).await.unwrap_err().code(),
                "wrong_state"
            );

            let c = inventory.reserve(hold(4, 1)).await.unwrap().order.unwrap();
            assert_eq!(counts().await, (3, 4, 3));
            clock.advance_ms(1000);
            assert_eq!(
                inventory.confirm(c.id, None).await.unwrap_err().code(),
                "hold_expired"
            );
            assert_eq!(counts().await, (7, 0, 3));

            // Expiry needs no request for the hold itself: any batch after the deadline does it.
            let d = inventory.reserve(hold(1, 1)).await.unwrap().order.unwrap();
            clock.advance_ms(5000);
            assert_eq!(inventory.order(d.id).await.unwrap().status, Expired);
            assert_eq!(counts().await, (7, 0, 3));

            let first = inventory.cancel(a.id, None).await.unwrap();
            assert_eq!((first.order.status, first.changed), (Cancelled, true));
            assert_eq!(counts().await, (10, 0, 0));
            let second = inventory.cancel(a.id, None).await.unwrap();
            assert_eq!((second.order.status, second.changed), (Cancelled, false));
            assert_eq!(counts().await, (10, 0, 0));

            assert_eq!(
                inventory.cancel(d.id, None).await.unwrap_err().code(),
                "wrong_state"
            );
            let unknown = inventory
                .order(ReservationId::generate())
                .await
                .unwrap_err();
            assert_eq!(unknown.code(), "unknown_order");
        });
    }

    /// The outbox over one story: every committed transition is one change, numbered in commit
    /// order from 1, none from refusals or repeats; the feed pages after its cursor.
    #[test]
    fn every_committed_change_is_in_the_feed_in_commit_order() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = InventoryConfig {
            initial_stock: 4,
            ..InventoryConfig::default()
        };
        let inventory =
            Inventory::open_with_clock(Box::new(MemoryLedger::new()), config, clock.clone())
                .unwrap();
        let all = async || {
            let query = ChangesQuery {
                after: 0,
                limit: 1000,
                wait: Duration::ZERO,
            };
            inventory.changes(query).await.unwrap()
        };
        let hold = |qty, ttl| Reservation {
            hold_ttl_seconds: Some(HoldTtl::parse(ttl, 3600).unwrap()),
            ..reservation(qty)
        };
        run(async {
            assert_eq!(all().await, ChangesPage::default());
            let first = inventory
                .reserve(reservation(1))
                .await
                .unwrap()
                .order
                .unwrap();
            let held = inventory.reserve(hold(3, 60)).await.unwrap().order.unwrap();
            // Refused, and repeated: no change.
            assert!(!inventory.reserve(reservation(1)).await.unwrap().accepted());
            inventory.confirm(first.id, None).await.unwrap_err();
            let entry = inventory
                .join_waitlist(Joining {
                    id: ReservationId::generate(),
                    event: EventId::default_event(),
                    category: None,
                    qty: Quantity::parse(2, 10).unwrap(),
                    customer: None,
                })
                .await
                .unwrap();
            inventory.release(held.id, None).await.unwrap();
            inventory.release(held.id, None).await.unwrap();
            clock.advance_ms(900_000);
            // Any batch expires what is due.
            let offer = inventory.order(entry.entry.id).await.unwrap();
            assert_eq!(offer.status, crate::domain::OrderStatus::Expired);
            let last = inventory
                .reserve(reservation(3))
                .await
                .unwrap()
                .order
                .unwrap();
            inventory.cancel(first.id, None).await.unwrap();
            inventory.cancel(first.id, None).await.unwrap();

            let page = all().await;
            assert_eq!(
                outbox::kinds(&page.changes),
                [
                    "order.confirmed",
                    "hold.created",
                    "event.sold_out",
                    "hold.released",
                    "waitlist.offered",
                    "event.back_on_sale",
                    "waitlist.offer_expired",
                    "order.confirmed",
                    "event.sold_out",
                    "order.cancelled",
                    "event.back_on_sale",
                ]
            );
            let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
            assert_eq!(seqs, (1..=11).collect::<Vec<u64>>());
            assert_eq!(page.next_after, 11);
            let data = |n: usize| -> serde_json::Value {
                serde_json::from_str(&page.changes[n].data).unwrap()
            };
            assert_eq!(data(0)["order"]["order_id"], first.id.to_string());
            assert_eq!(data(0)["order"]["status"], "confirmed");
            assert_eq!(data(1)["order"]["status"], "held");
            assert_eq!(data(2)["event"]["available"], 0);
            assert_eq!(data(4)["entry"]["entry_id"], entry.entry.id.to_string());
            assert_eq!(
                data(4)["entry"]["offer"]["hold_id"],
                entry.entry.id.to_string()
            );
            assert_eq!(data(6)["entry"]["status"], "expired");
            assert_eq!(data(7)["order"]["order_id"], last.id.to_string());
            assert_eq!(data(9)["order"]["status"], "cancelled");

            let query = ChangesQuery {
                after: 3,
                limit: 2,
                wait: Duration::from_secs(5),
            };
            let page = inventory.changes(query).await.unwrap();
            let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
            assert_eq!((seqs, page.next_after), (vec![4, 5], 5));
            let query = ChangesQuery {
                after: 11,
                limit: 2,
                wait: Duration::ZERO,
            };
            assert_eq!(
                inventory.changes(query).await.unwrap(),
                ChangesPage {
                    changes: Vec::new(),
                    next_after: 11
                }
            );
        });
    }

    /// A reader waiting for changes is answered when one commits, not when its wait runs out.
    #[test]
    fn a_waiting_reader_is_answered_when_a_change_commits() {
        let inventory = Arc::new(inventory(5));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let reader = {
                let inventory = Arc::clone(&inventory);
                tokio::spawn(async move {
                    let query = ChangesQuery {
                        after: 0,
                        limit: 10,
                        wait: Duration::from_secs(60),
                    };
                    let started = Instant::now();
                    (inventory.changes(query).await, started.elapsed())
                })
            };
            // The reader waits: no change yet. Then a purchase commits.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!reader.is_finished());
            inventory.reserve(reservation(1)).await.unwrap();
            let (page, waited) = tokio::time::timeout(Duration::from_secs(30), reader)
                .await
                .expect("the reader was not woken by the commit")
                .unwrap();
            let page = page.unwrap();
            assert_eq!(outbox::kinds(&page.changes), ["order.confirmed"]);
            assert!(waited < Duration::from_secs(30), "{waited:?}");
        });
    }

    /// A memory store keeps at most so many changes; a reader behind them is told, not skipped.
    #[test]
    fn a_cursor_older_than_what_is_kept_is_refused_by_name() {
        let mut ledger = MemoryLedger::new();
        let change = |seq| crate::domain::Change {
            seq,
            kind: crate::domain::ChangeType::OrderConfirmed,
            event: EventId::default_event(),
            at_ms: 1,
            data: "{}".into(),
        };
        let batch = Batch {
            changes: (1..=ledger::MEMORY_CHANGES_MAX as u64 + 2)
                .map(change)
                .collect(),
            ..Batch::default()
        };
        ledger.commit(&batch).unwrap();
        let kept = ledger.changes(0, 1).unwrap();
        assert_eq!(kept.changes[0].seq, 3);
        let expired = outbox::page(1, ledger.changes(1, 10).unwrap()).unwrap_err();
        assert_eq!(expired.code(), "cursor_expired");
        assert!(
            matches!(expired, Error::CursorExpired { oldest: 3, .. }),
            "{expired:?}"
        );
        let page = outbox::page(2, ledger.changes(2, 10).unwrap()).unwrap();
        assert_eq!(page.changes[0].seq, 3);
        // Purged by age: everything after the cursor is gone.
        let purge = Batch {
            purge_changes_before_ms: Some(2),
            ..Batch::default()
        };
        ledger.commit(&purge).unwrap();
        let expired = outbox::page(5, ledger.changes(5, 10).unwrap()).unwrap_err();
        let last = ledger::MEMORY_CHANGES_MAX as u64 + 2;
        assert!(
            matches!(expired, Error::CursorExpired { oldest, .. } if oldest == last + 1),
            "{expired:?}"
        );
        // Nothing after the last: an empty page, not an error; nor from 0.
        assert!(outbox::page(last, ledger.changes(last, 10).unwrap()).is_ok());
        assert!(outbox::page(0, ledger.changes(0, 10).unwrap()).is_ok());
    }

    #[test]
    fn events_are_created_once_and_replenished() {
        let inventory = inventory(5);
        let gala = EventId::parse("gala").unwrap();
        run(async {
            let created = inventory
                .create_event(gala.clone(), " Gala ".into(), 100)
                .await
                .unwrap();
            assert_eq!((&*created.name, created.stock().available), ("Gala", 100));
            let again = inventory
                .create_event(gala.clone(), "Gala".into(), 1)
                .await
                .unwrap_err();
            assert_eq!(again.code(), "event_exists");
            let blank = inventory.create_event(EventId::parse("x").unwrap(), "  ".into(), 1);
            assert_eq!(blank.await.unwrap_err().code(), "invalid_event");

            let grown = inventory.replenish(gala.clone(), 20).await.unwrap();
            assert_eq!(
                (grown.stock().capacity, grown.stock().available),
                (120, 120)
            );
        });
        let ids: Vec<_> = run(inventory.events(&PageQuery::default()))
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec![EventId::default_event(), gala]);
    }

    #[test]
    fn events_are_listed_in_pages_after_the_cursor() {
        let inventory = inventory(5);
        let id = |raw: &str| EventId::parse(raw).unwrap();
        let limit = crate::domain::PageLimit::parse("2").unwrap();
        let inventory = &inventory;
        run(async {
            for raw in ["b", "d", "c", "a"] {
                inventory
                    .create_event(id(raw), raw.into(), 1)
                    .await
                    .unwrap();
            }
            let page = |after: Option<&str>| {
                let query = PageQuery {
                    after: after.map(id),
                    limit,
                };
                async move { inventory.events(&query).await.unwrap() }
            };
            let names = |page: &EventsPage| -> Vec<String> {
                page.events.iter().map(|e| e.id.to_string()).collect()
            };

            let first = page(None).await;
            assert_eq!(
                (names(&first), first.next_after.clone()),
                (vec!["a".into(), "b".into()], Some(id("b")))
            );
            let second = page(Some("b")).await;
            assert_eq!(
                (names(&second), second.next_after.clone()),
                (vec!["c".into(), "d".into()], Some(id("d")))
            );
            // `default` sorts last; the page that holds it is the last one.
            let last = page(Some("d")).await;
            assert_eq!(
                (names(&last), last.next_after),
                (vec!["default".into()], None)
            );
            // A cursor need not name an event that exists: the list goes on after it.
            let between = page(Some("bb")).await;
            assert_eq!(names(&between), ["c", "d"]);
            assert!(page(Some("zzz")).await.events.is_empty());
        });
    }

    #[test]
    fn idempotency_keys_answer_repeats_until_they_lapse() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = InventoryConfig {
            initial_stock: 10,
            idempotency_ttl_seconds: 10,
            ..InventoryConfig::default()
        };
        let inventory =
            Inventory::open_with_clock(Box::new(MemoryLedger::new()), config, clock.clone())
                .unwrap();
        let key = IdempotencyKey::parse("checkout-7").unwrap();
        // Each attempt gets a fresh reservation id, as a client's repeat through the API does.
        let keyed = |qty| Reservation {
            key: Some(key.clone()),
            ..reservation(qty)
        };
        run(async {
            let first = inventory.reserve(keyed(2)).await.unwrap();
            let repeat = inventory.reserve(keyed(2)).await.unwrap();
            assert_eq!(repeat, first);
            let other = inventory.reserve(keyed(3)).await.unwrap_err();
            assert_eq!(other.code(), "idempotency_key_reused");

            clock.advance_ms(10_000);
            let after = inventory.reserve(keyed(3)).await.unwrap();
            assert!(after.accepted());
            assert_ne!(after.order.unwrap().id, first.order.unwrap().id);
        });
        assert_eq!(
            run(inventory.event(&EventId::default_event()))
                .unwrap()
                .stock()
                .sold,
            5
        );
    }

    /// A memory ledger whose order lookups fail while `failing` is set; counts every lookup.
    struct FlakyLookups {
        inner: MemoryLedger,
        failing: Arc<std::sync::atomic::AtomicBool>,
        lookups: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl LocalLedger for FlakyLookups {}

    impl Ledger for FlakyLookups {
        fn load(&mut self) -> Result<Vec<Event>, Error> {
            self.inner.load()
        }
        fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
            self.inner.live_holds()
        }
        fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Storage("the disk is gone".into()));
            }
            self.inner.find_order(id)
        }
        fn customer_taken(
            &mut self,
            event: &EventId,
            customer: &crate::domain::CustomerId,
        ) -> Result<u64, Error> {
            self.inner.customer_taken(event, customer)
        }
        fn waitlist(&mut self, event: &EventId) -> Result<Vec<crate::domain::Entry>, Error> {
            self.inner.waitlist(event)
        }
        fn find_entry(&mut self, id: ReservationId) -> Result<Option<crate::domain::Entry>, Error> {
            self.inner.find_entry(id)
        }
        fn last_change_seq(&mut self) -> Result<u64, Error> {
            self.inner.last_change_seq()
        }
        fn changes(&mut self, after: u64, limit: usize) -> Result<ledger::Kept, Error> {
            self.inner.changes(after, limit)
        }
        fn find_key(
            &mut self,
            key: &IdempotencyKey,
        ) -> Result<Option<crate::domain::KeyRecord>, Error> {
            self.inner.find_key(key)
        }
        fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
            self.inner.commit(batch)
        }
    }

    /// The store cannot look a due hold up. The writer must not try again at once, batch after
    /// batch (or with no batch at all, spinning): it waits, longer each time up to a stated limit,
    /// and answers requests meanwhile. Time here is the test clock's: with it standing still, no
    /// wait has passed, so any further lookup would be a retry without waiting.
    #[test]
    fn a_failing_hold_lookup_is_retried_with_growing_waits() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let first_ms = expiry::EXPIRY_RETRY_FIRST.as_millis() as u64;
        let max_ms = expiry::EXPIRY_RETRY_MAX.as_millis() as u64;
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (failing, lookups) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let ledger = FlakyLookups {
            inner: MemoryLedger::new(),
            failing: Arc::clone(&failing),
            lookups: Arc::clone(&lookups),
        };
        let config = InventoryConfig {
            initial_stock: 10,
            ..InventoryConfig::default()
        };
        let inventory =
            Inventory::open_with_clock(Box::new(ledger), config, clock.clone()).unwrap();
        // Adding stock is a batch of its own that looks no order up: it counts only expiries.
        let request = || {
            let event = run(inventory.replenish(EventId::default_event(), 1)).unwrap();
            event.stock().available
        };
        let hold = Reservation {
            hold_ttl_seconds: Some(HoldTtl::parse(1, 3600).unwrap()),
            ..reservation(2)
        };
        let hold = run(inventory.reserve(hold)).unwrap().order.unwrap();
        failing.store(true, SeqCst);
        let before = lookups.load(SeqCst);
        clock.advance_ms(1000);

        // The first try fails; with no time passing, ten more batches try nothing more.
        for _ in 0..10 {
            request();
        }
        assert_eq!(lookups.load(SeqCst), before + 1, "retried without waiting");

        // Each wait is twice the one before, up to the limit.
        let mut wait_ms = first_ms;
        let mut tries = 1;
        while wait_ms < max_ms {
            clock.advance_ms(wait_ms - 1);
            request();
            assert_eq!(
                lookups.load(SeqCst),
                before + tries,
                "retried after {wait_ms} - 1 ms"
            );
            clock.advance_ms(1);
            request();
            tries += 1;
            assert_eq!(
                lookups.load(SeqCst),
                before + tries,
                "no retry after {wait_ms} ms"
            );
            wait_ms = (wait_ms * 2).min(max_ms);
        }
        // ...and never longer than the limit.
        let mut available = 0;
        for _ in 0..5 {
            clock.advance_ms(max_ms);
            available = request();
            tries += 1;
            assert_eq!(lookups.load(SeqCst), before + tries);
        }

        // The store is back: the hold expires with the next try, and its tickets return.
        failing.store(false, SeqCst);
        clock.advance_ms(max_ms);
        assert_eq!(request(), available + 1 + 2);
        let expired = run(inventory.order(hold.id)).unwrap();
        assert_eq!(expired.status, crate::domain::OrderStatus::Expired);
    }

    /// A memory ledger that says it is shared with other replicas, so its writer looks for due
    /// holds now and then; counts those sweeps.
    struct SweptLedger {
        inner: MemoryLedger,
        sweeps: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct NoSharedReads;

    #[async_trait::async_trait]
    impl SharedReads for NoSharedReads {
        async fn event(&self, _: &EventId) -> Result<Option<Event>, Error> {
            Ok(None)
        }
        async fn events(&self, _: &PageQuery) -> Result<EventsPage, Error> {
            Ok(EventsPage {
                events: Vec::new(),
                next_after: None,
            })
        }
        async fn order(&self, _: ReservationId) -> Result<Option<Order>, Error> {
            Ok(None)
        }
        async fn changes(&self, _: u64, _: usize) -> Result<ledger::Kept, Error> {
            Ok(ledger::Kept::default())
        }
    }

    impl Ledger for SweptLedger {
        reads_from_inner!();
        fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
            self.inner.commit(batch)
        }
    }

    impl SharedLedger for SweptLedger {
        fn store_id(&self) -> String {
            "swept-test-store".into()
        }
        fn shared_reads(&self) -> Arc<dyn SharedReads> {
            Arc::new(NoSharedReads)
        }
        fn begin(&mut self, plan: &ledger::Plan) -> Result<ledger::Snapshot, Error> {
            if plan.sweep_max > 0 {
                self.sweeps
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(ledger::Snapshot {
                events: self.inner.load()?,
                due: Vec::new(),
            })
        }
    }

    /// The wall clock is stepped back an hour (an NTP correction). A replica on a shared store
    /// must go on looking for due holds on schedule, not stop until the wall clock catches up.
    #[test]
    fn sweeps_keep_their_schedule_when_the_wall_clock_steps_back() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let interval_ms = expiry::SWEEP_INTERVAL.as_millis() as u64;
        let clock = Arc::new(ManualClock::new(10_000_000));
        let sweeps = Arc::new(AtomicUsize::new(0));
        let ledger = SweptLedger {
            inner: MemoryLedger::new(),
            sweeps: Arc::clone(&sweeps),
        };
        let inventory = Inventory::open_shared_with_clock(
            Box::new(ledger),
            InventoryConfig::default(),
            clock.clone(),
        )
        .unwrap();
        let request = || run(inventory.replenish(EventId::default_event(), 1)).unwrap();
        // A new writer sweeps at once (on waking, or with the first batch).
        request();
        assert_eq!(sweeps.load(SeqCst), 1);

        clock.step_wall_ms(-3_600_000);
        clock.advance_ms(interval_ms - 1);
        request();
        assert_eq!(sweeps.load(SeqCst), 1, "swept early");
        for expected in 2..5 {
            clock.advance_ms(1);
            request();
            assert_eq!(sweeps.load(SeqCst), expected, "no sweep on schedule");
            clock.advance_ms(interval_ms - 1);
        }
    }

    #[test]
    fn a_stopped_writer_makes_the_inventory_unavailable() {
        // The first commit after `open` fails as a broken invariant would: the writer panics.
        let ledger = hooked(|n| assert!(n == 1, "a broken invariant"));
        let inventory = Inventory::open(ledger, InventoryConfig::default()).unwrap();
        assert!(run(inventory.event(&EventId::default_event())).is_ok());
        let error = run(inventory.reserve(reservation(1))).unwrap_err();
        assert_eq!(error.code(), "internal", "{error}");
        // The writer is gone: no more changes, and reads (so readiness) say so.
        for _ in 0..100 {
            if run(inventory.event(&EventId::default_event())).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let read = run(inventory.event(&EventId::default_event())).unwrap_err();
        assert_eq!(read.code(), "unavailable");
        let write = run(inventory.reserve(reservation(1))).unwrap_err();
        assert_eq!(write.code(), "unavailable");
    }
}
