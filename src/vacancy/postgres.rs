//! The shared ledger: one PostgreSQL(-compatible) database under any number of vacancy replicas.
//!
//! Each replica keeps its single writer and group commit; what changes is where a batch starts.
//! [`SharedLedger::begin`] opens a transaction, locks every event the batch may change with
//! `SELECT … FOR UPDATE` in id order (so two replicas never wait on each other in a circle), and
//! reads those events and the orders and idempotency keys the batch names. The writer then decides
//! exactly as it does on the embedded store, and [`Ledger::commit`] writes the decisions and
//! commits. A replica whose batch needs an event another replica has locked waits, then decides on
//! what the other committed. So a hot event costs one row lock per *batch*, not per request.
//!
//! Expiry across replicas: a batch sweeps due holds it finds with a plain query, then locks their
//! events like any other; the writer re-reads each hold under the lock and expires only what is
//! still held, so a hold is released once however many replicas sweep at the same moment.
//!
//! Only standard SQL is used on the data path (row locks, `ON CONFLICT`, `UNNEST` of arrays), so
//! PostgreSQL-compatible distributed databases can serve too; serialisation failures, deadlocks
//! and duplicate keys come back as [`Error::Contention`], and the writer decides the batch again.
//!
//! Driver: tokio-postgres with a deadpool pool. All database I/O runs on one small runtime owned
//! by the ledger, so the writer thread (which blocks) and the HTTP workers (which await) share one
//! pool whatever thread they are on. Every call has a time limit; a connection that failed or
//! timed out is closed, and the next call opens a new one, so the ledger recovers by itself when
//! the database comes back.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::future::{try_join, try_join3, try_join4};
use tokio::runtime::Runtime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::ledger::{Batch, Ledger, Plan, SharedLedger, SharedReads, Snapshot};
use crate::domain::{
    Error, Event, EventId, EventsPage, IdempotencyKey, KeyRecord, Order, OrderStatus, PageQuery,
    ReservationId, Stock,
};

/// Schema changes, in order. Each runs once per database, in its own transaction, however many
/// replicas start at once. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "events, orders and idempotency keys",
    "
CREATE TABLE events (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    capacity  BIGINT NOT NULL CHECK (capacity >= 0),
    available BIGINT NOT NULL CHECK (available >= 0),
    held      BIGINT NOT NULL CHECK (held >= 0),
    sold      BIGINT NOT NULL CHECK (sold >= 0),
    CHECK (available + held + sold = capacity)
);

CREATE TABLE orders (
    id            UUID PRIMARY KEY,
    event         TEXT NOT NULL REFERENCES events (id),
    qty           INTEGER NOT NULL CHECK (qty > 0),
    status        TEXT NOT NULL
                  CHECK (status IN ('held', 'confirmed', 'cancelled', 'released', 'expired')),
    remaining     BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT
);

CREATE INDEX orders_live_holds ON orders (expires_at_ms) WHERE status = 'held';

CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    order_id      UUID,
    remaining     BIGINT NOT NULL,
    changed       BOOLEAN NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);

-- One row: the identity replicas compare to be sure they share this store.
CREATE TABLE ticketd_store (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    id       UUID NOT NULL
);
",
)];

const EVENT_COLUMNS: &str = "id, name, capacity, available, held, sold";
const ORDER_COLUMNS: &str =
    "id, event, qty, status, remaining, created_at_ms, updated_at_ms, expires_at_ms";

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
struct Db {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    pool: Pool,
    timeout: Duration,
}

