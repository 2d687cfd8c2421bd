//! The single writer of an inventory: group commit.
//!
//! Requests queue up in a channel holding at most `queue_size_max` sends. The writer takes every
//! request that is waiting (up to `batch_size_max`) and, for the whole batch at once:
//!
//! 1. **reads** what the batch names: a shared store first locks the batch's events and hands
//!    back their committed state; then every idempotency key, and every order the requests, those
//!    keys and the holds due name, is looked up (keys first, since a keyed repeat names its order
//!    through its key);
//! 2. **decides** each request in arrival order, in memory, by the rules of [`super::rules`];
//! 3. **commits** the decisions with one [`super::ledger::Ledger::commit`];
//! 4. **publishes** the new state, and only then **answers**.
//!
//! So an answer always means "committed", readers only ever see committed state, and the cost of
//! a durable commit is shared by everyone who arrived meanwhile. On a shared store a batch that
//! collided with another replica is read and decided again.
//!
//! It is a plain OS thread rather than a Tokio task because ledgers may block on disk I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use super::events::EventMap;
use super::expiry::Holds;
use super::idempotency::{self, KeyUse};
use super::ledger::{Batch, Kept, Plan};
use super::outbox;
use super::rules::{Changes, Read, Rules};
use super::store::Store;
use super::{Clock, InventoryConfig};
use crate::domain::{
    Cancelled, CategoryChange, CategoryId, DEFAULT_EVENT, EntryView, Error, Event, EventId,
    IdempotencyKey, Joining, Order, QuotaId, Reservation, ReservationId, Reserved, Resize,
};
use crate::telemetry;

/// Events as the writer last committed or locked them, found by id in one hash lookup and listed
/// in id order, so a page of the list is a range, not a sort of every event (see [`EventMap`]).
/// Written only by the writer. On a local store this is every
/// event, and reads are served from it; on a shared store it holds only the events the last batch
/// locked, with their counts as that batch left them, and reads go to the database instead.
pub(crate) type Events = Arc<RwLock<EventMap>>;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// One request to the writer, and where its answer goes.
pub(crate) struct Call<R, T> {
    pub request: R,
    pub reply: Reply<T>,
    /// The span that asked, so the batch deciding it joins the request's trace.
    pub origin: telemetry::Origin,
    /// When it was queued (real time: what a store's time limit counts).
    pub queued: Instant,
}

impl<R, T> Call<R, T> {
    fn answer(self, answer: Result<T, Error>) {
        // The caller may have given up waiting (a client timeout); what was committed stays.
        let _ = self.reply.send(answer);
    }

    fn fail(self, error: &Error) {
        self.answer(Err(error.clone()));
    }
}

/// A change to an existing order, perhaps under an idempotency key.
pub(crate) struct OrderChange {
    pub id: ReservationId,
    pub key: Option<IdempotencyKey>,
}

impl OrderChange {
    fn plan(&self, plan: &mut Plan) {
        plan.changes.push(self.id);
        plan.orders.push(self.id);
        plan.keys.extend(self.key.clone());
    }
}

pub(crate) struct Replenishment {
    pub event: EventId,
    pub qty: u64,
}

pub(crate) struct QuotaResize {
    pub event: EventId,
    pub quota: QuotaId,
    pub resize: Resize,
}

pub(crate) struct CategoryUpdate {
    pub event: EventId,
    pub category: CategoryId,
    pub change: CategoryChange,
}

pub(crate) enum Command {
    Reserve(Call<Reservation, Reserved>),
    Confirm(Call<OrderChange, Order>),
    Release(Call<OrderChange, Order>),
    Cancel(Call<OrderChange, Cancelled>),
    Find(Call<ReservationId, Order>),
    CreateEvent(Call<Event, Event>),
    Replenish(Call<Replenishment, Event>),
    ResizeQuota(Call<QuotaResize, Event>),
    ChangeCategory(Call<CategoryUpdate, Event>),
    JoinWaitlist(Call<Joining, EntryView>),
    FindEntry(Call<ReservationId, EntryView>),
    LeaveWaitlist(Call<ReservationId, EntryView>),
    /// Committed changes after a number, at most so many: a read of a store of this process,
    /// answered as the writer takes it from the queue, never decided in a batch.
    Changes(Call<(u64, usize), Kept>),
}

