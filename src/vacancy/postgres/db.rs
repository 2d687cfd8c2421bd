//! The pool and the runtime its connections live on: connecting, the time limit on every call,
//! and what a failed or stalled call means (for the batch, and for the connection it ran on).

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::runtime::Runtime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::domain::Error;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?options=...`; may carry a password.
    pub url: String,
    /// Most connections this process opens: the writer keeps one, reads share the rest.
    pub connections_max: usize,
    /// Longest wait for a connection or for one statement.
    pub timeout: Duration,
}

/// The pool and the runtime its connections live on.
pub(super) struct Db {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    pub(super) pool: Pool,
    timeout: Duration,
}

impl Db {
    pub(super) fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let mut pg = tokio_postgres::Config::from_str(&config.url).map_err(|e| {
            // The parser's message never repeats the URL, so no password reaches the log.
            Error::Storage(format!("the database URL is not valid: {e}"))
        })?;
        pg.connect_timeout(config.timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("ticketd");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.connections_max.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .build()
            .map_err(|e| Error::Storage(format!("cannot set up the database pool: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ticketd-db")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the database runtime: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
            pool,
            timeout: config.timeout,
        })
    }

    fn runtime(&self) -> Result<&Runtime, Error> {
        self.runtime
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the database connection is closing".into()))
    }

    /// Runs `work` from a thread outside any runtime (the writer), within the time limit.
    pub(super) fn block_on<T>(
        &self,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.runtime()?.block_on(within(self.timeout, work))
    }

    /// Runs `work` with a pooled connection on the database runtime, from any async context.
    pub(super) async fn read<T, F, Fut>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send,
    {
        let pool = self.pool.clone();
        let task = self.runtime()?.spawn(within(self.timeout, async move {
            work(connect(&pool).await?).await
        }));
        task.await
            .map_err(|e| Error::Internal(format!("a database read failed: {e}")))?
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // The last handle may go inside another runtime (an HTTP worker), where a blocking
        // shutdown is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn within<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(Error::Unavailable(format!(
            "{NO_ANSWER} within {} ms",
            limit.as_millis()
        )))
    })
}

/// How a timed-out database call's error begins.
const NO_ANSWER: &str = "the database did not answer";

pub(super) fn timed_out(error: &Error) -> bool {
    matches!(error, Error::Unavailable(text) if text.starts_with(NO_ANSWER))
}

pub(super) async fn connect(pool: &Pool) -> Result<Object, Error> {
    pool.get().await.map_err(|e| {
        let cause = match e {
            deadpool_postgres::PoolError::Backend(e) => describe(&e),
            other => other.to_string(),
        };
        Error::Unavailable(format!("the database is unreachable: {cause}"))
    })
}

/// The error and its causes in one line (tokio-postgres keeps the server's message as a cause).
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// What a failed statement means for the batch: collided with another replica (decide again),
/// lost the database (unavailable), or refused by it (a storage failure).
pub(super) fn failed(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |error| {
        let text = format!("{what}: {}", describe(&error));
        match error.code() {
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::UNIQUE_VIOLATION =>
            {
                Error::Contention(text)
            }
            // The server is going away or is not the primary (shutting down, restarting, a
            // standby, a session ended by an operator): the database is unavailable for now,
            // not broken.
            Some(code)
                if code.code().starts_with("08")
                    || code.code().starts_with("57P")
                    || *code == SqlState::READ_ONLY_SQL_TRANSACTION =>
            {
                Error::Unavailable(format!("the database is unavailable: {text}"))
            }
            Some(_) => Error::Storage(text),
            None => Error::Unavailable(format!("the database is unreachable: {text}")),
        }
    }
}

pub(super) async fn query(
    client: &Object,
    what: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let statement = client.prepare_cached(sql).await.map_err(failed(what))?;
    client.query(&statement, params).await.map_err(failed(what))
}

pub(super) async fn execute(
    client: &Object,
    what: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Error> {
    let statement = client.prepare_cached(sql).await.map_err(failed(what))?;
    client
        .execute(&statement, params)
        .await
        .map_err(failed(what))
}
