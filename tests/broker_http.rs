//! The broker's HTTP side under hostile clients (huge heads, slow or idle
//! connections, bodies, encoded paths) and its TLS certificate, renewed
//! while it serves.

mod common;

use common::broker::{Fixture, Setup};
use metastudio_operator::broker::server::LIMITS;
use metastudio_operator::broker::tls::{ReloadingCert, server_config};
use metastudio_operator::telemetry::connections::ConnectionLimits;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as it is on a fresh connection; returns the status line.
async fn raw(url: &str, request: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_huge_head_gets_431_and_the_broker_keeps_serving() {
    let f = Fixture::open().await;
    let huge = format!(
        "POST /v1/oncecodes/retail HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(
        raw(&f.url, huge.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(f.ask("retail", Some("token-kiosk")).await.0, 200);
}

#[tokio::test]
async fn slow_and_idle_clients_do_not_stop_the_others() {
    let f = Fixture::open().await;
    let addr = f.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            // Half a request line, and then nothing.
            stream.write_all(b"POST /v1/once").await.unwrap();
        }
        idle.push(stream);
    }
    for _ in 0..3 {
        assert_eq!(f.ask("retail", Some("token-kiosk")).await.0, 200);
    }
    drop(idle);
}

#[tokio::test]
async fn bodies_and_encoded_paths_are_refused_without_a_review() {
    let f = Fixture::open().await;
    let chunked = b"POST /v1/oncecodes/retail HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-kiosk\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(raw(&f.url, chunked).await, "HTTP/1.1 400 Bad Request");
    for path in [
        "/v1/oncecodes/..%2F..%2Fapi%2Fv1%2Fsecrets",
        "/v1/oncecodes/%2e%2e",
        "/v1/oncecodes/retail/../shared",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-kiosk\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            raw(&f.url, request.as_bytes()).await,
            "HTTP/1.1 400 Bad Request",
            "{path}"
        );
    }
    assert!(
        f.calls.lock().unwrap().is_empty(),
        "no review for a refused request"
    );
    assert_eq!(f.sim.counters().total_calls(), 0);
}

/// A self-signed certificate for localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

#[tokio::test]
async fn the_certificate_is_served_and_a_renewed_one_is_picked_up() {
    metastudio_operator::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (certificate(), certificate());
    write_pair(dir.path(), &first);
    let cert =
        ReloadingCert::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
    let f = Fixture::tls(tokio_rustls::TlsAcceptor::from(server_config(Arc::new(
        cert,
    ))))
    .await;
    let url = format!("{}/v1/oncecodes/retail", f.url);
    let ask = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            client
                .post(url)
                .bearer_auth("token-kiosk")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(ask(client_trusting(&first.0)).await.unwrap(), 200);
    assert!(
        ask(client_trusting(&second.0)).await.is_err(),
        "not the second certificate yet"
    );
    write_pair(dir.path(), &second);
    assert_eq!(
        ask(client_trusting(&second.0)).await.unwrap(),
        200,
        "renewed without a restart"
    );
    assert!(ask(client_trusting(&first.0)).await.is_err());
    // A renewal that cannot be read keeps the certificate that works.
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    assert_eq!(ask(client_trusting(&second.0)).await.unwrap(), 200);
}

#[test]
fn a_certificate_that_cannot_be_read_stops_the_start_naming_file_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let err = ReloadingCert::load(&cert, &key).unwrap_err().to_string();
    assert!(
        err.contains("tls.crt") && err.contains("--broker-tls-cert"),
        "{err}"
    );
    let (cert_pem, _) = certificate();
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = ReloadingCert::load(&cert, &key).unwrap_err().to_string();
    assert!(
        err.contains("tls.key") && err.contains("--broker-tls-key"),
        "{err}"
    );
    assert!(
        !err.contains("AAAA"),
        "the key's content is not shown: {err}"
    );
}

