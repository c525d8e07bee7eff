//! What can go wrong when asking the broker for a once-code. No variant
//! holds the token or the code: they cannot reach stderr.

use std::path::PathBuf;

/// How to get a token where `--token-file` looks.
const TOKEN_FIX: &str = "mount a projected serviceAccountToken volume with the broker's audience \
     (the chart's broker.audience, default metastudio-operator) at \
     /var/run/secrets/metastudio-operator/ (see deploy/broker-client/deployment.yaml), \
     or point --token-file at such a token";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot read the ServiceAccount token (--token-file {}): {source}; {TOKEN_FIX}", .path.display())]
    TokenUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ServiceAccount token file (--token-file {}) {problem}; {TOKEN_FIX}", .path.display())]
    TokenInvalid {
        path: PathBuf,
        problem: &'static str,
    },
    #[error(
        "cannot read the broker's CA certificates (--broker-ca-file {}): {source}; mount the CA that signed \
         the broker's certificate there (with cert-manager, the ca.crt of the broker's TLS Secret)",
        .path.display()
    )]
    CaUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--broker-ca-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----){detail}",
        .path.display()
    )]
    CaInvalid { path: PathBuf, detail: String },
    #[error("cannot set up the HTTP client for the broker: {0}")]
    Client(String),
    #[error("cannot reach the broker at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(transparent)]
    Refused(Box<Refusal>),
    #[error(
        "the broker at {url} answered HTTP 200 but not the JSON {{\"onceCode\", \"expiresAt\", \"requestId\"}}: \
         {detail} (its content is not shown: it may hold the code)"
    )]
    BadGrant { url: String, detail: String },
}

/// A status other than 200, with the broker's reason and message (cleaned).
#[derive(Debug, thiserror::Error)]
#[error(
    "the broker at {url} refused a once-code of connection {connection}: HTTP {status} {reason}: {message}{}{hint}",
    retry_note(.retry_after.as_deref())
)]
pub struct Refusal {
    pub url: String,
    pub connection: String,
    pub status: u16,
    pub reason: String,
    pub message: String,
    /// `Retry-After`, as sent (seconds, for the broker).
    pub retry_after: Option<String>,
    /// What to check, for the statuses a workload can fix.
    pub hint: String,
}

fn retry_note(retry_after: Option<&str>) -> String {
    match retry_after {
        Some(seconds) if seconds.bytes().all(|b| b.is_ascii_digit()) => {
            format!(" (retry after {seconds} s)")
        }
        Some(other) => format!(" (retry after {other})"),
        None => String::new(),
    }
}

impl BrokerError {
    /// Whether the flags or the files they name are at fault (nothing was
    /// sent): the exit code for bad input.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::TokenUnreadable { .. }
                | Self::TokenInvalid { .. }
                | Self::CaUnreadable { .. }
                | Self::CaInvalid { .. }
        )
    }
}
