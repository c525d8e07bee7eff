//! The operator's Prometheus metrics (`/metrics` of `run`).

use crate::engine::ReconcileReport;
use crate::engine::conditions::READY;
use crate::metastudio::metrics::ApiMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
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

/// What each resource last reported, to derive the gauges.
#[derive(Debug, Default)]
struct Tally {
    ready: HashMap<String, String>,
    codes: HashMap<String, u64>,
}

pub struct OperatorMetrics {
    pub api: ApiMetrics,
    pub reconciles: Family<ReasonLabels, Counter>,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub drift_found: Counter,
    pub codes_managed: Gauge,
    pub resources: Family<ReadyLabels, Gauge>,
    pub leader: Gauge,
    tally: Mutex<Tally>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self {
            api: ApiMetrics::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            drift_found: Counter::default(),
            codes_managed: Gauge::default(),
            resources: Family::default(),
            leader: Gauge::default(),
            tally: Mutex::default(),
        }
    }
}

impl OperatorMetrics {
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
            "metastudio_drift_found",
            "Differences between remote codes and specs found by reconciles",
            self.drift_found.clone(),
        );
        registry.register(
            "metastudio_codes_managed",
            "Activation codes managed",
            self.codes_managed.clone(),
        );
        registry.register(
            "metastudio_resources",
            "ActivationCodes by the status of their Ready condition",
            self.resources.clone(),
        );
        registry.register(
            "metastudio_leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        registry
    }

    pub fn record_reconcile(&self, key: &str, report: &ReconcileReport, took: Duration) {
        let labels = ReasonLabels {
            reason: report.reason.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        if !report.converged {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_duration.observe(took.as_secs_f64());
        self.drift_found.inc_by(report.planned.len() as u64);
        let ready = report
            .status
            .condition(READY)
            .map_or("Unknown".to_owned(), |c| c.status.clone());
        let mut tally = self.tally.lock().expect("metrics tally lock");
        tally.ready.insert(key.to_owned(), ready);
        tally
            .codes
            .insert(key.to_owned(), u64::from(report.status.managed_codes));
        self.codes_managed
            .set(tally.codes.values().sum::<u64>() as i64);
        for status in ["True", "False", "Unknown"] {
            let count = tally
                .ready
                .values()
                .filter(|v| v.as_str() == status)
                .count();
            self.resources
                .get_or_create(&ReadyLabels {
                    ready: status.to_owned(),
                })
                .set(count as i64);
        }
    }
}
