//! The single writer of an inventory: group commit.
//!
//! Requests queue up in a bounded channel. The writer takes every request that is waiting (up to
//! `batch_size_max`), decides each one in arrival order against the committed state plus what this
//! batch already decided, makes the whole batch durable with one [`Ledger::commit`], and only then
//! publishes the new state and answers. So an answer always means "committed", readers only ever see
//! committed state, and the cost of a durable commit is shared by everyone who arrived meanwhile.
//!
//! Holds expire here too: the writer keeps live holds ordered by deadline and wakes up for the
//! next one, so an expiry is just one more decision in the same order as every other. A confirm,
//! a release and an expiry of the same hold can therefore never both win.
//!
//! It is a plain OS thread rather than a Tokio task because ledgers may block on disk I/O.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use super::Clock;
use super::ledger::{Batch, Ledger, Plan};
use crate::domain::{
    Cancelled, Error, Event, EventId, IdempotencyKey, KeyRecord, Order, OrderStatus, Reservation,
    ReservationId, Reserved, Stock,
};

/// Every event as last committed; written only by the writer, read by everyone. Ordered by id so
/// a page of the list is a range, not a sort of every event.
pub(crate) type Events = Arc<RwLock<BTreeMap<EventId, Event>>>;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

pub(crate) enum Command {
    Reserve {
        reservation: Reservation,
        reply: Reply<Reserved>,
    },
    Confirm {
        id: ReservationId,
        key: Option<IdempotencyKey>,
        reply: Reply<Order>,
    },
    Release {
        id: ReservationId,
        key: Option<IdempotencyKey>,
        reply: Reply<Order>,
    },
    Cancel {
        id: ReservationId,
        key: Option<IdempotencyKey>,
        reply: Reply<Cancelled>,
    },
    Find {
        id: ReservationId,
        reply: Reply<Order>,
    },
    CreateEvent {
        id: EventId,
        name: Arc<str>,
        capacity: u64,
        reply: Reply<Event>,
    },
    Replenish {
        event: EventId,
        qty: u64,
        reply: Reply<Event>,
    },
}

/// How long expiry waits after a try that failed (a due hold could not be looked up or the batch
/// did not commit); each further failure doubles the wait, up to [`EXPIRY_RETRY_MAX`]. Requests
/// are answered meanwhile, and the first try that works ends the waiting.
pub(crate) const EXPIRY_RETRY_FIRST: Duration = Duration::from_millis(100);
pub(crate) const EXPIRY_RETRY_MAX: Duration = Duration::from_secs(5);

/// How often lapsed idempotency keys are deleted (with a batch that commits anyway).
const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// How often a writer on a shared ledger looks for due holds when it has none of its own.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How many times a batch is decided when replicas sharing a database keep colliding on it.
const CONTENTION_ATTEMPTS: u32 = 4;

pub(crate) struct Writer {
    pub ledger: Box<dyn Ledger>,
    pub events: Events,
    /// Live holds, `(expires_at_ms, id)`, soonest first: committed state, like `events`.
    pub holds: BTreeSet<(i64, ReservationId)>,
    pub batch_size_max: usize,
    /// Wall-clock time decides and is stored (deadlines, `*_at_ms`); the monotonic side alone
    /// schedules the writer's own chores, so a wall clock stepped back cannot stall them.
    pub clock: Arc<dyn Clock>,
    /// No expiry is tried before this (monotonic) time, after a try that failed.
    pub expiry_paused_until: Instant,
    /// The wait after the last failed expiry; zero while expiry works.
    pub expiry_retry: Duration,
    /// How long an idempotency key is remembered.
    pub key_ttl_ms: i64,
    /// When lapsed keys are next deleted (monotonic).
    pub keys_purge_due: Instant,
    /// The ledger is shared with other replicas: every batch begins by locking and reading it.
    pub shared: bool,
    /// When a shared ledger is next looked at for due holds (monotonic).
    pub sweep_due: Instant,
    /// The last batch failed to commit (for logging an outage once).
    pub failing: bool,
}