impl Db {
    fn open(config: &PostgresConfig) -> Result<Self, Error> {
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
    fn block_on<T>(&self, work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        self.runtime()?.block_on(within(self.timeout, work))
    }

    /// Runs `work` with a pooled connection on the database runtime, from any async context.
    async fn read<T, F, Fut>(&self, work: F) -> Result<T, Error>
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

fn timed_out(error: &Error) -> bool {
    matches!(error, Error::Unavailable(text) if text.starts_with(NO_ANSWER))
}

async fn connect(pool: &Pool) -> Result<Object, Error> {
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
fn failed(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
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

async fn query(
    client: &Object,
    what: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let statement = client.prepare_cached(sql).await.map_err(failed(what))?;
    client.query(&statement, params).await.map_err(failed(what))
}

async fn execute(
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

fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, Error> {
    row.try_get(index)
        .map_err(|e| Error::Storage(format!("the database holds an unexpected value: {e}")))
}

fn count(row: &Row, index: usize) -> Result<u64, Error> {
    u64::try_from(column::<i64>(row, index)?)
        .map_err(|_| Error::Storage("the database holds a negative ticket count".into()))
}

fn stored(value: u64) -> i64 {
    // Every count is at most CAPACITY_MAX, far inside i64.
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn event_from(row: &Row) -> Result<Event, Error> {
    Ok(Event {
        id: EventId::parse(column(row, 0)?)?,
        name: column::<&str>(row, 1)?.into(),
        stock: Stock {
            capacity: count(row, 2)?,
            available: count(row, 3)?,
            held: count(row, 4)?,
            sold: count(row, 5)?,
        },
    })
}

fn order_from(row: &Row) -> Result<Order, Error> {
    let id = ReservationId::from(column::<Uuid>(row, 0)?);
    let status: &str = column(row, 3)?;
    Ok(Order {
        id,
        event: EventId::parse(column(row, 1)?)?,
        qty: u32::try_from(column::<i32>(row, 2)?)
            .map_err(|_| Error::Storage(format!("order {id} has a negative quantity")))?,
        status: OrderStatus::parse(status).ok_or_else(|| {
            Error::Storage(format!("order {id} has an unknown status '{status}'"))
        })?,
        remaining: count(row, 4)?,
        created_at_ms: column(row, 5)?,
        updated_at_ms: column(row, 6)?,
        expires_at_ms: column(row, 7)?,
    })
}

fn key_from(row: &Row) -> Result<KeyRecord, Error> {
    Ok(KeyRecord {
        key: IdempotencyKey::decode(column(row, 0)?)?,
        fingerprint: column(row, 1)?,
        order_id: column::<Option<Uuid>>(row, 2)?.map(ReservationId::from),
        remaining: count(row, 3)?,
        changed: column(row, 4)?,
        created_at_ms: column(row, 5)?,
    })
}

async fn select_events(client: &Object) -> Result<Vec<Event>, Error> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY id");
    let rows = query(client, "reading events", &sql, &[]).await?;
    rows.iter().map(event_from).collect()
}

/// One page of events after `page.after`. Ids are compared as bytes (`COLLATE "C"`), as the
/// embedded and memory stores order them, whatever the database's collation: a cursor then means
/// the same on every store, and a list copied from one to the other pages alike.
async fn select_events_page(client: &Object, page: &PageQuery) -> Result<EventsPage, Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE $1::TEXT IS NULL OR id COLLATE \"C\" > $1
         ORDER BY id COLLATE \"C\" LIMIT $2"
    );
    let after = page.after.as_ref().map(EventId::as_str);
    // One more than the page holds, to tell whether another page follows.
    let lookahead = i64::from(page.limit.get()) + 1;
    let rows = query(client, "reading events", &sql, &[&after, &lookahead]).await?;
    let events = rows.iter().map(event_from).collect::<Result<_, _>>()?;
    Ok(EventsPage::from_lookahead(events, page.limit))
}

async fn select_order(client: &Object, id: ReservationId) -> Result<Option<Order>, Error> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
    let rows = query(client, "reading an order", &sql, &[&id.as_uuid()]).await?;
    rows.first().map(order_from).transpose()
}

async fn select_key(client: &Object, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
    let sql = "SELECT key, fingerprint, order_id, remaining, changed, created_at_ms
               FROM idempotency_keys WHERE key = $1";
    let rows = query(client, "reading an idempotency key", sql, &[&key.as_str()]).await?;
    rows.first().map(key_from).transpose()
}

/// Applies the migrations this database lacks. Replicas starting together all try: the one that
/// inserts a migration's row first applies it, the others wait on that row and then skip it.
async fn migrate(client: &Object) -> Result<(), Error> {
    // Concurrent `CREATE TABLE IF NOT EXISTS` can still collide in the catalogue; the loser
    // simply tries again and finds the table.
    let mut attempts = 0;
    loop {
        let created = client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ticketd_migrations (
                    version     INTEGER PRIMARY KEY,
                    description TEXT NOT NULL,
                    applied_at  TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
                )",
            )
            .await
            .map_err(failed("creating the migrations table"));
        match created {
            Err(Error::Contention(_)) if attempts < 5 => attempts += 1,
            other => break other?,
        }
    }
    let newest = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    let rows = query(
        client,
        "reading the schema version",
        "SELECT COALESCE(MAX(version), 0) FROM ticketd_migrations",
        &[],
    )
    .await?;
    let applied: i32 = rows
        .first()
        .map(|row| column(row, 0))
        .transpose()?
        .unwrap_or(0);
    if applied > newest {
        return Err(Error::Storage(format!(
            "the database has schema version {applied}, newer than this ticketd knows ({newest})"
        )));
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > applied) {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(failed("starting a migration"))?;
        let claimed = execute(
            client,
            "claiming a migration",
            "INSERT INTO ticketd_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await;
        let outcome = match claimed {
            // Another replica applied it while we waited on its row.
            Err(Error::Contention(_)) => Ok(false),
            Err(error) => Err(error),
            Ok(_) => client
                .batch_execute(sql)
                .await
                .map(|()| true)
                .map_err(failed("applying a migration")),
        };
        match outcome {
            Ok(true) => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(failed("committing a migration"))?;
                tracing::info!(version, description, "database schema migrated");
            }
            Ok(false) => client
                .batch_execute("ROLLBACK")
                .await
                .map_err(failed("ending a migration"))?,
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// The store's identity: made by whichever replica asks first, read by all.
async fn identify(client: &Object) -> Result<Uuid, Error> {
    let offered = Uuid::now_v7();
    let sql = "INSERT INTO ticketd_store (id) VALUES ($1) ON CONFLICT (only_row) DO NOTHING";
    execute(client, "naming the store", sql, &[&offered]).await?;
    let rows = query(
        client,
        "reading the store's name",
        "SELECT id FROM ticketd_store",
        &[],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Storage("the store has no identity row".into()))?;
    column(row, 0)
}

/// What the open batch has locked and read.
#[derive(Default)]
struct Locked {
    /// Every locked event, with its counts as read under the lock.
    events: HashMap<EventId, Stock>,
    /// Orders found, as read in the batch's transaction.
    orders: HashMap<ReservationId, Order>,
    /// Every order looked for, found or not.
    orders_read: HashSet<ReservationId>,
    keys: HashMap<IdempotencyKey, KeyRecord>,
    keys_read: HashSet<IdempotencyKey>,
}

impl Locked {
    fn read_order(&mut self, id: ReservationId, order: Option<Order>) {
        self.orders_read.insert(id);
        if let Some(order) = order {
            self.orders.insert(id, order);
        }
    }
}

/// Opens the batch's transaction and locks and reads what `plan` touches.
///
/// Statements that do not depend on each other's answers are sent together (tokio-postgres
/// pipelines the futures polled at once, and the server runs them in the order sent), so a batch
/// of purchases takes one round trip here: BEGIN, lock the events, read the orders and keys.
async fn lock(client: &Object, plan: &Plan) -> Result<(Snapshot, Locked), Error> {
    let changes: Vec<Uuid> = plan.changes.iter().map(ReservationId::as_uuid).collect();
    let mut event_ids: Vec<String> = plan.events.iter().map(|id| id.as_str().into()).collect();
    let mut due_holds = Vec::new();
    let mut begun = false;

    // First, only when the batch settles orders or sweeps holds: which events those touch.
    if !changes.is_empty() || plan.sweep_max > 0 {
        let changed = async {
            if changes.is_empty() {
                return Ok(Vec::new());
            }
            let sql = "SELECT DISTINCT event FROM orders WHERE id = ANY($1)";
            query(client, "finding the events of orders", sql, &[&changes]).await
        };
        let limit = i64::try_from(plan.sweep_max).unwrap_or(i64::MAX);
        let due = async {
            if plan.sweep_max == 0 {
                return Ok(Vec::new());
            }
            let sql = "SELECT expires_at_ms, id, event FROM orders
                       WHERE status = 'held' AND expires_at_ms <= $1
                       ORDER BY expires_at_ms LIMIT $2";
            query(client, "finding due holds", sql, &[&plan.now_ms, &limit]).await
        };
        let ((), changed, due) = try_join3(begin(client), changed, due).await?;
        begun = true;
        for row in &changed {
            event_ids.push(column(row, 0)?);
        }
        for row in &due {
            due_holds.push((
                column(row, 0)?,
                ReservationId::from(column::<Uuid>(row, 1)?),
            ));
            event_ids.push(column(row, 2)?);
        }
    }
    event_ids.sort_unstable();
    event_ids.dedup();

    // Then lock the events, and read orders and keys behind the locks.
    let mut wanted: Vec<Uuid> = plan.orders.iter().map(ReservationId::as_uuid).collect();
    wanted.extend(due_holds.iter().map(|(_, id)| id.as_uuid()));
    let keys: Vec<&str> = plan.keys.iter().map(IdempotencyKey::as_str).collect();
    let start = async {
        if begun {
            return Ok(());
        }
        begin(client).await
    };
    let lock_sql =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    let events = async { query(client, "locking events", &lock_sql, &[&event_ids]).await };
    let orders_sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY($1)");
    let orders = async {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        query(client, "reading orders", &orders_sql, &[&wanted]).await
    };
    let records = async {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "SELECT key, fingerprint, order_id, remaining, changed, created_at_ms
                   FROM idempotency_keys WHERE key = ANY($1)";
        query(client, "reading idempotency keys", sql, &[&keys]).await
    };
    let ((), events, orders, records) = try_join4(start, events, orders, records).await?;

    let events = events
        .iter()
        .map(event_from)
        .collect::<Result<Vec<_>, _>>()?;
    let mut locked = Locked {
        events: events.iter().map(|e| (e.id.clone(), e.stock)).collect(),
        ..Locked::default()
    };
    for row in &orders {
        let order = order_from(row)?;
        locked.orders.insert(order.id, order);
    }
    locked
        .orders_read
        .extend(wanted.into_iter().map(ReservationId::from));
    for row in &records {
        let record = key_from(row)?;
        locked.keys.insert(record.key.clone(), record);
    }
    locked.keys_read.extend(plan.keys.iter().cloned());
    let snapshot = Snapshot {
        events,
        due: due_holds,
    };
    Ok((snapshot, locked))
}

async fn begin(client: &Object) -> Result<(), Error> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(failed("beginning a transaction"))
}

/// Writes `batch` and commits. Without `locked` (outside a batch) it opens its own transaction.
/// The writes go out together in one round trip; COMMIT follows once their counts are checked.
async fn write(client: &Object, batch: &Batch, locked: Option<&Locked>) -> Result<(), Error> {
    let start = async {
        if locked.is_some() {
            return Ok(());
        }
        begin(client).await
    };
    try_join(start, apply(client, batch, locked)).await?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(failed("committing"))
}

/// Sends the statements that store `batch` inside the open transaction, together, and checks
/// their counts. Events and orders the batch read under its locks (`locked`) are updated, and
/// only if they are still as read; everything else of the batch is new and is inserted, and only
/// if no one else inserted it first. Either miss sends the batch back to be decided again: a
/// second guard, behind the row locks, against deciding on state that is no longer there.
async fn apply(client: &Object, batch: &Batch, locked: Option<&Locked>) -> Result<(), Error> {
    let was_event = |id: &EventId| locked.and_then(|locked| locked.events.get(id));
    let (changed, created): (Vec<&Event>, Vec<&Event>) = batch
        .events
        .iter()
        .partition(|event| was_event(&event.id).is_some());

    let changed_ids: Vec<&str> = changed.iter().map(|e| e.id.as_str()).collect();
    let [capacity, available, held, sold] = stock_columns(changed.iter().map(|e| &e.stock));
    let [was_capacity, was_available, was_held, was_sold] =
        stock_columns(changed.iter().filter_map(|e| was_event(&e.id)));
    let update = async {
        if changed.is_empty() {
            return Ok(0);
        }
        let sql = "UPDATE events AS e
                   SET capacity = u.capacity, available = u.available, held = u.held, sold = u.sold
                   FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
                               $6::int8[], $7::int8[], $8::int8[], $9::int8[])
                        AS u (id, capacity, available, held, sold,
                              was_capacity, was_available, was_held, was_sold)
                   WHERE e.id = u.id
                     AND e.capacity = u.was_capacity AND e.available = u.was_available
                     AND e.held = u.was_held AND e.sold = u.was_sold";
        let params: [&(dyn ToSql + Sync); 9] = [
            &changed_ids,
            &capacity,
            &available,
            &held,
            &sold,
            &was_capacity,
            &was_available,
            &was_held,
            &was_sold,
        ];
        execute(client, "updating events", sql, &params).await
    };

    let created_ids: Vec<&str> = created.iter().map(|e| e.id.as_str()).collect();
    let names: Vec<&str> = created.iter().map(|e| &*e.name).collect();
    let [new_capacity, new_available, new_held, new_sold] =
        stock_columns(created.iter().map(|e| &e.stock));
    let create = async {
        if created.is_empty() {
            return Ok(0);
        }
        // A plain insert: if another replica created the same event meanwhile, the duplicate key
        // sends the batch back to be decided again, and then it sees that event.
        let sql = "INSERT INTO events (id, name, capacity, available, held, sold)
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[],
                                        $5::int8[], $6::int8[])";
        let params: [&(dyn ToSql + Sync); 6] = [
            &created_ids,
            &names,
            &new_capacity,
            &new_available,
            &new_held,
            &new_sold,
        ];
        execute(client, "creating events", sql, &params).await
    };

    let was_order = |id: &ReservationId| locked.and_then(|locked| locked.orders.get(id));
    let (moved, placed): (Vec<&Order>, Vec<&Order>) = batch
        .orders
        .iter()
        .partition(|order| was_order(&order.id).is_some());

    let order_ids: Vec<Uuid> = placed.iter().map(|o| o.id.as_uuid()).collect();
    let order_events: Vec<&str> = placed.iter().map(|o| o.event.as_str()).collect();
    let qty: Vec<i32> = placed.iter().map(|o| o.qty as i32).collect();
    let status: Vec<&str> = placed.iter().map(|o| o.status.as_str()).collect();
    let remaining: Vec<i64> = placed.iter().map(|o| stored(o.remaining)).collect();
    let created_at: Vec<i64> = placed.iter().map(|o| o.created_at_ms).collect();
    let updated_at: Vec<i64> = placed.iter().map(|o| o.updated_at_ms).collect();
    let expires_at: Vec<Option<i64>> = placed.iter().map(|o| o.expires_at_ms).collect();
    let insert_orders = async {
        if placed.is_empty() {
            return Ok(0);
        }
        // A new order never merges into an existing row: the same reservation id used on another
        // replica at the same moment (perhaps for another event) is inserted there or here, once.
        let sql = "INSERT INTO orders (id, event, qty, status, remaining, created_at_ms,
                                       updated_at_ms, expires_at_ms)
                   SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::text[],
                                        $5::int8[], $6::int8[], $7::int8[], $8::int8[])
                   ON CONFLICT (id) DO NOTHING";
        let params: [&(dyn ToSql + Sync); 8] = [
            &order_ids,
            &order_events,
            &qty,
            &status,
            &remaining,
            &created_at,
            &updated_at,
            &expires_at,
        ];
        execute(client, "writing orders", sql, &params).await
    };

    let moved_ids: Vec<Uuid> = moved.iter().map(|o| o.id.as_uuid()).collect();
    let moved_status: Vec<&str> = moved.iter().map(|o| o.status.as_str()).collect();
    let moved_at: Vec<i64> = moved.iter().map(|o| o.updated_at_ms).collect();
    let was_status: Vec<&str> = moved
        .iter()
        .filter_map(|o| was_order(&o.id))
        .map(|o| o.status.as_str())
        .collect();
    let update_orders = async {
        if moved.is_empty() {
            return Ok(0);
        }
        let sql = "UPDATE orders AS o SET status = u.status, updated_at_ms = u.updated_at_ms
                   FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[])
                        AS u (id, status, updated_at_ms, was_status)
                   WHERE o.id = u.id AND o.status = u.was_status";
        let params: [&(dyn ToSql + Sync); 4] = [&moved_ids, &moved_status, &moved_at, &was_status];
        execute(client, "updating orders", sql, &params).await
    };

    let purge = async {
        let Some(before) = batch.purge_keys_before_ms else {
            return Ok(0);
        };
        let sql = "DELETE FROM idempotency_keys WHERE created_at_ms < $1";
        execute(client, "forgetting lapsed keys", sql, &[&before]).await
    };

    let records = &batch.keys;
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let prints: Vec<&str> = records.iter().map(|r| r.fingerprint.as_str()).collect();
    let key_orders: Vec<Option<Uuid>> = records
        .iter()
        .map(|r| r.order_id.map(|id| id.as_uuid()))
        .collect();
    let key_remaining: Vec<i64> = records.iter().map(|r| stored(r.remaining)).collect();
    let key_changed: Vec<bool> = records.iter().map(|r| r.changed).collect();
    let key_created_at: Vec<i64> = records.iter().map(|r| r.created_at_ms).collect();
    let remember = async {
        if records.is_empty() {
            return Ok(0);
        }
        // Only a lapsed key may be replaced. A live one means another replica used the key at the
        // same moment: the batch is decided again and then answers as that first use did.
        let sql = "INSERT INTO idempotency_keys
                       (key, fingerprint, order_id, remaining, changed, created_at_ms)
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::int8[],
                                        $5::bool[], $6::int8[])
                   ON CONFLICT (key) DO UPDATE
                   SET fingerprint = EXCLUDED.fingerprint, order_id = EXCLUDED.order_id,
                       remaining = EXCLUDED.remaining, changed = EXCLUDED.changed,
                       created_at_ms = EXCLUDED.created_at_ms
                   WHERE idempotency_keys.created_at_ms < $7";
        let params: [&(dyn ToSql + Sync); 7] = [
            &keys,
            &prints,
            &key_orders,
            &key_remaining,
            &key_changed,
            &key_created_at,
            &batch.keys_lapsed_before_ms,
        ];
        execute(client, "writing idempotency keys", sql, &params).await
    };

    // New events first, on their own: the batch's orders may name them, and statements sent
    // together can reach the server out of order while one of them is still being prepared.
    create.await?;
    let (updated, (placed_count, moved_count), (_, remembered)) = try_join3(
        update,
        try_join(insert_orders, update_orders),
        try_join(purge, remember),
    )
    .await?;
    if updated != changed.len() as u64 {
        return Err(Error::Contention(format!(
            "updated {updated} of {} locked events: one was no longer as read under its lock",
            changed.len()
        )));
    }
    if placed_count != placed.len() as u64 {
        return Err(Error::Contention(
            "a reservation id was used on another replica at the same moment".into(),
        ));
    }
    if moved_count != moved.len() as u64 {
        return Err(Error::Contention(format!(
            "updated {moved_count} of {} orders: one was no longer as read under its lock",
            moved.len()
        )));
    }
    if remembered != records.len() as u64 {
        return Err(Error::Contention(
            "an idempotency key was used on another replica at the same moment".into(),
        ));
    }
    Ok(())
}

