//! Starts ticketd the ways users run it and talks to it over HTTP on 127.0.0.1.
//!
//! Every server binds an ephemeral port and is stopped when its `TestApp` is dropped. Waits are
//! bounded: readiness is polled through `/ready` a limited number of times.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use serde_json::Value;

use tempfile::TempDir;
use ticketd::config::{LogFormat, Mode, Secret, Settings, StoreKind};
use ticketd::startup::Application;

/// One answer: status, JSON body, and the request id header.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub request_id: Option<String>,
    /// The `Retry-After` header, when the answer has one.
    pub retry_after: Option<String>,
}

impl Answer {
    /// The `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// `ticketd monolith`.
    Monolith,
    /// `ticketd vacancy` + `ticketd ticket`.
    Split,
    /// Two `ticketd vacancy` replicas on one PostgreSQL schema of its own (needs
    /// [`DATABASE_URL_VAR`]), or on [`Options::database_url`] when set, and `ticketd ticket`
    /// given both.
    Replicated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Servers built by `Application::build` inside the test process.
    InProcess,
    /// The real `ticketd` executable, one process per service.
    Binary,
}

/// What to start with; anything not set here is the built-in default.
#[derive(Clone, Debug)]
pub struct Options {
    pub store: StoreKind,
    pub initial_stock: u64,
    pub max_per_order: u32,
    pub vacancy_timeout_ms: u64,
    /// The admin token every server gets; `None`: admin calls are refused.
    pub admin_token: Option<String>,
    /// Set on both services of a split deployment.
    pub service_token: Option<String>,
    /// The database of the `postgres` store (a schema of its own per test).
    pub database_url: Option<String>,
    pub database_timeout_ms: u64,
}

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
pub const SERVICE_TOKEN: &str = "service-token-for-tests-9876543210";

impl Default for Options {
    fn default() -> Self {
        Self {
            store: StoreKind::Embedded,
            initial_stock: 1000,
            max_per_order: 10,
            vacancy_timeout_ms: 1000,
            admin_token: Some(ADMIN_TOKEN.into()),
            service_token: Some(SERVICE_TOKEN.into()),
            database_url: None,
            database_timeout_ms: 2000,
        }
    }
}

/// Upper bound on any wait for a server to start or become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound on one HTTP call from a test; a hang fails the test instead of stalling it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub deployment: Deployment,
    pub launch: Launch,
    /// The public API: the monolith, or the ticket service.
    pub base: String,
    options: Options,
    /// The embedded store's directory (monolith or vacancy), removed with the app.
    data: TempDir,
    vacancy: Option<Server>,
    /// The second vacancy replica of a replicated deployment.
    replica: Option<Server>,
    ticket: Option<Server>,
    client: awc::Client,
    /// Dropped last, once every server using it has been stopped.
    database: Option<TestDatabase>,
}

