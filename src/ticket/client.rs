use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Error, EventId, Reservation, Reserved, Stock};
use crate::vacancy::Inventory;

/// Everything the ticket side needs from the inventory.
///
/// The futures are not `Send` (`?Send`): the remote implementation drives awc, whose client is
/// bound to the thread that made it, and actix runs every request on a single-threaded worker, so
/// nothing here ever needs to move between threads. The trait object itself is `Send + Sync` and is
/// shared by all workers as `Arc<dyn VacancyClient>`.
#[async_trait(?Send)]
pub trait VacancyClient: Send + Sync {
    /// Reserves tickets under the caller's id; asking again with the same id changes nothing.
    async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error>;

    /// Committed stock of one event.
    async fn stock(&self, event: &EventId) -> Result<Stock, Error>;
}

/// The monolith's client: a plain method call on the inventory in this process.
pub struct LocalVacancyClient {
    inventory: Arc<Inventory>,
}

impl LocalVacancyClient {
    pub fn new(inventory: Arc<Inventory>) -> Self {
        Self { inventory }
    }
}

#[async_trait(?Send)]
impl VacancyClient for LocalVacancyClient {
    async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        self.inventory.reserve(reservation).await
    }

    async fn stock(&self, event: &EventId) -> Result<Stock, Error> {
        self.inventory.stock(event)
    }
}
