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
//!
//! Where to look: `db` connects, puts a time limit on every call and says what a failure means,
//! for the batch and for the connection it ran on (what happens when PostgreSQL stalls or drops a
//! connection); `primary` finds the server that takes writes among the URL's hosts (failover); `batch` locks, reads, writes and commits one batch on its one connection; `schema`
//! migrates and names the store; `reads` serves reads outside any batch; `rows` turns rows into
//! domain values; `import` fills an empty database with a whole store.

mod batch;
pub(crate) mod db;
mod import;
mod primary;
mod reads;
pub(crate) mod rows;
mod schema;

use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::codec;
use super::ledger::{Batch, Kept, Ledger, Plan, SharedLedger, SharedReads, Snapshot};
use crate::domain::{
    CustomerId, Entry, Error, Event, EventId, IdempotencyKey, KeyRecord, Order, ReservationId,
};
use batch::{Locked, OpenBatch, lock, write};
use db::{Db, Failure, connect, execute, query};
use reads::{
    PostgresReads, select_changes, select_customer_taken, select_entry, select_events, select_key,
    select_order, select_waitlist,
};
use rows::{column, stored};
use schema::{identify, migrate};

pub use db::PostgresConfig;
pub use import::import;

/// The writer's side of the shared ledger.
pub struct PostgresLedger {
    db: Arc<Db>,
    /// The writer's connection between batches, kept while it is sound.
    idle: Option<Object>,
    /// The batch between [`SharedLedger::begin`] and [`Ledger::commit`].
    batch: Option<OpenBatch>,
    /// This store's identity, read once the first load has brought the schema up to date;
    /// `None` until then.
    store_id: Option<String>,
    /// When the writer's current batch must be over (see [`SharedLedger::bound`]).
    deadline: Option<std::time::Instant>,
}

impl PostgresLedger {
    /// Sets up the pool. Nothing is sent to the database until the first [`Ledger::load`], which
    /// brings the schema up to date (on the inventory's writer thread, where blocking is fine).
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        Ok(Self {
            db: Arc::new(Db::open(config)?),
            idle: None,
            batch: None,
            store_id: None,
            deadline: None,
        })
    }

    /// The writer's connection for work outside a batch, opening one if needed.
    fn connection(&mut self) -> Result<Object, Failure> {
        match self.idle.take() {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.db.block_on_by(self.deadline, connect(&self.db.pool)),
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
        let outcome = self.db.block_on_by(self.deadline, work(&client));
        match &outcome {
            Ok(_) => self.idle = Some(client),
            Err(failure) => self.keep_after(client, failure, transaction),
        }
        Ok(outcome?)
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
        if let Some(failure) = &batch.failed {
            return Err(failure.clone().into());
        }
        let Some(client) = batch.client.as_ref() else {
            return Err(Error::Internal("the batch has ended".into()));
        };
        let outcome = self
            .db
            .block_on_by(self.deadline, work(client, &mut batch.locked));
        if let Err(failure) = &outcome {
            batch.failed = Some(failure.clone());
        }
        Ok(outcome?)
    }

    /// Keeps `client` for the next call if it is still sound after `failure` (see
    /// [`Db::keep_after`]).
    fn keep_after(&mut self, client: Object, failure: &Failure, transaction: bool) {
        if let Some(client) = self.db.keep_after(client, failure, transaction) {
            self.idle = Some(client);
        }
    }
}

