//! Webhooks in the PostgreSQL store (tables of migration 5), on a small pool of their own.
//!
//! Several replicas share them, and each webhook is delivered by one replica at a time: a
//! replica claims the webhooks that are free, its own, or whose lease ran out, renews its lease
//! with every save, and a save that finds the lease gone (taken over, or the webhook deleted)
//! stops that replica's work on it. Leases run on the database's clock, so replicas' clocks need
//! not agree. `FOR UPDATE SKIP LOCKED` keeps two replicas claiming at once from waiting on each
//! other or taking the same webhook.

use async_trait::async_trait;
use deadpool_postgres::Object;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    Claimed, Progress, WebhookStore, attempt_from_stored, attempt_to_stored, limit_reached,
};
use crate::domain::{
    ATTEMPTS_KEPT_MAX, Attempt, Error, SigningSecret, WEBHOOKS_MAX, Webhook, WebhookId,
    WebhookTypes, WebhookUrl,
};
use crate::vacancy::postgres::PostgresConfig;
use crate::vacancy::postgres::db::{Db, execute, failed, query};
use crate::vacancy::postgres::rows::column;

/// The database's clock, in ms since the epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";
/// Taken while counting and adding webhooks, so that replicas adding at once keep the limit.
const CREATE_LOCK: i64 = 0x7469_636b_6574_6477;

pub struct PostgresWebhookStore {
    db: Db,
}

impl PostgresWebhookStore {
    /// Opens a pool of two connections; the schema is the inventory's to migrate, so open this
    /// after the inventory.
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let config = PostgresConfig {
            connections_max: 2,
            ..config.clone()
        };
        Ok(Self {
            db: Db::open(&config)?,
        })
    }
}

const COLUMNS: &str = "id, url, types, secret, created_at_ms";

fn webhook_from(row: &Row) -> Result<Webhook, Error> {
    let unreadable =
        |what: &str| Error::Storage(format!("a stored webhook's {what} is unreadable"));
    let id: Uuid = column(row, 0)?;
    let url: String = column(row, 1)?;
    let types: String = column(row, 2)?;
    Ok(Webhook {
        id: WebhookId::from(id),
        url: WebhookUrl::parse(&url).map_err(|_| unreadable("url"))?,
        types: WebhookTypes::from_stored(&types)?,
        secret: SigningSecret::from_stored(column(row, 3)?)?,
        created_at_ms: column(row, 4)?,
    })
}

