//! Rows to domain values and back.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use crate::domain::{
    Error, Event, EventId, IdempotencyKey, KeyRecord, Order, OrderStatus, ReservationId, Stock,
};
use crate::vacancy::ledger;

pub(super) const EVENT_COLUMNS: &str = "id, name, capacity, available, held, sold";
pub(super) const ORDER_COLUMNS: &str =
    "id, event, qty, status, remaining, created_at_ms, updated_at_ms, expires_at_ms";

pub(super) fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, Error> {
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

pub(super) fn event_from(row: &Row) -> Result<Event, Error> {
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

pub(super) fn order_from(row: &Row) -> Result<Order, Error> {
    let id = ReservationId::from(column::<Uuid>(row, 0)?);
    let status: &str = column(row, 3)?;
    let status = OrderStatus::parse(status)
        .ok_or_else(|| Error::Storage(format!("order {id} has an unknown status '{status}'")))?;
    let expires_at_ms = column(row, 7)?;
    if status == OrderStatus::Held {
        ledger::hold_deadline(id, expires_at_ms)?;
    }
    Ok(Order {
        id,
        event: EventId::parse(column(row, 1)?)?,
        qty: u32::try_from(column::<i32>(row, 2)?)
            .map_err(|_| Error::Storage(format!("order {id} has a negative quantity")))?,
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
        changed: column(row, 4)?,
        created_at_ms: column(row, 5)?,
    })
}
