//! Serving HTTP/1.1 within limits, for the metrics port and the once-code
//! broker, so that idle, slow or merely numerous clients cannot take the
//! server from the others:
//!
//! * at most [`ConnectionLimits::max_connections`] connections are served
//!   at once; more wait in the listen backlog;
//! * a request's head (and a TLS handshake) must arrive within
//!   [`ConnectionLimits::head_timeout`], counted from the connection's start
//!   or from the end of the previous answer: the same timer is the idle
//!   keep-alive timeout;
//! * a connection lives at most [`ConnectionLimits::lifetime`];
//! * while every slot is taken and another client waits, connections that
//!   have waited [`SHED_AFTER_IDLE`] or more for their next request, or
//!   whose TLS handshake has gone on that long, are closed to make room (a
//!   request in progress is never cut), so clients that send a cheap
//!   request now and then, or open connections and say nothing, cannot
//!   hold every slot;
//! * an accept error (`EMFILE`: the process is out of file descriptors)
//!   backs off, 10 ms doubling up to 1 s, instead of spinning.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// What one listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// For a TLS handshake, and for each request's head from the start of
    /// the connection or the end of the previous answer (so also the idle
    /// keep-alive timeout).
    pub head_timeout: Duration,
    /// The longest a connection stays open, however it is used.
    pub lifetime: Duration,
}

/// A connection that has waited this long for its next request may be
/// closed for a new client while every slot is taken; a younger one keeps
/// its chance to send its first request. Holding every slot thus takes
/// two requests a second on each connection, not one now and then.
pub const SHED_AFTER_IDLE: Duration = Duration::from_millis(500);
/// While every slot is taken and a client waits, how often idle
/// connections are asked again to make room.
const PRESSURE_TICK: Duration = Duration::from_millis(100);
/// Buffer for one request's head: larger heads get 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The first and the longest wait after an accept error.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning about accept errors per this long.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// What a server answers; one call per request.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves `handler` on `listener` within `limits`, over TLS when `tls` is
/// set, until `shutdown`.
pub fn serve<H: Handler>(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let room = Room::new(limits.max_connections);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut backoff = AcceptBackoff::default();
        loop {
            let stream = tokio::select! {
                stream = next_connection(|| listener.accept(), &mut backoff) => stream.0,
                () = &mut shutdown => return,
            };
            let slot = tokio::select! {
                slot = room.slot() => slot,
                () = &mut shutdown => return,
            };
            let served = connection(stream, tls.clone(), handler.clone(), slot, limits);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(limits.lifetime, served).await;
            });
        }
    })
}

/// One connection: the TLS handshake if any, then HTTP/1.1.
async fn connection<H: Handler>(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    slot: Slot,
    limits: ConnectionLimits,
) {
    match tls {
        Some(tls) => {
            let handshake = tokio::time::timeout(limits.head_timeout, tls.accept(stream));
            if let Some(Ok(Ok(stream))) = unless_shed(handshake, &slot).await {
                http(stream, handler, slot, limits).await;
            }
        }
        None => http(stream, handler, slot, limits).await,
    }
}

/// Awaits `work`, which serves no request (a TLS handshake), unless the
/// room needs the slot meanwhile and the connection has gone
/// [`SHED_AFTER_IDLE`] without a request: then `None`, and the connection
/// is closed. A client that opens connections and never starts its
/// handshake thus holds a slot only while no one else needs it.
async fn unless_shed<F: Future>(work: F, slot: &Slot) -> Option<F::Output> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = work.as_mut() => return Some(output),
            () = slot.pressure.notified() => {
                if slot.activity.idle_for().is_some_and(|idle| idle >= SHED_AFTER_IDLE) {
                    return None;
                }
            }
        }
    }
}

/// Serves requests on `io` until the client leaves, the head timeout
/// fires, or the room needs the slot while the connection is idle.
async fn http<I, H>(io: I, handler: Arc<H>, slot: Slot, limits: ConnectionLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = slot.activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let (handler, busy) = (handler.clone(), activity.busy());
        async move {
            let response = handler.handle(request).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = slot.pressure.notified() => {
                if slot.activity.idle_for().is_some_and(|idle| idle >= SHED_AFTER_IDLE) {
                    break;
                }
            }
        }
    }
    // Idle: closes at once (an answer being written is finished first).
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The slots of one listener, and the signal that asks idle connections
/// to make room.
struct Room {
    slots: Arc<Semaphore>,
    pressure: Arc<Notify>,
}

/// One connection's slot, held while it is served.
struct Slot {
    _permit: OwnedSemaphorePermit,
    pressure: Arc<Notify>,
    activity: Arc<Activity>,
}

impl Room {
    fn new(max_connections: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            pressure: Arc::new(Notify::new()),
        }
    }

    /// A free slot; while there is none, idle connections are asked every
    /// [`PRESSURE_TICK`] to close.
    async fn slot(&self) -> Slot {
        let permit = loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                break permit;
            }
            self.pressure.notify_waiters();
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => break permit.expect("never closed"),
                () = tokio::time::sleep(PRESSURE_TICK) => {}
            }
        };
        Slot {
            _permit: permit,
            pressure: self.pressure.clone(),
            activity: Arc::new(Activity::new()),
        }
    }
}

