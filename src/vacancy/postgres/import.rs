//! Filling an empty database with a whole store (`ticketd copy-to-postgres`).

use deadpool_postgres::Object;

use super::batch::{apply, begin};
use super::db::{Db, PostgresConfig, connect, execute, failed, query};
use super::rows::{column, stored};
use super::schema::{identify, migrate};
use crate::domain::Error;
use crate::vacancy::ledger::Batch;
use tokio_postgres::types::ToSql;

/// Fills an empty database with a whole store, in one transaction: all of it arrives or none.
/// `fill` hands the store over batch by batch, events before the orders that name them. The
/// database is brought up to date first, and refused if it holds any event already. Changes
/// keep their numbers; `fill` answers the number of the last change the store gave, where the
/// database's counter goes on from.
pub fn import(
    config: &PostgresConfig,
    fill: impl FnOnce(&mut dyn FnMut(Batch) -> Result<(), Error>) -> Result<u64, Error>,
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
    fill: impl FnOnce(&mut dyn FnMut(Batch) -> Result<(), Error>) -> Result<u64, Error>,
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
    let last_seq = fill(&mut |mut batch| {
        let changes = std::mem::take(&mut batch.changes);
        db.block_on(apply(client, &batch, None))?;
        if !changes.is_empty() {
            let seqs: Vec<i64> = changes.iter().map(|c| stored(c.seq)).collect();
            let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
            let events: Vec<&str> = changes.iter().map(|c| c.event.as_str()).collect();
            let at: Vec<i64> = changes.iter().map(|c| c.at_ms).collect();
            let data: Vec<&str> = changes.iter().map(|c| &*c.data).collect();
            let sql = "INSERT INTO changes (seq, kind, event, at_ms, data)
                       SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[],
                                            $5::text[])";
            let params: [&(dyn ToSql + Sync); 5] = [&seqs, &kinds, &events, &at, &data];
            db.block_on(execute(client, "copying changes", sql, &params))?;
        }
        Ok(())
    })?;
    let sql = "UPDATE change_counter SET last_seq = $1";
    let last_seq = stored(last_seq);
    db.block_on(execute(
        client,
        "copying the change counter",
        sql,
        &[&last_seq],
    ))?;
    Ok(db.block_on(async {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(failed("committing the copy"))
    })?)
}