/// One running server, stopped on drop.
pub enum Server {
    InProcess {
        addr: SocketAddr,
        handle: ServerHandle,
    },
    Binary {
        addr: SocketAddr,
        child: Child,
        logs: Arc<Mutex<Vec<String>>>,
    },
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Server::InProcess { addr, .. } | Server::Binary { addr, .. } => *addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Sends `signal` to the process (binary servers only).
    pub fn signal(&self, signal: i32) {
        let Server::Binary { child, .. } = self else {
            panic!("only a process can be signalled")
        };
        // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    }

    /// The exit status, once the process has exited (binary servers only).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            Server::Binary { child, .. } => child.try_wait().expect("the child can be waited on"),
            Server::InProcess { .. } => None,
        }
    }

    /// Log lines the process printed so far (binary servers only).
    pub fn logs(&self) -> Vec<String> {
        match self {
            Server::Binary { logs, .. } => logs.lock().unwrap().clone(),
            Server::InProcess { .. } => Vec::new(),
        }
    }

    /// Stops at once, without waiting for requests in flight: a crash, as far as peers can tell.
    pub async fn kill(mut self) {
        match &mut self {
            Server::InProcess { handle, .. } => handle.stop(false).await,
            Server::Binary { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::InProcess { handle, .. } => {
                // Sends the stop command now; the returned future only reports completion.
                drop(handle.stop(false));
            }
            Server::Binary { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn settings(
    mode: Mode,
    port: u16,
    options: &Options,
    vacancy_url: Option<String>,
    data_dir: &Path,
) -> Settings {
    let mut settings = Settings::defaults(mode);
    settings.store = options.store;
    settings.data_dir = data_dir.to_owned();
    settings.host = "127.0.0.1".into();
    settings.port = port;
    settings.workers = 2;
    settings.initial_stock = options.initial_stock;
    settings.max_per_order = options.max_per_order;
    settings.vacancy_timeout_ms = options.vacancy_timeout_ms;
    settings.admin_token = options.admin_token.clone().map(Secret::new);
    settings.service_token = options.service_token.clone().map(Secret::new);
    settings.log_format = LogFormat::Json;
    settings.database_url = options.database_url.clone().map(Secret::new);
    settings.database_connections_max = 4;
    settings.database_timeout_ms = options.database_timeout_ms;
    // Webhook retries and hand-overs within a test's patience.
    settings.webhook_retry_first_ms = 200;
    settings.webhook_timeout_ms = 1500;
    settings.webhook_lease_ms = 3000;
    if let Some(url) = vacancy_url {
        settings.vacancy_url = url.split(',').map(str::to_owned).collect();
    }
    settings
}

/// Starts one server of `mode` on `port` (0: any free port).
pub fn start_server(launch: Launch, settings: Settings, mode: Mode) -> Server {
    match launch {
        Launch::InProcess => {
            let app = Application::build(mode, &settings).expect("the app builds");
            let addr = app.local_addr();
            let handle = app.handle();
            actix_web::rt::spawn(app.run_until_stopped());
            Server::InProcess { addr, handle }
        }
        Launch::Binary => start_binary(mode, &settings, &[]),
    }
}

/// Starts a server whose predecessor on the same port and store was just stopped. An in-process
/// server lets go of its store only once its worker threads have wound down, so the store may
/// still be locked for a moment: try again, a bounded number of times.
async fn restart(launch: Launch, settings: Settings, mode: Mode) -> Server {
    if launch == Launch::Binary {
        return start_binary(mode, &settings, &[]);
    }
    let tries = 200;
    for _ in 0..tries {
        match Application::build(mode, &settings) {
            Ok(app) => {
                let addr = app.local_addr();
                let handle = app.handle();
                actix_web::rt::spawn(app.run_until_stopped());
                return Server::InProcess { addr, handle };
            }
            Err(error)
                if error.to_string().contains("in use") || error.to_string().contains("listen") =>
            {
                actix_web::rt::time::sleep(START_TIMEOUT / tries).await;
            }
            Err(error) => panic!("{mode} did not restart: {error:#}"),
        }
    }
    panic!("{mode} did not restart: its store stayed locked");
}

/// Runs the real executable with flags for `settings`, plus `extra` arguments and environment.
pub fn start_binary(mode: Mode, settings: &Settings, env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketd"));
    command
        .arg(mode.as_str())
        .args(["--host", &settings.host])
        .args(["--port", &settings.port.to_string()])
        .args(["--workers", &settings.workers.to_string()])
        .args(["--max-per-order", &settings.max_per_order.to_string()])
        .args(["--log-format", "json"]);
    match mode {
        Mode::Monolith | Mode::Vacancy => {
            let store = match settings.store {
                StoreKind::Embedded => "embedded",
                StoreKind::Memory => "memory",
                StoreKind::Postgres => "postgres",
            };
            command
                .args(["--initial-stock", &settings.initial_stock.to_string()])
                .args(["--store", store])
                .arg("--data-dir")
                .arg(&settings.data_dir)
                .args([
                    "--webhook-retry-first-ms",
                    &settings.webhook_retry_first_ms.to_string(),
                ])
                .args([
                    "--webhook-timeout-ms",
                    &settings.webhook_timeout_ms.to_string(),
                ])
                .args(["--webhook-lease-ms", &settings.webhook_lease_ms.to_string()]);
        }
        Mode::Ticket => {
            command
                .args(["--vacancy-url", &settings.vacancy_url.join(",")])
                .args([
                    "--vacancy-timeout-ms",
                    &settings.vacancy_timeout_ms.to_string(),
                ]);
        }
    }
    // Tokens go by environment, as operators are told to pass them (flags show up in `ps`).
    if let Some(token) = &settings.admin_token {
        command.env("TICKETD_ADMIN_TOKEN", token.expose());
    }
    if let Some(token) = &settings.service_token {
        command.env("TICKETD_SERVICE_TOKEN", token.expose());
    }
    if let Some(url) = &settings.database_url {
        command.env("TICKETD_DATABASE_URL", url.expose());
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ticketd starts");

    // Read the log on a thread for the life of the process (so the pipe never fills up), and hand
    // the listening address over as soon as it is printed.
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    {
        let logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                logs.lock().unwrap().push(line);
            }
        });
    }
    let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let output = child.wait_with_output().expect("ticketd exits");
            panic!(
                "ticketd {mode} did not start: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                logs.lock().unwrap().join("\n")
            );
        }
    };
    Server::Binary { addr, child, logs }
}

