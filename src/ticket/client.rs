use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Attempt, Cancelled, CategoryChange, CategoryId, ChangeFeed, ChangesPage, ChangesQuery,
    EntryView, Error, Event, EventDraft, EventId, EventsPage, IdempotencyKey, Joining, Order,
    PageQuery, QuotaId, Reservation, ReservationId, Reserved, Resize, SigningSecret, WebhookId,
    WebhookTypes, WebhookUrl, WebhookView,
};
use crate::vacancy::Inventory;
use crate::webhooks::Webhooks;

/// Everything the ticket side needs from the inventory.
///
/// The futures are not `Send` (`?Send`): the remote implementation drives awc, whose client is
/// bound to the thread that made it, and actix runs every request on a single-threaded worker, so
/// nothing here ever needs to move between threads. The trait object itself is `Send + Sync` and is
/// shared by all workers as `Arc<dyn VacancyClient>`.
#[async_trait(?Send)]
pub trait VacancyClient: Send + Sync {
    /// Sells or holds tickets under the caller's id; asking again with the same id changes nothing.
    async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error>;
    async fn confirm(&self, id: ReservationId, key: Option<IdempotencyKey>)
    -> Result<Order, Error>;
    /// Gives a hold's tickets back; releasing twice changes nothing.
    async fn release(&self, id: ReservationId, key: Option<IdempotencyKey>) -> Result<(), Error>;
    async fn cancel(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Cancelled, Error>;
    async fn order(&self, id: ReservationId) -> Result<Order, Error>;
    /// One event with its committed stock.
    async fn event(&self, id: &EventId) -> Result<Event, Error>;
    /// One page of events, in id order.
    async fn events(&self, query: PageQuery) -> Result<EventsPage, Error>;
    /// Admin: a new event.
    async fn create_event(&self, id: EventId, name: String, capacity: u64) -> Result<Event, Error>;
    /// Admin: more tickets for an event.
    async fn replenish(&self, id: EventId, qty: u64) -> Result<Event, Error>;
    /// Creates an event of quotas and categories.
    async fn create(&self, draft: EventDraft) -> Result<Event, Error>;
    async fn resize_quota(
        &self,
        id: EventId,
        quota: QuotaId,
        resize: Resize,
    ) -> Result<Event, Error>;
    async fn change_category(
        &self,
        id: EventId,
        category: CategoryId,
        change: CategoryChange,
    ) -> Result<Event, Error>;
    /// Joins a sold-out category's waiting list under the caller's id; joining again with the
    /// same id changes nothing.
    async fn join_waitlist(&self, joining: Joining) -> Result<EntryView, Error>;
    async fn waitlist_entry(&self, id: ReservationId) -> Result<EntryView, Error>;
    /// Leaves a waiting list (declining an open offer); leaving twice changes nothing.
    async fn leave_waitlist(&self, id: ReservationId) -> Result<EntryView, Error>;
    /// Admin: a new webhook, and its signing secret (which is never shown again).
    async fn create_webhook(
        &self,
        url: WebhookUrl,
        types: WebhookTypes,
    ) -> Result<(WebhookView, SigningSecret), Error>;
    /// Admin: every webhook, oldest first.
    async fn webhooks(&self) -> Result<Vec<WebhookView>, Error>;
    async fn webhook(&self, id: WebhookId) -> Result<WebhookView, Error>;
    async fn delete_webhook(&self, id: WebhookId) -> Result<(), Error>;
    /// Admin: a webhook's recent delivery attempts, newest first.
    async fn webhook_deliveries(&self, id: WebhookId) -> Result<Vec<Attempt>, Error>;
    /// Committed changes after a cursor, waiting up to `query.wait` for one when there is none.
    async fn changes(&self, query: ChangesQuery) -> Result<ChangesPage, Error>;
}

/// The monolith's client: a plain method call on the inventory in this process.
pub struct LocalVacancyClient {
    inventory: Arc<Inventory>,
    webhooks: Arc<Webhooks>,
}

impl LocalVacancyClient {
    pub fn new(inventory: Arc<Inventory>, webhooks: Arc<Webhooks>) -> Self {
        Self {
            inventory,
            webhooks,
        }
    }
}

#[async_trait(?Send)]
impl VacancyClient for LocalVacancyClient {
    async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        self.inventory.reserve(reservation).await
    }

    async fn confirm(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, Error> {
        self.inventory.confirm(id, key).await
    }

    async fn release(&self, id: ReservationId, key: Option<IdempotencyKey>) -> Result<(), Error> {
        self.inventory.release(id, key).await.map(drop)
    }

    async fn cancel(
        &self,
        id: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<Cancelled, Error> {
        self.inventory.cancel(id, key).await
    }

    async fn order(&self, id: ReservationId) -> Result<Order, Error> {
        self.inventory.order(id).await
    }

    async fn event(&self, id: &EventId) -> Result<Event, Error> {
        self.inventory.event(id).await
    }

    async fn events(&self, query: PageQuery) -> Result<EventsPage, Error> {
        self.inventory.events(&query).await
    }

    async fn create_event(&self, id: EventId, name: String, capacity: u64) -> Result<Event, Error> {
        self.inventory.create_event(id, name, capacity).await
    }

    async fn replenish(&self, id: EventId, qty: u64) -> Result<Event, Error> {
        self.inventory.replenish(id, qty).await
    }

    async fn create(&self, draft: EventDraft) -> Result<Event, Error> {
        self.inventory.create(draft).await
    }

    async fn resize_quota(
        &self,
        id: EventId,
        quota: QuotaId,
        resize: Resize,
    ) -> Result<Event, Error> {
        self.inventory.resize_quota(id, quota, resize).await
    }

    async fn change_category(
        &self,
        id: EventId,
        category: CategoryId,
        change: CategoryChange,
    ) -> Result<Event, Error> {
        self.inventory.change_category(id, category, change).await
    }

    async fn join_waitlist(&self, joining: Joining) -> Result<EntryView, Error> {
        self.inventory.join_waitlist(joining).await
    }

    async fn waitlist_entry(&self, id: ReservationId) -> Result<EntryView, Error> {
        self.inventory.waitlist_entry(id).await
    }

    async fn changes(&self, query: ChangesQuery) -> Result<ChangesPage, Error> {
        ChangeFeed::changes(self.inventory.as_ref(), query).await
    }

    async fn leave_waitlist(&self, id: ReservationId) -> Result<EntryView, Error> {
        self.inventory.leave_waitlist(id).await
    }

    async fn create_webhook(
        &self,
        url: WebhookUrl,
        types: WebhookTypes,
    ) -> Result<(WebhookView, SigningSecret), Error> {
        let webhook = self.webhooks.create(url, types).await?;
        Ok((webhook.view(), webhook.secret))
    }

    async fn webhooks(&self) -> Result<Vec<WebhookView>, Error> {
        let webhooks = self.webhooks.list().await?;
        Ok(webhooks.iter().map(|w| w.view()).collect())
    }

    async fn webhook(&self, id: WebhookId) -> Result<WebhookView, Error> {
        Ok(self.webhooks.get(id).await?.view())
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<(), Error> {
        self.webhooks.delete(id).await
    }

    async fn webhook_deliveries(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        self.webhooks.attempts(id).await
    }
}
