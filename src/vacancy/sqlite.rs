//! The embedded, durable ledger: one SQLite database in the data directory.
//!
//! Why SQLite: it is the most widely deployed and tested storage engine there is, its durability
//! rules are documented to the letter, a corrupt or foreign file is detected on open, and an
//! operator can inspect or back up the store with the stock `sqlite3` tool while ticketd runs.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a committed transaction has been fsync'd
//! before `commit` returns, and the writer answers only after that. One transaction per batch is
//! what makes group commit pay: one fsync covers every request of the batch.
//!
//! One process per data directory: an exclusive lock on `ticketd.lock` is taken at open and held
//! until the ledger is dropped, so a second ticketd on the same directory refuses to start.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::codec;
use super::ledger::{self, Batch, Kept, Ledger, LocalLedger};
use crate::domain::{
    CategoryId, CustomerId, Entry, EntryStatus, Error, Event, EventId, IdempotencyKey, KeyRecord,
    Order, OrderStatus, ReservationId, Stock,
};

pub const DATABASE_FILE: &str = "ticketd.db";
const LOCK_FILE: &str = "ticketd.lock";
const SCHEMA_VERSION: i64 = 6;

/// The first release's tables; [`MIGRATIONS`] bring them up to date, so a new store and an old
/// one end up alike.
const SCHEMA: &str = "
CREATE TABLE events (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    capacity  INTEGER NOT NULL CHECK (capacity >= 0),
    available INTEGER NOT NULL CHECK (available >= 0),
    held      INTEGER NOT NULL CHECK (held >= 0),
    sold      INTEGER NOT NULL CHECK (sold >= 0),
    CHECK (available + held + sold = capacity)
) STRICT;

CREATE TABLE orders (
    id            BLOB PRIMARY KEY,
    event         TEXT NOT NULL REFERENCES events (id),
    qty           INTEGER NOT NULL CHECK (qty > 0),
    status        TEXT NOT NULL
                  CHECK (status IN ('held', 'confirmed', 'cancelled', 'released', 'expired')),
    remaining     INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX live_holds ON orders (expires_at_ms) WHERE status = 'held';

CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    order_id      BLOB,
    remaining     INTEGER NOT NULL,
    changed       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
";

/// The changes from each schema version to the next: `MIGRATIONS[n]` takes version `n + 1` to
/// `n + 2`. Each runs in the transaction that sets the new version.
const MIGRATIONS: [&str; 5] = [
    // 1 → 2: categories and quotas (an event's layout beyond its first quota, as JSON text; none
    // for an event of one `general` quota and category), order lines, and customers.
    "ALTER TABLE events ADD COLUMN quotas TEXT;
     ALTER TABLE events ADD COLUMN catalogue TEXT;
     ALTER TABLE orders ADD COLUMN lines TEXT;
     ALTER TABLE orders ADD COLUMN customer TEXT;
     CREATE INDEX customer_orders ON orders (event, customer)
        WHERE customer IS NOT NULL AND status IN ('held', 'confirmed');
     ALTER TABLE idempotency_keys ADD COLUMN short TEXT;",
    // 2 → 3: waiting lists. An entry's id is also its offer's hold's.
    "CREATE TABLE waitlist (
        id                  BLOB PRIMARY KEY,
        event               TEXT NOT NULL REFERENCES events (id),
        category            TEXT NOT NULL,
        qty                 INTEGER NOT NULL CHECK (qty > 0),
        customer            TEXT,
        status              TEXT NOT NULL
                            CHECK (status IN ('waiting', 'offered', 'accepted', 'expired', 'left')),
        joined_at_ms        INTEGER NOT NULL,
        updated_at_ms       INTEGER NOT NULL,
        offer_expires_at_ms INTEGER
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX waitlist_live ON waitlist (event, joined_at_ms, id)
        WHERE status IN ('waiting', 'offered');
     CREATE INDEX waitlist_by_customer ON waitlist (event, customer)
        WHERE customer IS NOT NULL AND status = 'waiting';",
    // 3 → 4: the outbox of changes. The writer numbers them (one process writes the store);
    // AUTOINCREMENT keeps the last number given even once every change is purged, so a number
    // is never given twice. `data` is JSON text, encoded once and served as is.
    "CREATE TABLE changes (
        seq   INTEGER PRIMARY KEY AUTOINCREMENT,
        kind  TEXT NOT NULL,
        event TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        data  TEXT NOT NULL
     ) STRICT;
     CREATE INDEX changes_by_age ON changes (at_ms);",
    // 4 → 5: the outbox without AUTOINCREMENT and without the index by age, which cost every
    // change written an update of `sqlite_sequence` and a second B-tree insert (about 9,000
    // instructions and two more pages per commit). The last number given, which AUTOINCREMENT
    // kept once every change is forgotten, is kept by the purge in `changes_purged` instead
    // (the highest number forgotten: everything up to it is gone, nothing after it is);
    // the purge finds where to stop in number order, so it needs no index by age.
    "CREATE TABLE changes_purged (
        last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
     ) STRICT;
     INSERT INTO changes_purged (last_seq)
        SELECT COALESCE((SELECT MIN(seq) - 1 FROM changes),
                        (SELECT seq FROM sqlite_sequence WHERE name = 'changes'),
                        0);
     CREATE TABLE changes_numbered (
        seq   INTEGER PRIMARY KEY,
        kind  TEXT NOT NULL,
        event TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        data  TEXT NOT NULL
     ) STRICT;
     INSERT INTO changes_numbered (seq, kind, event, at_ms, data)
        SELECT seq, kind, event, at_ms, data FROM changes ORDER BY seq;
     DROP TABLE changes;
     ALTER TABLE changes_numbered RENAME TO changes;",
    // 5 → 6: the status checks of orders and waiting-list entries as comparisons joined by OR.
    // SQLite checks `status IN (five names)` by building a temporary table of the names on every
    // insert or update of the row (about 10,000 instructions, a tenth of a purchase); with two
    // names or fewer, or with `=`, it compares. A CHECK cannot be changed in place, so both
    // tables are rebuilt, rows, columns and indexes as they were.
    "CREATE TABLE orders_checked (
        id            BLOB PRIMARY KEY,
        event         TEXT NOT NULL REFERENCES events (id),
        qty           INTEGER NOT NULL CHECK (qty > 0),
        status        TEXT NOT NULL
                      CHECK (status = 'held' OR status = 'confirmed' OR status = 'cancelled'
                             OR status = 'released' OR status = 'expired'),
        remaining     INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER,
        lines         TEXT,
        customer      TEXT
     ) STRICT, WITHOUT ROWID;
     INSERT INTO orders_checked (id, event, qty, status, remaining, created_at_ms,
                                 updated_at_ms, expires_at_ms, lines, customer)
        SELECT id, event, qty, status, remaining, created_at_ms, updated_at_ms, expires_at_ms,
               lines, customer
        FROM orders;
     DROP TABLE orders;
     ALTER TABLE orders_checked RENAME TO orders;
     CREATE INDEX live_holds ON orders (expires_at_ms) WHERE status = 'held';
     CREATE INDEX customer_orders ON orders (event, customer)
        WHERE customer IS NOT NULL AND status IN ('held', 'confirmed');
     CREATE TABLE waitlist_checked (
        id                  BLOB PRIMARY KEY,
        event               TEXT NOT NULL REFERENCES events (id),
        category            TEXT NOT NULL,
        qty                 INTEGER NOT NULL CHECK (qty > 0),
        customer            TEXT,
        status              TEXT NOT NULL
                            CHECK (status = 'waiting' OR status = 'offered'
                                   OR status = 'accepted' OR status = 'expired'
                                   OR status = 'left'),
        joined_at_ms        INTEGER NOT NULL,
        updated_at_ms       INTEGER NOT NULL,
        offer_expires_at_ms INTEGER
     ) STRICT, WITHOUT ROWID;
     INSERT INTO waitlist_checked (id, event, category, qty, customer, status, joined_at_ms,
                                   updated_at_ms, offer_expires_at_ms)
        SELECT id, event, category, qty, customer, status, joined_at_ms, updated_at_ms,
               offer_expires_at_ms
        FROM waitlist;
     DROP TABLE waitlist;
     ALTER TABLE waitlist_checked RENAME TO waitlist;
     CREATE INDEX waitlist_live ON waitlist (event, joined_at_ms, id)
        WHERE status IN ('waiting', 'offered');
     CREATE INDEX waitlist_by_customer ON waitlist (event, customer)
        WHERE customer IS NOT NULL AND status = 'waiting';",
];

