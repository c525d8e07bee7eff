//! Where and as whom to call MetaStudio: endpoint, project and credentials.

use super::pacing::Pacing;
use crate::secret::Secret;
use reqwest::Url;

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// AK/SK signing (`SDK-HMAC-SHA256`); with a security token for
    /// temporary credentials (`X-Security-Token`).
    AkSk {
        access_key: Secret,
        secret_key: Secret,
        security_token: Option<Secret>,
    },
    /// A static IAM token (`X-Auth-Token`).
    Token(Secret),
}

impl Credentials {
    pub fn ak_sk(access_key: impl Into<Secret>, secret_key: impl Into<Secret>) -> Self {
        Credentials::AkSk {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }

    /// Short, secret-free description for logs and status: `AK/SK`,
    /// `AK/SK with security token` or `token`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::AkSk {
                security_token: None,
                ..
            } => "AK/SK",
            Credentials::AkSk { .. } => "AK/SK with security token",
            Credentials::Token(_) => "token",
        }
    }

    /// Whether a request carries a token that must not travel in clear
    /// text: `X-Auth-Token`, or `X-Security-Token` of temporary AK/SK.
    pub fn carries_token(&self) -> bool {
        matches!(
            self,
            Credentials::Token(_)
                | Credentials::AkSk {
                    security_token: Some(_),
                    ..
                }
        )
    }
}

/// A resolved, validated connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Base URL, e.g. `https://metastudio.cn-north-4.myhuaweicloud.com`.
    pub endpoint: Url,
    pub project_id: String,
    pub credentials: Credentials,
    /// Optional `X-App-UserId` (third-party user id), ASCII only.
    pub app_user_id: Option<String>,
    pub options: ConnectionOptions,
}

/// How a connection may be used.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionOptions {
    /// Whoever configured the connection allowed tokens over plain http to
    /// a host other than loopback.
    pub insecure_http: bool,
    /// The pacing of these credentials, over the transport's.
    pub pacing: Pacing,
    /// The region whose documented quotas apply, when it is named apart
    /// from the endpoint (a private endpoint or a proxy); otherwise it is
    /// read from a regional endpoint's host.
    pub region: Option<String>,
}

/// Why a connection could not be built; each message names the setting and
/// how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "endpoint `{value}` is not a valid URL ({reason}): give one like https://metastudio.cn-north-4.myhuaweicloud.com"
    )]
    InvalidEndpoint { value: String, reason: String },
    #[error(
        "no endpoint and no region: set --region / METASTUDIO_REGION (e.g. cn-north-4) or --endpoint / METASTUDIO_ENDPOINT"
    )]
    MissingEndpoint,
    #[error(
        "region `{0}` is not a region name: use lower-case letters, digits and dashes, e.g. cn-north-4"
    )]
    InvalidRegion(String),
    #[error(
        "no project id: set --project-id / METASTUDIO_PROJECT_ID (IAM console, My Credentials, API Credentials)"
    )]
    MissingProjectId,
    #[error("project id `{0}` may hold only letters, digits, `-` and `_`")]
    InvalidProjectId(String),
    #[error(
        "no credentials: set CLOUD_SDK_AK and CLOUD_SDK_SK (optionally CLOUD_SDK_SECURITY_TOKEN), or --auth-token / METASTUDIO_AUTH_TOKEN"
    )]
    MissingCredentials,
    #[error("only one of CLOUD_SDK_AK and CLOUD_SDK_SK is set: set both")]
    IncompleteAkSk,
    #[error(
        "both an AK/SK (CLOUD_SDK_AK, CLOUD_SDK_SK) and a token (--auth-token / METASTUDIO_AUTH_TOKEN) are given: unset one, so it is clear which signs the calls"
    )]
    AmbiguousCredentials,
    #[error(
        "X-App-UserId must be printable ASCII (the API forbids Chinese characters): use an ASCII user id"
    )]
    NonAsciiAppUserId,
    #[error(
        "refusing to send a token (X-Auth-Token or X-Security-Token) over plain http to {host}, which is not a loopback address: use https, or opt in for a private test endpoint (spec.insecureHttp of a MetaStudioConnection, or --insecure-http for the operator's own endpoint)"
    )]
    InsecureTransport { host: String },
    /// A figure of the connection's `spec.budget` out of its bounds (see
    /// [`super::pacing::Pacing::problems`]); each problem names its field.
    #[error("{0}")]
    InvalidBudget(String),
}

/// A project id holds only letters, digits, `-` and `_`.
pub fn is_project_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An `X-App-UserId` is printable ASCII: the API forbids Chinese
/// characters, and a header cannot carry control characters.
pub fn is_app_user_id(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The default endpoint of a region: `https://metastudio.{region}.myhuaweicloud.com`.
pub fn regional_endpoint(region: &str) -> Result<String, ConnectionError> {
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(ConnectionError::InvalidRegion(region.to_owned()));
    }
    Ok(format!("https://metastudio.{region}.myhuaweicloud.com"))
}

