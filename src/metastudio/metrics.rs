//! Counters of the remote API calls, exported on `/metrics` by `run`.

use super::error::Operation;
use super::pacing::CallClass;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub operation: &'static str,
    /// HTTP status, or `connect_error`, `timeout`, `response_lost`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    /// The operation, e.g. `CreateActiveCode`.
    pub operation: &'static str,
    /// `done`, `failed`, `unconfirmed` (its answer lost), or `confirmed`
    /// (found done by a later listing or read).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// `read` or `write`: the quota a call spends.
    pub class: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub calls: Family<CallLabels, Counter>,
    pub retries: Family<OperationLabels, Counter>,
    pub call_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub rate_limit_waits: Counter,
    pub rate_limit_wait_seconds: Counter<f64, AtomicU64>,
    pub rate_cuts: Family<ClassLabels, Counter>,
    /// Codes changed, one per code (a delete call covers many).
    pub code_changes: Family<ChangeLabels, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            retries: Family::default(),
            call_duration: Family::new_with_constructor(duration_histogram),
            rate_limit_waits: Counter::default(),
            rate_limit_wait_seconds: Counter::default(),
            rate_cuts: Family::default(),
            code_changes: Family::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "metastudio_api_calls",
            "MetaStudio API calls (each attempt) by operation and HTTP status or failure",
            self.calls.clone(),
        );
        registry.register(
            "metastudio_api_retries",
            "MetaStudio API calls retried, by operation",
            self.retries.clone(),
        );
        registry.register(
            "metastudio_api_call_duration_seconds",
            "Duration of MetaStudio API call attempts",
            self.call_duration.clone(),
        );
        registry.register(
            "metastudio_rate_limit_waits",
            "Calls that waited for the client-side rate limit",
            self.rate_limit_waits.clone(),
        );
        registry.register(
            "metastudio_rate_limit_wait_seconds",
            "Time spent waiting for the client-side rate limit",
            self.rate_limit_wait_seconds.clone(),
        );
        registry.register(
            "metastudio_rate_cuts",
            "Times a 429 halved the client-side rate of a class of calls (read or write)",
            self.rate_cuts.clone(),
        );
        registry.register(
            "metastudio_code_changes",
            "Activation codes changed, one per code, by operation (CreateActiveCode, DeleteActiveCode, ResetActiveCode, UpdateActiveCode) and outcome (done, failed, unconfirmed, confirmed)",
            self.code_changes.clone(),
        );
    }

    pub(crate) fn record_call(&self, op: Operation, status: String, took: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                operation: op.name(),
                status,
            })
            .inc();
        self.call_duration
            .get_or_create(&OperationLabels {
                operation: op.name(),
            })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn record_retry(&self, op: Operation) {
        self.retries
            .get_or_create(&OperationLabels {
                operation: op.name(),
            })
            .inc();
    }

    pub(crate) fn record_rate_limit_wait(&self, waited: Duration) {
        if !waited.is_zero() {
            self.rate_limit_waits.inc();
            self.rate_limit_wait_seconds.inc_by(waited.as_secs_f64());
        }
    }

    pub(crate) fn record_rate_cut(&self, class: CallClass) {
        let class = match class {
            CallClass::Read => "read",
            CallClass::Write => "write",
        };
        self.rate_cuts.get_or_create(&ClassLabels { class }).inc();
    }

    /// `codes` codes changed by `op` with `outcome`.
    pub fn record_changes(&self, op: Operation, outcome: &'static str, codes: u64) {
        if codes > 0 {
            self.code_changes
                .get_or_create(&ChangeLabels {
                    operation: op.name(),
                    outcome,
                })
                .inc_by(codes);
        }
    }

    /// Codes changed by `op` with `outcome` (for tests and benchmarks).
    pub fn change_count(&self, op: Operation, outcome: &'static str) -> u64 {
        self.code_changes
            .get(&ChangeLabels {
                operation: op.name(),
                outcome,
            })
            .map_or(0, |c| c.get())
    }

    /// Calls recorded for `op` with `status` (for tests and benchmarks).
    pub fn call_count(&self, op: Operation, status: &str) -> u64 {
        self.calls
            .get(&CallLabels {
                operation: op.name(),
                status: status.to_owned(),
            })
            .map_or(0, |c| c.get())
    }
}
