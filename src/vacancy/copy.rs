//! `ticketd copy-to-postgres`: moving an embedded store into an empty PostgreSQL database.
//!
//! The whole move is here. The embedded store is checked and handed over batch by batch
//! ([`SqliteLedger::export`]); the database takes it in one transaction ([`postgres::import`]),
//! so a copy that fails part way leaves nothing behind.

use std::path::Path;
use std::time::Duration;

use super::ledger::Batch;
use super::ledger::Ledger as _;
use super::postgres::{self, PostgresConfig};
use super::sqlite::{self, Exported, SqliteLedger};
use crate::domain::Error;

/// Copies the embedded store in `data_dir` into the empty database of `target`, in one
/// transaction, after checking the store adds up. The store stays locked throughout, so no
/// ticketd can sell from it meanwhile; once this returns, start the replicas on the database.
pub fn copy_to_postgres(data_dir: &Path, mut target: PostgresConfig) -> Result<Exported, Error> {
    // One statement of a copy carries thousands of rows: give it longer than a request's limit.
    target.timeout = target.timeout.max(COPY_TIMEOUT);
    if !data_dir.join(sqlite::DATABASE_FILE).is_file() {
        return Err(Error::Storage(format!(
            "there is no embedded store in {}",
            data_dir.display()
        )));
    }
    let mut source = SqliteLedger::open(data_dir)?;
    source.audit()?;
    let mut exported = Exported::default();
    postgres::import(&target, |sink| {
        exported = source.export(COPY_CHUNK, sink)?;
        // The changes kept, with their own numbers, and the counter where the store left it:
        // a reader's cursor means the same on the database as on the embedded store.
        let mut after = 0;
        loop {
            let kept = source.changes(after, COPY_CHUNK)?;
            let Some(last) = kept.changes.last() else {
                break;
            };
            after = last.seq;
            exported.changes += kept.changes.len() as u64;
            sink(Batch {
                changes: kept.changes,
                ..Batch::default()
            })?;
        }
        exported.last_change_seq = source.last_change_seq()?;
        Ok(exported.last_change_seq)
    })?;
    Ok(exported)
}

/// Rows per statement when copying a store: large enough to amortise the round trips, small
/// enough that no statement approaches the database's time limit.
const COPY_CHUNK: usize = 5_000;

/// The shortest time limit a statement of the copy gets, whatever the configured one.
const COPY_TIMEOUT: Duration = Duration::from_secs(60);