/// Capacity, available, held and sold, each as a column for `UNNEST`.
fn stock_columns<'a>(stocks: impl Iterator<Item = &'a Stock> + Clone) -> [Vec<i64>; 4] {
    let column = |pick: fn(&Stock) -> u64| stocks.clone().map(|s| stored(pick(s))).collect();
    [
        column(|s| s.capacity),
        column(|s| s.available),
        column(|s| s.held),
        column(|s| s.sold),
    ]
}

/// The writer's side of the shared ledger.
pub struct PostgresLedger {
    db: Arc<Db>,
    /// The writer's connection between batches, kept while it is sound.
    idle: Option<Object>,
    /// The batch between [`SharedLedger::begin`] and [`Ledger::commit`].
    batch: Option<OpenBatch>,
    /// The schema is known to be up to date.
    migrated: bool,
    /// This store's identity, read at the first load.
    store_id: Option<String>,
}

/// A batch's transaction and the one connection it lives on. Its locks, and so every decision
/// taken on what it read, are only good on this connection: if the connection goes, the batch
/// fails. It is never finished on another connection, where its writes would run outside any
/// transaction and overwrite what other replicas committed after the locks were lost.
struct OpenBatch {
    /// `None` once handed back by [`OpenBatch::end`].
    client: Option<Object>,
    locked: Locked,
    /// A statement of the batch failed, so its transaction is aborted or gone: it must not
    /// commit, since its decisions may rest on a read that never happened.
    failed: Option<Error>,
}

