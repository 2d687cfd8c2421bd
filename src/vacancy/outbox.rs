//! The outbox: which [`Change`]s a batch makes, decided in one place from what the batch changed
//! against what it read, and written by the ledger in the batch's own commit.
//!
//! Nothing here decides stock: the rules have decided, and every order, entry and event they
//! changed is compared with its state before the batch.
//!
//! - **Orders** move along one path: created `held` or `confirmed`; a hold ends `confirmed`,
//!   `released` or `expired`; a confirmed order may end `cancelled`. So the state before and the
//!   state after name every step in between, even when one batch took two (a purchase and its
//!   cancellation): `hold.created`, `order.confirmed`, `hold.released`, `hold.expired`,
//!   `order.cancelled`, one change per step. A pair off that path is a bug and fails the batch.
//! - **Offers**: an offer to a waiting entry is a hold with the entry's id, so its creation is
//!   `waitlist.offered` (not `hold.created`) and its running out `waitlist.offer_expired` (not
//!   `hold.expired`). Accepting an offer is the hold's `order.confirmed`, declining it
//!   `hold.released`.
//! - **Events**: an event is *on sale* while at least one of its categories has a seat the public
//!   could buy: every quota of the category has a seat available, and no entry waits for the
//!   category (while anyone waits, the seats that come back are theirs first). It is *sold out*
//!   otherwise. A batch that takes an event from on sale to sold out makes `event.sold_out`, one
//!   that takes it back makes `event.back_on_sale`; the comparison is of the committed states, so
//!   a batch that sells out and refills an event within itself makes neither. Sales windows and
//!   closed categories do not count: they are about when, not about seats, and change with the
//!   clock rather than with a commit. A new event makes none.
//!
//! Within a batch, changes follow the order the batch first changed each order, then the events
//! in id order. `data` is the JSON integrators need without another call: `{"order": ...}` as
//! `GET /api/v1/orders/{id}` shows it, `{"entry": ...}` as `GET /api/v1/waitlist/{id}` shows it
//! (with its offer's hold id and expiry), `{"event": ...}` as `GET /api/v1/events/{id}` shows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::rules::{Changes, Read};
use crate::domain::{
    Change, ChangeType, Entry, EntryStatus, EntryView, Error, Event, EventId, Order, OrderStatus,
};
use crate::wire::{EventResponse, OrderResponse, WaitlistEntryResponse};

/// The steps an order took from `before` (`None`: it is new) to `after`, as the changes they make.
/// `Err` names a pair no decision makes.
pub(crate) fn order_steps(
    before: Option<OrderStatus>,
    after: OrderStatus,
) -> Result<&'static [ChangeType], (Option<OrderStatus>, OrderStatus)> {
    use ChangeType::*;
    use OrderStatus::*;
    Ok(match (before, after) {
        (Some(before), after) if before == after => &[],
        (None, Held) => &[HoldCreated],
        (None, Confirmed) => &[OrderConfirmed],
        (None, Cancelled) => &[OrderConfirmed, OrderCancelled],
        (None, Released) => &[HoldCreated, HoldReleased],
        (None, Expired) => &[HoldCreated, HoldExpired],
        (Some(Held), Confirmed) => &[OrderConfirmed],
        (Some(Held), Cancelled) => &[OrderConfirmed, OrderCancelled],
        (Some(Held), Released) => &[HoldReleased],
        (Some(Held), Expired) => &[HoldExpired],
        (Some(Confirmed), Cancelled) => &[OrderCancelled],
        (before, after) => return Err((before, after)),
    })
}

/// Whether `event` has a seat the public could buy, given the categories anyone waits for.
pub(crate) fn on_sale(event: &Event, waiting: &[Entry]) -> bool {
    event.catalogue.categories.iter().any(|category| {
        let has_seats = !category.quotas.is_empty()
            && category
                .quotas
                .iter()
                .all(|&quota| event.quotas[quota].stock.available > 0);
        has_seats
            && !waiting
                .iter()
                .any(|e| e.status == EntryStatus::Waiting && e.category == category.id)
    })
}

#[derive(Serialize)]
struct OrderData<'a> {
    order: &'a OrderResponse,
}

#[derive(Serialize)]
struct EntryData<'a> {
    entry: &'a WaitlistEntryResponse,
}

#[derive(Serialize)]
struct EventData<'a> {
    event: &'a EventResponse,
}

fn encode(value: &impl Serialize) -> Result<Arc<str>, Error> {
    serde_json::to_string(value)
        .map(Arc::from)
        .map_err(|e| Error::Internal(format!("cannot encode a change: {e}")))
}

/// What a batch read and changed, for deriving its changes.
pub(crate) struct Derive<'a> {
    pub read: &'a Read,
    /// Events as committed (or locked) before the batch.
    pub committed: &'a BTreeMap<EventId, Event>,
    pub changes: &'a Changes,
    pub now_ms: i64,
}

