//! Reads outside any batch: the HTTP side's, and the writer's between batches.

use std::sync::Arc;

use deadpool_postgres::Object;

use super::db::{Db, query};
use super::rows::column;
use super::rows::{
    ENTRY_COLUMNS, EVENT_COLUMNS, KEY_COLUMNS, ORDER_COLUMNS, entry_from, event_from, key_from,
    order_from,
};
use crate::domain::{
    CustomerId, Entry, Error, Event, EventId, EventsPage, IdempotencyKey, KeyRecord, Order,
    PageQuery, ReservationId,
};
use crate::vacancy::ledger::{Kept, SharedReads, stored_change};

pub(super) async fn select_events(client: &Object) -> Result<Vec<Event>, Error> {
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

pub(super) async fn select_order(
    client: &Object,
    id: ReservationId,
) -> Result<Option<Order>, Error> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
    let rows = query(client, "reading an order", &sql, &[&id.as_uuid()]).await?;
    rows.first().map(order_from).transpose()
}

/// Tickets of `customer`'s held and confirmed orders in `event`.
pub(super) async fn select_customer_taken(
    client: &Object,
    event: &EventId,
    customer: &CustomerId,
) -> Result<u64, Error> {
    let sql = "SELECT (SELECT COALESCE(SUM(qty), 0) FROM orders
                       WHERE event = $1 AND customer = $2 AND status IN ('held', 'confirmed'))
                    + (SELECT COALESCE(SUM(qty), 0) FROM waitlist
                       WHERE event = $1 AND customer = $2 AND status = 'waiting')";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&event.as_str(), &customer.as_str()];
    let rows = query(client, "counting a customer's tickets", sql, &params).await?;
    let sum: i64 = rows
        .first()
        .map(|row| super::rows::column(row, 0))
        .transpose()?
        .unwrap_or(0);
    u64::try_from(sum).map_err(|_| Error::Storage("the database holds a negative quantity".into()))
}

/// The live entries of `event`'s waiting list, in the order they are served.
pub(super) async fn select_waitlist(client: &Object, event: &EventId) -> Result<Vec<Entry>, Error> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM waitlist
         WHERE event = $1 AND status IN ('waiting', 'offered') ORDER BY joined_at_ms, id"
    );
    let rows = query(client, "reading a waiting list", &sql, &[&event.as_str()]).await?;
    rows.iter().map(entry_from).collect()
}

pub(super) async fn select_entry(
    client: &Object,
    id: ReservationId,
) -> Result<Option<Entry>, Error> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM waitlist WHERE id = $1");
    let rows = query(
        client,
        "reading a waiting-list entry",
        &sql,
        &[&id.as_uuid()],
    )
    .await?;
    rows.first().map(entry_from).transpose()
}

pub(super) async fn select_key(
    client: &Object,
    key: &IdempotencyKey,
) -> Result<Option<KeyRecord>, Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM idempotency_keys WHERE key = $1");
    let rows = query(client, "reading an idempotency key", &sql, &[&key.as_str()]).await?;
    rows.first().map(key_from).transpose()
}

/// Reads for the HTTP side, on pooled connections, outside any batch.
pub(super) struct PostgresReads {
    pub(super) db: Arc<Db>,
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

    async fn changes(&self, after: u64, limit: usize) -> Result<Kept, Error> {
        self.db
            .read(move |client| async move { select_changes(&client, after, limit).await })
            .await
    }
}

/// At most `limit` changes after `after`, with the counter, in one statement (one snapshot):
/// a change purged between two statements would otherwise look like no change at all.
pub(super) async fn select_changes(
    client: &Object,
    after: u64,
    limit: usize,
) -> Result<Kept, Error> {
    let sql = "SELECT c.last_seq, p.seq, p.kind, p.event, p.at_ms, p.data
               FROM change_counter AS c
               LEFT JOIN LATERAL (
                   SELECT seq, kind, event, at_ms, data FROM changes
                   WHERE seq > $1 ORDER BY seq LIMIT $2
               ) AS p ON TRUE
               ORDER BY p.seq";
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query(client, "reading changes", sql, &[&after, &limit]).await?;
    let mut kept = Kept::default();
    for row in &rows {
        let last: i64 = column(row, 0)?;
        kept.last_seq = u64::try_from(last).unwrap_or(0);
        let Some(seq) = column::<Option<i64>>(row, 1)? else {
            continue;
        };
        let kind: String = column(row, 2)?;
        let event: String = column(row, 3)?;
        let at_ms: i64 = column(row, 4)?;
        let data: String = column(row, 5)?;
        kept.changes
            .push(stored_change(seq, &kind, &event, at_ms, data)?);
    }
    Ok(kept)
}
