//! The broker's HTTP side: HTTPS (or plain HTTP on loopback), bounded
//! connections and headers, slow clients cut off, one JSON answer per
//! request, one audit line per grant or denial, and the metrics.

use super::contract::Denial;
use super::metrics::BrokerMetrics;
use super::pipeline::{Broker, Outcome};
use super::review::Reviewer;
use super::route::RequestHead;
use crate::engine::host::SecretSource;
use crate::telemetry::metrics::ReasonLabels;
use crate::tenancy::Directory;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Time for a TLS handshake, and for a request's headers to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection stays open, however it is used.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// Buffer for one request's head: larger heads get 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A broker and what it reports to.
pub struct Service<R, D, S> {
    pub broker: Broker<R, D, S>,
    pub metrics: BrokerMetrics,
}

/// Serves `service` on `listener` (TLS when `tls` is set) until `shutdown`.
pub fn serve<R, D, S>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service<R, D, S>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()>
where
    R: Reviewer + 'static,
    D: Directory + Send + Sync + 'static,
    S: SecretSource + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (tls, service) = (tls.clone(), service.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let served = async {
                    match tls {
                        Some(tls) => {
                            let stream = tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream))
                                .await
                                .ok()?
                                .ok()?;
                            serve_connection(stream, service).await;
                        }
                        None => serve_connection(stream, service).await,
                    }
                    Some(())
                };
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, served).await;
            });
        }
    })
}

async fn serve_connection<I, R, D, S>(io: I, service: Arc<Service<R, D, S>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Reviewer + 'static,
    D: Directory + Send + Sync + 'static,
    S: SecretSource + Send + 'static,
{
    let handler = service_fn(move |request: Request<Incoming>| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(service.respond(request).await) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), handler)
        .await;
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