/// What the writer's queue carries: one command, or several sent together so that they are
/// decided in one batch (a call that coalesced many reservations).
pub(crate) enum Queued {
    One(Command),
    Many(Vec<Command>),
}

impl Queued {
    /// Commands it carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Queued::One(_) => 1,
            Queued::Many(commands) => commands.len(),
        }
    }
}

/// A command with its answer, decided but not yet committed. Each answer has the type its call
/// expects, so no answer of the wrong kind can reach a caller.
enum Decided {
    Reserve(Call<Reservation, Reserved>, Result<Reserved, Error>),
    Confirm(Call<OrderChange, Order>, Result<Order, Error>),
    Release(Call<OrderChange, Order>, Result<Order, Error>),
    Cancel(Call<OrderChange, Cancelled>, Result<Cancelled, Error>),
    Find(Call<ReservationId, Order>, Result<Order, Error>),
    CreateEvent(Call<Event, Event>, Result<Event, Error>),
    Replenish(Call<Replenishment, Event>, Result<Event, Error>),
    ResizeQuota(Call<QuotaResize, Event>, Result<Event, Error>),
    ChangeCategory(Call<CategoryUpdate, Event>, Result<Event, Error>),
    JoinWaitlist(Call<Joining, EntryView>, Result<EntryView, Error>),
    FindEntry(Call<ReservationId, EntryView>, Result<EntryView, Error>),
    LeaveWaitlist(Call<ReservationId, EntryView>, Result<EntryView, Error>),
    Changes(Call<(u64, usize), Kept>, Result<Kept, Error>),
}

