//! How a retry avoids selling twice.
//!
//! Two rules, both decided by the one writer, against what is committed plus what its batch has
//! already decided (so two tries in one batch are told apart as surely as two in two batches):
//!
//! - **Reservation ids.** Every reservation carries an id its caller chose before asking. Asking
//!   again with an id already used answers as the first time and changes nothing
//!   ([`retry_of`]); the same id for a different reservation is a conflict. This is what makes a
//!   retry across the network safe.
//! - **Idempotency keys.** A request made with a key is remembered as a [`KeyUse`]: which request
//!   it was and what it answered. A repeat of the same request within the key's time to live gets
//!   the first answer, whatever happened since (even a sold-out answer, so a repeat never buys
//!   what came back meanwhile); the same key for another request is refused ([`first_use`]). A
//!   key whose time is up is free for any request.
//!
//! Stores outlive releases. A [`KeyUse`] is stored as the flat [`KeyRecord`] row every store
//! already holds, with the request as a text fingerprint (`reserve:gala:2:300`,
//! `reserve:gala:2:-`, `confirm:<id>`, `release:<id>`, `cancel:<id>`); [`KeyUse::encode`] and
//! [`KeyUse::decode`] are the only places that know that form, and must keep reading every
//! record ever written.

use crate::domain::{
    Catalogue, CategoryId, CustomerId, Error, EventId, GENERAL, HoldTtl, IdempotencyKey, KeyRecord,
    Order, QuotaId, Reservation, ReservationId, Reserved, Shortage,
};

/// A reservation as far as telling two of them apart goes: a repeat must ask for the same
/// tickets, for the same customer, the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Asked {
    pub event: EventId,
    /// Each line's category (resolved: a line that named none has the event's only one) and qty.
    pub lines: Vec<(CategoryId, u32)>,
    pub customer: Option<CustomerId>,
    /// `None` for a purchase.
    pub hold_ttl_seconds: Option<u32>,
}

impl Asked {
    /// `reservation` with its lines resolved against the event's `catalogue`, as indexes.
    pub fn of(reservation: &Reservation, catalogue: &Catalogue, lines: &[(usize, u32)]) -> Self {
        Self {
            event: reservation.event.clone(),
            lines: lines
                .iter()
                .map(|&(category, qty)| (catalogue.categories[category].id.clone(), qty))
                .collect(),
            customer: reservation.customer.clone(),
            hold_ttl_seconds: reservation.hold_ttl_seconds.map(HoldTtl::seconds),
        }
    }

    /// What `order` was asked as.
    fn of_order(order: &Order) -> Self {
        Self {
            event: order.event.clone(),
            lines: order
                .lines
                .iter()
                .map(|line| (line.category.clone(), line.qty))
                .collect(),
            customer: order.customer.clone(),
            hold_ttl_seconds: None,
        }
    }

    /// The lines as a fingerprint writes them: just the qty for one `general` line (the form
    /// stored before categories), `category*qty` joined by `+` otherwise.
    fn lines_text(&self) -> String {
        match self.lines.as_slice() {
            [(category, qty)] if category.as_str() == GENERAL => qty.to_string(),
            lines => lines
                .iter()
                .map(|(category, qty)| format!("{category}*{qty}"))
                .collect::<Vec<_>>()
                .join("+"),
        }
    }

    fn parse_lines(text: &str) -> Option<Vec<(CategoryId, u32)>> {
        if let Ok(qty) = text.parse() {
            return Some(vec![(CategoryId::general(), qty)]);
        }
        text.split('+')
            .map(|line| {
                let (category, qty) = line.split_once('*')?;
                Some((CategoryId::parse(category).ok()?, qty.parse().ok()?))
            })
            .collect()
    }
}

/// A request made with an idempotency key: what a key is compared on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Keyed {
    Reserve(Asked),
    Confirm(ReservationId),
    Release(ReservationId),
    Cancel(ReservationId),
}

impl Keyed {
    /// The request as stored with its key. The one place a fingerprint is written.
    pub fn fingerprint(&self) -> String {
        match self {
            Keyed::Reserve(asked) => {
                let ttl = match asked.hold_ttl_seconds {
                    Some(ttl) => ttl.to_string(),
                    None => "-".into(),
                };
                let lines = asked.lines_text();
                match &asked.customer {
                    None => format!("reserve:{}:{lines}:{ttl}", asked.event),
                    Some(customer) => format!("reserve:{}:{lines}:{ttl}:{customer}", asked.event),
                }
            }
            Keyed::Confirm(id) => format!("confirm:{id}"),
            Keyed::Release(id) => format!("release:{id}"),
            Keyed::Cancel(id) => format!("cancel:{id}"),
        }
    }

