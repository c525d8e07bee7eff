//! kube's mocked API service (tower-test), scripted: each expected request
//! is checked (method, path) and answered in order, as kube-rs's
//! controller-rs fixtures do.

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (kube::Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let events = std::collections::HashMap::new();
    (
        kube::Client::new(service, "default"),
        ApiServer { handle, events },
    )
}

pub struct ApiServer {
    handle: Handle,
    /// The Events created so far, by name, as a series patch leaves them.
    events: std::collections::HashMap<String, Value>,
}

/// A request the code under test made.
#[derive(Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub raw: String,
}

impl ApiServer {
    /// Waits (up to 10 s) for the next request, checks its method and path,
    /// answers `status` with `answer`.
    pub async fn expect(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        answer: Value,
    ) -> Received {
        let next = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"));
        let (request, send) = next.expect("the client is alive");
        let received = Received {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or_default().to_owned(),
            raw: String::new(),
            body: Value::Null,
        };
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(
            (received.method.as_str(), received.path.as_str()),
            (method, path),
            "unexpected request; body: {raw}"
        );
        let response = Response::builder()
            .status(status)
            .header("Content-Type", "application/json")
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap();
        send.send_response(response);
        Received {
            body,
            raw,
            ..received
        }
    }

    /// Awaits the code under test (up to 10 s) after its last expected
    /// request, failing at once if it makes another one: a stray request
    /// must fail the test, not hang it.
    pub async fn finish<T>(&mut self, task: tokio::task::JoinHandle<T>) -> T {
        tokio::select! {
            biased;
            Some((request, _)) = self.handle.next_request() => panic!(
                "unexpected request after the last expected one: {} {}",
                request.method(),
                request.uri()
            ),
            done = tokio::time::timeout(Duration::from_secs(10), task) => done
                .expect("the reconcile finished within 10 s")
                .expect("the reconcile did not panic"),
        }
    }

    /// An Event with this reason: a POST, or a PATCH of an Event created
    /// before when the publisher folds an identical repeat into its series.
    /// Answered with the event; `body` is the whole Event after the request.
    pub async fn expect_event(&mut self, namespace: &str, reason: &str) -> Received {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let next = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected event {reason}"));
        let (request, send) = next.expect("the client is alive");
        let (method, got_path) = (
            request.method().to_string(),
            request.uri().path().to_owned(),
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        let body = match (method.as_str(), got_path.strip_prefix(&format!("{path}/"))) {
            ("POST", None) if got_path == path => {
                let name = sent["metadata"]["name"].as_str().expect("a named Event");
                self.events.insert(name.to_owned(), sent.clone());
                sent
            }
            ("PATCH", Some(name)) => {
                let event = self
                    .events
                    .get_mut(name)
                    .unwrap_or_else(|| panic!("PATCH of an Event never created: {name}"));
                event["series"] = sent["series"].clone();
                event.clone()
            }
            _ => panic!("expected event {reason}, got {method} {got_path}; body: {raw}"),
        };
        assert_eq!(body["reason"], reason, "event: {body}");
        let response = Response::builder()
            .status(if method == "POST" { 201 } else { 200 })
            .header("Content-Type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(response);
        Received {
            method,
            path: got_path,
            query: String::new(),
            body,
            raw,
        }
    }
}

pub fn not_found(kind: &str, name: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound", "code": 404
    })
}

/// A Secret as the API server returns it (data base64-encoded).
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": data})
}
