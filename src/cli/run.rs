//! `run`: the controller, for production: leader election, metrics and
//! health endpoints, graceful shutdown.

use super::broker_args::{BrokerArgs, BrokerArgsError};
use super::connection_args::{ConnectionArgs, EngineArgs};
use crate::broker::launch::{BrokerError, BrokerParts, launch};
use crate::broker::metrics::BrokerMetrics;
use crate::controller::connections::ConnectionWatches;
use crate::controller::leader::{LeaderError, LeaseSettings, run_while_leading};
use crate::controller::{self, Context, RunLimits, WatchScope};
use crate::duration::HumanDuration;
use crate::engine::OperatorDefaults;
use crate::metastudio::client::TransportError;
use crate::metastudio::{ConnectionError, Transport};
use crate::telemetry::http::{self, Health};
use crate::telemetry::metrics::OperatorMetrics;
use crate::tenancy::{DefaultCredentialsScope, InlineEndpoints};
use clap::Args;
use futures::FutureExt;
use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::events::Reporter;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Reconcile only while holding a Lease, so several replicas can run.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "metastudio-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long the lease holds without renewal; a standby takes over after it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = super::parsers::positive_duration, allow_hyphen_values = true)]
    pub lease_duration: HumanDuration,
    /// This replica's identity in the Lease; default the host name (the pod
    /// name in Kubernetes) plus a random suffix, unique per process.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Only watch these namespaces (comma-separated); default every namespace.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Only reconcile ActivationCodes matching this label selector (to shard
    /// resources across releases), e.g. shard=a.
    #[arg(long, env = "LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// Namespaces whose ActivationCodes may use the operator's own
    /// credentials (CLOUD_SDK_AK/SK, --auth-token), comma-separated; `*`
    /// for every namespace (single-tenant installs). Default: none, so each
    /// resource names its connection (spec.connectionRef) or its own
    /// credentials Secret.
    #[arg(long, env = "DEFAULT_CREDENTIALS_NAMESPACES", value_delimiter = ',')]
    pub default_credentials_namespaces: Vec<String>,
    /// ActivationCodes reconciled at once, across every watched namespace.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// On SIGTERM, how long in-flight reconciles may take to finish before
    /// they are abandoned (safely: reset intents are recorded first) and the
    /// lease is released. Keep it below the pod's
    /// terminationGracePeriodSeconds (the chart leaves 10 s).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s")]
    pub shutdown_timeout: HumanDuration,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API (set KUBECONFIG, or run in a pod): {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error(transparent)]
    BrokerArgs(#[from] BrokerArgsError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(
        "the controllers stopped although no shutdown was requested; the operator exits so that it is restarted"
    )]
    ControllersStopped,
}

/// The default Lease identity: the host name (in Kubernetes, the pod name)
/// and a random suffix, so that two processes never share one, even in
/// containers where every process is pid 1.
pub fn default_identity() -> String {
    use rand::Rng;
    let host = std::env::var("HOSTNAME")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "metastudio-operator".to_owned());
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(6)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect();
    format!("{host}-{suffix}")
}

/// Runs until `shutdown` turns true. `on_listening` gets the address the
/// metrics server bound (useful with port 0).
pub async fn run(
    args: RunArgs,
    client: Client,
    shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), RunError> {
    let metrics = Arc::new(OperatorMetrics::default());
    let defaults = operator_defaults(&args)?;
    let broker = args.broker.config()?;
    let transport = Transport::with_metrics(args.connection.client.options(), metrics.api.clone())?;
    let health = Arc::new(Health::default());
    let broker_metrics = BrokerMetrics::default();
    let addr = serve_health(args.metrics_addr, &metrics, &broker_metrics, &health).await?;
    on_listening(addr);
    if !controller::crd_check::wait_until_served(&client, &health, shutdown.clone()).await {
        info!("stopped before the CRDs were installed");
        return Ok(());
    }

    let identity = args
        .identity
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(default_identity);
    let scope = WatchScope::new(&args.watch_namespaces, args.label_selector.clone());
    if let Some(config) = broker {
        let parts = BrokerParts {
            client: client.clone(),
            namespaces: scope.namespaces.clone(),
            transport: transport.clone(),
            metrics: broker_metrics,
        };
        launch(config, parts, stopped(&shutdown)).await?;
    }
    let term = Term {
        engine: args.engine.clone(),
        transport,
        defaults,
        client: client.clone(),
        scope,
        reporter: Reporter {
            controller: "metastudio-operator".into(),
            instance: Some(identity.clone()),
        },
        limits: RunLimits {
            concurrency: args.concurrency,
            drain_timeout: args.shutdown_timeout.0,
        },
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
    };
    let outcome = if args.leader_election {
        lead(&args, client, identity, &term).await
    } else {
        metrics.leader.set(1);
        term.work().await;
        Ok(())
    };
    metrics.leader.set(0);
    conclude(outcome, &shutdown, &health)
}

