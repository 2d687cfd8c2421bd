//! The command line. Every flag is optional: an absent flag leaves the value to the lower layers
//! (config file, `TICKETD_*` environment, built-in default), so flags are kept as `Option`s and
//! only the ones given are handed to figment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::{LogFormat, Mode, StoreKind};

const AFTER_HELP: &str = "\
Every option can also be set in the --config file or as an environment variable named
TICKETD_<OPTION> (e.g. TICKETD_PORT=9000, TICKETD_VACANCY_URL=http://10.0.0.5:8001).
Precedence: built-in defaults < --config file < environment < flags.";

#[derive(Debug, Parser)]
#[command(name = "ticketd", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run inventory and purchases in one process (calls between them are function calls).
    #[command(after_help = AFTER_HELP)]
    Monolith(MonolithArgs),
    /// Run the inventory service alone.
    #[command(after_help = AFTER_HELP)]
    Vacancy(VacancyArgs),
    /// Run the purchase service alone; it reaches the inventory at --vacancy-url.
    #[command(after_help = AFTER_HELP)]
    Ticket(TicketArgs),
    /// Exit 0 when URL answers 2xx, 1 otherwise: a health check for containers without curl.
    Probe(ProbeArgs),
    /// Copy the embedded store into an empty PostgreSQL database (one that holds no events yet),
    /// to move to `--store postgres`. Stop the ticketd that uses the store first; the copy is
    /// all or nothing.
    #[command(after_help = AFTER_HELP)]
    CopyToPostgres(CopyArgs),
}

/// What the command line asks for.
pub enum Run {
    /// Serve in this mode, with this config file and the flags that were given.
    Server(Mode, Option<PathBuf>, Box<Flags>),
    Probe(ProbeArgs),
    /// Copy a store, with this config file and the flags that were given.
    CopyToPostgres(Option<PathBuf>, CopyArgs),
}

impl Command {
    pub fn into_run(self) -> Run {
        let (mode, server, inventory, ticket) = match self {
            Command::Monolith(a) => (Mode::Monolith, a.server, Some(a.inventory), None),
            Command::Vacancy(a) => (Mode::Vacancy, a.server, Some(a.inventory), None),
            Command::Ticket(a) => (Mode::Ticket, a.server, None, Some(a.remote)),
            Command::Probe(probe) => return Run::Probe(probe),
            Command::CopyToPostgres(copy) => return Run::CopyToPostgres(copy.config.clone(), copy),
        };
        let config = server.config.clone();
        Run::Server(
            mode,
            config,
            Box::new(Flags {
                server,
                inventory,
                remote: ticket,
            }),
        )
    }
}

/// The flags of a server subcommand, serialized as a figment layer.
#[derive(Debug, Serialize)]
pub struct Flags {
    #[serde(flatten)]
    server: ServerArgs,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    inventory: Option<InventoryArgs>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    remote: Option<RemoteArgs>,
}

#[derive(Debug, Args)]
pub struct MonolithArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    inventory: InventoryArgs,
}

#[derive(Debug, Args)]
pub struct VacancyArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    inventory: InventoryArgs,
}