impl OpenBatch {
    fn client(&self) -> Result<&Object, Error> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::Internal("the batch has ended".into()))
    }

    /// The connection, for the ledger to keep or put right once the batch is over.
    fn end(mut self) -> Option<Object> {
        self.client.take()
    }
}

impl Drop for OpenBatch {
    /// A batch dropped without ending (the writer panicked mid-batch) must not hand its open
    /// transaction, and the row locks it holds, back to the pool for a reader to run inside:
    /// detached from the pool, the connection closes, and the server rolls the transaction back.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl PostgresLedger {
    /// Sets up the pool. Nothing is sent to the database until the first [`Ledger::load`], which
    /// brings the schema up to date (on the inventory's writer thread, where blocking is fine).
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        Ok(Self {
            db: Arc::new(Db::open(config)?),
            idle: None,
            batch: None,
            migrated: false,
            store_id: None,
        })
    }

    /// The writer's connection for work outside a batch, opening one if needed.
    fn connection(&mut self) -> Result<Object, Error> {
        match self.idle.take() {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.db.block_on(connect(&self.db.pool)),
        }
    }

    /// Runs `work` on the writer's connection outside any batch. After a failure of `work` that
    /// may leave a transaction open (`transaction`), the connection is put right (see
    /// [`Self::keep_after`]).
    fn with_client<T>(
        &mut self,
        transaction: bool,
        work: impl AsyncFnOnce(&Object) -> Result<T, Error>,
    ) -> Result<T, Error> {
        debug_assert!(
            self.batch.is_none(),
            "work outside a batch while one is open"
        );
        let client = self.connection()?;
        let outcome = self.db.block_on(work(&client));
        match &outcome {
            Ok(_) => self.idle = Some(client),
            Err(error) => self.keep_after(client, error, transaction),
        }
        outcome
    }

    /// Runs `work` inside the open batch, on the batch's own connection; a failure fails the
    /// batch.
    fn in_batch<T>(
        &mut self,
        work: impl AsyncFnOnce(&Object, &mut Locked) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Some(batch) = self.batch.as_mut() else {
            return Err(Error::Internal("no batch is open".into()));
        };
        if let Some(error) = &batch.failed {
            return Err(error.clone());
        }
        let Some(client) = batch.client.as_ref() else {
            return Err(Error::Internal("the batch has ended".into()));
        };
        let outcome = self.db.block_on(work(client, &mut batch.locked));
        if let Err(error) = &outcome {
            batch.failed = Some(error.clone());
        }
        outcome
    }

    /// Keeps `client` for the next call after `error`, if it is sound: a connection that timed
    /// out or closed is dropped (the next call opens a new one), and one that may be inside a
    /// transaction (`transaction`) is rolled back first, or dropped if even that fails. Dropping
    /// detaches the connection from the pool, so closing it ends any transaction on it.
    fn keep_after(&mut self, client: Object, error: &Error, transaction: bool) {
        if timed_out(error) || client.is_closed() {
            // A server that stopped answering would only time out again on this connection.
            drop(Object::take(client));
            return;
        }
        if transaction {
            let rollback = async {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(failed("rolling back"))
            };
            if self.db.block_on(rollback).is_err() {
                drop(Object::take(client));
                return;
            }
        }
        self.idle = Some(client);
    }
}

