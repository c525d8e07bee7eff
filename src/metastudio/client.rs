//! The async MetaStudio client: signing, timeouts, retries, pacing.
//!
//! A [`Transport`] holds what every call shares: one connection pool, the
//! retry policy, one [`Pacer`] per set of credentials and the call metrics. A
//! [`MetaStudioClient`] is a cheap handle that pairs it with one
//! [`Connection`] (endpoint, project, credentials).

use super::breaker::{BreakerPolicy, Breakers, CredentialsId};
use super::connection::{Connection, Credentials};
use super::error::{ApiError, ApiErrorKind, Operation};
use super::listing_budget::{DEFAULT_LISTING_BUDGET, ListingBudget};
use super::metrics::ApiMetrics;
use super::models::{
    ActiveCode, ActiveCodePage, CreateActiveCodeBody, ErrorBody, OnceCode, ResetActiveCodeBody,
    UpdateActiveCodeBody,
};
use super::pacing::{Budgets, CallClass, Pacer, Pacing};
use super::recent::Recent;
use super::retry::RetryPolicy;
use super::signer::{self, SignableRequest};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, warn};

/// The API caps `limit` at 100.
pub const MAX_PAGE_SIZE: u32 = 100;

/// A listing that has not ended after this many pages is refused: the
/// server's answers do not add up (a listing reads at most
/// `listing::MAX_LISTED_CODES` codes, a thousand full pages).
pub const MAX_LIST_PAGES: u32 = 10_000;

/// Settings shared by every call of one [`Transport`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per attempt, from connecting to the end of the response body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// The operator-wide pacing (flags); a connection's own overlays it.
    pub pacing: Pacing,
    /// Larger response bodies are refused (hostile or broken servers).
    pub max_response_bytes: usize,
    pub user_agent: String,
    /// When to stop calling with credentials the API keeps rejecting.
    pub breaker: BreakerPolicy,
    /// The codes all listings of the process may hold at once (see
    /// [`super::listing_budget`]).
    pub listing_budget: u32,
    /// The longest one listing may take, its waits for the budget included
    /// (see [`MetaStudioClient::listing`]).
    pub listing_deadline: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            pacing: Pacing::default(),
            max_response_bytes: 8 * 1024 * 1024,
            user_agent: concat!("metastudio-operator/", env!("CARGO_PKG_VERSION")).to_owned(),
            breaker: BreakerPolicy::default(),
            listing_budget: DEFAULT_LISTING_BUDGET,
            listing_deadline: DEFAULT_LISTING_DEADLINE,
        }
    }
}

/// How long one listing may take by default: a robot of 100,000 codes
/// (the most one listing reads) is 1,000 pages, 100 s at the lowest
/// documented read quota.
pub const DEFAULT_LISTING_DEADLINE: Duration = Duration::from_secs(300);

/// The HTTP client could not be built (TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct TransportError(#[from] reqwest::Error);

#[derive(Debug)]
pub struct Transport {
    http: reqwest::Client,
    options: ClientOptions,
    /// One per set of credentials (see [`Transport::client`]); forgotten
    /// an hour after its last client is gone.
    pacers: Mutex<Recent<CredentialsId, Arc<Pacer>>>,
    breakers: Breakers,
    listings: ListingBudget,
    metrics: ApiMetrics,
}

impl Transport {
    pub fn new(options: ClientOptions) -> Result<Arc<Self>, TransportError> {
        Self::with_metrics(options, ApiMetrics::default())
    }

