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
use std::sync::Arc;

/// The batch's maps are keyed by ids a client chose and looked up many times per request:
/// foldhash (seeded per process) costs a fraction of the standard library's SipHash.
use foldhash::HashMap;

use super::events::EventMap;
use super::idempotency::{self, Asked, FirstUse, KeyUse, Keyed};
use super::{CAPACITY_MAX, expiry, ledger};
use crate::domain::Entry as WaitlistEntry;
use crate::domain::{
    Cancelled, Catalogue, Category, CategoryChange, CustomerId, Error, Event, EventId, HoldTtl,
    IdempotencyKey, Order, OrderLine, OrderStatus, QUOTAS_MAX, QuotaId, Reservation, ReservationId,
    Reserved, Resize, SalesWindow, Shortage, Stock,
};

/// One customer of one event, as customer limits count them.
pub(crate) type CustomerOf = (EventId, CustomerId);

/// Committed orders, idempotency keys and customers' tickets a batch names, read before it is
/// decided. A lookup that failed is kept as its error: it fails the request that needs it, not
/// the batch.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// `Ok(None)`: no such order.
    pub orders: HashMap<ReservationId, Result<Option<Order>, Error>>,
    /// `Ok(None)`: the key was never used (or was forgotten).
    pub keys: HashMap<IdempotencyKey, Result<Option<KeyUse>, Error>>,
    /// Tickets each customer a reservation names holds, has bought or waits for in the event.
    pub customers: HashMap<CustomerOf, Result<u64, Error>>,
    /// The live waiting-list entries (waiting or offered) of every event the batch may change,
    /// in the order they are served.
    pub waitlists: HashMap<EventId, Result<Vec<WaitlistEntry>, Error>>,
    /// Waiting-list entries the batch names by id, live or not.
    pub entries: HashMap<ReservationId, Result<Option<WaitlistEntry>, Error>>,
}

impl Read {
    pub fn clear(&mut self) {
        self.orders.clear();
        self.keys.clear();
        self.customers.clear();
        self.waitlists.clear();
        self.entries.clear();
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
    /// How many tickets each customer took (or gave back) in this batch. Stores count a
    /// customer's tickets from their orders, so this is only the batch's own view.
    pub customers: HashMap<CustomerOf, i64>,
    /// The waiting lists the batch changed, whole (entries that left the list included).
    pub waitlists: HashMap<EventId, Vec<WaitlistEntry>>,
    /// Entries the batch created or changed, with their event, in the order first changed.
    pub entries: Vec<(EventId, ReservationId)>,
    /// Reservations accepted and refused for want of stock (retries and repeats not counted).
    pub accepted: u64,
    pub refused: u64,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.orders.is_empty()
            && self.keys.is_empty()
            && self.entries.is_empty()
    }

