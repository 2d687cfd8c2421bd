//! Losing the database server: a real PostgreSQL primary killed and its synchronous standby
//! promoted, and the one server restarted, each under load from many buyers through two vacancy
//! replicas. Every acknowledged sale must be on the server that serves afterwards, nothing may be
//! oversold, and ticketd must carry on by itself.
//!
//! Each test makes its own servers (`initdb`, `pg_basebackup`, `pg_ctl`, run as the `postgres`
//! user when the tests run as root) on private ports of 127.0.0.1, in a temporary directory,
//! apart from the shared test server; a guard stops them when the test ends, failed or not.
//! Without the server binaries the tests are skipped, loudly, and fail under CI.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;
use tempfile::TempDir;

use crate::helpers::{ADMIN_TOKEN, Answer, Deployment, Launch, Options, TestApp, exit_within};

/// Upper bound on one server command (`initdb`, `pg_ctl ... -w`, `pg_basebackup`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `pg_ctl` waits for a server to start, stop or be promoted, in seconds.
const PG_CTL_WAIT_SECONDS: &str = "30";
/// Upper bound on waiting for ticketd to serve again, or for sales to reach a mark.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Acknowledged sales before the fault, and again after it, before the load stops.
const SALES_MARK: usize = 100;
/// Buyers buying at once, through the ticket service.
const BUYERS: usize = 12;
/// Most purchases one buyer makes.
const PURCHASES_MAX: usize = 3_000;

#[actix_web::test]
async fn a_promoted_standby_takes_over_from_a_killed_primary_and_no_acknowledged_sale_is_lost() {
    takeover_under_load(
        "a_promoted_standby_takes_over_from_a_killed_primary_and_no_acknowledged_sale_is_lost",
        Loss::Killed,
    )
    .await;
}

#[actix_web::test]
async fn a_promoted_standby_takes_over_from_a_hung_primary_and_no_acknowledged_sale_is_lost() {
    takeover_under_load(
        "a_promoted_standby_takes_over_from_a_hung_primary_and_no_acknowledged_sale_is_lost",
        Loss::Hung,
    )
    .await;
}

/// How the primary is lost.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Its postmaster SIGKILLed: its connections close, and its port refuses new ones.
    Killed,
    /// Every process of it stopped (SIGSTOP): a machine that froze with its network up. Its
    /// connections stay open and never answer, and new ones are accepted and never answered.
    Hung,
}

/// A primary and its synchronous standby under load from buyers through two vacancy replicas
/// given both hosts; the primary is lost as `loss` says, and the standby promoted.
async fn takeover_under_load(test: &str, loss: Loss) {
    let Some(bin) = server_binaries(test) else {
        return;
    };
    let dir = server_directory();
    let primary = PgServer::create(&bin, dir.path(), "primary");
    // Synchronous: a commit returns once the standby has it, so a promotion loses none.
    primary.configure("synchronous_standby_names = '*'\nsynchronous_commit = on\n");
    primary.start();
    let standby = PgServer::standby_of(&primary, dir.path(), "standby");
    // Once promoted, it has no standby of its own to wait for.
    standby.configure("synchronous_standby_names = ''\n");
    standby.start();
    primary.until_standby_is_synchronous().await;

    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let app = replicas_on(&url).await;
    let before = Before::make(&app).await;

    let load = Load::new();
    let fault = async {
        load.until_acknowledged(SALES_MARK).await;
        let short = hold(&app, "gala", 3, 5).await;
        match loss {
            Loss::Killed => primary.kill(),
            Loss::Hung => primary.freeze(),
        }

        // The gap: no primary. Answers are 503s with Retry-After, and /ready is false; the
        // standby takes no writes, so nothing is decided on it.
        for _ in 0..3 {
            assert_unavailable(&app).await;
        }
        let promoted = standby.promote();
        let takeover = until_served(&app, promoted).await;
        // The figure the README reports.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: served again {} ms after the promotion",
            takeover.as_millis()
        );
        load.until_acknowledged(load.acknowledged() + SALES_MARK)
            .await;
        load.stop();
        short
    };
    let (answers, short) = tokio::join!(load.run(&app), fault);

    let acknowledged = load.check(&answers);
    before.carry_on(&app, &short).await;
    check_store(&standby, &acknowledged).await;
    drop(app);
}

