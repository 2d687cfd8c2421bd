//! The inventory's rulebook: how each request is decided, as plain functions over explicit state.
//!
//! Nothing here waits, locks, reads a clock or touches a store. The writer (see [`super::writer`])
//! first *reads* what a batch will need — the committed events, and every order and idempotency
//! key its requests name, into a [`Read`] — and then [`Rules`] decides each request in arrival
//! order against that state plus what the batch already decided ([`Changes`]). So a decision can
//! be tested as a rule: given this state and this request, this answer and these changes.
//!
//! The shape follows TigerBeetle's state machine (prefetch, then commit in memory): deciding in
//! memory after one read of everything a batch touches is what lets one writer decide a whole
//! batch fast, and lets a shared store lock it all before anything is decided.
//!
//! Where a rule lives: retries and idempotency keys in [`super::idempotency`], hold expiry in
//! [`super::expiry`], everything else here.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::idempotency::{self, Asked, FirstUse, KeyUse, Keyed};
use super::{CAPACITY_MAX, expiry, ledger};
use crate::domain::{
    Cancelled, Error, Event, EventId, HoldTtl, IdempotencyKey, Order, OrderStatus, Reservation,
    ReservationId, Reserved, Stock,
};

/// Committed orders and idempotency keys a batch names, read before it is decided. A lookup
/// that failed is kept as its error: it fails the request that needs it, not the batch.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// `Ok(None)`: no such order.
    pub orders: HashMap<ReservationId, Result<Option<Order>, Error>>,
    /// `Ok(None)`: the key was never used (or was forgotten).
    pub keys: HashMap<IdempotencyKey, Result<Option<KeyUse>, Error>>,
}

impl Read {
    pub fn clear(&mut self) {
        self.orders.clear();
        self.keys.clear();
    }
}

/// What a batch has decided but not yet committed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub events: HashMap<EventId, Event>,
    pub orders: HashMap<ReservationId, Order>,
    /// Orders in the order they were first changed, so the commit is deterministic.
    pub order_ids: Vec<ReservationId>,
    /// Holds made, and holds settled, as `(expires_at_ms, id)`.
    pub holds_added: Vec<(i64, ReservationId)>,
    pub holds_removed: Vec<(i64, ReservationId)>,
    pub keys: HashMap<IdempotencyKey, KeyUse>,
    /// Reservations accepted and refused for want of stock (retries and repeats not counted).
    pub accepted: u64,
    pub refused: u64,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.orders.is_empty() && self.keys.is_empty()
    }

    fn put_event(&mut self, event: Event) {
        assert!(
            event.stock.is_consistent(),
            "stock of {} broke: {:?}",
            event.id,
            event.stock
        );
        self.events.insert(event.id.clone(), event);
    }

    fn put_order(&mut self, order: Order) {
        match self.orders.entry(order.id) {
            Entry::Vacant(entry) => {
                self.order_ids.push(order.id);
                entry.insert(order);
            }
            Entry::Occupied(mut entry) => {
                entry.insert(order);
            }
        }
    }

    /// Notes the first use of `key` (if any) so a repeat gets the same answer.
    fn remember(&mut self, key: Option<&IdempotencyKey>, first: FirstUse, now_ms: i64) {
        if let Some(key) = key {
            let used = KeyUse {
                first,
                created_at_ms: now_ms,
            };
            self.keys.insert(key.clone(), used);
        }
    }
}

/// Where an order stands, with what each state carries: a hold its deadline, a sale whether it
/// began as a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Held { expires_at_ms: i64 },
    Confirmed { from_hold: bool },
    Cancelled,
    Released,
    Expired,
}

