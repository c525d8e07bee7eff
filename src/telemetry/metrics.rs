//! The operator's Prometheus metrics (`/metrics` of `run`).
//!
//! Counters and the histogram count what this process did. The gauges of
//! what it manages (`metastudio_codes_managed`, `metastudio_drift`,
//! `metastudio_resources`, and per resource `metastudio_resource_condition`
//! and `metastudio_resource_drift`) are computed at scrape time from the
//! controller's caches ([`Census`]): a deleted resource drops out at once,
//! and a replica that is not leading (a standby, or a leader that lost its
//! lease) reports zeros (and no per-resource series) rather than what it saw
//! while it led.

use crate::crd::{ActivationCode, ActivationCodeStatus, ManagementPolicy};
use crate::engine::ReconcileReport;
use crate::engine::conditions::{READY, RECONCILING, STALLED};
use crate::metastudio::metrics::ApiMetrics;
use kube::ResourceExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The Ready condition's reason, e.g. Synced or CredentialsRejected.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// "True", "False" or "Unknown".
    pub ready: String,
}

/// The labels of `metastudio_resource_condition`: one series per resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    name: String,
    /// The Ready condition's reason.
    reason: String,
    /// `Stalled`, `Reconciling` or `Settled` (see [`ResourceCensus::progress`]).
    progress: &'static str,
}

/// The labels of `metastudio_resource_drift`: one series per resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    namespace: String,
    name: String,
    /// spec.managementPolicy: `Enforce` or `Observe`.
    management_policy: &'static str,
}

/// One watched ActivationCode, as its per-resource series report it. Only
/// names and what status says: never a code id, a value or a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCensus {
    pub namespace: String,
    pub name: String,
    /// The Ready condition's reason; `None` before the first reconcile
    /// wrote one (then the resource has no condition series).
    pub reason: Option<String>,
    /// `Stalled` or `Reconciling` while that kstatus condition is True
    /// (a human must act; the operator retries), `Settled` otherwise.
    pub progress: &'static str,
    /// spec.managementPolicy: `Enforce` or `Observe`.
    pub policy: &'static str,
    /// Entries of status.drift: in Observe everything found, in Enforce
    /// what could not be corrected.
    pub drift: u64,
}

impl ResourceCensus {
    /// What `resource` reports, from `status` (the freshest one known).
    pub fn of(resource: &ActivationCode, status: Option<&ActivationCodeStatus>) -> Self {
        let holds = |type_: &str| {
            status
                .and_then(|s| s.condition(type_))
                .is_some_and(|c| c.status == "True")
        };
        let progress = if holds(STALLED) {
            "Stalled"
        } else if holds(RECONCILING) {
            "Reconciling"
        } else {
            "Settled"
        };
        Self {
            namespace: resource.namespace().unwrap_or_default(),
            name: resource.name_any(),
            reason: status
                .and_then(|s| s.condition(READY))
                .map(|c| c.reason.clone()),
            progress,
            policy: match resource.spec.management_policy {
                ManagementPolicy::Enforce => "Enforce",
                ManagementPolicy::Observe => "Observe",
            },
            drift: status.map_or(0, |s| u64::from(s.drift_total())),
        }
    }
}

/// What the watched ActivationCodes report right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Activation codes managed, over every resource.
    pub codes: u64,
    /// Differences between remote codes and specs that remain (status.drift):
    /// in Observe everything found, in Enforce what could not be corrected.
    pub drift: u64,
    /// Resources whose Ready condition is True, False, or Unknown/absent.
    pub ready_true: u64,
    pub ready_false: u64,
    pub ready_unknown: u64,
    /// Each resource, for the per-resource series.
    pub resources: Vec<ResourceCensus>,
}

impl Census {
    /// Counts `resource` with its freshest `status` in the totals and
    /// keeps it for the per-resource series.
    pub fn add(&mut self, resource: &ActivationCode, status: Option<&ActivationCodeStatus>) {
        self.count(
            status
                .and_then(|s| s.condition(READY))
                .map(|c| c.status.as_str()),
            status.map_or(0, |s| u64::from(s.managed_codes)),
            status.map_or(0, |s| u64::from(s.drift_total())),
        );
        self.resources.push(ResourceCensus::of(resource, status));
    }

    /// Counts one resource: its Ready status ("True", "False", anything
    /// else or none is Unknown), its managed codes and remaining drift.
    fn count(&mut self, ready: Option<&str>, codes: u64, drift: u64) {
        match ready {
            Some("True") => self.ready_true += 1,
            Some("False") => self.ready_false += 1,
            _ => self.ready_unknown += 1,
        }
        self.codes += codes;
        self.drift += drift;
    }
}

