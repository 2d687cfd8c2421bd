//! One batch on the shared database: open its transaction and lock and read its rows, then write
//! its decisions and commit, all on the one connection that holds its locks.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Object;
use futures_util::future::{try_join, try_join3, try_join4};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::db::{Failure, execute, failed, query};
use super::rows::{
    ENTRY_COLUMNS, EVENT_COLUMNS, KEY_COLUMNS, ORDER_COLUMNS, column, entry_from, event_from,
    key_from, layout_from, order_from, stored,
};
use crate::domain::{
    CustomerId, Entry, Error, Event, EventId, IdempotencyKey, KeyRecord, Order, ReservationId,
    Stock,
};
use crate::vacancy::codec;
use crate::vacancy::ledger::{Batch, Plan, Snapshot};

/// A batch's transaction and the one connection it lives on. Its locks, and so every decision
/// taken on what it read, are only good on this connection: if the connection goes, the batch
/// fails. It is never finished on another connection, where its writes would run outside any
/// transaction and overwrite what other replicas committed after the locks were lost.
pub(super) struct OpenBatch {
    /// `None` once handed back by [`OpenBatch::end`].
    pub(super) client: Option<Object>,
    pub(super) locked: Locked,
    /// A statement of the batch failed, so its transaction is aborted or gone: it must not
    /// commit, since its decisions may rest on a read that never happened.
    pub(super) failed: Option<Failure>,
}

