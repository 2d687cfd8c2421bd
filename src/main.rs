use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use ticketd::cli::{Cli, CopyArgs, ProbeArgs, Run};
use ticketd::config::{Mode, Settings};
use ticketd::startup::{self, Application};
use ticketd::telemetry;

/// The system allocator (glibc's) took about an eighth of the durable monolith's CPU under load:
/// an HTTP worker allocates a request's order and answer, the writer thread frees much of it, and
/// glibc pays for that in arena locks and consolidation. mimalloc frees across threads without a
/// shared lock. See docs/PERFORMANCE.md, "Where the time goes".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, config_file, flags) = match cli.command.into_run() {
        Run::Server(mode, config_file, flags) => (mode, config_file, flags),
        Run::Probe(probe) => return run_probe(probe),
        Run::CopyToPostgres(config_file, copy) => return run_copy(config_file.as_deref(), copy),
    };
    let settings = match Settings::load(mode, config_file.as_deref(), flags) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    let otlp = settings.otlp(mode);
    let telemetry = match telemetry::init(settings.log_format, &settings.log_level, otlp.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(error) => return fail(&error),
    };
    let served = actix_web::rt::System::new().block_on(serve(mode, settings));
    // Outside the runtime: sends the spans still queued, waiting a few seconds at most.
    telemetry.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn serve(mode: Mode, settings: Settings) -> anyhow::Result<()> {
    // Listen for signals before anything can send one, so none is missed at start-up.
    let shutdown = shutdown_signal()?;
    let app = Application::build(mode, &settings)?;
    let addr = app.local_addr();
    tracing::info!(%mode, %addr, "listening on http://{addr}");

    let handle = app.handle();
    actix_web::rt::spawn(async move {
        let signal = shutdown.await;
        tracing::info!(signal, "shutting down: finishing requests in flight");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Registers for SIGINT and SIGTERM now; the future resolves with the name of the first to come.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use actix_web::rt::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

/// `ticketd probe URL`: exit 0 when URL answers 2xx within the timeout.
fn run_probe(args: ProbeArgs) -> ExitCode {
    let timeout = Duration::from_millis(args.timeout_ms);
    let outcome = actix_web::rt::System::new().block_on(async {
        let client = awc::Client::builder().timeout(timeout).finish();
        client
            .get(args.url.as_str())
            .send()
            .await
            .map(|r| r.status())
    });
    match outcome {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("ticketd probe: {} answered {status}", args.url);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("ticketd probe: {}: {error}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// `ticketd copy-to-postgres`: the embedded store of the `vacancy` settings into their database.
fn run_copy(config_file: Option<&std::path::Path>, flags: CopyArgs) -> ExitCode {
    let copied = Settings::load(Mode::Vacancy, config_file, flags)
        .map_err(anyhow::Error::from)
        .and_then(|settings| {
            let copied = startup::copy_to_postgres(&settings)?;
            Ok((settings.data_dir, copied))
        });
    match copied {
        Ok((data_dir, copied)) => {
            println!(
                "copied {} into the database: events {}, orders {}, idempotency keys {}, \
                 changes {} (numbered up to {}); run ticketd with --store postgres from now on",
                data_dir.display(),
                copied.events,
                copied.orders,
                copied.keys,
                copied.changes,
                copied.last_change_seq
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ticketd: error: {error:#}");
    ExitCode::FAILURE
}