type CensusSource = Box<dyn Fn() -> Census + Send + Sync>;

/// Encodes the census gauges on each scrape.
#[derive(Default)]
struct CensusCollector {
    source: Mutex<Option<CensusSource>>,
}

impl std::fmt::Debug for CensusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CensusCollector").finish_non_exhaustive()
    }
}

impl Collector for CensusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let census = self
            .source
            .lock()
            .expect("census source lock")
            .as_ref()
            .map(|source| source())
            .unwrap_or_default();
        let gauge = |value: u64| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        for (name, help, value) in [
            (
                "metastudio_codes_managed",
                "Activation codes managed by the ActivationCodes this replica reconciles (0 unless leading)",
                census.codes,
            ),
            (
                "metastudio_drift",
                "Differences between remote codes and specs that remain (status.driftCount): all found in Observe, those not corrected in Enforce",
                census.drift,
            ),
        ] {
            let metric = gauge(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let mut family = encoder.encode_descriptor(
            "metastudio_resources",
            "ActivationCodes by the status of their Ready condition (0 unless leading)",
            None,
            ConstGauge::<i64>::TYPE,
        )?;
        for (ready, value) in [
            ("True", census.ready_true),
            ("False", census.ready_false),
            ("Unknown", census.ready_unknown),
        ] {
            let labels = ReadyLabels {
                ready: ready.to_owned(),
            };
            gauge(value).encode(family.encode_family(&labels)?)?;
        }
        encode_resources(&mut encoder, &census.resources)
    }
}

/// `metastudio_resource_condition` and `metastudio_resource_drift`: one
/// series of each per resource (no condition series before a first Ready).
fn encode_resources(
    encoder: &mut DescriptorEncoder,
    resources: &[ResourceCensus],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "metastudio_resource_condition",
        "1 per ActivationCode with a Ready condition, labelled with its reason and progress (Stalled, Reconciling or Settled); none unless leading",
        None,
        ConstGauge::<i64>::TYPE,
    )?;
    for resource in resources {
        let Some(reason) = &resource.reason else {
            continue;
        };
        let labels = ConditionLabels {
            namespace: resource.namespace.clone(),
            name: resource.name.clone(),
            reason: reason.clone(),
            progress: resource.progress,
        };
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "metastudio_resource_drift",
        "Differences that remain per ActivationCode (status.driftCount), labelled with its managementPolicy; none unless leading",
        None,
        ConstGauge::<i64>::TYPE,
    )?;
    for resource in resources {
        let labels = DriftLabels {
            namespace: resource.namespace.clone(),
            name: resource.name.clone(),
            management_policy: resource.policy,
        };
        let drift = i64::try_from(resource.drift).unwrap_or(i64::MAX);
        ConstGauge::new(drift).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Clears the census source when dropped (the work it described ended).
#[must_use = "the census is cleared when this is dropped"]
pub struct CensusGuard {
    metrics: Arc<OperatorMetrics>,
}

impl Drop for CensusGuard {
    fn drop(&mut self) {
        *self
            .metrics
            .census
            .source
            .lock()
            .expect("census source lock") = None;
    }
}

pub struct OperatorMetrics {
    pub api: ApiMetrics,
    pub reconciles: Family<ReasonLabels, Counter>,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub reconcile_duration: Histogram,
    /// Reconciles that panicked (caught: see `controller::isolated`).
    pub reconcile_panics: Counter,
    pub leader: Gauge,
    census: Arc<CensusCollector>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self {
            api: ApiMetrics::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            reconcile_panics: Counter::default(),
            leader: Gauge::default(),
            census: Arc::default(),
        }
    }
}

