//! The flags of the once-code broker in `run` (off unless --broker-addr).

use super::parsers;
use crate::broker::launch::{BrokerConfig, BrokerTransport};
use crate::metastudio::rate_limit::RateLimit;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Serve the once-code broker on this address (e.g. 0.0.0.0:8443):
    /// workloads POST /v1/oncecodes/{connection} with their ServiceAccount
    /// token. Default: no broker.
    #[arg(long, env = "BROKER_ADDR")]
    pub broker_addr: Option<SocketAddr>,
    /// The broker's TLS certificate (PEM, the chain); read again when it changes.
    #[arg(long, env = "BROKER_TLS_CERT", requires = "broker_tls_key")]
    pub broker_tls_cert: Option<PathBuf>,
    /// The broker's TLS private key (PEM); read again when it changes.
    #[arg(long, env = "BROKER_TLS_KEY", requires = "broker_tls_cert")]
    pub broker_tls_key: Option<PathBuf>,
    /// Serve the broker over plain HTTP instead, on a loopback address
    /// only (tests, a sidecar): tokens and codes would otherwise cross the
    /// network unencrypted.
    #[arg(long, env = "BROKER_INSECURE_HTTP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub broker_insecure_http: bool,
    /// The audience callers' tokens must be issued for (a projected
    /// ServiceAccount token's `audience`); tokens for others are refused.
    #[arg(long, env = "BROKER_AUDIENCE", default_value = "metastudio-operator")]
    pub broker_audience: String,
    /// Once-codes per second one ServiceAccount may get.
    #[arg(long, env = "BROKER_CALLER_RATE", default_value_t = 1.0, value_parser = parsers::rate)]
    pub broker_caller_rate: f64,
    /// Once-codes one ServiceAccount may get at once before its rate applies.
    #[arg(long, env = "BROKER_CALLER_BURST", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub broker_caller_burst: u32,
    /// CreateOnceCode calls per second per set of credentials (endpoint,
    /// project and the credentials themselves), for every caller of them
    /// together: at most the API's quota (20/s in cn-north-4).
    #[arg(long, env = "BROKER_QUOTA", default_value_t = 20.0, value_parser = parsers::rate)]
    pub broker_quota: f64,
    /// TokenReviews per second the broker may ask for tokens it has not
    /// authenticated before, for every caller together: past it such a
    /// request gets 429 without a review, so junk tokens cost the API
    /// server at most this. Tokens authenticated before never wait for it.
    #[arg(long, env = "BROKER_REVIEW_RATE", default_value_t = 20.0, value_parser = parsers::rate)]
    pub broker_review_rate: f64,
    /// TokenReviews of new tokens the broker may ask at once before
    /// --broker-review-rate applies (e.g. when many workloads start).
    #[arg(long, env = "BROKER_REVIEW_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub broker_review_burst: u32,
}

/// Why the broker flags do not make a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerArgsError {
    #[error(
        "--broker-addr {0} needs --broker-tls-cert and --broker-tls-key (or --broker-insecure-http, on a loopback address only)"
    )]
    NoTransport(SocketAddr),
    #[error(
        "--broker-insecure-http serves tokens and codes unencrypted, so only on a loopback address, not {0}: use --broker-tls-cert and --broker-tls-key"
    )]
    InsecureNotLoopback(SocketAddr),
    #[error("--broker-insecure-http and --broker-tls-cert exclude each other: choose one")]
    Both,
    #[error("--broker-audience must not be empty")]
    NoAudience,
    #[error(
        "--broker-review-rate 0 would let every junk token cost the API server a TokenReview: write a rate above 0 (default 20)"
    )]
    NoReviewBudget,
}

impl BrokerArgs {
    /// The broker to start, if any.
    pub fn config(&self) -> Result<Option<BrokerConfig>, BrokerArgsError> {
        let Some(addr) = self.broker_addr else {
            return Ok(None);
        };
        let transport = match (
            &self.broker_tls_cert,
            &self.broker_tls_key,
            self.broker_insecure_http,
        ) {
            (Some(_), _, true) => return Err(BrokerArgsError::Both),
            (Some(cert), Some(key), false) => BrokerTransport::Tls {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, _, true) if addr.ip().is_loopback() => BrokerTransport::InsecureHttp,
            (None, _, true) => return Err(BrokerArgsError::InsecureNotLoopback(addr)),
            _ => return Err(BrokerArgsError::NoTransport(addr)),
        };
        if self.broker_audience.trim().is_empty() {
            return Err(BrokerArgsError::NoAudience);
        }
        if self.broker_review_rate == 0.0 {
            return Err(BrokerArgsError::NoReviewBudget);
        }
        Ok(Some(BrokerConfig {
            addr,
            transport,
            audience: self.broker_audience.trim().to_owned(),
            caller: RateLimit {
                per_second: self.broker_caller_rate,
                burst: self.broker_caller_burst,
            },
            quota: RateLimit {
                per_second: self.broker_quota,
                burst: (self.broker_quota.ceil() as u32).max(1),
            },
            review: RateLimit {
                per_second: self.broker_review_rate,
                burst: self.broker_review_burst,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn config(args: &[&str]) -> Result<Option<BrokerConfig>, BrokerArgsError> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .broker
            .config()
    }

    #[test]
    fn the_broker_is_off_by_default_and_needs_tls_or_loopback() {
        assert!(config(&[]).unwrap().is_none());
        let tls = config(&[
            "--broker-addr",
            "0.0.0.0:8443",
            "--broker-tls-cert",
            "c",
            "--broker-tls-key",
            "k",
        ]);
        assert!(matches!(
            tls.unwrap().unwrap().transport,
            BrokerTransport::Tls { .. }
        ));
        let plain = config(&["--broker-addr", "127.0.0.1:0", "--broker-insecure-http"]);
        assert!(matches!(
            plain.unwrap().unwrap().transport,
            BrokerTransport::InsecureHttp
        ));
        let err = config(&["--broker-addr", "0.0.0.0:8443", "--broker-insecure-http"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("only on a loopback address, not 0.0.0.0:8443"),
            "{err}"
        );
        let err = config(&["--broker-addr", "0.0.0.0:8443"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("--broker-tls-cert and --broker-tls-key"),
            "{err}"
        );
        assert!(
            Cli::try_parse_from(["x", "--broker-tls-cert", "c"]).is_err(),
            "a cert needs its key"
        );
    }

    #[test]
    fn the_review_budget_defaults_to_20_per_second_and_cannot_be_switched_off() {
        let plain = ["--broker-addr", "127.0.0.1:0", "--broker-insecure-http"];
        let review = config(&plain).unwrap().unwrap().review;
        assert_eq!(
            review,
            RateLimit {
                per_second: 20.0,
                burst: 20
            }
        );
        let mut args = plain.to_vec();
        args.extend(["--broker-review-rate", "5", "--broker-review-burst", "8"]);
        let review = config(&args).unwrap().unwrap().review;
        assert_eq!((review.per_second, review.burst), (5.0, 8));
        let mut args = plain.to_vec();
        args.extend(["--broker-review-rate", "0"]);
        let err = config(&args).unwrap_err().to_string();
        assert!(err.contains("--broker-review-rate 0"), "{err}");
    }
}
