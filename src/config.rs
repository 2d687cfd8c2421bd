//! One `Settings` value, layered by figment: built-in defaults < `--config FILE` (TOML) <
//! `TICKETD_*` environment < command-line flags.
//!
//! The TOML file is split in profiles: `[default]` applies to every mode, `[monolith]`,
//! `[vacancy]` and `[ticket]` to one, so one file can describe a whole split deployment.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::{HoldTtl, OrderLimits, Quantity};
use crate::http::ServerConfig;
use crate::http::auth::Tokens;
use crate::telemetry::{self, OtlpConfig};
use crate::ticket::RemoteConfig;
use crate::vacancy::postgres::PostgresConfig;
use crate::vacancy::{CAPACITY_MAX, InventoryConfig};

/// Which parts run in this process; the subcommand chooses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inventory and purchases in one process, calling each other directly.
    Monolith,
    /// The inventory service alone.
    Vacancy,
    /// The purchase service alone, reaching vacancy over HTTP.
    Ticket,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monolith => "monolith",
            Mode::Vacancy => "vacancy",
            Mode::Ticket => "ticket",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Mode::Monolith => 8000,
            Mode::Vacancy => 8001,
            Mode::Ticket => 8002,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where the inventory keeps its stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A durable SQLite database in `data_dir`: every acknowledged sale is on disk.
    Embedded,
    /// In process memory: lost on restart. For tests and demos.
    Memory,
    /// A PostgreSQL(-compatible) database at `database_url`, shared by any number of replicas.
    Postgres,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one (the log says which).
    pub port: u16,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Seconds to let requests in flight finish after SIGINT/SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Most tickets in one purchase or reservation.
    pub max_per_order: u32,
    /// Hold length when a request gives none, in seconds.
    pub hold_ttl_seconds_default: u32,
    /// Longest hold a request may ask for, in seconds.
    pub hold_ttl_seconds_max: u32,
    /// How long the inventory remembers an idempotency key, in seconds.
    pub idempotency_ttl_seconds: u64,
    /// How long a waiting-list offer's hold lasts, in seconds.
    pub waitlist_offer_ttl_seconds: u32,
    /// Longest one webhook delivery attempt takes, connecting and reading the answer included.
    pub webhook_timeout_ms: u64,
    /// Delay before a failed webhook delivery is tried again the first time; the later retries
    /// wait 60, 360, 1440, 3600, 7200 and 7200 times as long.
    pub webhook_retry_first_ms: u64,
    /// PostgreSQL: how long a replica's claim on delivering a webhook lasts unless renewed; a
    /// replica that stops leaves its webhooks to another this long after.
    pub webhook_lease_ms: u64,
    /// How long committed changes are kept for the feed (and webhooks), in hours.
    pub changes_retention_hours: u32,
    /// Bearer token for admin calls (creating events, adding stock); none: admin calls refused.
    pub admin_token: Option<Secret>,
    /// Token vacancy requires from callers (`x-service-token`), and ticket sends; none: not checked.
    pub service_token: Option<Secret>,

    /// Capacity of the `default` event when the store is new.
    pub initial_stock: u64,
    /// Where the inventory keeps its stock.
    pub store: StoreKind,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Most requests waiting for the inventory writer before new ones are refused (503).
    pub inventory_queue_size_max: usize,
    /// Most requests the inventory decides and commits together.
    pub inventory_batch_size_max: usize,
    /// `postgres://user:password@host:port/database` of the `postgres` store; never logged.
    pub database_url: Option<Secret>,
    /// Most connections to the database per process (one is the writer's, reads share the rest).
    pub database_connections_max: usize,
    /// Longest wait for a database connection or statement; past it the request fails with 503.
    pub database_timeout_ms: u64,

    /// Base URL of the vacancy service (ticket mode); several replicas as a list (or a
    /// comma-separated string), used in turn while they answer.
    #[serde(deserialize_with = "one_or_many")]
    pub vacancy_url: Vec<String>,
    /// Longest wait for one call to vacancy, connecting included.
    pub vacancy_timeout_ms: u64,
    /// Most open connections to vacancy, per worker thread.
    pub vacancy_connections_max: usize,
    /// Seconds an idle connection to vacancy is kept for reuse.
    pub vacancy_keep_alive_seconds: u64,
    /// Most tries of one call while vacancy cannot be reached (all within the timeout).
    pub vacancy_attempts_max: u32,

    /// Serve `/metrics` and record metrics (a few per cent of throughput at full load).
    pub metrics_enabled: bool,
    /// Most events exported per event (`ticketd_event_tickets{event}`); three series each.
    pub metrics_events_max: usize,
    /// Base URL of an OTLP/HTTP collector (e.g. `http://collector:4318`) to send spans to; none:
    /// no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// Most spans waiting to be sent to the collector; more are dropped, and counted.
    pub otlp_queue_spans_max: usize,
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `info,ticketd=debug`.
    pub log_level: String,
}