impl Ledger for PostgresLedger {
    fn load(&mut self) -> Result<Vec<Event>, Error> {
        if !self.migrated {
            // Migrations end their own transactions, failed or not.
            self.with_client(false, async |client| migrate(client).await)?;
            let id = self.with_client(false, async |client| identify(client).await)?;
            self.store_id = Some(id.to_string());
            self.migrated = true;
        }
        self.with_client(false, async |client| select_events(client).await)
    }

    /// Every hold live at start-up, whichever replica made it, so this one wakes at their
    /// deadlines too; holds other replicas make later are found by sweeping (see [`lock`]).
    fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
        self.with_client(false, async |client| {
            let sql = "SELECT expires_at_ms, id FROM orders WHERE status = 'held'";
            let rows = query(client, "reading live holds", sql, &[]).await?;
            rows.iter()
                .map(|row| {
                    let deadline: Option<i64> = column(row, 0)?;
                    let id = ReservationId::from(column::<Uuid>(row, 1)?);
                    Ok((deadline.unwrap_or(i64::MAX), id))
                })
                .collect()
        })
    }

    fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
        if self.batch.is_none() {
            return self.with_client(false, async |client| select_order(client, id).await);
        }
        self.in_batch(async |client, locked| {
            if locked.orders_read.contains(&id) {
                return Ok(locked.orders.get(&id).cloned());
            }
            // Read inside the batch's transaction, and remembered as read: if the batch changes
            // it, the write checks that it is still as read here.
            let order = select_order(client, id).await?;
            locked.read_order(id, order.clone());
            Ok(order)
        })
    }

    fn find_key(&mut self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
        if self.batch.is_none() {
            return self.with_client(false, async |client| select_key(client, key).await);
        }
        self.in_batch(async |client, locked| {
            if locked.keys_read.contains(key) {
                return Ok(locked.keys.get(key).cloned());
            }
            select_key(client, key).await
        })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        let Some(open) = self.batch.take() else {
            // Outside a batch (an event created at start-up): in a transaction of its own.
            return self.with_client(true, async |client| write(client, batch, None).await);
        };
        let written = match &open.failed {
            Some(error) => Err(error.clone()),
            None => match open.client() {
                Ok(client) => self.db.block_on(write(client, batch, Some(&open.locked))),
                Err(error) => Err(error),
            },
        };
        if let Some(client) = open.end() {
            match &written {
                Ok(()) => self.idle = Some(client),
                Err(error) => self.keep_after(client, error, true),
            }
        }
        written
    }

    fn insert_event_if_absent(&mut self, event: &Event) -> Result<bool, Error> {
        let sql = "INSERT INTO events (id, name, capacity, available, held, sold)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
        let stock = &event.stock;
        let (id, name) = (event.id.as_str(), &*event.name);
        let counts = [stock.capacity, stock.available, stock.held, stock.sold].map(stored);
        let inserted = self.with_client(false, async |client| {
            let params: [&(dyn ToSql + Sync); 6] =
                [&id, &name, &counts[0], &counts[1], &counts[2], &counts[3]];
            execute(client, "creating an event", sql, &params).await
        })?;
        Ok(inserted == 1)
    }
}

