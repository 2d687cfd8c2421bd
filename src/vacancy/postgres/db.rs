//! The pool and the runtime its connections live on: connecting, the time limit on every call,
//! and what a failed or stalled call means (for the batch, and for the connection it ran on).

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::runtime::Runtime;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::primary::Primary;
use crate::config::Secret;
use crate::domain::Error;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?options=...`, with several `host:port`s
    /// separated by commas for a primary and its standbys; may carry a password, so it stays
    /// wrapped until the moment of connecting.
    pub url: Secret,
    /// Most connections this process opens: the writer keeps one, reads share the rest.
    pub connections_max: usize,
    /// Longest wait for a connection or for one statement.
    pub timeout: Duration,
}

/// The pool and the runtime its connections live on.
pub(crate) struct Db {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    pub(super) pool: Pool,
    timeout: Duration,
}

impl Db {
    pub(crate) fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let mut pg = tokio_postgres::Config::from_str(config.url.expose()).map_err(|e| {
            // The parser's message never repeats the URL, so no password reaches the log.
            Error::Storage(format!("the database URL is not valid: {e}"))
        })?;
        pg.connect_timeout(config.timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("ticketd");
        }
        let primary = Primary::new(config.url.expose(), &pg, config.timeout);
        let manager = Manager::from_connect(
            pg,
            primary,
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
    ) -> Result<T, Failure> {
        self.block_on_by(None, work)
    }

    /// [`Self::block_on`], ending by `deadline` too when one is given: the writer's batch ends
    /// when its oldest request has waited the whole limit, however many calls it makes. A call
    /// cut short reports the limit, as it is the request's wait that ran out.
    pub(super) fn block_on_by<T>(
        &self,
        deadline: Option<std::time::Instant>,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Failure> {
        let left = deadline.map_or(self.timeout, |deadline| {
            deadline.saturating_duration_since(std::time::Instant::now())
        });
        let outcome = self
            .runtime()?
            .block_on(within(left.min(self.timeout), work));
        outcome.map_err(|failure| match failure {
            Failure::NoAnswer(_) => Failure::NoAnswer(self.timeout),
            other => other,
        })
    }

    /// The limit of one call, and of one request's whole wait.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `work` with a pooled connection on the database runtime, from any async context,
    /// within the time limit (getting the connection included). The connection goes back to the
    /// pool unless the call left it unsound (see [`Failure::leaves_unsound`]): a connection that
    /// got no answer in time may never get one (a host that vanished without closing it), and
    /// every later read that picked it would wait out its whole limit too.
    pub(crate) async fn read<T, F, Fut>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Object>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send,
    {
        let pool = self.pool.clone();
        let limit = self.timeout;
        let task = self.runtime()?.spawn(async move {
            let deadline = tokio::time::Instant::now() + limit;
            let client = Arc::new(within_at(deadline, limit, connect(&pool)).await?);
            let outcome = within_at(deadline, limit, work(Arc::clone(&client))).await;
            if let Err(failure) = &outcome
                && failure.leaves_unsound(&client)
                // The work is over (a late answer is dropped with it), so this is the only
                // handle, unless the work kept one: then it goes back when that one is dropped.
                && let Ok(client) = Arc::try_unwrap(client)
            {
                drop(Object::take(client));
            }
            outcome
        });
        let outcome = task
            .await
            .map_err(|e| Error::Internal(format!("a database read failed: {e}")))?;
        Ok(outcome?)
    }

    /// What to do with the writer's `client` after a call on it failed with `failure`: keep it
    /// for the next call if it is sound, or drop it, and the next call opens a new one. A
    /// connection that got no answer in time, has closed, or is on a server going away or taking
    /// no writes is dropped; one that may be inside a
    /// transaction (`transaction`) is rolled back first, or dropped if even that fails. Dropping
    /// detaches the connection from the pool, so closing it ends any transaction on it.
    pub(super) fn keep_after(
        &self,
        client: Object,
        failure: &Failure,
        transaction: bool,
    ) -> Option<Object> {
        if failure.leaves_unsound(&client) {
            drop(Object::take(client));
            return None;
        }
        if transaction {
            let rollback = async {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(failed("rolling back"))
            };
            if self.block_on(rollback).is_err() {
                drop(Object::take(client));
                return None;
            }
        }
        Some(client)
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

/// How a call on the database failed, as far as the connection it ran on is concerned.
#[derive(Clone, Debug)]
pub(super) enum Failure {
    /// No answer within the time limit (the limit is kept for the message). Whatever the call
    /// sent may still be running or queued on the server, so the connection is of no further use.
    NoAnswer(Duration),
    /// Any other failure, already what the rest of ticketd sees.
    Failed(Error),
}

impl Failure {
    /// Whether the connection `client` the failed call ran on is of no further use.
    fn leaves_unsound(&self, client: &Object) -> bool {
        match self {
            // A server that stopped answering would only time out again on this connection.
            Failure::NoAnswer(_) => true,
            // The server is going away or takes no writes (see [`failed`]): it will not be the
            // primary again on this connection, and the next one may find the one that is.
            Failure::Failed(Error::Unavailable(_)) => true,
            Failure::Failed(_) => client.is_closed(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Failed(error)
    }
}

impl From<Failure> for Error {
    /// A database that does not answer is `unavailable` (503), as it has always been answered;
    /// [`Error::Timeout`] is the ticket service's wait for vacancy, with a code and message of
    /// its own.
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::NoAnswer(limit) => Error::Unavailable(format!(
                "the database did not answer within {} ms",
                limit.as_millis()
            )),
            Failure::Failed(error) => error,
        }
    }
}

/// [`within`], with a deadline instead: several steps sharing one `limit`.
async fn within_at<T>(
    deadline: tokio::time::Instant,
    limit: Duration,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(outcome) => Ok(outcome?),
        Err(_) => Err(Failure::NoAnswer(limit)),
    }
}

async fn within<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, work).await {
        Ok(outcome) => Ok(outcome?),
        Err(_) => Err(Failure::NoAnswer(limit)),
    }
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
pub(crate) fn failed(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
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

pub(crate) async fn query(
    client: &Object,
    what: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let statement = client.prepare_cached(sql).await.map_err(failed(what))?;
    client.query(&statement, params).await.map_err(failed(what))
}

pub(crate) async fn execute(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_with_no_answer_in_time_reaches_clients_as_unavailable_with_its_limit() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let limit = Duration::from_millis(20);
        let never = std::future::pending::<Result<(), Error>>();
        let failure = runtime.block_on(within(limit, never)).unwrap_err();
        assert!(
            matches!(failure, Failure::NoAnswer(l) if l == limit),
            "{failure:?}"
        );
        let error = Error::from(failure);
        assert_eq!(error.code(), "unavailable");
        assert_eq!(
            error.to_string(),
            "the database did not answer within 20 ms"
        );

        // An answer that is an error within the limit stays that error.
        let refused = async { Err::<(), _>(Error::Contention("collided".into())) };
        let failure = runtime.block_on(within(limit, refused)).unwrap_err();
        assert!(
            matches!(&failure, Failure::Failed(Error::Contention(text)) if text == "collided"),
            "{failure:?}"
        );
    }

    /// A pool on the test database with a 300 ms limit. Needs `TICKETD_TEST_DATABASE_URL`;
    /// without it the test is skipped with a line on stderr (and fails when `CI` is set, so CI
    /// cannot skip it by accident).
    fn test_db(test: &str) -> Option<Db> {
        use std::io::Write;
        let Ok(url) = std::env::var("TICKETD_TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "TICKETD_TEST_DATABASE_URL is not set, and CI must run the PostgreSQL tests"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set TICKETD_TEST_DATABASE_URL"
            );
            return None;
        };
        let db = Db::open(&PostgresConfig {
            url: Secret::new(url),
            connections_max: 2,
            timeout: Duration::from_millis(300),
        })
        .unwrap();
        Some(db)
    }

    #[test]
    fn a_connection_that_got_no_answer_is_dropped_and_one_that_was_refused_is_kept() {
        let Some(db) =
            test_db("a_connection_that_got_no_answer_is_dropped_and_one_that_was_refused_is_kept")
        else {
            return;
        };
        let backend = |client: &Object| -> i32 {
            db.block_on(query(
                client,
                "naming the backend",
                "SELECT pg_backend_pid()",
                &[],
            ))
            .unwrap()[0]
                .get(0)
        };
        let client = db.block_on(connect(&db.pool)).unwrap();
        let first = backend(&client);

        // Refused by the server: the connection is sound and kept.
        let refused = db.block_on(query(&client, "dividing", "SELECT 1/0", &[]));
        let failure = refused.unwrap_err();
        assert!(
            matches!(failure, Failure::Failed(Error::Storage(_))),
            "{failure:?}"
        );
        let client = db.keep_after(client, &failure, false).expect("kept");
        assert_eq!(backend(&client), first);

        // Refused inside a transaction: rolled back, then kept, and usable outside it.
        let begun = async {
            client
                .batch_execute("BEGIN")
                .await
                .map_err(failed("beginning"))
        };
        db.block_on(begun).unwrap();
        let failure = db
            .block_on(query(&client, "dividing", "SELECT 1/0", &[]))
            .unwrap_err();
        let client = db.keep_after(client, &failure, true).expect("kept");
        assert_eq!(backend(&client), first);

        // No answer in time: the connection leaves the pool, and the next call gets a new one.
        let slow = db.block_on(query(&client, "sleeping", "SELECT pg_sleep(2)", &[]));
        let failure = slow.unwrap_err();
        assert!(matches!(failure, Failure::NoAnswer(_)), "{failure:?}");
        assert!(db.keep_after(client, &failure, false).is_none());
        assert_eq!(
            db.pool.status().size,
            0,
            "the connection went back to the pool"
        );
        let client = db.block_on(connect(&db.pool)).unwrap();
        assert_ne!(backend(&client), first);
    }

    /// A server that no longer takes writes (a primary turned read-only, or a standby reached by
    /// mistake) answers every write with an error: the connection is dropped, so the next call
    /// connects again and finds the primary, instead of deciding nothing on this one forever.
    #[test]
    fn a_connection_to_a_server_that_refuses_writes_is_dropped() {
        let Some(db) = test_db("a_connection_to_a_server_that_refuses_writes_is_dropped") else {
            return;
        };
        let client = db.block_on(connect(&db.pool)).unwrap();
        let read_only = async {
            client
                .batch_execute("SET default_transaction_read_only = on")
                .await
                .map_err(failed("turning read-only"))
        };
        db.block_on(read_only).unwrap();
        let write = "CREATE TEMPORARY TABLE refused (n INTEGER)";
        let failure = db
            .block_on(execute(&client, "writing", write, &[]))
            .unwrap_err();
        assert!(
            matches!(&failure, Failure::Failed(Error::Unavailable(text)) if text.contains("read-only")),
            "{failure:?}"
        );
        assert!(db.keep_after(client, &failure, false).is_none());
        assert_eq!(
            db.pool.status().size,
            0,
            "the connection went back to the pool"
        );
        let client = db.block_on(connect(&db.pool)).unwrap();
        db.block_on(execute(&client, "writing", write, &[]))
            .expect("a new connection takes writes");
    }

    /// The test database's URL with `hosts` before its own.
    fn with_hosts_before(url: &str, hosts: &[std::net::SocketAddr]) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (credentials, rest) = match rest.split_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let before: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        format!("{scheme}://{credentials}{},{rest}", before.join(","))
    }

    /// A failover leaves the URL's first hosts dead: one refuses connections, one accepts them
    /// and never answers (a hung server). Connections are still made within the time limit, to
    /// the host that takes writes, and the next ones go straight to it.
    #[test]
    fn connections_go_to_the_first_host_that_answers_within_its_share_of_the_limit() {
        let Ok(url) = std::env::var("TICKETD_TEST_DATABASE_URL") else {
            // test_db says why it skips, or fails under CI.
            assert!(test_db("connections_go_to_the_first_host_that_answers").is_none());
            return;
        };
        let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refusing_addr = refusing.local_addr().unwrap();
        drop(refusing);
        // Bound and never accepted from: the kernel completes the handshake, and the server's
        // greeting never comes.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        hung.set_nonblocking(true).unwrap();
        let url = with_hosts_before(&url, &[refusing_addr, hung.local_addr().unwrap()]);
        let db = Db::open(&PostgresConfig {
            url: Secret::new(url),
            connections_max: 4,
            timeout: Duration::from_millis(1500),
        })
        .unwrap();
        let first = db
            .block_on(connect(&db.pool))
            .expect("the third host is reached");
        let tried = std::iter::from_fn(|| hung.accept().ok()).count();
        assert_eq!(tried, 1, "the hung host was tried once");
        // A second connection (the first is still out) goes straight to the host that answered.
        let second = db.block_on(connect(&db.pool)).unwrap();
        assert_eq!(db.pool.status().size, 2);
        assert_eq!(std::iter::from_fn(|| hung.accept().ok()).count(), 0);
        drop((first, second));
    }

    /// A server that takes no writes (a standby; here, a session made read-only) is refused when
    /// connecting, whatever the URL asks for: it answers unavailable, and is never written to.
    #[test]
    fn a_server_that_takes_no_writes_is_not_connected_to() {
        let Some(_) = test_db("a_server_that_takes_no_writes_is_not_connected_to") else {
            return;
        };
        let url = std::env::var("TICKETD_TEST_DATABASE_URL").unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{url}{separator}target_session_attrs=any\
             &options=-c%20default_transaction_read_only%3Don"
        );
        let db = Db::open(&PostgresConfig {
            url: Secret::new(url),
            connections_max: 2,
            timeout: Duration::from_millis(1000),
        })
        .unwrap();
        let refused = db.block_on(connect(&db.pool)).unwrap_err();
        assert!(
            matches!(&refused, Failure::Failed(Error::Unavailable(text)) if text.contains("does not allow writes")),
            "{refused:?}"
        );
    }

    /// A read that got no answer in time must not hand its connection back to the pool: the
    /// server may never answer on it (a host that vanished without closing it), and every later
    /// read that picked it would wait out its whole time limit too.
    #[test]
    fn a_read_that_got_no_answer_does_not_return_its_connection_to_the_pool() {
        let Some(db) =
            test_db("a_read_that_got_no_answer_does_not_return_its_connection_to_the_pool")
        else {
            return;
        };
        // `Db::read` puts its own time limit on the work; the runtime only drives it.
        let read = |sql: &'static str| {
            db.runtime()
                .unwrap()
                .block_on(db.read(move |client| async move {
                    let rows = query(&client, "reading", sql, &[]).await?;
                    Ok(rows.first().and_then(|row| row.try_get::<_, i32>(0).ok()))
                }))
        };
        let first = read("SELECT pg_backend_pid()").unwrap();
        let error = read("SELECT 1 FROM pg_sleep(2)").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the database did not answer within 300 ms"
        );
        assert_eq!(
            db.pool.status().size,
            0,
            "the connection that got no answer went back to the pool"
        );
        // The next read gets a connection of its own, and an answer at once.
        assert_ne!(read("SELECT pg_backend_pid()").unwrap(), first);
    }
}
