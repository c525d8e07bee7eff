//! Connection flags, shared by every command that calls MetaStudio, and
//! the engine's own flags, shared by `run` and `reconcile`.
//! AK/SK come only from the environment (`CLOUD_SDK_AK`, `CLOUD_SDK_SK`,
//! `CLOUD_SDK_SECURITY_TOKEN`): flags would show them in `ps`.

use super::parsers;
use crate::duration::HumanDuration;
use crate::metastudio::pacing::Pacing;
use crate::metastudio::settings::{ConnectionSettings, credentials_from_env};
use crate::metastudio::{ClientOptions, ConnectionError, Credentials};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// API endpoint; default https://metastudio.{region}.myhuaweicloud.com.
    #[arg(long, env = "METASTUDIO_ENDPOINT", value_parser = parsers::endpoint)]
    pub endpoint: Option<String>,
    /// Region, e.g. cn-north-4 or ap-southeast-1.
    #[arg(long, env = "METASTUDIO_REGION", value_parser = parsers::region)]
    pub region: Option<String>,
    /// Project id of the region.
    #[arg(long, env = "METASTUDIO_PROJECT_ID", value_parser = parsers::project_id)]
    pub project_id: Option<String>,
    /// Static IAM token (X-Auth-Token), instead of CLOUD_SDK_AK/SK (not both).
    #[arg(long, env = "METASTUDIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Third-party user id sent as X-App-UserId (ASCII only).
    #[arg(long, env = "METASTUDIO_APP_USER_ID", value_parser = parsers::app_user_id)]
    pub app_user_id: Option<String>,
    /// Allow a plain-http --endpoint on a host other than loopback (a
    /// private test endpoint) although a token (--auth-token,
    /// CLOUD_SDK_SECURITY_TOKEN) then travels unencrypted.
    #[arg(long, env = "METASTUDIO_INSECURE_HTTP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_http: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Timeouts, retries and the client-side pacing.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Per-request timeout.
    #[arg(long, env = "METASTUDIO_TIMEOUT", default_value = "30s", value_parser = parsers::positive_duration, allow_hyphen_values = true)]
    pub timeout: HumanDuration,
    /// Attempts per call, the first included (retries apply to 429, 5xx and network faults).
    #[arg(long, env = "METASTUDIO_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20), allow_negative_numbers = true)]
    pub max_attempts: u32,
    /// Reads (list, show, once-code) per second per tenant: 0 (no limit) or
    /// from 0.1 to 1000 [default: the region's documented quota: 20 in
    /// cn-north-4, 10 in cn-east-3 and elsewhere].
    #[arg(long, env = "METASTUDIO_READ_RATE", value_parser = parsers::budget_rate, allow_negative_numbers = true)]
    pub read_rate: Option<f64>,
    /// Writes (update, reset, create, delete) per second per tenant: 0 (no
    /// limit) or from 0.1 to 1000 [default: the region's documented quota: 5
    /// in cn-north-4, 3 in cn-east-3 and elsewhere].
    #[arg(long, env = "METASTUDIO_WRITE_RATE", value_parser = parsers::budget_rate, allow_negative_numbers = true)]
    pub write_rate: Option<f64>,
    /// The share of both rates the operator uses, leaving the rest of the
    /// tenant's quota to other clients (e.g. 0.8).
    #[arg(long, env = "METASTUDIO_RATE_SHARE", default_value_t = 1.0, value_parser = parsers::share, allow_negative_numbers = true)]
    pub rate_share: f64,
    /// Requests of a class that may go out at once before the rate spaces
    /// them.
    #[arg(long, env = "METASTUDIO_RATE_BURST", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::metastudio::pacing::MAX_BURST)))]
    pub rate_burst: u32,
    /// The longest one listing of a robot's codes may take, its waits for
    /// the read budget included; a slower one fails naming the robot (an
    /// endpoint that answers slowly page after page holds nothing longer).
    #[arg(long, env = "METASTUDIO_LISTING_DEADLINE", default_value = "5m", value_parser = parsers::positive_duration, allow_hyphen_values = true)]
    pub listing_deadline: HumanDuration,
    /// Listed codes the whole process holds at once (about 0.8 KiB each at
    /// most): a listing takes its share at its first page and waits,
    /// holding no reconcile slot, while the rest is taken; at least 100000
    /// (one listing's most).
    #[arg(long, env = "METASTUDIO_LISTING_BUDGET", default_value_t = crate::metastudio::listing_budget::DEFAULT_LISTING_BUDGET, value_parser = clap::value_parser!(u32).range(i64::from(crate::metastudio::listing::MAX_LISTED_CODES)..))]
    pub listing_budget: u32,
}

/// Settings of the reconcile engine, shared by `run` and `reconcile`.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// How long a reset in doubt (its answer lost, or its call window
    /// over) keeps its code from being reset again, as the server may still
    /// apply it late; another run's batch is first waited out for its call
    /// window [default: twice --timeout].
    #[arg(long, env = "RESET_GRACE", value_parser = parsers::duration)]
    pub reset_grace: Option<HumanDuration>,
}

impl EngineArgs {
    pub fn engine(
        &self,
        transport: std::sync::Arc<crate::metastudio::Transport>,
        defaults: crate::engine::OperatorDefaults,
    ) -> crate::engine::Engine {
        let engine = crate::engine::Engine::new(transport, defaults);
        match self.reset_grace {
            Some(grace) => engine.with_reset_grace(grace.0),
            None => engine,
        }
    }
}

impl ClientArgs {
    pub fn options(&self) -> ClientOptions {
        let defaults = ClientOptions::default();
        ClientOptions {
            timeout: self.timeout.0,
            retry: crate::metastudio::retry::RetryPolicy {
                max_attempts: self.max_attempts,
                ..defaults.retry
            },
            pacing: Pacing {
                reads_per_second: self.read_rate,
                writes_per_second: self.write_rate,
                share: Some(self.rate_share),
                burst: Some(self.rate_burst),
                cap: None,
            },
            listing_deadline: self.listing_deadline.0,
            listing_budget: self.listing_budget,
            ..defaults
        }
    }
}

impl ConnectionArgs {
    pub fn settings(&self) -> ConnectionSettings {
        ConnectionSettings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            project_id: self.project_id.clone(),
            app_user_id: self.app_user_id.clone(),
            insecure_http: self.insecure_http,
            pacing: Pacing::default(),
        }
    }

    /// Credentials from the environment or `--auth-token`, if any.
    pub fn credentials(&self) -> Result<Option<Credentials>, ConnectionError> {
        credentials_from_env(self.auth_token.clone())
    }
}