impl Command {
    /// The idempotency key the request carries, if any.
    fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            Command::Reserve(call) => call.request.key.as_ref(),
            Command::Confirm(call) | Command::Release(call) => call.request.key.as_ref(),
            Command::Cancel(call) => call.request.key.as_ref(),
            Command::Find(_)
            | Command::CreateEvent(_)
            | Command::Replenish(_)
            | Command::ResizeQuota(_)
            | Command::ChangeCategory(_)
            | Command::JoinWaitlist(_)
            | Command::FindEntry(_)
            | Command::LeaveWaitlist(_)
            | Command::Changes(_) => None,
        }
    }

    /// The customer of an event whose tickets a reservation counts, if it names one.
    fn customer(&self) -> Option<(&EventId, &crate::domain::CustomerId)> {
        match self {
            Command::Reserve(call) => call
                .request
                .customer
                .as_ref()
                .map(|customer| (&call.request.event, customer)),
            Command::JoinWaitlist(call) => call
                .request
                .customer
                .as_ref()
                .map(|customer| (&call.request.event, customer)),
            _ => None,
        }
    }

    /// The order the request names, if any.
    fn order(&self) -> Option<ReservationId> {
        match self {
            Command::Reserve(call) => Some(call.request.id),
            Command::Confirm(call) | Command::Release(call) => Some(call.request.id),
            Command::Cancel(call) => Some(call.request.id),
            Command::Find(call) => Some(call.request),
            // An entry's id is also its offer's hold's: joining checks no order has it, leaving
            // may release that hold.
            Command::JoinWaitlist(call) => Some(call.request.id),
            Command::LeaveWaitlist(call) => Some(call.request),
            Command::CreateEvent(_)
            | Command::Replenish(_)
            | Command::ResizeQuota(_)
            | Command::ChangeCategory(_)
            | Command::FindEntry(_)
            | Command::Changes(_) => None,
        }
    }

    /// The waiting-list entry the request names, if any.
    fn entry(&self) -> Option<ReservationId> {
        match self {
            Command::JoinWaitlist(call) => Some(call.request.id),
            Command::FindEntry(call) | Command::LeaveWaitlist(call) => Some(call.request),
            _ => None,
        }
    }

    /// The event whose waiting list the request may change or serve, when the request names it
    /// (requests that name an order or entry reach their event through what was read).
    fn event(&self) -> Option<&EventId> {
        match self {
            Command::Reserve(call) => Some(&call.request.event),
            Command::JoinWaitlist(call) => Some(&call.request.event),
            Command::Replenish(call) => Some(&call.request.event),
            Command::ResizeQuota(call) => Some(&call.request.event),
            _ => None,
        }
    }

    /// Whether the request may change the order it names (and so its event's waiting list).
    fn changes_order(&self) -> bool {
        matches!(
            self,
            Command::Confirm(_)
                | Command::Release(_)
                | Command::Cancel(_)
                | Command::LeaveWaitlist(_)
        )
    }

    /// Adds what the request touches to a shared store's plan.
    pub(super) fn plan(&self, plan: &mut Plan) {
        match self {
            Command::Reserve(call) => {
                let request = &call.request;
                plan.events.push(request.event.clone());
                plan.orders.push(request.id);
                plan.keys.extend(request.key.clone());
                if let Some(customer) = &request.customer {
                    plan.customers
                        .push((request.event.clone(), customer.clone()));
                }
            }
            Command::Confirm(call) | Command::Release(call) => call.request.plan(plan),
            Command::Cancel(call) => call.request.plan(plan),
            Command::Find(call) => plan.orders.push(call.request),
            Command::CreateEvent(call) => plan.events.push(call.request.id.clone()),
            Command::Replenish(call) => plan.events.push(call.request.event.clone()),
            Command::ResizeQuota(call) => plan.events.push(call.request.event.clone()),
            Command::ChangeCategory(call) => plan.events.push(call.request.event.clone()),
            Command::JoinWaitlist(call) => {
                let request = &call.request;
                plan.events.push(request.event.clone());
                plan.orders.push(request.id);
                plan.entries.push(request.id);
                if let Some(customer) = &request.customer {
                    plan.customers
                        .push((request.event.clone(), customer.clone()));
                }
            }
            Command::FindEntry(call) => plan.entries.push(call.request),
            Command::Changes(_) => {}
            Command::LeaveWaitlist(call) => {
                // The offer's hold, if any, has the entry's id.
                plan.changes.push(call.request);
                plan.orders.push(call.request);
                plan.entries.push(call.request);
            }
        }
    }

    fn decide(self, rules: &mut Rules) -> Decided {
        match self {
            Command::Reserve(call) => {
                let answer = rules.reserve(&call.request);
                Decided::Reserve(call, answer)
            }
            Command::Confirm(call) => {
                let answer = rules.confirm(call.request.id, call.request.key.as_ref());
                Decided::Confirm(call, answer)
            }
            Command::Release(call) => {
                let answer = rules.release(call.request.id, call.request.key.as_ref());
                Decided::Release(call, answer)
            }
            Command::Cancel(call) => {
                let answer = rules.cancel(call.request.id, call.request.key.as_ref());
                Decided::Cancel(call, answer)
            }
            Command::Find(call) => {
                let answer = rules.find(call.request);
                Decided::Find(call, answer)
            }
            Command::CreateEvent(call) => {
                let answer = rules.create_event(&call.request);
                Decided::CreateEvent(call, answer)
            }
            Command::Replenish(call) => {
                let answer = rules.replenish(&call.request.event, call.request.qty);
                Decided::Replenish(call, answer)
            }
            Command::ResizeQuota(call) => {
                let QuotaResize {
                    event,
                    quota,
                    resize,
                } = &call.request;
                let answer = rules.resize_quota(event, quota, *resize);
                Decided::ResizeQuota(call, answer)
            }
            Command::ChangeCategory(call) => {
                let CategoryUpdate {
                    event,
                    category,
                    change,
                } = &call.request;
                let answer = rules.change_category(event, category, *change);
                Decided::ChangeCategory(call, answer)
            }
            Command::JoinWaitlist(call) => {
                let answer = rules.join(&call.request);
                Decided::JoinWaitlist(call, answer)
            }
            Command::FindEntry(call) => {
                let answer = rules.find_entry(call.request);
                Decided::FindEntry(call, answer)
            }
            Command::LeaveWaitlist(call) => {
                let answer = rules.leave(call.request);
                Decided::LeaveWaitlist(call, answer)
            }
            // Answered when taken from the queue (`Writer::take`): never part of a batch.
            Command::Changes(call) => Decided::Changes(
                call,
                Err(Error::Internal(
                    "a read of changes reached a batch's decisions".into(),
                )),
            ),
        }
    }

    fn origin(&self) -> &telemetry::Origin {
        match self {
            Command::Reserve(call) => &call.origin,
            Command::Confirm(call) | Command::Release(call) => &call.origin,
            Command::Cancel(call) => &call.origin,
            Command::Find(call) => &call.origin,
            Command::CreateEvent(call) => &call.origin,
            Command::Replenish(call) => &call.origin,
            Command::ResizeQuota(call) => &call.origin,
            Command::ChangeCategory(call) => &call.origin,
            Command::JoinWaitlist(call) => &call.origin,
            Command::FindEntry(call) | Command::LeaveWaitlist(call) => &call.origin,
            Command::Changes(call) => &call.origin,
        }
    }

    fn queued(&self) -> Instant {
        match self {
            Command::Reserve(call) => call.queued,
            Command::Confirm(call) | Command::Release(call) => call.queued,
            Command::Cancel(call) => call.queued,
            Command::Find(call) => call.queued,
            Command::CreateEvent(call) => call.queued,
            Command::Replenish(call) => call.queued,
            Command::ResizeQuota(call) => call.queued,
            Command::ChangeCategory(call) => call.queued,
            Command::JoinWaitlist(call) => call.queued,
            Command::FindEntry(call) | Command::LeaveWaitlist(call) => call.queued,
            Command::Changes(call) => call.queued,
        }
    }

    /// Answers with `error`: nothing of the batch was stored.
    fn fail(self, error: &Error) {
        match self {
            Command::Reserve(call) => call.fail(error),
            Command::Confirm(call) | Command::Release(call) => call.fail(error),
            Command::Cancel(call) => call.fail(error),
            Command::Find(call) => call.fail(error),
            Command::CreateEvent(call) => call.fail(error),
            Command::Replenish(call) => call.fail(error),
            Command::ResizeQuota(call) => call.fail(error),
            Command::ChangeCategory(call) => call.fail(error),
            Command::JoinWaitlist(call) => call.fail(error),
            Command::FindEntry(call) | Command::LeaveWaitlist(call) => call.fail(error),
            Command::Changes(call) => call.fail(error),
        }
    }
}

