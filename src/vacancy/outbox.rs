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
//!   clock rather than with a commit. Every batch that changed an event's stock *or its waiting
//!   list* is compared: joining a list can hold the last seats back (`sold_out`), leaving it can
//!   give them back (`back_on_sale`). A new event is taken as on sale before it existed: one made
//!   with nothing the public could buy (capacity 0, or sold out by the batch that made it) makes
//!   `event.sold_out`, so for every event a `back_on_sale` follows a `sold_out` and the two
//!   alternate. (Events sold out before the outbox existed are the one exception: their first
//!   change may be `back_on_sale`.)
//!
//! Within a batch, changes follow the order the batch first changed each order, then the events
//! in id order. `data` is the JSON integrators need without another call: `{"order": ...}` as
//! `GET /api/v1/orders/{id}` shows it, `{"entry": ...}` as `GET /api/v1/waitlist/{id}` shows it
//! (with its offer's hold id and expiry), `{"event": ...}` as `GET /api/v1/events/{id}` shows it.

use std::sync::Arc;

use serde::Serialize;

use super::events::EventMap;
use super::rules::{Changes, Read};
use crate::domain::{
    Change, ChangeType, Entry, EntryStatus, EntryView, Error, Event, EventId, Order, OrderStatus,
};
use crate::wire::{EventResponse, WaitlistEntryResponse};

/// The steps an order took from `before` (`None`: it is new) to `after`, as the changes they make;
/// `hold` says whether it began as a hold (a new order confirmed within one batch may have been
/// held first). `Err` names a pair no decision makes.
pub(crate) fn order_steps(
    before: Option<OrderStatus>,
    after: OrderStatus,
    hold: bool,
) -> Result<&'static [ChangeType], (Option<OrderStatus>, OrderStatus)> {
    use ChangeType::*;
    use OrderStatus::*;
    Ok(match (before, after) {
        (Some(before), after) if before == after => &[],
        (None, Held) => &[HoldCreated],
        (None, Confirmed) if hold => &[HoldCreated, OrderConfirmed],
        (None, Confirmed) => &[OrderConfirmed],
        (None, Cancelled) if hold => &[HoldCreated, OrderConfirmed, OrderCancelled],
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
struct EntryData<'a> {
    entry: &'a WaitlistEntryResponse,
}

#[derive(Serialize)]
struct EventData<'a> {
    event: &'a EventResponse,
}

/// `{"order": ...}` exactly as `serde_json` writes [`OrderResponse`] (a test holds the two
/// together byte for byte), written straight into one string: every purchase makes one, and
/// building the response's strings and vectors first cost more than the rest of the change.
fn encode_order(order: &Order) -> Arc<str> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(320);
    let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push_str("{\"order\":{\"order_id\":\"");
    out.push_str(order.id.as_uuid().hyphenated().encode_lower(&mut uuid));
    out.push_str("\",\"event\":");
    json_str(&mut out, order.event.as_str());
    let _ = write!(out, ",\"qty\":{},\"lines\":[", order.qty);
    for (n, line) in order.lines.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str("{\"category\":");
        json_str(&mut out, line.category.as_str());
        let _ = write!(out, ",\"qty\":{}", line.qty);
        if let Some(price) = line.unit_price {
            out.push_str(",\"unit_price\":");
            json_price(&mut out, price);
        }
        out.push('}');
    }
    out.push(']');
    if let Some(customer) = &order.customer {
        out.push_str(",\"customer\":");
        json_str(&mut out, customer.as_str());
    }
    if let Some(total) = crate::domain::total_price(&order.lines) {
        out.push_str(",\"total_price\":");
        json_price(&mut out, total);
    }
    let _ = write!(
        out,
        ",\"status\":\"{}\",\"remaining\":{},\"created_at\":",
        order.status.as_str(),
        order.remaining
    );
    let created_at = crate::wire::timestamp(order.created_at_ms);
    json_str(&mut out, &created_at);
    out.push_str(",\"updated_at\":");
    if order.updated_at_ms == order.created_at_ms {
        json_str(&mut out, &created_at);
    } else {
        json_str(&mut out, &crate::wire::timestamp(order.updated_at_ms));
    }
    if let Some(expires_at_ms) = order.expires_at_ms {
        out.push_str(",\"expires_at\":");
        json_str(&mut out, &crate::wire::timestamp(expires_at_ms));
    }
    out.push_str("}}");
    Arc::from(out)
}