impl OperatorMetrics {
    /// A registry with the operator's own metrics. Parts with metrics of
    /// their own (the broker's) register them into it, so this module
    /// depends on none of them.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.api.register(&mut registry);
        registry.register(
            "metastudio_reconciles",
            "Reconciles by the Ready condition's reason",
            self.reconciles.clone(),
        );
        registry.register(
            "metastudio_reconcile_errors",
            "Reconciles that did not converge, by reason",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "metastudio_reconcile_duration_seconds",
            "Duration of one reconcile",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "metastudio_reconcile_panics",
            "Reconciles that panicked: each was stopped, its resource marked InternalError (a connection's status reconcile: looked at again later), and the operator went on",
            self.reconcile_panics.clone(),
        );
        registry.register(
            "metastudio_leader",
            "1 while this replica holds the leader lease (or runs without leader election)",
            self.leader.clone(),
        );
        registry.register_collector(Box::new(self.census.clone()));
        registry
    }

    /// Makes the census gauges read from `source` until the guard is dropped
    /// (then they read 0).
    pub fn census_from(
        self: &Arc<Self>,
        source: impl Fn() -> Census + Send + Sync + 'static,
    ) -> CensusGuard {
        *self.census.source.lock().expect("census source lock") = Some(Box::new(source));
        CensusGuard {
            metrics: self.clone(),
        }
    }

    pub fn record_reconcile(&self, report: &ReconcileReport, took: Duration) {
        let labels = ReasonLabels {
            reason: report.reason.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        if !report.converged {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_duration.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &OperatorMetrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry()).unwrap();
        text
    }

    #[test]
    fn census_gauges_follow_the_source_and_read_zero_without_one() {
        let metrics = Arc::new(OperatorMetrics::default());
        let mut census = Census::default();
        census.count(Some("True"), 3, 0);
        census.count(Some("False"), 0, 2);
        census.count(None, 0, 0);
        let guard = metrics.census_from(move || census.clone());
        let text = scrape(&metrics);
        for line in [
            "metastudio_codes_managed 3\n",
            "metastudio_drift 2\n",
            "metastudio_resources{ready=\"True\"} 1\n",
            "metastudio_resources{ready=\"False\"} 1\n",
            "metastudio_resources{ready=\"Unknown\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        drop(guard);
        let text = scrape(&metrics);
        for line in [
            "metastudio_codes_managed 0\n",
            "metastudio_drift 0\n",
            "metastudio_resources{ready=\"True\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    fn resource(name: &str, policy: &str) -> ActivationCode {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
            "kind": "ActivationCode",
            "metadata": {"name": name, "namespace": "retail"},
            "spec": {"robotId": "r1", "validPeriod": 7, "managementPolicy": policy},
        }))
        .unwrap()
    }

    /// A status whose Ready condition has `reason`, with the kstatus
    /// condition that reason implies and `drift` entries.
    fn status(ready: bool, reason: &str, drift: usize) -> ActivationCodeStatus {
        use crate::engine::conditions::{set, set_progress};
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut status = ActivationCodeStatus::default();
        set(
            &mut status.conditions,
            READY,
            Some(ready),
            reason,
            "",
            Some(1),
            now,
        );
        set_progress(&mut status.conditions, reason, "", Some(1), now);
        status.drift = (0..drift)
            .map(|i| crate::crd::Drift {
                code_id: format!("c{i}"),
                field: "validPeriod".into(),
                observed: "3".into(),
                desired: "7".into(),
            })
            .collect();
        status
    }

    #[test]
    fn per_resource_series_carry_the_ready_reason_progress_and_drift() {
        let metrics = Arc::new(OperatorMetrics::default());
        let mut census = Census::default();
        census.add(
            &resource("lobby", "Enforce"),
            Some(&status(true, "Synced", 0)),
        );
        census.add(
            &resource("hall", "Enforce"),
            Some(&status(false, "CredentialsRejected", 0)),
        );
        census.add(
            &resource("gate", "Enforce"),
            Some(&status(false, "RemoteError", 1)),
        );
        census.add(
            &resource("watcher", "Observe"),
            Some(&status(true, "Observing", 2)),
        );
        census.add(&resource("new", "Enforce"), None);
        let _guard = metrics.census_from(move || census.clone());
        let text = scrape(&metrics);
        for line in [
            r#"metastudio_resource_condition{namespace="retail",name="lobby",reason="Synced",progress="Settled"} 1"#,
            r#"metastudio_resource_condition{namespace="retail",name="hall",reason="CredentialsRejected",progress="Stalled"} 1"#,
            r#"metastudio_resource_condition{namespace="retail",name="gate",reason="RemoteError",progress="Reconciling"} 1"#,
            r#"metastudio_resource_condition{namespace="retail",name="watcher",reason="Observing",progress="Settled"} 1"#,
            r#"metastudio_resource_drift{namespace="retail",name="gate",management_policy="Enforce"} 1"#,
            r#"metastudio_resource_drift{namespace="retail",name="watcher",management_policy="Observe"} 2"#,
            r#"metastudio_resource_drift{namespace="retail",name="new",management_policy="Enforce"} 0"#,
            "metastudio_drift 3\n",
            "metastudio_resources{ready=\"Unknown\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains(r#"metastudio_resource_condition{namespace="retail",name="new""#),
            "a resource without a Ready condition has no condition series:\n{text}"
        );
    }
}