    pub(super) fn put_order(&mut self, order: Order) {
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

    /// Counts `delta` tickets to `customer` of `event`.
    pub(super) fn count(&mut self, event: &EventId, customer: Option<&CustomerId>, delta: i64) {
        if let Some(customer) = customer {
            *self
                .customers
                .entry((event.clone(), customer.clone()))
                .or_default() += delta;
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

/// The count of a quota's stock an order in `status` is part of.
fn bucket(stock: &mut Stock, status: OrderStatus) -> &mut u64 {
    match status {
        OrderStatus::Held => &mut stock.held,
        OrderStatus::Confirmed => &mut stock.sold,
        OrderStatus::Cancelled | OrderStatus::Released | OrderStatus::Expired => {
            &mut stock.available
        }
    }
}

/// Whether an order in `status` counts against its customer's limit.
fn counts(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Held | OrderStatus::Confirmed)
}

/// The lines of a reservation as the event knows them: each category by its index, and qty.
pub(super) type Resolved = Vec<(usize, u32)>;

/// One batch's decisions: the state they are taken on and what they changed so far.
pub(crate) struct Rules<'a> {
    /// Every event as committed (for a shared store: as locked for this batch).
    pub committed: &'a EventMap,
    pub read: &'a Read,
    pub changes: &'a mut Changes,
    /// The batch's time (wall clock, milliseconds since the Unix epoch).
    pub now_ms: i64,
    /// How long an idempotency key is remembered.
    pub key_ttl_ms: i64,
    /// How long a waiting-list offer is held.
    pub offer_ttl_seconds: u32,
}

impl Rules<'_> {
    /// The event as this batch sees it: changed by the batch, or as committed.
    pub(super) fn event(&self, id: &EventId) -> Result<&Event, Error> {
        self.changes
            .events
            .get(id)
            .or_else(|| self.committed.get(id))
            .ok_or_else(|| Error::UnknownEvent(format!("unknown event '{id}'")))
    }

    /// The event to change: copied from the committed state the first time the batch changes it.
    pub(super) fn event_mut(&mut self, id: &EventId) -> Result<&mut Event, Error> {
        match self.changes.events.entry(id.clone()) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let committed = self
                    .committed
                    .get(id)
                    .ok_or_else(|| Error::UnknownEvent(format!("unknown event '{id}'")))?;
                Ok(entry.insert(committed.clone()))
            }
        }
    }

    /// The order as this batch sees it, if there is one.
    pub(super) fn order(&self, id: ReservationId) -> Result<Option<Order>, Error> {
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

    /// Tickets `customer` holds, has bought or waits for in `event`, this batch included.
    pub(super) fn customer_taken(
        &self,
        event: &EventId,
        customer: &CustomerId,
    ) -> Result<u64, Error> {
        let of = (event.clone(), customer.clone());
        let read = match self.read.customers.get(&of) {
            Some(read) => read.clone()?,
            None => {
                return Err(Error::Internal(format!(
                    "customer '{customer}' of '{event}' was not read before deciding"
                )));
            }
        };
        let batch = self.changes.customers.get(&of).copied().unwrap_or(0);
        Ok(read.saturating_add_signed(batch))
    }

    /// Sells or holds the tickets of every line, if all of them can be had; otherwise none.
    pub fn reserve(&mut self, reservation: &Reservation) -> Result<Reserved, Error> {
        let event = self.event(&reservation.event)?;
        let catalogue = Arc::clone(&event.catalogue);
        let lines = resolve(&catalogue, reservation)?;
        let key = reservation.key.as_ref();
        let asked = || Asked::of(reservation, &catalogue, &lines);
        if let Some(first) = self.first_use(key, || Keyed::Reserve(asked()))? {
            // A repeat of a keyed request: the first answer, whatever happened since.
            let FirstUse::Reserve {
                order,
                remaining,
                short,
                ..
            } = first
            else {
                unreachable!("a reservation's key is only ever first used for a reservation");
            };
            let order = order.map(|id| self.existing_order(id)).transpose()?;
            return Ok(Reserved {
                order,
                remaining,
                short,
            });
        }
        if let Some(earlier) = self.order(reservation.id)? {
            // A retry of a reservation already made: answer as before, change nothing.
            return idempotency::retry_of(earlier, &asked());
        }
        for &(category, _) in &lines {
            let category = &catalogue.categories[category];
            if !category.on_sale(self.now_ms) {
                return Err(not_on_sale(category));
            }
        }
        let total = u64::from(reservation.lines.total());
        match &reservation.customer {
            None if catalogue.customer_required => {
                return Err(Error::CustomerRequired(format!(
                    "event '{}' sells only to requests that name their customer",
                    reservation.event
                )));
            }
            Some(customer) => {
                if let Some(max) = catalogue.max_per_customer.map(u64::from) {
                    let taken = self.customer_taken(&reservation.event, customer)?;
                    if taken.saturating_add(total) > max {
                        let may_still = max.saturating_sub(taken);
                        return Err(Error::CustomerLimitReached {
                            message: format!(
                                "customer '{customer}' may have {max} tickets of '{}' at most and has {taken}; {may_still} more may be taken",
                                reservation.event
                            ),
                            may_still,
                        });
                    }
                }
            }
            None => {}
        }

        let event = self.event(&reservation.event)?;
        let mut need = [0u64; QUOTAS_MAX];
        for &(category, qty) in &lines {
            for &quota in &catalogue.categories[category].quotas {
                need[quota] += u64::from(qty);
            }
        }
        let short = match self.held_back(&reservation.event, &catalogue, &lines)? {
            Some(short) => Some(short),
            None => shortage(event, &catalogue, &lines, &need),
        };
        let event = self.event(&reservation.event)?;
        if let Some(short) = short {
            let remaining = event.stock().available;
            self.changes.refused += 1;
            // A keyed refusal is remembered too: its repeat must not buy what came back since.
            if key.is_some() {
                let first = FirstUse::Reserve {
                    asked: asked(),
                    order: None,
                    remaining,
                    short: Some(short.clone()),
                };
                self.changes.remember(key, first, self.now_ms);
            }
            return Ok(Reserved {
                order: None,
                remaining,
                short: Some(short),
            });
        }

        let held = reservation.hold_ttl_seconds.map(HoldTtl::seconds);
        let status = if held.is_some() {
            OrderStatus::Held
        } else {
            OrderStatus::Confirmed
        };
        let event = self.event_mut(&reservation.event)?;
        for (quota, need) in event.quotas.iter_mut().zip(need) {
            quota.stock.available -= need;
            *bucket(&mut quota.stock, status) += need;
        }
        let remaining = event.stock().available;
        let expires_at_ms = held.map(|ttl| expiry::deadline_ms(self.now_ms, ttl));
        if let Some(expires_at_ms) = expires_at_ms {
            self.changes
                .holds_added
                .push((expires_at_ms, reservation.id));
        }
        let order = Order {
            id: reservation.id,
            event: reservation.event.clone(),
            qty: reservation.lines.total(),
            lines: lines
                .iter()
                .map(|&(category, qty)| {
                    let category = &catalogue.categories[category];
                    OrderLine {
                        category: category.id.clone(),
                        qty,
                        unit_price: category.price,
                    }
                })
                .collect(),
            customer: reservation.customer.clone(),
            status,
            remaining,
            created_at_ms: self.now_ms,
            updated_at_ms: self.now_ms,
            expires_at_ms,
        };
        self.changes.accepted += 1;
        let delta = i64::from(order.qty);
        self.changes
            .count(&order.event, order.customer.as_ref(), delta);
        self.changes.put_order(order.clone());
        if key.is_some() {
            let first = FirstUse::Reserve {
                asked: asked(),
                order: Some(order.id),
                remaining,
                short: None,
            };
            self.changes.remember(key, first, self.now_ms);
        }
        Ok(Reserved {
            order: Some(order),
            remaining,
            short: None,
        })
    }

    /// Moves `order` to `status`, moving its tickets between the counts of every quota of every
    /// line to match.
    pub(super) fn transition(
        &mut self,
        mut order: Order,
        status: OrderStatus,
    ) -> Result<Order, Error> {
        let catalogue = Arc::clone(&self.event(&order.event)?.catalogue);
        let event = self.event_mut(&order.event)?;
        for line in order.lines.iter() {
            let category = catalogue.category(&line.category).ok_or_else(|| {
                Error::Internal(format!(
                    "order {} has a line of category '{}', which '{}' does not have",
                    order.id, line.category, order.event
                ))
            })?;
            let qty = u64::from(line.qty);
            for &quota in &category.quotas {
                let stock = &mut event.quotas[quota].stock;
                let from = bucket(stock, order.status);
                *from = from.checked_sub(qty).ok_or_else(|| {
                    Error::Internal(format!(
                        "order {} has more tickets than quota {quota} of '{}' counts",
                        order.id, order.event
                    ))
                })?;
                *bucket(stock, status) += qty;
            }
        }
        if counts(order.status) && !counts(status) {
            let delta = -i64::from(order.qty);
            self.changes
                .count(&order.event, order.customer.as_ref(), delta);
        }
        if let Standing::Held { expires_at_ms } = Standing::of(&order)? {
            self.changes.holds_removed.push((expires_at_ms, order.id));
        }
        let was = order.status;
        order.status = status;
        order.updated_at_ms = self.now_ms;
        self.changes.put_order(order.clone());
        if was == OrderStatus::Held {
            self.settle_offer(&order)?;
        }
        if counts(was) && !counts(status) {
            // Seats came back: the waiting list is served first, in this same batch.
            self.offer(&order.event)?;
        }
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

    /// Creates `event` (all of its places available), unless one has its id.
    pub fn create_event(&mut self, event: &Event) -> Result<Event, Error> {
        if self.event(&event.id).is_ok() {
            return Err(Error::EventExists(format!(
                "event '{}' already exists",
                event.id
            )));
        }
        self.changes.events.insert(event.id.clone(), event.clone());
        Ok(event.clone())
    }

    /// Adds `qty` places to an event's first quota: the seed's replenish.
    pub fn replenish(&mut self, id: &EventId, qty: u64) -> Result<Event, Error> {
        let quota = self.event(id)?.quotas[0].id.clone();
        self.resize_quota(id, &quota, Resize::Add(qty))
    }

    /// Grows a quota, or shrinks it down to no less than the places held and sold in it, within
    /// [`CAPACITY_MAX`].
    pub fn resize_quota(
        &mut self,
        id: &EventId,
        quota: &QuotaId,
        resize: Resize,
    ) -> Result<Event, Error> {
        let event = self.event(id)?;
        let index = event
            .quota_index(quota)
            .ok_or_else(|| Error::UnknownQuota(format!("event '{id}' has no quota '{quota}'")))?;
        let stock = event.quotas[index].stock;
        let size = match resize {
            Resize::Add(qty) => stock.capacity.checked_add(qty),
            Resize::To(size) => Some(size),
        };
        let Some(size) = size.filter(|size| *size <= CAPACITY_MAX) else {
            // Whether it fits depends on the event as it stands, not on the request alone.
            return Err(Error::CapacityExceeded(format!(
                "capacity would exceed {CAPACITY_MAX}"
            )));
        };
        let taken = stock.held + stock.sold;
        if size < taken {
            return Err(Error::QuotaInUse(format!(
                "quota '{quota}' of '{id}' has {taken} places held or sold; it cannot shrink to {size}"
            )));
        }
        let event = self.event_mut(id)?;
        let stock = &mut event.quotas[index].stock;
        stock.capacity = size;
        stock.available = size - taken;
        self.offer(id)?;
        Ok(self.event(id)?.clone())
    }

    /// Opens or closes a category, or moves its sales window.
    pub fn change_category(
        &mut self,
        id: &EventId,
        category: &crate::domain::CategoryId,
        change: CategoryChange,
    ) -> Result<Event, Error> {
        let mut catalogue = Catalogue::clone(&self.event(id)?.catalogue);
        let found = catalogue
            .categories
            .iter_mut()
            .find(|c| &c.id == category)
            .ok_or_else(|| {
                Error::UnknownCategory(format!("event '{id}' has no category '{category}'"))
            })?;
        if let Some(open) = change.open {
            found.open = open;
        }
        found.window = SalesWindow::new(
            change.sales_start.unwrap_or(found.window.start_ms),
            change.sales_end.unwrap_or(found.window.end_ms),
        )?;
        let event = self.event_mut(id)?;
        event.catalogue = Arc::new(catalogue);
        Ok(event.clone())
    }
}

/// Each line's category, by index into the event's: a line without one takes the event's only
/// category. A category may be in one line only, named or not.
fn resolve(catalogue: &Catalogue, reservation: &Reservation) -> Result<Resolved, Error> {
    let event = &reservation.event;
    let resolved: Resolved = reservation
        .lines
        .iter()
        .map(|line| {
            let index = match &line.category {
                Some(id) => catalogue
                    .categories
                    .iter()
                    .position(|category| &category.id == id)
                    .ok_or_else(|| {
                        Error::UnknownCategory(format!("event '{event}' has no category '{id}'"))
                    })?,
                None if catalogue.categories.len() == 1 => 0,
                None => {
                    return Err(Error::UnknownCategory(format!(
                        "event '{event}' sells several categories; each line must name one"
                    )));
                }
            };
            Ok((index, line.qty.get()))
        })
        .collect::<Result<_, Error>>()?;
    for (n, &(category, _)) in resolved.iter().enumerate() {
        if resolved[..n]
            .iter()
            .any(|&(earlier, _)| earlier == category)
        {
            return Err(Error::InvalidQuantity(format!(
                "category '{}' is in two lines",
                catalogue.categories[category].id
            )));
        }
    }
    Ok(resolved)
}

/// The first line, in the order asked, with a quota short of what all lines `need` of it.
fn shortage(
    event: &Event,
    catalogue: &Catalogue,
    lines: &Resolved,
    need: &[u64; QUOTAS_MAX],
) -> Option<Shortage> {
    lines.iter().find_map(|&(category, _)| {
        let category = &catalogue.categories[category];
        category.quotas.iter().find_map(|&quota| {
            let stock = event.quotas[quota].stock;
            (stock.available < need[quota]).then(|| Shortage {
                category: category.id.clone(),
                quota: event.quotas[quota].id.clone(),
                available: stock.available,
            })
        })
    })
}

pub(super) fn not_on_sale(category: &Category) -> Error {
    let why = if category.open {
        "is not on sale at this time"
    } else {
        "is closed"
    };
    Error::NotOnSale {
        message: format!("category '{}' {why}", category.id),
        category: category.id.clone(),
        window: category.window,
    }
}

#[cfg(test)]
#[path = "rules_test.rs"]
mod tests;
