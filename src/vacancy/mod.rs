//! The inventory: the only place stock changes.
//!
//! [`Inventory`] is a cheap handle in front of one writer thread (see [`writer`]). Reads come from
//! the committed state in memory and never wait for the writer; changes queue up for it and are
//! answered once committed.

pub mod ledger;
#[cfg(test)]
mod model_test;
pub mod postgres;
pub mod sqlite;
mod writer;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::domain::{
    Cancelled, DEFAULT_EVENT, Error, Event, EventId, IdempotencyKey, Order, Reservation,
    ReservationId, Reserved,
};
use ledger::{Ledger, SharedReads};
use postgres::PostgresConfig;
use sqlite::{Exported, SqliteLedger};
use writer::{Command, Events, Writer};

/// Copies the embedded store in `data_dir` into the empty database of `target`, in one
/// transaction, after checking the store adds up. The store stays locked throughout, so no
/// ticketd can sell from it meanwhile; once this returns, start the replicas on the database.
pub fn copy_to_postgres(data_dir: &Path, target: &PostgresConfig) -> Result<Exported, Error> {
    if !data_dir.join(sqlite::DATABASE_FILE).is_file() {
        return Err(Error::Storage(format!(
            "there is no embedded store in {}",
            data_dir.display()
        )));
    }
    let source = SqliteLedger::open(data_dir)?;
    source.audit()?;
    let mut exported = Exported::default();
    postgres::import(target, |sink| {
        exported = source.export(COPY_CHUNK, sink)?;
        Ok(())
    })?;
    Ok(exported)
}

/// Rows per statement when copying a store: large enough to amortise the round trips, small
/// enough that no statement approaches the database's time limit.
const COPY_CHUNK: usize = 5_000;

/// Largest capacity of one event: far beyond any venue, well inside every store's integer range.
pub const CAPACITY_MAX: u64 = 1_000_000_000_000;

/// Where the inventory reads the time; tests substitute a clock they move by hand.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64)
    }
}

/// Limits and start-up values of an inventory.
#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// Capacity of the `default` event when the store is new. Ignored for an existing store.
    pub initial_stock: u64,
    /// Most tickets one reservation may take.
    pub max_per_order: u32,
    /// Longest hold a reservation may ask for.
    pub hold_ttl_seconds_max: u32,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl_seconds: u64,
    /// Most requests waiting for the writer; one more is refused as `overloaded`.
    pub queue_size_max: usize,
    /// Most requests decided and committed together.
    pub batch_size_max: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            initial_stock: 1000,
            max_per_order: 10,
            hold_ttl_seconds_max: 3600,
            idempotency_ttl_seconds: 86_400,
            queue_size_max: 16_384,
            batch_size_max: 1024,
        }
    }
}

pub struct Inventory {
    /// `None` only while dropping, so the writer sees the channel close before we join it.
    commands: Option<SyncSender<Command>>,
    /// Committed events as this process last wrote them; authoritative unless the ledger is shared.
    events: Events,
    /// Reads from the database, when the ledger is shared with other replicas.
    reads: Option<Arc<dyn SharedReads>>,
    /// The shared store's identity; `None` for a store of this process alone.
    store_id: Option<String>,
    config: InventoryConfig,
    writer: Option<JoinHandle<()>>,
}

impl Inventory {
    /// Loads `ledger`, creates the `default` event if the store is new, and starts the writer.
    pub fn open(ledger: Box<dyn Ledger>, config: InventoryConfig) -> Result<Self, Error> {
        Self::open_with_clock(ledger, config, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        ledger: Box<dyn Ledger>,
        config: InventoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        assert!(config.queue_size_max > 0 && config.batch_size_max > 0);
        let events = Arc::new(RwLock::new(HashMap::new()));
        let reads = ledger.shared_reads();
        let (commands, queue) = mpsc::sync_channel(config.queue_size_max);
        // The ledger is loaded on the writer's own thread, like every later use of it: a ledger
        // may block, and the caller may be an async runtime's thread.
        let (opened, open) = mpsc::sync_channel(1);
        let writer = {
            let (events, config) = (Arc::clone(&events), config.clone());
            let key_ttl_ms = i64::try_from(config.idempotency_ttl_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX);
            std::thread::Builder::new()
                .name("inventory-writer".into())
                .spawn(move || {
                    let mut ledger = ledger;
                    let holds = match load(ledger.as_mut(), &events, &config) {
                        Ok(holds) => holds,
                        Err(error) => return drop(opened.send(Err(error))),
                    };
                    let writer = Writer {
                        shared: ledger.shared_reads().is_some(),
                        ledger,
                        events,
                        holds,
                        batch_size_max: config.batch_size_max,
                        clock,
                        expiry_paused_until_ms: 0,
                        key_ttl_ms,
                        keys_purged_at_ms: 0,
                        swept_at_ms: 0,
                        failing: false,
                    };
                    let _ = opened.send(Ok(writer.ledger.store_id()));
                    writer.run(queue)
                })
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
            commands: Some(commands),
            events,
            reads,
            store_id,
            config,
            writer: Some(writer),
        })
    }

