//! The engine over manifests on disk (`reconcile -f`): no cluster needed.
//! Statuses live in a status file instead of the status subresource, so
//! rotation tokens and crash safety behave exactly as in the cluster.
//!
//! A panic in one resource's reconcile is that resource's outcome
//! (`InternalError`, not converged, so the run exits with failure); the
//! other resources are reconciled as if nothing happened.

pub mod export_file;
pub mod host;
pub mod manifests;
pub mod report;
pub mod status_file;

use crate::crd::ActivationCode;
use crate::engine::host::EngineEvent;
use crate::engine::panicked::unrecorded_internal_error;
use crate::engine::{Engine, Mode, ReconcileReport};
use crate::panics;
use futures::StreamExt;
use host::OfflineHost;
use manifests::{Loaded, key_of};
use std::future::Future;

/// One resource's outcome.
#[derive(Debug, Clone)]
pub struct ResourceOutcome {
    /// `namespace/name`.
    pub key: String,
    /// Where it was defined.
    pub source: String,
    pub policy: crate::crd::ManagementPolicy,
    pub report: ReconcileReport,
    pub events: Vec<EngineEvent>,
}

/// Reconciles every resource, `concurrency` at a time; outcomes come back
/// in the order the resources were found.
pub async fn reconcile_all(
    engine: &Engine,
    host: &OfflineHost,
    resources: &[Loaded],
    mode: Mode,
    concurrency: usize,
) -> Vec<ResourceOutcome> {
    reconcile_each(engine, host, resources, mode, concurrency, |resource| {
        engine.reconcile(resource, host, mode, jiff::Timestamp::now())
    })
    .await
}

