//! The rulebook, as tables: given this state and this request, this answer and these changes.
//! No thread, channel or store: each case builds the state a batch would have read, and decides.

use super::*;
use crate::domain::{HoldTtl, OrderLine, OrderStatus::*, Quantity};

const NOW_MS: i64 = 1_000_000;
const KEY_TTL_MS: i64 = 10_000;
const CAPACITY: u64 = 10;
const QTY: u32 = 2;

fn gala() -> EventId {
    EventId::parse("gala").unwrap()
}

fn id(n: u128) -> ReservationId {
    ReservationId::from(uuid::Uuid::from_u128(n))
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse("checkout-7").unwrap()
}

/// Order 1: `QTY` tickets of `gala`, in `status`; `expires_at_ms` says whether it began as a hold.
fn order(status: OrderStatus, expires_at_ms: Option<i64>) -> Order {
    Order {
        id: id(1),
        event: gala(),
        qty: QTY,
        lines: vec![OrderLine::general(QTY)].into(),
        customer: None,
        status,
        remaining: 5,
        created_at_ms: NOW_MS - 5_000,
        updated_at_ms: NOW_MS - 5_000,
        expires_at_ms,
    }
}

/// What a batch read before deciding, and the answers it gives.
struct World {
    committed: EventMap,
    read: Read,
}

impl World {
    /// `gala` with `available` tickets of `CAPACITY` left, the rest sold; nothing else read.
    fn with_available(available: u64) -> Self {
        let stock = Stock {
            capacity: CAPACITY,
            available,
            held: 0,
            sold: CAPACITY - available,
        };
        let mut event = Event::single(gala(), "Gala".into(), CAPACITY);
        *event.stock_mut() = stock;
        let mut read = Read::default();
        for n in 1..=3 {
            read.orders.insert(id(n), Ok(None));
        }
        read.keys.insert(key(), Ok(None));
        // Nobody waits: every rule here is decided as before waiting lists.
        read.waitlists.insert(gala(), Ok(Vec::new()));
        Self {
            committed: EventMap::from_iter([event]),
            read,
        }
    }

    /// `gala` with `order` stored, its tickets counted where its status says.
    fn with_order(order: Order) -> Self {
        let mut world = Self::with_available(CAPACITY);
        let stock = world.committed.get_mut(&gala()).unwrap().stock_mut();
        stock.available -= u64::from(order.qty);
        *bucket(stock, order.status) += u64::from(order.qty);
        world.read.orders.insert(order.id, Ok(Some(order)));
        world
    }

    fn with_key(mut self, first: FirstUse, created_at_ms: i64) -> Self {
        let used = KeyUse {
            first,
            created_at_ms,
        };
        self.read.keys.insert(key(), Ok(Some(used)));
        self
    }

    fn decide<T>(&self, rule: impl FnOnce(&mut Rules) -> T) -> (T, Changes) {
        let mut changes = Changes::default();
        let answer = rule(&mut Rules {
            committed: &self.committed,
            read: &self.read,
            changes: &mut changes,
            now_ms: NOW_MS,
            key_ttl_ms: KEY_TTL_MS,
            offer_ttl_seconds: 900,
        });
        (answer, changes)
    }
}

/// `(available, held, sold)` of `gala` once `changes` are applied; `None` if they leave it alone.
fn counts(changes: &Changes) -> Option<(u64, u64, u64)> {
    let stock = changes.events.get(&gala())?.stock();
    assert!(stock.is_consistent(), "{stock:?}");
    Some((stock.available, stock.held, stock.sold))
}

fn reservation(n: u128, qty: i64, hold_ttl_seconds: Option<u32>) -> Reservation {
    Reservation {
        hold_ttl_seconds: hold_ttl_seconds.map(|ttl| HoldTtl::parse(ttl.into(), u32::MAX).unwrap()),
        ..Reservation::new(id(n), gala(), Quantity::parse(qty, 100).unwrap())
    }
}

fn keyed(reservation: Reservation) -> Reservation {
    Reservation {
        key: Some(key()),
        ..reservation
    }
}

/// The first use of a key whose reservation was refused, `remaining` being all it could have.
fn refused_first(remaining: u64) -> FirstUse {
    let FirstUse::Reserve { asked, .. } = first_reservation(None, remaining) else {
        unreachable!("a reservation's first use");
    };
    let short = crate::domain::Shortage {
        category: crate::domain::CategoryId::general(),
        quota: crate::domain::QuotaId::general(),
        available: remaining,
    };
    FirstUse::Reserve {
        asked,
        order: None,
        remaining,
        short: Some(short),
    }
}

