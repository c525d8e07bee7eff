//! Logs (text or JSON, to stderr); metrics and the health endpoints of `run`;
//! serving HTTP within limits (the metrics port and the broker).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A log level or filter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "{origin} `{value}` is not a log level or filter ({reason}): use e.g. info, debug or metastudio_operator=trace"
)]
pub struct LogFilterError {
    /// `RUST_LOG` or `--log-level`.
    pub origin: &'static str,
    pub value: String,
    pub reason: String,
}

/// Installs the global subscriber. `RUST_LOG` wins over `level` when set.
/// Text logs are coloured only when stderr is a terminal (not in a
/// container's log file).
pub fn init_logging(level: &str, format: LogFormat) -> Result<(), LogFilterError> {
    use std::io::IsTerminal;
    let (origin, value) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => ("RUST_LOG", value),
        _ => ("--log-level", level.to_owned()),
    };
    let filter = EnvFilter::try_new(&value).map_err(|err| LogFilterError {
        origin,
        reason: err.to_string(),
        value,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

pub mod connections;
pub mod http;
pub mod metrics;
