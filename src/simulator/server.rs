//! The simulator's HTTP side: routing, the gateway's checks (signature,
//! project, throttling), parameter validation as the API pages state, and
//! fault injection.

use super::Shared;
use super::auth::{ReceivedRequest, parse_query};
use super::counters::{DROPPED, LOST};
use super::faults::Fault;
use super::store::StoreError;
use crate::metastudio::Operation;
use crate::metastudio::signer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Request bodies above this are refused with 400 `MSS.00000002`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Returned to hyper to close the connection without an answer.
#[derive(Debug)]
pub struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection loss")
    }
}

impl std::error::Error for Hangup {}

type Answer = Response<Full<Bytes>>;

/// A request routed to one of the seven operations.
enum Route {
    List,
    Create,
    Delete,
    Show(String),
    Update(String),
    Reset(String),
    OnceCode,
}

impl Route {
    fn operation(&self) -> Operation {
        match self {
            Route::List => Operation::ListActiveCode,
            Route::Create => Operation::CreateActiveCode,
            Route::Delete => Operation::DeleteActiveCode,
            Route::Show(_) => Operation::ShowActiveCode,
            Route::Update(_) => Operation::UpdateActiveCode,
            Route::Reset(_) => Operation::ResetActiveCode,
            Route::OnceCode => Operation::CreateOnceCode,
        }
    }
}

/// `/v1/{project_id}/digital-human-chat/...` to (project, route).
fn route(method: &Method, path: &str) -> Option<(String, Route)> {
    let segments: Vec<String> = path.split('/').map(signer::decode).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (project, rest) = match segs.as_slice() {
        ["", "v1", project, "digital-human-chat", rest @ ..] => (*project, rest),
        _ => return None,
    };
    let route = match (method, rest) {
        (&Method::GET, ["active-code"]) => Route::List,
        (&Method::POST, ["active-code"]) => Route::Create,
        (&Method::POST, ["active-code", "delete"]) => Route::Delete,
        (&Method::GET, ["active-code", id]) => Route::Show((*id).to_owned()),
        (&Method::PUT, ["active-code", id]) => Route::Update((*id).to_owned()),
        (&Method::PUT, ["active-code", id, "reset"]) => Route::Reset((*id).to_owned()),
        (&Method::POST, ["once-code"]) => Route::OnceCode,
        _ => return None,
    };
    Some((project.to_owned(), route))
}

/// An error answer in the Huawei shape.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    /// The API pages' exact answer; the parameter is named only in the
    /// simulator's own log, as the real service names none.
    fn invalid_parameter(name: &str) -> Self {
        tracing::debug!(parameter = name, "refused: invalid parameter");
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "MSS.00000003",
            message: "Invalid parameter".into(),
        }
    }

    fn invalid_body(why: &str) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "MSS.00000002",
            message: format!("Invalid body: {why}"),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UnknownCode(_) => Failure {
                status: StatusCode::BAD_REQUEST,
                code: "MSS.47010041",
                message: "The activation code does not exist".into(),
            },
            StoreError::InvalidParameter(name) => Failure::invalid_parameter(name),
        }
    }
}

fn answer(status: StatusCode, body: Vec<u8>, request_id: &str) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "Content-Type",
        "application/json".parse().expect("static header"),
    );
    headers.insert("X-Request-Id", request_id.parse().expect("hex request id"));
    response
}

fn json_answer<T: Serialize>(status: StatusCode, value: &T, request_id: &str) -> Answer {
    answer(
        status,
        serde_json::to_vec(value).expect("answers serialise"),
        request_id,
    )
}