fn first_reservation(order: Option<ReservationId>, remaining: u64) -> FirstUse {
    FirstUse::Reserve {
        asked: Asked {
            event: gala(),
            lines: vec![(crate::domain::CategoryId::general(), QTY)],
            customer: None,
            hold_ttl_seconds: None,
        },
        order,
        remaining,
        short: None,
    }
}

fn code<T: std::fmt::Debug>(answer: &Result<T, Error>) -> &'static str {
    match answer {
        Ok(_) => "ok",
        Err(error) => error.code(),
    }
}

#[test]
fn reserve() {
    let lapsed_ms = NOW_MS - KEY_TTL_MS;
    let live_ms = lapsed_ms + 1;
    // (case, state, request, answer: code and (order made, remaining), new counts, key kept)
    type Case = (
        &'static str,
        World,
        Reservation,
        &'static str,
        Option<(Option<ReservationId>, u64)>,
        Option<(u64, u64, u64)>,
        Option<FirstUse>,
    );
    let cases: Vec<Case> = vec![
        (
            "a purchase with stock to spare is sold",
            World::with_available(5),
            reservation(2, 2, None),
            "ok",
            Some((Some(id(2)), 3)),
            Some((3, 0, 7)),
            None,
        ),
        (
            "a hold with stock to spare is held",
            World::with_available(5),
            reservation(2, 2, Some(60)),
            "ok",
            Some((Some(id(2)), 3)),
            Some((3, 2, 5)),
            None,
        ),
        (
            "the last tickets are sold",
            World::with_available(2),
            reservation(2, 2, None),
            "ok",
            Some((Some(id(2)), 0)),
            Some((0, 0, 10)),
            None,
        ),
        (
            "short of stock is refused, and changes nothing",
            World::with_available(1),
            reservation(2, 2, None),
            "ok",
            Some((None, 1)),
            None,
            None,
        ),
        (
            "a keyed refusal is remembered, so its repeat never buys what came back",
            World::with_available(1),
            keyed(reservation(2, 2, None)),
            "ok",
            Some((None, 1)),
            None,
            Some(refused_first(1)),
        ),
        (
            "a keyed sale is remembered",
            World::with_available(5),
            keyed(reservation(2, 2, None)),
            "ok",
            Some((Some(id(2)), 3)),
            Some((3, 0, 7)),
            Some(first_reservation(Some(id(2)), 3)),
        ),
        (
            "a retry of a sale (same id) answers as the first time, changes nothing",
            World::with_order(order(Confirmed, None)),
            reservation(1, 2, None),
            "ok",
            Some((Some(id(1)), 5)),
            None,
            None,
        ),
        (
            "a retry of a hold answers as the first time, even once confirmed",
            World::with_order(order(Confirmed, Some(NOW_MS + 1))),
            reservation(1, 2, Some(60)),
            "ok",
            Some((Some(id(1)), 5)),
            None,
            None,
        ),
        (
            "the same id for another quantity is a conflict",
            World::with_order(order(Confirmed, None)),
            reservation(1, 3, None),
            "reservation_conflict",
            None,
            None,
            None,
        ),
        (
            "the same id for a hold instead of a purchase is a conflict",
            World::with_order(order(Confirmed, None)),
            reservation(1, 2, Some(60)),
            "reservation_conflict",
            None,
            None,
            None,
        ),
        (
            "a keyed repeat gets the first sale, whatever its new id",
            World::with_order(order(Confirmed, None))
                .with_key(first_reservation(Some(id(1)), 5), live_ms),
            keyed(reservation(3, 2, None)),
            "ok",
            Some((Some(id(1)), 5)),
            None,
            None,
        ),
        (
            "a keyed repeat of a refusal is refused again, though stock came back",
            World::with_available(5).with_key(first_reservation(None, 1), live_ms),
            keyed(reservation(3, 2, None)),
            "ok",
            Some((None, 1)),
            None,
            None,
        ),
        (
            "a key first used for another quantity cannot be reused",
            World::with_available(5).with_key(first_reservation(None, 1), live_ms),
            keyed(reservation(3, 1, None)),
            "idempotency_key_reused",
            None,
            None,
            None,
        ),
        (
            "a key first used for a cancellation cannot be reused for a purchase",
            World::with_available(5).with_key(
                FirstUse::Cancel {
                    order: id(1),
                    changed: true,
                },
                live_ms,
            ),
            keyed(reservation(3, 2, None)),
            "idempotency_key_reused",
            None,
            None,
            None,
        ),
        (
            "a lapsed key is free: the request is decided anew and remembered again",
            World::with_available(5).with_key(first_reservation(None, 1), lapsed_ms),
            keyed(reservation(2, 2, None)),
            "ok",
            Some((Some(id(2)), 3)),
            Some((3, 0, 7)),
            Some(first_reservation(Some(id(2)), 3)),
        ),
        (
            "an unknown event is refused",
            World::with_available(5),
            Reservation {
                event: EventId::parse("nope").unwrap(),
                ..reservation(2, 2, None)
            },
            "unknown_event",
            None,
            None,
            None,
        ),
    ];
    for (case, world, request, want_code, want_answer, want_counts, want_key) in cases {
        let (answer, changes) = world.decide(|rules| rules.reserve(&request));
        assert_eq!(code(&answer), want_code, "{case}: {answer:?}");
        if let (Ok(reserved), Some((order, remaining))) = (&answer, want_answer) {
            let made = reserved.order.as_ref().map(|order| order.id);
            assert_eq!((made, reserved.remaining), (order, remaining), "{case}");
        }
        assert_eq!(counts(&changes), want_counts, "{case}: counts");
        let kept = changes.keys.get(&key()).map(|used| used.first.clone());
        assert_eq!(kept, want_key, "{case}: key");
        if let Some(used) = changes.keys.get(&key()) {
            assert_eq!(used.created_at_ms, NOW_MS, "{case}");
        }
        let made_new = want_counts.is_some();
        assert_eq!(
            changes.orders.len(),
            usize::from(made_new),
            "{case}: orders"
        );
        assert_eq!(changes.accepted, u64::from(made_new), "{case}: accepted");
    }
}

