//! Webhooks: integrators' URLs that hear about the changes they subscribed to.
//!
//! [`Webhooks`] is what the admin API calls (make, list, read, delete a webhook, read its recent
//! attempts). [`deliver`] runs beside the inventory (monolith or vacancy, never the ticket
//! service): it reads the [`ChangeFeed`](crate::domain::ChangeFeed) after each webhook's cursor
//! and posts every change of the subscribed types, signed, until the receiver takes it.
//!
//! What survives a restart is in a [`WebhookStore`]: the webhooks, each one's progress (its cursor
//! in the feed and the changes still to be delivered, with their retry state) and its recent
//! attempts. The store is never the inventory's own database connection: delivery bookkeeping
//! must not contend with sales.

pub mod deliver;
mod memory;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Attempt, Change, ChangeType, Error, EventId, SigningSecret, WEBHOOKS_MAX, Webhook, WebhookId,
    WebhookTypes, WebhookUrl,
};
use crate::vacancy::Clock;

pub use memory::MemoryWebhookStore;

/// A change read from the feed and not yet delivered to one webhook (or given up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub change: Change,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt may be made (ms since the epoch).
    pub next_at_ms: i64,
}

/// How far one webhook is: every change up to `cursor` was read from the feed and is either
/// delivered, given up, or in `pending`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub cursor: u64,
    /// In feed order.
    pub pending: Vec<Pending>,
}

/// How progress is kept in a store: one JSON text.
#[derive(Serialize, Deserialize)]
struct StoredProgress {
    cursor: u64,
    pending: Vec<StoredPending>,
}

#[derive(Serialize, Deserialize)]
struct StoredPending {
    seq: u64,
    kind: String,
    event: String,
    at_ms: i64,
    data: String,
    attempts: u32,
    next_at_ms: i64,
}