/// An event's row, new or changed.
const UPSERT_EVENT: &str =
    "INSERT INTO events (id, name, capacity, available, held, sold, quotas, catalogue)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name,
    capacity = excluded.capacity, available = excluded.available,
    held = excluded.held, sold = excluded.sold,
    quotas = excluded.quotas, catalogue = excluded.catalogue";

/// An order's row, new or moved on (only `status` and `updated_at_ms` change).
const UPSERT_ORDER: &str = "INSERT INTO orders (id, event, qty, status, remaining, created_at_ms,
    updated_at_ms, expires_at_ms, lines, customer)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
    ON CONFLICT (id) DO UPDATE SET status = excluded.status,
    updated_at_ms = excluded.updated_at_ms";

/// A waiting-list entry's row, new or moved on.
const UPSERT_WAITLIST_ENTRY: &str =
    "INSERT INTO waitlist (id, event, category, qty, customer, status,
    joined_at_ms, updated_at_ms, offer_expires_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (id) DO UPDATE SET status = excluded.status,
    updated_at_ms = excluded.updated_at_ms,
    offer_expires_at_ms = excluded.offer_expires_at_ms";

/// One change of the outbox.
const INSERT_CHANGE: &str = "INSERT INTO changes (seq, kind, event, at_ms, data)
    VALUES (?1, ?2, ?3, ?4, ?5)";

/// An idempotency key's record.
const UPSERT_IDEMPOTENCY_KEY: &str = "INSERT OR REPLACE INTO idempotency_keys
    (key, fingerprint, order_id, remaining, changed, created_at_ms, short)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// The columns [`order_row`] decodes, in its order (a macro, so queries are built at compile time).
macro_rules! order_columns {
    () => {
        "id, event, qty, status, remaining, created_at_ms, updated_at_ms, expires_at_ms, lines, customer"
    };
}
/// The columns [`entry_row`] decodes, in its order.
macro_rules! entry_columns {
    () => {
        "id, event, category, qty, customer, status, joined_at_ms, updated_at_ms, offer_expires_at_ms"
    };
}
/// The columns [`key_row`] decodes, in its order.
macro_rules! key_columns {
    () => {
        "key, fingerprint, order_id, remaining, changed, created_at_ms, short"
    };
}

/// An order's columns as stored, before they are checked.
type OrderRow = (
    Vec<u8>,
    String,
    u32,
    String,
    u64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);
/// An idempotency key's columns as stored, before they are checked.
type KeyRow = (
    String,
    String,
    Option<Vec<u8>>,
    u64,
    bool,
    i64,
    Option<String>,
);

/// A waiting-list entry's columns as stored, before they are checked.
type EntryRow = (
    Vec<u8>,
    String,
    String,
    u32,
    Option<String>,
    String,
    i64,
    i64,
    Option<i64>,
);

fn entry_row(row: &rusqlite::Row) -> rusqlite::Result<EntryRow> {
    EntryRow::try_from(row)
}

fn order_row(row: &rusqlite::Row) -> rusqlite::Result<OrderRow> {
    OrderRow::try_from(row)
}

fn key_row(row: &rusqlite::Row) -> rusqlite::Result<KeyRow> {
    KeyRow::try_from(row)
}

/// How much of a store [`SqliteLedger::export`] handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    pub events: u64,
    pub orders: u64,
    pub entries: u64,
    pub keys: u64,
    /// Changes kept, copied with their numbers, and the last number given (kept or not).
    pub changes: u64,
    pub last_change_seq: u64,
}