    pub fn with_metrics(
        options: ClientOptions,
        metrics: ApiMetrics,
    ) -> Result<Arc<Self>, TransportError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            // A redirect is an error (`ApiErrorKind::Redirected`), never
            // followed: reqwest would carry X-Auth-Token and
            // X-Security-Token to any host it points at, plain http too.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.clone())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Arc::new(Self {
            http,
            breakers: Breakers::new(options.breaker),
            listings: ListingBudget::new(options.listing_budget),
            options,
            pacers: Mutex::default(),
            metrics,
        }))
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub fn metrics(&self) -> &ApiMetrics {
        &self.metrics
    }

    /// The codes every listing of this transport may hold at once.
    pub fn listing_budget(&self) -> &ListingBudget {
        &self.listings
    }

    /// Whether MetaStudio rejected these credentials (401/403) in its last
    /// answer to them: the status, error code and request id.
    pub fn rejection(&self, connection: &Connection) -> Option<(u16, String, Option<String>)> {
        self.breakers.rejection(CredentialsId::of(connection))
    }

    /// A client for one connection. The read and write budgets belong to
    /// who calls: every client of this transport with the same endpoint,
    /// project and credentials ([`CredentialsId`], the breaker's key too)
    /// shares one [`Pacer`], and no one else does. So a connection that
    /// names another tenant's project with credentials of its own spends
    /// its own budget, never that tenant's. The budgets are the
    /// connection's pacing over the transport's, over the documented
    /// quotas of the connection's region; a client with other figures for
    /// the same credentials changes the pacer's limits in place, keeping
    /// the slots taken and the 429 cuts (give connections that share
    /// credentials one budget).
    pub fn client(self: &Arc<Self>, connection: Connection) -> MetaStudioClient {
        let credentials_id = CredentialsId::of(&connection);
        let budgets = self
            .options
            .pacing
            .overlay(&connection.options.pacing)
            .budgets(connection.quota_region().as_deref());
        MetaStudioClient {
            transport: self.clone(),
            credentials_id,
            connection: Arc::new(connection),
            pacer: self.pacer(credentials_id, budgets),
            patience: None,
        }
    }

    /// The pacer of these credentials, pacing at `budgets` from now on.
    fn pacer(&self, credentials: CredentialsId, budgets: Budgets) -> Arc<Pacer> {
        let mut pacers = self.pacers.lock().unwrap_or_else(PoisonError::into_inner);
        let pacer = pacers.touch(
            credentials,
            || Arc::new(Pacer::new(budgets)),
            // No client holds it: nothing waits on it.
            |pacer| Arc::strong_count(pacer) == 1,
        );
        pacer.set_budgets(budgets);
        pacer.clone()
    }
}

/// A successful reply with the request id the server gave it.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub value: T,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MetaStudioClient {
    transport: Arc<Transport>,
    connection: Arc<Connection>,
    credentials_id: CredentialsId,
    pacer: Arc<Pacer>,
    /// How long a call may wait for its budget: `None`, as long as its
    /// deadline allows, backing off before retries; `Some`, at most that
    /// long, and no retry (see [`MetaStudioClient::waiting_at_most`]).
    patience: Option<Duration>,
}

/// One call before it is sent: what the signer and the wire need.
struct Call {
    operation: Operation,
    method: Method,
    /// Path below `/v1/{project_id}/digital-human-chat/`, already encoded.
    path: String,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// No attempt is sent after this (see [`MetaStudioClient::create`]).
    deadline: Option<Instant>,
}

/// What one attempt produced, before the retry decision.
enum Attempt {
    Done(Answer),
    /// The call failed without an answer; the label names the failure in
    /// metrics (`connect_error`, `timeout`, ...).
    Failed(ApiErrorKind, &'static str),
}

/// An attempt that brought no reply: why, and whether another attempt may
/// help.
struct Failure {
    kind: ApiErrorKind,
    retryable: bool,
}

/// An HTTP answer, success or not.
struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    /// The `Location` header, which a redirect (3xx) names.
    location: Option<String>,
    body: Vec<u8>,
}

impl MetaStudioClient {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub(super) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// This client, with calls that wait for their budget at most
    /// `patience`: a call whose budget has no slot free by then fails at
    /// once, without waiting at all ([`ApiErrorKind::BudgetExhausted`],
    /// nothing taken, with when a slot is expected), and a failed attempt
    /// is not tried again (its `Retry-After`, if any, is in the error). For
    /// callers that answer "come back later" themselves (the broker's 429)
    /// and must not hold a request longer than a moment.
    pub fn waiting_at_most(mut self, patience: Duration) -> Self {
        self.patience = Some(patience);
        self
    }

    /// The read and write rates its tenant's budgets allow now (per
    /// second, 0 = no limit): the configured ones, or less after 429s.
    pub fn current_rates(&self) -> (f64, f64) {
        (
            self.pacer.limiter(CallClass::Read).current_rate(),
            self.pacer.limiter(CallClass::Write).current_rate(),
        )
    }