/// The address in ticketd's "listening on http://ADDR" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let json: Value = serde_json::from_str(line).ok()?;
    let message = json["message"].as_str()?;
    message.strip_prefix("listening on http://")?.parse().ok()
}

impl TestApp {
    pub async fn spawn(deployment: Deployment, launch: Launch, mut options: Options) -> Self {
        let data = TempDir::new().expect("a temporary data directory");
        let mut database = None;
        // Replicas on the database the options name, or on a schema of their own in the test
        // database.
        if deployment == Deployment::Replicated {
            options.store = StoreKind::Postgres;
            if options.database_url.is_none() {
                let schema = TestDatabase::create().await;
                options.database_url = Some(schema.url.clone());
                database = Some(schema);
            }
        }
        let mut replica = None;
        let (vacancy, ticket) = match deployment {
            Deployment::Monolith => {
                let settings = settings(Mode::Monolith, 0, &options, None, data.path());
                (None, start_server(launch, settings, Mode::Monolith))
            }
            Deployment::Split => {
                let vacancy = start_server(
                    launch,
                    settings(Mode::Vacancy, 0, &options, None, data.path()),
                    Mode::Vacancy,
                );
                let ticket_settings =
                    settings(Mode::Ticket, 0, &options, Some(vacancy.url()), data.path());
                (
                    Some(vacancy),
                    start_server(launch, ticket_settings, Mode::Ticket),
                )
            }
            Deployment::Replicated => {
                let vacancies = [0, 1].map(|_| {
                    let settings = settings(Mode::Vacancy, 0, &options, None, data.path());
                    start_server(launch, settings, Mode::Vacancy)
                });
                let urls = format!("{},{}", vacancies[0].url(), vacancies[1].url());
                let ticket_settings = settings(Mode::Ticket, 0, &options, Some(urls), data.path());
                let ticket = start_server(launch, ticket_settings, Mode::Ticket);
                let [first, second] = vacancies;
                replica = Some(second);
                (Some(first), ticket)
            }
        };
        let app = Self {
            deployment,
            launch,
            base: ticket.url(),
            options,
            data,
            vacancy,
            replica,
            ticket: Some(ticket),
            client: awc::Client::builder().timeout(CALL_TIMEOUT).finish(),
            database,
        };
        app.wait_until_ready().await;
        app
    }