impl Derive<'_> {
    /// The order as committed before the batch, if it was.
    fn order_before(&self, order: &Order) -> Option<OrderStatus> {
        match self.read.orders.get(&order.id) {
            Some(Ok(Some(before))) => Some(before.status),
            _ => None,
        }
    }

    /// The entry of `id` the batch changed, as it left it, if the batch changed one.
    fn entry_after(&self, order: &Order) -> Option<&Entry> {
        if self.changes.entries.is_empty() {
            return None;
        }
        let (event, _) = self.changes.entries.iter().find(|(_, e)| *e == order.id)?;
        self.changes
            .waitlists
            .get(event)?
            .iter()
            .find(|e| e.id == order.id)
    }

    /// The live entries of `event` before the batch, as read (none if the batch did not read its
    /// list, in which case it did not change it either).
    fn waiting_before(&self, event: &EventId) -> &[Entry] {
        match self.read.waitlists.get(event) {
            Some(Ok(list)) => list,
            _ => &[],
        }
    }

    fn waiting_after(&self, event: &EventId) -> &[Entry] {
        match self.changes.waitlists.get(event) {
            Some(list) => list,
            None => self.waiting_before(event),
        }
    }

    /// Appends the batch's changes to `out`, numbered from `next_seq` on, in the order `orders`
    /// (as the batch will store them) and then `events` come.
    pub fn changes(
        &self,
        orders: &[Order],
        events: &[Event],
        mut next_seq: u64,
        out: &mut Vec<Change>,
    ) -> Result<(), Error> {
        let mut push = |kind: ChangeType, event: &EventId, data: Arc<str>| {
            out.push(Change {
                seq: next_seq,
                kind,
                event: event.clone(),
                at_ms: self.now_ms,
                data,
            });
            next_seq += 1;
        };
        for order in orders {
            let before = self.order_before(order);
            let steps = order_steps(before, order.status).map_err(|(before, after)| {
                Error::Internal(format!(
                    "order {} went from {before:?} to {after:?}, which no rule does",
                    order.id
                ))
            })?;
            if steps.is_empty() {
                continue;
            }
            let offer = self.entry_after(order);
            let mut order_data = None;
            for &step in steps {
                let data = match (step, offer) {
                    (ChangeType::HoldCreated, Some(entry))
                        if entry.status == EntryStatus::Offered =>
                    {
                        push(
                            ChangeType::WaitlistOffered,
                            &order.event,
                            self.entry(entry)?,
                        );
                        continue;
                    }
                    (ChangeType::HoldExpired, Some(entry))
                        if entry.status == EntryStatus::Expired =>
                    {
                        push(
                            ChangeType::WaitlistOfferExpired,
                            &order.event,
                            self.entry(entry)?,
                        );
                        continue;
                    }
                    _ => match &order_data {
                        Some(data) => Arc::clone(data),
                        None => {
                            let response = OrderResponse::from(order);
                            let data = encode(&OrderData { order: &response })?;
                            order_data = Some(Arc::clone(&data));
                            data
                        }
                    },
                };
                push(step, &order.event, data);
            }
        }
        let mut sorted: Vec<&Event> = Vec::new();
        for event in events {
            let Some(before) = self.committed.get(&event.id) else {
                continue;
            };
            let was = on_sale(before, self.waiting_before(&event.id));
            let is = on_sale(event, self.waiting_after(&event.id));
            if was != is {
                sorted.push(event);
            }
        }
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for event in sorted {
            let was = on_sale(&self.committed[&event.id], self.waiting_before(&event.id));
            let kind = if was {
                ChangeType::EventSoldOut
            } else {
                ChangeType::EventBackOnSale
            };
            let response = EventResponse::detail(event, self.now_ms);
            push(kind, &event.id, encode(&EventData { event: &response })?);
        }
        Ok(())
    }

    fn entry(&self, entry: &Entry) -> Result<Arc<str>, Error> {
        let view = EntryView {
            entry: entry.clone(),
            position: None,
        };
        encode(&EntryData {
            entry: &WaitlistEntryResponse::from(&view),
        })
    }
}

/// Changes kept by a store, for a reader.
#[derive(Debug, Default)]
pub struct Kept {
    /// Changes after the reader's cursor, in commit order.
    pub changes: Vec<Change>,
    /// The number of the last change committed (0 if none ever was), kept or not.
    pub last_seq: u64,
}