    /// Reads a stored fingerprint back; `None` if ticketd never wrote it.
    fn parse(fingerprint: &str) -> Option<Self> {
        let (kind, rest) = fingerprint.split_once(':')?;
        let id = || rest.parse::<ReservationId>().ok();
        match kind {
            "reserve" => {
                // Event and category ids hold no ':', so the fields split unambiguously; the
                // customer, which may, comes last.
                let mut fields = rest.splitn(4, ':');
                let event = EventId::parse(fields.next()?).ok()?;
                let lines = Asked::parse_lines(fields.next()?)?;
                let hold_ttl_seconds = match fields.next()? {
                    "-" => None,
                    ttl => Some(ttl.parse().ok()?),
                };
                let customer = match fields.next() {
                    Some(customer) => Some(CustomerId::parse(customer).ok()?),
                    None => None,
                };
                Some(Keyed::Reserve(Asked {
                    event,
                    lines,
                    customer,
                    hold_ttl_seconds,
                }))
            }
            "confirm" => id().map(Keyed::Confirm),
            "release" => id().map(Keyed::Release),
            "cancel" => id().map(Keyed::Cancel),
            _ => None,
        }
    }
}

/// The first request made with a key and what it answered, one case per kind of request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FirstUse {
    /// A reservation: the order it made (`None` when it was refused for want of stock) and the
    /// tickets it said remained.
    Reserve {
        asked: Asked,
        order: Option<ReservationId>,
        remaining: u64,
        /// Why it was refused, when it was.
        short: Option<Shortage>,
    },
    /// A confirmation; a repeat answers with the order as it stands.
    Confirm(ReservationId),
    /// A release; a repeat answers with the order as it stands.
    Release(ReservationId),
    /// A cancellation, and whether it was the one that returned the tickets.
    Cancel { order: ReservationId, changed: bool },
}

impl FirstUse {
    /// Whether `request` is the request this key was first used for.
    fn is_for(&self, request: &Keyed) -> bool {
        match (self, request) {
            (FirstUse::Reserve { asked, .. }, Keyed::Reserve(again)) => asked == again,
            (FirstUse::Confirm(id), Keyed::Confirm(again))
            | (FirstUse::Release(id), Keyed::Release(again))
            | (FirstUse::Cancel { order: id, .. }, Keyed::Cancel(again)) => id == again,
            // Requests of different kinds are different requests.
            (
                FirstUse::Reserve { .. }
                | FirstUse::Confirm(_)
                | FirstUse::Release(_)
                | FirstUse::Cancel { .. },
                _,
            ) => false,
        }
    }

    /// The order the first use made or acted on; `None` for a refused reservation.
    pub fn order(&self) -> Option<ReservationId> {
        match self {
            FirstUse::Reserve { order, .. } => *order,
            FirstUse::Confirm(id) | FirstUse::Release(id) => Some(*id),
            FirstUse::Cancel { order, .. } => Some(*order),
        }
    }

    fn keyed(&self) -> Keyed {
        match self {
            FirstUse::Reserve { asked, .. } => Keyed::Reserve(asked.clone()),
            FirstUse::Confirm(id) => Keyed::Confirm(*id),
            FirstUse::Release(id) => Keyed::Release(*id),
            FirstUse::Cancel { order, .. } => Keyed::Cancel(*order),
        }
    }
}

/// What the inventory remembers of a key: its first use, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyUse {
    pub first: FirstUse,
    pub created_at_ms: i64,
}

impl KeyUse {
    /// The stored row: the columns every store has held since keys were first stored.
    pub fn encode(&self, key: &IdempotencyKey) -> KeyRecord {
        let (order_id, remaining, changed, short) = match &self.first {
            FirstUse::Reserve {
                order,
                remaining,
                short,
                ..
            } => (*order, *remaining, false, short.as_ref()),
            FirstUse::Confirm(id) | FirstUse::Release(id) => (Some(*id), 0, true, None),
            FirstUse::Cancel { order, changed } => (Some(*order), 0, *changed, None),
        };
        KeyRecord {
            key: key.clone(),
            fingerprint: self.first.keyed().fingerprint(),
            order_id,
            remaining,
            short: short
                .map(|short| format!("{} {} {}", short.category, short.quota, short.available)),
            changed,
            created_at_ms: self.created_at_ms,
        }
    }

