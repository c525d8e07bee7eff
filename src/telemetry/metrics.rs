//! The operator's Prometheus metrics (`/metrics` of `run`).
//!
//! Counters and the histogram count what this process did. The gauges of
//! what it manages (`metastudio_codes_managed`, `metastudio_drift`,
//! `metastudio_resources`) are computed at scrape time from the controller's
//! caches ([`Census`]): a deleted resource drops out at once, and a replica
//! that is not leading (a standby, or a leader that lost its lease) reports
//! zeros rather than what it saw while it led.

use crate::engine::ReconcileReport;
use crate::metastudio::metrics::ApiMetrics;
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
}

impl Census {
    /// Counts one resource: its Ready status ("True", "False", anything
    /// else or none is Unknown), its managed codes and remaining drift.
    pub fn count(&mut self, ready: Option<&str>, codes: u64, drift: u64) {
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
                "Differences between remote codes and specs that remain (status.drift): all found in Observe, those not corrected in Enforce",
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
        Ok(())
    }
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
    pub broker: crate::broker::metrics::BrokerMetrics,
    pub reconciles: Family<ReasonLabels, Counter>,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub leader: Gauge,
    census: Arc<CensusCollector>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self {
            api: ApiMetrics::default(),
            broker: Default::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            leader: Gauge::default(),
            census: Arc::default(),
        }
    }
}

impl OperatorMetrics {
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.api.register(&mut registry);
        self.broker.register(&mut registry);
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
}
