//! The broker's HTTP side: HTTPS (or plain HTTP on loopback) within
//! [`LIMITS`] (bounded connections and heads, idle and slow clients cut
//! off), one JSON answer per request, one audit line per grant or denial,
//! and the metrics.

use super::contract::Denial;
use super::metrics::BrokerMetrics;
use super::pipeline::{Broker, Outcome};
use super::review::Reviewer;
use super::route::RequestHead;
use crate::engine::host::SecretSource;
use crate::telemetry::connections::{ConnectionLimits, Handler};
use crate::telemetry::metrics::ReasonLabels;
use crate::tenancy::Directory;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The broker's connection limits (see [`crate::telemetry::connections`]):
/// 1024 connections, 10 s for a TLS handshake or a request's head (and so
/// for an idle keep-alive), 5 minutes per connection.
pub const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 1024,
    head_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(300),
};

/// A broker and what it reports to; [`crate::telemetry::connections::serve`]
/// serves it.
pub struct Service<R, D, S> {
    pub broker: Broker<R, D, S>,
    pub metrics: BrokerMetrics,
}

impl<R, D, S> Handler for Service<R, D, S>
where
    R: Reviewer + 'static,
    D: Directory + Send + Sync + 'static,
    S: SecretSource + Send + Sync + 'static,
{
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.respond(request).await
    }
}

impl<R: Reviewer, D: Directory + Sync, S: SecretSource> Service<R, D, S> {
    /// The answer to one request, counted and logged.
    pub async fn respond<B: Body>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let head = RequestHead {
            method: request.method().as_str(),
            path: request.uri().path(),
            has_body: !request.body().is_end_stream(),
        };
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let outcome = self.broker.answer(head, authorization).await;
        self.record(&outcome);
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        response_of(outcome)
    }

    /// The metrics and the audit line of one answer: the caller, its
    /// namespace, the connection and the request id; never a token or a code.
    fn record(&self, outcome: &Outcome) {
        let caller = outcome.caller.as_ref().map_or("-".into(), |c| c.id());
        let connection = outcome.connection.as_deref().unwrap_or("-");
        match &outcome.result {
            Ok(issued) => {
                let namespace = outcome.caller.as_ref().map(|c| c.namespace.clone());
                self.metrics
                    .issued
                    .get_or_create(&super::metrics::IssuedLabels {
                        namespace: namespace.unwrap_or_default(),
                        connection: connection.to_owned(),
                    })
                    .inc();
                info!(%caller, connection, via = %issued.via, request_id = %issued.grant.request_id, "once-code issued");
            }
            Err(denial) => {
                self.metrics
                    .denials
                    .get_or_create(&ReasonLabels {
                        reason: denial.reason.to_owned(),
                    })
                    .inc();
                warn!(%caller, connection, status = denial.status, reason = denial.reason, message = %denial.message, "once-code denied");
            }
        }
    }
}

fn response_of(outcome: Outcome) -> Response<Full<Bytes>> {
    let (status, body, retry_after) = match outcome.result {
        Ok(issued) => (
            200,
            serde_json::to_vec(&issued.grant).expect("serialises"),
            None,
        ),
        Err(denial) => denial_parts(&denial),
    };
    let mut response = Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-store");
    if let Some(secs) = retry_after {
        response = response.header("Retry-After", secs);
    }
    if status == 405 {
        response = response.header("Allow", "POST");
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn denial_parts(denial: &Denial) -> (u16, Vec<u8>, Option<u64>) {
    (
        denial.status,
        serde_json::to_vec(&denial.body()).expect("serialises"),
        denial.retry_after_secs(),
    )
}