/// A token: compared in constant time, never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, taking the same time wherever they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

const DAY_SECONDS: u64 = 86_400;
const HOUR_MS: u64 = 3_600_000;

/// Shortest and longest token; a token also has to be visible ASCII, as a header value it is.
const TOKEN_LEN_MIN: usize = 16;
const TOKEN_LEN_MAX: usize = 1024;

/// A configuration that cannot be used; the message names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Settings {
    /// The built-in defaults for `mode`.
    pub fn defaults(mode: Mode) -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: mode.default_port(),
            workers: 0,
            shutdown_timeout_seconds: 30,
            body_limit_bytes: 16 * 1024,
            max_per_order: 10,
            hold_ttl_seconds_default: 300,
            hold_ttl_seconds_max: 3600,
            idempotency_ttl_seconds: 86_400,
            waitlist_offer_ttl_seconds: 900,
            webhook_timeout_ms: 10_000,
            webhook_retry_first_ms: 5_000,
            webhook_lease_ms: 30_000,
            changes_retention_hours: 168,
            admin_token: None,
            service_token: None,
            initial_stock: 1000,
            store: StoreKind::Embedded,
            data_dir: PathBuf::from("data"),
            inventory_queue_size_max: 16_384,
            inventory_batch_size_max: 1024,
            database_url: None,
            database_connections_max: 8,
            database_timeout_ms: 2000,
            vacancy_url: vec!["http://127.0.0.1:8001".into()],
            vacancy_timeout_ms: 2000,
            vacancy_connections_max: 100,
            vacancy_keep_alive_seconds: 30,
            vacancy_attempts_max: 3,
            metrics_enabled: true,
            metrics_events_max: telemetry::DEFAULT_EVENTS_MAX,
            otlp_endpoint: None,
            otlp_queue_spans_max: 2048,
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
        }
    }

    /// Settings for `mode` from every layer; `flags` are the command-line values that were given.
    pub fn load(
        mode: Mode,
        config_file: Option<&Path>,
        flags: impl Serialize,
    ) -> Result<Self, ConfigError> {
        let defaults = Self::defaults(mode);
        let known_keys = known_keys(&defaults);
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path).nested());
        }
        // Environment and flags go in the global profile, so they win over every file profile.
        let env = Env::prefixed("TICKETD_")
            .filter(move |key| {
                known_keys
                    .iter()
                    .any(|k| key.as_str().eq_ignore_ascii_case(k))
            })
            .global();
        let mut settings: Settings = figment
            .merge(env)
            .merge(Serialized::globals(flags))
            .select(mode.as_str())
            .extract()
            .map_err(describe)?;
        // An empty token (e.g. `TICKETD_ADMIN_TOKEN=` in a compose file) means "none".
        for token in [
            &mut settings.admin_token,
            &mut settings.service_token,
            &mut settings.database_url,
        ] {
            if token.as_ref().is_some_and(|t| t.expose().is_empty()) {
                *token = None;
            }
        }
        if settings
            .otlp_endpoint
            .as_ref()
            .is_some_and(|url| url.trim().is_empty())
        {
            settings.otlp_endpoint = None;
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("invalid setting {key}: {why}")));
        if self.host.trim().is_empty() {
            return fail("host", "must not be empty");
        }
        for (key, value, range) in self.numbers() {
            if !range.contains(&value) {
                let (min, max) = range.into_inner();
                return fail(key, &format!("must be {min} to {max}"));
            }
        }
        // A replica starts a webhook attempt only while its claim surely outlasts the attempt
        // (the claim's last renewal plus the lease, less a tenth of it): with a shorter lease it
        // could never send.
        if self.webhook_lease_ms < self.webhook_timeout_ms.saturating_mul(2) {
            return fail(
                "webhook_lease_ms",
                "must be at least twice webhook_timeout_ms: a replica starts a delivery attempt \
                 only while its claim on the webhook surely outlasts the attempt",
            );
        }
        // Changes waiting behind a change being retried must still be in the feed when it is
        // finished (a restart reads them from the feed again).
        let needed = retention_hours_needed(self.webhook_retry_first_ms);
        if u64::from(self.changes_retention_hours) < needed {
            return fail(
                "changes_retention_hours",
                &format!(
                    "must be at least {needed} with webhook_retry_first_ms = {}: a webhook \
                     delivery is retried for up to {} hours, and the changes waiting behind it \
                     must be kept {RETENTION_MARGIN_HOURS} hours beyond that",
                    self.webhook_retry_first_ms,
                    needed - RETENTION_MARGIN_HOURS,
                ),
            );
        }
        if self.hold_ttl_seconds_default == 0
            || self.hold_ttl_seconds_default > self.hold_ttl_seconds_max
        {
            return fail(
                "hold_ttl_seconds_default",
                "must be 1 to hold_ttl_seconds_max",
            );
        }
        for (key, token) in [
            ("admin_token", &self.admin_token),
            ("service_token", &self.service_token),
        ] {
            // Never echo the value: it is a secret.
            let fits = |token: &str| {
                (TOKEN_LEN_MIN..=TOKEN_LEN_MAX).contains(&token.len())
                    && token.bytes().all(|b| b.is_ascii_graphic())
            };
            if token.as_ref().is_some_and(|t| !fits(t.expose())) {
                return fail(
                    key,
                    &format!(
                        "must be {TOKEN_LEN_MIN} to {TOKEN_LEN_MAX} visible ASCII characters \
                         (no spaces)"
                    ),
                );
            }
        }
        if self.vacancy_url.is_empty()
            || self
                .vacancy_url
                .iter()
                .any(|url| !url.starts_with("http://"))
        {
            return fail("vacancy_url", "must look like http://host:port");
        }
        if let Some(url) = &self.otlp_endpoint
            && !(url.starts_with("http://") && url.len() > "http://".len())
        {
            return fail(
                "otlp_endpoint",
                "must look like http://host:4318 (OTLP over plain HTTP)",
            );
        }
        if self.store == StoreKind::Postgres && self.database_url.is_none() {
            return fail(
                "database_url",
                "store = postgres needs one (--database-url or TICKETD_DATABASE_URL)",
            );
        }
        if let Some(url) = &self.database_url
            && !["postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.expose().starts_with(scheme))
        {
            // Never echo the value: it may hold a password.
            return fail(
                "database_url",
                "must look like postgres://user@host:port/database",
            );
        }
        Ok(())
    }

    /// Every numeric setting, its value and the range it must be in: what all stores (memory,
    /// SQLite, PostgreSQL: quantities in `INTEGER`, counts and milliseconds in `BIGINT`) and the
    /// code can hold, and far beyond any sensible use. A value outside stops start-up naming its
    /// key, rather than wrapping in a store, overflowing a clock, or asking the machine for more
    /// threads or memory than it has (the queue is allocated up front, one slot per request; each
    /// worker is a thread).
    fn numbers(&self) -> [(&'static str, u64, RangeInclusive<u64>); 22] {
        // Lossless on every platform ticketd builds for.
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        [
            ("workers", wide(self.workers), 0..=1024),
            (
                "shutdown_timeout_seconds",
                self.shutdown_timeout_seconds,
                0..=DAY_SECONDS,
            ),
            (
                "body_limit_bytes",
                wide(self.body_limit_bytes),
                256..=16 << 20,
            ),
            (
                "max_per_order",
                u64::from(self.max_per_order),
                1..=u64::from(Quantity::MAX),
            ),
            // A hold of a year is far beyond any payment window.
            (
                "hold_ttl_seconds_max",
                u64::from(self.hold_ttl_seconds_max),
                1..=365 * DAY_SECONDS,
            ),
            (
                "idempotency_ttl_seconds",
                self.idempotency_ttl_seconds,
                0..=3650 * DAY_SECONDS,
            ),
            // An offer of a week is far beyond any waiting list's patience.
            (
                "waitlist_offer_ttl_seconds",
                u64::from(self.waitlist_offer_ttl_seconds),
                1..=7 * DAY_SECONDS,
            ),
            // Half the longest lease: the lease is at least twice the timeout.
            (
                "webhook_timeout_ms",
                self.webhook_timeout_ms,
                1..=HOUR_MS / 2,
            ),
            (
                "webhook_retry_first_ms",
                self.webhook_retry_first_ms,
                0..=HOUR_MS,
            ),
            // Long enough for an attempt and the save after it.
            ("webhook_lease_ms", self.webhook_lease_ms, 100..=HOUR_MS),
            // At least a day: webhook deliveries are retried for a day (and more: see
            // `retention_hours_needed`). At most ten years.
            (
                "changes_retention_hours",
                u64::from(self.changes_retention_hours),
                24..=3650 * 24,
            ),
            // The `default` event is an event like any other.
            ("initial_stock", self.initial_stock, 0..=CAPACITY_MAX),
            (
                "inventory_queue_size_max",
                wide(self.inventory_queue_size_max),
                1..=1 << 20,
            ),
            (
                "inventory_batch_size_max",
                wide(self.inventory_batch_size_max),
                1..=1 << 16,
            ),
            // The writer keeps one connection and reads share the rest.
            (
                "database_connections_max",
                wide(self.database_connections_max),
                2..=1024,
            ),
            ("database_timeout_ms", self.database_timeout_ms, 1..=HOUR_MS),
            ("vacancy_timeout_ms", self.vacancy_timeout_ms, 1..=HOUR_MS),
            // Each is a socket, and one address reaches vacancy from at most this many ports.
            (
                "vacancy_connections_max",
                wide(self.vacancy_connections_max),
                1..=65_535,
            ),
            (
                "vacancy_keep_alive_seconds",
                self.vacancy_keep_alive_seconds,
                0..=DAY_SECONDS,
            ),
            (
                "vacancy_attempts_max",
                u64::from(self.vacancy_attempts_max),
                1..=100,
            ),
            // Three series an event: 300,000 at most, already more than one Prometheus likes.
            (
                "metrics_events_max",
                wide(self.metrics_events_max),
                0..=100_000,
            ),
            // Spans are a few hundred bytes each while they wait.
            (
                "otlp_queue_spans_max",
                wide(self.otlp_queue_spans_max),
                1..=1 << 20,
            ),
        ]
    }

    pub fn vacancy_timeout(&self) -> Duration {
        Duration::from_millis(self.vacancy_timeout_ms)
    }

    /// How webhook deliveries are made, where the inventory runs.
    pub fn delivery(&self) -> crate::webhooks::deliver::DeliveryConfig {
        let lease = Duration::from_millis(self.webhook_lease_ms);
        crate::webhooks::deliver::DeliveryConfig {
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            retry_first: Duration::from_millis(self.webhook_retry_first_ms),
            retry_span: crate::webhooks::deliver::RETRY_SPAN,
            lease,
            poll: (lease / 3).min(Duration::from_secs(1)),
        }
    }

    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.database_timeout_ms)
    }

    /// Where `mode` sends its spans, if anywhere.
    pub fn otlp(&self, mode: Mode) -> Option<OtlpConfig> {
        Some(OtlpConfig {
            endpoint: self.otlp_endpoint.clone()?,
            service_name: telemetry::service_name(mode),
            queue_spans_max: self.otlp_queue_spans_max,
        })
    }
}

