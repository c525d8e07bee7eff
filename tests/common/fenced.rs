//! Two reconcilers of one resource, as the cluster fences them: a status
//! store that every write moves to a new version, and a host whose status
//! writes name the version it read (HTTP 409 otherwise), over the engine
//! against the simulator.

use super::{fast_options, good_credentials};
use jiff::Timestamp;
use metastudio_operator::crd::connection::{
    ClusterMetaStudioConnectionSpec, MetaStudioConnectionSpec,
};
use metastudio_operator::crd::{ActivationCode, ActivationCodeStatus};
use metastudio_operator::engine::host::{EngineEvent, Host, HostError, SecretSource};
use metastudio_operator::engine::{Engine, Mode, Next, OperatorDefaults, ReconcileReport};
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{ActiveCode, ClientOptions, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::Simulator;
use metastudio_operator::tenancy::{DefaultCredentialsScope, Directory};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An engine against `sim` with the operator's defaults pointing at it.
pub fn engine(sim: &Simulator) -> Engine {
    engine_with(sim, fast_options())
}

/// As [`engine`], with these client options.
pub fn engine_with(sim: &Simulator, options: ClientOptions) -> Engine {
    Engine::new(
        Transport::new(options).unwrap(),
        OperatorDefaults {
            settings: ConnectionSettings {
                endpoint: Some(sim.endpoint()),
                project_id: Some(sim.project_id().to_owned()),
                ..Default::default()
            },
            credentials: Some(good_credentials()),
            credentials_scope: DefaultCredentialsScope::Everyone,
            inline_endpoints: metastudio_operator::tenancy::InlineEndpoints::Any,
        },
    )
}

/// One resource's status as an API server keeps it: a version that every
/// write moves, and writes that name the version they read.
#[derive(Default)]
pub struct Stored {
    pub version: u64,
    pub status: Option<ActivationCodeStatus>,
    /// The next status write that records intents fails (not as stale).
    pub fail_next_intent_write: bool,
    /// How long each write of intents takes.
    pub intent_write_delay: Duration,
    /// The writes of intents so far.
    pub intent_writes: usize,
}

/// Whether `status` records intents of a batch in progress.
pub fn records_a_batch(status: &ActivationCodeStatus) -> bool {
    status
        .pending_resets
        .iter()
        .any(|i| i.unanswered_since.is_none())
        || status
            .pending_creates
            .iter()
            .any(|i| i.unanswered_since.is_none())
        || status
            .pending_deletes
            .iter()
            .any(|i| i.unanswered_since.is_none())
}

/// The host of one reconcile over a [`Stored`] status: it reads the status
/// with its version, and a status write fails as stale (HTTP 409) when the
/// version moved since, as the cluster's does.
pub struct Fenced<'a> {
    stored: &'a Mutex<Stored>,
    read: Mutex<u64>,
    inner: OfflineHost,
}

impl<'a> Fenced<'a> {
    pub fn new(stored: &'a Mutex<Stored>) -> Self {
        Self {
            stored,
            read: Mutex::new(0),
            inner: OfflineHost::new(Default::default(), None, None).unwrap(),
        }
    }
}

impl SecretSource for Fenced<'_> {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        self.inner.secret_data(namespace, name).await
    }
}

impl Directory for Fenced<'_> {
    fn connection(&self, namespace: &str, name: &str) -> Option<MetaStudioConnectionSpec> {
        self.inner.connection(namespace, name)
    }
    fn cluster_connection(&self, name: &str) -> Option<ClusterMetaStudioConnectionSpec> {
        self.inner.cluster_connection(name)
    }
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.inner.namespace_labels(namespace)
    }
}

impl Host for Fenced<'_> {
    fn current(&self, resource: &ActivationCode) -> ActivationCode {
        let stored = self.stored.lock().unwrap();
        *self.read.lock().unwrap() = stored.version;
        let mut current = resource.clone();
        current.status.clone_from(&stored.status);
        current
    }

    fn same_robot(&self, _: &ActivationCode) -> Vec<ActivationCode> {
        Vec::new()
    }

    async fn save_status(
        &self,
        _: &ActivationCode,
        status: &Arc<ActivationCodeStatus>,
    ) -> Result<(), HostError> {
        let delay = self.stored.lock().unwrap().intent_write_delay;
        if records_a_batch(status) {
            tokio::time::sleep(delay).await;
        }
        let mut stored = self.stored.lock().unwrap();
        let mut read = self.read.lock().unwrap();
        if stored.version != *read {
            return Err(HostError::stale(
                "apply status",
                "the object has been modified",
            ));
        }
        if stored.fail_next_intent_write && status.has_intents() {
            stored.fail_next_intent_write = false;
            return Err(HostError::new(
                "apply status",
                "etcdserver: request timed out",
            ));
        }
        stored.intent_writes += usize::from(records_a_batch(status));
        stored.status = Some((**status).clone());
        stored.version += 1;
        *read = stored.version;
        Ok(())
    }

    async fn export(&self, _: &ActivationCode, _: &str, _: &[ActiveCode]) -> Result<(), HostError> {
        Ok(())
    }

    async fn event(&self, _: &ActivationCode, _: &EngineEvent) {}
}

/// One reconcile over `stored` at the wall clock, read again and redone
/// while its status write finds the resource changed (as the controller
/// does).
pub async fn reconcile_fenced(
    engine: &Engine,
    stored: &Mutex<Stored>,
    ac: &ActivationCode,
) -> ReconcileReport {
    loop {
        let host = Fenced::new(stored);
        let report = engine
            .reconcile(ac, &host, Mode::Normal, Timestamp::now())
            .await;
        if report.next != Next::Replan {
            return report;
        }
    }
}

/// Polls `done` every few milliseconds until it holds; panics after a
/// minute.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within a minute"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reconciles with `engine` over `stored`, again and again, until one ends
/// converged; panics after a minute.
pub async fn reconcile_until_converged(
    engine: &Engine,
    stored: &Mutex<Stored>,
    ac: &ActivationCode,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let report = reconcile_fenced(engine, stored, ac).await;
        if report.converged {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged within a minute: {} {:?}",
            report.reason,
            report.status.condition("Ready")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