    /// What identifies the store this inventory shares with other replicas, if it shares one.
    pub fn store_id(&self) -> Option<&str> {
        self.store_id.as_deref()
    }

    pub fn max_per_order(&self) -> u32 {
        self.config.max_per_order
    }

    /// One event as last committed.
    pub async fn event(&self, id: &EventId) -> Result<Event, Error> {
        self.ensure_running()?;
        let event = match &self.reads {
            Some(reads) => reads.event(id).await?,
            None => self.events.read().get(id).cloned(),
        };
        event.ok_or_else(|| Error::UnknownEvent(format!("unknown event '{id}'")))
    }

    /// Every event as last committed, by id.
    pub async fn events(&self) -> Result<Vec<Event>, Error> {
        self.ensure_running()?;
        if let Some(reads) = &self.reads {
            return reads.events().await;
        }
        let mut events: Vec<Event> = self.events.read().values().cloned().collect();
        events.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(events)
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
    pub async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        if reservation.qty.get() > self.config.max_per_order {
            return Err(Error::OverLimit(format!(
                "qty {} is over the limit of {} tickets per order",
                reservation.qty, self.config.max_per_order
            )));
        }
        if let Some(ttl) = reservation.hold_ttl_seconds
            && (ttl == 0 || ttl > self.config.hold_ttl_seconds_max)
        {
            return Err(Error::InvalidQuantity(format!(
                "ttl_seconds must be 1 to {}",
                self.config.hold_ttl_seconds_max
            )));
        }
        self.ask(|reply| Command::Reserve { reservation, reply })
            .await
    }

    /// Turns a live hold into a sale; a hold past its time is `HoldExpired`.
    pub async fn confirm(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, Error> {
        self.ask(|reply| Command::Confirm { id, key, reply }).await
    }

    /// Gives a hold's tickets back; releasing twice changes nothing.
    pub async fn release(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, Error> {
        self.ask(|reply| Command::Release { id, key, reply }).await
    }

    /// Returns a confirmed order's tickets to stock, exactly once.
    pub async fn cancel(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Cancelled, Error> {
        self.ask(|reply| Command::Cancel { id, key, reply }).await
    }

    /// One order or hold, as committed.
    pub async fn order(&self, id: ReservationId) -> Result<Order, Error> {
        let Some(reads) = &self.reads else {
            return self.ask(|reply| Command::Find { id, reply }).await;
        };
        self.ensure_running()?;
        reads
            .order(id)
            .await?
            .ok_or_else(|| Error::UnknownOrder(format!("unknown order or hold '{id}'")))
    }

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
        self.ask(|reply| Command::CreateEvent {
            id,
            name,
            capacity,
            reply,
        })
        .await
    }

    /// Adds `qty` tickets to an event's capacity and availability.
    pub async fn replenish(&self, event: EventId, qty: u64) -> Result<Event, Error> {
        if qty == 0 || qty > CAPACITY_MAX {
            return Err(Error::InvalidQuantity(format!(
                "qty must be 1 to {CAPACITY_MAX}, got {qty}"
            )));
        }
        self.ask(|reply| Command::Replenish { event, qty, reply })
            .await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply))?;
        answer
            .await
            .map_err(|_| Error::Internal("the inventory writer stopped before answering".into()))?
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        let commands = self
            .commands
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the inventory is closing".into()))?;
        commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => Error::Overloaded,
            TrySendError::Disconnected(_) => {
                Error::Unavailable("the inventory writer has stopped".into())
            }
        })
    }
}

