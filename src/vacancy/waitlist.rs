//! The waiting list's rules: joining, leaving, and offering seats that come back.
//!
//! An event's list is the queue of each of its categories: live entries (`waiting`, or
//! `offered`) in the order they joined. Whenever a decision returns seats to an event (a hold
//! released or expired, an order cancelled, a quota grown, an entry leaving), [`Rules::offer`]
//! runs in the same batch, so the seats reach the list before any later request can see them:
//! nothing is offered twice, nor lost between the list and the public.
//!
//! The rules:
//! - a category's list may be joined only while the category cannot sell the quantity asked to
//!   the public (409 `tickets_available` otherwise), and only for what the category could ever
//!   give (422 `invalid_quantity` for more than the least size of its quotas);
//! - while any entry waits for a category, the public is sold none of it: a reservation of that
//!   category is short (its `available` is 0 for the public);
//! - the head of a category's queue is offered a hold of its whole quantity for
//!   `offer_ttl_seconds` as soon as the category has that many seats. **When the head wants more
//!   than came back, it keeps its turn**: the seats wait (held back from the public) until enough
//!   come back for it, and no later entry is served before it. Groups are never skipped.
//! - the offer's hold has the entry's id. Confirming it accepts the offer; releasing it (or
//!   leaving the list) declines it; when it runs out the entry is `expired` and its seats go to
//!   the next entry in the same batch.
//! - an entry's quantity counts against the event's `max_per_customer` while it waits, as its
//!   offer's hold does once offered.

use std::sync::Arc;

use super::expiry;
use super::rules::{Rules, not_on_sale};
use crate::domain::{
    Catalogue, CategoryId, Entry, EntryStatus, EntryView, Error, EventId, Joining, Order,
    OrderLine, OrderStatus, ReservationId, Shortage,
};

