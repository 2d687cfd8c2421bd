//! Webhooks of the embedded store, in a file of their own in the data directory
//! (`webhooks.sqlite3`), on a connection of their own: delivery bookkeeping never waits for, nor
//! holds up, the inventory writer's database. Every call runs on a blocking thread.
//!
//! Durability: WAL journal. Making and deleting a webhook are fsync'd (`synchronous = FULL`);
//! saving progress is not (`NORMAL`): it survives the process being killed, and what a power
//! loss takes is only the last rounds' progress, whose changes are then delivered again with the
//! same `webhook-id`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{
    Claimed, Progress, WebhookStore, attempt_from_stored, attempt_to_stored, limit_reached,
};
use crate::domain::{
    ATTEMPTS_KEPT_MAX, Attempt, Error, SigningSecret, WEBHOOKS_MAX, Webhook, WebhookId,
    WebhookTypes, WebhookUrl,
};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "webhooks.sqlite3";
/// A webhook's old attempts are deleted once it has this many more than it keeps.
const TRIM_EVERY: i64 = 32;
/// The layout of the file this release writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

pub struct SqliteWebhookStore {
    connection: Arc<Mutex<Connection>>,
}

fn storage(error: rusqlite::Error) -> Error {
    Error::Storage(format!("webhooks store: {error}"))
}

impl SqliteWebhookStore {
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        let path = data_dir.join(FILE_NAME);
        let connection = Connection::open(&path).map_err(storage)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(storage)?;
        if version > SCHEMA_VERSION {
            return Err(Error::Storage(format!(
                "{} was written by a newer release (layout {version}; this release knows up to \
                 {SCHEMA_VERSION})",
                path.display()
            )));
        }
        connection
            .execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS webhooks (
                     id TEXT PRIMARY KEY,
                     url TEXT NOT NULL,
                     types TEXT NOT NULL,
                     secret TEXT NOT NULL,
                     created_at_ms INTEGER NOT NULL,
                     progress TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS webhook_attempts (
                     n INTEGER PRIMARY KEY AUTOINCREMENT,
                     webhook_id TEXT NOT NULL,
                     attempt TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS webhook_attempts_by_webhook
                     ON webhook_attempts (webhook_id, n);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .map_err(storage)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection, on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || work(&mut connection.lock()))
            .await
            .map_err(|e| Error::Internal(format!("webhooks store: {e}")))?
    }
}