fn failure_answer(failure: &Failure, request_id: &str) -> Answer {
    json_answer(
        failure.status,
        &json!({"error_code": failure.code, "error_msg": failure.message}),
        request_id,
    )
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Answer, Hangup> {
    let request_id = shared.next_request_id();
    let answer = respond(&shared, request, &request_id).await?;
    if !answer.status().is_success() {
        shared
            .request_ids
            .record_failure(&request_id, answer.status().as_u16());
    }
    Ok(answer)
}

/// The answer to one request (`request_id` is already drawn).
async fn respond(
    shared: &Shared,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Answer, Hangup> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(failure_answer(
                &Failure::invalid_body("the body is larger than 64 KiB or unreadable"),
                request_id,
            ));
        }
    };
    let path = parts.uri.path();
    if path.starts_with(super::control::PREFIX) {
        return Ok(super::control::handle(
            shared,
            &parts.method,
            path,
            &body,
            request_id,
        ));
    }
    let Some((project, route)) = route(&parts.method, path) else {
        return Ok(failure_answer(
            &Failure {
                status: StatusCode::NOT_FOUND,
                code: "APIGW.0101",
                message: "The API does not exist or has not been published in the environment"
                    .into(),
            },
            request_id,
        ));
    };
    let operation = route.operation();
    let (fault, delay) = shared.draw_fault(operation);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let received = ReceivedRequest {
        method: parts.method.as_str(),
        path,
        raw_query: parts.uri.query().unwrap_or_default(),
        headers: &headers,
        body: &body,
    };
    if let Err(failure) = shared.gateway_check(&received, &project) {
        shared.record_call(operation, failure.status.as_str());
        return Ok(failure_answer(&failure, request_id));
    }

    if let Err(retry_after) = shared.flow_control(operation) {
        shared.record_call(operation, "429");
        return Ok(throttled(request_id, retry_after));
    }

    match fault {
        Fault::ServerError => {
            shared.record_call(operation, "500");
            let failure = Failure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "MSS.00000001",
                message: "Internal server error (injected by the simulator)".into(),
            };
            return Ok(failure_answer(&failure, request_id));
        }
        Fault::Throttle => {
            shared.record_call(operation, "429");
            return Ok(throttled(request_id, shared.retry_after_secs()));
        }
        Fault::Drop => {
            shared.record_call(operation, DROPPED);
            return Err(Hangup);
        }
        Fault::None | Fault::LoseResponse | Fault::GarbleResponse => {}
    }

    let query = parse_query(received.raw_query);
    match execute(shared, route, &query, &body) {
        Ok(Done { status, body: out }) => {
            if fault == Fault::LoseResponse {
                shared.record_call(operation, LOST);
                return Err(Hangup);
            }
            if fault == Fault::GarbleResponse {
                shared.record_call(operation, status.as_str());
                let cut = out.len() / 2;
                return Ok(answer(status, out[..cut].to_vec(), request_id));
            }
            shared.record_call(operation, status.as_str());
            Ok(answer(status, out, request_id))
        }
        Err(failure) => {
            shared.record_call(operation, failure.status.as_str());
            Ok(failure_answer(&failure, request_id))
        }
    }
}

/// The gateway's 429 `APIGW.0308`, with `Retry-After` in seconds.
fn throttled(request_id: &str, retry_after_secs: u64) -> Answer {
    let failure = Failure {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "APIGW.0308",
        message: "The throttling threshold has been reached".into(),
    };
    let mut response = failure_answer(&failure, request_id);
    response.headers_mut().insert(
        "Retry-After",
        retry_after_secs
            .to_string()
            .parse()
            .expect("digits are a header value"),
    );
    response
}

/// A successful operation's answer.
struct Done {
    status: StatusCode,
    body: Vec<u8>,
}

fn ok<T: Serialize>(value: &T) -> Done {
    Done {
        status: StatusCode::OK,
        body: serde_json::to_vec(value).expect("answers serialise"),
    }
}

fn query_param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An integer query parameter within `range`, or its default.
fn int_param(
    query: &[(String, String)],
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32, Failure> {
    match query_param(query, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| Failure::invalid_parameter(name)),
    }
}

fn json_body(body: &[u8], required: bool) -> Result<Option<Value>, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if required {
            Err(Failure::invalid_body("a JSON body is required"))
        } else {
            Ok(None)
        };
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| Failure::invalid_body("the body is not valid JSON"))
}

