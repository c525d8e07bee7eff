//! `/metrics`, `/healthz` and `/readyz` of `run`, served within
//! [`LIMITS`].

use super::connections::{self, ConnectionLimits, Handler};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Readiness: set once the caches are synced (or while standing by for the
/// leader lease), cleared while not able to serve. Liveness: true until the
/// controller loop or the leader-election loop has died; the process then
/// exits with an error, and `/healthz` fails meanwhile.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// Why the operator stopped working, once it has.
    dead: Mutex<Option<String>>,
    /// What the operator waits for before it can start (e.g. a missing
    /// CRD), for `/readyz`; none: the caches are being synced.
    waiting: Mutex<Option<String>>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Says what the operator waits for while not ready (`None`: nothing
    /// but its caches).
    pub fn set_waiting(&self, what: Option<String>) {
        *self.waiting.lock().expect("health lock") = what;
    }

    /// Why `/readyz` fails while not ready.
    pub fn not_ready_reason(&self) -> String {
        self.waiting
            .lock()
            .expect("health lock")
            .clone()
            .unwrap_or_else(|| "caches not synced".to_owned())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.is_alive()
    }

    /// Marks the operator as no longer working, for `why`.
    pub fn set_dead(&self, why: impl Into<String>) {
        *self.dead.lock().expect("health lock") = Some(why.into());
    }

    pub fn is_alive(&self) -> bool {
        self.dead.lock().expect("health lock").is_none()
    }

    fn death(&self) -> Option<String> {
        self.dead.lock().expect("health lock").clone()
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("Content-Type", content_type.parse().expect("static header"));
    response
}

fn answer(path: &str, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => text(
                    StatusCode::OK,
                    body,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                Err(err) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    err.to_string(),
                    "text/plain",
                ),
            }
        }
        "/healthz" => match health.death() {
            None => text(StatusCode::OK, "ok\n".into(), "text/plain"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not alive: {why}\n"),
                "text/plain",
            ),
        },
        "/readyz" if health.is_ready() => text(StatusCode::OK, "ready\n".into(), "text/plain"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", health.not_ready_reason()),
            "text/plain",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

/// The metrics port's limits: Prometheus and the kubelet's probes need a
/// few connections, each a request at a time. Idle ones are closed after
/// 10 s, or after half a second when every slot is taken and another
/// client waits. The cap is high enough that a probe is not queued behind
/// a thousand idle connections, and low enough to bound memory (a few MiB).
pub const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 1024,
    head_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(60),
};

/// What the metrics port serves.
struct Endpoints {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

impl Handler for Endpoints {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        answer(request.uri().path(), &self.registry, &self.health)
    }
}

/// Serves on `addr` (port 0 picks one) within [`LIMITS`]; returns the
/// bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let endpoints = Arc::new(Endpoints { registry, health });
    let task = connections::serve(listener, LIMITS, None, endpoints, std::future::pending());
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_fails_once_the_controller_died_and_readyz_with_it() {
        let (registry, health) = (Registry::default(), Health::default());
        health.set_ready(true);
        assert_eq!(answer("/healthz", &registry, &health).status(), 200);
        assert_eq!(answer("/readyz", &registry, &health).status(), 200);
        health.set_dead("the controllers stopped");
        assert_eq!(answer("/healthz", &registry, &health).status(), 503);
        assert_eq!(answer("/readyz", &registry, &health).status(), 503);
    }

    #[tokio::test]
    async fn readyz_names_what_the_operator_waits_for() {
        use http_body_util::BodyExt;
        let (registry, health) = (Registry::default(), Health::default());
        let body = |health: &Health| {
            let response = answer("/readyz", &registry, health);
            async move { response.into_body().collect().await.unwrap().to_bytes() }
        };
        assert_eq!(body(&health).await, "not ready: caches not synced\n");
        health.set_waiting(Some("CRD x is not installed".into()));
        assert_eq!(body(&health).await, "not ready: CRD x is not installed\n");
        health.set_waiting(None);
        health.set_ready(true);
        assert_eq!(body(&health).await, "ready\n");
    }
}
