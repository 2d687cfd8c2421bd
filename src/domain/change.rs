//! What integrators hear about: every change they care about (an order confirmed, a hold that ran
//! out, an offer to a waiting entry, an event selling out ...) is one [`Change`], written by the
//! inventory's writer in the same commit as the change itself. A crash can delay one, never lose
//! it. Changes are numbered in commit order; a consumer reads them after the last number it saw
//! ([`ChangeFeed`]), which is also how webhooks are delivered.

use std::sync::Arc;
use std::time::Duration;

use super::{Error, EventId};

/// The kinds of change, as integrators name them (`order.confirmed` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeType {
    OrderConfirmed,
    OrderCancelled,
    HoldCreated,
    HoldExpired,
    HoldReleased,
    WaitlistOffered,
    WaitlistOfferExpired,
    EventSoldOut,
    EventBackOnSale,
}

impl ChangeType {
    pub const ALL: [ChangeType; 9] = [
        ChangeType::OrderConfirmed,
        ChangeType::OrderCancelled,
        ChangeType::HoldCreated,
        ChangeType::HoldExpired,
        ChangeType::HoldReleased,
        ChangeType::WaitlistOffered,
        ChangeType::WaitlistOfferExpired,
        ChangeType::EventSoldOut,
        ChangeType::EventBackOnSale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::OrderConfirmed => "order.confirmed",
            ChangeType::OrderCancelled => "order.cancelled",
            ChangeType::HoldCreated => "hold.created",
            ChangeType::HoldExpired => "hold.expired",
            ChangeType::HoldReleased => "hold.released",
            ChangeType::WaitlistOffered => "waitlist.offered",
            ChangeType::WaitlistOfferExpired => "waitlist.offer_expired",
            ChangeType::EventSoldOut => "event.sold_out",
            ChangeType::EventBackOnSale => "event.back_on_sale",
        }
    }

    pub fn parse(name: &str) -> Option<ChangeType> {
        ChangeType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for ChangeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One committed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its place in commit order: strictly increasing, never reused by the same store. The
    /// cursor of the feed, and what makes a webhook delivery's id.
    pub seq: u64,
    pub kind: ChangeType,
    /// The event it happened in.
    pub event: EventId,
    /// When it was decided (the writer's clock).
    pub at_ms: i64,
    /// What changed, as a JSON object (the order, the entry and its offer, the event's counts),
    /// encoded once when decided and stored and served as is.
    pub data: Arc<str>,
}

/// What a reader of the feed asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesQuery {
    /// Changes with a greater `seq` than this; 0 for all that are kept.
    pub after: u64,
    /// Most changes to return, at least 1.
    pub limit: usize,
    /// When there is none after `after`, how long to wait for one before answering an empty page.
    pub wait: Duration,
}

/// Changes in commit order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesPage {
    pub changes: Vec<Change>,
    /// The cursor to pass as `after` next: the last change's `seq`, or `after` when none.
    pub next_after: u64,
}

/// Where committed changes are read, in commit order.
#[async_trait::async_trait]
pub trait ChangeFeed: Send + Sync {
    async fn changes(&self, query: ChangesQuery) -> Result<ChangesPage, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_from_its_name() {
        for kind in ChangeType::ALL {
            assert_eq!(ChangeType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ChangeType::parse("order"), None);
        assert_eq!(ChangeType::parse("Order.Confirmed"), None);
    }
}