/// One batch's time: `now_ms` on the wall clock, for decisions and what is stored; `now` on the
/// monotonic clock, for scheduling.
#[derive(Clone, Copy)]
struct Time {
    now_ms: i64,
    now: Instant,
}

/// What one batch has decided but not yet committed.
#[derive(Default)]
struct Pending {
    events: HashMap<EventId, Event>,
    orders: HashMap<ReservationId, Order>,
    /// Orders in the order they were first changed, so the commit is deterministic.
    order_ids: Vec<ReservationId>,
    holds_added: Vec<(i64, ReservationId)>,
    holds_removed: Vec<(i64, ReservationId)>,
    keys: HashMap<IdempotencyKey, KeyRecord>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.orders.is_empty() && self.keys.is_empty()
    }

    fn put_order(&mut self, order: Order) {
        if let Entry::Vacant(entry) = self.orders.entry(order.id) {
            self.order_ids.push(order.id);
            entry.insert(order);
        } else {
            self.orders.insert(order.id, order);
        }
    }
}

/// A decided answer, kept until the batch's fate is known.
enum Answer {
    Reserved(Result<Reserved, Error>),
    Order(Result<Order, Error>),
    Cancelled(Result<Cancelled, Error>),
    Event(Result<Event, Error>),
}

fn send<T>(reply: Reply<T>, answer: Result<T, Error>) {
    // The caller may have given up waiting (a client timeout); what was committed stays.
    let _ = reply.send(answer);
}

impl Command {
    /// Answers with the decision, now that it is committed.
    fn answer(self, answer: Answer) {
        match (self, answer) {
            (Command::Reserve { reply, .. }, Answer::Reserved(answer)) => send(reply, answer),
            (
                Command::Confirm { reply, .. }
                | Command::Release { reply, .. }
                | Command::Find { reply, .. },
                Answer::Order(answer),
            ) => send(reply, answer),
            (Command::Cancel { reply, .. }, Answer::Cancelled(answer)) => send(reply, answer),
            (
                Command::CreateEvent { reply, .. } | Command::Replenish { reply, .. },
                Answer::Event(answer),
            ) => send(reply, answer),
            (command, _) => command.fail(&Error::Internal(
                "the inventory decided an answer of the wrong kind".into(),
            )),
        }
    }

    /// Answers with `error`: nothing of the batch was stored.
    fn fail(self, error: &Error) {
        let error = error.clone();
        match self {
            Command::Reserve { reply, .. } => send(reply, Err(error)),
            Command::Confirm { reply, .. }
            | Command::Release { reply, .. }
            | Command::Find { reply, .. } => send(reply, Err(error)),
            Command::Cancel { reply, .. } => send(reply, Err(error)),
            Command::CreateEvent { reply, .. } | Command::Replenish { reply, .. } => {
                send(reply, Err(error))
            }
        }
    }
}