#[actix_web::test]
async fn a_fast_restart_of_the_database_loses_no_acknowledged_sale() {
    restart_under_load(
        "a_fast_restart_of_the_database_loses_no_acknowledged_sale",
        "fast",
    )
    .await;
}

#[actix_web::test]
async fn an_immediate_restart_of_the_database_loses_no_acknowledged_sale() {
    restart_under_load(
        "an_immediate_restart_of_the_database_loses_no_acknowledged_sale",
        "immediate",
    )
    .await;
}

/// The one database server restarted in `mode` (`fast`: clients are disconnected and the server
/// checkpoints; `immediate`: a crash, and recovery from the log) while buyers buy.
async fn restart_under_load(test: &str, mode: &str) {
    let Some(bin) = server_binaries(test) else {
        return;
    };
    let dir = server_directory();
    let server = PgServer::create(&bin, dir.path(), "server");
    server.start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let app = replicas_on(&url).await;
    let before = Before::make(&app).await;

    let load = Load::new();
    let fault = async {
        load.until_acknowledged(SALES_MARK).await;
        let short = hold(&app, "gala", 3, 5).await;
        server.restart(mode);
        let restarted = Instant::now();
        let back = until_served(&app, restarted).await;
        let _ = writeln!(
            std::io::stderr(),
            "{test}: served again {} ms after the server was back",
            back.as_millis()
        );
        load.until_acknowledged(load.acknowledged() + SALES_MARK)
            .await;
        load.stop();
        short
    };
    let (answers, short) = tokio::join!(load.run(&app), fault);

    let acknowledged = load.check(&answers);
    before.carry_on(&app, &short).await;
    check_store(&server, &acknowledged).await;
    drop(app);
}

/// Two vacancy replicas on `url` and a ticket service given both, as processes.
async fn replicas_on(url: &str) -> TestApp {
    let options = Options {
        initial_stock: 100_000,
        database_url: Some(url.to_owned()),
        database_timeout_ms: 1000,
        // Longer than the database's limit, so vacancy's own 503 is what the buyer hears.
        vacancy_timeout_ms: 3000,
        ..Options::default()
    };
    TestApp::spawn(Deployment::Replicated, Launch::Binary, options).await
}

/// What is made before the fault and must work after it: a live hold, an event to hold on,
/// and a purchase with an idempotency key.
struct Before {
    long: String,
    key: String,
    keyed_order: String,
}