    /// One page of a robot's codes (`limit` 1..=100). A page with more
    /// codes than `limit` breaks the API's contract and is an error
    /// ([`ApiErrorKind::Protocol`]): a listing holds no more than it asked
    /// for.
    pub async fn list_page(
        &self,
        robot_id: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Reply<ActiveCodePage>, ApiError> {
        let operation = Operation::ListActiveCode;
        if robot_id.is_empty() || !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(invalid(
                operation,
                "robot_id must not be empty and limit must be 1..=100",
            ));
        }
        let reply = self
            .send::<ActiveCodePage>(Call {
                operation,
                method: Method::GET,
                path: "active-code".into(),
                query: vec![
                    ("offset".into(), offset.to_string()),
                    ("limit".into(), limit.to_string()),
                    ("robot_id".into(), robot_id.to_owned()),
                ],
                body: None,
                deadline: None,
            })
            .await?;
        let received = reply.value.data.len();
        if received > limit as usize {
            return Err(ApiError {
                operation,
                attempts: 1,
                kind: ApiErrorKind::Protocol {
                    request_id: shown_request_id(reply.request_id),
                    detail: format!(
                        "the endpoint answered {received} codes for limit {limit}; MetaStudio's own endpoint never does: point the connection at it (not a proxy or another service)"
                    ),
                },
            });
        }
        Ok(reply)
    }

    /// Every code of a robot, all pages, optionally only those of one room
    /// (the API has no room filter; it is applied here). Whether the
    /// listing was complete is [`MetaStudioClient::listing`]'s to say.
    pub async fn list_all(
        &self,
        robot_id: &str,
        room_id: Option<&str>,
    ) -> Result<Vec<ActiveCode>, ApiError> {
        let (listing, _hold) = self.listing(robot_id).await?;
        let mut codes = listing.codes;
        if let Some(room) = room_id {
            codes.retain(|c| c.room_id.as_deref() == Some(room));
        }
        Ok(codes)
    }

    pub async fn show(&self, active_code_id: &str) -> Result<Reply<ActiveCode>, ApiError> {
        self.send(Call {
            operation: Operation::ShowActiveCode,
            method: Method::GET,
            path: code_path(Operation::ShowActiveCode, active_code_id, "")?,
            query: vec![],
            body: None,
            deadline: None,
        })
        .await
    }

    /// Creates a code. Not idempotent and without a client token: retried
    /// only when the request surely never reached the server or was
    /// refused (429). No attempt is sent after `deadline`: when the write
    /// budget has no slot for one by then, the call fails with
    /// [`ApiErrorKind::NotSent`], surely not applied (the caller's batch
    /// window is over).
    pub async fn create(
        &self,
        body: &CreateActiveCodeBody,
        deadline: Option<Instant>,
    ) -> Result<Reply<ActiveCode>, ApiError> {
        self.send(Call {
            operation: Operation::CreateActiveCode,
            method: Method::POST,
            path: "active-code".into(),
            query: vec![],
            body: Some(json(body)),
            deadline,
        })
        .await
    }

    /// Sets `valid_period` (days, 0 = permanent); the validity window
    /// restarts at the moment of the call.
    pub async fn update(
        &self,
        active_code_id: &str,
        valid_period: u16,
    ) -> Result<Reply<ActiveCode>, ApiError> {
        self.send(Call {
            operation: Operation::UpdateActiveCode,
            method: Method::PUT,
            path: code_path(Operation::UpdateActiveCode, active_code_id, "")?,
            query: vec![],
            body: Some(json(&UpdateActiveCodeBody { valid_period })),
            deadline: None,
        })
        .await
    }

    /// Mints a new code value for the id. Not idempotent: it is retried only
    /// when the request surely never reached the server or was refused (429).
    pub async fn reset(
        &self,
        active_code_id: &str,
        clean_auth_credential: bool,
    ) -> Result<Reply<ActiveCode>, ApiError> {
        self.send(Call {
            operation: Operation::ResetActiveCode,
            method: Method::PUT,
            path: code_path(Operation::ResetActiveCode, active_code_id, "/reset")?,
            query: vec![],
            body: Some(json(&ResetActiveCodeBody {
                clean_auth_credential,
            })),
            deadline: None,
        })
        .await
    }

    /// Deletes the codes. No attempt is sent after `deadline` (as
    /// [`MetaStudioClient::create`]).
    pub async fn delete(
        &self,
        active_code_ids: &[String],
        deadline: Option<Instant>,
    ) -> Result<Reply<()>, ApiError> {
        if active_code_ids.is_empty() {
            return Err(invalid(
                Operation::DeleteActiveCode,
                "give at least one activation code id",
            ));
        }
        self.send(Call {
            operation: Operation::DeleteActiveCode,
            method: Method::POST,
            path: "active-code/delete".into(),
            query: vec![],
            body: Some(json(active_code_ids)),
            deadline,
        })
        .await
    }