pub struct SqliteLedger {
    connection: Connection,
    path: PathBuf,
    /// Events that may have a live waiting list: every other event's list is empty, so a batch
    /// of purchases asks the file nothing about lists. Only this process writes the store, so
    /// this is kept exactly: filled at open and as entries are committed, and an event is taken
    /// out once its list is read empty.
    listed: HashSet<EventId>,
    /// Held (locked) for as long as the ledger lives.
    _lock: File,
}

impl SqliteLedger {
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        fs::create_dir_all(data_dir).map_err(|e| {
            Error::Storage(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let lock = lock(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let fail = |e: rusqlite::Error| {
            Error::Storage(format!("cannot open the store {}: {e}", path.display()))
        };
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        // Reading the version is the first access to the file: a file that is not a SQLite
        // database (or is damaged in its header) fails here, before anything is written.
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(fail)?;
        let journal: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(fail)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(Error::Storage(format!(
                "the store {} cannot use a write-ahead log (journal mode {journal})",
                path.display()
            )));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(fail)?;

        match version {
            0..SCHEMA_VERSION => {
                // A new store is made as the first release made it, then brought up to date like
                // any old one: one path, tested by every new store.
                if version == 0 {
                    let create = format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;");
                    connection.execute_batch(&create).map_err(fail)?;
                }
                for (from, migration) in MIGRATIONS
                    .iter()
                    .enumerate()
                    .skip(version.max(1) as usize - 1)
                {
                    let to = from + 2;
                    let migrate = format!("BEGIN; {migration} PRAGMA user_version = {to}; COMMIT;");
                    connection.execute_batch(&migrate).map_err(fail)?;
                }
            }
            SCHEMA_VERSION => {}
            newer => {
                return Err(Error::Storage(format!(
                    "the store {} has schema version {newer}, newer than this ticketd knows ({SCHEMA_VERSION})",
                    path.display()
                )));
            }
        }
        let listed = connection
            .prepare("SELECT DISTINCT event FROM waitlist WHERE status IN ('waiting', 'offered')")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(fail)?
            .iter()
            .map(|id| EventId::parse(id))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(Self {
            connection,
            path,
            listed,
            _lock: lock,
        })
    }

    fn failed(&self, what: &str, error: rusqlite::Error) -> Error {
        Error::Storage(format!("{what} in {} failed: {error}", self.path.display()))
    }
}

/// Takes the data directory's lock, or explains who has it.
fn lock(data_dir: &Path) -> Result<File, Error> {
    let path = data_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::Storage(format!(
                "cannot write in the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Storage(format!(
            "the data directory {} is in use by another ticketd process (locked)",
            data_dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::Storage(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

impl LocalLedger for SqliteLedger {}

impl Ledger for SqliteLedger {
    fn load(&mut self) -> Result<Vec<Event>, Error> {
        self.events()
    }

    fn live_holds(&mut self) -> Result<Vec<(i64, ReservationId)>, Error> {
        let mut statement = self
            .connection
            .prepare("SELECT expires_at_ms, id FROM orders WHERE status = 'held'")
            .map_err(|e| self.failed("reading holds", e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.failed("reading holds", e))?;
        rows.into_iter()
            .map(|(deadline, id)| {
                let id = self.id(&id)?;
                Ok((self.hold_deadline(id, deadline)?, id))
            })
            .collect()
    }

    fn find_order(&mut self, id: ReservationId) -> Result<Option<Order>, Error> {
        let found = self
            .connection
            .prepare_cached(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id = ?1"
            ))
            .and_then(|mut statement| {
                statement
                    .query_row([id.as_uuid().as_bytes()], order_row)
                    .optional()
            })
            .map_err(|e| self.failed("looking up an order", e))?;
        found.map(|row| self.order(row)).transpose()
    }

    fn customer_taken(&mut self, event: &EventId, customer: &CustomerId) -> Result<u64, Error> {
        self.connection
            .prepare_cached(
                "SELECT (SELECT COALESCE(SUM(qty), 0) FROM orders
                         WHERE event = ?1 AND customer = ?2 AND status IN ('held', 'confirmed'))
                      + (SELECT COALESCE(SUM(qty), 0) FROM waitlist
                         WHERE event = ?1 AND customer = ?2 AND status = 'waiting')",
            )
            .and_then(|mut statement| {
                statement.query_row([event.as_str(), customer.as_str()], |row| row.get(0))
            })
            .map_err(|e| self.failed("counting a customer's tickets", e))
    }

    fn waitlist(&mut self, event: &EventId) -> Result<Vec<Entry>, Error> {
        if !self.listed.contains(event) {
            return Ok(Vec::new());
        }
        let rows = self
            .connection
            .prepare_cached(concat!(
                "SELECT ",
                entry_columns!(),
                " FROM waitlist WHERE event = ?1 AND status IN ('waiting', 'offered')
                  ORDER BY joined_at_ms, id"
            ))
            .and_then(|mut statement| {
                statement
                    .query_map([event.as_str()], entry_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.failed("reading a waiting list", e))?;
        if rows.is_empty() {
            self.listed.remove(event);
        }
        rows.into_iter().map(|row| self.entry(row)).collect()
    }

    fn find_entry(&mut self, id: ReservationId) -> Result<Option<Entry>, Error> {
        let found = self
            .connection
            .prepare_cached(concat!(
                "SELECT ",
                entry_columns!(),
                " FROM waitlist WHERE id = ?1"
            ))
            .and_then(|mut statement| {
                statement
                    .query_row([id.as_uuid().as_bytes()], entry_row)
                    .optional()
            })
            .map_err(|e| self.failed("looking up a waiting-list entry", e))?;
        found.map(|row| self.entry(row)).transpose()
    }

    fn last_change_seq(&mut self) -> Result<u64, Error> {
        let last: Option<i64> = self
            .connection
            .query_row(
                "SELECT MAX(seq) FROM (SELECT last_seq AS seq FROM changes_purged
                                       UNION ALL SELECT MAX(seq) FROM changes)",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.failed("reading the last change's number", e))?;
        Ok(last.map_or(0, |last| u64::try_from(last).unwrap_or(0)))
    }

    fn changes(&mut self, after: u64, limit: usize) -> Result<Kept, Error> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String, String, i64, String)> = self
            .connection
            .prepare_cached(
                "SELECT seq, kind, event, at_ms, data FROM changes
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([after, limit], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })?
                    .collect()
            })
            .map_err(|e| self.failed("reading changes", e))?;
        let mut kept = Kept {
            changes: Vec::with_capacity(rows.len()),
            last_seq: self.last_change_seq()?,
        };
        for (seq, kind, event, at_ms, data) in rows {
            kept.changes
                .push(ledger::stored_change(seq, &kind, &event, at_ms, data)?);
        }
        Ok(kept)
    }

    fn find_key(&mut self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
        let found = self
            .connection
            .prepare_cached(concat!(
                "SELECT ",
                key_columns!(),
                " FROM idempotency_keys WHERE key = ?1"
            ))
            .and_then(|mut statement| statement.query_row([key.as_str()], key_row).optional())
            .map_err(|e| self.failed("looking up an idempotency key", e))?;
        found.map(|row| self.key(row)).transpose()
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
        let path = self.path.clone();
        let failed = |e: rusqlite::Error| {
            Error::Storage(format!("commit to {} failed: {e}", path.display()))
        };
        let transaction = self.connection.transaction().map_err(failed)?;
        {
            let mut upsert_event = transaction.prepare_cached(UPSERT_EVENT).map_err(failed)?;
            for event in &batch.events {
                let stock = event.stock();
                let (quotas, catalogue) = codec::encode_layout(event).unzip();
                upsert_event
                    .execute(params![
                        event.id.as_str(),
                        event.name,
                        stock.capacity,
                        stock.available,
                        stock.held,
                        stock.sold,
                        quotas,
                        catalogue
                    ])
                    .map_err(failed)?;
            }
            let mut upsert_order = transaction.prepare_cached(UPSERT_ORDER).map_err(failed)?;
            for order in &batch.orders {
                upsert_order
                    .execute(params![
                        order.id.as_uuid().as_bytes(),
                        order.event.as_str(),
                        order.qty,
                        order.status.as_str(),
                        order.remaining,
                        order.created_at_ms,
                        order.updated_at_ms,
                        order.expires_at_ms,
                        codec::encode_lines(&order.lines),
                        order.customer.as_ref().map(CustomerId::as_str)
                    ])
                    .map_err(failed)?;
            }
            let mut upsert_entry = transaction
                .prepare_cached(UPSERT_WAITLIST_ENTRY)
                .map_err(failed)?;
            for entry in &batch.entries {
                upsert_entry
                    .execute(params![
                        entry.id.as_uuid().as_bytes(),
                        entry.event.as_str(),
                        entry.category.as_str(),
                        entry.qty,
                        entry.customer.as_ref().map(CustomerId::as_str),
                        entry.status.as_str(),
                        entry.joined_at_ms,
                        entry.updated_at_ms,
                        entry.offer_expires_at_ms
                    ])
                    .map_err(failed)?;
            }
            if let Some(before) = batch.purge_keys_before_ms {
                transaction
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at_ms < ?1")
                    .and_then(|mut purge| purge.execute([before]))
                    .map_err(failed)?;
            }
            if let Some(before) = batch.purge_changes_before_ms {
                // A prefix by number, never a hole: everything before the first change that is
                // not older than `before`. A wall clock stepped back can leave an older change
                // after it; that one is kept until those before it go (kept longer, never lost
                // early). Found in number order, from the oldest: no index by age is needed.
                transaction
                    .prepare_cached(
                        "UPDATE changes_purged SET last_seq = MAX(last_seq, COALESCE(
                             (SELECT seq FROM changes WHERE at_ms >= ?1 ORDER BY seq LIMIT 1) - 1,
                             (SELECT MAX(seq) FROM changes),
                             0))",
                    )
                    .and_then(|mut purge| purge.execute([before]))
                    .map_err(failed)?;
                transaction
                    .prepare_cached(
                        "DELETE FROM changes WHERE seq <= (SELECT last_seq FROM changes_purged)",
                    )
                    .and_then(|mut purge| purge.execute([]))
                    .map_err(failed)?;
            }
            if !batch.changes.is_empty() {
                let mut insert_change =
                    transaction.prepare_cached(INSERT_CHANGE).map_err(failed)?;
                for change in &batch.changes {
                    insert_change
                        .execute(params![
                            change.seq,
                            change.kind.as_str(),
                            change.event.as_str(),
                            change.at_ms,
                            &*change.data
                        ])
                        .map_err(failed)?;
                }
            }
            let mut upsert_key = transaction
                .prepare_cached(UPSERT_IDEMPOTENCY_KEY)
                .map_err(failed)?;
            for record in &batch.keys {
                upsert_key
                    .execute(params![
                        record.key.as_str(),
                        record.fingerprint,
                        record.order_id.map(|id| *id.as_uuid().as_bytes()),
                        record.remaining,
                        record.changed,
                        record.created_at_ms,
                        record.short
                    ])
                    .map_err(failed)?;
            }
        }
        // Dropping an uncommitted transaction rolls it back, so any `?` above leaves no trace.
        transaction.commit().map_err(failed)?;
        let live =
            |entry: &&Entry| matches!(entry.status, EntryStatus::Waiting | EntryStatus::Offered);
        self.listed.extend(
            batch
                .entries
                .iter()
                .filter(live)
                .map(|entry| entry.event.clone()),
        );
        Ok(())
    }
}

impl SqliteLedger {
    fn events(&self) -> Result<Vec<Event>, Error> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT id, name, capacity, available, held, sold, quotas, catalogue FROM events",
            )
            .map_err(|e| self.failed("reading events", e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    Stock {
                        capacity: row.get(2)?,
                        available: row.get(3)?,
                        held: row.get(4)?,
                        sold: row.get(5)?,
                    },
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, Option<String>>(7)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.failed("reading events", e))?;
        rows.into_iter()
            .map(|(id, name, stock, quotas, catalogue)| {
                let layout = match (&quotas, &catalogue) {
                    (Some(quotas), Some(catalogue)) => Some((quotas.as_str(), catalogue.as_str())),
                    (None, None) => None,
                    _ => {
                        return Err(Error::Storage(format!(
                            "event '{id}' in {} has half a layout",
                            self.path.display()
                        )));
                    }
                };
                codec::decode_event(EventId::parse(&id)?, name.into(), stock, layout)
            })
            .collect()
    }

    /// Hands the whole store to `sink`, in batches of at most `chunk` rows: first every event,
    /// then the orders, then the idempotency keys, so each batch refers only to what came before.
    pub fn export(
        &self,
        chunk: usize,
        sink: &mut dyn FnMut(Batch) -> Result<(), Error>,
    ) -> Result<Exported, Error> {
        let chunk = chunk.max(1);
        let events = self.events()?;
        let mut exported = Exported {
            events: events.len() as u64,
            ..Exported::default()
        };
        sink(Batch {
            events,
            ..Batch::default()
        })?;

        let mut batch = Batch::default();
        self.each_row(
            concat!("SELECT ", order_columns!(), " FROM orders"),
            order_row,
            |row| {
                batch.orders.push(self.order(row)?);
                exported.orders += 1;
                if batch.orders.len() == chunk {
                    sink(std::mem::take(&mut batch))?;
                }
                Ok(())
            },
        )?;
        self.each_row(
            concat!("SELECT ", entry_columns!(), " FROM waitlist"),
            entry_row,
            |row| {
                batch.entries.push(self.entry(row)?);
                exported.entries += 1;
                if batch.orders.len() + batch.entries.len() >= chunk {
                    sink(std::mem::take(&mut batch))?;
                }
                Ok(())
            },
        )?;
        self.each_row(
            concat!("SELECT ", key_columns!(), " FROM idempotency_keys"),
            key_row,
            |row| {
                batch.keys.push(self.key(row)?);
                exported.keys += 1;
                if batch.orders.len() + batch.entries.len() + batch.keys.len() >= chunk {
                    sink(std::mem::take(&mut batch))?;
                }
                Ok(())
            },
        )?;
        if !batch.is_empty() {
            sink(batch)?;
        }
        Ok(exported)
    }

    /// Runs `each` on every row `sql` returns, decoded by `decode`, without holding them all.
    fn each_row<R>(
        &self,
        sql: &str,
        decode: fn(&rusqlite::Row) -> rusqlite::Result<R>,
        mut each: impl FnMut(R) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut statement = self
            .connection
            .prepare(sql)
            .map_err(|e| self.failed("reading the store", e))?;
        let rows = statement
            .query_map([], decode)
            .map_err(|e| self.failed("reading the store", e))?;
        for row in rows {
            each(row.map_err(|e| self.failed("reading the store", e))?)?;
        }
        Ok(())
    }

    fn order(&self, row: OrderRow) -> Result<Order, Error> {
        let (
            id,
            event,
            qty,
            status,
            remaining,
            created_at_ms,
            updated_at_ms,
            expires_at_ms,
            lines,
            customer,
        ) = row;
        let id = self.id(&id)?;
        let status = OrderStatus::parse(&status).ok_or_else(|| {
            Error::Storage(format!(
                "order {id} in {} has an unknown status '{status}'",
                self.path.display()
            ))
        })?;
        if status == OrderStatus::Held {
            self.hold_deadline(id, expires_at_ms)?;
        }
        Ok(Order {
            id,
            event: EventId::parse(&event)?,
            qty,
            lines: codec::decode_lines(&id, qty, lines.as_deref())?,
            customer: customer.as_deref().map(CustomerId::parse).transpose()?,
            status,
            remaining,
            created_at_ms,
            updated_at_ms,
            expires_at_ms,
        })
    }

    fn entry(&self, row: EntryRow) -> Result<Entry, Error> {
        let (id, event, category, qty, customer, status, joined_at_ms, updated_at_ms, offer) = row;
        let id = self.id(&id)?;
        let status = EntryStatus::parse(&status).ok_or_else(|| {
            Error::Storage(format!(
                "waiting-list entry {id} in {} has an unknown status '{status}'",
                self.path.display()
            ))
        })?;
        Ok(Entry {
            id,
            event: EventId::parse(&event)?,
            category: CategoryId::parse(&category)?,
            qty,
            customer: customer.as_deref().map(CustomerId::parse).transpose()?,
            status,
            joined_at_ms,
            updated_at_ms,
            offer_expires_at_ms: offer,
        })
    }

    /// [`ledger::hold_deadline`], saying which store holds the order.
    fn hold_deadline(&self, id: ReservationId, expires_at_ms: Option<i64>) -> Result<i64, Error> {
        ledger::hold_deadline(id, expires_at_ms)
            .map_err(|error| Error::Storage(format!("{error} (in {})", self.path.display())))
    }

    fn key(&self, row: KeyRow) -> Result<KeyRecord, Error> {
        let (key, fingerprint, order_id, remaining, changed, created_at_ms, short) = row;
        Ok(KeyRecord {
            key: IdempotencyKey::decode(&key)?,
            fingerprint,
            order_id: order_id.map(|id| self.id(&id)).transpose()?,
            remaining,
            short,
            changed,
            created_at_ms,
        })
    }

    fn id(&self, bytes: &[u8]) -> Result<ReservationId, Error> {
        uuid::Uuid::from_slice(bytes)
            .map(ReservationId::from)
            .map_err(|_| {
                Error::Storage(format!(
                    "{} holds a malformed order id",
                    self.path.display()
                ))
            })
    }

    /// Checks that every event's `held` and `sold` equal the tickets of its live holds and
    /// confirmed orders: a store that fails this was changed behind ticketd's back or lost writes.
    /// Reads every order.
    pub fn audit(&self) -> Result<(), Error> {
        let events = self.events()?;
        let mut orders = Vec::new();
        self.each_row(
            concat!("SELECT ", order_columns!(), " FROM orders"),
            order_row,
            |row| {
                orders.push(self.order(row)?);
                Ok(())
            },
        )?;
        ledger::audit(&events, &orders)
            .map_err(|error| Error::Storage(format!("{error} (in {})", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists a batch reads come from memory when the event has none, so what is in memory
    /// must be what the file holds: a live entry committed before a restart is read after it.
    #[test]
    fn a_live_waiting_list_is_read_after_reopening() {
        use crate::domain::{CategoryId, Entry, EntryStatus};
        let dir = tempfile::tempdir().unwrap();
        let gala = event("gala", Stock::new(1));
        let entry = Entry {
            id: ReservationId::generate(),
            event: gala.id.clone(),
            category: CategoryId::general(),
            qty: 1,
            customer: None,
            status: EntryStatus::Waiting,
            joined_at_ms: 1,
            updated_at_ms: 1,
            offer_expires_at_ms: None,
        };
        let mut ledger = SqliteLedger::open(dir.path()).unwrap();
        assert_eq!(ledger.waitlist(&gala.id).unwrap(), []);
        ledger
            .commit(&Batch {
                events: vec![gala.clone()],
                entries: vec![entry.clone()],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(
            ledger.waitlist(&gala.id).unwrap(),
            std::slice::from_ref(&entry)
        );
        drop(ledger);
        let mut reopened = SqliteLedger::open(dir.path()).unwrap();
        assert_eq!(reopened.waitlist(&gala.id).unwrap(), [entry]);
    }
    use crate::domain::{Quantity, Reservation};
    use crate::vacancy::{Inventory, InventoryConfig};

    fn event(id: &str, stock: Stock) -> Event {
        let mut event = Event::single(EventId::parse(id).unwrap(), id.into(), stock.capacity);
        *event.stock_mut() = stock;
        event
    }

    fn order(event: &Event, qty: u32, status: OrderStatus) -> Order {
        Order {
            id: ReservationId::generate(),
            event: event.id.clone(),
            qty,
            lines: vec![crate::domain::OrderLine::general(qty)].into(),
            customer: None,
            status,
            remaining: 0,
            created_at_ms: 1,
            updated_at_ms: 1,
            expires_at_ms: (status == OrderStatus::Held).then_some(99),
        }
    }

    #[test]
    fn committed_batches_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let gala = event(
            "gala",
            Stock {
                capacity: 10,
                available: 5,
                held: 2,
                sold: 3,
            },
        );
        let sold = order(&gala, 3, OrderStatus::Confirmed);
        let held = order(&gala, 2, OrderStatus::Held);
        {
            let mut ledger = SqliteLedger::open(dir.path()).unwrap();
            assert!(ledger.load().unwrap().is_empty());
            ledger
                .commit(&Batch {
                    events: vec![gala.clone()],
                    orders: vec![sold.clone(), held.clone()],
                    ..Batch::default()
                })
                .unwrap();
        }
        let mut ledger = SqliteLedger::open(dir.path()).unwrap();
        assert_eq!(ledger.load().unwrap(), vec![gala]);
        assert_eq!(ledger.find_order(sold.id).unwrap(), Some(sold));
        assert_eq!(ledger.live_holds().unwrap(), vec![(99, held.id)]);
        assert_eq!(ledger.find_order(ReservationId::generate()).unwrap(), None);
        ledger.audit().unwrap();
    }

    /// A held order without a deadline is refused wherever the store is read, naming the
    /// order and the file, rather than given a deadline that never comes.
    #[test]
    fn a_held_order_without_a_deadline_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gala = event("gala", Stock::new(10));
        let held = order(&gala, 2, OrderStatus::Held);
        SqliteLedger::open(dir.path())
            .unwrap()
            .commit(&Batch {
                events: vec![gala],
                orders: vec![held.clone()],
                ..Batch::default()
            })
            .unwrap();
        let file = dir.path().join("ticketd.db");
        Connection::open(&file)
            .unwrap()
            .execute("UPDATE orders SET expires_at_ms = NULL", [])
            .unwrap();

        let mut ledger = SqliteLedger::open(dir.path()).unwrap();
        for refused in [
            ledger.live_holds().map(drop).unwrap_err(),
            ledger.find_order(held.id).map(drop).unwrap_err(),
        ] {
            assert_eq!(refused.code(), "storage_failure", "{refused}");
            let message = refused.to_string();
            assert!(message.contains(&held.id.to_string()), "{message}");
            assert!(message.contains("no deadline"), "{message}");
            assert!(message.contains(&file.display().to_string()), "{message}");
        }
    }

    #[test]
    fn export_hands_over_everything_in_chunks_events_first() {
        let dir = tempfile::tempdir().unwrap();
        let gala = event(
            "gala",
            Stock {
                capacity: 10,
                available: 0,
                held: 2,
                sold: 8,
            },
        );
        let mut orders: Vec<Order> = (0..4)
            .map(|_| order(&gala, 2, OrderStatus::Confirmed))
            .collect();
        orders.push(order(&gala, 2, OrderStatus::Held));
        let key = KeyRecord {
            key: IdempotencyKey::parse("k-1").unwrap(),
            fingerprint: "f".into(),
            order_id: Some(orders[0].id),
            remaining: 8,
            short: None,
            changed: true,
            created_at_ms: 1,
        };
        let mut ledger = SqliteLedger::open(dir.path()).unwrap();
        ledger
            .commit(&Batch {
                events: vec![gala.clone(), event("empty", Stock::new(0))],
                orders: orders.clone(),
                keys: vec![key.clone()],
                ..Batch::default()
            })
            .unwrap();

        let mut batches = Vec::new();
        let exported = ledger
            .export(2, &mut |batch| {
                batches.push(batch);
                Ok(())
            })
            .unwrap();
        assert_eq!(
            exported,
            Exported {
                events: 2,
                orders: 5,
                entries: 0,
                keys: 1,
                ..Exported::default()
            }
        );
        assert_eq!(batches[0].events.len(), 2);
        assert!(batches[0].orders.is_empty() && batches[0].keys.is_empty());
        assert!(batches[1..].iter().all(|b| b.events.is_empty()));
        assert!(batches.iter().all(|b| b.orders.len() + b.keys.len() <= 2));
        let mut copied: Vec<Order> = batches.iter().flat_map(|b| b.orders.clone()).collect();
        copied.sort_by_key(|o| o.id);
        orders.sort_by_key(|o| o.id);
        assert_eq!(copied, orders);
        assert_eq!(batches.last().unwrap().keys, vec![key]);
    }

    #[test]
    fn a_failed_batch_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = SqliteLedger::open(dir.path()).unwrap();
        let gala = event("gala", Stock::new(10));
        ledger
            .commit(&Batch {
                events: vec![gala.clone()],
                orders: vec![],
                ..Batch::default()
            })
            .unwrap();
        // The schema refuses stock that does not add up; the order in the same batch must not
        // be stored either.
        let broken = event(
            "gala",
            Stock {
                capacity: 10,
                available: 9,
                held: 0,
                sold: 9,
            },
        );
        let lost = order(&gala, 1, OrderStatus::Confirmed);
        let error = ledger
            .commit(&Batch {
                events: vec![broken],
                orders: vec![lost.clone()],
                ..Batch::default()
            })
            .unwrap_err();
        assert_eq!(error.code(), "storage_failure");
        assert_eq!(ledger.find_order(lost.id).unwrap(), None);
        assert_eq!(ledger.load().unwrap(), vec![gala]);
    }

    #[test]
    fn one_process_per_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SqliteLedger::open(dir.path()).unwrap();
        let Err(error) = SqliteLedger::open(dir.path()) else {
            panic!("a second open of the same directory succeeded")
        };
        assert!(error.to_string().contains("in use"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(DATABASE_FILE), vec![0x5a; 8192]).unwrap();
        let Err(error) = SqliteLedger::open(dir.path()) else {
            panic!("a garbage file was opened as a store")
        };
        assert!(error.to_string().contains(DATABASE_FILE), "{error}");
    }

    #[test]
    fn an_unusable_data_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let Err(error) = SqliteLedger::open(&file.join("data")) else {
            panic!("opened a store under a plain file")
        };
        assert!(error.to_string().contains("plain-file"), "{error}");
    }

    /// Every statement a batch writes rows with runs once per row, so none may build a
    /// temporary table: SQLite does that for a CHECK of `status IN (...)` with more than two
    /// names (about a tenth of a purchase's instructions). A statement a batch comes to write
    /// with belongs in this list.
    #[test]
    fn no_batch_write_opens_an_ephemeral_table() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(dir.path()).unwrap();
        for statement in [
            UPSERT_EVENT,
            UPSERT_ORDER,
            UPSERT_WAITLIST_ENTRY,
            INSERT_CHANGE,
            UPSERT_IDEMPOTENCY_KEY,
        ] {
            let mut explain = ledger
                .connection
                .prepare(&format!("EXPLAIN {statement}"))
                .unwrap();
            let unbound = vec![rusqlite::types::Null; explain.parameter_count()];
            let opcodes: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(unbound), |row| row.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !opcodes.iter().any(|op| op == "OpenEphemeral"),
                "{statement}: {opcodes:?}"
            );
        }
    }

    /// Changes are forgotten as a prefix by number: a change numbered later but timed earlier (a
    /// wall clock stepped back) is kept until every change before it goes, rather than cut out
    /// as a hole a reader would skip in silence; and once all are forgotten, numbering goes on.
    #[test]
    fn purging_old_changes_never_cuts_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = SqliteLedger::open(dir.path()).unwrap();
        let change = |seq, at_ms| crate::domain::Change {
            seq,
            kind: crate::domain::ChangeType::OrderConfirmed,
            event: crate::domain::EventId::default_event(),
            at_ms,
            data: "{}".into(),
        };
        let batch = Batch {
            changes: vec![
                change(1, 999),
                change(2, 1001),
                change(3, 1000),
                change(4, 1002),
            ],
            ..Batch::default()
        };
        ledger.commit(&batch).unwrap();
        let purge = |ledger: &mut SqliteLedger, before| {
            let batch = Batch {
                purge_changes_before_ms: Some(before),
                ..Batch::default()
            };
            ledger.commit(&batch).unwrap();
            let kept = ledger.changes(0, 10).unwrap();
            let seqs: Vec<u64> = kept.changes.iter().map(|c| c.seq).collect();
            (seqs, kept.last_seq)
        };
        assert_eq!(
            purge(&mut ledger, 1001),
            (vec![2, 3, 4], 4),
            "3 is older, but follows 2"
        );
        assert_eq!(purge(&mut ledger, 1002), (vec![4], 4));
        let behind = crate::vacancy::outbox::page(1, ledger.changes(1, 10).unwrap());
        assert!(
            matches!(behind, Err(Error::CursorExpired { oldest: 4, .. })),
            "{behind:?}"
        );
        assert_eq!(
            purge(&mut ledger, 5000),
            (vec![], 4),
            "the last number given is kept"
        );
        drop(ledger);
        let mut reopened = SqliteLedger::open(dir.path()).unwrap();
        assert_eq!(reopened.changes(0, 10).unwrap().last_seq, 4);
    }

