//! The schema's migrations, and the identity of the store.

use deadpool_postgres::Object;
use uuid::Uuid;

use super::db::{execute, failed, query};
use super::rows::column;
use crate::domain::Error;

/// Schema changes, in order. Each runs once per database, in its own transaction, however many
/// replicas start at once. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
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
    ),
    (
        2,
        "categories, quotas, order lines and customers",
        // An event's layout beyond its first quota (JSON text; none for an event of one `general`
        // quota and category), an order's lines (none for one `general` line), its customer.
        "
ALTER TABLE events ADD COLUMN quotas TEXT, ADD COLUMN catalogue TEXT;
ALTER TABLE orders ADD COLUMN lines TEXT, ADD COLUMN customer TEXT;
ALTER TABLE idempotency_keys ADD COLUMN short TEXT;

-- Replicas of earlier releases know nothing of quotas, lines or customers, and may still be
-- running while this one migrates (a rolling restart). From here on their writes are refused, so
-- they answer 503 until restarted on this release, instead of selling past a category's rules:
-- an order must say it was written knowing lines and customers, and an event with quotas must
-- change its quotas (which hold every quota's counts) whenever its counts change.
ALTER TABLE orders ADD COLUMN schema_version SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE orders ALTER COLUMN schema_version DROP DEFAULT;
CREATE FUNCTION ticketd_counts_change_with_quotas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.quotas IS NOT NULL AND NEW.quotas IS NOT DISTINCT FROM OLD.quotas
       AND (NEW.capacity, NEW.available, NEW.held, NEW.sold)
           IS DISTINCT FROM (OLD.capacity, OLD.available, OLD.held, OLD.sold) THEN
        RAISE EXCEPTION 'the counts of event % changed without its quotas', NEW.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER counts_change_with_quotas BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION ticketd_counts_change_with_quotas();
CREATE INDEX orders_by_customer ON orders (event, customer)
    WHERE customer IS NOT NULL AND status IN ('held', 'confirmed');
",
    ),
    (
        3,
        "waiting lists",
        // An entry's id is also its offer's hold's (an order's id).
        "
CREATE TABLE waitlist (
    id                  UUID PRIMARY KEY,
    event               TEXT NOT NULL REFERENCES events (id),
    category            TEXT NOT NULL,
    qty                 INTEGER NOT NULL CHECK (qty > 0),
    customer            TEXT,
    status              TEXT NOT NULL
                        CHECK (status IN ('waiting', 'offered', 'accepted', 'expired', 'left')),
    joined_at_ms        BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    offer_expires_at_ms BIGINT
);
CREATE INDEX waitlist_live ON waitlist (event, joined_at_ms, id)
    WHERE status IN ('waiting', 'offered');
CREATE INDEX waitlist_by_customer ON waitlist (event, customer)
    WHERE customer IS NOT NULL AND status = 'waiting';
",
    ),
    (
        4,
        "the outbox of changes",
        // `data` is JSON text, encoded once by the writer and served as is.
        "
CREATE TABLE changes (
    seq   BIGINT PRIMARY KEY CHECK (seq > 0),
    kind  TEXT NOT NULL,
    event TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    data  TEXT NOT NULL
);
CREATE INDEX changes_by_age ON changes (at_ms);

-- One row: the number of the last change committed. A batch that writes changes takes its
-- numbers from here last, just before COMMIT, and the row stays locked until then: see
-- `batch::number_changes`.
CREATE TABLE change_counter (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last_seq BIGINT NOT NULL CHECK (last_seq >= 0)
);
INSERT INTO change_counter (last_seq) VALUES (0);
",
    ),
    (
        5,
        "webhooks",
        // A webhook's progress (cursor and pending changes) and each attempt are JSON text, read
        // and written by `webhooks` alone. The lease says which replica delivers it, until when
        // (the database's clock, in ms since the epoch).
        "
CREATE TABLE webhooks (
    id             UUID PRIMARY KEY,
    url            TEXT NOT NULL,
    types          TEXT NOT NULL,
    secret         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    progress       TEXT NOT NULL,
    lease_owner    UUID,
    lease_until_ms BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE webhook_attempts (
    n          BIGSERIAL PRIMARY KEY,
    webhook_id UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    attempt    TEXT NOT NULL
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, n);
",
    ),
    (
        6,
        "refuse writes that tell no changes",
        // Replicas of the release before the outbox, still running while this one migrates (a
        // rolling restart), would go on selling and write no change: integrators would never
        // hear of those sales. From here on a write to events, orders or waiting lists must
        // come from a transaction that declares it writes its changes (`batch::begin` does);
        // earlier releases' writes are refused, so they answer 503 until restarted on this one.
        // Once per statement, not per row.
        "
CREATE FUNCTION ticketd_writes_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('ticketd.writes_changes', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'a write to % that records no changes: a ticketd release before the outbox?',
            TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_write_changes BEFORE INSERT OR UPDATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ticketd_writes_changes();
CREATE TRIGGER orders_write_changes BEFORE INSERT OR UPDATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION ticketd_writes_changes();
CREATE TRIGGER waitlist_writes_changes BEFORE INSERT OR UPDATE ON waitlist
    FOR EACH STATEMENT EXECUTE FUNCTION ticketd_writes_changes();
",
    ),
];

/// Whether creating a table failed only because another session created it at the same moment.
fn lost_a_catalogue_race(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.code().is_some_and(|code| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::DUPLICATE_TABLE,
            SqlState::DUPLICATE_OBJECT,
        ]
        .contains(code)
    })
}

/// Applies the migrations this database lacks. Replicas starting together all try: the one that
/// inserts a migration's row first applies it, the others wait on that row and then skip it.
pub(super) async fn migrate(client: &Object) -> Result<(), Error> {
    // Concurrent `CREATE TABLE IF NOT EXISTS` can still collide in the catalogue (a duplicate
    // key in `pg_type`, or "already exists" when the other commits between the check and the
    // create); the loser simply tries again and finds the table.
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
            .await;
        match created {
            Ok(()) => break,
            Err(error) if attempts < 5 && lost_a_catalogue_race(&error) => attempts += 1,
            Err(error) => return Err(failed("creating the migrations table")(error)),
        }
    }
    let newest = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    let rows = query(
        client,
        "reading the schema version",
        "SELECT version FROM ticketd_migrations",
        &[],
    )
    .await?;
    let applied = rows
        .iter()
        .map(|row| column::<i32>(row, 0))
        .collect::<Result<Vec<i32>, Error>>()?;
    if let Some(&applied) = applied.iter().max()
        && applied > newest
    {
        return Err(Error::Storage(format!(
            "the database has schema version {applied}, newer than this ticketd knows ({newest})"
        )));
    }
    // Every migration not applied yet, not only those past the newest applied: migrations made
    // side by side may be numbered in another order than they were first applied in.
    for (version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| !applied.contains(v)) {
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
pub(super) async fn identify(client: &Object) -> Result<Uuid, Error> {
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
