//! The waiting list of a sold-out category: entries, in the order they joined, that are offered
//! the seats that come back before the public sees them.

use super::{CategoryId, CustomerId, EventId, Quantity, ReservationId};

/// Where an entry stands. `Waiting` and `Offered` are live: they are the event's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryStatus {
    /// In the queue for its category.
    Waiting,
    /// Offered a hold of its whole quantity (the hold's id is the entry's), until the hold ends.
    Offered,
    /// The offer's hold was confirmed.
    Accepted,
    /// The offer's hold ran out.
    Expired,
    /// The entrant left the list, or declined (released) the offer.
    Left,
}

impl EntryStatus {
    pub const ALL: [EntryStatus; 5] = [
        EntryStatus::Waiting,
        EntryStatus::Offered,
        EntryStatus::Accepted,
        EntryStatus::Expired,
        EntryStatus::Left,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Waiting => "waiting",
            EntryStatus::Offered => "offered",
            EntryStatus::Accepted => "accepted",
            EntryStatus::Expired => "expired",
            EntryStatus::Left => "left",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }

    /// Whether the entry is still on its event's list (waiting, or holding an offer).
    pub fn is_live(self) -> bool {
        matches!(self, EntryStatus::Waiting | EntryStatus::Offered)
    }
}

/// One entry of a waiting list. Its id is also the id of the hold it is offered, so an entry is
/// offered at most once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ReservationId,
    pub event: EventId,
    pub category: CategoryId,
    pub qty: u32,
    pub customer: Option<CustomerId>,
    pub status: EntryStatus,
    /// Entries are served in `(joined_at_ms, id)` order.
    pub joined_at_ms: i64,
    pub updated_at_ms: i64,
    /// When the offer's hold lapses, once offered.
    pub offer_expires_at_ms: Option<i64>,
}

impl Entry {
    /// The order entries of one list are served in.
    pub fn turn(&self) -> (i64, ReservationId) {
        (self.joined_at_ms, self.id)
    }
}

/// A request to join an event's waiting list, under an id the caller picked (so a retry joins
/// once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joining {
    pub id: ReservationId,
    pub event: EventId,
    /// `None`: the event's only category.
    pub category: Option<CategoryId>,
    pub qty: Quantity,
    pub customer: Option<CustomerId>,
}

/// An entry and, while it waits, its place in its category's queue (1 is next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    pub entry: Entry,
    pub position: Option<u32>,
}