impl Standing {
    /// The standing of `order`; a held order without a deadline is refused (stores refuse it
    /// as they read it, so this is met only by an order ticketd made wrongly).
    pub fn of(order: &Order) -> Result<Self, Error> {
        Ok(match order.status {
            OrderStatus::Held => Standing::Held {
                expires_at_ms: ledger::hold_deadline(order.id, order.expires_at_ms)?,
            },
            OrderStatus::Confirmed => Standing::Confirmed {
                from_hold: began_as_hold(order),
            },
            OrderStatus::Cancelled => Standing::Cancelled,
            OrderStatus::Released => Standing::Released,
            OrderStatus::Expired => Standing::Expired,
        })
    }
}

/// An order made as a hold keeps its deadline for life; a purchase never has one.
pub(crate) fn began_as_hold(order: &Order) -> bool {
    order.expires_at_ms.is_some()
}

/// The count of an event's stock an order in `status` is part of.
fn bucket(stock: &mut Stock, status: OrderStatus) -> &mut u64 {
    match status {
        OrderStatus::Held => &mut stock.held,
        OrderStatus::Confirmed => &mut stock.sold,
        OrderStatus::Cancelled | OrderStatus::Released | OrderStatus::Expired => {
            &mut stock.available
        }
    }
}

/// One batch's decisions: the state they are taken on and what they changed so far.
pub(crate) struct Rules<'a> {
    /// Every event as committed (for a shared store: as locked for this batch).
    pub committed: &'a BTreeMap<EventId, Event>,
    pub read: &'a Read,
    pub changes: &'a mut Changes,
    /// The batch's time (wall clock, milliseconds since the Unix epoch).
    pub now_ms: i64,
    /// How long an idempotency key is remembered.
    pub key_ttl_ms: i64,
}

