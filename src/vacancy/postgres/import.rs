//! Filling an empty database with a whole store (`ticketd copy-to-postgres`).

use deadpool_postgres::Object;

use super::batch::{apply, begin};
use super::db::{Db, PostgresConfig, connect, failed, query};
use super::rows::column;
use super::schema::{identify, migrate};
use crate::domain::Error;
use crate::vacancy::ledger::Batch;

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
    fill(&mut |batch| Ok(db.block_on(apply(client, &batch, None))?))?;
    Ok(db.block_on(async {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(failed("committing the copy"))
    })?)
}
