//! Rows to domain values and back.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use crate::domain::{
    CategoryId, CustomerId, Entry, EntryStatus, Error, Event, EventId, IdempotencyKey, KeyRecord,
    Order, OrderStatus, ReservationId, Stock,
};
use crate::vacancy::{codec, ledger};

pub(super) const EVENT_COLUMNS: &str =
    "id, name, capacity, available, held, sold, quotas, catalogue";
pub(super) const KEY_COLUMNS: &str =
    "key, fingerprint, order_id, remaining, changed, created_at_ms, short";
pub(super) const ORDER_COLUMNS: &str = "id, event, qty, status, remaining, created_at_ms, \
     updated_at_ms, expires_at_ms, lines, customer";

pub(super) const ENTRY_COLUMNS: &str = "id, event, category, qty, customer, status, \
     joined_at_ms, updated_at_ms, offer_expires_at_ms";

pub(super) fn entry_from(row: &Row) -> Result<Entry, Error> {
    let id = ReservationId::from(column::<Uuid>(row, 0)?);
    let status: &str = column(row, 5)?;
    let status = EntryStatus::parse(status).ok_or_else(|| {
        Error::Storage(format!(
            "waiting-list entry {id} has an unknown status '{status}'"
        ))
    })?;
    let qty = u32::try_from(column::<i32>(row, 3)?)
        .map_err(|_| Error::Storage(format!("waiting-list entry {id} has a negative quantity")))?;
    Ok(Entry {
        id,
        event: EventId::parse(column(row, 1)?)?,
        category: CategoryId::parse(column(row, 2)?)?,
        qty,
        customer: column::<Option<&str>>(row, 4)?
            .map(CustomerId::parse)
            .transpose()?,
        status,
        joined_at_ms: column(row, 6)?,
        updated_at_ms: column(row, 7)?,
        offer_expires_at_ms: column(row, 8)?,
    })
}

pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, Error> {
    row.try_get(index)
        .map_err(|e| Error::Storage(format!("the database holds an unexpected value: {e}")))
}

fn count(row: &Row, index: usize) -> Result<u64, Error> {
    u64::try_from(column::<i64>(row, index)?)
        .map_err(|_| Error::Storage("the database holds a negative ticket count".into()))
}

pub(super) fn stored(value: u64) -> i64 {
    // Every count is at most CAPACITY_MAX, far inside i64.
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An event's layout columns (quotas, catalogue) as stored: both, or neither for an event of one
/// `general` quota and category.
pub(super) fn layout_from(row: &Row) -> Result<Option<(&str, &str)>, Error> {
    match (column(row, 6)?, column(row, 7)?) {
        (Some(quotas), Some(catalogue)) => Ok(Some((quotas, catalogue))),
        (None, None) => Ok(None),
        _ => Err(Error::Storage(format!(
            "event '{}' has half a layout",
            column::<&str>(row, 0)?
        ))),
    }
}

pub(super) fn event_from(row: &Row) -> Result<Event, Error> {
    let first = Stock {
        capacity: count(row, 2)?,
        available: count(row, 3)?,
        held: count(row, 4)?,
        sold: count(row, 5)?,
    };
    codec::decode_event(
        EventId::parse(column(row, 0)?)?,
        column::<&str>(row, 1)?.into(),
        first,
        layout_from(row)?,
    )
}

pub(super) fn order_from(row: &Row) -> Result<Order, Error> {
    let id = ReservationId::from(column::<Uuid>(row, 0)?);
    let status: &str = column(row, 3)?;
    let status = OrderStatus::parse(status)
        .ok_or_else(|| Error::Storage(format!("order {id} has an unknown status '{status}'")))?;
    let expires_at_ms = column(row, 7)?;
    if status == OrderStatus::Held {
        ledger::hold_deadline(id, expires_at_ms)?;
    }
    let qty = u32::try_from(column::<i32>(row, 2)?)
        .map_err(|_| Error::Storage(format!("order {id} has a negative quantity")))?;
    Ok(Order {
        id,
        event: EventId::parse(column(row, 1)?)?,
        qty,
        lines: codec::decode_lines(&id, qty, column(row, 8)?)?,
        customer: column::<Option<&str>>(row, 9)?
            .map(CustomerId::parse)
            .transpose()?,
        status,
        remaining: count(row, 4)?,
        created_at_ms: column(row, 5)?,
        updated_at_ms: column(row, 6)?,
        expires_at_ms,
    })
}

pub(super) fn key_from(row: &Row) -> Result<KeyRecord, Error> {
    Ok(KeyRecord {
        key: IdempotencyKey::decode(column(row, 0)?)?,
        fingerprint: column(row, 1)?,
        order_id: column::<Option<Uuid>>(row, 2)?.map(ReservationId::from),
        remaining: count(row, 3)?,
        short: column(row, 6)?,
        changed: column(row, 4)?,
        created_at_ms: column(row, 5)?,
    })
}
