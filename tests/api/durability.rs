//! The embedded store: state survives restarts and crashes; acknowledged sales are never lost.

use std::cell::RefCell;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Deployment, Launch, Options, TestApp, headline};
use ticketd::domain::{EventId, ReservationId};
use ticketd::vacancy::ledger::Ledger;
use ticketd::vacancy::sqlite::SqliteLedger;

pub async fn restart_keeps_stock_and_orders(deployment: Deployment, launch: Launch) {
    let options = Options {
        initial_stock: 50,
        ..Options::default()
    };
    let mut app = TestApp::spawn(deployment, launch, options).await;
    assert_eq!(app.purchase(json!(7)).await.body["remaining"], 43);

    let addr = app.kill_store_owner().await;
    app.restart_store_owner(addr).await;
    assert_eq!(app.available().await, 43);
    assert_eq!(app.purchase(json!(3)).await.body["remaining"], 40);
}

#[actix_web::test]
async fn initial_stock_applies_only_to_a_new_store() {
    let options = Options {
        initial_stock: 50,
        ..Options::default()
    };
    let mut app = TestApp::spawn(Deployment::Monolith, Launch::Binary, options).await;
    app.purchase(json!(5)).await;

    app.options_mut().initial_stock = 80;
    let addr = app.kill_store_owner().await;
    app.restart_store_owner(addr).await;
    let event = app.get("/api/v1/events/default").await;
    assert_eq!(
        headline(&event.body),
        json!({"id": "default", "name": "default", "capacity": 50, "available": 45, "held": 0, "sold": 5})
    );
    let warned = app.store_owner().logs().iter().any(|line| {
        line.contains("WARN") && line.contains("keeping its stock") && line.contains("80")
    });
    assert!(warned, "no warning about the ignored initial_stock");
}

