//! A local, faithful stand-in for MetaStudio's activation-code API.
//!
//! It serves the seven operations at the official paths with the official
//! shapes, checks AK/SK signatures like the API gateway, validates
//! parameters as the API pages state, and injects seeded faults. Tests,
//! benchmarks and the README's demo run against it.

pub mod auth;
mod control;
pub mod counters;
pub mod faults;
mod flow_control;
pub mod request_ids;
pub mod seed;
mod server;
pub mod store;

pub use auth::Accepted;
pub use counters::Counters;
pub use faults::FaultConfig;
pub use seed::Seed;

use crate::metastudio::Operation;
use crate::metastudio::pacing::Quotas;
use faults::{Fault, Faults};
use flow_control::FlowControl;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use request_ids::RequestIds;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The access key and secret key the simulator accepts when
/// `CLOUD_SDK_AK` / `CLOUD_SDK_SK` are not set.
pub const DEFAULT_ACCESS_KEY: &str = "SIMULATORACCESSKEY";
pub const DEFAULT_SECRET_KEY: &str = "simulator-secret-key";
pub const DEFAULT_PROJECT_ID: &str = "0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub project_id: String,
    pub accepted: Accepted,
    pub faults: FaultConfig,
    pub seed: Option<Seed>,
    /// Seeds code ids and values, so runs can be repeated.
    pub random_seed: u64,
    /// Per-tenant flow control like the API gateway's; `None`: unlimited.
    pub quotas: Option<Quotas>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            project_id: DEFAULT_PROJECT_ID.into(),
            accepted: Accepted {
                keys: [(DEFAULT_ACCESS_KEY.to_owned(), DEFAULT_SECRET_KEY.to_owned())].into(),
                tokens: Vec::new(),
            },
            faults: FaultConfig::default(),
            seed: None,
            random_seed: 1,
            quotas: None,
        }
    }
}

/// State shared by every connection.
struct Shared {
    project_id: String,
    accepted: Accepted,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    counters: Mutex<Counters>,
    request_ids: RequestIds,
    flow_control: Mutex<Option<FlowControl>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("simulator store lock")
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().expect("simulator counters lock")
    }

    fn next_request_id(&self) -> String {
        self.request_ids.next()
    }

    fn draw_fault(&self, operation: Operation) -> (Fault, Duration) {
        self.faults.lock().expect("fault lock").draw(operation)
    }

    /// `Err(seconds)`: over the quota, try again after that long.
    fn flow_control(&self, operation: Operation) -> Result<(), u64> {
        match &*self.flow_control.lock().expect("flow control lock") {
            None => Ok(()),
            Some(gate) => gate
                .admit(operation)
                .map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64),
        }
    }

    fn retry_after_secs(&self) -> u64 {
        self.faults
            .lock()
            .expect("fault lock")
            .config()
            .retry_after_secs
    }

    fn record_call(&self, operation: Operation, status: &str) {
        self.counters().record_call(operation, status);
    }

    fn record_change(&self, operation: Operation, code_id: &str) {
        self.counters().record_change(operation, code_id);
    }
}

/// A running simulator; dropping it stops the server.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Binds `listen` (port 0 picks a free port) and serves in the background.
    pub async fn start(config: SimulatorConfig, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(config.random_seed);
        if let Some(seed) = &config.seed {
            seed.apply(&mut store);
        }
        let shared = Arc::new(Shared {
            project_id: config.project_id,
            accepted: config.accepted,
            store: Mutex::new(store),
            faults: Mutex::new(Faults::new(config.faults)),
            counters: Mutex::new(Counters::default()),
            request_ids: RequestIds::new(config.random_seed),
            flow_control: Mutex::new(config.quotas.map(FlowControl::new)),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(Self { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the endpoint to give a client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn project_id(&self) -> &str {
        &self.shared.project_id
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters().clone()
    }

    /// Whether this simulator sent `id` as an `X-Request-Id`.
    pub fn issued_request_id(&self, id: &str) -> bool {
        self.shared.request_ids.issued(id)
    }

    /// The HTTP status of the error answer that carried `X-Request-Id: id`
    /// (the last [`request_ids::REMEMBERED_FAILURES`] are remembered);
    /// `None` for a success, a lost answer or an unknown id.
    pub fn failed_answer_status(&self, id: &str) -> Option<u16> {
        self.shared.request_ids.failure_status(id)
    }

    /// Enforces these per-tenant quotas from now on (`None`: none), as the
    /// API gateway does.
    pub fn set_quotas(&self, quotas: Option<Quotas>) {
        *self.shared.flow_control.lock().expect("flow control lock") = quotas.map(FlowControl::new);
    }

    pub fn set_faults(&self, config: FaultConfig) {
        *self.shared.faults.lock().expect("fault lock") = Faults::new(config);
    }

    /// Runs `f` on the store (to inspect or arrange state in tests).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.shared.store())
    }

    /// Serves until the task is aborted or the process ends.
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in the set, so aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| server::handle(shared.clone(), request));
                    // Errors here are closed or hung-up connections: expected.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
