//! Purchases and holds, on top of whatever inventory [`VacancyClient`] reaches.
//!
//! This module cannot tell whether the inventory is in the same process or behind HTTP: the
//! monolith hands it a [`LocalVacancyClient`], the ticket service a [`RemoteVacancyClient`].

mod client;
mod remote;

use std::sync::Arc;

pub use client::{LocalVacancyClient, VacancyClient};
pub use remote::{ANSWER_SIZE_MAX, RemoteConfig, RemoteVacancyClient};

use crate::domain::{
    Error, EventId, IdempotencyKey, Quantity, Reservation, ReservationId, Reserved,
};

/// Rules the ticket service applies before asking the inventory.
#[derive(Clone, Debug)]
pub struct TicketRules {
    pub max_per_order: u32,
    pub hold_ttl_seconds_default: u32,
    pub hold_ttl_seconds_max: u32,
}

pub struct Tickets {
    vacancy: Arc<dyn VacancyClient>,
    rules: TicketRules,
}

impl Tickets {
    pub fn new(vacancy: Arc<dyn VacancyClient>, rules: TicketRules) -> Self {
        Self { vacancy, rules }
    }

    /// Buys `qty` tickets of `event`. The order id is chosen here, before asking the inventory, so
    /// a retried call can never sell twice; a request repeated with the same idempotency key gets
    /// the first answer from the inventory, which remembers keys.
    pub async fn purchase(
        &self,
        event: EventId,
        qty: i64,
        key: Option<IdempotencyKey>,
    ) -> Result<Reserved, Error> {
        let reservation = Reservation {
            id: ReservationId::generate(),
            event,
            qty: Quantity::parse(qty, self.rules.max_per_order)?,
            hold_ttl_seconds: None,
            key,
        };
        self.vacancy.reserve(reservation).await
    }

    /// Sets `qty` tickets of `event` aside for `ttl_seconds` (the configured default when absent).
    pub async fn hold(
        &self,
        event: EventId,
        qty: i64,
        ttl_seconds: Option<i64>,
        key: Option<IdempotencyKey>,
    ) -> Result<Reserved, Error> {
        let max = self.rules.hold_ttl_seconds_max;
        let ttl = match ttl_seconds {
            None => self.rules.hold_ttl_seconds_default.min(max),
            Some(ttl) if (1..=i64::from(max)).contains(&ttl) => ttl as u32,
            Some(ttl) => {
                return Err(Error::InvalidQuantity(format!(
                    "ttl_seconds must be 1 to {max}, got {ttl}"
                )));
            }
        };
        let reservation = Reservation {
            id: ReservationId::generate(),
            event,
            qty: Quantity::parse(qty, self.rules.max_per_order)?,
            hold_ttl_seconds: Some(ttl),
            key,
        };
        self.vacancy.reserve(reservation).await
    }
}