    /// A single-use code, valid for five minutes.
    pub async fn once_code(&self) -> Result<Reply<OnceCode>, ApiError> {
        self.send(Call {
            operation: Operation::CreateOnceCode,
            method: Method::POST,
            path: "once-code".into(),
            query: vec![],
            body: None,
            deadline: None,
        })
        .await
    }

    async fn send<T: ResponseBody>(&self, call: Call) -> Result<Reply<T>, ApiError> {
        let span = debug_span!("metastudio_call", operation = %call.operation);
        let pass = match self.transport.breakers.admit(self.credentials_id) {
            Ok(pass) => pass,
            Err(held) => {
                let error = ApiError {
                    operation: call.operation,
                    attempts: 0,
                    kind: ApiErrorKind::CredentialsSuspended {
                        retry_in: held.retry_in,
                        rejections: held.rejections,
                        last_status: held.last_status,
                        last_code: held.last_code,
                        last_request_id: held.last_request_id,
                    },
                };
                span.in_scope(|| debug!(error = %error, "not sent"));
                return Err(error);
            }
        };
        // Dropped mid-flight, the pass ends a probe without a verdict.
        let result = self.send_with_retries(call).instrument(span).await;
        match &result {
            Err(err) if err.is_auth_failure() => pass.record(Some((
                err.status().unwrap_or_default(),
                err.error_code().unwrap_or_default(),
                err.request_id(),
            ))),
            // A verdict on the credentials: an answer other than 401/403.
            Ok(_) => pass.record(None),
            Err(err) if err.status().is_some() => pass.record(None),
            // No answer: no verdict.
            Err(_) => drop(pass),
        }
        result
    }

