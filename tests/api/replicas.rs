//! Several vacancy replicas on one PostgreSQL database: what only a shared store can get wrong.
//! Every test here needs `TICKETD_TEST_DATABASE_URL` and works in a schema of its own.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{
    Deployment, Launch, Options, SERVICE_TOKEN, TestApp, TestDatabase, postgres_available,
    settings, start_server,
};
use ticketd::config::{Mode, Secret, StoreKind};
use ticketd::domain::{EventId, HoldTtl, Quantity, Reservation, ReservationId};
use ticketd::vacancy::postgres::{PostgresConfig, PostgresLedger};
use ticketd::vacancy::{Clock, Inventory, InventoryConfig};

/// Upper bound on waiting for a recovery or a sweep.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

#[actix_web::test]
async fn two_vacancy_processes_sell_one_event_without_overselling() {
    if !postgres_available("two_vacancy_processes_sell_one_event_without_overselling") {
        return;
    }
    let options = Options {
        initial_stock: 150,
        ..Options::default()
    };
    let app = TestApp::spawn(Deployment::Replicated, Launch::Binary, options).await;
    let answers = join_all((0..400).map(|_| app.purchase(json!(1)))).await;

    let sold: Vec<&str> = answers
        .iter()
        .filter(|answer| answer.body["success"] == true)
        .map(|answer| answer.body["order_id"].as_str().unwrap())
        .collect();
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    assert_eq!(sold.len(), 150, "exactly the stock is sold");
    assert_eq!(
        sold.iter().collect::<HashSet<_>>().len(),
        150,
        "no order twice"
    );
    assert_eq!(app.counts("default").await, (0, 0, 150));

    let database = app.database().unwrap();
    let stored = database
        .query("SELECT SUM(qty) FROM orders WHERE status = 'confirmed'")
        .await;
    assert_eq!(stored, ["150"]);
    // Both replicas really sold: neither stood idle while the other did the work.
    for vacancy in [app.vacancy().unwrap(), app.replica().unwrap()] {
        let metrics = fetch(&app, &format!("{}/metrics", vacancy.url())).await;
        assert!(
            metrics.contains("ticketd_reservations_total{outcome=\"accepted\"}"),
            "{} sold nothing",
            vacancy.url()
        );
    }
}

/// A clock both in-process replicas read, moved by hand.
pub struct TestClock(pub AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves with the wall clock, which these tests only ever move forwards.
    fn monotonic(&self) -> std::time::Instant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(std::time::Instant::now);
        start + std::time::Duration::from_millis(self.now_ms() as u64)
    }
}

fn replica(database: &TestDatabase, clock: &Arc<TestClock>) -> Inventory {
    shared_inventory(&database.url, 1000, Arc::clone(clock) as Arc<dyn Clock>)
}