/// The page a reader gets from what a store kept after `after`: an error when changes after
/// `after` were committed but are no longer kept (the reader would miss them).
pub(crate) fn page(after: u64, kept: Kept) -> Result<crate::domain::ChangesPage, Error> {
    // Numbers are given without a gap, so the first kept after `after` must be `after + 1`.
    let oldest = kept.changes.first().map_or(kept.last_seq + 1, |c| c.seq);
    if after > 0 && after < kept.last_seq && oldest > after + 1 {
        return Err(Error::CursorExpired {
            message: format!(
                "changes after {after} are no longer kept: the oldest kept is {oldest}; read again from after={} (or 0)",
                oldest - 1
            ),
            oldest,
        });
    }
    let next_after = kept.changes.last().map_or(after, |c| c.seq);
    Ok(crate::domain::ChangesPage {
        changes: kept.changes,
        next_after,
    })
}

/// Counts changes by kind, for tests.
#[cfg(test)]
pub(crate) fn kinds(changes: &[Change]) -> Vec<&'static str> {
    changes.iter().map(|c| c.kind.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of states: the path between them, or a refusal for a pair no rule makes.
    #[test]
    fn every_order_transition_names_its_steps() {
        use ChangeType::*;
        use OrderStatus::*;
        type Row = (
            Option<OrderStatus>,
            OrderStatus,
            Option<&'static [ChangeType]>,
        );
        let table: [Row; 21] = [
            (None, Held, Some(&[HoldCreated])),
            (None, Confirmed, Some(&[OrderConfirmed])),
            (None, Cancelled, Some(&[OrderConfirmed, OrderCancelled])),
            (None, Released, Some(&[HoldCreated, HoldReleased])),
            (None, Expired, Some(&[HoldCreated, HoldExpired])),
            (Some(Held), Held, Some(&[])),
            (Some(Held), Confirmed, Some(&[OrderConfirmed])),
            (
                Some(Held),
                Cancelled,
                Some(&[OrderConfirmed, OrderCancelled]),
            ),
            (Some(Held), Released, Some(&[HoldReleased])),
            (Some(Held), Expired, Some(&[HoldExpired])),
            (Some(Confirmed), Confirmed, Some(&[])),
            (Some(Confirmed), Cancelled, Some(&[OrderCancelled])),
            (Some(Confirmed), Held, None),
            (Some(Confirmed), Released, None),
            (Some(Confirmed), Expired, None),
            (Some(Cancelled), Cancelled, Some(&[])),
            (Some(Cancelled), Confirmed, None),
            (Some(Released), Released, Some(&[])),
            (Some(Released), Held, None),
            (Some(Expired), Expired, Some(&[])),
            (Some(Expired), Confirmed, None),
        ];
        for (before, after, steps) in table {
            assert_eq!(
                order_steps(before, after).ok(),
                steps,
                "{before:?} -> {after:?}"
            );
        }
    }

    fn entry(category: &str, status: EntryStatus) -> Entry {
        Entry {
            id: crate::domain::ReservationId::generate(),
            event: EventId::parse("gala").unwrap(),
            category: crate::domain::CategoryId::parse(category).unwrap(),
            qty: 2,
            customer: None,
            status,
            joined_at_ms: 1,
            updated_at_ms: 1,
            offer_expires_at_ms: None,
        }
    }

    /// On sale: a category whose every quota has a seat and that no one waits for.
    #[test]
    fn an_event_is_on_sale_while_the_public_could_buy_a_seat() {
        let mut event = Event::single(EventId::parse("gala").unwrap(), "Gala".into(), 3);
        assert!(on_sale(&event, &[]));
        // Someone waits for the only category: its seats are theirs first.
        let waiting = [entry("general", EntryStatus::Waiting)];
        assert!(!on_sale(&event, &waiting));
        // An offered entry holds its seats already; the rest are on sale.
        assert!(on_sale(&event, &[entry("general", EntryStatus::Offered)]));
        event.stock_mut().available = 0;
        event.stock_mut().sold = 3;
        assert!(!on_sale(&event, &[]));
    }

    #[test]
    fn a_page_tells_a_cursor_behind_what_is_kept() {
        let change = |seq| Change {
            seq,
            kind: ChangeType::HoldCreated,
            event: EventId::parse("gala").unwrap(),
            at_ms: 1,
            data: "{}".into(),
        };
        let kept = |seqs: std::ops::Range<u64>, last_seq| Kept {
            changes: seqs.map(change).collect(),
            last_seq,
        };
        assert_eq!(page(4, kept(5..7, 6)).unwrap().next_after, 6);
        assert_eq!(page(0, kept(5..7, 6)).unwrap().next_after, 6);
        assert_eq!(
            page(9, kept(std::ops::Range::default(), 6))
                .unwrap()
                .next_after,
            9
        );
        let expired = page(3, kept(5..7, 6)).unwrap_err();
        assert!(matches!(expired, Error::CursorExpired { oldest: 5, .. }));
        assert!(expired.to_string().contains("after=4"), "{expired}");
        let expired = page(3, kept(std::ops::Range::default(), 6)).unwrap_err();
        assert!(matches!(expired, Error::CursorExpired { oldest: 7, .. }));
    }
}