    /// Polls `/ready` until it answers 200; panics after a bounded number of tries.
    pub async fn wait_until_ready(&self) {
        let tries = 200;
        for _ in 0..tries {
            if let Ok(answer) = self.try_call(awc::http::Method::GET, "/ready", None).await
                && answer.status == StatusCode::OK
            {
                return;
            }
            actix_web::rt::time::sleep(START_TIMEOUT / tries).await;
        }
        panic!("{} did not become ready", self.base);
    }

    pub fn vacancy(&self) -> Option<&Server> {
        self.vacancy.as_ref()
    }

    pub fn ticket(&self) -> &Server {
        self.ticket.as_ref().expect("the public server is running")
    }

    pub fn ticket_mut(&mut self) -> &mut Server {
        self.ticket.as_mut().expect("the public server is running")
    }

    /// Kills vacancy (split deployment only), keeping its port for [`Self::restart_vacancy`].
    pub async fn kill_vacancy(&mut self) -> SocketAddr {
        let vacancy = self.vacancy.take().expect("a split deployment has vacancy");
        let addr = vacancy.addr();
        vacancy.kill().await;
        addr
    }

    /// Starts vacancy again on the port it had, with the store it had.
    pub async fn restart_vacancy(&mut self, addr: SocketAddr) {
        let settings = settings(
            Mode::Vacancy,
            addr.port(),
            &self.options,
            None,
            self.data.path(),
        );
        self.vacancy = Some(restart(self.launch, settings, Mode::Vacancy).await);
    }

    /// The server that owns the store: the monolith, or vacancy in the split deployment.
    pub fn store_owner(&self) -> &Server {
        match self.deployment {
            Deployment::Monolith => self.ticket(),
            Deployment::Split | Deployment::Replicated => {
                self.vacancy().expect("vacancy is running")
            }
        }
    }

    /// The second vacancy replica (replicated deployment only).
    pub fn replica(&self) -> Option<&Server> {
        self.replica.as_ref()
    }

    /// Kills the second vacancy replica at once (replicated deployment only); returns its port.
    pub async fn kill_replica(&mut self) -> SocketAddr {
        let replica = self
            .replica
            .take()
            .expect("a replicated deployment has a replica");
        let addr = replica.addr();
        replica.kill().await;
        addr
    }

