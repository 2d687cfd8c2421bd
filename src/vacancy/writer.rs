//! The single writer of an inventory: group commit.
//!
//! Requests queue up in a bounded channel. The writer takes every request that is waiting (up to
//! `batch_size_max`), decides each one in arrival order against the committed state plus what this
//! batch already decided, makes the whole batch durable with one [`Ledger::commit`], and only then
//! publishes the new state and answers. So an answer always means "committed", readers only ever see
//! committed state, and the cost of a durable commit is shared by everyone who arrived meanwhile.
//!
//! It is a plain OS thread rather than a Tokio task because ledgers may block on disk I/O.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use super::ledger::{Batch, Ledger, ReservationRecord};
use crate::domain::{Error, EventId, Reservation, ReservationId, Reserved, Stock};

/// The committed stock of every event; written only by the writer, read by everyone.
pub(crate) type Stocks = Arc<RwLock<HashMap<EventId, Stock>>>;

pub(crate) enum Command {
    Reserve {
        reservation: Reservation,
        reply: oneshot::Sender<Result<Reserved, Error>>,
    },
}

pub(crate) struct Writer {
    pub ledger: Box<dyn Ledger>,
    pub stocks: Stocks,
    pub batch_size_max: usize,
}

/// What one batch has decided but not yet committed.
#[derive(Default)]
struct Pending {
    /// Stock of each event the batch touched, after the batch's decisions so far.
    stocks: HashMap<EventId, Stock>,
    reservations: Vec<ReservationRecord>,
    /// Index into `reservations`, to find an id repeated within one batch.
    by_id: HashMap<ReservationId, usize>,
    /// Whether anything changed; a batch of refusals and retries needs no commit.
    changed: bool,
}

impl Writer {
    pub fn run(mut self, commands: Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.batch_size_max);
        // `recv` fails only once every sender is gone: the inventory was dropped, time to stop.
        while let Ok(first) = commands.recv() {
            batch.push(first);
            while batch.len() < self.batch_size_max {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
        tracing::debug!("inventory writer stopped");
    }

    fn process(&mut self, batch: &mut Vec<Command>) {
        let mut pending = Pending::default();
        let mut answers = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            match command {
                Command::Reserve { reservation, reply } => {
                    let answer = self.decide(&mut pending, &reservation);
                    answers.push((reply, answer));
                }
            }
        }

        if pending.changed {
            let commit = Batch {
                stocks: pending.stocks.into_iter().collect(),
                reservations: pending.reservations,
            };
            if let Err(error) = self.ledger.commit(&commit) {
                // Nothing of the batch is stored, so nothing of it may be published or confirmed:
                // every answer in it becomes the storage error, and stock stays as it was.
                tracing::error!(%error, requests = answers.len(), "commit failed; batch refused");
                for (reply, _) in answers {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
            let mut stocks = self.stocks.write();
            for (event, stock) in commit.stocks {
                stocks.insert(event, stock);
            }
        }
        for (reply, answer) in answers {
            // The caller may have given up waiting (a client timeout); its answer is still committed.
            let _ = reply.send(answer);
        }
    }

    fn decide(
        &mut self,
        pending: &mut Pending,
        reservation: &Reservation,
    ) -> Result<Reserved, Error> {
        let stock = match pending.stocks.entry(reservation.event.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let committed = self.stocks.read().get(&reservation.event).copied();
                let committed = committed.ok_or_else(|| {
                    Error::UnknownEvent(format!("unknown event '{}'", reservation.event))
                })?;
                entry.insert(committed)
            }
        };

        let earlier = match pending.by_id.get(&reservation.id) {
            Some(&index) => Some(pending.reservations[index].clone()),
            None => self.ledger.find_reservation(reservation.id)?,
        };
        if let Some(earlier) = earlier {
            // A retry of a reservation already made: answer as before, change nothing.
            if earlier.event != reservation.event || earlier.qty != reservation.qty.get() {
                return Err(Error::ReservationConflict(format!(
                    "reservation {} was already made for {} tickets of '{}'",
                    reservation.id, earlier.qty, earlier.event
                )));
            }
            return Ok(Reserved {
                accepted: true,
                remaining: stock.available,
            });
        }

        let qty = u64::from(reservation.qty.get());
        if stock.available < qty {
            return Ok(Reserved {
                accepted: false,
                remaining: stock.available,
            });
        }
        stock.available -= qty;
        stock.sold += qty;
        assert!(
            stock.is_consistent(),
            "stock of {} broke: {stock:?}",
            reservation.event
        );

        pending.changed = true;
        pending
            .by_id
            .insert(reservation.id, pending.reservations.len());
        pending.reservations.push(ReservationRecord {
            id: reservation.id,
            event: reservation.event.clone(),
            qty: reservation.qty.get(),
            created_at_ms: now_ms(),
        });
        Ok(Reserved {
            accepted: true,
            remaining: stock.available,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