/// An in-process inventory on the PostgreSQL store at `url` (a test schema), reading `clock`.
pub fn shared_inventory(url: &str, initial_stock: u64, clock: Arc<dyn Clock>) -> Inventory {
    let ledger = PostgresLedger::open(&PostgresConfig {
        url: Secret::new(url.to_owned()),
        connections_max: 4,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let config = InventoryConfig {
        initial_stock,
        ..InventoryConfig::default()
    };
    Inventory::open_shared_with_clock(Box::new(ledger), config, clock).unwrap()
}

fn reservation(event: &EventId, qty: i64, ttl: Option<u32>) -> Reservation {
    Reservation {
        id: ReservationId::generate(),
        event: event.clone(),
        lines: ticketd::domain::Lines::one(Quantity::parse(qty, 10).unwrap()),
        customer: None,
        hold_ttl_seconds: ttl.map(|ttl| HoldTtl::parse(ttl.into(), u32::MAX).unwrap()),
        key: None,
    }
}

#[actix_web::test]
async fn replicas_sweeping_at_once_expire_each_hold_once() {
    if !postgres_available("replicas_sweeping_at_once_expire_each_hold_once") {
        return;
    }
    let database = TestDatabase::create().await;
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let replicas = [replica(&database, &clock), replica(&database, &clock)];
    let events: Vec<EventId> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|id| EventId::parse(id).unwrap())
        .collect();
    for event in &events {
        replicas[0]
            .create_event(event.clone(), event.to_string(), 300)
            .await
            .unwrap();
    }
    // 90 holds of 2 tickets, made on both replicas, all due at the same moment.
    for n in 0..90 {
        let hold = reservation(&events[n % 3], 2, Some(10));
        let made = replicas[n % 2].reserve(hold).await.unwrap();
        assert!(made.order.is_some());
    }
    for event in &events {
        let stock = replicas[1].event(event).await.unwrap().stock();
        assert_eq!((stock.available, stock.held, stock.sold), (240, 60, 0));
    }

    clock.0.fetch_add(10_000, Ordering::SeqCst);
    // Each replica has its own holds due; a request to each at the same moment makes both sweep
    // at once, and their events in opposite orders.
    let first = replicas[0].reserve(reservation(&events[2], 1, None));
    let second = replicas[1].reserve(reservation(&events[0], 1, None));
    let (first, second) = tokio::join!(first, second);
    assert!(first.unwrap().order.is_some() && second.unwrap().order.is_some());

    for (event, sold) in events.iter().zip([1, 0, 1]) {
        let stock = replicas[0].event(event).await.unwrap().stock();
        assert_eq!(
            (stock.available, stock.held, stock.sold),
            (300 - sold, 0, sold),
            "{event}: every hold released exactly once"
        );
    }
    let expired = database
        .query("SELECT COUNT(*) FROM orders WHERE status = 'expired'")
        .await;
    assert_eq!(expired, ["90"]);
}

#[actix_web::test]
async fn ticket_fails_over_when_a_vacancy_replica_dies_mid_load() {
    if !postgres_available("ticket_fails_over_when_a_vacancy_replica_dies_mid_load") {
        return;
    }
    let options = Options {
        initial_stock: 10_000,
        vacancy_timeout_ms: 3000,
        ..Options::default()
    };
    let mut app = TestApp::spawn(Deployment::Replicated, Launch::Binary, options).await;
    let buyers = 8;
    let rounds = 12;
    let stop = Arc::new(AtomicBool::new(false));
    let load = join_all((0..buyers).map(|_| async {
        let mut sold = Vec::new();
        for _ in 0..rounds {
            let answer = app.purchase(json!(1)).await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            assert_eq!(answer.body["success"], true, "{answer:?}");
            sold.push(answer.body["order_id"].as_str().unwrap().to_owned());
        }
        sold
    }));
    let killer = async {
        // Kill one replica once sales are under way.
        until_sales_start(&app, 10_000).await;
        app.vacancy().unwrap().signal(libc::SIGKILL);
        stop.store(true, Ordering::SeqCst);
    };
    let (sold, ()) = tokio::join!(load, killer);
    assert!(stop.load(Ordering::SeqCst));
    let sold: Vec<String> = sold.into_iter().flatten().collect();
    assert_eq!(sold.len(), buyers * rounds, "every purchase was answered");

    // After the kill every call goes to the survivor, and nothing was sold twice or lost.
    let after = app.purchase(json!(1)).await;
    assert_eq!(after.body["success"], true, "{after:?}");
    assert_eq!(
        app.counts("default").await,
        (10_000 - sold.len() as u64 - 1, 0, sold.len() as u64 + 1)
    );
    let stored = app
        .database()
        .unwrap()
        .query("SELECT id::text FROM orders WHERE status = 'confirmed'")
        .await;
    let stored: HashSet<String> = stored.into_iter().collect();
    assert_eq!(stored.len(), sold.len() + 1);
    assert!(sold.iter().all(|id| stored.contains(id)));

    // The dead replica comes back on its port and is used again.
    let addr = app.kill_vacancy().await;
    app.restart_vacancy(addr).await;
    let mut served = false;
    for _ in 0..100 {
        assert_eq!(app.purchase(json!(1)).await.body["success"], true);
        let metrics = fetch(&app, &format!("http://{addr}/metrics")).await;
        if metrics.contains("ticketd_reservations_total{outcome=\"accepted\"}") {
            served = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the restarted replica never got a call");
}

#[actix_web::test]
async fn losing_the_database_mid_load_answers_503_and_recovers_by_itself() {
    if !postgres_available("losing_the_database_mid_load_answers_503_and_recovers_by_itself") {
        return;
    }
    let options = Options {
        initial_stock: 100_000,
        ..Options::default()
    };
    let (database, proxy, app) = monolith_behind_a_relay(options).await;

    let cut = AtomicBool::new(false);
    // Buyers keep buying until the database is back, so some of them always meet the outage
    // (with a fixed number of purchases, a fast run could finish before the cut).
    let restored = AtomicBool::new(false);
    let load = join_all((0..4).map(|_| async {
        let mut answers = Vec::new();
        for _ in 0..5_000 {
            if restored.load(Ordering::SeqCst) {
                break;
            }
            answers.push(app.purchase(json!(1)).await);
            if cut.load(Ordering::SeqCst) {
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
        }
        answers
    }));
    let outage = async {
        // Cut the database off once sales are under way, and check what clients see meanwhile.
        until_sales_start(&app, 100_000).await;
        proxy.cut();
        cut.store(true, Ordering::SeqCst);
        assert_refused_while_the_database_is_gone(&app).await;
        proxy.restore();
        cut.store(false, Ordering::SeqCst);
        restored.store(true, Ordering::SeqCst);
    };
    let (answers, ()) = tokio::join!(load, outage);
    let answers: Vec<_> = answers.into_iter().flatten().collect();

    // Back by itself: no restart.
    until_ready_again(&app).await;
    assert_eq!(app.purchase(json!(1)).await.body["success"], true);

    // Every answer was a sale or a clear 503, and every acknowledged sale is stored.
    let mut acknowledged = Vec::new();
    for answer in &answers {
        match answer.status {
            StatusCode::OK => {
                assert_eq!(answer.body["success"], true, "{answer:?}");
                acknowledged.push(answer.body["order_id"].as_str().unwrap().to_owned());
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(!answer.code().is_empty(), "{answer:?}");
            }
            status => panic!("unexpected {status}: {answer:?}"),
        }
    }
    assert!(
        acknowledged.len() < answers.len(),
        "the outage refused nothing"
    );
    let stored: HashSet<String> = database
        .query("SELECT id::text FROM orders WHERE status = 'confirmed'")
        .await
        .into_iter()
        .collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged order {id} was lost");
    }
    let (available, held, sold) = app.counts("default").await;
    assert_eq!(held, 0);
    assert_eq!(sold, stored.len() as u64);
    assert_eq!(available, 100_000 - sold);
}

#[actix_web::test]
async fn a_database_that_stops_answering_gives_503_within_the_time_limit() {
    if !postgres_available("a_database_that_stops_answering_gives_503_within_the_time_limit") {
        return;
    }
    let options = Options {
        database_timeout_ms: 300,
        ..Options::default()
    };
    let (database, proxy, app) = monolith_behind_a_relay(options).await;
    assert_eq!(app.purchase(json!(1)).await.body["success"], true);

    // No answer at all, rather than a refused connection: only the time limit can tell. (A
    // purchase that waited for the database would hang past the test client's own time limit.)
    proxy.stall();
    for _ in 0..3 {
        assert_refused_while_the_database_is_gone(&app).await;
    }

    proxy.restore();
    until_ready_again(&app).await;
    assert_eq!(app.purchase(json!(1)).await.body["success"], true);
    let sold = app.counts("default").await.2;
    let stored = database
        .query("SELECT COUNT(*) FROM orders WHERE status = 'confirmed'")
        .await;
    assert_eq!(stored, [sold.to_string()]);
}

#[actix_web::test]
async fn replicas_starting_together_migrate_once() {
    if !postgres_available("replicas_starting_together_migrate_once") {
        return;
    }
    let database = TestDatabase::create().await;
    let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
    let url = database.url.clone();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, clock) = (url.clone(), Arc::clone(&clock));
            std::thread::spawn(move || {
                let ledger = PostgresLedger::open(&PostgresConfig {
                    url: Secret::new(url),
                    connections_max: 2,
                    timeout: Duration::from_secs(10),
                })?;
                Inventory::open_shared_with_clock(
                    Box::new(ledger),
                    InventoryConfig::default(),
                    clock,
                )
            })
        })
        .collect();
    let replicas: Vec<Inventory> = starts
        .into_iter()
        .map(|start| start.join().unwrap().unwrap())
        .collect();
    let stock = replicas[3]
        .event(&EventId::default_event())
        .await
        .unwrap()
        .stock();
    assert_eq!(stock.capacity, 1000);
    let versions = database
        .query("SELECT version FROM ticketd_migrations ORDER BY version")
        .await;
    assert_eq!(versions, ["1", "2", "3", "4", "5", "6"]);
    drop(replicas);

    // A database a newer ticketd has migrated is refused, not half-understood.
    database
        .query("INSERT INTO ticketd_migrations (version, description) VALUES (99, 'future')")
        .await;
    let url = database.url.clone();
    let refused = std::thread::spawn(move || {
        let ledger = PostgresLedger::open(&PostgresConfig {
            url: Secret::new(url),
            connections_max: 2,
            timeout: Duration::from_secs(10),
        })?;
        Inventory::open_shared_with_clock(Box::new(ledger), InventoryConfig::default(), clock)
            .map(drop)
    })
    .join()
    .unwrap()
    .unwrap_err();
    assert!(refused.to_string().contains("newer"), "{refused}");
}