#[derive(Debug, Args)]
pub struct TicketArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct ServerArgs {
    /// TOML file with settings ([default] plus a [monolith], [vacancy] or [ticket] section).
    #[arg(long, env = "TICKETD_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: 8000 monolith, 8001 vacancy, 8002 ticket].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// HTTP worker threads; 0 means one per CPU core [default: 0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    /// Most tickets in one purchase, at most 2147483647 [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_per_order: Option<u32>,
    /// Hold length when a request gives none, in seconds [default: 300].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_ttl_seconds_default: Option<u32>,
    /// Longest hold a request may ask for, in seconds [default: 3600].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_ttl_seconds_max: Option<u32>,
    /// Bearer token for admin calls (16 to 1024 visible ASCII characters)
    /// [default: none, admin calls refused].
    #[arg(long, value_name = "TOKEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<String>,
    /// Token between ticket and vacancy, sent as x-service-token (16 to 1024 visible ASCII
    /// characters) [default: none, not checked].
    #[arg(long, value_name = "TOKEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    service_token: Option<String>,
    /// How long an idempotency key is remembered, in seconds [default: 86400].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_ttl_seconds: Option<u64>,
    /// How long a waiting-list offer's hold lasts, in seconds, at most 604800 [default: 900].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    waitlist_offer_ttl_seconds: Option<u32>,
    /// Longest one webhook delivery attempt takes, in ms [default: 10000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_timeout_ms: Option<u64>,
    /// Delay before a failed webhook delivery is first tried again, in ms; later retries wait
    /// 60, 360, 1440, 3600, 7200 and 7200 times as long [default: 5000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_retry_first_ms: Option<u64>,
    /// PostgreSQL: how long a replica's claim on delivering a webhook lasts unless renewed, in
    /// ms [default: 30000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_lease_ms: Option<u64>,
    /// How long changes are kept for the feed, in hours, 24 to 87600 [default: 168].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    changes_retention_hours: Option<u32>,
    /// Serve /metrics and record metrics [default: true].
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_enabled: Option<bool>,
    /// Most events with metrics of their own (three series each), at most 100000 [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_events_max: Option<usize>,
    /// Send spans over OTLP/HTTP to this collector, e.g. http://collector:4318
    /// [default: none, no spans sent].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<String>,
    /// Log format [default: pretty].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. info, debug or info,ticketd=debug [default: info].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct InventoryArgs {
    /// Tickets of the `default` event when the store is new [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_stock: Option<u64>,
    /// Where stock is kept [default: embedded].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreKind>,
    #[command(flatten)]
    #[serde(flatten)]
    location: StoreLocation,
    /// Most connections to the database per process [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_connections_max: Option<usize>,
    /// Longest wait for a database connection or statement, in ms [default: 2000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct RemoteArgs {
    /// Base URL of the vacancy service; repeat it (or separate with commas) for several
    /// replicas, used in turn while they answer [default: http://127.0.0.1:8001].
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    vacancy_url: Option<Vec<String>>,
    /// Longest wait for one call to vacancy, in ms; past it the request fails with 503 [default: 2000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    vacancy_timeout_ms: Option<u64>,
    /// Most open connections to vacancy per worker thread [default: 100].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    vacancy_connections_max: Option<usize>,
    /// Seconds an idle connection to vacancy stays open for reuse [default: 30].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    vacancy_keep_alive_seconds: Option<u64>,
    /// Most tries of one call while vacancy cannot be reached, all within the timeout [default: 3].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    vacancy_attempts_max: Option<u32>,
}

/// The flags of `copy-to-postgres`, serialized as a figment layer over the `vacancy` settings.
#[derive(Debug, Args, Serialize)]
pub struct CopyArgs {
    /// TOML file with settings; its [default] and [vacancy] sections apply.
    #[arg(long, env = "TICKETD_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    location: StoreLocation,
}

/// Where each store lives: the serving modes and `copy-to-postgres` take the same two flags.
#[derive(Debug, Clone, Args, Serialize)]
pub struct StoreLocation {
    /// Directory of the embedded store [default: ./data].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Database of the postgres store, postgres://user:password@host:port/database; prefer
    /// TICKETD_DATABASE_URL, which other users of the machine cannot read [default: none].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URL to check, e.g. http://127.0.0.1:8000/ready
    pub url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_given_flags_become_settings() {
        let cli = Cli::try_parse_from([
            "ticketd",
            "ticket",
            "--port",
            "9",
            "--vacancy-url",
            "http://v:1",
        ])
        .unwrap();
        let Run::Server(mode, config, flags) = cli.command.into_run() else {
            panic!("not a server");
        };
        assert_eq!(mode, Mode::Ticket);
        assert!(config.is_none());
        let flags = serde_json::to_value(flags).unwrap();
        assert_eq!(
            flags,
            serde_json::json!({"port": 9, "vacancy_url": ["http://v:1"]})
        );
    }
}
