//! The inventory: the only place stock changes.
//!
//! [`Inventory`] is a cheap handle in front of one writer thread (see [`writer`]). Reads come from
//! the committed state in memory and never wait for the writer; changes queue up for it and are
//! answered once committed.

pub mod ledger;
pub mod sqlite;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::domain::{Error, EventId, Reservation, Reserved, Stock};
use ledger::{Batch, Ledger};
use writer::{Command, Stocks, Writer};

/// Limits and start-up values of an inventory.
#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// Capacity of the `default` event when the store is new. Ignored for an existing store.
    pub initial_stock: u64,
    /// Most tickets one reservation may take.
    pub max_per_order: u32,
    /// Most requests waiting for the writer; one more is refused as `overloaded`.
    pub queue_size_max: usize,
    /// Most requests decided and committed together.
    pub batch_size_max: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            initial_stock: 1000,
            max_per_order: 10,
            queue_size_max: 16_384,
            batch_size_max: 1024,
        }
    }
}

pub struct Inventory {
    /// `None` only while dropping, so the writer sees the channel close before we join it.
    commands: Option<SyncSender<Command>>,
    stocks: Stocks,
    max_per_order: u32,
    writer: Option<JoinHandle<()>>,
}

impl Inventory {
    /// Loads `ledger`, creates the `default` event if the store is new, and starts the writer.
    pub fn open(mut ledger: Box<dyn Ledger>, config: InventoryConfig) -> Result<Self, Error> {
        assert!(config.queue_size_max > 0 && config.batch_size_max > 0);
        let mut stocks: HashMap<EventId, Stock> = ledger.load()?.into_iter().collect();
        for (event, stock) in &stocks {
            if !stock.is_consistent() {
                return Err(Error::Storage(format!(
                    "stored stock of '{event}' does not add up: {stock:?}"
                )));
            }
        }

        let default = EventId::default_event();
        match stocks.get(&default) {
            None => {
                let stock = Stock::new(config.initial_stock);
                ledger.commit(&Batch {
                    stocks: vec![(default.clone(), stock)],
                    reservations: Vec::new(),
                })?;
                stocks.insert(default, stock);
            }
            Some(stock) if stock.capacity != config.initial_stock => tracing::warn!(
                stored_capacity = stock.capacity,
                available = stock.available,
                initial_stock = config.initial_stock,
                "the store already exists: keeping its stock and ignoring initial_stock"
            ),
            Some(_) => {}
        }

        let stocks = Arc::new(RwLock::new(stocks));
        let (commands, queue) = mpsc::sync_channel(config.queue_size_max);
        let writer = Writer {
            ledger,
            stocks: Arc::clone(&stocks),
            batch_size_max: config.batch_size_max,
        };
        let writer = std::thread::Builder::new()
            .name("inventory-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| Error::Internal(format!("cannot start the inventory writer: {e}")))?;

        Ok(Self {
            commands: Some(commands),
            stocks,
            max_per_order: config.max_per_order,
            writer: Some(writer),
        })
    }

    pub fn max_per_order(&self) -> u32 {
        self.max_per_order
    }

    /// Committed stock of `event`.
    pub fn stock(&self, event: &EventId) -> Result<Stock, Error> {
        self.stocks
            .read()
            .get(event)
            .copied()
            .ok_or_else(|| Error::UnknownEvent(format!("unknown event '{event}'")))
    }

    /// Sets `reservation.qty` tickets aside if that many are available; answers once committed.
    /// A reservation id seen before returns the first answer and changes nothing.
    pub async fn reserve(&self, reservation: Reservation) -> Result<Reserved, Error> {
        if reservation.qty.get() > self.max_per_order {
            return Err(Error::OverLimit(format!(
                "qty {} is over the limit of {} tickets per order",
                reservation.qty, self.max_per_order
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Reserve { reservation, reply })?;
        answer
            .await
            .map_err(|_| Error::Internal("the inventory writer stopped before answering".into()))?
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        let commands = self
            .commands
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the inventory is closing".into()))?;
        commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => Error::Overloaded,
            TrySendError::Disconnected(_) => {
                Error::Unavailable("the inventory writer has stopped".into())
            }
        })
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop; waiting for it means a
        // durable ledger is closed cleanly before the process exits.
        drop(self.commands.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the inventory writer panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Quantity, ReservationId};
    use ledger::MemoryLedger;

    fn inventory(initial_stock: u64) -> Inventory {
        let config = InventoryConfig {
            initial_stock,
            ..InventoryConfig::default()
        };
        Inventory::open(Box::new(MemoryLedger::new()), config).unwrap()
    }

    fn reservation(qty: i64) -> Reservation {
        Reservation {
            id: ReservationId::generate(),
            event: EventId::default_event(),
            qty: Quantity::parse(qty, 10).unwrap(),
        }
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn reserves_until_sold_out_then_refuses() {
        let inventory = inventory(5);
        run(async {
            let first = inventory.reserve(reservation(3)).await.unwrap();
            assert_eq!((first.accepted, first.remaining), (true, 2));
            let refused = inventory.reserve(reservation(3)).await.unwrap();
            assert_eq!((refused.accepted, refused.remaining), (false, 2));
            let last = inventory.reserve(reservation(2)).await.unwrap();
            assert_eq!((last.accepted, last.remaining), (true, 0));
        });
        let stock = inventory.stock(&EventId::default_event()).unwrap();
        assert_eq!((stock.available, stock.sold, stock.capacity), (0, 5, 5));
    }

    #[test]
    fn a_repeated_reservation_id_reserves_once() {
        let inventory = inventory(10);
        let again = reservation(4);
        run(async {
            assert!(inventory.reserve(again.clone()).await.unwrap().accepted);
            let retry = inventory.reserve(again.clone()).await.unwrap();
            assert_eq!((retry.accepted, retry.remaining), (true, 6));

            let changed = Reservation {
                qty: Quantity::parse(5, 10).unwrap(),
                ..again
            };
            let conflict = inventory.reserve(changed).await.unwrap_err();
            assert_eq!(conflict.code(), "reservation_conflict");
        });
        assert_eq!(inventory.stock(&EventId::default_event()).unwrap().sold, 4);
    }

    #[test]
    fn unknown_events_and_oversized_orders_change_nothing() {
        let inventory = inventory(10);
        run(async {
            let unknown = Reservation {
                event: EventId::parse("nope").unwrap(),
                ..reservation(1)
            };
            let error = inventory.reserve(unknown).await.unwrap_err();
            assert_eq!(error.code(), "unknown_event");

            let too_many = Reservation {
                qty: Quantity::parse(11, 100).unwrap(),
                ..reservation(1)
            };
            let error = inventory.reserve(too_many).await.unwrap_err();
            assert_eq!(error.code(), "quantity_over_limit");
        });
        assert_eq!(
            inventory
                .stock(&EventId::default_event())
                .unwrap()
                .available,
            10
        );
    }

    /// 1,000 buyers on four OS threads race for 100 tickets: exactly 100 win, nothing is oversold.
    #[test]
    fn concurrent_reservations_never_oversell() {
        let inventory = Arc::new(inventory(100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let inventory = Arc::clone(&inventory);
                std::thread::spawn(move || {
                    run(async {
                        let attempts = (0..250).map(|_| inventory.reserve(reservation(1)));
                        let answers = futures_util::future::join_all(attempts).await;
                        answers
                            .into_iter()
                            .filter(|a| a.as_ref().unwrap().accepted)
                            .count()
                    })
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(accepted, 100);
        let stock = inventory.stock(&EventId::default_event()).unwrap();
        assert_eq!((stock.available, stock.sold), (0, 100));
    }

    /// A ledger whose commits (after the first, made by `open`) wait until the test lets them go.
    struct GatedLedger {
        inner: MemoryLedger,
        commits: usize,
        entered: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    impl Ledger for GatedLedger {
        fn load(&mut self) -> Result<Vec<(EventId, Stock)>, Error> {
            self.inner.load()
        }
        fn find_reservation(
            &mut self,
            id: crate::domain::ReservationId,
        ) -> Result<Option<ledger::ReservationRecord>, Error> {
            self.inner.find_reservation(id)
        }
        fn commit(&mut self, batch: &Batch) -> Result<(), Error> {
            self.commits += 1;
            if self.commits > 1 {
                self.entered.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.inner.commit(batch)
        }
    }

    #[test]
    fn a_full_queue_is_an_explicit_error() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let ledger = GatedLedger {
            inner: MemoryLedger::new(),
            commits: 0,
            entered: entered_tx,
            release: release_rx,
        };
        let config = InventoryConfig {
            queue_size_max: 1,
            ..InventoryConfig::default()
        };
        let inventory = Arc::new(Inventory::open(Box::new(ledger), config).unwrap());

        // The first reservation holds the writer inside its commit...
        let first = {
            let inventory = Arc::clone(&inventory);
            std::thread::spawn(move || run(inventory.reserve(reservation(1))))
        };
        entered.recv().unwrap();
        // ...so the queue (room for one) takes the second and must refuse the third.
        let (second, third) = run(async {
            let second = inventory.reserve(reservation(1));
            let third = inventory.reserve(reservation(1));
            let third = async {
                let answer = third.await;
                // Overloaded is decided on sending, so by now the writer may go on.
                release.send(()).unwrap();
                release.send(()).unwrap();
                answer
            };
            tokio::join!(second, third)
        });
        assert!(first.join().unwrap().unwrap().accepted);
        assert!(second.unwrap().accepted);
        assert_eq!(third.unwrap_err(), Error::Overloaded);
        assert_eq!(inventory.stock(&EventId::default_event()).unwrap().sold, 2);
    }
}
