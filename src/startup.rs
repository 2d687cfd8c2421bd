//! Builds a running server for one mode from `Settings` (and copies a store when moving to
//! PostgreSQL). `main` and the tests both come here, so there is exactly one wiring of the parts.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use anyhow::Context;

use crate::config::{Mode, Settings, StoreKind};
use crate::domain::ChangeFeed;
use crate::domain::OrderLimits;
use crate::http::auth::Tokens;
use crate::http::{self, Parts, ServerConfig};
use crate::ticket::{
    LocalVacancyClient, RemoteConfig, RemoteVacancyClient, Tickets, VacancyClient,
};
use crate::vacancy::ledger::MemoryLedger;
use crate::vacancy::postgres::{PostgresConfig, PostgresLedger};
use crate::vacancy::sqlite::{Exported, SqliteLedger};
use crate::vacancy::{self, Inventory, InventoryConfig, SystemClock};
use crate::webhooks::deliver::Deliverer;
use crate::webhooks::postgres::PostgresWebhookStore;
use crate::webhooks::sqlite::SqliteWebhookStore;
use crate::webhooks::{MemoryWebhookStore, WebhookStore, Webhooks};

pub struct Application {
    server: Server,
    addr: SocketAddr,
    /// Delivers webhooks where the inventory runs; stopped when the application is dropped.
    _deliverer: Option<Deliverer>,
}

impl Application {
    /// Opens the store (if this mode has one), binds the listener and starts the workers.
    /// Must be called inside an actix system; the server runs once [`Self::run_until_stopped`] or
    /// the returned handle's owner polls it. It never handles OS signals itself: the caller stops
    /// it through [`Self::handle`].
    pub fn build(mode: Mode, settings: &Settings) -> anyhow::Result<Self> {
        // Until a recorder is installed, recording a metric is a no-op.
        let metrics = settings.metrics_enabled.then(|| {
            let registry = crate::telemetry::metrics().clone();
            crate::telemetry::set_metrics_events_max(settings.metrics_events_max);
            crate::telemetry::register_metrics(mode);
            registry
        });
        let inventory = match mode {
            Mode::Monolith | Mode::Vacancy => Some(Arc::new(open_inventory(settings)?)),
            Mode::Ticket => None,
        };
        // Webhooks are kept and delivered where the inventory runs; the ticket service forwards
        // their admin calls to vacancy.
        let mut deliverer = None;
        let vacancy: Arc<dyn VacancyClient> = match &inventory {
            Some(inventory) => {
                let store = open_webhook_store(settings)?;
                let webhooks = Arc::new(Webhooks::new(Arc::clone(&store), Arc::new(SystemClock)));
                if let Some(feed) = change_feed(inventory) {
                    deliverer = Some(Deliverer::start(
                        store,
                        feed,
                        inventory.store_id(),
                        settings.delivery(),
                        Arc::new(SystemClock),
                    )?);
                }
                Arc::new(LocalVacancyClient::new(Arc::clone(inventory), webhooks))
            }
            None => Arc::new(RemoteVacancyClient::new(RemoteConfig::from(settings))?),
        };
        let tickets = (mode != Mode::Vacancy).then(|| Arc::new(Tickets::new(Arc::clone(&vacancy))));
        let tokens = Tokens::from((mode, settings));
        let server_config = ServerConfig::from(settings);
        if mode == Mode::Vacancy && tokens.service.is_none() && !is_loopback(&server_config.host) {
            tracing::warn!(
                host = %server_config.host,
                "vacancy listens beyond this machine without a service token: anyone who can \
                 reach it can reserve stock; set --service-token (TICKETD_SERVICE_TOKEN) on \
                 vacancy and ticket"
            );
        }
        let parts = Parts {
            mode,
            vacancy,
            tickets,
            inventory,
            tokens,
            metrics,
            body_limit_bytes: server_config.body_limit_bytes,
            limits: OrderLimits::from(settings),
        };

        let ServerConfig {
            host,
            port,
            workers,
            shutdown_timeout_seconds,
            ..
        } = server_config;
        let listener = TcpListener::bind((host.as_str(), port))
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        let mut server = HttpServer::new(move || http::app(parts.clone()))
            .disable_signals()
            .shutdown_timeout(shutdown_timeout_seconds)
            .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            server: server.run(),
            addr,
            _deliverer: deliverer,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through the handle; requests in flight are finished first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Copies the embedded store in `data_dir` into the database at `database_url` (see
/// [`vacancy::copy`]).
pub fn copy_to_postgres(settings: &Settings) -> anyhow::Result<Exported> {
    let target = PostgresConfig::try_from(settings)?;
    Ok(vacancy::copy::copy_to_postgres(&settings.data_dir, target)?)
}

fn open_inventory(settings: &Settings) -> anyhow::Result<Inventory> {
    let config = InventoryConfig::from(settings);
    // The kind of store is chosen here, once: a shared one is a different type all the way down.
    let inventory = match settings.store {
        StoreKind::Memory => Inventory::open(Box::new(MemoryLedger::new()), config),
        StoreKind::Embedded => {
            Inventory::open(Box::new(SqliteLedger::open(&settings.data_dir)?), config)
        }
        StoreKind::Postgres => {
            let ledger = PostgresLedger::open(&PostgresConfig::try_from(settings)?)?;
            Inventory::open_shared(Box::new(ledger), config)
        }
    };
    Ok(inventory?)
}

/// Where webhooks are kept: beside the inventory's store, never on its connection.
fn open_webhook_store(settings: &Settings) -> anyhow::Result<Arc<dyn WebhookStore>> {
    Ok(match settings.store {
        StoreKind::Memory => Arc::new(MemoryWebhookStore::new()),
        StoreKind::Embedded => Arc::new(SqliteWebhookStore::open(&settings.data_dir)?),
        StoreKind::Postgres => Arc::new(PostgresWebhookStore::open(&PostgresConfig::try_from(
            settings,
        )?)?),
    })
}

/// The inventory's changes, in commit order, as webhooks are delivered from them.
fn change_feed(inventory: &Arc<Inventory>) -> Option<Arc<dyn ChangeFeed>> {
    Some(Arc::clone(inventory) as Arc<dyn ChangeFeed>)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts_need_no_service_token_warning() {
        for host in ["127.0.0.1", "::1", "localhost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.5", "vacancy"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