impl Decided {
    /// Answers with the decision, now that it is committed.
    fn answer(self) {
        match self {
            Decided::Reserve(call, answer) => call.answer(answer),
            Decided::Confirm(call, answer) | Decided::Release(call, answer) => call.answer(answer),
            Decided::Cancel(call, answer) => call.answer(answer),
            Decided::Find(call, answer) => call.answer(answer),
            Decided::CreateEvent(call, answer) => call.answer(answer),
            Decided::Replenish(call, answer) => call.answer(answer),
            Decided::ResizeQuota(call, answer) => call.answer(answer),
            Decided::ChangeCategory(call, answer) => call.answer(answer),
            Decided::JoinWaitlist(call, answer) => call.answer(answer),
            Decided::FindEntry(call, answer) | Decided::LeaveWaitlist(call, answer) => {
                call.answer(answer)
            }
            Decided::Changes(call, answer) => call.answer(answer),
        }
    }

    /// The command again, its decision dropped: to be decided anew.
    fn undo(self) -> Command {
        match self {
            Decided::Reserve(call, _) => Command::Reserve(call),
            Decided::Confirm(call, _) => Command::Confirm(call),
            Decided::Release(call, _) => Command::Release(call),
            Decided::Cancel(call, _) => Command::Cancel(call),
            Decided::Find(call, _) => Command::Find(call),
            Decided::CreateEvent(call, _) => Command::CreateEvent(call),
            Decided::Replenish(call, _) => Command::Replenish(call),
            Decided::ResizeQuota(call, _) => Command::ResizeQuota(call),
            Decided::ChangeCategory(call, _) => Command::ChangeCategory(call),
            Decided::JoinWaitlist(call, _) => Command::JoinWaitlist(call),
            Decided::FindEntry(call, _) => Command::FindEntry(call),
            Decided::LeaveWaitlist(call, _) => Command::LeaveWaitlist(call),
            Decided::Changes(call, _) => Command::Changes(call),
        }
    }
}

/// How often lapsed idempotency keys are deleted (with a batch that commits anyway).
const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// How many times a batch is decided when replicas sharing a database keep colliding on it.
const CONTENTION_ATTEMPTS: u32 = 4;

/// One batch's time: `now_ms` on the wall clock, for decisions and what is stored; `now` on the
/// monotonic clock, for scheduling.
#[derive(Clone, Copy)]
pub(crate) struct Time {
    pub now_ms: i64,
    pub now: Instant,
}