impl Rules<'_> {
    /// The event as this batch sees it: changed by the batch, or as committed.
    fn event(&self, id: &EventId) -> Result<Event, Error> {
        self.changes
            .events
            .get(id)
            .or_else(|| self.committed.get(id))
            .cloned()
            .ok_or_else(|| Error::UnknownEvent(format!("unknown event '{id}'")))
    }

    /// The order as this batch sees it, if there is one.
    fn order(&self, id: ReservationId) -> Result<Option<Order>, Error> {
        if let Some(order) = self.changes.orders.get(&id) {
            return Ok(Some(order.clone()));
        }
        match self.read.orders.get(&id) {
            Some(read) => read.clone(),
            None => Err(Error::Internal(format!(
                "order {id} was not read before deciding"
            ))),
        }
    }

    pub(super) fn existing_order(&self, id: ReservationId) -> Result<Order, Error> {
        self.order(id)?
            .ok_or_else(|| Error::UnknownOrder(format!("unknown order or hold '{id}'")))
    }

    /// The live first use of `key` for `request` (see [`idempotency::first_use`]).
    fn first_use(
        &self,
        key: Option<&IdempotencyKey>,
        request: impl FnOnce() -> Keyed,
    ) -> Result<Option<FirstUse>, Error> {
        let Some(key) = key else {
            return Ok(None);
        };
        let remembered = match self.changes.keys.get(key) {
            Some(used) => Some(used),
            None => match self.read.keys.get(key) {
                Some(Ok(used)) => used.as_ref(),
                Some(Err(error)) => return Err(error.clone()),
                None => {
                    return Err(Error::Internal(format!(
                        "Idempotency-Key '{}' was not read before deciding",
                        key.as_str()
                    )));
                }
            },
        };
        let first =
            idempotency::first_use(remembered, key, &request(), self.now_ms, self.key_ttl_ms)?;
        Ok(first.cloned())
    }

    /// Sells or holds the tickets if that many are available.
    pub fn reserve(&mut self, reservation: &Reservation) -> Result<Reserved, Error> {
        let mut event = self.event(&reservation.event)?;
        let key = reservation.key.as_ref();
        if let Some(first) = self.first_use(key, || Keyed::Reserve(Asked::of(reservation)))? {
            // A repeat of a keyed request: the first answer, whatever happened since.
            let FirstUse::Reserve {
                order, remaining, ..
            } = first
            else {
                unreachable!("a reservation's key is only ever first used for a reservation");
            };
            let order = order.map(|id| self.existing_order(id)).transpose()?;
            return Ok(Reserved { order, remaining });
        }
        if let Some(earlier) = self.order(reservation.id)? {
            // A retry of a reservation already made: answer as before, change nothing.
            return idempotency::retry_of(earlier, reservation);
        }

        let qty = u64::from(reservation.qty.get());
        let asked = || Asked::of(reservation);
        if event.stock.available < qty {
            self.changes.refused += 1;
            // A keyed refusal is remembered too: its repeat must not buy what came back since.
            let remaining = event.stock.available;
            let first = FirstUse::Reserve {
                asked: asked(),
                order: None,
                remaining,
            };
            if key.is_some() {
                self.changes.remember(key, first, self.now_ms);
            }
            return Ok(Reserved {
                order: None,
                remaining,
            });
        }
        event.stock.available -= qty;
        let (status, expires_at_ms) = match reservation.hold_ttl_seconds.map(HoldTtl::seconds) {
            Some(ttl) => {
                event.stock.held += qty;
                let expires_at_ms = expiry::deadline_ms(self.now_ms, ttl);
                self.changes
                    .holds_added
                    .push((expires_at_ms, reservation.id));
                (OrderStatus::Held, Some(expires_at_ms))
            }
            None => {
                event.stock.sold += qty;
                (OrderStatus::Confirmed, None)
            }
        };
        let remaining = event.stock.available;
        let order = Order {
            id: reservation.id,
            event: reservation.event.clone(),
            qty: reservation.qty.get(),
            status,
            remaining,
            created_at_ms: self.now_ms,
            updated_at_ms: self.now_ms,
            expires_at_ms,
        };
        self.changes.accepted += 1;
        self.changes.put_event(event);
        self.changes.put_order(order.clone());
        if key.is_some() {
            let first = FirstUse::Reserve {
                asked: asked(),
                order: Some(order.id),
                remaining,
            };
            self.changes.remember(key, first, self.now_ms);
        }
        Ok(Reserved {
            order: Some(order),
            remaining,
        })
    }

    /// Moves `order` to `status`, moving its tickets between the event's counts to match.
    pub(super) fn transition(
        &mut self,
        mut order: Order,
        status: OrderStatus,
    ) -> Result<Order, Error> {
        let mut event = self.event(&order.event)?;
        let qty = u64::from(order.qty);
        *bucket(&mut event.stock, order.status) -= qty;
        *bucket(&mut event.stock, status) += qty;
        if let Standing::Held { expires_at_ms } = Standing::of(&order)? {
            self.changes.holds_removed.push((expires_at_ms, order.id));
        }
        order.status = status;
        order.updated_at_ms = self.now_ms;
        self.changes.put_event(event);
        self.changes.put_order(order.clone());
        Ok(order)
    }

    /// Turns a live hold into a sale; a hold past its deadline expires instead.
    pub fn confirm(
        &mut self,
        id: ReservationId,
        key: Option<&IdempotencyKey>,
    ) -> Result<Order, Error> {
        if self.first_use(key, || Keyed::Confirm(id))?.is_some() {
            return self.existing_order(id);
        }
        let order = self.existing_order(id)?;
        let confirmed = match Standing::of(&order)? {
            Standing::Held { expires_at_ms } if expires_at_ms <= self.now_ms => {
                self.transition(order, OrderStatus::Expired)?;
                return Err(expiry::expired(id));
            }
            Standing::Held { .. } => self.transition(order, OrderStatus::Confirmed)?,
            // Confirming a confirmed hold again answers as the first time.
            Standing::Confirmed { from_hold: true } => order,
            Standing::Confirmed { from_hold: false } => {
                return Err(Error::WrongState(format!(
                    "order {id} was bought directly; there is no hold to confirm"
                )));
            }
            Standing::Expired => return Err(expiry::expired(id)),
            Standing::Cancelled | Standing::Released => {
                return Err(Error::WrongState(format!(
                    "hold {id} is {}; it cannot be confirmed",
                    order.status.as_str()
                )));
            }
        };
        self.changes
            .remember(key, FirstUse::Confirm(id), self.now_ms);
        Ok(confirmed)
    }

    /// Gives a hold's tickets back; releasing again changes nothing.
    pub fn release(
        &mut self,
        id: ReservationId,
        key: Option<&IdempotencyKey>,
    ) -> Result<Order, Error> {
        if self.first_use(key, || Keyed::Release(id))?.is_some() {
            return self.existing_order(id);
        }
        let order = self.existing_order(id)?;
        let released = match Standing::of(&order)? {
            Standing::Held { .. } => self.transition(order, OrderStatus::Released)?,
            // Already back in stock: releasing again changes nothing.
            Standing::Released | Standing::Expired => order,
            Standing::Confirmed { .. } | Standing::Cancelled => {
                return Err(Error::WrongState(format!(
                    "{id} is {}; cancel the order instead",
                    order.status.as_str()
                )));
            }
        };
        self.changes
            .remember(key, FirstUse::Release(id), self.now_ms);
        Ok(released)
    }

    /// Returns a confirmed order's tickets to stock, exactly once.
    pub fn cancel(
        &mut self,
        id: ReservationId,
        key: Option<&IdempotencyKey>,
    ) -> Result<Cancelled, Error> {
        if let Some(first) = self.first_use(key, || Keyed::Cancel(id))? {
            let FirstUse::Cancel { changed, .. } = first else {
                unreachable!("a cancellation's key is only ever first used for a cancellation");
            };
            return Ok(Cancelled {
                order: self.existing_order(id)?,
                changed,
            });
        }
        let order = self.existing_order(id)?;
        let cancelled = match Standing::of(&order)? {
            Standing::Confirmed { .. } => Cancelled {
                order: self.transition(order, OrderStatus::Cancelled)?,
                changed: true,
            },
            Standing::Cancelled => Cancelled {
                order,
                changed: false,
            },
            Standing::Held { .. } | Standing::Released | Standing::Expired => {
                return Err(Error::WrongState(format!(
                    "{id} is {}; only confirmed orders can be cancelled (release a hold with DELETE)",
                    order.status.as_str()
                )));
            }
        };
        let first = FirstUse::Cancel {
            order: id,
            changed: cancelled.changed,
        };
        self.changes.remember(key, first, self.now_ms);
        Ok(cancelled)
    }

    /// One order, as this batch sees it.
    pub fn find(&self, id: ReservationId) -> Result<Order, Error> {
        self.existing_order(id)
    }

    /// Creates an event with all of its tickets available, unless one has this id.
    pub fn create_event(
        &mut self,
        id: &EventId,
        name: &Arc<str>,
        capacity: u64,
    ) -> Result<Event, Error> {
        if self.event(id).is_ok() {
            return Err(Error::EventExists(format!("event '{id}' already exists")));
        }
        let event = Event {
            id: id.clone(),
            name: Arc::clone(name),
            stock: Stock::new(capacity),
        };
        self.changes.put_event(event.clone());
        Ok(event)
    }

    /// Adds `qty` tickets to an event's capacity and availability, within [`CAPACITY_MAX`].
    pub fn replenish(&mut self, id: &EventId, qty: u64) -> Result<Event, Error> {
        let mut event = self.event(id)?;
        let grown = |n: u64| {
            n.checked_add(qty)
                .filter(|n| *n <= CAPACITY_MAX)
                .ok_or_else(|| {
                    // Whether it fits depends on the event as it stands, not on the request alone.
                    Error::CapacityExceeded(format!("capacity would exceed {CAPACITY_MAX}"))
                })
        };
        event.stock.capacity = grown(event.stock.capacity)?;
        event.stock.available = grown(event.stock.available)?;
        self.changes.put_event(event.clone());
        Ok(event)
    }
}

#[cfg(test)]
#[path = "rules_test.rs"]
mod tests;