impl SharedLedger for PostgresLedger {
    fn store_id(&self) -> Option<String> {
        self.store_id.clone()
    }

    fn shared_reads(&self) -> Arc<dyn SharedReads> {
        Arc::new(PostgresReads {
            db: Arc::clone(&self.db),
        })
    }

    fn begin(&mut self, plan: &Plan) -> Result<Snapshot, Error> {
        if let Some(abandoned) = self.batch.take().and_then(OpenBatch::end) {
            // Not committed: whatever it held ends with its transaction.
            let error = Error::Internal("a batch was left open".into());
            self.keep_after(abandoned, &error, true);
        }
        let client = self.connection()?;
        match self.db.block_on(lock(&client, plan)) {
            Ok((snapshot, locked)) => {
                self.batch = Some(OpenBatch {
                    client: Some(client),
                    locked,
                    failed: None,
                });
                Ok(snapshot)
            }
            Err(error) => {
                self.keep_after(client, &error, true);
                Err(error)
            }
        }
    }
}

/// Fills an empty database with a whole store, in one transaction: all of it arrives or none.
/// `fill` hands the store over batch by batch, events before the orders that name them. The
/// database is brought up to date first, and refused if it holds any event already.
pub fn import(
    config: &PostgresConfig,
    fill: impl FnOnce(&mut dyn FnMut(Batch) -> Result<(), Error>) -> Result<(), Error>,
) -> Result<(), Error> {
    let db = Db::open(config)?;
    let client = db.block_on(connect(&db.pool))?;
    db.block_on(async {
        migrate(&client).await?;
        identify(&client).await?;
        begin(&client).await
    })?;
    let imported = import_within(&db, &client, fill);
    if imported.is_err() {
        // Closing the connection ends its transaction: nothing of the copy stays.
        drop(Object::take(client));
    }
    imported
}

