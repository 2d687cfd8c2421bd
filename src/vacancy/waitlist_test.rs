//! The waiting list's rules, step by step: each step is decided as a batch would decide it, on
//! what the steps before committed.

use std::collections::HashMap;

use super::super::events::EventMap;
use super::super::rules::{Changes, Read, Rules};
use crate::domain::{
    Entry, EntryStatus, EntryView, Error, Event, EventId, Joining, Order, OrderLine, OrderStatus,
    Quantity, Reservation, ReservationId,
};

const NOW_MS: i64 = 1_000_000;
const OFFER_TTL_SECONDS: u32 = 900;
const OFFER_TTL_MS: i64 = OFFER_TTL_SECONDS as i64 * 1000;

fn gala() -> EventId {
    EventId::parse("gala").unwrap()
}

fn id(n: u128) -> ReservationId {
    ReservationId::from(uuid::Uuid::from_u128(n))
}

/// What the store holds between batches.
struct Store {
    events: EventMap,
    orders: HashMap<ReservationId, Order>,
    entries: HashMap<ReservationId, Entry>,
    now_ms: i64,
    /// The changes the last batch made, as the outbox tells them.
    told: Vec<crate::domain::Change>,
}

impl Store {
    /// `gala` of `capacity`, sold out as confirmed orders of these sizes (ids 1, 2, ...).
    fn sold_out(sizes: &[u32]) -> Self {
        let capacity: u32 = sizes.iter().sum();
        let mut event = Event::single(gala(), "Gala".into(), u64::from(capacity));
        let stock = event.stock_mut();
        stock.available = 0;
        stock.sold = u64::from(capacity);
        let orders = sizes
            .iter()
            .enumerate()
            .map(|(n, &qty)| {
                let order = Order {
                    id: id(n as u128 + 1),
                    event: gala(),
                    qty,
                    lines: vec![OrderLine::general(qty)].into(),
                    customer: None,
                    status: OrderStatus::Confirmed,
                    remaining: 0,
                    created_at_ms: NOW_MS - 1,
                    updated_at_ms: NOW_MS - 1,
                    expires_at_ms: None,
                };
                (order.id, order)
            })
            .collect();
        Self {
            events: EventMap::from_iter([event]),
            orders,
            entries: HashMap::new(),
            now_ms: NOW_MS,
            told: Vec::new(),
        }
    }