// What each part is given: the one place that turns `Settings` into the parts' own configs, so
// a setting is read in one place and each default is written once (in `Settings::defaults`).

impl From<&Settings> for ServerConfig {
    fn from(settings: &Settings) -> Self {
        Self {
            host: settings.host.clone(),
            port: settings.port,
            workers: settings.workers,
            shutdown_timeout_seconds: settings.shutdown_timeout_seconds,
            body_limit_bytes: settings.body_limit_bytes,
        }
    }
}

/// Who may call a mode's app. Only vacancy checks the service token: it is what stands between
/// vacancy and callers other than the ticket service (the ticket service sends it, through
/// [`RemoteConfig`]).
impl From<(Mode, &Settings)> for Tokens {
    fn from((mode, settings): (Mode, &Settings)) -> Self {
        Self {
            admin: settings.admin_token.clone(),
            service: (mode == Mode::Vacancy)
                .then(|| settings.service_token.clone())
                .flatten(),
        }
    }
}

/// The built-in settings' inventory, for tests and benches. It is written here rather than in
/// `vacancy`, so the inventory needs nothing from `config` and the defaults stay in one place.
impl Default for InventoryConfig {
    fn default() -> Self {
        Self::from(&Settings::defaults(Mode::Monolith))
    }
}

impl From<&Settings> for InventoryConfig {
    fn from(settings: &Settings) -> Self {
        Self {
            initial_stock: settings.initial_stock,
            idempotency_ttl_seconds: settings.idempotency_ttl_seconds,
            waitlist_offer_ttl_seconds: settings.waitlist_offer_ttl_seconds,
            changes_retention_hours: settings.changes_retention_hours,
            queue_size_max: settings.inventory_queue_size_max,
            batch_size_max: settings.inventory_batch_size_max,
        }
    }
}

