//! Purchases, on top of whatever inventory [`VacancyClient`] reaches.
//!
//! This module cannot tell whether the inventory is in the same process or behind HTTP: the
//! monolith hands it a [`LocalVacancyClient`], the ticket service a [`RemoteVacancyClient`].

mod client;
mod remote;

use std::sync::Arc;

pub use client::{LocalVacancyClient, VacancyClient};
pub use remote::{RemoteConfig, RemoteVacancyClient};

use crate::domain::{Error, EventId, Quantity, Reservation, ReservationId};

/// The outcome of a purchase. Selling out is an outcome, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Purchase {
    /// The new order's id; `None` when there were not enough tickets.
    pub order_id: Option<ReservationId>,
    /// Tickets of the event still available right after this purchase was decided.
    pub remaining: u64,
}

pub struct Tickets {
    vacancy: Arc<dyn VacancyClient>,
    max_per_order: u32,
}

impl Tickets {
    pub fn new(vacancy: Arc<dyn VacancyClient>, max_per_order: u32) -> Self {
        Self {
            vacancy,
            max_per_order,
        }
    }

    /// Buys `qty` tickets of `event`. The order id is chosen here, before asking the inventory, so
    /// a retried reservation can never sell the same order twice.
    pub async fn purchase(&self, event: EventId, qty: i64) -> Result<Purchase, Error> {
        let qty = Quantity::parse(qty, self.max_per_order)?;
        let id = ReservationId::generate();
        let reserved = self.vacancy.reserve(Reservation { id, event, qty }).await?;
        Ok(Purchase {
            order_id: reserved.accepted.then_some(id),
            remaining: reserved.remaining,
        })
    }
}