/// Reads until the server closes `stream` (end of stream or reset), within
/// `deadline`; whether it did.
async fn closed_within(stream: &mut TcpStream, deadline: std::time::Duration) -> bool {
    let drain = async {
        let mut buf = [0; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(deadline, drain).await.is_ok()
}

/// A keep-alive POST on `stream`; the status line of its answer.
async fn ask_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"POST /v1/oncecodes/retail HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer garbage\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 1024];
    while !String::from_utf8_lossy(&answer).contains("}") {
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

#[tokio::test]
async fn silent_half_sent_and_idle_keep_alive_connections_are_closed_by_the_broker() {
    let f = Fixture::with(Setup {
        connections: ConnectionLimits {
            head_timeout: std::time::Duration::from_millis(300),
            ..LIMITS
        },
        ..Setup::default()
    })
    .await;
    let addr = f.url.trim_start_matches("http://").to_owned();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /v1/oncecodes/retail HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(ask_on(&mut kept_alive).await, "HTTP/1.1 401 Unauthorized");
    let deadline = std::time::Duration::from_secs(30);
    assert!(closed_within(&mut silent, deadline).await, "silent");
    assert!(closed_within(&mut half, deadline).await, "half a head");
    assert!(
        closed_within(&mut kept_alive, deadline).await,
        "idle keep-alive"
    );
}

/// Clients that send a cheap request every few seconds on every connection
/// the broker allows no longer lock a caller out: while every slot is
/// taken, the connections waiting for their next request make room.
#[tokio::test]
async fn trickling_clients_on_every_slot_do_not_lock_a_caller_out() {
    let slots = 8;
    let f = Fixture::with(Setup {
        connections: ConnectionLimits {
            max_connections: slots,
            ..LIMITS
        },
        ..Setup::default()
    })
    .await;
    let addr = f.url.trim_start_matches("http://").to_owned();
    let mut tricklers = Vec::new();
    for _ in 0..slots {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(ask_on(&mut stream).await, "HTTP/1.1 401 Unauthorized");
        // Then one cheap request every 2 s (under the 10 s head timeout),
        // for as long as the broker keeps the connection.
        tricklers.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let request = b"POST /v1/oncecodes/retail HTTP/1.1\r\nHost: x\r\n\r\n";
                let mut buf = [0; 1024];
                if stream.write_all(request).await.is_err()
                    || !matches!(stream.read(&mut buf).await, Ok(n) if n > 0)
                {
                    return;
                }
            }
        }));
    }
    // Before, the caller waited for a connection's 5-minute lifetime.
    let (status, _, body) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        f.ask("retail", Some("token-kiosk")),
    )
    .await
    .expect("the caller was served while the tricklers held every slot");
    assert_eq!(status, 200, "{body}");
    for trickler in tricklers {
        trickler.abort();
    }
}

/// Connections that open TCP and never start their TLS handshake hold no
/// slot a caller needs: while every slot is taken, a handshake that has
/// gone on for half a second is cut to make room, as an idle connection
/// is. Before, each held its slot for the handshake's timeout (here an
/// hour, so only that cut can free one).
#[tokio::test]
async fn silent_tls_handshakes_on_every_slot_do_not_lock_a_caller_out() {
    metastudio_operator::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pair = certificate();
    write_pair(dir.path(), &pair);
    let cert =
        ReloadingCert::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
    let slots = 8;
    let f = Fixture::with(Setup {
        tls: Some(tokio_rustls::TlsAcceptor::from(server_config(Arc::new(
            cert,
        )))),
        connections: ConnectionLimits {
            max_connections: slots,
            head_timeout: std::time::Duration::from_secs(3600),
            ..LIMITS
        },
        ..Setup::default()
    })
    .await;
    let addr = f.url.replace("https://localhost", "127.0.0.1");
    let mut silent = Vec::new();
    for _ in 0..slots {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let asked = client_trusting(&pair.0)
        .post(format!("{}/v1/oncecodes/retail", f.url))
        .bearer_auth("token-kiosk")
        .send();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(60), asked)
        .await
        .expect("the caller was served while silent handshakes held every slot")
        .unwrap();
    assert_eq!(answer.status(), 200);
    let deadline = std::time::Duration::from_secs(30);
    for stream in &mut silent {
        assert!(
            closed_within(stream, deadline).await,
            "a silent handshake was cut"
        );
    }
}