impl From<&Settings> for RemoteConfig {
    fn from(settings: &Settings) -> Self {
        Self {
            urls: settings.vacancy_url.clone(),
            timeout: settings.vacancy_timeout(),
            connections_max: settings.vacancy_connections_max,
            keep_alive: Duration::from_secs(settings.vacancy_keep_alive_seconds),
            attempts_max: settings.vacancy_attempts_max,
            service_token: settings.service_token.clone(),
            admin_token: settings.admin_token.clone(),
        }
    }
}

impl From<&Settings> for OrderLimits {
    fn from(settings: &Settings) -> Self {
        Self {
            max_per_order: settings.max_per_order,
            hold_ttl_default: HoldTtl::within(
                settings.hold_ttl_seconds_default,
                settings.hold_ttl_seconds_max,
            ),
            hold_ttl_seconds_max: settings.hold_ttl_seconds_max,
        }
    }
}

impl TryFrom<&Settings> for PostgresConfig {
    type Error = ConfigError;

    fn try_from(settings: &Settings) -> Result<Self, ConfigError> {
        let url = settings.database_url.as_ref().ok_or_else(|| {
            ConfigError("no database_url: give --database-url or set TICKETD_DATABASE_URL".into())
        })?;
        Ok(Self {
            url: url.clone(),
            connections_max: settings.database_connections_max,
            timeout: settings.database_timeout(),
        })
    }
}