/// The operator's own connection settings and credentials, and who may use
/// them. In the cluster a resource never chooses an endpoint of its own
/// beyond an official one: that is a connection resource's to choose.
fn operator_defaults(args: &RunArgs) -> Result<OperatorDefaults, RunError> {
    let defaults = OperatorDefaults {
        settings: args.connection.settings(),
        credentials: args.connection.credentials()?,
        credentials_scope: DefaultCredentialsScope::from_names(
            &args.default_credentials_namespaces,
        ),
        inline_endpoints: InlineEndpoints::OfficialOnly,
    };
    if defaults.credentials.is_some()
        && defaults.credentials_scope == DefaultCredentialsScope::Nobody
    {
        warn!(
            "the operator has credentials of its own, but --default-credentials-namespaces allows no namespace to use them"
        );
    }
    Ok(defaults)
}

/// Serves /metrics, /healthz and /readyz on `addr`; the address bound.
async fn serve_health(
    addr: SocketAddr,
    metrics: &OperatorMetrics,
    broker_metrics: &BrokerMetrics,
    health: &Arc<Health>,
) -> Result<SocketAddr, RunError> {
    let mut registry = metrics.registry();
    broker_metrics.register(&mut registry);
    let (bound, _server) = http::serve(addr, Arc::new(registry), health.clone())
        .await
        .map_err(|source| RunError::Metrics { addr, source })?;
    info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

/// Resolves once `shutdown` turns true (or its sender is gone).
fn stopped(shutdown: &watch::Receiver<bool>) -> futures::future::Shared<BoxFuture<'static, ()>> {
    let mut stop = shutdown.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
    .boxed()
    .shared()
}

/// What one term of work needs: the whole run without leader election,
/// or each time this replica leads.
struct Term {
    engine: EngineArgs,
    transport: Arc<Transport>,
    defaults: OperatorDefaults,
    client: Client,
    scope: WatchScope,
    reporter: Reporter,
    limits: RunLimits,
    metrics: Arc<OperatorMetrics>,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
}

impl Term {
    /// The controllers, with caches of their own, until shutdown (or until
    /// the future is dropped: a lost lease). Ready once the caches are
    /// synced.
    fn work(&self) -> impl Future<Output = ()> + use<> {
        let built = controller::controllers(&self.client, &self.scope);
        let stores = built.iter().map(|w| w.controller.store()).collect();
        let connections = ConnectionWatches::new(&self.client, &self.scope.namespaces);
        let ctx = Arc::new(
            Context::new(
                self.client.clone(),
                self.engine
                    .engine(self.transport.clone(), self.defaults.clone()),
                self.reporter.clone(),
                stores,
                self.metrics.clone(),
            )
            .with_directory(connections.directory()),
        );
        // The gauges describe this term's caches, and read 0 once the work
        // ends (a lost lease drops this future).
        let census = {
            let ctx = Arc::downgrade(&ctx);
            self.metrics
                .census_from(move || ctx.upgrade().map(|c| c.census()).unwrap_or_default())
        };
        let health = self.health.clone();
        health.set_ready(false);
        let running = controller::run(
            built,
            connections,
            ctx,
            self.limits,
            stopped(&self.shutdown),
            move || {
                info!("caches synced: ready");
                health.set_ready(true);
            },
        );
        async move {
            let _census = census;
            running.await;
        }
    }
}

/// Works only while holding the Lease, until shutdown.
async fn lead(
    args: &RunArgs,
    client: Client,
    identity: String,
    term: &Term,
) -> Result<(), RunError> {
    let settings = LeaseSettings {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity,
        duration: args.lease_duration.0,
    };
    let (health, metrics) = (term.health.clone(), term.metrics.clone());
    run_while_leading(
        client,
        settings,
        term.shutdown.clone(),
        move |leading| {
            metrics.leader.set(i64::from(leading));
            // A standby is healthy and ready; a new leader is ready once its
            // caches are synced (the work sets it).
            health.set_ready(!leading);
        },
        || term.work(),
    )
    .await
    .map_err(RunError::from)
}

/// The run's end: a stop that nobody asked for is an error, and either
/// error marks the process dead on /healthz.
fn conclude(
    outcome: Result<(), RunError>,
    shutdown: &watch::Receiver<bool>,
    health: &Health,
) -> Result<(), RunError> {
    let outcome = outcome.and_then(|()| {
        if *shutdown.borrow() {
            Ok(())
        } else {
            Err(RunError::ControllersStopped)
        }
    });
    match &outcome {
        Err(err) => health.set_dead(err.to_string()),
        Ok(()) => info!("stopped"),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_identities_differ_per_process_but_name_the_host() {
        let (a, b) = (default_identity(), default_identity());
        assert_ne!(a, b, "two replicas never share an identity");
        let (host_a, suffix_a) = a.rsplit_once('-').unwrap();
        let (host_b, _) = b.rsplit_once('-').unwrap();
        assert_eq!(host_a, host_b);
        assert!(!host_a.is_empty());
        assert_eq!(suffix_a.len(), 6);
        assert!(
            suffix_a
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "a valid Lease holderIdentity and label value: {a}"
        );
    }
}