#[test]
fn a_hold_carries_its_deadline_and_is_scheduled() {
    let world = World::with_available(5);
    let (answer, changes) = world.decide(|rules| rules.reserve(&reservation(2, 2, Some(60))));
    let hold = answer.unwrap().order.unwrap();
    assert_eq!(
        (hold.status, hold.expires_at_ms),
        (Held, Some(NOW_MS + 60_000))
    );
    assert_eq!(changes.holds_added, [(NOW_MS + 60_000, id(2))]);
}

/// Every standing an order can be in, for the tables of confirm, release and cancel.
fn standings() -> Vec<(&'static str, Order)> {
    vec![
        ("a live hold", order(Held, Some(NOW_MS + 1))),
        ("a hold past its deadline", order(Held, Some(NOW_MS))),
        ("a confirmed hold", order(Confirmed, Some(NOW_MS - 1))),
        ("a direct purchase", order(Confirmed, None)),
        ("a cancelled purchase", order(Cancelled, None)),
        ("a released hold", order(Released, Some(NOW_MS + 1))),
        ("an expired hold", order(Expired, Some(NOW_MS - 1))),
    ]
}

/// An answer's code, the order's status it answers, and the event's counts after it.
type Outcome = (&'static str, Option<OrderStatus>, Option<(u64, u64, u64)>);

/// Runs `rule` on order 1 in every standing and checks: the answer's code and the order's
/// status after it, and the event's counts after it (`None`: unchanged).
fn table<T: std::fmt::Debug>(
    rule: impl Fn(&mut Rules) -> Result<T, Error>,
    status_of: impl Fn(&T) -> OrderStatus,
    want: [Outcome; 7],
) {
    for ((case, order), (want_code, want_status, want_counts)) in standings().into_iter().zip(want)
    {
        let world = World::with_order(order);
        let (answer, changes) = world.decide(&rule);
        assert_eq!(code(&answer), want_code, "{case}: {answer:?}");
        let status = answer.as_ref().ok().map(&status_of);
        assert_eq!(status, want_status, "{case}");
        assert_eq!(counts(&changes), want_counts, "{case}: counts");
        // A change of status is stored; and a hold that stops being held leaves the schedule.
        let stored = changes.orders.get(&id(1)).map(|order| order.status);
        let was_held = world.read.orders[&id(1)]
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .status;
        if let Some(status) = stored {
            assert_ne!(status, was_held, "{case}");
        }
        let unscheduled = !changes.holds_removed.is_empty();
        assert_eq!(
            unscheduled,
            was_held == Held && stored.is_some(),
            "{case}: schedule"
        );
    }
    let unknown = World::with_available(CAPACITY);
    let (answer, changes) = unknown.decide(&rule);
    assert_eq!(code(&answer), "unknown_order");
    assert!(changes.is_empty());
}

#[test]
fn confirm_in_every_standing() {
    table(
        |rules| rules.confirm(id(1), None),
        |order| order.status,
        [
            ("ok", Some(Confirmed), Some((8, 0, 2))),
            // The hold lapses on the spot: the refusal is committed with its tickets' return.
            ("hold_expired", None, Some((10, 0, 0))),
            ("ok", Some(Confirmed), None),
            ("wrong_state", None, None),
            ("wrong_state", None, None),
            ("wrong_state", None, None),
            ("hold_expired", None, None),
        ],
    );
}

#[test]
fn release_in_every_standing() {
    table(
        |rules| rules.release(id(1), None),
        |order| order.status,
        [
            ("ok", Some(Released), Some((10, 0, 0))),
            // Releasing is giving up: a deadline past or not, the tickets return.
            ("ok", Some(Released), Some((10, 0, 0))),
            ("wrong_state", None, None),
            ("wrong_state", None, None),
            ("wrong_state", None, None),
            ("ok", Some(Released), None),
            ("ok", Some(Expired), None),
        ],
    );
}

#[test]
fn cancel_in_every_standing() {
    table(
        |rules| rules.cancel(id(1), None),
        |cancelled| {
            // Only the cancellation that returned the tickets says it changed the order.
            assert_eq!(cancelled.changed, cancelled.order.updated_at_ms == NOW_MS);
            cancelled.order.status
        },
        [
            ("wrong_state", None, None),
            ("wrong_state", None, None),
            ("ok", Some(Cancelled), Some((10, 0, 0))),
            ("ok", Some(Cancelled), Some((10, 0, 0))),
            ("ok", Some(Cancelled), None),
            ("wrong_state", None, None),
            ("wrong_state", None, None),
        ],
    );
}

#[test]
fn keyed_changes_to_an_order_answer_repeats_as_it_stands() {
    let live_ms = NOW_MS - 1;
    // First use: remembered with what it answered.
    let world = World::with_order(order(Confirmed, None));
    let (answer, changes) = world.decide(|rules| rules.cancel(id(1), Some(&key())));
    assert!(answer.unwrap().changed);
    let first = FirstUse::Cancel {
        order: id(1),
        changed: true,
    };
    assert_eq!(changes.keys[&key()].first, first);

    // Its repeat, once committed: the first answer's `changed`, and nothing changes again.
    let world = World::with_order(order(Cancelled, None)).with_key(first.clone(), live_ms);
    let (answer, changes) = world.decide(|rules| rules.cancel(id(1), Some(&key())));
    let repeat = answer.unwrap();
    assert_eq!((repeat.order.status, repeat.changed), (Cancelled, true));
    assert!(changes.is_empty());

    // A confirm and a release answer the order as it stands now, and change nothing.
    for first in [FirstUse::Confirm(id(1)), FirstUse::Release(id(1))] {
        let rule = |rules: &mut Rules, id| match first {
            FirstUse::Confirm(_) => rules.confirm(id, Some(&key())),
            _ => rules.release(id, Some(&key())),
        };
        let world = World::with_order(order(Cancelled, None)).with_key(first.clone(), live_ms);
        let (answer, changes) = world.decide(|rules| rule(rules, id(1)));
        assert_eq!(answer.unwrap().status, Cancelled, "{first:?}");
        assert!(changes.is_empty(), "{first:?}");
        // The same key for another order's change is refused.
        let (answer, _) = world.decide(|rules| rule(rules, id(2)));
        assert_eq!(code(&answer), "idempotency_key_reused", "{first:?}");
    }

    // A refused change is not remembered: the key stays free.
    let world = World::with_order(order(Confirmed, None));
    let (answer, changes) = world.decide(|rules| rules.release(id(1), Some(&key())));
    assert_eq!(code(&answer), "wrong_state");
    assert!(changes.keys.is_empty());
}

#[test]
fn expiry_returns_held_tickets_once_and_forgets_settled_holds() {
    // (case, order behind the due hold, expired, new counts)
    let cases = [
        (
            "a hold still held expires",
            order(Held, Some(NOW_MS)),
            Some((10, 0, 0)),
        ),
        (
            "a hold confirmed meanwhile is left alone",
            order(Confirmed, Some(NOW_MS)),
            None,
        ),
        (
            "a hold released meanwhile is left alone",
            order(Released, Some(NOW_MS)),
            None,
        ),
        (
            "a hold expired by another replica is left alone",
            order(Expired, Some(NOW_MS)),
            None,
        ),
    ];
    for (case, order, want_counts) in cases {
        let world = World::with_order(order);
        let due = [(NOW_MS, id(1))];
        let (failed, changes) = world.decide(|rules| rules.expire_due(&due));
        assert!(failed.is_empty(), "{case}");
        assert_eq!(counts(&changes), want_counts, "{case}");
        let expired = changes.orders.get(&id(1)).map(|order| order.status);
        assert_eq!(expired, want_counts.map(|_| Expired), "{case}");
        // Either way the hold leaves the schedule.
        assert_eq!(changes.holds_removed, due, "{case}");
    }

    // A due hold that cannot be looked up stays due, and says why.
    let mut world = World::with_order(order(Held, Some(NOW_MS)));
    let gone = Error::Storage("the disk is gone".into());
    world.read.orders.insert(id(1), Err(gone.clone()));
    let (failed, changes) = world.decide(|rules| rules.expire_due(&[(NOW_MS, id(1))]));
    assert_eq!(failed, [(id(1), gone)]);
    assert!(changes.is_empty() && changes.holds_removed.is_empty());
}

#[test]
fn decisions_in_one_batch_see_each_other() {
    let world = World::with_available(5);
    let ((held, confirmed, again), changes) = world.decide(|rules| {
        let held = rules.reserve(&reservation(2, 2, Some(60)));
        let confirmed = rules.confirm(id(2), None);
        let again = rules.reserve(&reservation(2, 2, Some(60)));
        (held, confirmed, again)
    });
    assert_eq!(held.unwrap().remaining, 3);
    assert_eq!(confirmed.unwrap().status, Confirmed);
    // The retry sees the order as the batch left it.
    assert_eq!(again.unwrap().order.unwrap().status, Confirmed);
    assert_eq!(counts(&changes), Some((3, 0, 7)));
    assert_eq!(changes.order_ids, [id(2)]);
}

#[test]
fn create_and_replenish() {
    let other = EventId::parse("matinee").unwrap();
    let name: Arc<str> = "Matinee".into();
    let world = World::with_available(5);

    let create = |id: &EventId, capacity| Event::single(id.clone(), Arc::clone(&name), capacity);
    let (created, changes) = world.decide(|rules| rules.create_event(&create(&other, 7)));
    assert_eq!(created.unwrap().stock(), Stock::new(7));
    assert_eq!(changes.events[&other].stock(), Stock::new(7));

    // (case, event, qty or capacity, answer, stock after)
    let cases = [
        (
            "an existing id is refused",
            "create",
            gala(),
            1,
            "event_exists",
            None,
        ),
        (
            "an id created earlier in the batch is refused",
            "create twice",
            other.clone(),
            1,
            "event_exists",
            None,
        ),
        (
            "stock is added to capacity and availability",
            "replenish",
            gala(),
            3,
            "ok",
            Some((8, 0, 5)),
        ),
        (
            "up to the largest capacity",
            "replenish",
            gala(),
            CAPACITY_MAX - CAPACITY,
            "ok",
            Some((CAPACITY_MAX - 5, 0, 5)),
        ),
        (
            "and never beyond it",
            "replenish",
            gala(),
            CAPACITY_MAX - CAPACITY + 1,
            "capacity_exceeded",
            None,
        ),
        (
            "an unknown event is refused",
            "replenish",
            other.clone(),
            1,
            "unknown_event",
            None,
        ),
    ];
    for (case, act, event, n, want_code, want_counts) in cases {
        let (answer, changes) = world.decide(|rules| match act {
            "create" => rules.create_event(&create(&event, n)),
            "create twice" => {
                rules.create_event(&create(&event, n)).unwrap();
                rules.create_event(&create(&event, n))
            }
            _ => rules.replenish(&event, n),
        });
        assert_eq!(code(&answer), want_code, "{case}: {answer:?}");
        assert_eq!(counts(&changes), want_counts, "{case}");
    }
}

/// Found reading the lines' rules: on an event of one category, a line naming it and a line
/// naming none were two lines of one category, which every other request shape refuses.
#[test]
fn a_category_is_in_one_line_whether_named_or_not() {
    let general = crate::domain::LineRequest {
        category: Some(crate::domain::CategoryId::general()),
        qty: Quantity::parse(1, 10).unwrap(),
    };
    let unnamed = crate::domain::LineRequest {
        category: None,
        ..general.clone()
    };
    let twice = Reservation {
        lines: crate::domain::Lines::parse(vec![unnamed, general], 10).unwrap(),
        ..reservation(2, 1, None)
    };
    let (answer, changes) = World::with_available(5).decide(|rules| rules.reserve(&twice));
    assert_eq!(code(&answer), "invalid_quantity", "{answer:?}");
    assert!(changes.is_empty());
}

#[test]
fn a_request_whose_state_was_not_read_fails_alone() {
    let world = World::with_available(5);
    let (answer, changes) = world.decide(|rules| rules.confirm(id(9), None));
    assert_eq!(code(&answer), "internal");
    assert!(changes.is_empty());
}

// Categories and quotas: a festival of 10 places, 3 of them VIP (which also count against the
// venue), and a late category whose sales have not started; at most 4 tickets per customer.

mod festival {
    use super::*;
    use crate::domain::{
        CategoryDraft, CategoryId, CustomerId, EventDraft, LineRequest, Lines, Price, QuotaId,
        SalesWindow, Shortage,
    };

    fn fest() -> EventId {
        EventId::parse("fest").unwrap()
    }

    fn category(id: &str) -> CategoryId {
        CategoryId::parse(id).unwrap()
    }

    fn customer(id: &str) -> CustomerId {
        CustomerId::parse(id).unwrap()
    }

    fn vip_price() -> Price {
        Price::parse(9900, "EUR").unwrap()
    }

    /// The festival as committed, with nothing sold; `c-1` has `taken` tickets already.
    fn world(taken: u64) -> World {
        let draft = |id: &str, quotas: &[&str], price, window| CategoryDraft {
            id: category(id),
            name: id.into(),
            quotas: quotas.iter().map(|q| QuotaId::parse(q).unwrap()).collect(),
            price,
            window,
        };
        let event = EventDraft {
            id: fest(),
            name: "Fest".into(),
            quotas: vec![
                (QuotaId::parse("venue").unwrap(), 10),
                (QuotaId::parse("vip").unwrap(), 3),
            ],
            categories: vec![
                draft("standing", &["venue"], None, SalesWindow::default()),
                draft(
                    "vip",
                    &["venue", "vip"],
                    Some(vip_price()),
                    SalesWindow::default(),
                ),
                draft(
                    "late",
                    &["venue"],
                    None,
                    SalesWindow::new(Some(NOW_MS + 1), None).unwrap(),
                ),
            ],
            max_per_customer: Some(4),
            customer_required: false,
        }
        .check(CAPACITY_MAX)
        .unwrap();
        let mut read = Read::default();
        for n in 1..=9 {
            read.orders.insert(id(n), Ok(None));
        }
        read.customers.insert((fest(), customer("c-1")), Ok(taken));
        read.waitlists.insert(fest(), Ok(Vec::new()));
        World {
            committed: EventMap::from_iter([event]),
            read,
        }
    }

    fn order_of(n: u128, lines: &[(&str, i64)], who: Option<&str>) -> Reservation {
        let lines = lines
            .iter()
            .map(|(c, qty)| LineRequest {
                category: Some(category(c)),
                qty: Quantity::parse(*qty, 100).unwrap(),
            })
            .collect();
        Reservation {
            lines: Lines::parse(lines, 100).unwrap(),
            customer: who.map(customer),
            ..Reservation::new(id(n), fest(), Quantity::parse(1, 1).unwrap())
        }
    }

    /// `(available, held, sold)` of each quota of the festival after `changes`, if changed.
    fn quotas(changes: &Changes) -> Option<Vec<(u64, u64, u64)>> {
        let event = changes.events.get(&fest())?;
        assert!(event.is_consistent(), "{event:?}");
        Some(
            event
                .quotas
                .iter()
                .map(|q| (q.stock.available, q.stock.held, q.stock.sold))
                .collect(),
        )
    }

    #[test]
    fn an_order_of_several_lines_takes_a_place_from_every_quota_of_every_line() {
        let world = world(0);
        let (answer, changes) =
            world.decide(|rules| rules.reserve(&order_of(1, &[("standing", 2), ("vip", 1)], None)));
        let order = answer.unwrap().order.unwrap();
        assert_eq!(order.qty, 3);
        assert_eq!(
            order
                .lines
                .iter()
                .map(|l| (l.category.as_str(), l.qty, l.unit_price))
                .collect::<Vec<_>>(),
            [("standing", 2, None), ("vip", 1, Some(vip_price()))]
        );
        assert_eq!(quotas(&changes), Some(vec![(7, 0, 3), (2, 0, 1)]));
    }

    #[test]
    fn an_order_is_taken_whole_or_not_at_all_and_names_the_line_short() {
        // (case, lines, the shortage named)
        let cases = [
            (
                "the vip line is short in its own quota",
                vec![("standing", 1), ("vip", 4)],
                ("vip", "vip", 3),
            ),
            (
                "together the lines need more of the venue than it has",
                vec![("standing", 8), ("vip", 3)],
                ("standing", "venue", 10),
            ),
        ];
        for (case, lines, (short_category, short_quota, available)) in cases {
            let (answer, changes) =
                world(0).decide(|rules| rules.reserve(&order_of(1, &lines, None)));
            let refused = answer.unwrap();
            assert!(refused.order.is_none(), "{case}");
            assert_eq!(
                refused.short,
                Some(Shortage {
                    category: category(short_category),
                    quota: QuotaId::parse(short_quota).unwrap(),
                    available,
                }),
                "{case}"
            );
            assert_eq!(quotas(&changes), None, "{case}: nothing is taken");
            assert_eq!(changes.refused, 1, "{case}");
        }
    }

    #[test]
    fn lines_must_name_categories_the_event_sells_when_they_may_be_had() {
        let world = world(0);
        let unnamed = Reservation::new(id(1), fest(), Quantity::parse(1, 10).unwrap());
        let (answers, changes) = world.decide(|rules| {
            [
                rules
                    .reserve(&order_of(1, &[("balcony", 1)], None))
                    .map(drop),
                rules.reserve(&unnamed).map(drop),
                rules.reserve(&order_of(2, &[("late", 1)], None)).map(drop),
            ]
        });
        assert_eq!(
            answers.each_ref().map(code),
            ["unknown_category", "unknown_category", "not_on_sale"]
        );
        let Err(Error::NotOnSale {
            category: late,
            window,
            ..
        }) = &answers[2]
        else {
            panic!("{:?}", answers[2]);
        };
        assert_eq!((late.as_str(), window.start_ms), ("late", Some(NOW_MS + 1)));
        assert!(changes.is_empty());
    }

    #[test]
    fn a_customer_never_holds_more_than_the_limit_in_a_batch_or_across_batches() {
        // c-1 already has 3 of the 4 tickets it may have.
        let (answers, changes) = world(3).decide(|rules| {
            [
                rules
                    .reserve(&order_of(1, &[("standing", 2)], Some("c-1")))
                    .map(drop),
                rules
                    .reserve(&order_of(2, &[("standing", 1)], Some("c-1")))
                    .map(drop),
                rules
                    .reserve(&order_of(3, &[("vip", 1)], Some("c-1")))
                    .map(drop),
            ]
        });
        assert_eq!(
            answers.each_ref().map(code),
            ["customer_limit_reached", "ok", "customer_limit_reached"]
        );
        let Err(Error::CustomerLimitReached { may_still, .. }) = answers[0] else {
            panic!("{:?}", answers[0]);
        };
        assert_eq!(may_still, 1);
        assert_eq!(changes.customers[&(fest(), customer("c-1"))], 1);
        assert_eq!(quotas(&changes), Some(vec![(9, 0, 1), (3, 0, 0)]));
    }

    #[test]
    fn an_event_may_require_a_customer() {
        let mut world = world(0);
        let event = world.committed.get_mut(&fest()).unwrap();
        let mut catalogue = crate::domain::Catalogue::clone(&event.catalogue);
        catalogue.customer_required = true;
        event.catalogue = Arc::new(catalogue);
        let (answer, changes) =
            world.decide(|rules| rules.reserve(&order_of(1, &[("standing", 1)], None)));
        assert_eq!(code(&answer), "customer_required");
        assert!(changes.is_empty());
    }

    #[test]
    fn a_cancel_returns_every_line_to_every_quota_once() {
        let world = world(0);
        let (answers, changes) = world.decide(|rules| {
            let bought = rules.reserve(&order_of(1, &[("standing", 2), ("vip", 1)], Some("c-1")));
            let cancelled = rules.cancel(id(1), None);
            let again = rules.cancel(id(1), None);
            (
                bought.map(drop),
                cancelled.map(|c| c.changed),
                again.map(|c| c.changed),
            )
        });
        assert_eq!(answers, (Ok(()), Ok(true), Ok(false)));
        assert_eq!(quotas(&changes), Some(vec![(10, 0, 0), (3, 0, 0)]));
        assert_eq!(changes.customers[&(fest(), customer("c-1"))], 0);
    }

    #[test]
    fn a_retry_must_ask_for_the_same_lines() {
        let (answers, _) = world(0).decide(|rules| {
            let first = rules.reserve(&order_of(1, &[("standing", 2), ("vip", 1)], None));
            let same = rules.reserve(&order_of(1, &[("standing", 2), ("vip", 1)], None));
            let other = rules.reserve(&order_of(1, &[("standing", 2), ("vip", 2)], None));
            let someone_else =
                rules.reserve(&order_of(1, &[("standing", 2), ("vip", 1)], Some("c-1")));
            [first, same, other, someone_else].map(|answer| code(&answer))
        });
        assert_eq!(
            answers,
            ["ok", "ok", "reservation_conflict", "reservation_conflict"]
        );
    }

    #[test]
    fn quotas_shrink_only_to_what_is_held_and_sold() {
        let venue = QuotaId::parse("venue").unwrap();
        let (answers, changes) = world(0).decide(|rules| {
            rules
                .reserve(&order_of(1, &[("standing", 4)], None))
                .unwrap();
            [
                rules.resize_quota(&fest(), &venue, Resize::To(3)).map(drop),
                rules.resize_quota(&fest(), &venue, Resize::To(4)).map(drop),
                rules
                    .resize_quota(&fest(), &venue, Resize::Add(6))
                    .map(drop),
                rules
                    .resize_quota(&fest(), &QuotaId::parse("pit").unwrap(), Resize::Add(1))
                    .map(drop),
                rules
                    .resize_quota(&fest(), &venue, Resize::To(CAPACITY_MAX + 1))
                    .map(drop),
            ]
        });
        assert_eq!(
            answers.each_ref().map(code),
            [
                "quota_in_use",
                "ok",
                "ok",
                "unknown_quota",
                "capacity_exceeded"
            ]
        );
        assert_eq!(quotas(&changes), Some(vec![(6, 0, 4), (3, 0, 0)]));
    }

    #[test]
    fn categories_open_close_and_move_their_windows() {
        let late = category("late");
        let (answers, changes) = world(0).decide(|rules| {
            let closed = CategoryChange {
                open: Some(false),
                ..CategoryChange::default()
            };
            let now_on = CategoryChange {
                sales_start: Some(None),
                ..CategoryChange::default()
            };
            let backwards = CategoryChange {
                sales_start: Some(Some(NOW_MS)),
                sales_end: Some(Some(NOW_MS)),
                ..CategoryChange::default()
            };
            [
                rules.change_category(&fest(), &late, now_on).map(drop),
                rules.reserve(&order_of(1, &[("late", 1)], None)).map(drop),
                rules
                    .change_category(&fest(), &category("standing"), closed)
                    .map(drop),
                rules
                    .reserve(&order_of(2, &[("standing", 1)], None))
                    .map(drop),
                rules.change_category(&fest(), &late, backwards).map(drop),
                rules
                    .change_category(&fest(), &category("pit"), closed)
                    .map(drop),
            ]
        });
        assert_eq!(
            answers.each_ref().map(code),
            [
                "ok",
                "ok",
                "ok",
                "not_on_sale",
                "invalid_event",
                "unknown_category"
            ]
        );
        assert_eq!(quotas(&changes), Some(vec![(9, 0, 1), (3, 0, 0)]));
    }
}