    /// The schema this app's replicas share (replicated deployment only).
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }

    /// Kills the store's owner at once (as a crash would) and returns its port.
    pub async fn kill_store_owner(&mut self) -> SocketAddr {
        let server = match self.deployment {
            Deployment::Monolith => self.ticket.take(),
            Deployment::Split | Deployment::Replicated => self.vacancy.take(),
        };
        let server = server.expect("the store owner is running");
        let addr = server.addr();
        server.kill().await;
        addr
    }

    /// Starts the store's owner again on its port, with its store, and waits until ready.
    pub async fn restart_store_owner(&mut self, addr: SocketAddr) {
        match self.deployment {
            Deployment::Monolith => {
                let settings = settings(
                    Mode::Monolith,
                    addr.port(),
                    &self.options,
                    None,
                    self.data.path(),
                );
                self.ticket = Some(restart(self.launch, settings, Mode::Monolith).await);
            }
            Deployment::Split | Deployment::Replicated => self.restart_vacancy(addr).await,
        }
        self.wait_until_ready().await;
    }

    /// Changes what the next (re)start uses.
    pub fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The expected `mode` of the public server.
    pub fn public_mode(&self) -> &'static str {
        match self.deployment {
            Deployment::Monolith => "monolith",
            Deployment::Split | Deployment::Replicated => "ticket",
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(awc::http::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        let body = serde_json::to_vec(&body).unwrap();
        self.post_raw(path, Some("application/json"), body).await
    }

    pub async fn purchase(&self, qty: Value) -> Answer {
        self.post("/api/v1/purchase", serde_json::json!({ "qty": qty }))
            .await
    }

    pub async fn available(&self) -> u64 {
        let answer = self.get("/api/v1/available").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["qty"].as_u64().expect("qty is a number")
    }

    /// A call with extra headers (`Authorization`, `Idempotency-Key`...) and an optional JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        for header in headers {
            request = request.insert_header(*header);
        }
        let body = body.map(|b| (Some("application/json"), serde_json::to_vec(&b).unwrap()));
        self.send(request, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// A call as the admin.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Answer {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        self.request(
            method,
            path,
            &[("authorization", bearer.as_str())],
            Some(body),
        )
        .await
    }

    /// `GET /api/v1/changes` as the admin, with `query` (`after=N&limit=N&wait_seconds=S`).
    pub async fn changes(&self, query: &str) -> Answer {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let path = format!("/api/v1/changes?{query}");
        self.request("GET", &path, &[("authorization", bearer.as_str())], None)
            .await
    }

    /// Every change kept, in order, checked to be numbered 1, 2, ... without a gap: their types.
    pub async fn change_types(&self) -> Vec<String> {
        let answer = self.changes("after=0&limit=1000").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let changes = answer.body["changes"].as_array().expect("changes");
        for (n, change) in changes.iter().enumerate() {
            assert_eq!(change["seq"], serde_json::json!(n + 1), "{answer:?}");
            assert!(change["data"].is_object(), "{change}");
        }
        assert_eq!(
            answer.body["next_after"],
            serde_json::json!(changes.len()),
            "{answer:?}"
        );
        changes
            .iter()
            .map(|change| change["type"].as_str().expect("a type").to_owned())
            .collect()
    }

    /// The event's counts: `(available, held, sold)`, checked to add up to its capacity.
    pub async fn counts(&self, event: &str) -> (u64, u64, u64) {
        let answer = self.get(&format!("/api/v1/events/{event}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let n = |key: &str| answer.body[key].as_u64().unwrap();
        assert_eq!(
            n("available") + n("held") + n("sold"),
            n("capacity"),
            "{answer:?}"
        );
        (n("available"), n("held"), n("sold"))
    }

    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        self.call(awc::http::Method::POST, path, Some((content_type, body)))
            .await
    }

    pub async fn call(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<(Option<&str>, Vec<u8>)>,
    ) -> Answer {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    pub async fn try_call(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<(Option<&str>, Vec<u8>)>,
    ) -> Result<Answer, String> {
        self.send(
            self.client.request(method, format!("{}{path}", self.base)),
            body,
        )
        .await
    }

    pub async fn send(
        &self,
        request: awc::ClientRequest,
        body: Option<(Option<&str>, Vec<u8>)>,
    ) -> Result<Answer, String> {
        let sent = match body {
            Some((content_type, bytes)) => {
                let request = match content_type {
                    Some(content_type) => request.insert_header(("content-type", content_type)),
                    None => request,
                };
                request.send_body(bytes)
            }
            None => request.send(),
        };
        let mut response = sent.await.map_err(|e| e.to_string())?;
        let bytes = response
            .body()
            .limit(1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))?
        };
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Answer {
            status: response.status(),
            body,
            request_id,
            retry_after,
        })
    }

    pub fn client(&self) -> &awc::Client {
        &self.client
    }
}

impl TestApp {
    /// A ticket service alone, pointed at `vacancy_url` (which may be down or never answer).
    /// Not waited on: its `/ready` is expected to fail.
    pub async fn ticket_only(launch: Launch, vacancy_url: String, options: Options) -> Self {
        let data = TempDir::new().expect("a temporary directory");
        let settings = settings(Mode::Ticket, 0, &options, Some(vacancy_url), data.path());
        let ticket = start_server(launch, settings, Mode::Ticket);
        let app = Self {
            deployment: Deployment::Split,
            launch,
            base: ticket.url(),
            options,
            data,
            vacancy: None,
            replica: None,
            ticket: Some(ticket),
            client: awc::Client::builder().timeout(CALL_TIMEOUT).finish(),
            database: None,
        };
        // Liveness does not depend on vacancy, so it tells when the server answers.
        for _ in 0..200 {
            if app
                .try_call(awc::http::Method::GET, "/health", None)
                .await
                .is_ok()
            {
                return app;
            }
            actix_web::rt::time::sleep(START_TIMEOUT / 200).await;
        }
        panic!("the ticket service did not start");
    }

