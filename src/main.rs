//! The `metastudio-operator` binary: parse, wire, exit codes.
//!
//! Exit codes: 0 success (for `reconcile`: every resource converged);
//! 1 a failure, or resources that did not converge; 2 bad input (flags or
//! manifests) before anything was changed.

use clap::Parser;
use metastudio_operator::cli::{Cli, Command, codes, reconcile, run, simulator};
use metastudio_operator::telemetry;
use std::io::Write;
use std::process::ExitCode;

const FAILED: u8 = 1;
const BAD_INPUT: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = telemetry::init_logging(&cli.log_level, cli.log_format) {
        eprintln!("error: {err}");
        return ExitCode::from(BAD_INPUT);
    }
    metastudio_operator::tls::install_crypto_provider();

    let result: Result<(String, u8), (Box<dyn std::error::Error>, u8)> = match cli.command {
        Command::Crd => Ok((metastudio_operator::crd::crd_yaml(), 0)),
        Command::Codes(command) => codes::run_codes(command)
            .await
            .map(|out| (out, 0))
            .map_err(command_failure),
        Command::OnceCode(args) => codes::run_once_code(args)
            .await
            .map(|out| (out, 0))
            .map_err(command_failure),
        Command::Run(args) => run_operator(*args)
            .await
            .map(|()| (String::new(), 0))
            .map_err(|e| (e, FAILED)),
        Command::Reconcile(args) => match reconcile::run(args).await {
            Ok(out) => {
                if let Some(err) = &out.not_saved {
                    eprintln!("error: {err}; the changes reported were made");
                }
                Ok((out.report, if out.converged { 0 } else { FAILED }))
            }
            Err(
                err @ (reconcile::ReconcileCommandError::Manifests(_)
                | reconcile::ReconcileCommandError::Connection(_)),
            ) => Err((err.into(), BAD_INPUT)),
            Err(err) => Err((err.into(), FAILED)),
        },
        Command::Simulator(args) => match simulator::start(args).await {
            Ok((sim, banner)) => {
                print!("{banner}");
                let _ = std::io::stdout().flush();
                wait_for_shutdown().await;
                drop(sim);
                Ok((String::new(), 0))
            }
            Err(err) => Err((err.into(), BAD_INPUT)),
        },
    };
    match result {
        Ok((output, code)) => {
            print!("{output}");
            ExitCode::from(code)
        }
        Err((err, code)) => {
            eprintln!("error: {err}");
            ExitCode::from(code)
        }
    }
}

/// A direct command's error and exit code: settings that cannot work are
/// bad input (nothing was sent); a failed call is a failure.
fn command_failure(err: codes::CommandError) -> (Box<dyn std::error::Error>, u8) {
    let code = match err {
        codes::CommandError::Connection(_) => BAD_INPUT,
        _ => FAILED,
    };
    (err.into(), code)
}

async fn run_operator(args: run::RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default()
        .await
        .map_err(run::RunError::from)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_shutdown().await;
        tracing::info!("shutdown requested: finishing in-flight reconciles");
        let _ = stop.send(true);
    });
    run::run(args, client, shutdown, |_| {}).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn wait_for_shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
