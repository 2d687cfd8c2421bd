//! Purchases and holds, on top of whatever inventory [`VacancyClient`] reaches.
//!
//! This module cannot tell whether the inventory is in the same process or behind HTTP: the
//! monolith hands it a [`LocalVacancyClient`], the ticket service a [`RemoteVacancyClient`].

mod client;
mod coalesce;
mod remote;

use std::sync::Arc;

pub use client::{LocalVacancyClient, VacancyClient};
pub use remote::{ANSWER_SIZE_MAX, RemoteConfig, RemoteVacancyClient};

use crate::domain::{
    CustomerId, Error, EventId, HoldTtl, IdempotencyKey, Lines, Reservation, ReservationId,
    Reserved,
};

/// Purchases and holds: each picks its order id before asking the inventory. Quantities and hold
/// lengths come parsed, against the settings' limits, from where the request came in.
pub struct Tickets {
    vacancy: Arc<dyn VacancyClient>,
}

impl Tickets {
    pub fn new(vacancy: Arc<dyn VacancyClient>) -> Self {
        Self { vacancy }
    }

    /// Buys `qty` tickets of `event`. The order id is chosen here, before asking the inventory, so
    /// a retried call can never sell twice; a request repeated with the same idempotency key gets
    /// the first answer from the inventory, which remembers keys.
    pub async fn purchase(
        &self,
        event: EventId,
        lines: Lines,
        customer: Option<CustomerId>,
        key: Option<IdempotencyKey>,
    ) -> Result<Reserved, Error> {
        let reservation = Reservation {
            id: ReservationId::generate(),
            event,
            lines,
            customer,
            hold_ttl_seconds: None,
            key,
        };
        self.vacancy.reserve(reservation).await
    }

    /// Sets `qty` tickets of `event` aside for `ttl`.
    pub async fn hold(
        &self,
        event: EventId,
        lines: Lines,
        customer: Option<CustomerId>,
        ttl: HoldTtl,
        key: Option<IdempotencyKey>,
    ) -> Result<Reserved, Error> {
        let reservation = Reservation {
            id: ReservationId::generate(),
            event,
            lines,
            customer,
            hold_ttl_seconds: Some(ttl),
            key,
        };
        self.vacancy.reserve(reservation).await
    }
}