    /// A monolith whose settings `tune` adjusts. With `copy_of`, its data directory starts as a
    /// copy of that one (e.g. a fixture store), so the original is never changed.
    pub async fn monolith_tuned(
        launch: Launch,
        options: Options,
        copy_of: Option<&Path>,
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        let data = TempDir::new().expect("a temporary data directory");
        if let Some(store) = copy_of {
            for entry in std::fs::read_dir(store).expect("the store can be read") {
                let entry = entry.expect("a store file");
                std::fs::copy(entry.path(), data.path().join(entry.file_name()))
                    .expect("the store file is copied");
            }
        }
        let mut settings = settings(Mode::Monolith, 0, &options, None, data.path());
        tune(&mut settings);
        let monolith = start_server(launch, settings, Mode::Monolith);
        let app = Self {
            deployment: Deployment::Monolith,
            launch,
            base: monolith.url(),
            options,
            data,
            vacancy: None,
            replica: None,
            ticket: Some(monolith),
            client: awc::Client::builder().timeout(CALL_TIMEOUT).finish(),
            database: None,
        };
        app.wait_until_ready().await;
        app
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Runs `command` to its end; kills it and fails if it is still running after `limit`.
pub fn exit_within(mut command: Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{command:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Where the tests that need PostgreSQL find it, e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const DATABASE_URL_VAR: &str = "TICKETD_TEST_DATABASE_URL";

/// Whether PostgreSQL tests can run. Without a database they are skipped, loudly; in CI (`CI` is
/// set) a missing database fails them instead, so they cannot be skipped by accident.
/// An event's top-level fields, as every release has answered them: what older clients read.
pub fn headline(body: &Value) -> Value {
    let fields = ["id", "name", "capacity", "available", "held", "sold"];
    Value::Object(
        fields
            .iter()
            .map(|field| (field.to_string(), body[*field].clone()))
            .collect(),
    )
}

pub fn postgres_available(test: &str) -> bool {
    if std::env::var_os(DATABASE_URL_VAR).is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {DATABASE_URL_VAR} is not set, and CI must run the PostgreSQL tests"
    );
    // Straight to stderr, past the test harness's capture, so a skip is never silent.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs PostgreSQL; set {DATABASE_URL_VAR} to run it"
    );
    false
}

/// A schema of its own in the test database, so tests can run in parallel; dropped on drop.
pub struct TestDatabase {
    /// The test database's URL, set to use this schema.
    pub url: String,
    base: String,
    schema: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let base = std::env::var(DATABASE_URL_VAR).expect("the test database is configured");
        let schema = format!("ticketd_test_{}", uuid::Uuid::now_v7().simple());
        run_sql(&base, &format!("CREATE SCHEMA {schema}")).await;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        Self { url, base, schema }
    }

    /// Runs `sql` in this schema and returns every row's first column as text.
    pub async fn query(&self, sql: &str) -> Vec<String> {
        run_sql(&self.url, sql).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Drop may run inside the test's runtime, so the cleanup gets a thread and runtime of its own.
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(run_sql(
                    &base,
                    &format!("SET lock_timeout = '10s'; DROP SCHEMA {schema} CASCADE"),
                ))
        });
        if cleanup.join().is_err() {
            eprintln!("could not drop the test schema {}", self.schema);
        }
    }
}

/// Runs `sql` (one or more statements) on a connection of its own; the rows of the last one, as
/// text. Bounded in time.
async fn run_sql(url: &str, sql: &str) -> Vec<String> {
    let work = async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("the test database accepts connections");
        let driver = tokio::spawn(connection);
        let messages = client.simple_query(sql).await.expect("the test SQL runs");
        drop(client);
        let _ = driver.await;
        messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("NULL").to_owned())
                }
                _ => None,
            })
            .collect()
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .expect("the test database answers in time")
}