pub(crate) struct Writer<S> {
    store: S,
    events: Events,
    /// Live holds, as committed, like `events`.
    holds: Holds,
    batch_size_max: usize,
    /// Wall-clock time decides and is stored (deadlines, `*_at_ms`); the monotonic side alone
    /// schedules the writer's own chores, so a wall clock stepped back cannot stall them.
    clock: Arc<dyn Clock>,
    /// How long an idempotency key is remembered.
    key_ttl_ms: i64,
    /// How long a waiting-list offer is held.
    offer_ttl_seconds: u32,
    /// How long committed changes are kept.
    changes_retention_ms: i64,
    /// The number the batch's first change gets on a store of this process (a shared store
    /// numbers changes itself, in commit order among replicas).
    next_seq: u64,
    /// Counts commits that wrote changes, for readers waiting for one.
    committed: tokio::sync::watch::Sender<u64>,
    /// When lapsed keys are next deleted (monotonic).
    keys_purge_due: Instant,
    /// The last batch failed to commit (for logging an outage once).
    failing: bool,
    /// What the batch being decided read; kept between batches to reuse its room.
    read: Read,
    /// Holds due in the batch being decided.
    due: Vec<(i64, ReservationId)>,
    decided: Vec<Decided>,
}

impl<S: Store> Writer<S> {
    /// Reads the committed events into `events`, creates the `default` event if the store is new,
    /// and learns the live holds. Runs on the writer's own thread, like every later use of the
    /// store: a ledger may block, and whoever opens the inventory may be an async runtime's thread.
    pub fn open(
        mut store: S,
        events: Events,
        config: &InventoryConfig,
        clock: Arc<dyn Clock>,
        committed: tokio::sync::watch::Sender<u64>,
    ) -> Result<Self, Error> {
        let ledger = store.ledger();
        let mut loaded = EventMap::default();
        for event in ledger.load()? {
            if !event.is_consistent() {
                return Err(Error::Storage(format!(
                    "stored stock of '{}' does not add up: {:?}",
                    event.id, event.quotas
                )));
            }
            loaded.insert(event);
        }
        let default = EventId::default_event();
        match loaded.get(&default) {
            None => {
                let event =
                    Event::single(default.clone(), DEFAULT_EVENT.into(), config.initial_stock);
                ledger.insert_event_if_absent(&event)?;
                loaded.insert(event);
            }
            Some(event) if event.stock().capacity != config.initial_stock => tracing::warn!(
                stored_capacity = event.stock().capacity,
                available = event.stock().available,
                initial_stock = config.initial_stock,
                "the store already exists: keeping its stock and ignoring initial_stock"
            ),
            Some(_) => {}
        }
        *events.write() = loaded;
        let live = ledger.live_holds()?;
        let next_seq = ledger.last_change_seq()? + 1;
        // Everything periodic is due at once: a new writer sweeps and purges first.
        let now = clock.monotonic();
        let key_ttl_ms =
            i64::try_from(config.idempotency_ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok(Self {
            store,
            events,
            holds: Holds::new(live, now),
            batch_size_max: config.batch_size_max,
            clock,
            key_ttl_ms,
            offer_ttl_seconds: config.waitlist_offer_ttl_seconds,
            changes_retention_ms: i64::from(config.changes_retention_hours) * 3_600_000,
            next_seq,
            committed,
            keys_purge_due: now,
            failing: false,
            read: Read::default(),
            due: Vec::new(),
            decided: Vec::with_capacity(config.batch_size_max),
        })
    }

    pub fn store_id(&self) -> Option<String> {
        self.store.store_id()
    }

    /// Takes batches off the queue and processes them until every sender is gone. Commands sent
    /// together stay together, so a batch may pass `batch_size_max` by the last one's size.
    /// `waiting` counts the sends not yet received (see `Queue`): one comes off each received.
    pub fn run(mut self, commands: Receiver<Queued>, waiting: &AtomicUsize) {
        let mut batch = Vec::with_capacity(self.batch_size_max);
        loop {
            // Wait for a request, or until the next hold is due.
            let next = match self.next_wake() {
                None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wake) => {
                    commands.recv_timeout(wake.saturating_duration_since(self.clock.monotonic()))
                }
            };
            let mut taken = 0;
            let mut received = 0;
            match next {
                Ok(queued) => {
                    received += 1;
                    taken += self.take(queued, &mut batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: the inventory was dropped, time to stop.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.batch_size_max {
                match commands.try_recv() {
                    Ok(queued) => {
                        received += 1;
                        taken += self.take(queued, &mut batch);
                    }
                    Err(_) => break,
                }
            }
            waiting.fetch_sub(received, Ordering::Relaxed);
            metrics::gauge!("ticketd_inventory_queue_requests").decrement(taken as f64);
            if batch.is_empty() && taken > 0 {
                // Only reads of changes came: nothing to decide (no due hold is lost: the next
                // wait is computed anew).
                continue;
            }
            self.process(&mut batch);
        }
        tracing::debug!("inventory writer stopped");
    }

    /// Adds what was queued to the batch, answering at once each command that only reads
    /// committed changes: those are as committed by the last batch, whatever this one will decide.
    /// Says how many commands it took.
    fn take(&mut self, queued: Queued, batch: &mut Vec<Command>) -> usize {
        let taken = queued.len();
        match queued {
            Queued::One(command) => self.take_one(command, batch),
            Queued::Many(commands) => {
                for command in commands {
                    self.take_one(command, batch);
                }
            }
        }
        taken
    }

    fn take_one(&mut self, command: Command, batch: &mut Vec<Command>) {
        match command {
            Command::Changes(call) => {
                let (after, limit) = call.request;
                let kept = self.store.ledger().changes(after, limit);
                call.answer(kept);
            }
            command => batch.push(command),
        }
    }

    /// When the writer must wake with no request (monotonic): when the next hold is due, or a
    /// shared store is next swept, but not while expiry waits after a failure.
    fn next_wake(&self) -> Option<Instant> {
        let now = self.clock.monotonic();
        // A hold's deadline is wall-clock time, as stored and as told to the client.
        let hold = self.holds.next_deadline_ms().map(|deadline_ms| {
            let wait_ms = deadline_ms.saturating_sub(self.clock.now_ms()).max(0);
            now + Duration::from_millis(wait_ms as u64)
        });
        let next = match (hold, self.store.next_sweep()) {
            (Some(hold), Some(sweep)) => hold.min(sweep),
            (next, None) | (None, next) => next?,
        };
        Some(next.max(self.holds.paused_until()))
    }

    /// On a store with a time limit, answers the requests that already waited it out (queued
    /// behind a batch stuck on the database: nothing of theirs was tried) and bounds the batch by
    /// the limit of its oldest request, so no request waits much longer than the limit.
    fn bound(&mut self, batch: &mut Vec<Command>) {
        let Some(limit) = self.store.request_timeout() else {
            return;
        };
        let now = Instant::now();
        let late = |command: &Command| now.saturating_duration_since(command.queued()) >= limit;
        if batch.iter().any(late) {
            let error = Error::Unavailable(format!(
                "the database did not answer within {} ms",
                limit.as_millis()
            ));
            let (late, on_time): (Vec<Command>, Vec<Command>) = batch.drain(..).partition(late);
            batch.extend(on_time);
            for command in late {
                command.fail(&error);
            }
        }
        let oldest = batch.iter().map(Command::queued).min();
        self.store.bound(oldest.map(|queued| queued + limit));
    }

    fn process(&mut self, batch: &mut Vec<Command>) {
        self.bound(batch);
        metrics::histogram!("ticketd_ledger_batch_size").record(batch.len() as f64);
        let span = telemetry::batch_span(batch.len(), batch.iter().map(Command::origin));
        let _span = span.enter();
        let mut attempt = 1;
        loop {
            let time = Time {
                now_ms: self.clock.now_ms(),
                now: self.clock.monotonic(),
            };
            let expiring = self.holds.may_try(time.now);
            match self.decide_and_commit(batch, time, expiring) {
                Ok(expired) => {
                    if std::mem::take(&mut self.failing) {
                        metrics::gauge!("ticketd_ledger_failing").set(0.0);
                        tracing::info!("the store accepts batches again");
                    }
                    if expiring {
                        self.holds.tried(expired, time.now);
                    }
                    for decided in self.decided.drain(..) {
                        decided.answer();
                    }
                    return;
                }
                // Another replica changed the same rows first: decide again on what it stored.
                Err(Error::Contention(reason)) if attempt < CONTENTION_ATTEMPTS => {
                    metrics::counter!("ticketd_ledger_contention_retries_total").increment(1);
                    tracing::debug!(%reason, attempt, "batch met contention; deciding again");
                    batch.extend(self.decided.drain(..).map(Decided::undo));
                    attempt += 1;
                }
                Err(error) => {
                    // Nothing of the batch is stored, so nothing of it may be confirmed: every
                    // request in it gets the storage error, and state stays as it was. An outage
                    // is logged once, not once per batch.
                    metrics::counter!("ticketd_ledger_failures_total").increment(1);
                    telemetry::record_batch_failure(&error);
                    if self.failing {
                        tracing::debug!(%error, "batch refused");
                    } else {
                        tracing::error!(%error, "batch refused; until one commits again, refusals log at debug");
                        metrics::gauge!("ticketd_ledger_failing").set(1.0);
                        self.failing = true;
                    }
                    if expiring {
                        self.holds.tried(false, time.now);
                    }
                    let undecided = self.decided.drain(..).map(Decided::undo);
                    for command in batch.drain(..).chain(undecided) {
                        command.fail(&error);
                    }
                    return;
                }
            }
        }
    }

    /// Reads what `batch` names, decides every request of it in order into `self.decided`, and
    /// commits the decisions as one; with `expiring`, expires the due holds first. Says whether
    /// every due hold was settled.
    fn decide_and_commit(
        &mut self,
        batch: &mut Vec<Command>,
        time: Time,
        expiring: bool,
    ) -> Result<bool, Error> {
        let sweep_max = self.batch_size_max;
        self.store
            .begin(batch, &self.events, &mut self.holds, time, sweep_max)?;
        self.due.clear();
        if expiring {
            self.holds.due(time.now_ms, &mut self.due);
        }
        self.read_named(batch, time.now_ms);

        let mut changes = Changes::default();
        let events = self.events.read();
        let mut rules = Rules {
            committed: &events,
            read: &self.read,
            changes: &mut changes,
            now_ms: time.now_ms,
            key_ttl_ms: self.key_ttl_ms,
            offer_ttl_seconds: self.offer_ttl_seconds,
        };
        let failed = rules.expire_due(&self.due);
        self.decided
            .extend(batch.drain(..).map(|command| command.decide(&mut rules)));
        drop(events);
        for (id, error) in &failed {
            tracing::error!(%id, %error, "cannot expire hold; trying again later");
        }
        if changes.accepted > 0 {
            metrics::counter!("ticketd_reservations_total", "outcome" => "accepted")
                .increment(changes.accepted);
        }
        if changes.refused > 0 {
            metrics::counter!("ticketd_reservations_total", "outcome" => "refused")
                .increment(changes.refused);
        }
        self.commit(changes, time)?;
        Ok(failed.is_empty())
    }

    /// Looks up every idempotency key and order the batch and the due holds name, each once. A
    /// key that has lapsed by `now_ms` answers for nothing, so the order it names is not read.
    fn read_named(&mut self, batch: &[Command], now_ms: i64) {
        let live_since_ms = idempotency::lapsed_before_ms(now_ms, self.key_ttl_ms);
        let read = &mut self.read;
        let ledger = self.store.ledger();
        read.clear();
        // Keys first: a keyed repeat names its order through its key.
        for key in batch.iter().filter_map(Command::key) {
            if !read.keys.contains_key(key) {
                let found = ledger
                    .find_key(key)
                    .and_then(|record| record.as_ref().map(KeyUse::decode).transpose());
                read.keys.insert(key.clone(), found);
            }
        }
        let named_by_keys = read.keys.values().filter_map(|used| match used {
            Ok(Some(used)) if used.created_at_ms >= live_since_ms => used.first.order(),
            Ok(Some(_)) => None,
            Ok(None) | Err(_) => None,
        });
        let named: Vec<ReservationId> = named_by_keys.collect();
        let orders = self.due.iter().map(|(_, id)| *id);
        let orders = orders.chain(batch.iter().filter_map(Command::order));
        for id in orders.chain(named) {
            read.orders
                .entry(id)
                .or_insert_with(|| ledger.find_order(id));
        }
        for (event, customer) in batch.iter().filter_map(Command::customer) {
            read.customers
                .entry((event.clone(), customer.clone()))
                .or_insert_with(|| ledger.customer_taken(event, customer));
        }
        for id in batch.iter().filter_map(Command::entry) {
            read.entries
                .entry(id)
                .or_insert_with(|| ledger.find_entry(id));
        }
        // The waiting lists of every event the batch may return seats to or sell from.
        let mut events: Vec<EventId> = batch.iter().filter_map(Command::event).cloned().collect();
        let changed = batch.iter().filter(|c| c.changes_order());
        let changed = changed.filter_map(Command::order);
        let settled = self.due.iter().map(|(_, id)| *id).chain(changed);
        let settled = settled.chain(read.keys.values().filter_map(|used| match used {
            Ok(Some(used)) => used.first.order(),
            _ => None,
        }));
        for id in settled {
            if let Some(Ok(Some(order))) = read.orders.get(&id) {
                events.push(order.event.clone());
            }
        }
        for entry in read.entries.values() {
            if let Ok(Some(entry)) = entry {
                events.push(entry.event.clone());
            }
        }
        for event in events {
            if let std::collections::hash_map::Entry::Vacant(slot) = read.waitlists.entry(event) {
                let list = ledger.waitlist(slot.key());
                slot.insert(list);
            }
        }
    }

    fn commit(&mut self, mut changes: Changes, time: Time) -> Result<(), Error> {
        let now = time.now_ms;
        if let Some(broken) = changes.events.values().find(|event| !event.is_consistent()) {
            // A bug, not a state to store: the batch fails and nothing of it is kept.
            return Err(Error::Internal(format!(
                "the counts of '{}' would not add up: {:?}",
                broken.id, broken.quotas
            )));
        }
        let orders: Vec<Order> = changes
            .order_ids
            .iter()
            .filter_map(|id| changes.orders.remove(id))
            .collect();
        // Lapsed idempotency keys go with a batch that commits anyway, at most once per
        // `KEY_PURGE_INTERVAL`.
        let purge = (!changes.is_empty() && time.now >= self.keys_purge_due)
            .then(|| idempotency::lapsed_before_ms(now, self.key_ttl_ms));
        let entries = changes
            .entries
            .iter()
            .filter_map(|(event, id)| {
                let list = changes.waitlists.get(event)?;
                list.iter().find(|entry| entry.id == *id).cloned()
            })
            .collect();
        let events: Vec<Event> = changes.events.drain().map(|(_, event)| event).collect();
        let mut outbox = Vec::new();
        if !orders.is_empty() || !events.is_empty() || !changes.waitlists.is_empty() {
            let committed = self.events.read();
            let derive = outbox::Derive {
                read: &self.read,
                committed: &committed,
                changes: &changes,
                now_ms: now,
            };
            derive.changes(&orders, &events, self.next_seq, &mut outbox)?;
        }
        let batch = Batch {
            events,
            orders,
            entries,
            keys: changes
                .keys
                .iter()
                .map(|(key, used)| used.encode(key))
                .collect(),
            purge_keys_before_ms: purge,
            keys_lapsed_before_ms: idempotency::lapsed_before_ms(now, self.key_ttl_ms),
            changes: outbox,
            purge_changes_before_ms: purge.map(|_| now.saturating_sub(self.changes_retention_ms)),
        };
        let started = Instant::now();
        self.store.commit(&batch)?;
        telemetry::record_commit(started.elapsed());
        if purge.is_some() {
            self.keys_purge_due = time.now + KEY_PURGE_INTERVAL;
        }
        if !batch.changes.is_empty() {
            self.next_seq += batch.changes.len() as u64;
            self.committed
                .send_modify(|commits| *commits = commits.wrapping_add(1));
        }
        let mut events = self.events.write();
        for event in batch.events {
            // The event's headline counts (its first quota's): one series per event and state.
            let stock = event.stock();
            telemetry::record_event_tickets(
                event.id.as_str(),
                stock.available,
                stock.held,
                stock.sold,
            );
            events.insert(event);
        }
        drop(events);
        self.holds
            .committed(changes.holds_added, changes.holds_removed);
        Ok(())
    }
}