    /// The call, paced and retried as the transport's policy says; without
    /// waiting when the client was made so ([`MetaStudioClient::waiting_at_most`]).
    async fn send_with_retries<T: ResponseBody>(&self, call: Call) -> Result<Reply<T>, ApiError> {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            let error = |attempts, kind| ApiError {
                operation: call.operation,
                attempts,
                kind,
            };
            self.pace(call.operation, call.deadline)
                .await
                .map_err(|kind| error(attempts, kind))?;
            attempts += 1;
            let failure = match self.try_once::<T>(&call, attempts).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            let Some(delay) = self.retry_delay(attempts, started, &failure) else {
                let error = error(attempts, failure.kind);
                debug!(error = %error, "giving up");
                return Err(error);
            };
            warn!(attempt = attempts, delay_ms = delay.as_millis() as u64, error = %failure.kind, "retrying");
            self.transport.metrics.record_retry(call.operation);
            // Backing off from the tenant's quota holds no reconcile slot.
            crate::slots::released_while(tokio::time::sleep(delay)).await;
        }
    }

    /// A slot of the call's budget, waited for in line until the call's
    /// deadline, or, for a client with a patience, no longer than that and
    /// behind the line (see [`Pacer::acquire_behind_the_line`]).
    async fn pace(
        &self,
        operation: Operation,
        deadline: Option<Instant>,
    ) -> Result<(), ApiErrorKind> {
        let waited = match self.patience {
            None => self
                .pacer
                .acquire(operation, deadline)
                .await
                .map_err(|_| ApiErrorKind::NotSent)?,
            Some(patience) => {
                let by = Instant::now() + patience;
                self.pacer
                    .acquire_behind_the_line(operation, deadline.map_or(by, |d| d.min(by)))
                    .await
                    .map_err(|retry_in| ApiErrorKind::BudgetExhausted { retry_in })?
            }
        };
        self.transport.metrics.record_rate_limit_wait(waited);
        Ok(())
    }

    /// One attempt, holding the reconcile's slot ([`crate::slots::holding`]),
    /// and what its answer means: the reply, or why not and whether another
    /// attempt may help.
    async fn try_once<T: ResponseBody>(
        &self,
        call: &Call,
        attempts: u32,
    ) -> Result<Reply<T>, Failure> {
        let started = Instant::now();
        match crate::slots::holding(self.attempt(call)).await {
            Attempt::Done(answer) => self.answered(call, attempts, started, answer),
            Attempt::Failed(kind, label) => {
                self.transport.metrics.record_call(
                    call.operation,
                    label.to_owned(),
                    started.elapsed(),
                );
                // A failed connection never delivered the request; any
                // other failure may have, so only idempotent calls repeat.
                let retryable =
                    matches!(kind, ApiErrorKind::Connect { .. }) || call.operation.is_idempotent();
                Err(Failure { kind, retryable })
            }
        }
    }

    /// What an answer means: the decoded reply of a success, or the error
    /// (a 429 also slows the budget down; it and 5xx of idempotent calls
    /// may be tried again).
    fn answered<T: ResponseBody>(
        &self,
        call: &Call,
        attempts: u32,
        started: Instant,
        answer: Answer,
    ) -> Result<Reply<T>, Failure> {
        let metrics = &self.transport.metrics;
        let status = answer.status;
        metrics.record_call(
            call.operation,
            status.as_u16().to_string(),
            started.elapsed(),
        );
        debug!(
            attempt = attempts,
            status = status.as_u16(),
            request_id = answer.request_id.as_deref().unwrap_or("none"),
            "response"
        );
        if status.is_success() {
            let request_id = answer.request_id.clone();
            return T::decode(status, answer.request_id, &answer.body)
                .map(|value| Reply { value, request_id })
                .map_err(|kind| Failure {
                    kind,
                    retryable: false,
                });
        }
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        if throttled && let Some(class) = self.pacer.throttled(call.operation) {
            metrics.record_rate_cut(class);
        }
        Err(Failure {
            kind: service_error(answer),
            retryable: throttled || (status.is_server_error() && call.operation.is_idempotent()),
        })
    }

    /// How long to wait before the next attempt, or `None` to give up: the
    /// failure is final, the policy's attempts or time are spent, or the
    /// client does not wait.
    fn retry_delay(&self, attempts: u32, started: Instant, failure: &Failure) -> Option<Duration> {
        if !failure.retryable || self.patience.is_some() {
            return None;
        }
        let retry_after = match &failure.kind {
            ApiErrorKind::Service { retry_after, .. } => *retry_after,
            _ => None,
        };
        let policy = &self.transport.options.retry;
        let delay = policy.delay(attempts, retry_after);
        policy
            .allows(attempts, started.elapsed(), delay)
            .then_some(delay)
    }

    /// One try of a call: its URL, its headers (signed), the request, the
    /// answer read within the size limit.
    async fn attempt(&self, call: &Call) -> Attempt {
        let (url, path) = self.url(call);
        let body = call.body.clone().unwrap_or_default();
        let headers = self.headers(call, &path, &body);
        let request = self.request(call, url, &headers, body);
        match request.send().await {
            Ok(response) => self.read_answer(response).await,
            Err(err) => self.transport_failure(&err),
        }
    }

    /// The call's URL below the endpoint, with the query in canonical order
    /// and encoding (as the official SDK sends it), and its path as the
    /// signer sees it.
    fn url(&self, call: &Call) -> (Url, String) {
        let conn = &*self.connection;
        let path = format!(
            "{}/v1/{}/digital-human-chat/{}",
            conn.endpoint.path().trim_end_matches('/'),
            signer::encode(&conn.project_id),
            call.path
        );
        let query = signer::canonical_query(&call.query);
        let mut url = conn.endpoint.clone();
        url.set_path(&path);
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        (url, path)
    }

    /// Every header of the request: content type, agent, project, app user
    /// and the credentials (an AK/SK signature over the others, or the
    /// token).
    fn headers(&self, call: &Call, path: &str, body: &[u8]) -> Vec<(String, String)> {
        let conn = &*self.connection;
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            (
                "User-Agent".into(),
                self.transport.options.user_agent.clone(),
            ),
            ("X-Project-Id".into(), conn.project_id.clone()),
        ];
        if let Some(user) = &conn.app_user_id {
            headers.push(("X-App-UserId".into(), user.clone()));
        }
        match &conn.credentials {
            Credentials::AkSk {
                access_key,
                secret_key,
                security_token,
            } => {
                if let Some(token) = security_token {
                    headers.push(("X-Security-Token".into(), token.expose().to_owned()));
                }
                let date = jiff::Timestamp::now()
                    .strftime(signer::DATE_FORMAT)
                    .to_string();
                headers.push((signer::HEADER_DATE.into(), date));
                headers.push(("Host".into(), conn.host_header()));
                let signable = SignableRequest {
                    method: call.method.as_str(),
                    path,
                    query: &call.query,
                    headers: &headers,
                    body,
                };
                let authorization =
                    signer::sign(access_key.expose(), secret_key.expose(), &signable)
                        .expect("Host and X-Sdk-Date are set above");
                // The HTTP client writes Host itself, from the same URL.
                headers.retain(|(name, _)| name != "Host");
                headers.push(("Authorization".into(), authorization));
            }
            Credentials::Token(token) => {
                headers.push(("X-Auth-Token".into(), token.expose().to_owned()));
            }
        }
        headers
    }

    /// The request as the HTTP client sends it, with the attempt's timeout.
    fn request(
        &self,
        call: &Call,
        url: Url,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .transport
            .http
            .request(call.method.clone(), url)
            .timeout(self.transport.options.timeout);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if call.body.is_some() {
            request = request.body(body);
        }
        request
    }

    /// The answer: status, the headers the client uses and the body, read
    /// up to `max_response_bytes`.
    async fn read_answer(&self, response: reqwest::Response) -> Attempt {
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("X-Request-Id");
        let retry_after = header("Retry-After").and_then(|v| parse_retry_after(&v));
        // Lossy: a Location that is not ASCII is still shown (cleaned).
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match read_limited(response, self.transport.options.max_response_bytes).await {
            Ok(body) => Attempt::Done(Answer {
                status,
                request_id,
                retry_after,
                location,
                body,
            }),
            Err(ReadError::TooLarge(limit)) => Attempt::Failed(
                ApiErrorKind::Decode {
                    status: status.as_u16(),
                    request_id,
                    detail: format!("the response body exceeds {limit} bytes"),
                },
                "body_too_large",
            ),
            Err(ReadError::Transport(err)) => self.transport_failure(&err),
        }
    }

    fn transport_failure(&self, err: &reqwest::Error) -> Attempt {
        let detail = error_chain(err);
        if err.is_connect() {
            Attempt::Failed(
                ApiErrorKind::Connect {
                    endpoint: self.connection.endpoint.to_string(),
                    detail,
                },
                "connect_error",
            )
        } else if err.is_timeout() {
            Attempt::Failed(
                ApiErrorKind::Timeout {
                    timeout: self.transport.options.timeout,
                },
                "timeout",
            )
        } else {
            Attempt::Failed(ApiErrorKind::ResponseLost { detail }, "response_lost")
        }
    }
}