/// A monolith on a PostgreSQL schema of its own, reached through a relay the test can cut.
async fn monolith_behind_a_relay(options: Options) -> (TestDatabase, TcpProxy, TestApp) {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.upstream());
    let options = Options {
        store: StoreKind::Postgres,
        database_url: Some(database.url_via(proxy.addr)),
        ..options
    };
    let app = TestApp::spawn(Deployment::Monolith, Launch::InProcess, options).await;
    (database, proxy, app)
}

/// Waits (a bounded while) for `/ready` to answer 200 again, with no restart.
/// What a client sees while the database is out of reach: a purchase refused with a clear 503,
/// and `/ready` false.
async fn assert_refused_while_the_database_is_gone(app: &TestApp) {
    let refused = app.purchase(json!(1)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{refused:?}"
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
}

async fn until_ready_again(app: &TestApp) {
    for _ in 0..100 {
        if app.get("/ready").await.status == StatusCode::OK {
            return;
        }
        actix_web::rt::time::sleep(SETTLE_TIMEOUT / 100).await;
    }
    panic!("ticketd did not recover from the outage");
}

/// Waits (a bounded while) until something of `stock` has been sold.
async fn until_sales_start(app: &TestApp, stock: u64) {
    for _ in 0..200 {
        if app.available().await != stock {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn fetch(app: &TestApp, url: &str) -> String {
    let mut response = app.client().get(url).send().await.unwrap();
    let body = response.body().limit(1 << 22).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A TCP relay to the database that can be cut off (every connection closed, new ones refused)
/// and restored: a network outage between ticketd and its database. Stops when dropped.
struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    open: AtomicBool,
    /// Connections stay open but nothing gets through: a database that stopped answering.
    stalled: Arc<AtomicBool>,
    stop: AtomicBool,
    /// Both ends of every relayed connection, to close them on a cut.
    streams: Mutex<Vec<TcpStream>>,
}

impl TcpProxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            open: AtomicBool::new(true),
            stalled: Arc::new(AtomicBool::new(false)),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if !shared.open.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                if shared.stalled.load(Ordering::SeqCst) {
                    // Accepted, and then never answered.
                    shared.streams.lock().unwrap().push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut streams = shared.streams.lock().unwrap();
                streams.push(client.try_clone().unwrap());
                streams.push(server.try_clone().unwrap());
                drop(streams);
                let stalled = &shared.stalled;
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(stalled),
                );
                pipe(server, client, Arc::clone(stalled));
            }
        });
        Self { addr, state }
    }

    fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for stream in self.state.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Stops passing anything on, in either direction, without closing a connection.
    fn stall(&self) {
        self.state.stalled.store(true, Ordering::SeqCst);
    }

    /// Back to normal. Connections that lost bytes while stalled are closed.
    fn restore(&self) {
        if self.state.stalled.swap(false, Ordering::SeqCst) {
            for stream in self.state.streams.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        self.state.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes; while `stalled`, what
/// arrives is dropped.
fn pipe(mut from: TcpStream, mut to: TcpStream, stalled: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) if stalled.load(Ordering::SeqCst) => {}
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl TestDatabase {
    /// The database server's address, from the test database's URL.
    pub fn upstream(&self) -> SocketAddr {
        let authority = self.authority();
        let host_port = authority.rsplit('@').next().unwrap();
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:5432")
        };
        host_port.to_socket_addrs().unwrap().next().unwrap()
    }

    /// This schema's URL, reached through `addr` instead of the server itself.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let authority = self.authority();
        let via = match authority.rsplit_once('@') {
            Some((user, _)) => format!("{user}@{addr}"),
            None => addr.to_string(),
        };
        self.url.replacen(&authority, &via, 1)
    }

    fn authority(&self) -> String {
        let rest = self.url.split_once("://").unwrap().1;
        rest.split(['/', '?']).next().unwrap().to_owned()
    }
}

