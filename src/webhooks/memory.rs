//! Webhooks kept in memory: for the memory store, which forgets everything on restart anyway.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{Claimed, Progress, WebhookStore, limit_reached};
use crate::domain::{ATTEMPTS_KEPT_MAX, Attempt, Error, WEBHOOKS_MAX, Webhook, WebhookId};

struct Kept {
    webhook: Webhook,
    progress: Progress,
    /// Newest last.
    attempts: VecDeque<Attempt>,
}

#[derive(Default)]
pub struct MemoryWebhookStore {
    /// Oldest first. A `parking_lot` mutex: held for a few copies, never across an `.await`.
    kept: Mutex<Vec<Kept>>,
}

impl MemoryWebhookStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), Error> {
        let mut kept = self.kept.lock();
        if kept.len() >= WEBHOOKS_MAX {
            return Err(limit_reached());
        }
        kept.push(Kept {
            webhook: webhook.clone(),
            progress: Progress::default(),
            attempts: VecDeque::new(),
        });
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Webhook>, Error> {
        Ok(self.kept.lock().iter().map(|k| k.webhook.clone()).collect())
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, Error> {
        let kept = self.kept.lock();
        Ok(kept
            .iter()
            .find(|k| k.webhook.id == id)
            .map(|k| k.webhook.clone()))
    }

    async fn delete(&self, id: WebhookId) -> Result<bool, Error> {
        let mut kept = self.kept.lock();
        let before = kept.len();
        kept.retain(|k| k.webhook.id != id);
        Ok(kept.len() < before)
    }

    async fn attempts(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        let kept = self.kept.lock();
        Ok(kept
            .iter()
            .find(|k| k.webhook.id == id)
            .map(|k| k.attempts.iter().rev().cloned().collect())
            .unwrap_or_default())
    }

    async fn claim(&self, _: Uuid, _: i64, _: i64) -> Result<Vec<Claimed>, Error> {
        Ok(self
            .kept
            .lock()
            .iter()
            .map(|k| Claimed {
                webhook: k.webhook.clone(),
                progress: k.progress.clone(),
            })
            .collect())
    }

    async fn save(
        &self,
        id: WebhookId,
        _: Uuid,
        progress: &Progress,
        attempts: &[Attempt],
        _: i64,
        _: i64,
    ) -> Result<bool, Error> {
        let mut kept = self.kept.lock();
        let Some(k) = kept.iter_mut().find(|k| k.webhook.id == id) else {
            return Ok(false);
        };
        k.progress = progress.clone();
        k.attempts.extend(attempts.iter().cloned());
        while k.attempts.len() > ATTEMPTS_KEPT_MAX {
            k.attempts.pop_front();
        }
        Ok(true)
    }

    async fn release(&self, _: Uuid) -> Result<(), Error> {
        Ok(())
    }
}
