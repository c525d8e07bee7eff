//! The engine over manifests on disk (`reconcile -f`): no cluster needed.
//! Statuses live in a status file instead of the status subresource, so
//! rotation tokens and crash safety behave exactly as in the cluster.

pub mod export_file;
pub mod host;
pub mod manifests;
pub mod report;
pub mod status_file;

use crate::engine::host::EngineEvent;
use crate::engine::{Engine, Mode, ReconcileReport};
use futures::StreamExt;
use host::OfflineHost;
use manifests::{Loaded, key_of};

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
    host.hold_fleet(resources.iter().map(|loaded| &loaded.resource));
    let mut outcomes: Vec<(usize, ResourceOutcome)> = Vec::with_capacity(resources.len());
    let mut stream = futures::stream::iter(resources.iter().enumerate())
        .map(|(index, loaded)| {
            async move {
                let resource = &loaded.resource;
                let key = key_of(resource);
                let span = tracing::info_span!("reconcile", resource = %key);
                let mut report = tracing::Instrument::instrument(
                    engine.reconcile(resource, host, mode, jiff::Timestamp::now()),
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

    #[tokio::test]
    async fn only_resources_of_the_same_robot_conflict() {
        let seed = Seed::from_yaml(
            "spec: {robots: [{robotId: r1, generate: {count: 2, validPeriod: 7}}, {robotId: r2, generate: {count: 2, validPeriod: 7}}]}",
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
        let engine = Engine::new(transport, defaults);
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
}