/// Two vacancy services with stores of their own would each sell the full stock: the ticket
/// service must refuse to spread calls over them. Needs no database.
#[actix_web::test]
async fn ticket_refuses_vacancy_replicas_that_do_not_share_a_store() {
    let options = Options::default();
    let stores = [
        tempfile::TempDir::new().unwrap(),
        tempfile::TempDir::new().unwrap(),
    ];
    let vacancies = stores.each_ref().map(|store| {
        let settings = settings(Mode::Vacancy, 0, &options, None, store.path());
        start_server(Launch::InProcess, settings, Mode::Vacancy)
    });
    let urls = format!("{},{}", vacancies[0].url(), vacancies[1].url());
    let app = TestApp::ticket_only(Launch::InProcess, urls, options).await;

    let refused = app.purchase(json!(1)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{refused:?}"
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("keeps stock of its own"), "{message}");
    assert_eq!(
        app.get("/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    for vacancy in &vacancies {
        let mut answer = app
            .client()
            .get(format!("{}/api/v1/available", vacancy.url()))
            .insert_header(("x-service-token", SERVICE_TOKEN))
            .send()
            .await
            .unwrap();
        let stock: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(stock["qty"], 1000, "{} sold", vacancy.url());
    }
}

/// The same for two vacancy services on different databases.
#[actix_web::test]
async fn ticket_refuses_vacancy_replicas_on_different_databases() {
    if !postgres_available("ticket_refuses_vacancy_replicas_on_different_databases") {
        return;
    }
    let databases = [TestDatabase::create().await, TestDatabase::create().await];
    let data = tempfile::TempDir::new().unwrap();
    let vacancies = databases.each_ref().map(|database| {
        let options = Options {
            store: StoreKind::Postgres,
            database_url: Some(database.url.clone()),
            ..Options::default()
        };
        let settings = settings(Mode::Vacancy, 0, &options, None, data.path());
        start_server(Launch::InProcess, settings, Mode::Vacancy)
    });
    let urls = format!("{},{}", vacancies[0].url(), vacancies[1].url());
    let app = TestApp::ticket_only(Launch::InProcess, urls, Options::default()).await;

    // The first replica asked sets the store; the other is refused, and calls go to the first.
    let mut refusals = 0;
    for _ in 0..4 {
        let answer = app.purchase(json!(1)).await;
        assert_eq!(answer.body["success"], true, "{answer:?}");
    }
    for vacancy in &vacancies {
        let about = fetch(&app, &vacancy.url()).await;
        assert!(about.contains("store_id"), "{about}");
    }
    for database in &databases {
        let sold = database
            .query("SELECT COUNT(*) FROM orders WHERE status = 'confirmed'")
            .await;
        if sold == ["0"] {
            refusals += 1;
        } else {
            assert_eq!(sold, ["4"], "every sale went to one store");
        }
    }
    assert_eq!(refusals, 1, "one of the two stores was never used");
}
