//! The waiting list's JSON shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::present;
use crate::domain::{
    CategoryId, CustomerId, Entry, EntryStatus, EntryView, Error, EventId, ReservationId,
};

/// Body of joining a waiting list: `qty` tickets of `category` (may be left out when the event
/// sells only one), together or not at all.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct WaitlistRequest {
    /// Tickets wanted together: a whole number from 1 to `max_per_order`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 1, example = 2, required = true)]
    pub qty: Option<Value>,
    /// The category to wait for; may be left out when the event sells only one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, example = "standing")]
    pub category: Option<Value>,
    /// The entrant, as the integrator identifies them (1 to 128 visible ASCII characters): what
    /// the event's `max_per_customer` counts, waiting included.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[!-~]+$", example = "c-81")]
    pub customer: Option<Value>,
}

/// An offer: a hold of the entry's whole quantity, confirmed like any hold.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OfferResponse {
    /// The hold to confirm (`POST /api/v1/holds/{id}/confirm`): the entry's own id.
    pub hold_id: uuid::Uuid,
    #[schema(example = "2026-11-24T19:15:00.000Z")]
    pub expires_at: String,
}

/// A waiting-list entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WaitlistEntryResponse {
    pub entry_id: uuid::Uuid,
    pub event: String,
    pub category: String,
    pub qty: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// `waiting`, `offered`, `accepted`, `expired` or `left`.
    #[schema(example = "waiting")]
    pub status: String,
    /// While waiting: the place in the category's queue (1 is served next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    pub joined_at: String,
    pub updated_at: String,
    /// Once offered: the hold and when it lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferResponse>,
}

impl From<&EntryView> for WaitlistEntryResponse {
    fn from(view: &EntryView) -> Self {
        let entry = &view.entry;
        Self {
            entry_id: entry.id.as_uuid(),
            event: entry.event.as_str().to_owned(),
            category: entry.category.as_str().to_owned(),
            qty: entry.qty,
            customer: entry.customer.as_ref().map(|c| c.as_str().to_owned()),
            status: entry.status.as_str().to_owned(),
            position: view.position,
            joined_at: super::timestamp(entry.joined_at_ms),
            updated_at: super::timestamp(entry.updated_at_ms),
            offer: entry.offer_expires_at_ms.map(|ms| OfferResponse {
                hold_id: entry.id.as_uuid(),
                expires_at: super::timestamp(ms),
            }),
        }
    }
}

impl WaitlistEntryResponse {
    /// Vacancy's answer read back by the ticket service.
    pub fn into_domain(self) -> Result<EntryView, Error> {
        let unreadable = |what: &str| Error::Unavailable(format!("vacancy sent {what}"));
        let time = |field: &str, raw: &str| {
            super::parse_timestamp_field(field, raw)
                .map_err(|_| unreadable("an entry with an unreadable time"))
        };
        let entry = Entry {
            id: ReservationId::from(self.entry_id),
            event: EventId::parse(&self.event).map_err(|_| unreadable("a bad event id"))?,
            category: CategoryId::parse(&self.category)
                .map_err(|_| unreadable("a bad category id"))?,
            qty: self.qty,
            customer: self
                .customer
                .as_deref()
                .map(CustomerId::parse)
                .transpose()
                .map_err(|_| unreadable("a bad customer"))?,
            status: EntryStatus::parse(&self.status)
                .ok_or_else(|| unreadable("an unknown entry status"))?,
            joined_at_ms: time("joined_at", &self.joined_at)?,
            updated_at_ms: time("updated_at", &self.updated_at)?,
            offer_expires_at_ms: self
                .offer
                .map(|offer| time("expires_at", &offer.expires_at))
                .transpose()?,
        };
        Ok(EntryView {
            entry,
            position: self.position,
        })
    }
}