fn json_price(out: &mut String, price: crate::domain::Price) {
    use std::fmt::Write as _;
    let _ = write!(out, "{{\"amount\":{},\"currency\":", price.amount);
    json_str(out, price.currency.as_str());
    out.push('}');
}

/// `raw` as a JSON string, escaped as `serde_json` escapes it.
fn json_str(out: &mut String, raw: &str) {
    use std::fmt::Write as _;
    out.push('"');
    // Ids and times never need escaping: written whole.
    if !raw.bytes().any(|b| b == b'"' || b == b'\\' || b < b' ') {
        out.push_str(raw);
        out.push('"');
        return;
    }
    for c in raw.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
    pub committed: &'a EventMap,
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
            let hold = super::rules::began_as_hold(order);
            let steps = order_steps(before, order.status, hold).map_err(|(before, after)| {
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
                    // A hold with an entry's id is that entry's offer, whatever became of the
                    // entry later in the same batch (accepted, expired, left): told as offered.
                    (ChangeType::HoldCreated, Some(entry)) => {
                        let data = if entry.status == EntryStatus::Offered {
                            self.entry(entry)?
                        } else {
                            let offered = Entry {
                                status: EntryStatus::Offered,
                                offer_expires_at_ms: order
                                    .expires_at_ms
                                    .or(entry.offer_expires_at_ms),
                                ..entry.clone()
                            };
                            self.entry(&offered)?
                        };
                        push(ChangeType::WaitlistOffered, &order.event, data);
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
                    _ => Arc::clone(order_data.get_or_insert_with(|| encode_order(order))),
                };
                push(step, &order.event, data);
            }
        }
        // Every event whose stock or waiting list the batch changed: joining or leaving a list
        // changes what the public may buy as surely as a sale does.
        let mut told: Vec<(&Event, ChangeType)> = Vec::new();
        let tell = |before: Option<&Event>, after: &Event| {
            let is = on_sale(after, self.waiting_after(&after.id));
            match before {
                Some(before) => {
                    let was = on_sale(before, self.waiting_before(&after.id));
                    (was != is).then_some(if was {
                        ChangeType::EventSoldOut
                    } else {
                        ChangeType::EventBackOnSale
                    })
                }
                // A new event is on sale from the start unless it has nothing to sell: then it
                // is sold out, so every `back_on_sale` follows a `sold_out`.
                None => (!is).then_some(ChangeType::EventSoldOut),
            }
        };
        for event in events {
            if let Some(kind) = tell(self.committed.get(&event.id), event) {
                told.push((event, kind));
            }
        }
        for id in self.changes.waitlists.keys() {
            if self.changes.events.contains_key(id) || events.iter().any(|e| e.id == *id) {
                continue;
            }
            let Some(event) = self.committed.get(id) else {
                continue;
            };
            if let Some(kind) = tell(Some(event), event) {
                told.push((event, kind));
            }
        }
        told.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        for (event, kind) in told {
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
/// `after` were committed but are no longer kept (the reader would miss them). A page is always
/// consecutive from its cursor: a hole among what is kept (a store purged by an older release
/// by age rather than by number) ends the page before it, and the read from there is refused.
pub(crate) fn page(after: u64, mut kept: Kept) -> Result<crate::domain::ChangesPage, Error> {
    if after > kept.last_seq {
        return Err(Error::CursorAhead {
            message: format!(
                "the cursor {after} is past the last change, {}: the store was restored or \
                 restarted and numbers began again; read again from after={} (or 0)",
                kept.last_seq, kept.last_seq
            ),
            last: kept.last_seq,
        });
    }
    if let Some(hole) = kept
        .changes
        .windows(2)
        .position(|pair| pair[1].seq != pair[0].seq + 1)
    {
        kept.changes.truncate(hole + 1);
    }
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
        // A hold made and confirmed (and cancelled) within one batch is new and confirmed.
        assert_eq!(
            order_steps(None, Confirmed, true),
            Ok(&[HoldCreated, OrderConfirmed][..])
        );
        assert_eq!(
            order_steps(None, Cancelled, true),
            Ok(&[HoldCreated, OrderConfirmed, OrderCancelled][..])
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
            // A purchase never began as a hold; the rest did.
            let hold = !matches!((before, after), (None, Confirmed | Cancelled));
            assert_eq!(
                order_steps(before, after, hold).ok(),
                steps,
                "{before:?} -> {after:?}"
            );
        }
    }

    /// The order's data is what `serde_json` makes of the API's order, byte for byte: holds and
    /// purchases, priced lines or not, customers whose ids need escaping.
    #[test]
    fn an_orders_data_is_the_api_order() {
        use crate::domain::{CategoryId, Currency, CustomerId, OrderLine, Price, ReservationId};
        use crate::wire::OrderResponse;
        let eur = Currency::parse("EUR").unwrap();
        let priced = |category: &str, qty, amount| OrderLine {
            category: CategoryId::parse(category).unwrap(),
            qty,
            unit_price: Some(Price {
                amount,
                currency: eur,
            }),
        };
        let purchase = Order {
            id: ReservationId::generate(),
            event: EventId::parse("gala_2027-x").unwrap(),
            qty: 3,
            lines: vec![OrderLine::general(3)].into(),
            customer: None,
            status: OrderStatus::Confirmed,
            remaining: 97,
            created_at_ms: 1_764_000_000_123,
            updated_at_ms: 1_764_000_000_123,
            expires_at_ms: None,
        };
        let hold = Order {
            lines: vec![priced("seated", 2, 6900), priced("standing", 1, 4500)].into(),
            customer: Some(CustomerId::parse(r#"c-"7"\x"#).unwrap()),
            status: OrderStatus::Held,
            expires_at_ms: Some(1_764_000_300_000),
            ..purchase.clone()
        };
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            updated_at_ms: 1_764_000_900_001,
            customer: Some(CustomerId::parse("c-81").unwrap()),
            ..hold.clone()
        };
        for order in [purchase, hold, cancelled] {
            #[derive(Serialize)]
            struct Data {
                order: OrderResponse,
            }
            let expected = serde_json::to_string(&Data {
                order: OrderResponse::from(&order),
            })
            .unwrap();
            assert_eq!(&*encode_order(&order), expected);
        }
        let mut escaped = String::new();
        json_str(&mut escaped, "a\"b\\c\u{1}\n\u{7f}é");
        assert_eq!(
            escaped,
            serde_json::to_string("a\"b\\c\u{1}\n\u{7f}é").unwrap()
        );
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
        // Past the last number given: refused, naming it.
        let ahead = page(9, kept(std::ops::Range::default(), 6)).unwrap_err();
        assert!(
            matches!(ahead, Error::CursorAhead { last: 6, .. }),
            "{ahead:?}"
        );
        assert_eq!(
            page(6, kept(std::ops::Range::default(), 6))
                .unwrap()
                .next_after,
            6
        );
        let expired = page(3, kept(5..7, 6)).unwrap_err();
        assert!(matches!(expired, Error::CursorExpired { oldest: 5, .. }));
        assert!(expired.to_string().contains("after=4"), "{expired}");
        let expired = page(3, kept(std::ops::Range::default(), 6)).unwrap_err();
        assert!(matches!(expired, Error::CursorExpired { oldest: 7, .. }));
        // A hole among what is kept ends the page; the read from there is refused.
        let holed = || Kept {
            changes: [5, 6, 8, 9].into_iter().map(change).collect(),
            last_seq: 9,
        };
        let first = page(4, holed()).unwrap();
        let seqs: Vec<u64> = first.changes.iter().map(|c| c.seq).collect();
        assert_eq!((seqs, first.next_after), (vec![5, 6], 6));
        let mut rest = holed();
        rest.changes.drain(..2);
        let expired = page(6, rest).unwrap_err();
        assert!(matches!(expired, Error::CursorExpired { oldest: 8, .. }));
    }
}