/// How a success body becomes a value.
trait ResponseBody: Sized {
    fn decode(
        status: StatusCode,
        request_id: Option<String>,
        body: &[u8],
    ) -> Result<Self, ApiErrorKind>;
}

macro_rules! json_response {
    ($($t:ty),*) => {$(
        impl ResponseBody for $t {
            fn decode(status: StatusCode, request_id: Option<String>, body: &[u8]) -> Result<Self, ApiErrorKind> {
                decode_json(status, request_id, body)
            }
        }
    )*};
}
json_response!(ActiveCode, ActiveCodePage, OnceCode);

impl ResponseBody for () {
    fn decode(_: StatusCode, _: Option<String>, _: &[u8]) -> Result<Self, ApiErrorKind> {
        Ok(())
    }
}

fn decode_json<T: DeserializeOwned>(
    status: StatusCode,
    request_id: Option<String>,
    body: &[u8],
) -> Result<T, ApiErrorKind> {
    decode_success(status.as_u16(), request_id, body)
}

/// The longest `error_msg` kept from an error body; a hostile or broken
/// server could otherwise put megabytes into every status and log line.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 512;
/// The longest `error_code` and `X-Request-Id` kept.
pub const MAX_ERROR_CODE_CHARS: usize = 128;

/// Decodes a success body as every call does: the value, or a `Decode`
/// error that names the field and position but never quotes a value (it
/// could be a code in the wrong place). Public for the fuzz tests.
pub fn decode_success<T: DeserializeOwned>(
    status: u16,
    request_id: Option<String>,
    body: &[u8],
) -> Result<T, ApiErrorKind> {
    let decode_error = |detail: String| ApiErrorKind::Decode {
        status,
        request_id: request_id
            .as_deref()
            .map(|id| clean(id, MAX_ERROR_CODE_CHARS)),
        detail,
    };
    // Tracking the path costs as much as the parse itself (the profile in
    // BENCHMARKS.md): parse plainly, and again with the path only to name
    // what failed.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = super::models::hide_values(&err.inner().to_string());
        // `.` is the whole body, `?` a place serde could not name.
        decode_error(if path == "." || path == "?" {
            message
        } else {
            format!("{path}: {message}")
        })
    })?;
    deserializer
        .end()
        .map_err(|err| decode_error(super::models::hide_values(&err.to_string())))?;
    Ok(value)
}