impl Writer {
    pub fn run(mut self, commands: Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.batch_size_max);
        loop {
            // Wait for a request, or until the next hold is due.
            let next = match self.next_wake() {
                None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wake) => {
                    commands.recv_timeout(wake.saturating_duration_since(self.clock.monotonic()))
                }
            };
            match next {
                Ok(command) => batch.push(command),
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: the inventory was dropped, time to stop.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.batch_size_max {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
        tracing::debug!("inventory writer stopped");
    }

    /// When the writer must wake with no request (monotonic): when the next hold is due, or a
    /// shared ledger is next swept, but not while expiry waits after a failure.
    fn next_wake(&self) -> Option<Instant> {
        let now = self.clock.monotonic();
        // A hold's deadline is wall-clock time, as stored and as told to the client.
        let hold = self.holds.first().map(|(deadline_ms, _)| {
            let wait_ms = deadline_ms.saturating_sub(self.clock.now_ms()).max(0);
            now + Duration::from_millis(wait_ms as u64)
        });
        // A shared ledger also has holds made by other replicas: look for them now and then.
        let sweep = self.shared.then_some(self.sweep_due);
        let next = match (hold, sweep) {
            (Some(hold), Some(sweep)) => hold.min(sweep),
            (next, None) | (None, next) => next?,
        };
        Some(next.max(self.expiry_paused_until))
    }

    /// Notes how a try at expiry went: once one works, expiry runs with every batch again; after
    /// a failure it waits, twice as long as the time before, up to `EXPIRY_RETRY_MAX`.
    fn expiry_tried(&mut self, worked: bool, now: Instant) {
        if worked {
            self.expiry_retry = Duration::ZERO;
            return;
        }
        self.expiry_retry = (self.expiry_retry * 2).clamp(EXPIRY_RETRY_FIRST, EXPIRY_RETRY_MAX);
        self.expiry_paused_until = now + self.expiry_retry;
    }

    fn process(&mut self, batch: &mut Vec<Command>) {
        metrics::histogram!("ticketd_ledger_batch_size").record(batch.len() as f64);
        let mut attempt = 1;
        loop {
            let time = Time {
                now_ms: self.clock.now_ms(),
                now: self.clock.monotonic(),
            };
            let expiring = time.now >= self.expiry_paused_until;
            match self.decide_and_commit(batch, time, expiring) {
                Ok((answers, expired)) => {
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("the store accepts batches again");
                    }
                    if expiring {
                        self.expiry_tried(expired, time.now);
                    }
                    for (command, answer) in batch.drain(..).zip(answers) {
                        command.answer(answer);
                    }
                    return;
                }
                // Another replica changed the same rows first: decide again on what it stored.
                Err(Error::Contention(reason)) if attempt < CONTENTION_ATTEMPTS => {
                    metrics::counter!("ticketd_ledger_contention_retries_total").increment(1);
                    tracing::debug!(%reason, attempt, "batch met contention; deciding again");
                    attempt += 1;
                }
                Err(error) => {
                    // Nothing of the batch is stored, so nothing of it may be confirmed: every
                    // request in it gets the storage error, and state stays as it was. An outage
                    // is logged once, not once per batch.
                    if self.failing {
                        tracing::debug!(%error, "batch refused");
                    } else {
                        tracing::error!(%error, "batch refused; until one commits again, refusals log at debug");
                        self.failing = true;
                    }
                    if expiring {
                        self.expiry_tried(false, time.now);
                    }
                    for command in batch.drain(..) {
                        command.fail(&error);
                    }
                    return;
                }
            }
        }
    }

    /// Decides every request of `batch` in order and commits the decisions as one; with
    /// `expiring`, expires the due holds first. Also says whether every due hold was settled.
    fn decide_and_commit(
        &mut self,
        batch: &[Command],
        time: Time,
        expiring: bool,
    ) -> Result<(Vec<Answer>, bool), Error> {
        let now = time.now_ms;
        if self.shared {
            self.begin(batch, time)?;
        }
        let mut pending = Pending::default();
        let expired = !expiring || self.expire_due(&mut pending, now);
        let answers = batch
            .iter()
            .map(|command| self.decide(&mut pending, command, now))
            .collect();
        self.commit(pending, time)?;
        Ok((answers, expired))
    }

    fn decide(&mut self, pending: &mut Pending, command: &Command, now: i64) -> Answer {
        match command {
            Command::Reserve { reservation, .. } => {
                Answer::Reserved(self.reserve(pending, reservation, now))
            }
            Command::Confirm { id, key, .. } => {
                let confirm = Self::confirm_hold;
                let key = key.clone();
                Answer::Order(self.act_on_order(pending, *id, key, now, "confirm", confirm))
            }
            Command::Release { id, key, .. } => {
                let release = Self::release_hold;
                let key = key.clone();
                Answer::Order(self.act_on_order(pending, *id, key, now, "release", release))
            }
            Command::Cancel { id, key, .. } => {
                Answer::Cancelled(self.cancel(pending, *id, key.clone(), now))
            }
            Command::Find { id, .. } => Answer::Order(self.find(pending, *id)),
            Command::CreateEvent {
                id, name, capacity, ..
            } => Answer::Event(self.create_event(pending, id.clone(), name.clone(), *capacity)),
            Command::Replenish { event, qty, .. } => {
                Answer::Event(self.replenish(pending, event, *qty))
            }
        }
    }