impl OpenBatch {
    pub(super) fn client(&self) -> Result<&Object, Error> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::Internal("the batch has ended".into()))
    }

    /// The connection, for the ledger to keep or put right once the batch is over.
    pub(super) fn end(mut self) -> Option<Object> {
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

/// What the open batch has locked and read.
#[derive(Default)]
pub(super) struct Locked {
    /// Every locked event, as read under the lock: its count columns and its layout's text.
    pub(super) events: HashMap<EventId, LockedEvent>,
    /// Orders found, as read in the batch's transaction.
    pub(super) orders: HashMap<ReservationId, Order>,
    /// Every order looked for, found or not.
    pub(super) orders_read: HashSet<ReservationId>,
    pub(super) keys: HashMap<IdempotencyKey, KeyRecord>,
    pub(super) keys_read: HashSet<IdempotencyKey>,
    /// Tickets of each customer the plan names, counted behind the locks.
    pub(super) customers: HashMap<(EventId, CustomerId), u64>,
    /// The live waiting-list entries of every locked event, in the order they are served.
    pub(super) waitlists: HashMap<EventId, Vec<Entry>>,
    /// Waiting-list entries found (by id, or on a locked event's list), as read.
    pub(super) entries: HashMap<ReservationId, Entry>,
    /// Every entry looked for by id, found or not.
    pub(super) entries_read: HashSet<ReservationId>,
}

/// An event's row as read under its lock, to check it is unchanged when the batch writes it.
pub(super) struct LockedEvent {
    stock: Stock,
    quotas: Option<String>,
    catalogue: Option<String>,
}

impl Locked {
    pub(super) fn read_order(&mut self, id: ReservationId, order: Option<Order>) {
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
pub(super) async fn lock(client: &Object, plan: &Plan) -> Result<(Snapshot, Locked), Error> {
    let changes: Vec<Uuid> = plan.changes.iter().map(ReservationId::as_uuid).collect();
    let mut event_ids: Vec<String> = plan.events.iter().map(|id| id.as_str().into()).collect();
    let mut due_holds = Vec::new();
    let mut begun = false;

    let named_entries: Vec<Uuid> = plan.entries.iter().map(ReservationId::as_uuid).collect();
    // First, only when the batch settles orders, names waiting-list entries or sweeps holds:
    // which events those touch.
    if !changes.is_empty() || !named_entries.is_empty() || plan.sweep_max > 0 {
        let changed = async {
            if changes.is_empty() && named_entries.is_empty() {
                return Ok(Vec::new());
            }
            let sql = "SELECT event FROM orders WHERE id = ANY($1)
                       UNION SELECT event FROM waitlist WHERE id = ANY($2)";
            let params: [&(dyn ToSql + Sync); 2] = [&changes, &named_entries];
            query(client, "finding the events of orders", sql, &params).await
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
        let sql = format!("SELECT {KEY_COLUMNS} FROM idempotency_keys WHERE key = ANY($1)");
        query(client, "reading idempotency keys", &sql, &[&keys]).await
    };
    // Each customer once, however many of the batch's requests name it: the sum is joined to
    // this list.
    let mut named: Vec<(&str, &str)> = plan
        .customers
        .iter()
        .map(|(event, customer)| (event.as_str(), customer.as_str()))
        .collect();
    named.sort_unstable();
    named.dedup();
    let (customer_events, customers): (Vec<&str>, Vec<&str>) = named.into_iter().unzip();
    let taken = async {
        if customers.is_empty() {
            return Ok(Vec::new());
        }
        // Sent after the locks, so it runs behind them: every order of a locked event that could
        // change these sums changes only under its event's lock.
        // Waiting entries count too: an entry's offer will hold its whole quantity.
        let sql = "SELECT o.event, o.customer, SUM(o.qty)::int8
                   FROM (SELECT event, customer, qty FROM orders
                         WHERE status IN ('held', 'confirmed')
                         UNION ALL
                         SELECT event, customer, qty FROM waitlist WHERE status = 'waiting') o
                   JOIN UNNEST($1::text[], $2::text[]) AS c (event, customer)
                     ON o.event = c.event AND o.customer = c.customer
                   GROUP BY o.event, o.customer";
        let params: [&(dyn ToSql + Sync); 2] = [&customer_events, &customers];
        query(client, "counting customers' tickets", sql, &params).await
    };
    let entries_sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM waitlist
         WHERE (event = ANY($1) AND status IN ('waiting', 'offered')) OR id = ANY($2)
         ORDER BY joined_at_ms, id"
    );
    let entries = async {
        // Sent after the locks: a locked event's list changes only under its lock.
        let params: [&(dyn ToSql + Sync); 2] = [&event_ids, &named_entries];
        query(client, "reading waiting lists", &entries_sql, &params).await
    };
    let ((), events, (orders, records, entries), taken) =
        try_join4(start, events, try_join3(orders, records, entries), taken).await?;

    let mut locked = Locked::default();
    for row in &entries {
        let entry = entry_from(row)?;
        locked.entries.insert(entry.id, entry);
    }
    locked.entries_read.extend(plan.entries.iter().copied());
    for row in &events {
        let event = event_from(row)?;
        let layout = layout_from(row)?;
        let was = LockedEvent {
            stock: event.stock(),
            quotas: layout.map(|(quotas, _)| quotas.to_owned()),
            catalogue: layout.map(|(_, catalogue)| catalogue.to_owned()),
        };
        locked.events.insert(event.id.clone(), was);
    }
    let events = events
        .iter()
        .map(event_from)
        .collect::<Result<Vec<_>, _>>()?;
    for event in &events {
        locked.waitlists.insert(event.id.clone(), Vec::new());
    }
    // The rows came in serving order; each live one joins its locked event's list.
    for row in &entries {
        let entry = entry_from(row)?;
        if entry.status.is_live()
            && let Some(list) = locked.waitlists.get_mut(&entry.event)
        {
            list.push(entry);
        }
    }
    for (event, customer) in &plan.customers {
        locked
            .customers
            .insert((event.clone(), customer.clone()), 0);
    }
    for row in &taken {
        let event = EventId::parse(column(row, 0)?)?;
        let customer = CustomerId::parse(column(row, 1)?)?;
        let sum = u64::try_from(column::<i64>(row, 2)?)
            .map_err(|_| Error::Storage("the database holds a negative quantity".into()))?;
        locked.customers.insert((event, customer), sum);
    }
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

/// Begins a transaction that writes its changes with it: migration 6 refuses writes to events,
/// orders and waiting lists from any other (replicas of earlier releases). Both statements go in
/// one round trip.
pub(super) async fn begin(client: &Object) -> Result<(), Error> {
    client
        .batch_execute("BEGIN; SET LOCAL ticketd.writes_changes = 'on'")
        .await
        .map_err(failed("beginning a transaction"))
}

/// Writes `batch` and commits. Without `locked` (outside a batch) it opens its own transaction.
/// The writes go out together in one round trip; COMMIT follows once their counts are checked.
pub(super) async fn write(
    client: &Object,
    batch: &Batch,
    locked: Option<&Locked>,
) -> Result<(), Error> {
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
pub(super) async fn apply(
    client: &Object,
    batch: &Batch,
    locked: Option<&Locked>,
) -> Result<(), Error> {
    let was_event = |id: &EventId| locked.and_then(|locked| locked.events.get(id));
    let (changed, created): (Vec<&Event>, Vec<&Event>) = batch
        .events
        .iter()
        .partition(|event| was_event(&event.id).is_some());

    let changed_ids: Vec<&str> = changed.iter().map(|e| e.id.as_str()).collect();
    let [capacity, available, held, sold] = stock_columns(changed.iter().map(|e| e.stock()));
    let (quotas, catalogues) = layout_columns(&changed);
    let was: Vec<&LockedEvent> = changed.iter().filter_map(|e| was_event(&e.id)).collect();
    let [was_capacity, was_available, was_held, was_sold] =
        stock_columns(was.iter().map(|was| was.stock));
    let was_quotas: Vec<Option<&str>> = was.iter().map(|was| was.quotas.as_deref()).collect();
    let was_catalogues: Vec<Option<&str>> =
        was.iter().map(|was| was.catalogue.as_deref()).collect();
    let update = async {
        if changed.is_empty() {
            return Ok(0);
        }
        let sql = "UPDATE events AS e
                   SET capacity = u.capacity, available = u.available, held = u.held, sold = u.sold,
                       quotas = u.quotas, catalogue = u.catalogue
                   FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
                               $6::int8[], $7::int8[], $8::int8[], $9::int8[],
                               $10::text[], $11::text[], $12::text[], $13::text[])
                        AS u (id, capacity, available, held, sold,
                              was_capacity, was_available, was_held, was_sold,
                              quotas, catalogue, was_quotas, was_catalogue)
                   WHERE e.id = u.id
                     AND e.capacity = u.was_capacity AND e.available = u.was_available
                     AND e.held = u.was_held AND e.sold = u.was_sold
                     AND e.quotas IS NOT DISTINCT FROM u.was_quotas
                     AND e.catalogue IS NOT DISTINCT FROM u.was_catalogue";
        let params: [&(dyn ToSql + Sync); 13] = [
            &changed_ids,
            &capacity,
            &available,
            &held,
            &sold,
            &was_capacity,
            &was_available,
            &was_held,
            &was_sold,
            &quotas,
            &catalogues,
            &was_quotas,
            &was_catalogues,
        ];
        execute(client, "updating events", sql, &params).await
    };

    let created_ids: Vec<&str> = created.iter().map(|e| e.id.as_str()).collect();
    let names: Vec<&str> = created.iter().map(|e| &*e.name).collect();
    let [new_capacity, new_available, new_held, new_sold] =
        stock_columns(created.iter().map(|e| e.stock()));
    let (new_quotas, new_catalogues) = layout_columns(&created);
    let create = async {
        if created.is_empty() {
            return Ok(0);
        }
        // A plain insert: if another replica created the same event meanwhile, the duplicate key
        // sends the batch back to be decided again, and then it sees that event.
        let sql =
            "INSERT INTO events (id, name, capacity, available, held, sold, quotas, catalogue)
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[],
                                        $5::int8[], $6::int8[], $7::text[], $8::text[])";
        let params: [&(dyn ToSql + Sync); 8] = [
            &created_ids,
            &names,
            &new_capacity,
            &new_available,
            &new_held,
            &new_sold,
            &new_quotas,
            &new_catalogues,
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
    // `Quantity` keeps new orders inside `INTEGER`; an order copied from an older embedded store
    // might not be, and must be refused rather than wrapped.
    let qty = placed
        .iter()
        .map(|o| {
            i32::try_from(o.qty).map_err(|_| {
                Error::Storage(format!(
                    "order {} is for {} tickets, more than fit",
                    o.id, o.qty
                ))
            })
        })
        .collect::<Result<Vec<i32>, Error>>()?;
    let status: Vec<&str> = placed.iter().map(|o| o.status.as_str()).collect();
    let remaining: Vec<i64> = placed.iter().map(|o| stored(o.remaining)).collect();
    let created_at: Vec<i64> = placed.iter().map(|o| o.created_at_ms).collect();
    let updated_at: Vec<i64> = placed.iter().map(|o| o.updated_at_ms).collect();
    let expires_at: Vec<Option<i64>> = placed.iter().map(|o| o.expires_at_ms).collect();
    let lines: Vec<Option<String>> = placed
        .iter()
        .map(|o| codec::encode_lines(&o.lines))
        .collect();
    let customers: Vec<Option<&str>> = placed
        .iter()
        .map(|o| o.customer.as_ref().map(CustomerId::as_str))
        .collect();
    let insert_orders = async {
        if placed.is_empty() {
            return Ok(0);
        }
        // A new order never merges into an existing row: the same reservation id used on another
        // replica at the same moment (perhaps for another event) is inserted there or here, once.
        // `schema_version` 2: written knowing lines and customers (migration 2 refuses orders
        // written by earlier releases' replicas).
        let sql = "INSERT INTO orders (id, event, qty, status, remaining, created_at_ms,
                                       updated_at_ms, expires_at_ms, lines, customer,
                                       schema_version)
                   SELECT *, 2 FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::text[],
                                           $5::int8[], $6::int8[], $7::int8[], $8::int8[],
                                           $9::text[], $10::text[])
                   ON CONFLICT (id) DO NOTHING";
        let params: [&(dyn ToSql + Sync); 10] = [
            &order_ids,
            &order_events,
            &qty,
            &status,
            &remaining,
            &created_at,
            &updated_at,
            &expires_at,
            &lines,
            &customers,
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
    let purge_changes = async {
        let Some(before) = batch.purge_changes_before_ms else {
            return Ok(0);
        };
        // A prefix by number, never a hole: `at_ms` is when a batch decided, `seq` when it
        // committed, and replicas (or a clock stepped back) can make a later number older.
        let sql = "DELETE FROM changes
                   WHERE seq <= (SELECT MAX(seq) FROM changes WHERE at_ms < $1)";
        execute(client, "forgetting old changes", sql, &[&before]).await
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
    let key_short: Vec<Option<&str>> = records.iter().map(|r| r.short.as_deref()).collect();
    let remember = async {
        if records.is_empty() {
            return Ok(0);
        }
        // Only a lapsed key may be replaced. A live one means another replica used the key at the
        // same moment: the batch is decided again and then answers as that first use did.
        let sql = "INSERT INTO idempotency_keys
                       (key, fingerprint, order_id, remaining, changed, created_at_ms, short)
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::int8[],
                                        $5::bool[], $6::int8[], $8::text[])
                   ON CONFLICT (key) DO UPDATE
                   SET fingerprint = EXCLUDED.fingerprint, order_id = EXCLUDED.order_id,
                       remaining = EXCLUDED.remaining, changed = EXCLUDED.changed,
                       created_at_ms = EXCLUDED.created_at_ms, short = EXCLUDED.short
                   WHERE idempotency_keys.created_at_ms < $7";
        let params: [&(dyn ToSql + Sync); 8] = [
            &keys,
            &prints,
            &key_orders,
            &key_remaining,
            &key_changed,
            &key_created_at,
            &batch.keys_lapsed_before_ms,
            &key_short,
        ];
        execute(client, "writing idempotency keys", sql, &params).await
    };

    let was_entry = |id: &ReservationId| locked.and_then(|locked| locked.entries.get(id));
    let (changed_entries, new_entries): (Vec<&Entry>, Vec<&Entry>) = batch
        .entries
        .iter()
        .partition(|entry| was_entry(&entry.id).is_some());
    let new_ids: Vec<Uuid> = new_entries.iter().map(|e| e.id.as_uuid()).collect();
    let new_events: Vec<&str> = new_entries.iter().map(|e| e.event.as_str()).collect();
    let new_categories: Vec<&str> = new_entries.iter().map(|e| e.category.as_str()).collect();
    let new_qty = new_entries
        .iter()
        .map(|e| {
            i32::try_from(e.qty).map_err(|_| {
                Error::Storage(format!(
                    "entry {} is for {} tickets, more than fit",
                    e.id, e.qty
                ))
            })
        })
        .collect::<Result<Vec<i32>, Error>>()?;
    let new_customers: Vec<Option<&str>> = new_entries
        .iter()
        .map(|e| e.customer.as_ref().map(CustomerId::as_str))
        .collect();
    let new_status: Vec<&str> = new_entries.iter().map(|e| e.status.as_str()).collect();
    let new_joined: Vec<i64> = new_entries.iter().map(|e| e.joined_at_ms).collect();
    let new_updated: Vec<i64> = new_entries.iter().map(|e| e.updated_at_ms).collect();
    let new_offers: Vec<Option<i64>> = new_entries.iter().map(|e| e.offer_expires_at_ms).collect();
    let insert_entries = async {
        if new_entries.is_empty() {
            return Ok(0);
        }
        // Like a reservation id, an entry id used on another replica at the same moment is
        // inserted there or here, once.
        let sql = "INSERT INTO waitlist (id, event, category, qty, customer, status, joined_at_ms,
                                         updated_at_ms, offer_expires_at_ms)
                   SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[],
                                        $5::text[], $6::text[], $7::int8[], $8::int8[],
                                        $9::int8[])
                   ON CONFLICT (id) DO NOTHING";
        let params: [&(dyn ToSql + Sync); 9] = [
            &new_ids,
            &new_events,
            &new_categories,
            &new_qty,
            &new_customers,
            &new_status,
            &new_joined,
            &new_updated,
            &new_offers,
        ];
        execute(client, "writing waiting-list entries", sql, &params).await
    };
    let moved_entry_ids: Vec<Uuid> = changed_entries.iter().map(|e| e.id.as_uuid()).collect();
    let moved_entry_status: Vec<&str> = changed_entries.iter().map(|e| e.status.as_str()).collect();
    let moved_entry_at: Vec<i64> = changed_entries.iter().map(|e| e.updated_at_ms).collect();
    let moved_entry_offers: Vec<Option<i64>> = changed_entries
        .iter()
        .map(|e| e.offer_expires_at_ms)
        .collect();
    let was_entry_status: Vec<&str> = changed_entries
        .iter()
        .filter_map(|e| was_entry(&e.id))
        .map(|e| e.status.as_str())
        .collect();
    let update_entries = async {
        if changed_entries.is_empty() {
            return Ok(0);
        }
        let sql = "UPDATE waitlist AS w SET status = u.status, updated_at_ms = u.updated_at_ms,
                          offer_expires_at_ms = u.offer_expires_at_ms
                   FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::text[])
                        AS u (id, status, updated_at_ms, offer_expires_at_ms, was_status)
                   WHERE w.id = u.id AND w.status = u.was_status";
        let params: [&(dyn ToSql + Sync); 5] = [
            &moved_entry_ids,
            &moved_entry_status,
            &moved_entry_at,
            &moved_entry_offers,
            &was_entry_status,
        ];
        execute(client, "updating waiting-list entries", sql, &params).await
    };

    // New events first, on their own: the batch's orders may name them, and statements sent
    // together can reach the server out of order while one of them is still being prepared.
    create.await?;
    // The changes go out last, with the rest rather than after it: no round trip of their own.
    let (
        updated,
        (placed_count, moved_count),
        (_, remembered),
        ((entries_placed, entries_moved), ()),
    ) = try_join4(
        update,
        try_join(insert_orders, update_orders),
        try_join(try_join(purge, purge_changes), remember),
        try_join(
            try_join(insert_entries, update_entries),
            number_changes(client, batch),
        ),
    )
    .await?;
    if entries_placed != new_entries.len() as u64 {
        return Err(Error::Contention(
            "a waiting-list entry id was used on another replica at the same moment".into(),
        ));
    }
    if entries_moved != changed_entries.len() as u64 {
        return Err(Error::Contention(format!(
            "updated {entries_moved} of {} waiting-list entries: one was no longer as read",
            changed_entries.len()
        )));
    }
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

/// Stores the batch's changes, numbered in commit order: the last statement the batch sends
/// before COMMIT.
///
/// A sequence would not do: with replicas committing at once, a transaction can take number 7,
/// another 8, and 8 commit first; a reader that saw 8 and moved its cursor past it would never
/// see 7. Here every batch that writes changes takes its numbers by updating the one row of
/// `change_counter`, and that row stays locked until the batch commits or rolls back. A second
/// batch updating it waits for the first to end and then reads the value the first committed. So
/// numbers are given in the order batches commit, without a gap (a rolled-back batch gives its
/// numbers back): when a reader sees change n, every change before n is committed and visible
/// too (PostgreSQL makes a commit visible before the row lock is released).
///
/// The cost: batches that write changes commit one after the other across replicas, for the
/// time between this statement and COMMIT (the answers' way back, COMMIT's way there, and the
/// commit itself). That is why it is sent last, behind every other write of the batch in the
/// same round trip. Each replica still commits whole batches, so the hand-over is once per
/// batch, not once per change.
async fn number_changes(client: &Object, batch: &Batch) -> Result<(), Error> {
    if batch.changes.is_empty() {
        return Ok(());
    }
    let count = batch.changes.len() as i64;
    let kinds: Vec<&str> = batch.changes.iter().map(|c| c.kind.as_str()).collect();
    let events: Vec<&str> = batch.changes.iter().map(|c| c.event.as_str()).collect();
    let at: Vec<i64> = batch.changes.iter().map(|c| c.at_ms).collect();
    let data: Vec<&str> = batch.changes.iter().map(|c| &*c.data).collect();
    let sql = "WITH counter AS (
                   UPDATE change_counter SET last_seq = last_seq + $1 RETURNING last_seq
               )
               INSERT INTO changes (seq, kind, event, at_ms, data)
               SELECT counter.last_seq - $1 + u.n, u.kind, u.event, u.at_ms, u.data
               FROM counter, UNNEST($2::text[], $3::text[], $4::int8[], $5::text[])
                    WITH ORDINALITY AS u (kind, event, at_ms, data, n)";
    let params: [&(dyn ToSql + Sync); 5] = [&count, &kinds, &events, &at, &data];
    let inserted = execute(client, "writing changes", sql, &params).await?;
    if inserted != batch.changes.len() as u64 {
        return Err(Error::Storage(format!(
            "wrote {inserted} of {} changes: the change counter is missing",
            batch.changes.len()
        )));
    }
    Ok(())
}

/// The events' layouts (quotas, catalogue), each as a column for `UNNEST`.
fn layout_columns(events: &[&Event]) -> (Vec<Option<String>>, Vec<Option<String>>) {
    events
        .iter()
        .map(|event| codec::encode_layout(event).unzip())
        .unzip()
}

/// Capacity, available, held and sold, each as a column for `UNNEST`.
fn stock_columns(stocks: impl Iterator<Item = Stock> + Clone) -> [Vec<i64>; 4] {
    let column = |pick: fn(&Stock) -> u64| stocks.clone().map(|s| stored(pick(&s))).collect();
    [
        column(|s| s.capacity),
        column(|s| s.available),
        column(|s| s.held),
        column(|s| s.sold),
    ]
}
