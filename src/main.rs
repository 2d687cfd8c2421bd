use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use ticketd::cli::{Cli, ProbeArgs};
use ticketd::config::{Mode, Settings};
use ticketd::startup::Application;
use ticketd::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, config_file, flags) = match cli.command.into_server_or_probe() {
        Ok(server) => server,
        Err(probe) => return run_probe(probe),
    };
    let settings = match Settings::load(mode, config_file.as_deref(), flags) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    if let Err(error) = telemetry::init(settings.log_format, &settings.log_level) {
        return fail(&error);
    }
    match actix_web::rt::System::new().block_on(serve(mode, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn serve(mode: Mode, settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(mode, &settings)?;
    let addr = app.local_addr();
    tracing::info!(%mode, %addr, "listening on http://{addr}");

    let handle = app.handle();
    actix_web::rt::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down: finishing requests in flight");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM and names the one that came.
async fn shutdown_signal() -> &'static str {
    use actix_web::rt::signal::{ctrl_c, unix};
    let mut terminate = match unix::signal(unix::SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
            let _ = ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
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

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ticketd: error: {error:#}");
    ExitCode::FAILURE
}