    /// Shared ledgers: opens the batch's transaction and takes what it locked as the state to
    /// decide on, in place of this replica's memory.
    fn begin(&mut self, batch: &[Command], time: Time) -> Result<(), Error> {
        let now = time.now_ms;
        // Holds made by other replicas are found by looking: when one of ours is due, and now
        // and then anyway.
        let sweep = self
            .holds
            .first()
            .is_some_and(|(deadline, _)| *deadline <= now)
            || time.now >= self.sweep_due;
        let mut plan = Plan {
            now_ms: now,
            sweep_max: if sweep { self.batch_size_max } else { 0 },
            ..Plan::default()
        };
        for command in batch {
            match command {
                Command::Reserve { reservation, .. } => {
                    plan.events.push(reservation.event.clone());
                    plan.orders.push(reservation.id);
                    plan.keys.extend(reservation.key.clone());
                }
                Command::Confirm { id, key, .. }
                | Command::Release { id, key, .. }
                | Command::Cancel { id, key, .. } => {
                    plan.changes.push(*id);
                    plan.orders.push(*id);
                    plan.keys.extend(key.clone());
                }
                Command::Find { id, .. } => plan.orders.push(*id),
                Command::CreateEvent { id, .. } => plan.events.push(id.clone()),
                Command::Replenish { event, .. } => plan.events.push(event.clone()),
            }
        }
        let snapshot = self.ledger.begin(&plan)?;
        let mut events = self.events.write();
        events.clear();
        events.extend(snapshot.events.into_iter().map(|e| (e.id.clone(), e)));
        drop(events);
        if sweep {
            // Due holds are swept only as the database lists them, with their events locked; a
            // due hold made here that another replica settled first is simply forgotten.
            self.holds.retain(|(deadline, _)| *deadline > now);
            self.holds.extend(snapshot.due);
            self.sweep_due = time.now + SWEEP_INTERVAL;
        }
        Ok(())
    }

    fn commit(&mut self, mut pending: Pending, time: Time) -> Result<(), Error> {
        let now = time.now_ms;
        let orders = pending
            .order_ids
            .iter()
            .filter_map(|id| pending.orders.remove(id))
            .collect();
        // Lapsed idempotency keys go with a batch that commits anyway, at most once a minute.
        let purge = (!pending.is_empty() && time.now >= self.keys_purge_due)
            .then(|| now.saturating_sub(self.key_ttl_ms));
        let batch = Batch {
            events: pending.events.into_values().collect(),
            orders,
            keys: pending.keys.into_values().collect(),
            purge_keys_before_ms: purge,
            keys_lapsed_before_ms: now.saturating_sub(self.key_ttl_ms),
        };
        // A shared ledger's transaction is open and must end, even with nothing to write.
        if !batch.is_empty() || self.shared {
            let started = std::time::Instant::now();
            self.ledger.commit(&batch)?;
            metrics::histogram!("ticketd_ledger_commit_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        if purge.is_some() {
            self.keys_purge_due = time.now + KEY_PURGE_INTERVAL;
        }
        let mut events = self.events.write();
        for event in batch.events {
            let id = event.id.as_str().to_owned();
            let stock = event.stock;
            for (state, count) in [
                ("available", stock.available),
                ("held", stock.held),
                ("sold", stock.sold),
            ] {
                metrics::gauge!("ticketd_event_tickets", "event" => id.clone(), "state" => state)
                    .set(count as f64);
            }
            events.insert(event.id.clone(), event);
        }
        drop(events);
        for hold in pending.holds_removed {
            self.holds.remove(&hold);
        }
        self.holds.extend(pending.holds_added);
        Ok(())
    }

    /// The event as this batch sees it: changed by the batch, or as committed.
    fn event(&self, pending: &Pending, id: &EventId) -> Result<Event, Error> {
        if let Some(event) = pending.events.get(id) {
            return Ok(event.clone());
        }
        self.events
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownEvent(format!("unknown event '{id}'")))
    }

