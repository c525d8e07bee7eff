//! `once-code --broker URL --connection NAME`: a one-off code from the
//! operator's once-code broker, for a workload that proves who it is with a
//! projected ServiceAccount token instead of holding AK/SK.
//!
//! The contract: `POST {URL}/v1/oncecodes/{connection}` with
//! `Authorization: Bearer <token>` and no body. 200 answers
//! `{"onceCode", "expiresAt", "requestId"}`; an error answers
//! `{"reason", "message"}` (429 with `Retry-After`). The token and the code
//! never reach an error message or a log line.

mod answer;
mod error;
mod http;
mod token;

pub use error::{BrokerError, Refusal};

use super::parsers;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where the example workload mounts its projected token
/// (deploy/broker-client/deployment.yaml), and where `--token-file` looks.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/metastudio-operator/token";

/// The flags of broker mode. `--broker` excludes the direct-API flags (also
/// when they come from their environment variables), so a command line
/// never mixes the two ways of getting a code.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Once-code broker (instead of AK/SK)")]
pub struct BrokerClientArgs {
    /// Get the code from the operator's once-code broker at this URL (e.g.
    /// https://metastudio-operator-broker.metastudio-system.svc), as this
    /// pod's ServiceAccount, instead of calling MetaStudio with AK/SK.
    #[arg(
        long,
        value_name = "URL",
        value_parser = parsers::broker_url,
        requires = "connection",
        conflicts_with_all = ["endpoint", "region", "project_id", "auth_token", "app_user_id", "insecure_http"]
    )]
    pub broker: Option<reqwest::Url>,
    /// With --broker: the MetaStudioConnection (of this pod's namespace) or
    /// ClusterMetaStudioConnection to get the code from.
    #[arg(long, value_name = "NAME", value_parser = parsers::connection_name, requires = "broker")]
    pub connection: Option<String>,
    /// With --broker: the ServiceAccount token to prove who this pod is: a
    /// projected serviceAccountToken with the broker's audience.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_TOKEN_FILE, requires = "broker")]
    pub token_file: PathBuf,
    /// With --broker: PEM certificates to verify the broker with (only
    /// these; without it, the system's roots).
    #[arg(long, value_name = "FILE", requires = "broker")]
    pub broker_ca_file: Option<PathBuf>,
    /// With --broker: print that a code was received (its expiry and
    /// request id), not the code. For a pod whose output is its log, such
    /// as deploy/broker-client/: a once-code is a secret.
    #[arg(long, requires = "broker", conflicts_with = "json")]
    pub redact: bool,
}

/// A broker request, ready to send: the flags checked.
#[derive(Debug)]
pub struct BrokerRequest<'a> {
    pub broker: &'a reqwest::Url,
    pub connection: &'a str,
    pub args: &'a BrokerClientArgs,
    pub timeout: Duration,
}

impl BrokerClientArgs {
    /// The request these flags ask for; `None` without `--broker` (clap
    /// makes `--connection` come with it).
    pub fn request(&self, timeout: Duration) -> Option<BrokerRequest<'_>> {
        Some(BrokerRequest {
            broker: self.broker.as_ref()?,
            connection: self.connection.as_deref()?,
            args: self,
            timeout,
        })
    }
}

/// Gets a once-code from the broker and returns what to print: the bare
/// code, with `json` the broker's whole answer, with `--redact` a receipt
/// without the code; one line each.
pub async fn once_code(request: BrokerRequest<'_>, json: bool) -> Result<String, BrokerError> {
    let token = token::read(&request.args.token_file)?;
    let client = http::client(request.args.broker_ca_file.as_deref(), request.timeout)?;
    let url = http::endpoint(request.broker, request.connection);
    let reply = http::post(&client, &url, &token).await?;
    let context = answer::Context {
        url: &url,
        connection: request.connection,
        token: &token,
    };
    let grant = answer::judge(reply, &context)?;
    let shown = if json {
        grant.json
    } else if request.args.redact {
        grant.receipt(request.connection)
    } else {
        grant.once_code.expose().to_owned()
    };
    Ok(format!("{shown}\n"))
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<super::BrokerClientArgs, ErrorKind> {
        let argv = ["metastudio-operator", "once-code"].iter().chain(args);
        match Cli::try_parse_from(argv).map_err(|e| e.kind())?.command {
            Command::OnceCode(args) => Ok(args.broker),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broker_mode_needs_a_connection_and_excludes_the_direct_flags() {
        let args = parse(&["--broker", "https://b.ns.svc", "--connection", "retail"]).unwrap();
        assert_eq!(args.token_file.to_str(), Some(super::DEFAULT_TOKEN_FILE));
        assert_eq!(args.connection.as_deref(), Some("retail"));
        assert!(args.request(std::time::Duration::from_secs(1)).is_some());
        assert!(
            parse(&[])
                .unwrap()
                .request(std::time::Duration::from_secs(1))
                .is_none()
        );

        let missing = ErrorKind::MissingRequiredArgument;
        assert_eq!(parse(&["--broker", "https://b"]).unwrap_err(), missing);
        assert_eq!(parse(&["--connection", "retail"]).unwrap_err(), missing);
        assert_eq!(parse(&["--token-file", "/t"]).unwrap_err(), missing);
        assert_eq!(parse(&["--broker-ca-file", "/ca"]).unwrap_err(), missing);
        assert_eq!(parse(&["--redact"]).unwrap_err(), missing);
        assert_eq!(
            parse(&[
                "--broker",
                "https://b",
                "--connection",
                "retail",
                "--redact",
                "--json"
            ])
            .unwrap_err(),
            ErrorKind::ArgumentConflict
        );
        for direct in [
            ["--region", "cn-north-4"],
            ["--endpoint", "https://metastudio.example"],
            ["--project-id", "p1"],
            ["--auth-token", "t"],
            ["--app-user-id", "u"],
            ["--insecure-http", "true"],
        ] {
            let mut args = vec!["--broker", "https://b", "--connection", "retail"];
            args.extend(direct);
            assert_eq!(
                parse(&args).unwrap_err(),
                ErrorKind::ArgumentConflict,
                "{direct:?}"
            );
        }
        for bad in [
            ["--broker", "https://b", "--connection", "../x"],
            ["--broker", "http://b.ns.svc", "--connection", "retail"],
        ] {
            assert_eq!(
                parse(&bad).unwrap_err(),
                ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }
}
