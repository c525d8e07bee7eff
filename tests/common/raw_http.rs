//! Raw TCP "HTTP servers" that answer with exactly the bytes a test gives:
//! malformed, huge, endless or slow responses no well-behaved server sends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with `response`, then closes.
pub async fn raw_server(response: Vec<u8>) -> String {
    counting_server(response).await.endpoint
}

/// A [`raw_server`] that counts the connections it accepted and keeps the
/// request line (`GET /path HTTP/1.1`) of each request.
pub struct CountingServer {
    pub endpoint: String,
    connections: Arc<AtomicU64>,
    request_lines: Arc<Mutex<Vec<String>>>,
}

impl CountingServer {
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn request_lines(&self) -> Vec<String> {
        self.request_lines.lock().unwrap().clone()
    }
}

pub async fn counting_server(response: Vec<u8>) -> CountingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let request_lines = Arc::new(Mutex::new(Vec::new()));
    let (counter, lines) = (connections.clone(), request_lines.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (response, lines) = (response.clone(), lines.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = head.lines().next().filter(|l| !l.is_empty()) {
                    lines.lock().unwrap().push(line.to_owned());
                }
                let _ = stream.write_all(&response).await;
            });
        }
    });
    CountingServer {
        endpoint,
        connections,
        request_lines,
    }
}

/// A redirect answer (`status`, e.g. `307 Temporary Redirect`) to
/// `location`, without a body.
pub fn redirect_response(status: &str, request_id: &str, location: &str) -> Vec<u8> {
    head(
        status,
        request_id,
        &[
            &format!("Location: {location}"),
            "Content-Length: 0",
            "Connection: close",
        ],
    )
    .into_bytes()
}

/// An HTTP response head (status line and headers) with `X-Request-Id`.
pub fn head(status: &str, request_id: &str, headers: &[&str]) -> String {
    let mut head = format!("HTTP/1.1 {status}\r\nX-Request-Id: {request_id}\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head + "\r\n"
}

/// A complete JSON response with a Content-Length.
pub fn json_response(status: &str, request_id: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = head(
        status,
        request_id,
        &[
            "Content-Type: application/json",
            &format!("Content-Length: {}", body.len()),
            "Connection: close",
        ],
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The body of a ListActiveCode answer: `n` codes of `robot` (ids `c0`,
/// `c1`, ..., each with the code value `value`) and a `count` of its own,
/// as large and as far from the truth as a test wants.
pub fn codes_page(robot: &str, n: usize, count: u64, value: &str) -> String {
    let codes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"active_code_id":"c{i}","active_code":"{value}","robot_id":"{robot}","valid_period":1,"create_time":"2026-01-01T00:00:00Z","update_time":"2026-01-01T00:00:00Z"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"offset":0,"limit":100,"count":{count},"data":[{}]}}"#,
        codes.join(",")
    )
}

/// How a [`streaming_server`] sends the body after the head.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// `total` bytes (`u64::MAX`: forever) in 64 KiB writes, as they are.
    Raw { total: u64 },
    /// `total` bytes (`u64::MAX`: forever) as HTTP/1.1 chunks of 64 KiB.
    Chunked { total: u64 },
    /// One byte every `every`, forever (a slow-loris body).
    Drip { every: Duration },
}

/// A server that sends a head and then streams a body; it counts the body
/// bytes it managed to write, so a test sees how much the client read.
pub struct StreamingServer {
    pub endpoint: String,
    sent: Arc<AtomicU64>,
    finished: Arc<AtomicBool>,
}

impl StreamingServer {
    /// Body bytes written to the socket so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until the server stopped writing (the client hung up), at most
    /// `deadline`; returns whether it did.
    pub async fn wait_finished(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        while !self.finished.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// Serves one connection: `head`, then the body as `stream` says, until
/// the body ends or the client goes away.
pub async fn streaming_server(head: String, stream: Stream) -> StreamingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (counter, done) = (sent.clone(), finished.clone());
    tokio::spawn(async move {
        if let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            if socket.write_all(head.as_bytes()).await.is_ok() {
                let _ = send_body(&mut socket, stream, &counter).await;
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    StreamingServer {
        endpoint,
        sent,
        finished,
    }
}

async fn send_body(
    socket: &mut tokio::net::TcpStream,
    stream: Stream,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    const PIECE: usize = 64 * 1024;
    let piece = vec![b'x'; PIECE];
    match stream {
        Stream::Raw { total } | Stream::Chunked { total } => {
            let chunked = matches!(stream, Stream::Chunked { .. });
            let mut left = total;
            while left > 0 {
                let n = left.min(PIECE as u64) as usize;
                if chunked {
                    socket.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                socket.write_all(&piece[..n]).await?;
                if chunked {
                    socket.write_all(b"\r\n").await?;
                }
                sent.fetch_add(n as u64, Ordering::SeqCst);
                left = left.saturating_sub(n as u64);
            }
            if chunked {
                socket.write_all(b"0\r\n\r\n").await?;
            }
            socket.flush().await
        }
        Stream::Drip { every } => loop {
            socket.write_all(b"1\r\nx\r\n").await?;
            sent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(every).await;
        },
    }
}

/// A ListActiveCode endpoint that answers each page its `offset` asks for:
/// `per_page` codes with ids from the offset on (distinct across pages),
/// up to offset `until` (empty pages after), each page after `delay`, all
/// of them claiming `count`.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub count: u64,
    pub per_page: u64,
    pub until: u64,
    pub delay: Duration,
}

impl Paging {
    fn page(&self, offset: u64) -> String {
        let end = self.until.min(self.count).min(offset + self.per_page);
        let codes: Vec<String> = (offset..end.max(offset))
            .map(|i| {
                format!(
                    r#"{{"active_code_id":"c{i}","active_code":"V","robot_id":"r","valid_period":1,"create_time":"2026-01-01T00:00:00Z","update_time":"2026-01-01T00:00:00Z"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"offset":{offset},"limit":100,"count":{},"data":[{}]}}"#,
            self.count,
            codes.join(",")
        )
    }

    /// Serves on port 0; returns the endpoint.
    pub async fn serve(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let offset: u64 = head
                        .split(['?', '&', ' '])
                        .find_map(|p| p.strip_prefix("offset=")?.parse().ok())
                        .unwrap_or(0);
                    tokio::time::sleep(self.delay).await;
                    let page = self.page(offset);
                    let _ = stream
                        .write_all(&json_response("200 OK", "rid-page", page.as_bytes()))
                        .await;
                });
            }
        });
        endpoint
    }
}
