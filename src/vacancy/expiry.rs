//! How a hold expires.
//!
//! A hold's deadline is fixed when it is placed ([`deadline_ms`]: the batch's wall-clock time
//! plus the hold's time to live) and stored with it. The writer keeps every live hold in
//! [`Holds`], soonest deadline first, and wakes up for the next one. Every batch decided after a
//! deadline starts by expiring the holds then due ([`Rules::expire_due`]), so an expiry is one
//! more decision in the same order as every other: a confirm, a release and an expiry of one hold
//! can never all win. A confirm that reaches a hold past its deadline before any batch has
//! expired it expires it itself and answers [`expired`] (see [`Rules::confirm`]).
//!
//! When a due hold cannot be looked up or its batch does not commit, expiry waits before trying
//! again, twice as long each time up to [`EXPIRY_RETRY_MAX`], while requests are answered
//! meanwhile; the first try that works ends the waiting.
//!
//! A store shared by several replicas also holds other replicas' holds: a replica looks for due
//! ones in the database ("sweeps") when one of its own is due, and every [`SWEEP_INTERVAL`]
//! anyway. Whichever replica locks a hold's event first expires it; the others find it settled
//! and forget it.
//!
//! Wall-clock time decides (deadlines are wall-clock, as stored and shown); the monotonic clock
//! alone schedules waits, so a wall clock stepped back cannot stall expiry.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::rules::{Rules, Standing};
use crate::domain::{Error, OrderStatus, ReservationId};

/// How long expiry waits after a try that failed; each further failure doubles the wait, up to
/// [`EXPIRY_RETRY_MAX`].
pub(crate) const EXPIRY_RETRY_FIRST: Duration = Duration::from_millis(100);
pub(crate) const EXPIRY_RETRY_MAX: Duration = Duration::from_secs(5);

/// How often a writer on a shared store looks for due holds when it has none of its own.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// When a hold placed at `now_ms` for `ttl_seconds` lapses.
pub(crate) fn deadline_ms(now_ms: i64, ttl_seconds: u32) -> i64 {
    now_ms + i64::from(ttl_seconds) * 1000
}

pub(crate) fn expired(id: ReservationId) -> Error {
    Error::HoldExpired(format!(
        "hold {id} expired before it was confirmed; its tickets went back on sale"
    ))
}

/// The live holds the writer knows of, soonest first, as committed; and when expiry may next be
/// tried after a failure.
pub(crate) struct Holds {
    /// `(expires_at_ms, id)`.
    by_deadline: BTreeSet<(i64, ReservationId)>,
    /// No expiry is tried before this (monotonic) time, after a try that failed.
    paused_until: Instant,
    /// The wait after the last failed try; zero while expiry works.
    retry: Duration,
}

impl Holds {
    pub fn new(live: impl IntoIterator<Item = (i64, ReservationId)>, now: Instant) -> Self {
        Self {
            by_deadline: live.into_iter().collect(),
            paused_until: now,
            retry: Duration::ZERO,
        }
    }

    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.by_deadline
            .first()
            .map(|(deadline_ms, _)| *deadline_ms)
    }

    /// Whether a hold is due by `now_ms`.
    pub fn any_due(&self, now_ms: i64) -> bool {
        self.next_deadline_ms()
            .is_some_and(|deadline_ms| deadline_ms <= now_ms)
    }

    /// Appends the holds due by `now_ms` to `due`, soonest first.
    pub fn due(&self, now_ms: i64, due: &mut Vec<(i64, ReservationId)>) {
        let holds = self.by_deadline.iter();
        due.extend(holds.take_while(|(deadline_ms, _)| *deadline_ms <= now_ms));
    }

    /// Whether expiry may be tried at (monotonic) `now`.
    pub fn may_try(&self, now: Instant) -> bool {
        now >= self.paused_until
    }

    pub fn paused_until(&self) -> Instant {
        self.paused_until
    }

    /// Notes how a try at expiry went: once one works, expiry runs with every batch again; after
    /// a failure it waits, twice as long as the time before, up to [`EXPIRY_RETRY_MAX`].
    pub fn tried(&mut self, worked: bool, now: Instant) {
        if worked {
            self.retry = Duration::ZERO;
            return;
        }
        self.retry = (self.retry * 2).clamp(EXPIRY_RETRY_FIRST, EXPIRY_RETRY_MAX);
        self.paused_until = now + self.retry;
    }

    /// A shared store's sweep: the holds due by `now_ms` are exactly those it found, with their
    /// events locked. A due hold of ours that another replica settled first is forgotten.
    pub fn swept(&mut self, now_ms: i64, found: Vec<(i64, ReservationId)>) {
        self.by_deadline
            .retain(|(deadline_ms, _)| *deadline_ms > now_ms);
        self.by_deadline.extend(found);
    }

    /// Takes in a committed batch's holds.
    pub fn committed(
        &mut self,
        added: impl IntoIterator<Item = (i64, ReservationId)>,
        removed: impl IntoIterator<Item = (i64, ReservationId)>,
    ) {
        for hold in removed {
            self.by_deadline.remove(&hold);
        }
        self.by_deadline.extend(added);
    }
}