    fn put_event(pending: &mut Pending, event: Event) {
        assert!(
            event.stock.is_consistent(),
            "stock of {} broke: {:?}",
            event.id,
            event.stock
        );
        pending.events.insert(event.id.clone(), event);
    }

    /// The order as this batch sees it, if there is one.
    fn order(&mut self, pending: &Pending, id: ReservationId) -> Result<Option<Order>, Error> {
        match pending.orders.get(&id) {
            Some(order) => Ok(Some(order.clone())),
            None => self.ledger.find_order(id),
        }
    }

    fn existing_order(&mut self, pending: &Pending, id: ReservationId) -> Result<Order, Error> {
        self.order(pending, id)?
            .ok_or_else(|| Error::UnknownOrder(format!("unknown order or hold '{id}'")))
    }

    fn reserve(
        &mut self,
        pending: &mut Pending,
        reservation: &Reservation,
        now: i64,
    ) -> Result<Reserved, Error> {
        let mut event = self.event(pending, &reservation.event)?;
        let key = reservation.key.as_ref();
        let fingerprint = reservation.fingerprint();
        if let Some(first) = self.first_use(pending, key, &fingerprint, now)? {
            // A repeat of a keyed request: the first answer, whatever happened since.
            let order = first
                .order_id
                .map(|id| self.existing_order(pending, id))
                .transpose()?;
            return Ok(Reserved {
                order,
                remaining: first.remaining,
            });
        }
        if let Some(earlier) = self.order(pending, reservation.id)? {
            // A retry of a reservation already made: answer as before, change nothing.
            let same = earlier.event == reservation.event
                && earlier.qty == reservation.qty.get()
                && earlier.expires_at_ms.is_some() == reservation.hold_ttl_seconds.is_some();
            if !same {
                return Err(Error::ReservationConflict(format!(
                    "reservation {} was already made for {} tickets of '{}'",
                    reservation.id, earlier.qty, earlier.event
                )));
            }
            return Ok(Reserved {
                remaining: earlier.remaining,
                order: Some(earlier),
            });
        }

        let qty = u64::from(reservation.qty.get());
        if event.stock.available < qty {
            metrics::counter!("ticketd_reservations_total", "outcome" => "refused").increment(1);
            // A keyed refusal is remembered too: its repeat must not buy what came back since.
            remember(
                pending,
                key,
                fingerprint,
                None,
                event.stock.available,
                false,
                now,
            );
            return Ok(Reserved {
                order: None,
                remaining: event.stock.available,
            });
        }
        event.stock.available -= qty;
        let (status, expires_at_ms) = match reservation.hold_ttl_seconds {
            Some(ttl) => {
                event.stock.held += qty;
                (OrderStatus::Held, Some(now + i64::from(ttl) * 1000))
            }
            None => {
                event.stock.sold += qty;
                (OrderStatus::Confirmed, None)
            }
        };
        let order = Order {
            id: reservation.id,
            event: reservation.event.clone(),
            qty: reservation.qty.get(),
            status,
            remaining: event.stock.available,
            created_at_ms: now,
            updated_at_ms: now,
            expires_at_ms,
        };
        if let Some(deadline) = expires_at_ms {
            pending.holds_added.push((deadline, order.id));
        }
        metrics::counter!("ticketd_reservations_total", "outcome" => "accepted").increment(1);
        let remaining = event.stock.available;
        Self::put_event(pending, event);
        pending.put_order(order.clone());
        remember(
            pending,
            key,
            fingerprint,
            Some(order.id),
            remaining,
            false,
            now,
        );
        Ok(Reserved {
            order: Some(order),
            remaining,
        })
    }

