//! The `metastudio-operator` binary: parse, wire, exit codes.

use clap::Parser;
use metastudio_operator::cli::{Cli, Command, codes, simulator};
use metastudio_operator::telemetry;
use std::io::Write;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(&cli.log_level, cli.log_format);
    metastudio_operator::tls::install_crypto_provider();

    let result: Result<String, Box<dyn std::error::Error>> = match cli.command {
        Command::Crd => Ok(metastudio_operator::crd::crd_yaml()),
        Command::Codes(command) => codes::run_codes(command).await.map_err(Into::into),
        Command::OnceCode(args) => codes::run_once_code(args).await.map_err(Into::into),
        Command::Simulator(args) => match simulator::start(args).await {
            Ok((sim, banner)) => {
                print!("{banner}");
                let _ = std::io::stdout().flush();
                wait_for_shutdown().await;
                drop(sim);
                Ok(String::new())
            }
            Err(err) => Err(err.into()),
        },
    };
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
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