impl Before {
    async fn make(app: &TestApp) -> Self {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let created = app
            .request(
                "POST",
                "/api/v1/events",
                &[("authorization", &bearer)],
                Some(json!({"id": "gala", "name": "Gala", "capacity": 20})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        let long = hold(app, "gala", 2, 600).await;
        let key = uuid::Uuid::now_v7().to_string();
        let keyed = keyed_purchase(app, &key).await;
        assert_eq!(keyed.body["success"], true, "{keyed:?}");
        let keyed_order = keyed.body["order_id"].as_str().unwrap().to_owned();
        Self {
            long,
            key,
            keyed_order,
        }
    }

    /// After the fault: the key still answers as it did, the short hold (made just before the
    /// fault) is swept when due, and the long one is confirmed.
    async fn carry_on(&self, app: &TestApp, short: &str) {
        let again = keyed_purchase(app, &self.key).await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(
            again.body["order_id"],
            self.keyed_order.as_str(),
            "{again:?}"
        );

        let started = Instant::now();
        while app.counts("gala").await != (18, 2, 0) && started.elapsed() < SETTLE_TIMEOUT {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            app.counts("gala").await,
            (18, 2, 0),
            "the short hold expired"
        );
        let expired = app.get(&format!("/api/v1/orders/{short}")).await;
        assert_eq!(expired.body["status"], "expired", "{expired:?}");
        let confirmed = app
            .post(&format!("/api/v1/holds/{}/confirm", self.long), json!({}))
            .await;
        assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
        assert_eq!(app.counts("gala").await, (18, 0, 2));
    }
}

async fn hold(app: &TestApp, event: &str, qty: u64, ttl_seconds: u64) -> String {
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/holds"),
            json!({"qty": qty, "ttl_seconds": ttl_seconds}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["hold_id"].as_str().unwrap().to_owned()
}

async fn keyed_purchase(app: &TestApp, key: &str) -> Answer {
    app.request(
        "POST",
        "/api/v1/purchase",
        &[("idempotency-key", key)],
        Some(json!({"qty": 2})),
    )
    .await
}

/// Buyers buying one ticket at a time until stopped, keeping every answer.
struct Load {
    acknowledged: Cell<usize>,
    stopped: Cell<bool>,
    /// Answers other than a sale, for the report when a check fails.
    refusals: RefCell<Vec<String>>,
    /// The longest a buyer waited for an answer that was not a sale.
    slowest_refusal: Cell<Duration>,
}

impl Load {
    fn new() -> Self {
        Self {
            acknowledged: Cell::new(0),
            stopped: Cell::new(false),
            refusals: RefCell::new(Vec::new()),
            slowest_refusal: Cell::new(Duration::ZERO),
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.get()
    }

    fn stop(&self) {
        self.stopped.set(true);
    }

    async fn run(&self, app: &TestApp) -> Vec<Answer> {
        let buyers = join_all((0..BUYERS).map(|_| async {
            let mut answers = Vec::new();
            for _ in 0..PURCHASES_MAX {
                if self.stopped.get() {
                    break;
                }
                let sent = Instant::now();
                let answer = app.purchase(json!(1)).await;
                if answer.body["success"] != true {
                    let slowest = self.slowest_refusal.get().max(sent.elapsed());
                    self.slowest_refusal.set(slowest);
                }
                if answer.body["success"] == true {
                    self.acknowledged.set(self.acknowledged.get() + 1);
                } else {
                    self.refusals
                        .borrow_mut()
                        .push(format!("{} {}", answer.status, answer.body));
                    // A refused buyer comes back soon, not at once (and not after the full
                    // Retry-After, which would stretch the test).
                    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                }
                answers.push(answer);
            }
            answers
        }));
        let answers = buyers.await.into_iter().flatten().collect();
        // Stopped by the test, or every buyer made all its purchases (then the marks were
        // never reached, and the test fails there).
        self.stop();
        answers
    }

    /// Waits (a bounded while) until `mark` sales are acknowledged.
    async fn until_acknowledged(&self, mark: usize) {
        let started = Instant::now();
        while self.acknowledged() < mark {
            assert!(
                started.elapsed() < SETTLE_TIMEOUT && !self.stopped.get(),
                "only {} of {mark} sales acknowledged; refusals: {:?}",
                self.acknowledged(),
                self.refusals
                    .borrow()
                    .iter()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
            );
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every answer was a sale or a 503 to retry (never a 500, never a hang: the test client's
    /// own limit would have failed the call); returns the ids of the sales. (A fault may cost
    /// the buyers no refusal at all: the ticket service tries the other replica, and a server
    /// back quickly answers the retry.)
    fn check(&self, answers: &[Answer]) -> HashSet<String> {
        let mut acknowledged = HashSet::new();
        let mut refused = 0;
        for answer in answers {
            match answer.status {
                StatusCode::OK => {
                    assert_eq!(answer.body["success"], true, "{answer:?}");
                    let id = answer.body["order_id"].as_str().unwrap().to_owned();
                    assert!(acknowledged.insert(id), "one order twice: {answer:?}");
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(!answer.code().is_empty(), "{answer:?}");
                    assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
                    refused += 1;
                }
                status => panic!("unexpected {status}: {answer:?}"),
            }
        }
        let _ = writeln!(
            std::io::stderr(),
            "{} sales, {refused} refusals, the slowest answered in {} ms",
            acknowledged.len(),
            self.slowest_refusal.get().as_millis()
        );
        acknowledged
    }
}

/// A purchase while no server takes writes: a 503 to retry, quickly, and `/ready` false.
async fn assert_unavailable(app: &TestApp) {
    let refused = app.purchase(json!(1)).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:?}");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
}

/// Waits (a bounded while) for a purchase to succeed and `/ready` to be true; returns how long
/// after `since` the first sale was.
async fn until_served(app: &TestApp, since: Instant) -> Duration {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < SETTLE_TIMEOUT {
        let answer = app.purchase(json!(1)).await;
        if answer.body["success"] == true {
            let served = since.elapsed();
            assert_eq!(app.get("/ready").await.status, StatusCode::OK);
            return served;
        }
        last = Some(answer);
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ticketd did not serve again within {SETTLE_TIMEOUT:?}; last answer: {last:?}");
}

/// On the server that serves now: every acknowledged sale is confirmed there, and every event's
/// counts are what its orders say, within its capacity.
async fn check_store(server: &PgServer, acknowledged: &HashSet<String>) {
    let confirmed: HashSet<String> = server
        .query("SELECT id::text FROM orders WHERE status = 'confirmed'")
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&confirmed).collect();
    assert!(lost.is_empty(), "acknowledged sales lost: {lost:?}");

    // The outbox came through too: every confirmed order was told exactly once, and the
    // numbering has no gap across the takeover.
    let told = server
        .query(
            "SELECT data::json->'order'->>'order_id' FROM changes WHERE kind = 'order.confirmed'",
        )
        .await;
    let mut told_once = HashSet::new();
    for row in &told {
        assert!(
            told_once.insert(row[0].clone()),
            "an order told twice: {row:?}"
        );
    }
    let untold: Vec<&String> = confirmed.difference(&told_once).collect();
    assert!(untold.is_empty(), "confirmed orders never told: {untold:?}");
    let numbering = server
        .query("SELECT count(*), COALESCE(min(seq), 1), COALESCE(max(seq), 0) FROM changes")
        .await;
    let n = |column: usize| -> u64 { numbering[0][column].parse().unwrap() };
    assert_eq!(
        n(0),
        n(2) + 1 - n(1),
        "changes numbered without a gap: {numbering:?}"
    );

    let events = server
        .query(
            "SELECT e.id, e.capacity, e.available, e.held, e.sold,
                    COALESCE(SUM(o.qty) FILTER (WHERE o.status = 'held'), 0),
                    COALESCE(SUM(o.qty) FILTER (WHERE o.status = 'confirmed'), 0)
             FROM events e LEFT JOIN orders o ON o.event = e.id
             GROUP BY e.id, e.capacity, e.available, e.held, e.sold",
        )
        .await;
    assert_eq!(events.len(), 2, "{events:?}");
    for row in &events {
        let n = |column: usize| -> u64 { row[column].parse().unwrap() };
        assert_eq!(n(2) + n(3) + n(4), n(1), "counts add up: {row:?}");
        assert_eq!(
            (n(3), n(4)),
            (n(5), n(6)),
            "counts are the orders': {row:?}"
        );
    }
}

/// Where the server binaries are; `None` (the test is skipped, loudly) when they are not
/// installed, which fails under CI.
fn server_binaries(test: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|version| version.path().join("bin"))
        .collect();
    // The newest installed first.
    candidates.sort_by_key(|bin| {
        let version = bin.parent().and_then(Path::file_name);
        std::cmp::Reverse(version.and_then(|v| v.to_str()?.parse::<u32>().ok()))
    });
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    let found = candidates.into_iter().find(|bin| {
        ["initdb", "pg_ctl", "pg_basebackup"]
            .iter()
            .all(|tool| bin.join(tool).is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are not \
             installed, and CI must run the failover tests"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: needs the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)"
        );
    }
    found
}

/// The user the servers run as: `postgres` when the tests run as root (PostgreSQL refuses to
/// run as root), else the tests' own.
fn server_user() -> Option<(libc::uid_t, libc::gid_t)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: a NUL-terminated name; the record is read at once, before any other call that
    // could reuse it.
    let record = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(
        !record.is_null(),
        "the tests run as root and there is no `postgres` user to run the servers as"
    );
    // SAFETY: not null, checked above.
    let record = unsafe { &*record };
    Some((record.pw_uid, record.pw_gid))
}

/// A temporary directory the servers' user owns.
fn server_directory() -> TempDir {
    let dir = TempDir::new().expect("a temporary directory");
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    }
    dir
}

/// `tool` of `bin`, to run as the servers' user.
fn server_command(bin: &Path, tool: &str) -> Command {
    let tool = bin.join(tool);
    match server_user() {
        Some(_) => {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(tool);
            command
        }
        None => Command::new(tool),
    }
}

/// Runs `command` to its end within [`COMMAND_TIMEOUT`]; fails with its output unless it exits 0.
fn run(command: Command) {
    let shown = format!("{command:?}");
    let output = exit_within(command, COMMAND_TIMEOUT);
    assert!(
        output.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One PostgreSQL server of the test's own, stopped (immediately) when dropped.
struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Processes stopped by [`Self::freeze`], to let go on drop.
    frozen: RefCell<Vec<i32>>,
}

impl PgServer {
    /// A new, stopped server in `dir/name`, listening on 127.0.0.1 only, on a port of its own.
    fn create(bin: &Path, dir: &Path, name: &str) -> Self {
        let server = Self {
            bin: bin.to_owned(),
            data: dir.join(name),
            port: free_port(),
            frozen: RefCell::new(Vec::new()),
        };
        let mut initdb = server_command(bin, "initdb");
        initdb
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&server.data);
        run(initdb);
        server.configure(&format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             max_connections = 60\nshared_buffers = 32MB\nmax_wal_senders = 4\n",
            server.port,
            dir.display()
        ));
        server
    }

    /// A streaming standby of `primary` (running) in `dir/name`, stopped, on a port of its own.
    fn standby_of(primary: &PgServer, dir: &Path, name: &str) -> Self {
        let server = Self {
            bin: primary.bin.clone(),
            data: dir.join(name),
            port: free_port(),
            frozen: RefCell::new(Vec::new()),
        };
        let mut backup = server_command(&primary.bin, "pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D"])
            .arg(&server.data);
        run(backup);
        server.configure(&format!("port = {}\n", server.port));
        server
    }

    /// Appends `settings` to the server's configuration (the last value of a setting wins).
    fn configure(&self, settings: &str) {
        let path = self.data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.write_all(settings.as_bytes()).unwrap();
    }

    fn pg_ctl(&self, action: &str, extra: &[&str]) -> Command {
        let mut command = server_command(&self.bin, "pg_ctl");
        command
            .arg(action)
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", PG_CTL_WAIT_SECONDS])
            .args(extra);
        command
    }

    /// Starts the server and waits until it accepts connections.
    fn start(&self) {
        let log = self.data.with_extension("log");
        let log = log.to_str().unwrap();
        run(self.pg_ctl("start", &["-l", log]));
    }

    /// Restarts the server in shutdown `mode`, waiting until it accepts connections again.
    fn restart(&self, mode: &str) {
        let log = self.data.with_extension("log");
        let log = log.to_str().unwrap();
        run(self.pg_ctl("restart", &["-m", mode, "-l", log]));
    }

    /// Promotes a standby; returns once it takes writes.
    fn promote(&self) -> Instant {
        run(self.pg_ctl("promote", &[]));
        Instant::now()
    }

    fn postmaster(&self) -> i32 {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("the server is running");
        pid.lines().next().unwrap().trim().parse().unwrap()
    }

    /// SIGKILLs the postmaster, as a machine lost would stop it: no shutdown, no goodbye.
    fn kill(&self) {
        // SAFETY: kill(2) on the postmaster's pid, read from the file it keeps while it runs.
        assert_eq!(unsafe { libc::kill(self.postmaster(), libc::SIGKILL) }, 0);
    }

    /// SIGSTOPs the postmaster and every process it started: nothing of the server answers,
    /// and no connection to it closes.
    fn freeze(&self) {
        let postmaster = self.postmaster();
        let mut pids = vec![postmaster];
        pids.extend(children(postmaster));
        for &pid in &pids {
            // SAFETY: kill(2) on the server's own processes; one that already exited is skipped.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        self.frozen.borrow_mut().extend(pids);
    }

    /// Waits (a bounded while) until a standby streams from this server synchronously.
    async fn until_standby_is_synchronous(&self) {
        let started = Instant::now();
        while started.elapsed() < SETTLE_TIMEOUT {
            let states = self
                .query("SELECT sync_state FROM pg_stat_replication")
                .await;
            if states.iter().any(|row| row[0] == "sync") {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the standby never became synchronous");
    }

    /// Runs `sql` on this server's `postgres` database; every row, as text.
    async fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let work = async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("the server accepts connections");
            let driver = tokio::spawn(connection);
            let messages = client.simple_query(sql).await.expect("the SQL runs");
            drop(client);
            let _ = driver.await;
            messages
                .into_iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        };
        tokio::time::timeout(SETTLE_TIMEOUT, work)
            .await
            .expect("the server answers in time")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        for &pid in self.frozen.borrow().iter() {
            // SAFETY: kill(2) on a process this server had; it may have exited since.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        // Whatever state the test left it in; a server already stopped (or killed) just makes
        // pg_ctl say so. Bounded like every command.
        let command = self.pg_ctl("stop", &["-m", "immediate"]);
        let _ = exit_within(command, COMMAND_TIMEOUT);
    }
}

/// The processes whose parent is `parent`, from `/proc`.
fn children(parent: i32) -> Vec<i32> {
    let entries = std::fs::read_dir("/proc").expect("/proc is there");
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            // `pid (name) state ppid ...`; the name may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(1) == Some(&*parent.to_string())
        })
        .collect()
}