/// Parses and checks an endpoint URL: http or https, a host, no query.
pub fn parse_endpoint(value: &str) -> Result<Url, ConnectionError> {
    let invalid = |reason: &str| ConnectionError::InvalidEndpoint {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(value.trim_end_matches('/')).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(invalid("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("it must not carry a query, fragment or user"));
    }
    Ok(url)
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Connection {
    pub fn new(
        endpoint: Url,
        project_id: impl Into<String>,
        credentials: Credentials,
        app_user_id: Option<String>,
    ) -> Result<Self, ConnectionError> {
        Self::with_options(
            endpoint,
            project_id,
            credentials,
            app_user_id,
            ConnectionOptions::default(),
        )
    }

    /// Like [`Connection::new`], with `options`. A connection that would
    /// send a token over plain http to a host other than loopback is
    /// refused unless `options.insecure_http` allows it.
    pub fn with_options(
        endpoint: Url,
        project_id: impl Into<String>,
        credentials: Credentials,
        app_user_id: Option<String>,
        options: ConnectionOptions,
    ) -> Result<Self, ConnectionError> {
        let in_clear = endpoint.scheme() == "http" && !is_loopback(&endpoint);
        if in_clear && credentials.carries_token() && !options.insecure_http {
            return Err(ConnectionError::InsecureTransport {
                host: endpoint.host_str().unwrap_or_default().to_owned(),
            });
        }
        let project_id = project_id.into();
        if project_id.is_empty() {
            return Err(ConnectionError::MissingProjectId);
        }
        if !is_project_id(&project_id) {
            return Err(ConnectionError::InvalidProjectId(project_id));
        }
        if app_user_id.as_deref().is_some_and(|u| !is_app_user_id(u)) {
            return Err(ConnectionError::NonAsciiAppUserId);
        }
        Ok(Self {
            endpoint,
            project_id,
            credentials,
            app_user_id,
            options,
        })
    }

    /// Whether tokens of this connection travel unencrypted (allowed by
    /// its options): worth a warning wherever it is used.
    pub fn sends_token_in_clear(&self) -> bool {
        self.endpoint.scheme() == "http"
            && !is_loopback(&self.endpoint)
            && self.credentials.carries_token()
    }

    /// The region whose quotas apply: the one named in the options, or the
    /// `{region}` of `metastudio.{region}.myhuaweicloud.com`.
    pub fn quota_region(&self) -> Option<String> {
        if let Some(region) = &self.options.region {
            return Some(region.clone());
        }
        let host = self.endpoint.host_str()?;
        let region = host
            .strip_prefix("metastudio.")?
            .strip_suffix(".myhuaweicloud.com")?;
        (!region.is_empty() && !region.contains('.')).then(|| region.to_owned())
    }

    /// The `Host` header value for this endpoint, as an HTTP client sends
    /// it: the host, plus the port when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = self.endpoint.host_str().unwrap_or_default();
        match self.endpoint.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(endpoint: &str, user: Option<&str>) -> Result<Connection, ConnectionError> {
        Connection::new(
            parse_endpoint(endpoint)?,
            "p1",
            Credentials::ak_sk("ak", "sk"),
            user.map(str::to_owned),
        )
    }

    #[test]
    fn regional_endpoint_follows_the_official_pattern() {
        assert_eq!(
            regional_endpoint("cn-north-4").unwrap(),
            "https://metastudio.cn-north-4.myhuaweicloud.com"
        );
        assert!(regional_endpoint("cn north").is_err());
        assert!(regional_endpoint("").is_err());
    }

    #[test]
    fn host_header_has_the_port_only_when_not_default() {
        assert_eq!(
            conn("https://h.example:443", None).unwrap().host_header(),
            "h.example"
        );
        assert_eq!(
            conn("http://127.0.0.1:8080/", None).unwrap().host_header(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            conn("http://[::1]:9/", None).unwrap().host_header(),
            "[::1]:9"
        );
    }

    #[test]
    fn rejects_non_ascii_app_user_id_with_a_fix() {
        let err = conn("https://h.example", Some("用户")).unwrap_err();
        assert_eq!(err, ConnectionError::NonAsciiAppUserId);
        assert!(err.to_string().contains("X-App-UserId"));
        assert!(conn("https://h.example", Some("kiosk-1")).is_ok());
    }

    #[test]
    fn tokens_never_go_over_plain_http_to_another_host_unless_allowed() {
        let token = || Credentials::Token(Secret::new("t"));
        let temporary = || Credentials::AkSk {
            access_key: Secret::new("a"),
            secret_key: Secret::new("s"),
            security_token: Some(Secret::new("t")),
        };
        let at = |url: &str, credentials: Credentials, insecure_http: bool| {
            Connection::with_options(
                parse_endpoint(url).unwrap(),
                "p",
                credentials,
                None,
                ConnectionOptions {
                    insecure_http,
                    ..ConnectionOptions::default()
                },
            )
        };
        for credentials in [token(), temporary()] {
            let err = at("http://evil.example:8080", credentials.clone(), false).unwrap_err();
            assert_eq!(
                err,
                ConnectionError::InsecureTransport {
                    host: "evil.example".into()
                }
            );
            assert!(err.to_string().contains("spec.insecureHttp"), "{err}");
            let allowed = at("http://evil.example:8080", credentials.clone(), true).unwrap();
            assert!(allowed.sends_token_in_clear());
            for fine in [
                "https://h.example",
                "http://127.0.0.1:9",
                "http://localhost:9",
                "http://[::1]:9",
            ] {
                let connection = at(fine, credentials.clone(), false).unwrap();
                assert!(!connection.sends_token_in_clear(), "{fine}");
            }
        }
        // A plain AK/SK signs; it sends no token.
        assert!(at("http://h.example", Credentials::ak_sk("a", "s"), false).is_ok());
    }

    #[test]
    fn rejects_bad_endpoints() {
        for bad in ["ftp://h", "not a url", "https://h/?q=1", "https://user@h"] {
            assert!(
                matches!(
                    parse_endpoint(bad),
                    Err(ConnectionError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }
}