    /// Moves `order` to `status`, moving its tickets between the event's counts to match.
    fn transition(
        &mut self,
        pending: &mut Pending,
        mut order: Order,
        status: OrderStatus,
        now: i64,
    ) -> Result<Order, Error> {
        let mut event = self.event(pending, &order.event)?;
        let qty = u64::from(order.qty);
        let stock = &mut event.stock;
        match order.status {
            OrderStatus::Held => stock.held -= qty,
            OrderStatus::Confirmed => stock.sold -= qty,
            _ => stock.available -= qty,
        }
        match status {
            OrderStatus::Held => stock.held += qty,
            OrderStatus::Confirmed => stock.sold += qty,
            _ => stock.available += qty,
        }
        if order.status == OrderStatus::Held
            && let Some(deadline) = order.expires_at_ms
        {
            pending.holds_removed.push((deadline, order.id));
        }
        order.status = status;
        order.updated_at_ms = now;
        Self::put_event(pending, event);
        pending.put_order(order.clone());
        Ok(order)
    }

    /// Expires every hold due by `now`; `false` if one of them could not be looked up (it stays
    /// due, for the next try).
    fn expire_due(&mut self, pending: &mut Pending, now: i64) -> bool {
        let due: Vec<(i64, ReservationId)> = self
            .holds
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .copied()
            .collect();
        let mut settled = true;
        for (deadline, id) in due {
            let expired = self.existing_order(pending, id).and_then(|order| {
                if order.status == OrderStatus::Held {
                    self.transition(pending, order, OrderStatus::Expired, now)
                        .map(drop)
                } else {
                    // Settled meanwhile by another replica sharing the ledger.
                    pending.holds_removed.push((deadline, id));
                    Ok(())
                }
            });
            if let Err(error) = expired {
                tracing::error!(%id, %error, "cannot expire hold; trying again later");
                settled = false;
            }
        }
        settled
    }

    /// Runs `act` on order `id`, unless `key` shows this same request was made before: then the
    /// order is answered as it stands, and nothing changes.
    fn act_on_order(
        &mut self,
        pending: &mut Pending,
        id: ReservationId,
        key: Option<IdempotencyKey>,
        now: i64,
        verb: &str,
        act: fn(&mut Self, &mut Pending, ReservationId, i64) -> Result<Order, Error>,
    ) -> Result<Order, Error> {
        let fingerprint = format!("{verb}:{id}");
        if self
            .first_use(pending, key.as_ref(), &fingerprint, now)?
            .is_some()
        {
            return self.existing_order(pending, id);
        }
        let order = act(self, pending, id, now)?;
        remember(pending, key.as_ref(), fingerprint, Some(id), 0, true, now);
        Ok(order)
    }

    fn confirm_hold(
        &mut self,
        pending: &mut Pending,
        id: ReservationId,
        now: i64,
    ) -> Result<Order, Error> {
        let order = self.existing_order(pending, id)?;
        match (order.status, order.expires_at_ms) {
            (OrderStatus::Held, Some(deadline)) if deadline <= now => {
                self.transition(pending, order, OrderStatus::Expired, now)?;
                Err(expired(id))
            }
            (OrderStatus::Held, _) => self.transition(pending, order, OrderStatus::Confirmed, now),
            // Confirming a confirmed hold again answers as the first time.
            (OrderStatus::Confirmed, Some(_)) => Ok(order),
            (OrderStatus::Expired, _) => Err(expired(id)),
            (OrderStatus::Confirmed, None) => Err(Error::WrongState(format!(
                "order {id} was bought directly; there is no hold to confirm"
            ))),
            (status, _) => Err(Error::WrongState(format!(
                "hold {id} is {}; it cannot be confirmed",
                status.as_str()
            ))),
        }
    }

    fn release_hold(
        &mut self,
        pending: &mut Pending,
        id: ReservationId,
        now: i64,
    ) -> Result<Order, Error> {
        let order = self.existing_order(pending, id)?;
        match order.status {
            OrderStatus::Held => self.transition(pending, order, OrderStatus::Released, now),
            // Already back in stock: releasing again changes nothing.
            OrderStatus::Released | OrderStatus::Expired => Ok(order),
            status => Err(Error::WrongState(format!(
                "{id} is {}; cancel the order instead",
                status.as_str()
            ))),
        }
    }

