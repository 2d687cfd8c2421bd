//! What only the real executable shows: exit codes, signals, start-up errors, the log.

use std::process::Command;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Deployment, Launch, Options, TestApp, exit_within, settings, start_binary};
use ticketd::config::Mode;

const BINARY: &str = env!("CARGO_BIN_EXE_ticketd");

#[actix_web::test]
async fn sigterm_stops_the_server_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(Mode::Monolith, 0, &Options::default(), None, data.path());
    let mut server = start_binary(Mode::Monolith, &settings, &[]);
    server.signal(libc::SIGTERM);
    for _ in 0..100 {
        if let Some(status) = server.try_wait() {
            assert!(status.success(), "exited with {status}");
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ticketd did not stop within 10 s of SIGTERM");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 8] = [
        (&["monolith"], &[("TICKETD_PORT", "abc")], "TICKETD_PORT"),
        // Bounds every store and the code can hold: PostgreSQL keeps a quantity in 32 signed
        // bits, the queue is allocated up front. (These would start if let through: port 0.)
        (
            &[
                "monolith",
                "--port",
                "0",
                "--store",
                "memory",
                "--max-per-order",
                "4294967295",
            ],
            &[],
            "max_per_order",
        ),
        (
            &["vacancy", "--port", "0", "--store", "memory"],
            &[("TICKETD_INVENTORY_QUEUE_SIZE_MAX", "1000000000000")],
            "inventory_queue_size_max",
        ),
        (
            &["ticket", "--port", "0"],
            &[("TICKETD_VACANCY_TIMEOUT_MS", "18446744073709551615")],
            "vacancy_timeout_ms",
        ),
        (
            &["ticket", "--port", "0"],
            &[("TICKETD_SERVICE_TOKEN", "a token with spaces in it")],
            "service_token",
        ),
        (&["vacancy"], &[("TICKETD_STORE", "floppy")], "store"),
        (&["ticket", "--vacancy-url", "ftp://x"], &[], "vacancy_url"),
        (
            &["monolith", "--config", "/nonexistent/ticketd.toml"],
            &[],
            "does not exist",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .args(["--host", "127.0.0.1"])
            .envs(env.iter().copied());
        let output = exit_within(command, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["monolith", "--help"],
        &["vacancy", "--help"],
        &["ticket", "--help"],
        &["probe", "--help"],
    ] {
        let output = Command::new(BINARY).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[actix_web::test]
async fn probe_reports_readiness() {
    let app = TestApp::spawn(Deployment::Monolith, Launch::Binary, Options::default()).await;
    let ready = Command::new(BINARY)
        .args(["probe", &format!("{}/ready", app.base)])
        .status()
        .unwrap();
    assert!(ready.success());
    let missing = Command::new(BINARY)
        .args(["probe", &format!("{}/missing", app.base)])
        .status()
        .unwrap();
    assert!(!missing.success());
}

/// One purchase can be followed through both services' JSON logs by its request id.
#[actix_web::test]
async fn a_request_id_follows_a_purchase_across_services() {
    let app = TestApp::spawn(Deployment::Split, Launch::Binary, Options::default()).await;
    let request = app
        .client()
        .post(format!("{}/api/v1/purchase", app.base))
        .insert_header(("x-request-id", "follow-me-7"))
        .insert_header(("content-type", "application/json"));
    let body = serde_json::to_vec(&json!({"qty": 2})).unwrap();
    let answer = app.send(request, Some((None, body))).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);

    let vacancy = app.vacancy().expect("split has vacancy");
    let logged = |lines: Vec<String>, path: &str| {
        lines.iter().any(|line| {
            let line: Value = serde_json::from_str(line).expect("every log line is JSON");
            line["request_id"] == "follow-me-7" && line["path"] == path && line["status"] == 200
        })
    };
    // The access line is written right after the answer; give the log reader a bounded moment.
    for _ in 0..50 {
        if logged(app.ticket().logs(), "/api/v1/purchase")
            && logged(vacancy.logs(), "/api/v1/events/default/reserve")
        {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "request id not found in both logs:\nticket: {:?}\nvacancy: {:?}",
        app.ticket().logs(),
        vacancy.logs()
    );
}

/// SIGTERM under a steady stream of purchases: every purchase the server took in is finished and
/// answered before it exits 0, and the store holds exactly the purchases that were answered.
#[actix_web::test]
async fn sigterm_finishes_purchases_in_flight() {
    let options = Options {
        initial_stock: 1_000_000,
        ..Options::default()
    };
    let mut app = TestApp::spawn(Deployment::Monolith, Launch::Binary, options).await;
    let answered = std::cell::Cell::new(0u64);
    let failures = std::cell::RefCell::new(Vec::new());
    let buyer = || async {
        for _ in 0..5_000 {
            let body = Some((Some("application/json"), b"{\"qty\":1}".to_vec()));
            match app
                .try_call("POST".parse().unwrap(), "/api/v1/purchase", body)
                .await
            {
                Ok(answer) if answer.status == StatusCode::OK && answer.body["success"] == true => {
                    answered.set(answered.get() + 1);
                }
                Ok(answer) => failures.borrow_mut().push(format!("{answer:?}")),
                Err(_) => return, // the server has closed its doors
            }
        }
    };
    let stop = async {
        for _ in 0..2_000 {
            if answered.get() >= 300 {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        app.store_owner().signal(libc::SIGTERM);
    };
    tokio::join!(
        futures_util::future::join_all((0..32).map(|_| buyer())),
        stop
    );
    assert!(
        failures.borrow().is_empty(),
        "purchases failed during shutdown: {:?}",
        failures.borrow()
    );
    assert!(answered.get() >= 300, "too few purchases to mean anything");

    let mut status = None;
    for _ in 0..100 {
        status = app.ticket_mut().try_wait();
        if status.is_some() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("ticketd stopped within 10 s of SIGTERM");
    assert!(status.success(), "exited with {status}");

    use ticketd::vacancy::ledger::Ledger;
    let mut ledger = ticketd::vacancy::sqlite::SqliteLedger::open(app.data_dir()).unwrap();
    let sold: u64 = ledger
        .load()
        .unwrap()
        .iter()
        .map(|event| event.stock().sold)
        .sum();
    assert_eq!(sold, answered.get(), "the store and the answers disagree");
}