/// [`reconcile_all`] with the reconcile of one resource given (a test's
/// may panic).
async fn reconcile_each<'a, F, Fut>(
    engine: &Engine,
    host: &OfflineHost,
    resources: &'a [Loaded],
    mode: Mode,
    concurrency: usize,
    reconcile: F,
) -> Vec<ResourceOutcome>
where
    F: Fn(&'a ActivationCode) -> Fut,
    Fut: Future<Output = ReconcileReport>,
{
    host.hold_fleet(resources.iter().map(|loaded| &loaded.resource));
    let mut outcomes: Vec<(usize, ResourceOutcome)> = Vec::with_capacity(resources.len());
    let reconcile = &reconcile;
    let mut stream = futures::stream::iter(resources.iter().enumerate())
        .map(|(index, loaded)| {
            async move {
                let resource = &loaded.resource;
                let key = key_of(resource);
                let span = tracing::info_span!("reconcile", resource = %key);
                let mut report = tracing::Instrument::instrument(
                    isolated(engine, host, resource, mode, reconcile(resource)),
                    span,
                )
                .await;
                let mut events = host.take_events(&key);
                // Every outcome is kept until the report is printed; growth
                // leaves these vectors up to half empty (about 7 MiB at
                // 100k codes), so drop the spare room.
                report.planned.shrink_to_fit();
                report.applied.shrink_to_fit();
                events.shrink_to_fit();
                (
                    index,
                    ResourceOutcome {
                        key,
                        source: loaded.origin.clone(),
                        policy: resource.spec.management_policy,
                        report,
                        events,
                    },
                )
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(outcome) = stream.next().await {
        outcomes.push(outcome);
    }
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// The report of `reconcile`, or, when it panics, the resource's
/// `InternalError` (recorded in the status file and as an Event, as any
/// stop is).
async fn isolated(
    engine: &Engine,
    host: &OfflineHost,
    resource: &ActivationCode,
    mode: Mode,
    reconcile: impl Future<Output = ReconcileReport>,
) -> ReconcileReport {
    let panicked = match panics::catch(reconcile).await {
        Ok(report) => return report,
        Err(panicked) => panicked,
    };
    let now = jiff::Timestamp::now();
    panics::catch(engine.internal_error(resource, host, &panicked, mode, now))
        .await
        .unwrap_or_else(|again| unrecorded_internal_error(resource, &again, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::OperatorDefaults;
    use crate::engine::conditions::reason;
    use crate::metastudio::pacing::Pacing;
    use crate::metastudio::settings::ConnectionSettings;
    use crate::metastudio::{ClientOptions, Credentials, Transport};
    use crate::simulator::{
        DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY, Seed, Simulator,
        SimulatorConfig,
    };
    use std::collections::BTreeMap;

    fn resource(name: &str, robot: &str) -> Loaded {
        let spec = serde_json::from_value(serde_json::json!({"robotId": robot, "validPeriod": 7}))
            .expect("valid spec");
        let mut resource = crate::crd::ActivationCode::new(name, spec);
        resource.metadata.namespace = Some("ns".into());
        Loaded {
            resource,
            origin: format!("{name}.yaml"),
        }
    }

    /// A simulator with robots r1, r2 and r3 (two codes each), and an engine
    /// with the operator's credentials for it.
    async fn engine_and_simulator() -> (Engine, Simulator) {
        let seed = Seed::from_yaml(
            "spec: {robots: [{robotId: r1, generate: {count: 2, validPeriod: 7}}, {robotId: r2, generate: {count: 2, validPeriod: 7}}, {robotId: r3, generate: {count: 2, validPeriod: 7}}]}",
        )
        .unwrap();
        let config = SimulatorConfig {
            seed: Some(seed),
            ..SimulatorConfig::default()
        };
        let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let transport = Transport::new(ClientOptions {
            pacing: Pacing::UNLIMITED,
            ..ClientOptions::default()
        })
        .unwrap();
        let defaults = OperatorDefaults {
            settings: ConnectionSettings {
                endpoint: Some(sim.endpoint()),
                project_id: Some(DEFAULT_PROJECT_ID.into()),
                ..ConnectionSettings::default()
            },
            credentials: Some(Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
            credentials_scope: crate::tenancy::DefaultCredentialsScope::Everyone,
            inline_endpoints: crate::tenancy::InlineEndpoints::Any,
        };
        (Engine::new(transport, defaults), sim)
    }

    #[tokio::test]
    async fn only_resources_of_the_same_robot_conflict() {
        let (engine, _sim) = engine_and_simulator().await;
        let host = OfflineHost::new(BTreeMap::new(), None, None).unwrap();
        // Out of robot order, so the index must find both r1 resources.
        let resources = [
            resource("b-second", "r1"),
            resource("c-alone", "r2"),
            resource("a-first", "r1"),
        ];
        let outcomes = reconcile_all(&engine, &host, &resources, Mode::Normal, 3).await;
        let reasons: Vec<(&str, &str)> = outcomes
            .iter()
            .map(|o| (o.key.as_str(), o.report.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                ("ns/b-second", reason::CONFLICT),
                ("ns/c-alone", reason::SYNCED),
                ("ns/a-first", reason::SYNCED),
            ]
        );
    }

    #[tokio::test]
    async fn a_panic_is_its_resources_internal_error_and_the_others_go_on() {
        let (engine, sim) = engine_and_simulator().await;
        let host = OfflineHost::new(BTreeMap::new(), None, None).unwrap();
        let resources = [
            resource("a-before", "r1"),
            resource("b-panics", "r2"),
            resource("c-after", "r3"),
        ];
        let outcomes = reconcile_each(&engine, &host, &resources, Mode::Normal, 1, |r| {
            let panics = r.metadata.name.as_deref() == Some("b-panics");
            let engine = &engine;
            let host = &host;
            async move {
                if panics {
                    panic!("a bug in one reconcile");
                }
                engine
                    .reconcile(r, host, Mode::Normal, jiff::Timestamp::now())
                    .await
            }
        })
        .await;
        let reasons: Vec<&str> = outcomes.iter().map(|o| o.report.reason).collect();
        assert_eq!(
            reasons,
            [reason::SYNCED, reason::INTERNAL_ERROR, reason::SYNCED]
        );
        let failed = &outcomes[1];
        assert!(!failed.report.converged, "the run exits with failure");
        let ready = failed.report.status.condition("Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::INTERNAL_ERROR)
        );
        assert!(
            ready.message.contains("src/offline.rs:")
                && ready.message.contains("a bug in one reconcile"),
            "{}",
            ready.message
        );
        let stalled = failed.report.status.condition("Stalled").unwrap();
        assert_eq!(stalled.status, "True");
        assert_eq!(failed.events.len(), 1);
        assert_eq!(failed.events[0].reason, reason::INTERNAL_ERROR);
        assert_eq!(sim.counters().total_updates(), 0, "validPeriod 7 already");
    }
}
