//! `/openapi.json` is held to the truth by a fuzzer. Schemathesis reads the document, generates
//! requests from it, valid and invalid, and checks every answer against it: no 5xx, every status
//! and body documented and matching its schema, valid requests accepted and invalid ones refused,
//! the admin token really required, 405 with `Allow` for undocumented methods. Any failure fails
//! the test. `fuzz_hooks.py` holds the one adjustment made to what it generates, and why.
//!
//! Schemathesis is a Python tool; `.ci/run` installs it. Without it the tests are skipped, loudly,
//! except in CI (`CI` is set), where they fail.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{ADMIN_TOKEN, Deployment, Launch, Options, TestApp};

/// The version `.ci/run` installs; the flags below are those of its `st run`.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase: ~2,000 requests per deployment, well under a minute here.
const EXAMPLES_MAX: u32 = 100;
/// The whole run, past which it is stopped and the test fails.
const RUN_TIME_MAX: Duration = Duration::from_secs(300);
/// Fixed, so a failure can be replayed; set `TICKETD_FUZZ_SEED` to explore other cases.
const SEED_DEFAULT: &str = "20261130";

#[actix_web::test]
async fn monolith_matches_its_description() {
    fuzz(
        Deployment::Monolith,
        "fuzz::monolith_matches_its_description",
    )
    .await;
}

/// The public API of the split deployment: ticket in front of vacancy.
#[actix_web::test]
async fn split_matches_its_description() {
    fuzz(Deployment::Split, "fuzz::split_matches_its_description").await;
}

async fn fuzz(deployment: Deployment, test: &str) {
    if !schemathesis_available(test) {
        return;
    }
    let app = TestApp::spawn(deployment, Launch::InProcess, Options::default()).await;
    let seed = std::env::var("TICKETD_FUZZ_SEED").unwrap_or_else(|_| SEED_DEFAULT.to_owned());
    let workdir = tempfile::TempDir::new().expect("a temporary directory");
    let mut command = Command::new("schemathesis");
    command
        .current_dir(workdir.path())
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fuzz_hooks.py"),
        )
        .args(["run", &format!("{}/openapi.json", app.base)])
        .args(["--checks", "all"])
        .args(["--max-examples", &EXAMPLES_MAX.to_string()])
        .args(["--seed", &seed])
        // One worker: the tool's own threads have tripped over each other here (a Python error).
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        // The admin token for every request, so admin operations are exercised too; the
        // `ignored_auth` check still sends them without it and expects 401.
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--no-color", "--output-truncate", "false"]);

    // The servers run in this process: wait for the fuzzer on a thread of its own, so that nothing
    // on this test's runtime is held up meanwhile.
    let run = actix_web::rt::task::spawn_blocking(move || run_bounded(command, RUN_TIME_MAX));
    let (success, output) = run.await.expect("the fuzzer's waiter does not panic");
    let summary: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("generated") || line.contains("Seed:"))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "{test}: schemathesis {deployment:?}: {}",
        summary.join(" | ")
    );
    assert!(
        success,
        "{test}: schemathesis found failures (replay with TICKETD_FUZZ_SEED={seed}):\n{output}"
    );
}

/// Runs `command` to its end and returns whether it succeeded and what it printed; kills it and
/// fails if it is still running after `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> (bool, String) {
    let output_file = tempfile::NamedTempFile::new().expect("a temporary file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(output_file.reopen().expect("the output file"))
        .stderr(output_file.reopen().expect("the output file"))
        .spawn()
        .expect("schemathesis starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("schemathesis can be waited on") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(output_file.path()).unwrap_or_default();
            panic!("schemathesis still running after {limit:?}; stopped it:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(output_file.path()).unwrap_or_default();
    (status.success(), output)
}

/// Whether the pinned schemathesis is installed. Skipped loudly without it; in CI it must be there.
fn schemathesis_available(test: &str) -> bool {
    let version = Command::new("schemathesis")
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    let problem = match &version {
        Some(version) if version.ends_with(SCHEMATHESIS_VERSION) => return true,
        Some(version) => format!("found '{version}', needs {SCHEMATHESIS_VERSION}"),
        None => "schemathesis is not installed".to_owned(),
    };
    let install = format!("python3 -m pip install 'schemathesis=={SCHEMATHESIS_VERSION}'");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {problem}, and CI must run the fuzz tests: {install}"
    );
    // Straight to stderr, past the test harness's capture, so a skip is never silent.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {problem}; to run it: {install}"
    );
    false
}
