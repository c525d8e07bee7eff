//! The broker's metrics: once-codes issued by namespace and connection,
//! denials by reason, and how long the broker took to answer. `run`
//! registers them into the operator's registry
//! ([`crate::telemetry::metrics::OperatorMetrics::registry`]), whether the
//! broker is on or not: the broker depends on telemetry, never the reverse.

use crate::telemetry::metrics::ReasonLabels;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedLabels {
    pub namespace: String,
    pub connection: String,
}

#[derive(Debug, Clone)]
pub struct BrokerMetrics {
    pub issued: Family<IssuedLabels, Counter>,
    pub denials: Family<ReasonLabels, Counter>,
    /// From the request's arrival to its answer, upstream call included.
    pub duration: Histogram,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self {
            issued: Family::default(),
            denials: Family::default(),
            duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl BrokerMetrics {
    /// Adds the broker's families to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "metastudio_oncecodes_issued",
            "Once-codes the broker handed out, by the caller's namespace and the connection",
            self.issued.clone(),
        );
        registry.register(
            "metastudio_oncecode_denials",
            "Broker requests answered without a code, by reason",
            self.denials.clone(),
        );
        registry.register(
            "metastudio_broker_request_duration_seconds",
            "Time the broker took to answer one request, the CreateOnceCode call included",
            self.duration.clone(),
        );
    }
}