/// Runs `work` in a transaction on `client`: committed when it succeeds, rolled back otherwise.
async fn in_transaction<T>(
    client: &Object,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(failed("starting a transaction"))?;
    match work.await {
        Ok(value) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(failed("committing"))?;
            Ok(value)
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

#[async_trait]
impl WebhookStore for PostgresWebhookStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), Error> {
        let webhook = webhook.clone();
        self.db
            .read(move |client| async move {
                let tx = &client;
                in_transaction(tx, async {
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
                        .await
                        .map_err(failed("adding a webhook"))?;
                    let count: i64 = tx
                        .query_one("SELECT count(*) FROM webhooks", &[])
                        .await
                        .map_err(failed("counting webhooks"))?
                        .try_get(0)
                        .map_err(failed("counting webhooks"))?;
                    if count >= WEBHOOKS_MAX as i64 {
                        return Err(limit_reached());
                    }
                    tx.execute(
                        "INSERT INTO webhooks (id, url, types, secret, created_at_ms, progress)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &webhook.id.as_uuid(),
                            &webhook.url.as_str(),
                            &webhook.types.to_stored(),
                            &webhook.secret.expose(),
                            &webhook.created_at_ms,
                            &Progress::default().to_stored(),
                        ],
                    )
                    .await
                    .map_err(failed("adding a webhook"))?;
                    Ok(())
                })
                .await
            })
            .await
    }

    async fn list(&self) -> Result<Vec<Webhook>, Error> {
        self.db
            .read(|client| async move {
                let sql = format!("SELECT {COLUMNS} FROM webhooks ORDER BY created_at_ms, id");
                let rows = query(&client, "listing webhooks", &sql, &[]).await?;
                rows.iter().map(webhook_from).collect()
            })
            .await
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, Error> {
        self.db
            .read(move |client| async move {
                let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1");
                let rows = query(&client, "reading a webhook", &sql, &[&id.as_uuid()]).await?;
                rows.first().map(webhook_from).transpose()
            })
            .await
    }

    async fn delete(&self, id: WebhookId) -> Result<bool, Error> {
        self.db
            .read(move |client| async move {
                let sql = "DELETE FROM webhooks WHERE id = $1";
                Ok(execute(&client, "deleting a webhook", sql, &[&id.as_uuid()]).await? > 0)
            })
            .await
    }

    async fn attempts(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        self.db
            .read(move |client| async move {
                let sql = "SELECT attempt FROM webhook_attempts WHERE webhook_id = $1
                           ORDER BY n DESC LIMIT $2";
                let limit = ATTEMPTS_KEPT_MAX as i64;
                let rows =
                    query(&client, "reading attempts", sql, &[&id.as_uuid(), &limit]).await?;
                rows.iter()
                    .map(|row| attempt_from_stored(&column::<String>(row, 0)?))
                    .collect()
            })
            .await
    }

    async fn claim(&self, owner: Uuid, _: i64, lease_ms: i64) -> Result<Vec<Claimed>, Error> {
        self.db
            .read(move |client| async move {
                let sql = format!(
                    "UPDATE webhooks SET lease_owner = $1, lease_until_ms = {NOW_MS} + $2
                     WHERE id IN (
                         SELECT id FROM webhooks
                         WHERE lease_owner = $1 OR lease_owner IS NULL
                               OR lease_until_ms < {NOW_MS}
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}, progress"
                );
                let rows = query(&client, "claiming webhooks", &sql, &[&owner, &lease_ms]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(Claimed {
                            webhook: webhook_from(row)?,
                            progress: Progress::from_stored(&column::<String>(row, 5)?)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn save(
        &self,
        id: WebhookId,
        owner: Uuid,
        progress: &Progress,
        attempts: &[Attempt],
        _: i64,
        lease_ms: i64,
    ) -> Result<bool, Error> {
        let progress = progress.to_stored();
        let attempts: Vec<String> = attempts.iter().map(attempt_to_stored).collect();
        self.db
            .read(move |client| async move {
                let id = id.as_uuid();
                let tx = &client;
                in_transaction(tx, async {
                let sql = format!(
                    "UPDATE webhooks SET progress = $3, lease_until_ms = {NOW_MS} + $4
                     WHERE id = $1 AND lease_owner = $2"
                );
                let updated = tx
                    .execute(&sql, &[&id, &owner, &progress, &lease_ms])
                    .await
                    .map_err(failed("saving a webhook's progress"))?;
                if updated == 0 {
                    return Ok(false);
                }
                if !attempts.is_empty() {
                    let insert = tx
                        .prepare("INSERT INTO webhook_attempts (webhook_id, attempt) VALUES ($1, $2)")
                        .await
                        .map_err(failed("saving attempts"))?;
                    for attempt in &attempts {
                        tx.execute(&insert, &[&id, attempt])
                            .await
                            .map_err(failed("saving attempts"))?;
                    }
                    let kept = ATTEMPTS_KEPT_MAX as i64;
                    tx.execute(
                        "DELETE FROM webhook_attempts WHERE webhook_id = $1 AND n <= (
                             SELECT n FROM webhook_attempts WHERE webhook_id = $1
                             ORDER BY n DESC OFFSET $2 LIMIT 1)",
                        &[&id, &kept],
                    )
                    .await
                    .map_err(failed("trimming attempts"))?;
                }
                Ok(true)
                })
                .await
            })
            .await
    }

    async fn release(&self, owner: Uuid) -> Result<(), Error> {
        self.db
            .read(move |client| async move {
                let sql = "UPDATE webhooks SET lease_owner = NULL, lease_until_ms = 0
                           WHERE lease_owner = $1";
                execute(&client, "giving up webhooks", sql, &[&owner])
                    .await
                    .map(drop)
            })
            .await
    }
}