fn import_within(
    db: &Db,
    client: &Object,
    fill: impl FnOnce(&mut dyn FnMut(Batch) -> Result<(), Error>) -> Result<(), Error>,
) -> Result<(), Error> {
    let sql = "SELECT id FROM events ORDER BY id LIMIT 5";
    let present = db.block_on(query(client, "looking for events", sql, &[]))?;
    if !present.is_empty() {
        let ids = present
            .iter()
            .map(|row| column::<String>(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        return Err(Error::Storage(format!(
            "the database already holds events ({}{}): copy into a database or schema that no \
             ticketd has used",
            ids.join(", "),
            if ids.len() == 5 { ", ..." } else { "" }
        )));
    }
    fill(&mut |batch| db.block_on(apply(client, &batch, None)))?;
    db.block_on(async {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(failed("committing the copy"))
    })
}

/// Reads for the HTTP side, on pooled connections, outside any batch.
struct PostgresReads {
    db: Arc<Db>,
}

#[async_trait::async_trait]
impl SharedReads for PostgresReads {
    async fn event(&self, id: &EventId) -> Result<Option<Event>, Error> {
        let id = id.clone();
        self.db
            .read(move |client| async move {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
                let rows = query(&client, "reading an event", &sql, &[&id.as_str()]).await?;
                rows.first().map(event_from).transpose()
            })
            .await
    }

    async fn events(&self, query: &PageQuery) -> Result<EventsPage, Error> {
        let page = query.clone();
        self.db
            .read(move |client| async move { select_events_page(&client, &page).await })
            .await
    }

    async fn order(&self, id: ReservationId) -> Result<Option<Order>, Error> {
        self.db
            .read(move |client| async move { select_order(&client, id).await })
            .await
    }
}