impl Rules<'_> {
    /// The event's live entries, as this batch sees them.
    fn waitlist(&self, event: &EventId) -> Result<&[Entry], Error> {
        if let Some(list) = self.changes.waitlists.get(event) {
            return Ok(list);
        }
        match self.read.waitlists.get(event) {
            Some(Ok(list)) => Ok(list),
            Some(Err(error)) => Err(error.clone()),
            None => Err(Error::Internal(format!(
                "the waiting list of '{event}' was not read before deciding"
            ))),
        }
    }

    /// The event's list to change: copied from what was read the first time the batch changes it.
    fn waitlist_mut(&mut self, event: &EventId) -> Result<&mut Vec<Entry>, Error> {
        if !self.changes.waitlists.contains_key(event) {
            let list = self.waitlist(event)?.to_vec();
            self.changes.waitlists.insert(event.clone(), list);
        }
        Ok(self
            .changes
            .waitlists
            .get_mut(event)
            .expect("inserted just above"))
    }

    /// Stores `entry` in its event's list, in its turn, as changed by this batch.
    fn put_entry(&mut self, entry: Entry) -> Result<(), Error> {
        let (event, id) = (entry.event.clone(), entry.id);
        let list = self.waitlist_mut(&event)?;
        match list.iter_mut().find(|e| e.id == id) {
            Some(found) => *found = entry,
            None => {
                let at = list.partition_point(|e| e.turn() < entry.turn());
                list.insert(at, entry);
            }
        }
        if !self.changes.entries.iter().any(|(_, e)| *e == id) {
            self.changes.entries.push((event, id));
        }
        Ok(())
    }

    /// The entry with `id` as this batch sees it, if there is one.
    fn entry(&self, id: ReservationId) -> Result<Option<Entry>, Error> {
        if let Some((event, _)) = self.changes.entries.iter().find(|(_, e)| *e == id) {
            let list = self.waitlist(event)?;
            return Ok(list.iter().find(|e| e.id == id).cloned());
        }
        let read = match self.read.entries.get(&id) {
            Some(read) => read.clone()?,
            None => {
                return Err(Error::Internal(format!(
                    "waiting-list entry {id} was not read before deciding"
                )));
            }
        };
        // A live entry is as its event's list has it (the batch may have changed it).
        match read {
            Some(entry) if entry.status.is_live() => {
                let list = self.waitlist(&entry.event)?;
                Ok(list.iter().find(|e| e.id == id).cloned().or(Some(entry)))
            }
            other => Ok(other),
        }
    }

    fn existing_entry(&self, id: ReservationId) -> Result<Entry, Error> {
        self.entry(id)?
            .ok_or_else(|| Error::UnknownEntry(format!("unknown waiting-list entry '{id}'")))
    }

    /// The entry with its place in the queue.
    fn view(&self, entry: Entry) -> Result<EntryView, Error> {
        let position = match entry.status {
            EntryStatus::Waiting => {
                let list = self.waitlist(&entry.event)?;
                let ahead = list
                    .iter()
                    .filter(|e| e.status == EntryStatus::Waiting && e.category == entry.category)
                    .take_while(|e| e.id != entry.id)
                    .count();
                Some(u32::try_from(ahead + 1).unwrap_or(u32::MAX))
            }
            _ => None,
        };
        Ok(EntryView { entry, position })
    }

    /// Whether anyone waits for `category` of `event`.
    fn anyone_waits(&self, event: &EventId, category: &CategoryId) -> Result<bool, Error> {
        Ok(self
            .waitlist(event)?
            .iter()
            .any(|e| e.status == EntryStatus::Waiting && &e.category == category))
    }

    /// The first line of a reservation whose category's seats are held back for its waiting
    /// list, as a shortage: the public is sold none of a category anyone waits for.
    pub(super) fn held_back(
        &self,
        event: &EventId,
        catalogue: &Catalogue,
        lines: &super::rules::Resolved,
    ) -> Result<Option<Shortage>, Error> {
        for &(index, _) in lines {
            let category = &catalogue.categories[index];
            if self.anyone_waits(event, &category.id)? {
                let quota = category.quotas[0];
                let quota = self.event(event)?.quotas[quota].id.clone();
                return Ok(Some(Shortage {
                    category: category.id.clone(),
                    quota,
                    available: 0,
                }));
            }
        }
        Ok(None)
    }

    /// Seats of `category` (by index) the event has: the least of its quotas'.
    fn category_available(&self, event: &EventId, index: usize) -> Result<u64, Error> {
        let event = self.event(event)?;
        Ok(event.category_available(&event.catalogue.categories[index]))
    }

    /// Places `index` has in all, sold or not: the least of its quotas' sizes.
    fn category_places(&self, event: &EventId, index: usize) -> Result<u64, Error> {
        let event = self.event(event)?;
        Ok(event.category_places(&event.catalogue.categories[index]))
    }

    /// Joins the waiting list of a category that cannot sell `qty` to the public; joining again
    /// with the same id answers as the first time.
    pub fn join(&mut self, joining: &Joining) -> Result<EntryView, Error> {
        let event = self.event(&joining.event)?;
        let catalogue = Arc::clone(&event.catalogue);
        let index = match &joining.category {
            Some(id) => catalogue
                .categories
                .iter()
                .position(|category| &category.id == id)
                .ok_or_else(|| {
                    Error::UnknownCategory(format!(
                        "event '{}' has no category '{id}'",
                        joining.event
                    ))
                })?,
            None if catalogue.categories.len() == 1 => 0,
            None => {
                return Err(Error::UnknownCategory(format!(
                    "event '{}' sells several categories; name the one to wait for",
                    joining.event
                )));
            }
        };
        let category = &catalogue.categories[index];
        let qty = joining.qty.get();
        if let Some(earlier) = self.entry(joining.id)? {
            // A retry of a join already made: answer as before, change nothing.
            let same = earlier.event == joining.event
                && earlier.category == category.id
                && earlier.qty == qty
                && earlier.customer == joining.customer;
            if !same {
                return Err(Error::ReservationConflict(format!(
                    "waiting-list entry {} was made for another request",
                    joining.id
                )));
            }
            return self.view(earlier);
        }
        if self.order(joining.id)?.is_some() {
            return Err(Error::ReservationConflict(format!(
                "{} is already the id of an order",
                joining.id
            )));
        }
        if !category.on_sale(self.now_ms) {
            return Err(not_on_sale(category));
        }
        match &joining.customer {
            None if catalogue.customer_required => {
                return Err(Error::CustomerRequired(format!(
                    "event '{}' sells only to requests that name their customer",
                    joining.event
                )));
            }
            Some(customer) => {
                if let Some(max) = catalogue.max_per_customer.map(u64::from) {
                    let taken = self.customer_taken(&joining.event, customer)?;
                    if taken.saturating_add(u64::from(qty)) > max {
                        let may_still = max.saturating_sub(taken);
                        return Err(Error::CustomerLimitReached {
                            message: format!(
                                "customer '{customer}' may have {max} tickets of '{}' at most and has {taken} (held, bought or waited for); {may_still} more may be taken",
                                joining.event
                            ),
                            may_still,
                        });
                    }
                }
            }
            None => {}
        }
        let places = self.category_places(&joining.event, index)?;
        if u64::from(qty) > places {
            // It would keep its turn for ever, and the category would sell nothing meanwhile.
            return Err(Error::InvalidQuantity(format!(
                "category '{}' of '{}' has {places} places in all: an entry for {qty} could never be offered",
                category.id, joining.event
            )));
        }
        let available = self.category_available(&joining.event, index)?;
        if !self.anyone_waits(&joining.event, &category.id)? && available >= u64::from(qty) {
            return Err(Error::TicketsAvailable(format!(
                "category '{}' of '{}' has {available} tickets on sale; buy them instead of waiting",
                category.id, joining.event
            )));
        }
        let entry = Entry {
            id: joining.id,
            event: joining.event.clone(),
            category: category.id.clone(),
            qty,
            customer: joining.customer.clone(),
            status: EntryStatus::Waiting,
            joined_at_ms: self.now_ms,
            updated_at_ms: self.now_ms,
            offer_expires_at_ms: None,
        };
        self.changes
            .count(&entry.event, entry.customer.as_ref(), i64::from(qty));
        self.put_entry(entry.clone())?;
        self.view(entry)
    }

    /// One entry, with its place in the queue.
    pub fn find_entry(&self, id: ReservationId) -> Result<EntryView, Error> {
        let entry = self.existing_entry(id)?;
        self.view(entry)
    }

    /// Leaves the list; an open offer is declined (its hold released, its seats offered on).
    /// An entry already off the list is answered as it is.
    pub fn leave(&mut self, id: ReservationId) -> Result<EntryView, Error> {
        let mut entry = self.existing_entry(id)?;
        match entry.status {
            EntryStatus::Waiting => {
                entry.status = EntryStatus::Left;
                entry.updated_at_ms = self.now_ms;
                let qty = -i64::from(entry.qty);
                self.changes
                    .count(&entry.event, entry.customer.as_ref(), qty);
                self.put_entry(entry.clone())?;
                // The head leaving may let the next entry be served.
                self.offer(&entry.event)?;
            }
            EntryStatus::Offered => {
                let hold = self.existing_order(id)?;
                if hold.status == OrderStatus::Held {
                    // Settles the entry as left and offers the seats on.
                    self.transition(hold, OrderStatus::Released)?;
                }
            }
            EntryStatus::Accepted | EntryStatus::Expired | EntryStatus::Left => {}
        }
        let entry = self.existing_entry(id)?;
        self.view(entry)
    }

    /// Settles the offer whose hold `order` just left `held`: accepted, declined or expired.
    pub(super) fn settle_offer(&mut self, order: &Order) -> Result<(), Error> {
        let offered = self
            .waitlist(&order.event)?
            .iter()
            .find(|e| e.id == order.id && e.status == EntryStatus::Offered)
            .cloned();
        let Some(mut entry) = offered else {
            return Ok(());
        };
        entry.status = match order.status {
            OrderStatus::Confirmed => EntryStatus::Accepted,
            OrderStatus::Expired => EntryStatus::Expired,
            OrderStatus::Released | OrderStatus::Cancelled => EntryStatus::Left,
            OrderStatus::Held => return Ok(()),
        };
        entry.updated_at_ms = self.now_ms;
        self.put_entry(entry)
    }

    /// Offers what `event` has to its waiting lists, each category's in turn: the head of each
    /// queue gets a hold of its whole quantity while the category has that many seats; a head
    /// that does not fit keeps its turn, and its category's seats wait for it.
    pub(super) fn offer(&mut self, event: &EventId) -> Result<(), Error> {
        if !self
            .waitlist(event)?
            .iter()
            .any(|e| e.status == EntryStatus::Waiting)
        {
            return Ok(());
        }
        let catalogue = Arc::clone(&self.event(event)?.catalogue);
        for (index, category) in catalogue.categories.iter().enumerate() {
            loop {
                let head = self
                    .waitlist(event)?
                    .iter()
                    .find(|e| e.status == EntryStatus::Waiting && e.category == category.id)
                    .cloned();
                let Some(mut head) = head else { break };
                if self.category_available(event, index)? < u64::from(head.qty) {
                    break;
                }
                let qty = u64::from(head.qty);
                let changed = self.event_mut(event)?;
                for &quota in &category.quotas {
                    let stock = &mut changed.quotas[quota].stock;
                    stock.available -= qty;
                    stock.held += qty;
                }
                let remaining = changed.stock().available;
                let expires_at_ms = expiry::deadline_ms(self.now_ms, self.offer_ttl_seconds);
                self.changes.holds_added.push((expires_at_ms, head.id));
                // The waiting entry counted against its customer's limit; its hold now does.
                self.changes.put_order(Order {
                    id: head.id,
                    event: event.clone(),
                    qty: head.qty,
                    lines: vec![OrderLine {
                        category: category.id.clone(),
                        qty: head.qty,
                        unit_price: category.price,
                    }]
                    .into(),
                    customer: head.customer.clone(),
                    status: OrderStatus::Held,
                    remaining,
                    created_at_ms: self.now_ms,
                    updated_at_ms: self.now_ms,
                    expires_at_ms: Some(expires_at_ms),
                });
                head.status = EntryStatus::Offered;
                head.updated_at_ms = self.now_ms;
                head.offer_expires_at_ms = Some(expires_at_ms);
                self.put_entry(head)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "waitlist_test.rs"]
mod tests;