    /// Reads a stored row back.
    pub fn decode(record: &KeyRecord) -> Result<Self, Error> {
        let keyed = Keyed::parse(&record.fingerprint).ok_or_else(|| {
            Error::Storage(format!(
                "idempotency key '{}' is stored with an unknown request '{}'",
                record.key.as_str(),
                record.fingerprint
            ))
        })?;
        let first = match keyed {
            Keyed::Reserve(asked) => FirstUse::Reserve {
                asked,
                order: record.order_id,
                remaining: record.remaining,
                short: record
                    .short
                    .as_deref()
                    .map(|short| read_shortage(record, short))
                    .transpose()?,
            },
            Keyed::Confirm(id) => FirstUse::Confirm(id),
            Keyed::Release(id) => FirstUse::Release(id),
            Keyed::Cancel(order) => FirstUse::Cancel {
                order,
                changed: record.changed,
            },
        };
        Ok(Self {
            first,
            created_at_ms: record.created_at_ms,
        })
    }
}

/// A stored shortage: `category quota available`.
fn read_shortage(record: &KeyRecord, short: &str) -> Result<Shortage, Error> {
    let mut fields = short.split(' ');
    let parsed = (|| {
        let shortage = Shortage {
            category: CategoryId::parse(fields.next()?).ok()?,
            quota: QuotaId::parse(fields.next()?).ok()?,
            available: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(shortage)
    })();
    parsed.ok_or_else(|| {
        Error::Storage(format!(
            "idempotency key '{}' is stored with an unreadable shortage '{short}'",
            record.key.as_str()
        ))
    })
}

/// Keys created before this time have lapsed at `now_ms`: the one boundary that the rules, the
/// purge and every store's "replace only a lapsed key" share, to the millisecond.
pub(crate) fn lapsed_before_ms(now_ms: i64, key_ttl_ms: i64) -> i64 {
    now_ms.saturating_sub(key_ttl_ms).saturating_add(1)
}

/// The first use of `key`, if it was used within its time to live (`key_ttl_ms` before
/// `now_ms`): for this same `request` that is the answer to repeat; for another request the key
/// cannot be reused. A key used longer ago than that is free: `None`.
pub(crate) fn first_use<'a>(
    remembered: Option<&'a KeyUse>,
    key: &IdempotencyKey,
    request: &Keyed,
    now_ms: i64,
    key_ttl_ms: i64,
) -> Result<Option<&'a FirstUse>, Error> {
    let live = remembered.filter(|used| used.created_at_ms >= lapsed_before_ms(now_ms, key_ttl_ms));
    match live {
        Some(used) if !used.first.is_for(request) => Err(Error::IdempotencyKeyReused(format!(
            "Idempotency-Key '{}' was already used for a different request",
            key.as_str()
        ))),
        live => Ok(live.map(|used| &used.first)),
    }
}