/// Whether a connection is answering a request, and since when it is not.
struct Activity(Mutex<(usize, Instant)>);

/// Marks its connection busy until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Self(Mutex::new((0, Instant::now())))
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.0.lock().expect("activity lock").0 += 1;
        Busy(self.clone())
    }

    /// How long the connection has waited for a request; `None` while it
    /// answers one.
    fn idle_for(&self) -> Option<Duration> {
        let (busy, since) = *self.0.lock().expect("activity lock");
        (busy == 0).then(|| since.elapsed())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.0.lock().expect("activity lock");
        *state = (state.0 - 1, Instant::now());
    }
}

/// The waits after accept errors.
#[derive(Debug)]
struct AcceptBackoff {
    next: Duration,
    warned: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: ACCEPT_BACKOFF_FIRST,
            warned: None,
        }
    }
}

/// The next accepted connection: `accept` is tried again after each error,
/// later each time.
async fn next_connection<T, F>(mut accept: impl FnMut() -> F, backoff: &mut AcceptBackoff) -> T
where
    F: Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(accepted) => {
                backoff.next = ACCEPT_BACKOFF_FIRST;
                return accepted;
            }
            Err(err) => {
                let wait = backoff.next;
                if backoff
                    .warned
                    .is_none_or(|at| at.elapsed() >= ACCEPT_WARN_EVERY)
                {
                    warn!(error = %err, "cannot accept connections; backing off (out of file descriptors?)");
                    backoff.warned = Some(Instant::now());
                } else {
                    debug!(error = %err, ?wait, "cannot accept a connection");
                }
                tokio::time::sleep(wait).await;
                backoff.next = (wait * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ok200;

    impl Handler for Ok200 {
        async fn handle(&self, _: Request<Incoming>) -> Response<Full<Bytes>> {
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    }

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 2,
        head_timeout: Duration::from_secs(10),
        lifetime: Duration::from_secs(300),
    };

    async fn server(limits: ConnectionLimits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve(
            listener,
            limits,
            None,
            Arc::new(Ok200),
            std::future::pending(),
        );
        addr
    }

    /// A keep-alive GET and its answer, read up to the body `ok`.
    async fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut buf = [0; 1024];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap()
            .to_owned()
    }

    /// Whether the server closes `stream` (end of stream or reset) within
    /// [`DEADLINE`].
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0; 64];
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(0) | Err(_)))
    }

    /// How long a test waits for what it expects before it fails: far more
    /// than any limit it sets short, far less than those it sets long, so
    /// only the mechanism under test can make it pass. Real time: these
    /// tests use real sockets, which paused time would race.
    const DEADLINE: Duration = Duration::from_secs(30);
    /// A limit no test reaches.
    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_connection_that_sends_nothing_more_is_closed_after_the_head_timeout() {
        let addr = server(ConnectionLimits {
            head_timeout: Duration::from_millis(300),
            lifetime: HOUR,
            ..LIMITS
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut kept_alive = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(&mut kept_alive).await, "HTTP/1.1 200 OK");
        assert!(closed(&mut silent).await, "silent from the start");
        assert!(closed(&mut kept_alive).await, "idle after an answer");
    }

    #[tokio::test]
    async fn with_every_slot_taken_idle_connections_make_room_for_a_new_client() {
        let limits = ConnectionLimits {
            head_timeout: HOUR,
            lifetime: HOUR,
            ..LIMITS
        };
        let addr = server(limits).await;
        let mut idle = Vec::new();
        for _ in 0..limits.max_connections {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert_eq!(get(&mut stream).await, "HTTP/1.1 200 OK");
            idle.push(stream);
        }
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        let served = tokio::time::timeout(DEADLINE, get(&mut newcomer)).await;
        assert_eq!(
            served.expect("served while every slot was taken"),
            "HTTP/1.1 200 OK"
        );
        for stream in &mut idle {
            assert!(closed(stream).await, "an idle connection made room");
        }
        assert_eq!(
            get(&mut newcomer).await,
            "HTTP/1.1 200 OK",
            "the newcomer is served on"
        );
    }

    #[tokio::test]
    async fn a_connection_is_closed_at_the_end_of_its_lifetime() {
        let addr = server(ConnectionLimits {
            head_timeout: HOUR,
            lifetime: Duration::from_millis(300),
            ..LIMITS
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(&mut stream).await, "HTTP/1.1 200 OK");
        assert!(closed(&mut stream).await);
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_instead_of_spinning() {
        let tries = AtomicUsize::new(0);
        let mut backoff = AcceptBackoff::default();
        let started = Instant::now();
        let accepted = next_connection(
            || {
                let n = tries.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 10 {
                        Err(std::io::Error::from_raw_os_error(24)) // EMFILE
                    } else {
                        Ok(n)
                    }
                }
            },
            &mut backoff,
        )
        .await;
        assert_eq!(accepted, 10);
        // 10 + 20 + 40 + ... + 640 ms, then 1 s three times.
        assert_eq!(started.elapsed(), Duration::from_millis(1270 + 3000));
        assert_eq!(
            backoff.next, ACCEPT_BACKOFF_FIRST,
            "a success starts the waits over"
        );
    }
}