impl Rules<'_> {
    /// Expires every hold of `due` that is still held. Returns the holds that could not be
    /// looked up: they stay due, for the next try.
    pub fn expire_due(&mut self, due: &[(i64, ReservationId)]) -> Vec<(ReservationId, Error)> {
        let mut failed = Vec::new();
        for &(deadline_ms, id) in due {
            let expired = self
                .existing_order(id)
                .and_then(|order| match Standing::of(&order)? {
                    Standing::Held { .. } => self.transition(order, OrderStatus::Expired).map(drop),
                    // Settled meanwhile, by another replica sharing the store.
                    Standing::Confirmed { .. }
                    | Standing::Cancelled
                    | Standing::Released
                    | Standing::Expired => {
                        self.changes.holds_removed.push((deadline_ms, id));
                        Ok(())
                    }
                });
            if let Err(error) = expired {
                failed.push((id, error));
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> ReservationId {
        ReservationId::from(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn holds_are_due_from_their_deadline_on_soonest_first() {
        let holds = Holds::new([(300, id(3)), (100, id(1)), (200, id(2))], Instant::now());
        let due_at = |now_ms| {
            let mut due = Vec::new();
            holds.due(now_ms, &mut due);
            due
        };
        assert_eq!(due_at(99), []);
        assert_eq!(due_at(100), [(100, id(1))]);
        assert_eq!(due_at(250), [(100, id(1)), (200, id(2))]);
        assert!(holds.any_due(100) && !holds.any_due(99));
        assert_eq!(holds.next_deadline_ms(), Some(100));
    }

    #[test]
    fn failed_tries_wait_twice_as_long_each_time_up_to_the_limit() {
        let start = Instant::now();
        let mut holds = Holds::new([], start);
        assert!(holds.may_try(start));
        let mut waits_ms = Vec::new();
        for _ in 0..8 {
            holds.tried(false, start);
            waits_ms.push((holds.paused_until() - start).as_millis());
        }
        assert_eq!(waits_ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert!(!holds.may_try(start + Duration::from_millis(4999)));
        assert!(holds.may_try(start + Duration::from_millis(5000)));
        // One try that works ends the waiting: the next failure starts from the first wait.
        holds.tried(true, start);
        holds.tried(false, start);
        assert_eq!(holds.paused_until() - start, EXPIRY_RETRY_FIRST);
    }

    #[test]
    fn a_sweep_replaces_the_due_holds_with_those_found() {
        let mut holds = Holds::new([(100, id(1)), (500, id(5))], Instant::now());
        holds.swept(200, vec![(150, id(2))]);
        let mut due = Vec::new();
        holds.due(i64::MAX, &mut due);
        assert_eq!(due, [(150, id(2)), (500, id(5))]);
        holds.committed([(600, id(6))], [(150, id(2))]);
        due.clear();
        holds.due(i64::MAX, &mut due);
        assert_eq!(due, [(500, id(5)), (600, id(6))]);
    }
}