/// One URL, a comma-separated string of them (as an environment variable gives), or a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let urls = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(urls) => urls,
    };
    Ok(urls
        .into_iter()
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
        .collect())
}

fn known_keys(defaults: &Settings) -> Vec<String> {
    match serde_json::to_value(defaults) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(key, _)| key).collect(),
        _ => Vec::new(),
    }
}

/// One line: which key, what is wrong, and where the bad value came from.
fn describe(error: figment::Error) -> ConfigError {
    let Some(error) = error.into_iter().next() else {
        return ConfigError("invalid configuration".into());
    };
    let key = error.path.last().cloned().unwrap_or_default();
    let source = match &error.metadata {
        Some(m) if m.name.contains("environment") => {
            format!("environment variable TICKETD_{}", key.to_uppercase())
        }
        Some(m) => match &m.source {
            Some(source) => format!("{} ({source})", m.name),
            None => m.name.to_string(),
        },
        None => "the command line".into(),
    };
    let key = if key.is_empty() {
        String::new()
    } else {
        format!(" for {key}")
    };
    ConfigError(format!(
        "invalid configuration{key}: {}, from {source}",
        error.kind
    ))
}

/// Hours the feed keeps changes beyond the longest a webhook delivery is retried.
const RETENTION_MARGIN_HOURS: u64 = 6;

