//! The simulator's own endpoints under `/_simulator/`, for tests and demos
//! driving a simulator in another process. They need no signature.
//!
//! - `GET  /_simulator/counters`: calls by operation and status, changes per code;
//! - `POST /_simulator/once-code/use` `{"once_code": "..."}`: use a once-code
//!   as a chat client would (`accepted`, `already_used`, `expired`, `unknown`);
//! - `POST /_simulator/clock` `{"advance": "25h"}`: move the clock forward.

use super::Shared;
use crate::duration::HumanDuration;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

pub const PREFIX: &str = "/_simulator/";

pub(super) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &[u8],
    request_id: &str,
) -> Response<Full<Bytes>> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (status, value) = match (method, path) {
        (&Method::GET, "/_simulator/counters") => (
            StatusCode::OK,
            serde_json::to_value(&*shared.counters()).expect("counters serialise"),
        ),
        (&Method::POST, "/_simulator/once-code/use") => match body["once_code"].as_str() {
            Some(code) => (
                StatusCode::OK,
                json!({"result": shared.store().use_once_code(code)}),
            ),
            None => (
                StatusCode::BAD_REQUEST,
                json!({"error_code": "MSS.00000003", "error_msg": "Invalid parameter: once_code"}),
            ),
        },
        (&Method::POST, "/_simulator/clock") => {
            match body["advance"].as_str().map(str::parse::<HumanDuration>) {
                Some(Ok(by)) => {
                    let by =
                        jiff::SignedDuration::try_from(by.0).unwrap_or(jiff::SignedDuration::ZERO);
                    let mut store = shared.store();
                    store.advance_clock(by);
                    (StatusCode::OK, json!({"now": store.now().to_string()}))
                }
                _ => (
                    StatusCode::BAD_REQUEST,
                    json!({"error_code": "MSS.00000003", "error_msg": "Invalid parameter: advance (e.g. \"25h\")"}),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error_code": "APIGW.0101", "error_msg": "No such simulator endpoint"}),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&value).expect("json serialises"),
    )));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("Content-Type", "application/json".parse().expect("static"));
    response
        .headers_mut()
        .insert("X-Request-Id", request_id.parse().expect("hex"));
    response
}
