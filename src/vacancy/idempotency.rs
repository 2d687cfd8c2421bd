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
    Error, EventId, HoldTtl, IdempotencyKey, KeyRecord, Order, Reservation, ReservationId, Reserved,
};

/// A reservation as far as telling two of them apart goes: a repeat must ask for the same
/// tickets, the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Asked {
    pub event: EventId,
    pub qty: u32,
    /// `None` for a purchase.
    pub hold_ttl_seconds: Option<u32>,
}

impl Asked {
    pub fn of(reservation: &Reservation) -> Self {
        Self {
            event: reservation.event.clone(),
            qty: reservation.qty.get(),
            hold_ttl_seconds: reservation.hold_ttl_seconds.map(HoldTtl::seconds),
        }
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
            Keyed::Reserve(asked) => match asked.hold_ttl_seconds {
                Some(ttl) => format!("reserve:{}:{}:{ttl}", asked.event, asked.qty),
                None => format!("reserve:{}:{}:-", asked.event, asked.qty),
            },
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
                // Event ids hold no ':', so the fields split unambiguously.
                let mut fields = rest.split(':');
                let event = EventId::parse(fields.next()?).ok()?;
                let qty = fields.next()?.parse().ok()?;
                let hold_ttl_seconds = match fields.next()? {
                    "-" => None,
                    ttl => Some(ttl.parse().ok()?),
                };
                if fields.next().is_some() {
                    return None;
                }
                Some(Keyed::Reserve(Asked {
                    event,
                    qty,
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
        let (order_id, remaining, changed) = match &self.first {
            FirstUse::Reserve {
                order, remaining, ..
            } => (*order, *remaining, false),
            FirstUse::Confirm(id) | FirstUse::Release(id) => (Some(*id), 0, true),
            FirstUse::Cancel { order, changed } => (Some(*order), 0, *changed),
        };
        KeyRecord {
            key: key.clone(),
            fingerprint: self.first.keyed().fingerprint(),
            order_id,
            remaining,
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
pub(crate) fn retry_of(earlier: Order, reservation: &Reservation) -> Result<Reserved, Error> {
    let same = earlier.event == reservation.event
        && earlier.qty == reservation.qty.get()
        && super::rules::began_as_hold(&earlier) == reservation.hold_ttl_seconds.is_some();
    if !same {
        return Err(Error::ReservationConflict(format!(
            "reservation {} was already made for {} tickets of '{}'",
            reservation.id, earlier.qty, earlier.event
        )));
    }
    Ok(Reserved {
        remaining: earlier.remaining,
        order: Some(earlier),
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
            qty: 2,
            hold_ttl_seconds,
        }
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
                },
                "reserve:gala:2:300".to_owned(),
                None,
                1,
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
            let used = KeyUse {
                first,
                created_at_ms: 42,
            };
            let row = KeyRecord {
                key: key.clone(),
                fingerprint,
                order_id,
                remaining,
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
            "reserve:gala:2:-:x",
            "reserve:ga la:2:-",
            "reserve:gala:two:-",
            "confirm:not-a-uuid",
        ] {
            let row = KeyRecord {
                key: IdempotencyKey::parse("k").unwrap(),
                fingerprint: fingerprint.into(),
                order_id: None,
                remaining: 0,
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