/// The answer to a reservation whose id was used before (`earlier`): the first answer, if it is
/// the same reservation; a conflict if the id was used for another one.
pub(crate) fn retry_of(earlier: Order, asked: &Asked) -> Result<Reserved, Error> {
    let made = Asked::of_order(&earlier);
    let same = made.event == asked.event
        && made.lines == asked.lines
        && made.customer == asked.customer
        && super::rules::began_as_hold(&earlier) == asked.hold_ttl_seconds.is_some();
    if !same {
        return Err(Error::ReservationConflict(format!(
            "reservation {} was already made for {} tickets of '{}'",
            earlier.id, earlier.qty, earlier.event
        )));
    }
    Ok(Reserved {
        remaining: earlier.remaining,
        order: Some(earlier),
        short: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ReservationId {
        "01a20ec3-9982-7479-8a98-b1fd8b7edc59".parse().unwrap()
    }

    fn asked(hold_ttl_seconds: Option<u32>) -> Asked {
        Asked {
            event: EventId::parse("gala").unwrap(),
            lines: vec![(CategoryId::general(), 2)],
            customer: None,
            hold_ttl_seconds,
        }
    }

    fn category(id: &str) -> CategoryId {
        CategoryId::parse(id).unwrap()
    }

    /// Stores written by earlier releases hold exactly these rows; each must read back as the
    /// same record, and each record must be written exactly so.
    #[test]
    fn records_are_stored_as_they_always_were() {
        let uuid = "01a20ec3-9982-7479-8a98-b1fd8b7edc59";
        // (first use, fingerprint, order_id, remaining, changed)
        let cases = [
            (
                FirstUse::Reserve {
                    asked: asked(None),
                    order: Some(id()),
                    remaining: 7,
                    short: None,
                },
                "reserve:gala:2:-".to_owned(),
                Some(id()),
                7,
                false,
            ),
            (
                FirstUse::Reserve {
                    asked: asked(Some(300)),
                    order: None,
                    remaining: 1,
                    short: None,
                },
                "reserve:gala:2:300".to_owned(),
                None,
                1,
                false,
            ),
            (
                FirstUse::Reserve {
                    asked: Asked {
                        lines: vec![(category("standing"), 2), (category("vip"), 1)],
                        customer: Some(CustomerId::parse("c:81").unwrap()),
                        ..asked(Some(60))
                    },
                    order: Some(id()),
                    remaining: 3,
                    short: None,
                },
                "reserve:gala:standing*2+vip*1:60:c:81".to_owned(),
                Some(id()),
                3,
                false,
            ),
            (
                FirstUse::Reserve {
                    asked: Asked {
                        customer: Some(CustomerId::parse("c-1").unwrap()),
                        ..asked(None)
                    },
                    order: None,
                    remaining: 0,
                    short: Some(Shortage {
                        category: CategoryId::general(),
                        quota: QuotaId::general(),
                        available: 1,
                    }),
                },
                "reserve:gala:2:-:c-1".to_owned(),
                None,
                0,
                false,
            ),
            (
                FirstUse::Confirm(id()),
                format!("confirm:{uuid}"),
                Some(id()),
                0,
                true,
            ),
            (
                FirstUse::Release(id()),
                format!("release:{uuid}"),
                Some(id()),
                0,
                true,
            ),
            (
                FirstUse::Cancel {
                    order: id(),
                    changed: false,
                },
                format!("cancel:{uuid}"),
                Some(id()),
                0,
                false,
            ),
        ];
        let key = IdempotencyKey::parse("checkout-7").unwrap();
        for (first, fingerprint, order_id, remaining, changed) in cases {
            let short = match &first {
                FirstUse::Reserve { short: Some(_), .. } => Some("general general 1".to_owned()),
                _ => None,
            };
            let used = KeyUse {
                first,
                created_at_ms: 42,
            };
            let row = KeyRecord {
                key: key.clone(),
                fingerprint,
                order_id,
                remaining,
                short,
                changed,
                created_at_ms: 42,
            };
            assert_eq!(used.encode(&key), row);
            assert_eq!(KeyUse::decode(&row), Ok(used));
        }
    }

    #[test]
    fn a_row_ticketd_never_wrote_is_a_storage_failure() {
        for fingerprint in [
            "",
            "buy:gala:2:-",
            "reserve:gala:2",
            "reserve:gala:2:-:has space",
            "reserve:gala:vip*:-",
            "reserve:gala:vip*1+:-",
            "reserve:gala:v/p*1:-",
            "reserve:ga la:2:-",
            "reserve:gala:two:-",
            "confirm:not-a-uuid",
        ] {
            let row = KeyRecord {
                key: IdempotencyKey::parse("k").unwrap(),
                fingerprint: fingerprint.into(),
                order_id: None,
                remaining: 0,
                short: None,
                changed: false,
                created_at_ms: 0,
            };
            let error = KeyUse::decode(&row).unwrap_err();
            assert_eq!(error.code(), "storage_failure", "{fingerprint:?}");
        }
    }

    #[test]
    fn a_key_answers_its_own_request_until_it_lapses() {
        let key = IdempotencyKey::parse("k").unwrap();
        let used = KeyUse {
            first: FirstUse::Confirm(id()),
            created_at_ms: 1_000,
        };
        let ttl_ms = 100;
        // (case, request, now_ms, answer)
        let cases = [
            ("the same request", Keyed::Confirm(id()), 1_099, "repeat"),
            (
                "another kind of request",
                Keyed::Release(id()),
                1_099,
                "key_reused",
            ),
            (
                "another order",
                Keyed::Confirm(ReservationId::generate()),
                1_099,
                "key_reused",
            ),
            (
                "a request once the key lapsed",
                Keyed::Release(id()),
                1_100,
                "new",
            ),
        ];
        for (case, request, now_ms, want) in cases {
            let got = match first_use(Some(&used), &key, &request, now_ms, ttl_ms) {
                Ok(Some(_)) => "repeat",
                Ok(None) => "new",
                Err(Error::IdempotencyKeyReused(_)) => "key_reused",
                Err(other) => panic!("{case}: {other:?}"),
            };
            assert_eq!(got, want, "{case}");
        }
        let never = first_use(None, &key, &Keyed::Confirm(id()), 0, ttl_ms);
        assert_eq!(never, Ok(None));
    }
}