    /// A store of schema 4 kept the last number given in `sqlite_sequence` (AUTOINCREMENT's),
    /// which alone says it once every change is forgotten: the migration to 5 keeps the changes
    /// left with their numbers, and the last number, so no number is given twice.
    #[test]
    fn migrating_to_schema_5_keeps_changes_and_the_last_number() {
        for (forget, kept) in [("seq <= 3", vec![]), ("seq = 1", vec![2, 3])] {
            let dir = tempfile::tempdir().unwrap();
            let mut setup = format!("BEGIN; {SCHEMA}");
            for migration in &MIGRATIONS[..3] {
                setup.push_str(migration);
            }
            setup.push_str(&format!(
                "PRAGMA user_version = 4;
                 INSERT INTO changes (kind, event, at_ms, data)
                    VALUES ('order.confirmed', 'default', 1, '{{}}'),
                           ('order.confirmed', 'default', 2, '{{}}'),
                           ('order.cancelled', 'default', 3, '{{}}');
                 DELETE FROM changes WHERE {forget};
                 COMMIT;"
            ));
            Connection::open(dir.path().join(DATABASE_FILE))
                .and_then(|connection| connection.execute_batch(&setup))
                .unwrap();
            let mut ledger = SqliteLedger::open(dir.path()).unwrap();
            // A purge of what is older than every change left forgets none of them.
            let purge = Batch {
                purge_changes_before_ms: Some(1),
                ..Batch::default()
            };
            ledger.commit(&purge).unwrap();
            let found = ledger.changes(0, 10).unwrap();
            let seqs: Vec<u64> = found.changes.iter().map(|c| c.seq).collect();
            assert_eq!((seqs, found.last_seq), (kept, 3), "forgotten: {forget}");
            let version: i64 = ledger
                .connection
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
    }

    /// Rebuilding orders and the waiting list for schema 6 keeps what schema 5 had of them:
    /// rows, columns, table options, indexes and the key to their event; every status the code
    /// writes is taken, and any other is still refused.
    #[test]
    fn migrating_to_schema_6_keeps_columns_indexes_keys_and_checks() {
        let shape = |connection: &Connection| -> Vec<String> {
            let sql = "SELECT 'index ' || name || ': ' || sql FROM sqlite_schema
                           WHERE type = 'index' AND tbl_name IN ('orders', 'waitlist')
                       UNION ALL SELECT 'column ' || t.name || '.' || c.name || ' ' || c.type
                           || ' ' || c.\"notnull\" || ' ' || c.pk
                           FROM (SELECT 'orders' AS name UNION SELECT 'waitlist') AS t,
                                pragma_table_info(t.name) AS c
                       UNION ALL SELECT 'key ' || t.name || '.' || k.\"from\" || ' -> '
                           || k.\"table\" || '.' || k.\"to\"
                           FROM (SELECT 'orders' AS name UNION SELECT 'waitlist') AS t,
                                pragma_foreign_key_list(t.name) AS k
                       UNION ALL SELECT 'table ' || name || ' strict ' || strict || ' wr ' || wr
                           FROM pragma_table_list WHERE name IN ('orders', 'waitlist')
                       UNION ALL SELECT 'order ' || quote(id) || ' ' || event || ' ' || qty || ' '
                           || status || ' ' || remaining || ' ' || created_at_ms || ' '
                           || updated_at_ms || ' ' || quote(expires_at_ms) || ' ' || quote(lines)
                           || ' ' || quote(customer) FROM orders
                       UNION ALL SELECT 'entry ' || quote(id) || ' ' || event || ' ' || category
                           || ' ' || qty || ' ' || quote(customer) || ' ' || status || ' '
                           || joined_at_ms || ' ' || updated_at_ms || ' '
                           || quote(offer_expires_at_ms) FROM waitlist
                       ORDER BY 1";
            let mut statement = connection.prepare(sql).unwrap();
            statement
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut setup = format!("BEGIN; {SCHEMA}");
        for migration in &MIGRATIONS[..4] {
            setup.push_str(migration);
        }
        setup.push_str(
            "PRAGMA user_version = 5;
             INSERT INTO events (id, name, capacity, available, held, sold)
                VALUES ('gala', 'Gala', 10, 7, 2, 1);
             INSERT INTO orders (id, event, qty, status, remaining, created_at_ms, updated_at_ms,
                                 expires_at_ms, lines, customer)
                VALUES (x'01', 'gala', 1, 'confirmed', 0, 1, 1, NULL, NULL, 'c-1'),
                       (x'02', 'gala', 2, 'held', 0, 1, 1, 99, NULL, NULL);
             INSERT INTO waitlist (id, event, category, qty, customer, status, joined_at_ms,
                                   updated_at_ms, offer_expires_at_ms)
                VALUES (x'03', 'gala', 'general', 1, 'c-2', 'waiting', 1, 1, NULL);
             COMMIT;",
        );
        let before = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        before.execute_batch(&setup).unwrap();
        let shape_before = shape(&before);
        drop(before);
        let ledger = SqliteLedger::open(dir.path()).unwrap();
        let shape_after = shape(&ledger.connection);
        assert_eq!(shape_after, shape_before);
        assert_eq!(
            shape_after
                .iter()
                .filter(|line| line.starts_with("order "))
                .count(),
            2
        );
        for status in OrderStatus::ALL {
            let update = "UPDATE orders SET status = ?1 WHERE id = x'01'";
            let taken = ledger.connection.execute(update, [status.as_str()]);
            assert_eq!(taken.ok(), Some(1), "{status:?}");
        }
        for status in EntryStatus::ALL {
            let update = "UPDATE waitlist SET status = ?1 WHERE id = x'03'";
            let taken = ledger.connection.execute(update, [status.as_str()]);
            assert_eq!(taken.ok(), Some(1), "{status:?}");
        }
        for refused in [
            "UPDATE orders SET status = 'sold'",
            "UPDATE waitlist SET status = 'gone'",
            "UPDATE orders SET event = 'nope'",
        ] {
            assert!(ledger.connection.execute(refused, []).is_err(), "{refused}");
        }
    }

    /// A full disk makes the commit fail: the requests of that batch get the storage error and
    /// stock stays exactly as it was. (`max_page_count` makes SQLite report SQLITE_FULL, the error
    /// a full disk gives.)
    #[test]
    fn a_full_disk_refuses_the_batch_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(dir.path()).unwrap();
        let pages: i64 = ledger
            .connection
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap();
        ledger
            .connection
            .pragma_update(None, "max_page_count", pages + 2)
            .unwrap();
        let config = InventoryConfig {
            initial_stock: 1_000_000,
            ..InventoryConfig::default()
        };
        let inventory = Inventory::open(Box::new(ledger), config).unwrap();
        let default = EventId::default_event();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut accepted = 0u64;
        let mut failure = None;
        for _ in 0..100_000 {
            let reservation = Reservation {
                id: ReservationId::generate(),
                event: default.clone(),
                lines: crate::domain::Lines::one(Quantity::parse(1, 10).unwrap()),
                customer: None,
                hold_ttl_seconds: None,
                key: None,
            };
            match runtime.block_on(inventory.reserve(reservation)) {
                Ok(reserved) => {
                    assert!(reserved.accepted());
                    accepted += 1;
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let failure = failure.expect("the store filled up");
        assert_eq!(failure.code(), "storage_failure", "{failure}");
        assert!(failure.to_string().contains("full"), "{failure}");
        let stock = runtime.block_on(inventory.event(&default)).unwrap().stock();
        assert_eq!(stock.sold, accepted, "a refused batch changed stock");
    }
}