/// The error of a non-success answer, as every call builds it: the
/// Huawei error body's code and message when it has one (cut to a sane
/// length, control characters removed), the status text otherwise.
/// Public for the fuzz tests.
pub fn decode_failure(
    status: u16,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ApiErrorKind {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error_code,
            error_msg,
        }) => (
            clean(&error_code, MAX_ERROR_CODE_CHARS),
            clean(&error_msg, MAX_ERROR_MESSAGE_CHARS),
        ),
        Err(_) => (
            String::new(),
            StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("unexpected status")
                .to_owned(),
        ),
    };
    ApiErrorKind::Service {
        status,
        code,
        message,
        request_id: shown_request_id(request_id),
        retry_after,
    }
}

/// The longest `Location` kept from a redirect.
pub const MAX_LOCATION_CHARS: usize = 256;

/// The error of a non-success answer: a redirect, which names where it
/// points, or the service's error.
fn service_error(answer: Answer) -> ApiErrorKind {
    if answer.status.is_redirection() {
        return ApiErrorKind::Redirected {
            status: answer.status.as_u16(),
            location: answer
                .location
                .map(|location| clean(&location, MAX_LOCATION_CHARS)),
            request_id: shown_request_id(answer.request_id),
        };
    }
    decode_failure(
        answer.status.as_u16(),
        answer.request_id,
        answer.retry_after,
        &answer.body,
    )
}

/// An `X-Request-Id` made safe to print in an error (see [`clean`]).
pub(super) fn shown_request_id(id: Option<String>) -> Option<String> {
    id.map(|id| clean(&id, MAX_ERROR_CODE_CHARS))
}

/// Server text made safe to print: control characters (line breaks,
/// terminal escapes) become spaces and it is cut after `max` characters.
fn clean(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Huawei
/// Cloud's gateway and falls back to backoff). Capped at ten minutes.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(600)))
}

enum ReadError {
    TooLarge(usize),
    Transport(reqwest::Error),
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, each once, joined by `: `.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("request bodies always serialise")
}

fn invalid(operation: Operation, message: &str) -> ApiError {
    ApiError {
        operation,
        attempts: 0,
        kind: ApiErrorKind::InvalidRequest(message.to_owned()),
    }
}