/// The least `changes_retention_hours` with this first retry delay: the whole retry schedule,
/// rounded up to hours, plus [`RETENTION_MARGIN_HOURS`].
fn retention_hours_needed(retry_first_ms: u64) -> u64 {
    let schedule = crate::webhooks::deliver::retry_schedule(
        Duration::from_millis(retry_first_ms),
        crate::webhooks::deliver::RETRY_SPAN,
    );
    schedule.as_secs().div_ceil(3600) + RETENTION_MARGIN_HOURS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct NoFlags {}

    #[test]
    fn each_mode_has_its_own_default_port() {
        for (mode, port) in [
            (Mode::Monolith, 8000),
            (Mode::Vacancy, 8001),
            (Mode::Ticket, 8002),
        ] {
            let settings = Settings::load(mode, None, NoFlags {}).unwrap();
            assert_eq!(settings.port, port);
        }
    }

    #[test]
    fn shipped_config_files_load_for_their_modes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let monolith = Settings::load(
            Mode::Monolith,
            Some(&root.join("monolith.toml")),
            NoFlags {},
        );
        assert_eq!(monolith.unwrap().port, 8000);
        let split = root.join("microservices.toml");
        assert_eq!(
            Settings::load(Mode::Vacancy, Some(&split), NoFlags {})
                .unwrap()
                .port,
            8001
        );
        let ticket = Settings::load(Mode::Ticket, Some(&split), NoFlags {}).unwrap();
        assert_eq!(ticket.port, 8002);
        assert!(ticket.vacancy_url[0].starts_with("http://"));
    }

    /// The shipped files document every key (tokens as commented-out examples).
    #[test]
    fn shipped_config_files_name_every_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let text = ["monolith.toml", "microservices.toml"]
            .map(|file| std::fs::read_to_string(root.join(file)).unwrap())
            .join("\n");
        for key in known_keys(&Settings::defaults(Mode::Monolith)) {
            let documented = text.lines().any(|line| {
                line.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} ="))
            });
            assert!(documented, "{key} is missing from config/*.toml");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_profiles_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[default]\nport = 9000\ninitial_stock = 7\n[ticket]\nport = 9002\n",
        )
        .unwrap();

        let vacancy = Settings::load(Mode::Vacancy, Some(&file), NoFlags {}).unwrap();
        assert_eq!((vacancy.port, vacancy.initial_stock), (9000, 7));
        let ticket = Settings::load(Mode::Ticket, Some(&file), NoFlags {}).unwrap();
        assert_eq!(ticket.port, 9002);

        #[derive(Serialize)]
        struct Port {
            port: u16,
        }
        let flagged = Settings::load(Mode::Ticket, Some(&file), Port { port: 1234 }).unwrap();
        assert_eq!(flagged.port, 1234);
    }

    #[test]
    fn secrets_never_print() {
        let mut settings = Settings::defaults(Mode::Monolith);
        settings.admin_token = Some(Secret::new("correct-horse-battery-staple"));
        assert!(!format!("{settings:?}").contains("horse"));
        let token = settings.admin_token.unwrap();
        assert!(token.matches("correct-horse-battery-staple"));
        assert!(!token.matches("correct-horse-battery-stapl"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[default]\nport = \"abc\"\n").unwrap();
        let error = Settings::load(Mode::Monolith, Some(&file), NoFlags {}).unwrap_err();
        assert!(error.to_string().contains("port"), "{error}");

        std::fs::write(&file, "[default]\nprot = 1\n").unwrap();
        let error = Settings::load(Mode::Monolith, Some(&file), NoFlags {}).unwrap_err();
        assert!(error.to_string().contains("prot"), "{error}");

        std::fs::write(&file, "[default]\nmax_per_order = 0\n").unwrap();
        let error = Settings::load(Mode::Monolith, Some(&file), NoFlags {}).unwrap_err();
        assert!(error.to_string().contains("max_per_order"), "{error}");

        let missing = dir.path().join("missing.toml");
        assert!(Settings::load(Mode::Monolith, Some(&missing), NoFlags {}).is_err());
    }

    /// Every number a setting takes is bounded to what every store and the code can hold: one
    /// past the bound stops start-up naming the key, the bound itself is taken. `max_per_order`
    /// was once taken up to u32::MAX while PostgreSQL keeps a quantity in 32 signed bits.
    #[test]
    fn every_number_is_bounded_to_what_stores_and_code_hold() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bounds.toml");
        let load = |key: &str, value: &str| {
            // The lease is at least twice the timeout: the longest timeout needs the longest.
            let lease = if key == "webhook_timeout_ms" {
                "webhook_lease_ms = 3600000\n"
            } else {
                ""
            };
            std::fs::write(&file, format!("[default]\n{lease}{key} = {value}\n")).unwrap();
            Settings::load(Mode::Monolith, Some(&file), NoFlags {})
        };
        // (key, the largest value taken, the smallest one refused); `i64::MAX` stands for "far
        // too big" where the type itself is wider than TOML's integers.
        let cases = [
            ("workers", 1024, i64::MAX),
            ("shutdown_timeout_seconds", 86_400, i64::MAX),
            ("body_limit_bytes", 16 << 20, i64::MAX),
            ("max_per_order", i64::from(i32::MAX), i64::from(u32::MAX)),
            (
                "max_per_order",
                i64::from(i32::MAX),
                i64::from(i32::MAX) + 1,
            ),
            ("hold_ttl_seconds_max", 31_536_000, i64::from(u32::MAX)),
            ("idempotency_ttl_seconds", 315_360_000, i64::MAX),
            ("waitlist_offer_ttl_seconds", 604_800, 604_801),
            ("webhook_timeout_ms", 1_800_000, 1_800_001),
            ("webhook_retry_first_ms", 3_600_000, 3_600_001),
            ("webhook_lease_ms", 3_600_000, 3_600_001),
            ("changes_retention_hours", 87_600, 87_601),
            ("initial_stock", 1_000_000_000_000, i64::MAX),
            ("inventory_queue_size_max", 1 << 20, i64::MAX),
            ("inventory_batch_size_max", 1 << 16, i64::MAX),
            ("database_connections_max", 1024, i64::MAX),
            ("database_timeout_ms", 3_600_000, i64::MAX),
            ("vacancy_timeout_ms", 3_600_000, i64::MAX),
            ("vacancy_connections_max", 65_535, i64::MAX),
            ("vacancy_keep_alive_seconds", 86_400, i64::MAX),
            ("vacancy_attempts_max", 100, i64::from(u32::MAX)),
            ("metrics_events_max", 100_000, i64::MAX),
            ("otlp_queue_spans_max", 1 << 20, i64::MAX),
        ];
        for (key, largest, refused) in cases {
            let taken = load(key, &largest.to_string());
            assert!(taken.is_ok(), "{key} = {largest}: {taken:?}");
            for refused in [refused, largest + 1] {
                let error = load(key, &refused.to_string()).unwrap_err().to_string();
                assert!(error.contains(key), "{key} = {refused}: {error}");
                assert_eq!(error.lines().count(), 1, "{error}");
            }
        }
        // The numbers the type already bounds, for the record: the port fits a u16.
        assert!(load("port", "65536").is_err());
        let error = load("hold_ttl_seconds_default", "3601").unwrap_err();
        assert!(
            error.to_string().contains("hold_ttl_seconds_default"),
            "{error}"
        );

        // A numeric setting added later gets a bound too, or this fails.
        let defaults = Settings::defaults(Mode::Monolith);
        let bounded: Vec<&str> = defaults.numbers().iter().map(|(key, ..)| *key).collect();
        let Ok(serde_json::Value::Object(all)) = serde_json::to_value(&defaults) else {
            panic!("settings serialise to an object");
        };
        for (key, value) in all {
            // The port's type is its bound; the default hold is bounded by the longest one.
            if value.is_number() && !["port", "hold_ttl_seconds_default"].contains(&key.as_str()) {
                assert!(bounded.contains(&key.as_str()), "{key} has no bounds");
            }
        }
        for (key, value, range) in defaults.numbers() {
            assert!(
                range.contains(&value),
                "the default {key} = {value} is out of bounds"
            );
        }
    }

    /// Changes waiting behind a change being retried stay in the feed until it is finished: a
    /// retention shorter than the retries (24 h against about 28 h by default) is refused.
    #[test]
    fn changes_are_kept_longer_than_webhook_retries_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("retention.toml");
        let load = |text: &str| {
            std::fs::write(&file, format!("[default]\n{text}")).unwrap();
            Settings::load(Mode::Monolith, Some(&file), NoFlags {})
        };
        let refused = load("changes_retention_hours = 24\n").unwrap_err();
        assert!(
            refused.to_string().contains("changes_retention_hours")
                && refused.to_string().contains("webhook_retry_first_ms"),
            "{refused}"
        );
        assert_eq!(retention_hours_needed(5_000), 34);
        assert!(load("changes_retention_hours = 33\n").is_err());
        assert!(load("changes_retention_hours = 34\n").is_ok());
        // The first delay shapes the early retries only: the span stays near a day.
        for first_ms in [0, 1, 3_600_000] {
            let needed = retention_hours_needed(first_ms);
            assert!((30..=48).contains(&needed), "{first_ms}: {needed}");
            let text = format!("webhook_retry_first_ms = {first_ms}\n");
            assert!(load(&format!("{text}changes_retention_hours = {needed}\n")).is_ok());
            let short = needed - 1;
            assert!(load(&format!("{text}changes_retention_hours = {short}\n")).is_err());
        }
    }

    #[test]
    fn tokens_must_fit_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        for key in ["admin_token", "service_token"] {
            for (value, ok) in [
                ("a-long-enough-token-1234".to_owned(), true),
                ("short".to_owned(), false),
                ("a token with spaces in it".to_owned(), false),
                ("a-long-enough-tökén-1234".to_owned(), false),
                ("x".repeat(1024), true),
                ("x".repeat(1025), false),
            ] {
                std::fs::write(&file, format!("[default]\n{key} = \"{value}\"\n")).unwrap();
                let loaded = Settings::load(Mode::Vacancy, Some(&file), NoFlags {});
                match loaded {
                    Ok(_) => assert!(ok, "{key} = {value} was taken"),
                    Err(error) => {
                        assert!(!ok, "{key} = {value}: {error}");
                        assert!(error.to_string().contains(key), "{error}");
                        assert!(!error.to_string().contains(&value), "echoed: {error}");
                    }
                }
            }
        }
    }

    #[test]
    fn several_vacancy_urls_come_as_a_list_or_a_comma_separated_string() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("urls.toml");
        let both = vec!["http://a:1".to_owned(), "http://b:2".to_owned()];
        for value in [
            r#"["http://a:1", "http://b:2/"]"#,
            r#""http://a:1, http://b:2""#,
        ] {
            std::fs::write(&file, format!("[ticket]\nvacancy_url = {value}\n")).unwrap();
            let ticket = Settings::load(Mode::Ticket, Some(&file), NoFlags {}).unwrap();
            assert_eq!(ticket.vacancy_url, both, "{value}");
        }
        std::fs::write(&file, "[ticket]\nvacancy_url = \"http://a:1,ftp://b\"\n").unwrap();
        let error = Settings::load(Mode::Ticket, Some(&file), NoFlags {}).unwrap_err();
        assert!(error.to_string().contains("vacancy_url"), "{error}");
    }

    #[test]
    fn the_postgres_store_needs_a_database_url_and_never_echoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pg.toml");
        std::fs::write(&file, "[default]\nstore = \"postgres\"\n").unwrap();
        let error = Settings::load(Mode::Vacancy, Some(&file), NoFlags {}).unwrap_err();
        assert!(error.to_string().contains("database_url"), "{error}");

        let secret = "mysql://root:hunter2-secret@db/x";
        let text = format!("[default]\nstore = \"postgres\"\ndatabase_url = \"{secret}\"\n");
        std::fs::write(&file, text).unwrap();
        let error = Settings::load(Mode::Vacancy, Some(&file), NoFlags {}).unwrap_err();
        assert!(error.to_string().contains("database_url"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");

        let url = "postgres://ticketd:hunter2-secret@db:5432/ticketd";
        let text = format!("[default]\nstore = \"postgres\"\ndatabase_url = \"{url}\"\n");
        std::fs::write(&file, text).unwrap();
        let settings = Settings::load(Mode::Vacancy, Some(&file), NoFlags {}).unwrap();
        assert_eq!(settings.database_url.as_ref().unwrap().expose(), url);
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn spans_are_exported_only_to_a_plain_http_endpoint_when_one_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("otlp.toml");
        let load = |value: &str| {
            std::fs::write(&file, format!("[default]\notlp_endpoint = \"{value}\"\n")).unwrap();
            Settings::load(Mode::Ticket, Some(&file), NoFlags {})
        };
        assert!(
            Settings::defaults(Mode::Ticket)
                .otlp(Mode::Ticket)
                .is_none()
        );
        assert!(load("").unwrap().otlp(Mode::Ticket).is_none());
        let otlp = load("http://collector:4318")
            .unwrap()
            .otlp(Mode::Ticket)
            .unwrap();
        assert_eq!(otlp.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(otlp.service_name, "ticketd-ticket");
        for bad in ["https://collector:4318", "collector:4318", "http://"] {
            let error = load(bad).unwrap_err().to_string();
            assert!(error.contains("otlp_endpoint"), "{bad}: {error}");
        }
    }

    #[test]
    fn only_vacancy_checks_the_service_token() {
        let mut settings = Settings::defaults(Mode::Monolith);
        settings.service_token = Some(Secret::new("service-token-correct-horse"));
        settings.admin_token = Some(Secret::new("admin-token-battery-staple"));
        for mode in [Mode::Monolith, Mode::Vacancy, Mode::Ticket] {
            let tokens = Tokens::from((mode, &settings));
            assert!(tokens.admin.is_some(), "{mode}");
            assert_eq!(tokens.service.is_some(), mode == Mode::Vacancy, "{mode}");
        }
    }

    /// The parts' configs keep their secrets wrapped: printing one (a `{:?}` in a log line, a
    /// panic message) shows neither token nor the database password.
    #[test]
    fn the_parts_configs_never_print_their_secrets() {
        let mut settings = Settings::defaults(Mode::Ticket);
        settings.service_token = Some(Secret::new("service-token-correct-horse"));
        settings.admin_token = Some(Secret::new("admin-token-battery-staple"));
        settings.database_url = Some(Secret::new("postgres://ticketd:hunter2-secret@db/ticketd"));
        let remote = format!("{:?}", RemoteConfig::from(&settings));
        assert!(remote.contains("connections_max"), "{remote}");
        for secret in ["correct-horse", "battery-staple"] {
            assert!(!remote.contains(secret), "{remote}");
        }
        let postgres = format!("{:?}", PostgresConfig::try_from(&settings).unwrap());
        assert!(postgres.contains("connections_max"), "{postgres}");
        assert!(!postgres.contains("hunter2"), "{postgres}");
    }
}