    /// Decides one batch on what is committed, and commits what it changed.
    fn decide<T>(&mut self, rule: impl FnOnce(&mut Rules) -> T) -> (T, Changes) {
        let mut read = Read::default();
        for n in 1..=20 {
            read.orders
                .insert(id(n), Ok(self.orders.get(&id(n)).cloned()));
            read.entries
                .insert(id(n), Ok(self.entries.get(&id(n)).cloned()));
        }
        let mut live: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.status.is_live())
            .cloned()
            .collect();
        live.sort_by_key(Entry::turn);
        read.waitlists.insert(gala(), Ok(live));
        let mut changes = Changes::default();
        let answer = rule(&mut Rules {
            committed: &self.events,
            read: &read,
            changes: &mut changes,
            now_ms: self.now_ms,
            key_ttl_ms: 10_000,
            offer_ttl_seconds: OFFER_TTL_SECONDS,
        });
        let orders: Vec<Order> = changes
            .order_ids
            .iter()
            .map(|id| changes.orders[id].clone())
            .collect();
        let events: Vec<Event> = changes.events.values().cloned().collect();
        self.told.clear();
        let derive = super::super::outbox::Derive {
            read: &read,
            committed: &self.events,
            changes: &changes,
            now_ms: self.now_ms,
        };
        derive
            .changes(&orders, &events, 1, &mut self.told)
            .expect("the batch's changes");
        for event in changes.events.values() {
            assert!(event.is_consistent(), "{event:?}");
            self.events.insert(event.clone());
        }
        for order in changes.orders.values() {
            self.orders.insert(order.id, order.clone());
        }
        for (event, entry) in &changes.entries {
            let list = &changes.waitlists[event];
            let entry = list.iter().find(|e| e.id == *entry).unwrap();
            self.entries.insert(entry.id, entry.clone());
        }
        (answer, changes)
    }

    fn join(&mut self, n: u128, qty: i64) -> Result<EntryView, Error> {
        let joining = Joining {
            id: id(n),
            event: gala(),
            category: None,
            qty: Quantity::parse(qty, 100).unwrap(),
            customer: None,
        };
        self.decide(|rules| rules.join(&joining)).0
    }

    fn told(&self) -> Vec<&'static str> {
        super::super::outbox::kinds(&self.told)
    }

    fn entry(&self, n: u128) -> (EntryStatus, Option<i64>) {
        let entry = &self.entries[&id(n)];
        (entry.status, entry.offer_expires_at_ms)
    }

    fn position(&mut self, n: u128) -> Option<u32> {
        self.decide(|rules| rules.find_entry(id(n)))
            .0
            .unwrap()
            .position
    }

    /// `(available, held, sold)` of `gala`.
    fn counts(&self) -> (u64, u64, u64) {
        let stock = self.events.get(&gala()).unwrap().stock();
        (stock.available, stock.held, stock.sold)
    }

    /// Whether the public can buy `qty` now (decided, and committed, like any purchase).
    fn public_buys(&mut self, n: u128, qty: i64) -> bool {
        let reservation = Reservation::new(id(n), gala(), Quantity::parse(qty, 100).unwrap());
        self.decide(|rules| rules.reserve(&reservation))
            .0
            .unwrap()
            .accepted()
    }
}

#[test]
fn a_list_is_joined_only_while_its_category_cannot_sell_what_is_asked() {
    let mut store = Store::sold_out(&[2, 2]);
    store
        .decide(|rules| rules.cancel(id(1), None).map(drop))
        .0
        .unwrap();
    assert_eq!(store.counts(), (2, 0, 2));
    let refused = store.join(10, 2).unwrap_err();
    assert_eq!(refused.code(), "tickets_available", "{refused}");
    assert!(store.entries.is_empty(), "a refusal changes nothing");
    // Three together cannot be had: the group may wait.
    let joined = store.join(10, 3).unwrap();
    assert_eq!(
        (joined.entry.status, joined.position),
        (EntryStatus::Waiting, Some(1))
    );
    // Now someone waits, so anyone may join behind them, and the public gets none of it.
    assert_eq!(store.join(11, 1).unwrap().position, Some(2));
    assert!(!store.public_buys(15, 1));
    assert_eq!(store.counts(), (2, 0, 2));
}

/// An entry for more than the category holds in all would keep its turn for ever, and the
/// public would be sold none of the category meanwhile: joining with it is refused.
#[test]
fn a_list_is_not_joined_for_more_than_the_category_could_ever_give() {
    let mut store = Store::sold_out(&[2]);
    let refused = store.join(10, 3).unwrap_err();
    assert_eq!(refused.code(), "invalid_quantity", "{refused}");
    assert!(store.entries.is_empty(), "a refusal changes nothing");
    // So the seats that come back are the public's again.
    store
        .decide(|rules| rules.cancel(id(1), None).map(drop))
        .0
        .unwrap();
    assert!(store.public_buys(15, 2));
    // All it holds may still be waited for.
    let mut store = Store::sold_out(&[2]);
    assert_eq!(
        store.join(10, 2).unwrap().entry.status,
        EntryStatus::Waiting
    );
}