fn code_path(operation: Operation, id: &str, suffix: &str) -> Result<String, ApiError> {
    if id.is_empty() {
        return Err(invalid(
            operation,
            "the activation code id must not be empty",
        ));
    }
    Ok(format!("active-code/{}{suffix}", signer::encode(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(endpoint: &str, project: &str, secret_key: &str) -> Connection {
        Connection::new(
            endpoint.parse().unwrap(),
            project.to_owned(),
            Credentials::ak_sk("ak", secret_key),
            None,
        )
        .unwrap()
    }

    #[test]
    fn pacers_belong_to_the_credentials_not_to_the_project_named() {
        crate::tls::install_crypto_provider();
        let transport = Transport::new(ClientOptions::default()).unwrap();
        let victim = transport.client(connection("https://a.example", "p", "sk-1"));
        let again = transport.client(connection("https://a.example", "p", "sk-1"));
        // Someone naming the victim's project with other credentials.
        let squatter = transport.client(connection("https://a.example", "p", "sk-2"));
        let other_endpoint = transport.client(connection("https://b.example", "p", "sk-1"));
        let other_project = transport.client(connection("https://a.example", "q", "sk-1"));
        assert!(Arc::ptr_eq(&victim.pacer, &again.pacer));
        for other in [&squatter, &other_endpoint, &other_project] {
            assert!(!Arc::ptr_eq(&victim.pacer, &other.pacer));
        }
        assert_eq!(
            victim.pacer.budgets(),
            Pacing::default().budgets(None),
            "no region: the lowest documented quotas"
        );
    }

    /// Each edit of a Secret or projectId is a new set of credentials: the
    /// pacers of those no client used for an hour are forgotten.
    #[tokio::test(start_paused = true)]
    async fn pacers_nobody_used_for_an_hour_are_forgotten() {
        crate::tls::install_crypto_provider();
        let transport = Transport::new(ClientOptions::default()).unwrap();
        let held = transport.client(connection("https://a.example", "p", "sk-held"));
        for edit in 0..100 {
            drop(transport.client(connection("https://a.example", "p", &format!("sk-{edit}"))));
        }
        let count = || transport.pacers.lock().unwrap().len();
        assert_eq!(count(), 101);
        tokio::time::advance(super::super::recent::FORGET_AFTER).await;
        drop(transport.client(connection("https://a.example", "p", "sk-new")));
        assert_eq!(count(), 2, "the one in use and the new one");
        assert!(Arc::ptr_eq(
            &held.pacer,
            &transport
                .client(connection("https://a.example", "p", "sk-held"))
                .pacer
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_squatter_spends_its_own_budget_and_cannot_reset_the_victims() {
        crate::tls::install_crypto_provider();
        let transport = Transport::new(ClientOptions::default()).unwrap();
        let victim = || transport.client(connection("https://a.example", "p", "sk-1"));
        let write =
            |client: &MetaStudioClient| client.pacer.try_acquire(Operation::ResetActiveCode);
        let before = victim();
        assert_eq!(write(&before), Ok(()));
        assert!(before.pacer.throttled(Operation::ResetActiveCode).is_some());
        let mut generous = connection("https://a.example", "p", "sk-2");
        generous.options.pacing = Pacing {
            writes_per_second: Some(1000.0),
            burst: Some(1000),
            ..Pacing::default()
        };
        let squatter = transport.client(generous);
        assert_eq!(write(&squatter), Ok(()), "its own fresh budget");
        let after = victim();
        assert!(write(&after).is_err(), "the victim's burst stays spent");
        assert_eq!(after.current_rates().1, 1.5, "its 429 cut stands");
    }

    #[tokio::test(start_paused = true)]
    async fn other_figures_for_the_same_credentials_change_the_pacer_in_place() {
        crate::tls::install_crypto_provider();
        let transport = Transport::new(ClientOptions::default()).unwrap();
        let first = transport.client(connection("https://a.example", "p", "sk"));
        assert_eq!(first.pacer.try_acquire(Operation::ResetActiveCode), Ok(()));
        first.pacer.throttled(Operation::ResetActiveCode);
        let mut faster = connection("https://a.example", "p", "sk");
        faster.options.pacing = Pacing {
            writes_per_second: Some(6.0),
            ..Pacing::default()
        };
        let second = transport.client(faster);
        assert!(Arc::ptr_eq(&first.pacer, &second.pacer), "not replaced");
        assert_eq!(second.pacer.budgets().writes.per_second, 6.0);
        assert!(
            second
                .pacer
                .try_acquire(Operation::ResetActiveCode)
                .is_err(),
            "no fresh burst"
        );
        assert_eq!(second.current_rates().1, 1.5, "the 429 cut is kept");
    }

    #[test]
    fn the_regional_endpoint_brings_its_documented_quotas() {
        crate::tls::install_crypto_provider();
        let transport = Transport::new(ClientOptions::default()).unwrap();
        let client = transport.client(connection(
            "https://metastudio.cn-north-4.myhuaweicloud.com",
            "p",
            "sk",
        ));
        let budgets = client.pacer.budgets();
        assert_eq!(
            (budgets.reads.per_second, budgets.writes.per_second),
            (20.0, 5.0)
        );
    }

    #[test]
    fn a_connection_budget_overlays_the_operators_pacing() {
        crate::tls::install_crypto_provider();
        let options = ClientOptions {
            pacing: Pacing {
                reads_per_second: Some(12.0),
                ..Pacing::default()
            },
            ..ClientOptions::default()
        };
        let transport = Transport::new(options).unwrap();
        let mut budgeted = connection("https://a.example", "p", "sk");
        budgeted.options.pacing = Pacing {
            writes_per_second: Some(2.5),
            burst: Some(3),
            ..Pacing::default()
        };
        let a = transport.client(budgeted.clone());
        let b = transport.client(budgeted);
        let budgets = a.pacer.budgets();
        assert_eq!(
            (
                budgets.reads.per_second,
                budgets.writes.per_second,
                budgets.writes.burst
            ),
            (12.0, 2.5, 3)
        );
        assert!(Arc::ptr_eq(&a.pacer, &b.pacer));
    }
}