fn read_webhook(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn webhook_from(
    (id, url, types, secret, created_at_ms): (String, String, String, String, i64),
) -> Result<Webhook, Error> {
    let unreadable =
        |what: &str| Error::Storage(format!("a stored webhook's {what} is unreadable"));
    Ok(Webhook {
        id: Uuid::parse_str(&id).map_err(|_| unreadable("id"))?.into(),
        url: WebhookUrl::parse(&url).map_err(|_| unreadable("url"))?,
        types: WebhookTypes::from_stored(&types)?,
        secret: SigningSecret::from_stored(secret)?,
        created_at_ms,
    })
}

const COLUMNS: &str = "id, url, types, secret, created_at_ms";

#[async_trait]
impl WebhookStore for SqliteWebhookStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), Error> {
        let webhook = webhook.clone();
        self.with(move |connection| {
            connection
                .pragma_update(None, "synchronous", "FULL")
                .map_err(storage)?;
            let result = (|| {
                let tx = connection.transaction().map_err(storage)?;
                let count: i64 = tx
                    .query_row("SELECT count(*) FROM webhooks", [], |row| row.get(0))
                    .map_err(storage)?;
                if count >= WEBHOOKS_MAX as i64 {
                    return Err(limit_reached());
                }
                tx.execute(
                    "INSERT INTO webhooks (id, url, types, secret, created_at_ms, progress)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        webhook.id.to_string(),
                        webhook.url.as_str(),
                        webhook.types.to_stored(),
                        webhook.secret.expose(),
                        webhook.created_at_ms,
                        Progress::default().to_stored(),
                    ],
                )
                .map_err(storage)?;
                tx.commit().map_err(storage)
            })();
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(storage)?;
            result
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Webhook>, Error> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM webhooks ORDER BY created_at_ms, id"
                ))
                .map_err(storage)?;
            let rows = statement
                .query_map([], read_webhook)
                .map_err(storage)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(storage)?;
            rows.into_iter().map(webhook_from).collect()
        })
        .await
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, Error> {
        self.with(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"),
                    [id.to_string()],
                    read_webhook,
                )
                .optional()
                .map_err(storage)?
                .map(webhook_from)
                .transpose()
        })
        .await
    }

    async fn delete(&self, id: WebhookId) -> Result<bool, Error> {
        self.with(move |connection| {
            connection
                .pragma_update(None, "synchronous", "FULL")
                .map_err(storage)?;
            let result = (|| {
                let tx = connection.transaction().map_err(storage)?;
                let deleted = tx
                    .execute("DELETE FROM webhooks WHERE id = ?1", [id.to_string()])
                    .map_err(storage)?;
                tx.execute(
                    "DELETE FROM webhook_attempts WHERE webhook_id = ?1",
                    [id.to_string()],
                )
                .map_err(storage)?;
                tx.commit().map_err(storage)?;
                Ok(deleted > 0)
            })();
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(storage)?;
            result
        })
        .await
    }

    async fn attempts(&self, id: WebhookId) -> Result<Vec<Attempt>, Error> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT attempt FROM webhook_attempts WHERE webhook_id = ?1
                     ORDER BY n DESC LIMIT ?2",
                )
                .map_err(storage)?;
            let rows = statement
                .query_map(params![id.to_string(), ATTEMPTS_KEPT_MAX as i64], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(storage)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(storage)?;
            rows.iter().map(|raw| attempt_from_stored(raw)).collect()
        })
        .await
    }

    async fn claim(&self, _: Uuid, _: i64, _: i64) -> Result<Vec<Claimed>, Error> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, progress FROM webhooks ORDER BY created_at_ms, id"
                ))
                .map_err(storage)?;
            let rows = statement
                .query_map([], |row| Ok((read_webhook(row)?, row.get::<_, String>(5)?)))
                .map_err(storage)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(storage)?;
            rows.into_iter()
                .map(|(webhook, progress)| {
                    Ok(Claimed {
                        webhook: webhook_from(webhook)?,
                        progress: Progress::from_stored(&progress)?,
                    })
                })
                .collect()
        })
        .await
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
        let progress = progress.to_stored();
        let attempts: Vec<String> = attempts.iter().map(attempt_to_stored).collect();
        self.with(move |connection| {
            let tx = connection.transaction().map_err(storage)?;
            let id = id.to_string();
            let updated = tx
                .prepare_cached("UPDATE webhooks SET progress = ?2 WHERE id = ?1")
                .and_then(|mut update| update.execute(params![id, progress]))
                .map_err(storage)?;
            if updated == 0 {
                return Ok(false);
            }
            if !attempts.is_empty() {
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO webhook_attempts (webhook_id, attempt) VALUES (?1, ?2)",
                        )
                        .map_err(storage)?;
                    for attempt in &attempts {
                        insert.execute(params![id, attempt]).map_err(storage)?;
                    }
                }
                // Older attempts go now and then, not on every save: reads take the newest
                // ATTEMPTS_KEPT_MAX anyway, and a few dozen more rows cost less than a delete
                // each time. Counted per webhook (a range of the index): one webhook's attempts
                // never go untrimmed however saves of several interleave.
                let kept: i64 = tx
                    .prepare_cached("SELECT count(*) FROM webhook_attempts WHERE webhook_id = ?1")
                    .and_then(|mut count| count.query_row(params![id], |row| row.get(0)))
                    .map_err(storage)?;
                if kept >= ATTEMPTS_KEPT_MAX as i64 + TRIM_EVERY {
                    tx.prepare_cached(
                        "DELETE FROM webhook_attempts WHERE webhook_id = ?1 AND n <= (
                             SELECT n FROM webhook_attempts WHERE webhook_id = ?1
                             ORDER BY n DESC LIMIT 1 OFFSET ?2)",
                    )
                    .and_then(|mut trim| trim.execute(params![id, ATTEMPTS_KEPT_MAX as i64]))
                    .map_err(storage)?;
                }
            }
            tx.commit().map_err(storage)?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, _: Uuid) -> Result<(), Error> {
        Ok(())
    }
}