#[test]
fn seats_that_come_back_are_offered_to_the_head_in_the_same_batch() {
    let mut store = Store::sold_out(&[2, 2]);
    store.join(10, 2).unwrap();
    store.join(11, 1).unwrap();
    let (cancelled, changes) = store.decide(|rules| rules.cancel(id(1), None));
    assert!(cancelled.unwrap().changed);
    // The two seats never reached the public: the same batch holds them for entry 10.
    assert_eq!(store.counts(), (0, 2, 2));
    assert_eq!(
        store.entry(10),
        (EntryStatus::Offered, Some(NOW_MS + OFFER_TTL_MS))
    );
    let hold = &store.orders[&id(10)];
    assert_eq!((hold.status, hold.qty), (OrderStatus::Held, 2));
    assert_eq!(changes.holds_added, [(NOW_MS + OFFER_TTL_MS, id(10))]);
    assert_eq!(store.position(11), Some(1));
    // Confirming the offer's hold accepts it.
    store.decide(|rules| rules.confirm(id(10), None)).0.unwrap();
    assert_eq!(store.entry(10).0, EntryStatus::Accepted);
    assert_eq!(store.counts(), (0, 0, 4));
}

#[test]
fn an_offer_that_runs_out_goes_to_the_next_entry() {
    let mut store = Store::sold_out(&[2, 2]);
    store.join(10, 2).unwrap();
    store.join(11, 2).unwrap();
    store.decide(|rules| rules.cancel(id(1), None)).0.unwrap();
    store.now_ms = NOW_MS + OFFER_TTL_MS;
    let (failed, _) = store.decide(|rules| rules.expire_due(&[(NOW_MS + OFFER_TTL_MS, id(10))]));
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(store.entry(10).0, EntryStatus::Expired);
    assert_eq!(store.orders[&id(10)].status, OrderStatus::Expired);
    assert_eq!(store.entry(11).0, EntryStatus::Offered);
    assert_eq!(store.counts(), (0, 2, 2));
    // Confirming the lapsed offer is too late.
    let late = store
        .decide(|rules| rules.confirm(id(10), None))
        .0
        .unwrap_err();
    assert_eq!(late.code(), "hold_expired");
}

/// The rule when the head wants more than came back: it keeps its turn, the seats wait for it
/// (the public gets none of them), and no later entry is served before it.
#[test]
fn the_head_keeps_its_turn_when_it_wants_more_than_came_back() {
    let mut store = Store::sold_out(&[1, 3]);
    store.join(10, 3).unwrap();
    store.join(11, 1).unwrap();
    store.decide(|rules| rules.cancel(id(1), None)).0.unwrap();
    assert_eq!(
        store.counts(),
        (1, 0, 3),
        "one seat back, held back for the list"
    );
    assert_eq!(
        (store.entry(10).0, store.entry(11).0),
        (EntryStatus::Waiting, EntryStatus::Waiting)
    );
    assert!(!store.public_buys(15, 1), "the public gets none of it");
    store.decide(|rules| rules.cancel(id(2), None)).0.unwrap();
    // Four seats now: the head takes three, and the next its one.
    assert_eq!(
        (store.entry(10).0, store.entry(11).0),
        (EntryStatus::Offered, EntryStatus::Offered)
    );
    assert_eq!(store.counts(), (0, 4, 0));
}

#[test]
fn leaving_declines_an_offer_and_serves_the_next_entry() {
    let mut store = Store::sold_out(&[2, 2]);
    store.join(10, 2).unwrap();
    store.join(11, 2).unwrap();
    store.decide(|rules| rules.cancel(id(1), None)).0.unwrap();
    let left = store.decide(|rules| rules.leave(id(10))).0.unwrap();
    assert_eq!(left.entry.status, EntryStatus::Left);
    assert_eq!(store.orders[&id(10)].status, OrderStatus::Released);
    assert_eq!(store.entry(11).0, EntryStatus::Offered);
    assert_eq!(store.counts(), (0, 2, 2));
    // Leaving again changes nothing; a waiting entry that leaves just leaves.
    let (again, changes) = store.decide(|rules| rules.leave(id(10)));
    assert_eq!(again.unwrap().entry.status, EntryStatus::Left);
    assert!(changes.is_empty());
    let unknown = store.decide(|rules| rules.leave(id(19))).0.unwrap_err();
    assert_eq!(unknown.code(), "unknown_waitlist_entry");
}