fn object(value: Option<Value>) -> Result<serde_json::Map<String, Value>, Failure> {
    match value {
        None => Ok(Default::default()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(Failure::invalid_body("the body must be a JSON object")),
    }
}

fn valid_period(map: &serde_json::Map<String, Value>) -> Result<Option<u16>, Failure> {
    match map.get("valid_period") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|v| u16::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| Failure::invalid_parameter("valid_period")),
    }
}

fn optional_string(
    map: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, Failure> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Failure::invalid_parameter(name)),
    }
}

fn execute(
    shared: &Shared,
    route: Route,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Done, Failure> {
    match route {
        Route::List => {
            let robot_id = query_param(query, "robot_id")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| Failure::invalid_parameter("robot_id"))?;
            let offset = int_param(query, "offset", 0..=2_147_483_647, 0)?;
            let limit = int_param(query, "limit", 1..=100, 10)?;
            Ok(ok(&shared.store().list(robot_id, offset, limit)))
        }
        Route::Show(id) => Ok(ok(&shared.store().show(&id)?)),
        Route::Create => {
            let map = object(json_body(body, true)?)?;
            // robot_id and room_id are both required (CreateActiveCodeReq).
            let robot_id = optional_string(&map, "robot_id")?
                .ok_or_else(|| Failure::invalid_parameter("robot_id"))?;
            let room_id = optional_string(&map, "room_id")?
                .filter(|r| !r.is_empty())
                .ok_or_else(|| Failure::invalid_parameter("room_id"))?;
            let days = valid_period(&map)?.unwrap_or(0);
            let code = shared.store().create(&robot_id, Some(room_id), days)?;
            shared.record_change(Operation::CreateActiveCode, &code.active_code_id);
            Ok(ok(&code))
        }
        Route::Update(id) => {
            let map = object(json_body(body, true)?)?;
            let days = valid_period(&map)?;
            let code = shared.store().update(&id, days)?;
            shared.record_change(Operation::UpdateActiveCode, &id);
            Ok(ok(&code))
        }
        Route::Reset(id) => {
            let map = object(json_body(body, false)?)?;
            match map.get("clean_auth_credential") {
                None | Some(Value::Null) | Some(Value::Bool(_)) => {}
                Some(_) => return Err(Failure::invalid_parameter("clean_auth_credential")),
            }
            let code = shared.store().reset(&id)?;
            shared.record_change(Operation::ResetActiveCode, &id);
            Ok(ok(&code))
        }
        Route::Delete => {
            let ids: Vec<String> = match json_body(body, true)? {
                Some(Value::Array(items)) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s),
                        _ => Err(Failure::invalid_parameter("body")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(Failure::invalid_body("the body must be an array of ids")),
            };
            shared.store().delete(&ids)?;
            for id in &ids {
                shared.record_change(Operation::DeleteActiveCode, id);
            }
            Ok(Done {
                status: StatusCode::NO_CONTENT,
                body: Vec::new(),
            })
        }
        Route::OnceCode => Ok(ok(&json!({"once_code": shared.store().once_code()}))),
    }
}

impl Shared {
    /// What the API gateway checks before the service sees the call.
    fn gateway_check(&self, request: &ReceivedRequest<'_>, project: &str) -> Result<(), Failure> {
        // Signatures are dated by the caller's real clock: the store's
        // clock may have been moved forward to age codes.
        let now = jiff::Timestamp::now();
        self.accepted
            .check(request, now)
            .map_err(|refusal| Failure {
                status: StatusCode::UNAUTHORIZED,
                code: "APIGW.0301",
                message: refusal.0,
            })?;
        let header_project = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-Project-Id"))
            .map(|(_, v)| v.as_str());
        if project != self.project_id || header_project.is_some_and(|p| p != project) {
            return Err(Failure {
                status: StatusCode::BAD_REQUEST,
                code: "MSS.00010009",
                message: "urlTenantId is not equal tokenTenantId".into(),
            });
        }
        let user = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-App-UserId"))
            .map(|(_, v)| v.as_str());
        if user.is_some_and(|u| !crate::metastudio::connection::is_app_user_id(u)) {
            return Err(Failure::invalid_parameter("X-App-UserId"));
        }
        Ok(())
    }
}