impl Ledger for PostgresLedger {
    fn load(&mut self) -> Result<Vec<Event>, Error> {
        if self.store_id.is_none() {
            // Migrations end their own transactions, failed or not.
            self.with_client(false, async |client| migrate(client).await)?;
            let id = self.with_client(false, async |client| identify(client).await)?;
            self.store_id = Some(id.to_string());
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
                    Ok((super::ledger::hold_deadline(id, deadline)?, id))
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

    fn customer_taken(&mut self, event: &EventId, customer: &CustomerId) -> Result<u64, Error> {
        let of = (event.clone(), customer.clone());
        if self.batch.is_none() {
            return self.with_client(false, async |client| {
                select_customer_taken(client, &of.0, &of.1).await
            });
        }
        self.in_batch(async |client, locked| match locked.customers.get(&of) {
            Some(taken) => Ok(*taken),
            // Not in the plan: counted now, behind the batch's locks all the same.
            None => select_customer_taken(client, &of.0, &of.1).await,
        })
    }

    fn waitlist(&mut self, event: &EventId) -> Result<Vec<Entry>, Error> {
        if self.batch.is_none() {
            return self.with_client(false, async |client| select_waitlist(client, event).await);
        }
        self.in_batch(async |client, locked| match locked.waitlists.get(event) {
            Some(list) => Ok(list.clone()),
            // Not locked by this batch: read now (the batch changes no event it did not lock).
            None => select_waitlist(client, event).await,
        })
    }

    fn find_entry(&mut self, id: ReservationId) -> Result<Option<Entry>, Error> {
        if self.batch.is_none() {
            return self.with_client(false, async |client| select_entry(client, id).await);
        }
        self.in_batch(async |client, locked| {
            if locked.entries_read.contains(&id) || locked.entries.contains_key(&id) {
                return Ok(locked.entries.get(&id).cloned());
            }
            let entry = select_entry(client, id).await?;
            if let Some(entry) = &entry {
                locked.entries.insert(id, entry.clone());
            }
            locked.entries_read.insert(id);
            Ok(entry)
        })
    }

    /// Not needed: the database numbers a shared store's changes as they commit.
    fn last_change_seq(&mut self) -> Result<u64, Error> {
        Ok(0)
    }

    fn changes(&mut self, after: u64, limit: usize) -> Result<Kept, Error> {
        self.with_client(false, async |client| {
            select_changes(client, after, limit).await
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
            Some(failure) => Err(failure.clone()),
            None => match open.client() {
                Ok(client) => self
                    .db
                    .block_on_by(self.deadline, write(client, batch, Some(&open.locked))),
                Err(error) => Err(Failure::from(error)),
            },
        };
        if let Some(client) = open.end() {
            match &written {
                Ok(()) => self.idle = Some(client),
                Err(failure) => self.keep_after(client, failure, true),
            }
        }
        Ok(written?)
    }

    fn insert_event_if_absent(&mut self, event: &Event) -> Result<bool, Error> {
        let sql =
            "INSERT INTO events (id, name, capacity, available, held, sold, quotas, catalogue)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING";
        let stock = event.stock();
        let (id, name) = (event.id.as_str(), &*event.name);
        let counts = [stock.capacity, stock.available, stock.held, stock.sold].map(stored);
        let (quotas, catalogue) = codec::encode_layout(event).unzip();
        let inserted = self.with_client(true, async |client| {
            let params: [&(dyn ToSql + Sync); 8] = [
                &id, &name, &counts[0], &counts[1], &counts[2], &counts[3], &quotas, &catalogue,
            ];
            batch::begin(client).await?;
            let inserted = execute(client, "creating an event", sql, &params).await?;
            client
                .batch_execute("COMMIT")
                .await
                .map_err(db::failed("committing an event"))?;
            Ok(inserted)
        })?;
        Ok(inserted == 1)
    }
}

impl SharedLedger for PostgresLedger {
    fn store_id(&self) -> String {
        // The writer asks only after a successful load, which sets it: asking earlier is a bug.
        self.store_id
            .clone()
            .expect("the store id is asked for only after the ledger loaded")
    }

    fn shared_reads(&self) -> Arc<dyn SharedReads> {
        Arc::new(PostgresReads {
            db: Arc::clone(&self.db),
        })
    }

    fn request_timeout(&self) -> Option<std::time::Duration> {
        Some(self.db.timeout())
    }

    fn bound(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    fn begin(&mut self, plan: &Plan) -> Result<Snapshot, Error> {
        if let Some(abandoned) = self.batch.take().and_then(OpenBatch::end) {
            // Not committed: whatever it held ends with its transaction.
            let failure = Failure::from(Error::Internal("a batch was left open".into()));
            self.keep_after(abandoned, &failure, true);
        }
        let client = self.connection()?;
        match self.db.block_on_by(self.deadline, lock(&client, plan)) {
            Ok((snapshot, locked)) => {
                self.batch = Some(OpenBatch {
                    client: Some(client),
                    locked,
                    failed: None,
                });
                Ok(snapshot)
            }
            Err(failure) => {
                self.keep_after(client, &failure, true);
                Err(failure.into())
            }
        }
    }
}