/// Reads the committed events into `events`, creates the `default` event if the store is new, and
/// returns the live holds.
fn load(
    ledger: &mut dyn Ledger,
    events: &RwLock<HashMap<EventId, Event>>,
    config: &InventoryConfig,
) -> Result<BTreeSet<(i64, ReservationId)>, Error> {
    let mut loaded: HashMap<EventId, Event> = HashMap::new();
    for event in ledger.load()? {
        if !event.stock.is_consistent() {
            return Err(Error::Storage(format!(
                "stored stock of '{}' does not add up: {:?}",
                event.id, event.stock
            )));
        }
        loaded.insert(event.id.clone(), event);
    }
    let default = EventId::default_event();
    match loaded.get(&default) {
        None => {
            let event = Event {
                id: default.clone(),
                name: DEFAULT_EVENT.into(),
                stock: crate::domain::Stock::new(config.initial_stock),
            };
            ledger.insert_event_if_absent(&event)?;
            loaded.insert(default, event);
        }
        Some(event) if event.stock.capacity != config.initial_stock => tracing::warn!(
            stored_capacity = event.stock.capacity,
            available = event.stock.available,
            initial_stock = config.initial_stock,
            "the store already exists: keeping its stock and ignoring initial_stock"
        ),
        Some(_) => {}
    }
    *events.write() = loaded;
    Ok(ledger.live_holds()?.into_iter().collect())
}

impl Drop for Inventory {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop; waiting for it means a
        // durable ledger is closed cleanly before the process exits.
        drop(self.commands.take());
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
    use crate::domain::{Quantity, ReservationId};
    use ledger::{Batch, MemoryLedger};

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
            qty: Quantity::parse(qty, 10).unwrap(),
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
            .stock;
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
                qty: Quantity::parse(5, 10).unwrap(),
                ..again
            };
            let conflict = inventory.reserve(changed).await.unwrap_err();
            assert_eq!(conflict.code(), "reservation_conflict");
        });
        assert_eq!(
            run(inventory.event(&EventId::default_event()))
                .unwrap()
                .stock
                .sold,
            4
        );
    }

    #[test]
    fn unknown_events_and_oversized_orders_change_nothing() {
        let inventory = inventory(10);
        run(async {
            let unknown = Reservation {
                event: EventId::parse("nope").unwrap(),
                ..reservation(1)
            };
            let error = inventory.reserve(unknown).await.unwrap_err();
            assert_eq!(error.code(), "unknown_event");

            let too_many = Reservation {
                qty: Quantity::parse(11, 100).unwrap(),
                ..reservation(1)
            };
            let error = inventory.reserve(too_many).await.unwrap_err();
            assert_eq!(error.code(), "quantity_over_limit");
        });
        assert_eq!(
            run(inventory.event(&EventId::default_event()))
                .unwrap()
                .stock
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
            .stock;
        assert_eq!((stock.available, stock.sold), (0, 100));
    }

    /// A memory ledger that runs `before_commit(n)` ahead of its n-th commit (the first is the one
    /// `open` makes for the default event).
    struct HookedLedger<F> {
        inner: MemoryLedger,
        commits: usize,
        before_commit: F,
    }

    fn hooked<F: FnMut(usize) + Send + 'static>(before_commit: F) -> Box<dyn Ledger> {
        Box::new(HookedLedger {
            inner: MemoryLedger::new(),
            commits: 0,
            before_commit,
        })
    }

    impl<F: FnMut(usize) + Send + 'static> Ledger for HookedLedger<F> {
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
        fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
            self.commits += 1;
            (self.before_commit)(self.commits);
            self.inner.commit(batch)
        }
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
                .stock
                .sold,
            2
        );
    }

    struct ManualClock(std::sync::atomic::AtomicI64);

    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl ManualClock {
        fn advance_ms(&self, ms: i64) {
            self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn holds_confirm_release_expire_and_cancel_move_tickets_exactly_once() {
        use crate::domain::OrderStatus::*;
        let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
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
                .stock;
            assert!(stock.is_consistent());
            (stock.available, stock.held, stock.sold)
        };
        let hold = |qty, ttl| Reservation {
            hold_ttl_seconds: Some(ttl),
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

    #[test]
    fn events_are_created_once_and_replenished() {
        let inventory = inventory(5);
        let gala = EventId::parse("gala").unwrap();
        run(async {
            let created = inventory
                .create_event(gala.clone(), " Gala ".into(), 100)
                .await
                .unwrap();
            assert_eq!((&*created.name, created.stock.available), ("Gala", 100));
            let again = inventory
                .create_event(gala.clone(), "Gala".into(), 1)
                .await
                .unwrap_err();
            assert_eq!(again.code(), "event_exists");
            let blank = inventory.create_event(EventId::parse("x").unwrap(), "  ".into(), 1);
            assert_eq!(blank.await.unwrap_err().code(), "invalid_event");

            let grown = inventory.replenish(gala.clone(), 20).await.unwrap();
            assert_eq!((grown.stock.capacity, grown.stock.available), (120, 120));
        });
        let ids: Vec<_> = run(inventory.events())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec![EventId::default_event(), gala]);
    }

    #[test]
    fn idempotency_keys_answer_repeats_until_they_lapse() {
        let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
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
                .stock
                .sold,
            5
        );
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