impl Progress {
    /// The progress as saved: small whatever the backlog. Changes never attempted yet are left
    /// out, with the cursor put back before the first of them: after a restart they are read
    /// from the feed again (and a change of another event delivered meanwhile may be delivered
    /// again: at least once). Only changes already attempted, with their retry state, are kept.
    pub fn to_stored(&self) -> String {
        let cursor = self
            .pending
            .iter()
            .find(|p| p.attempts == 0)
            .map_or(self.cursor, |p| p.change.seq.saturating_sub(1))
            .min(self.cursor);
        let stored = StoredProgress {
            cursor,
            pending: self
                .pending
                .iter()
                .filter(|p| p.attempts > 0)
                .map(|p| StoredPending {
                    seq: p.change.seq,
                    kind: p.change.kind.as_str().into(),
                    event: p.change.event.as_str().into(),
                    at_ms: p.change.at_ms,
                    data: p.change.data.to_string(),
                    attempts: p.attempts,
                    next_at_ms: p.next_at_ms,
                })
                .collect(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub fn from_stored(raw: &str) -> Result<Self, Error> {
        let unreadable = |why: String| {
            Error::Storage(format!("a webhook's stored progress is unreadable: {why}"))
        };
        let stored: StoredProgress =
            serde_json::from_str(raw).map_err(|e| unreadable(e.to_string()))?;
        let mut pending = Vec::with_capacity(stored.pending.len());
        for p in stored.pending {
            let kind = ChangeType::parse(&p.kind).ok_or_else(|| unreadable(p.kind.clone()))?;
            let event = EventId::parse(&p.event).map_err(|e| unreadable(e.to_string()))?;
            pending.push(Pending {
                change: Change {
                    seq: p.seq,
                    kind,
                    event,
                    at_ms: p.at_ms,
                    data: Arc::from(p.data),
                },
                attempts: p.attempts,
                next_at_ms: p.next_at_ms,
            });
        }
        Ok(Progress {
            cursor: stored.cursor,
            pending,
        })
    }

    /// Adds a change read from the feed, unless it is pending already or is older than a pending
    /// change of its event (then it was finished before that one was first sent: both can only
    /// happen when reading again after a restart, see [`Self::to_stored`]). Pending changes stay
    /// in feed order.
    pub fn add(&mut self, change: Change, now_ms: i64) {
        let known = self.pending.iter().any(|p| {
            p.change.seq == change.seq
                || (p.change.event == change.event && p.change.seq > change.seq)
        });
        if known {
            return;
        }
        let at = self.pending.partition_point(|p| p.change.seq < change.seq);
        self.pending.insert(
            at,
            Pending {
                change,
                attempts: 0,
                next_at_ms: now_ms,
            },
        );
    }
}

/// How an attempt is kept in a store: one JSON text.
#[derive(Serialize, Deserialize)]
struct StoredAttempt {
    seq: u64,
    kind: String,
    message_id: String,
    attempt: u32,
    at_ms: i64,
    status: Option<u16>,
    error: Option<String>,
    next_retry_at_ms: Option<i64>,
    failed: bool,
}

pub(crate) fn attempt_to_stored(attempt: &Attempt) -> String {
    use crate::domain::AttemptOutcome;
    let (status, error) = match &attempt.outcome {
        AttemptOutcome::Status(status) => (Some(*status), None),
        AttemptOutcome::Error(error) => (None, Some(error.clone())),
    };
    serde_json::to_string(&StoredAttempt {
        seq: attempt.seq,
        kind: attempt.kind.as_str().into(),
        message_id: attempt.message_id.clone(),
        attempt: attempt.attempt,
        at_ms: attempt.at_ms,
        status,
        error,
        next_retry_at_ms: attempt.next_retry_at_ms,
        failed: attempt.failed,
    })
    .unwrap_or_default()
}

pub(crate) fn attempt_from_stored(raw: &str) -> Result<Attempt, Error> {
    use crate::domain::AttemptOutcome;
    let unreadable =
        |why: String| Error::Storage(format!("a stored webhook attempt is unreadable: {why}"));
    let stored: StoredAttempt = serde_json::from_str(raw).map_err(|e| unreadable(e.to_string()))?;
    let outcome = match (stored.status, stored.error) {
        (Some(status), _) => AttemptOutcome::Status(status),
        (None, Some(error)) => AttemptOutcome::Error(error),
        (None, None) => return Err(unreadable("no outcome".into())),
    };
    Ok(Attempt {
        seq: stored.seq,
        kind: ChangeType::parse(&stored.kind).ok_or_else(|| unreadable(stored.kind.clone()))?,
        message_id: stored.message_id,
        attempt: stored.attempt,
        at_ms: stored.at_ms,
        outcome,
        next_retry_at_ms: stored.next_retry_at_ms,
        failed: stored.failed,
    })
}

/// A webhook one deliverer works on, with its progress as last saved.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub webhook: Webhook,
    pub progress: Progress,
}

/// Where webhooks and their delivery state are kept.
///
/// Deliverers claim the webhooks they work on: in a store of one process every webhook is its
/// one deliverer's; a shared store (PostgreSQL) hands each webhook to one replica at a time, for a
/// lease the replica renews with every save. A replica that stops saving loses its webhooks to
/// another once the lease runs out.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Adds a webhook, unless [`WEBHOOKS_MAX`] are kept already.
    async fn create(&self, webhook: &Webhook) -> Result<(), Error>;
    /// Every webhook, oldest first.
    async fn list(&self) -> Result<Vec<Webhook>, Error>;
    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, Error>;
    /// Removes a webhook with its progress and attempts; `false` when there was none.
    async fn delete(&self, id: WebhookId) -> Result<bool, Error>;
    /// A webhook's recent attempts, newest first, at most
    /// [`ATTEMPTS_KEPT_MAX`](crate::domain::ATTEMPTS_KEPT_MAX).
    async fn attempts(&self, id: WebhookId) -> Result<Vec<Attempt>, Error>;
    /// The webhooks `owner` may deliver now, claimed (or their claim renewed) until
    /// `now_ms + lease_ms`.
    async fn claim(&self, owner: Uuid, now_ms: i64, lease_ms: i64) -> Result<Vec<Claimed>, Error>;
    /// Saves a webhook's progress and new attempts, and renews `owner`'s claim. `false` when the
    /// webhook is gone or no longer `owner`'s: the deliverer then stops working on it.
    async fn save(
        &self,
        id: WebhookId,
        owner: Uuid,
        progress: &Progress,
        attempts: &[Attempt],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, Error>;
    /// Gives up `owner`'s claims (on a clean stop), so another replica need not wait for them.
    async fn release(&self, owner: Uuid) -> Result<(), Error>;
}

/// The admin side of webhooks.
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
}

impl Webhooks {
    pub fn new(store: Arc<dyn WebhookStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.store
    }

    /// A new webhook with a new signing secret; it hears every change the feed still keeps,
    /// then every new one.
    pub async fn create(&self, url: WebhookUrl, types: WebhookTypes) -> Result<Webhook, Error> {
        let webhook = Webhook {
            id: WebhookId::generate(),
            url,
            types,
            secret: SigningSecret::generate()?,
            created_at_ms: self.clock.now_ms(),
        };
        self.store.create(&webhook).await?;
        Ok(webhook)
    }

    pub async fn list(&self) -> Result<Vec<Webhook>, Error> {
        self.store.list().await
    }

    pub async fn get(&self, id: WebhookId) -> Result<Webhook, Error> {
        self.store.get(id).await?.ok_or_else(|| unknown(id))
    }

    pub async fn delete(&self, id: WebhookId) -> Result<(), Error> {
        if self.store.delete(id).await? {
            Ok(())
        } else {
            Err(unknown(id))
        }
    }

    pub async fn attempts(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        if self.store.get(id).await?.is_none() {
            return Err(unknown(id));
        }
        self.store.attempts(id).await
    }
}

fn unknown(id: WebhookId) -> Error {
    Error::UnknownWebhook(format!("unknown webhook '{id}'"))
}

fn limit_reached() -> Error {
    Error::WebhooksLimitReached(format!(
        "{WEBHOOKS_MAX} webhooks are kept already: delete one first"
    ))
}

#[cfg(test)]
mod tests;