    fn cancel(
        &mut self,
        pending: &mut Pending,
        id: ReservationId,
        key: Option<IdempotencyKey>,
        now: i64,
    ) -> Result<Cancelled, Error> {
        let fingerprint = format!("cancel:{id}");
        if let Some(first) = self.first_use(pending, key.as_ref(), &fingerprint, now)? {
            return Ok(Cancelled {
                order: self.existing_order(pending, id)?,
                changed: first.changed,
            });
        }
        let cancelled = self.cancel_order(pending, id, now)?;
        remember(
            pending,
            key.as_ref(),
            fingerprint,
            Some(id),
            0,
            cancelled.changed,
            now,
        );
        Ok(cancelled)
    }

    fn cancel_order(
        &mut self,
        pending: &mut Pending,
        id: ReservationId,
        now: i64,
    ) -> Result<Cancelled, Error> {
        let order = self.existing_order(pending, id)?;
        match order.status {
            OrderStatus::Confirmed => Ok(Cancelled {
                order: self.transition(pending, order, OrderStatus::Cancelled, now)?,
                changed: true,
            }),
            OrderStatus::Cancelled => Ok(Cancelled {
                order,
                changed: false,
            }),
            status => Err(Error::WrongState(format!(
                "{id} is {}; only confirmed orders can be cancelled (release a hold with DELETE)",
                status.as_str()
            ))),
        }
    }

    /// The first use of `key`, when it was used within its time to live: for this same request
    /// (`fingerprint`) that is the answer to repeat; for another one the key cannot be reused.
    fn first_use(
        &mut self,
        pending: &Pending,
        key: Option<&IdempotencyKey>,
        fingerprint: &str,
        now: i64,
    ) -> Result<Option<KeyRecord>, Error> {
        let Some(key) = key else {
            return Ok(None);
        };
        let record = match pending.keys.get(key) {
            Some(record) => Some(record.clone()),
            None => self.ledger.find_key(key)?,
        };
        match record.filter(|record| now - record.created_at_ms < self.key_ttl_ms) {
            Some(record) if record.fingerprint != fingerprint => {
                Err(Error::IdempotencyKeyReused(format!(
                    "Idempotency-Key '{}' was already used for a different request",
                    key.as_str()
                )))
            }
            live => Ok(live),
        }
    }

    fn find(&mut self, pending: &Pending, id: ReservationId) -> Result<Order, Error> {
        self.existing_order(pending, id)
    }

    fn create_event(
        &mut self,
        pending: &mut Pending,
        id: EventId,
        name: Arc<str>,
        capacity: u64,
    ) -> Result<Event, Error> {
        if self.event(pending, &id).is_ok() {
            return Err(Error::EventExists(format!("event '{id}' already exists")));
        }
        let event = Event {
            id,
            name,
            stock: Stock::new(capacity),
        };
        Self::put_event(pending, event.clone());
        Ok(event)
    }

    fn replenish(&mut self, pending: &mut Pending, id: &EventId, qty: u64) -> Result<Event, Error> {
        let mut event = self.event(pending, id)?;
        let grown = |n: u64| {
            n.checked_add(qty)
                .filter(|n| *n <= super::CAPACITY_MAX)
                .ok_or_else(|| {
                    // Whether it fits depends on the event as it stands, not on the request alone.
                    Error::CapacityExceeded(format!(
                        "capacity would exceed {}",
                        super::CAPACITY_MAX
                    ))
                })
        };
        event.stock.capacity = grown(event.stock.capacity)?;
        event.stock.available = grown(event.stock.available)?;
        Self::put_event(pending, event.clone());
        Ok(event)
    }
}

/// Notes the first use of `key` (if any) so a repeat gets the same answer.
fn remember(
    pending: &mut Pending,
    key: Option<&IdempotencyKey>,
    fingerprint: String,
    order_id: Option<ReservationId>,
    remaining: u64,
    changed: bool,
    now: i64,
) {
    if let Some(key) = key {
        let record = KeyRecord {
            key: key.clone(),
            fingerprint,
            order_id,
            remaining,
            changed,
            created_at_ms: now,
        };
        pending.keys.insert(key.clone(), record);
    }
}

fn expired(id: ReservationId) -> Error {
    Error::HoldExpired(format!(
        "hold {id} expired before it was confirmed; its tickets went back on sale"
    ))
}