/// Buyers hammer the store's owner; it is SIGKILLed mid-load, several times over. After every
/// crash, every purchase that was answered `success: true` must be in the store, and the counts
/// must add up. Sales in flight at the moment of the crash may or may not have landed.
async fn sigkill_mid_load_loses_no_acknowledged_sale(deployment: Deployment) {
    const BUYERS: usize = 24;
    const ROUNDS: usize = 4;
    const QTY_MAX: u64 = 3;
    let options = Options {
        initial_stock: 1_000_000,
        ..Options::default()
    };
    let mut app = TestApp::spawn(deployment, Launch::Binary, options).await;
    let acknowledged: RefCell<Vec<(ReservationId, u64)>> = RefCell::new(Vec::new());

    for round in 0..ROUNDS {
        let target = (round + 1) * 300;
        let buyer = |n: usize| {
            let app = &app;
            let acknowledged = &acknowledged;
            async move {
                for i in 0..5_000u64 {
                    let qty = (n as u64 + i) % QTY_MAX + 1;
                    let Ok(answer) = app
                        .try_call(
                            "POST".parse().unwrap(),
                            "/api/v1/purchase",
                            Some((
                                Some("application/json"),
                                format!("{{\"qty\":{qty}}}").into_bytes(),
                            )),
                        )
                        .await
                    else {
                        return; // the server is gone
                    };
                    if answer.status != StatusCode::OK {
                        return; // 503: vacancy is gone
                    }
                    assert_eq!(answer.body["success"], true, "{answer:?}");
                    let id = answer.body["order_id"].as_str().unwrap().parse().unwrap();
                    acknowledged.borrow_mut().push((id, qty));
                }
            }
        };
        let killer = async {
            for _ in 0..2_000 {
                if acknowledged.borrow().len() >= target {
                    break;
                }
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            app.store_owner().signal(libc::SIGKILL);
        };
        let buyers = futures_util::future::join_all((0..BUYERS).map(buyer));
        tokio::join!(buyers, killer);

        let addr = app.kill_store_owner().await; // reaps the killed process
        {
            let mut ledger =
                SqliteLedger::open(app.data_dir()).expect("the store opens after a crash");
            ledger
                .audit()
                .expect("sold matches the stored reservations");
            let acked = acknowledged.borrow();
            for (id, qty) in acked.iter() {
                let stored = ledger.find_order(*id).unwrap();
                let stored = stored.unwrap_or_else(|| panic!("acknowledged order {id} was lost"));
                assert_eq!(u64::from(stored.qty), *qty);
            }
            let events = ledger.load().unwrap();
            let stock = &events
                .iter()
                .find(|event| event.id == EventId::default_event())
                .expect("the default event exists")
                .stock();
            assert!(stock.is_consistent(), "{stock:?}");
            let acked_total: u64 = acked.iter().map(|(_, qty)| qty).sum();
            eprintln!(
                "round {round}: {} acknowledged ({acked_total} tickets), {} sold",
                acked.len(),
                stock.sold
            );
            // Each crash may land up to one unanswered purchase per buyer; they add up over rounds.
            let in_flight_max = (round as u64 + 1) * BUYERS as u64 * QTY_MAX;
            assert!(
                stock.sold >= acked_total,
                "round {round}: sold {} < acknowledged {acked_total}",
                stock.sold
            );
            assert!(
                stock.sold <= acked_total + in_flight_max,
                "round {round}: sold {} > acknowledged {acked_total} + in flight",
                stock.sold
            );
        }
        app.restart_store_owner(addr).await;
        let event = app.get("/api/v1/events/default").await;
        assert_eq!(event.body["capacity"], 1_000_000);
    }
    assert!(
        acknowledged.borrow().len() >= ROUNDS * 300 / 2,
        "too few sales to mean anything"
    );
}

#[actix_web::test]
async fn sigkill_mid_load_monolith() {
    sigkill_mid_load_loses_no_acknowledged_sale(Deployment::Monolith).await
}

#[actix_web::test]
async fn sigkill_mid_load_split() {
    sigkill_mid_load_loses_no_acknowledged_sale(Deployment::Split).await
}

/// Runs `ticketd monolith` on `data_dir`, which must refuse to start; returns what it said.
fn refused_start(data_dir: &std::path::Path) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"));
    command
        .args([
            "monolith",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
        ])
        .arg(data_dir);
    let output = crate::helpers::exit_within(command, Duration::from_secs(10));
    assert!(
        !output.status.success(),
        "ticketd started on {}",
        data_dir.display()
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    stderr
}

#[actix_web::test]
async fn a_locked_or_corrupt_store_refuses_to_start() {
    let app = TestApp::spawn(Deployment::Monolith, Launch::Binary, Options::default()).await;
    let locked = refused_start(app.data_dir());
    assert!(
        locked.contains("in use by another ticketd process"),
        "{locked}"
    );

    let corrupt = tempfile::tempdir().unwrap();
    let file = corrupt.path().join("ticketd.db");
    std::fs::write(&file, vec![0x42; 4096]).unwrap();
    let refused = refused_start(corrupt.path());
    assert!(refused.contains(&file.display().to_string()), "{refused}");
}

/// A held order with no deadline is not one ticketd writes (every hold has a ttl). A store
/// holding one, however it got there, is refused at start-up with a line naming the order,
/// instead of its tickets staying held forever.
#[actix_web::test]
async fn a_store_with_a_hold_that_never_lapses_refuses_to_start() {
    let mut app = TestApp::spawn(Deployment::Monolith, Launch::Binary, Options::default()).await;
    let hold = app
        .post("/api/v1/events/default/holds", json!({"qty": 2}))
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{hold:?}");
    let hold_id = hold.body["hold_id"].as_str().expect("a hold id").to_owned();
    app.kill_store_owner().await;

    let store = rusqlite::Connection::open(app.data_dir().join("ticketd.db")).unwrap();
    let changed = store
        .execute(
            "UPDATE orders SET expires_at_ms = NULL WHERE status = 'held'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(store);

    let refused = refused_start(app.data_dir());
    assert!(
        refused.contains(&hold_id) && refused.contains("no deadline"),
        "{refused}"
    );
}