#[test]
fn growing_a_quota_serves_the_list_first() {
    let mut store = Store::sold_out(&[2]);
    store.join(10, 2).unwrap();
    store.decide(|rules| rules.replenish(&gala(), 3)).0.unwrap();
    assert_eq!(store.entry(10).0, EntryStatus::Offered);
    assert_eq!(store.counts(), (1, 2, 2));
    // Nobody waits any more: the rest is the public's.
    assert!(store.public_buys(15, 1));
}

#[test]
fn joining_again_with_the_same_id_answers_as_the_first_time() {
    let mut store = Store::sold_out(&[2]);
    let first = store.join(10, 2).unwrap();
    let (again, changes) = store.decide(|rules| {
        rules.join(&Joining {
            id: id(10),
            event: gala(),
            category: None,
            qty: Quantity::parse(2, 100).unwrap(),
            customer: None,
        })
    });
    assert_eq!(again.unwrap(), first);
    assert!(changes.is_empty());
    let other = store.join(10, 1).unwrap_err();
    assert_eq!(other.code(), "reservation_conflict");
    // An order's id cannot name an entry: the entry's offer would take it.
    let taken = store.join(1, 1).unwrap_err();
    assert_eq!(taken.code(), "reservation_conflict");
}

/// What integrators hear of a waiting list: joining a list that holds back the last seats sells
/// the event out, leaving gives them back; an offer made and taken up (or run out) in one batch is
/// still an offer.
#[test]
fn the_outbox_tells_what_the_waiting_list_does_to_the_public() {
    // Three seats, two sold: one left, and a buyer wants two.
    let mut store = Store::sold_out(&[2, 1]);
    store.decide(|rules| rules.cancel(id(2), None)).0.unwrap();
    assert_eq!(store.told(), ["order.cancelled", "event.back_on_sale"]);
    store.join(10, 2).unwrap();
    assert_eq!(store.told(), ["event.sold_out"]);
    store.decide(|rules| rules.leave(id(10))).0.unwrap();
    assert_eq!(store.told(), ["event.back_on_sale"]);

    // Offered and accepted in one batch.
    let mut store = Store::sold_out(&[2]);
    store.join(10, 2).unwrap();
    assert_eq!(store.told(), Vec::<&str>::new());
    store
        .decide(|rules| {
            rules.cancel(id(1), None).unwrap();
            rules.confirm(id(10), None)
        })
        .0
        .unwrap();
    assert_eq!(
        store.told(),
        ["order.cancelled", "waitlist.offered", "order.confirmed"]
    );

    // Offered and run out in one batch (the entry is served again on nothing: it expires).
    let mut store = Store::sold_out(&[2]);
    store.join(10, 2).unwrap();
    let (failed, _) = store.decide(|rules| {
        rules.cancel(id(1), None).unwrap();
        rules.expire_due(&[(NOW_MS + OFFER_TTL_MS, id(10))])
    });
    assert!(failed.is_empty());
    let told = store.told();
    assert_eq!(
        &told[..3],
        [
            "order.cancelled",
            "waitlist.offered",
            "waitlist.offer_expired"
        ],
        "{told:?}"
    );
}

/// An event made with no seat to sell is sold out from the start, so a `back_on_sale` always
/// follows a `sold_out`.
#[test]
fn an_event_made_sold_out_is_told_sold_out() {
    let mut store = Store::sold_out(&[]);
    store.events = EventMap::default();
    let empty = Event::single(gala(), "Gala".into(), 0);
    store.decide(|rules| rules.create_event(&empty)).0.unwrap();
    assert_eq!(store.told(), ["event.sold_out"]);
    store.decide(|rules| rules.replenish(&gala(), 2)).0.unwrap();
    assert_eq!(store.told(), ["event.back_on_sale"]);
    let open = Event::single(EventId::parse("open").unwrap(), "Open".into(), 2);
    store.decide(|rules| rules.create_event(&open)).0.unwrap();
    assert_eq!(store.told(), Vec::<&str>::new());
}
