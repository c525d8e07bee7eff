//! Connection settings before they are resolved: operator-wide defaults
//! (flags and environment) overlaid by a resource's own `spec.connection`.

use super::connection::{
    Connection, ConnectionError, ConnectionOptions, Credentials, parse_endpoint, regional_endpoint,
};
use super::pacing::Pacing;
use crate::secret::Secret;

/// The environment variables of the official SDK examples.
pub const ENV_ACCESS_KEY: &str = "CLOUD_SDK_AK";
pub const ENV_SECRET_KEY: &str = "CLOUD_SDK_SK";
pub const ENV_SECURITY_TOKEN: &str = "CLOUD_SDK_SECURITY_TOKEN";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionSettings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub app_user_id: Option<String>,
    /// Tokens may go over plain http to this (non-loopback) endpoint.
    pub insecure_http: bool,
    /// The pacing of the credentials (unset fields: the transport's).
    pub pacing: Pacing,
}

impl ConnectionSettings {
    /// `other`'s values where it has them, ours elsewhere. An endpoint or a
    /// region in `other` replaces both of ours, with our permission for
    /// plain http: a resource that names its region must not inherit the
    /// operator's endpoint, nor a permission given for it.
    pub fn overlay(&self, other: &ConnectionSettings) -> ConnectionSettings {
        let (endpoint, region, insecure_http) =
            if other.endpoint.is_some() || other.region.is_some() {
                (
                    other.endpoint.clone(),
                    other.region.clone(),
                    other.insecure_http,
                )
            } else {
                (
                    self.endpoint.clone(),
                    self.region.clone(),
                    self.insecure_http,
                )
            };
        ConnectionSettings {
            endpoint,
            region,
            project_id: other.project_id.clone().or_else(|| self.project_id.clone()),
            app_user_id: other
                .app_user_id
                .clone()
                .or_else(|| self.app_user_id.clone()),
            insecure_http,
            pacing: self.pacing.overlay(&other.pacing),
        }
    }

    /// Where calls would go: the endpoint and the project, when both are
    /// known and valid (what makes two resources' robots the same robot).
    pub fn target(&self) -> Option<(reqwest::Url, String)> {
        let endpoint = match (&self.endpoint, &self.region) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(region)) => regional_endpoint(region).ok()?,
            (None, None) => return None,
        };
        let project = self.project_id.clone().filter(|p| !p.is_empty())?;
        Some((parse_endpoint(&endpoint).ok()?, project))
    }

    pub fn resolve(&self, credentials: Credentials) -> Result<Connection, ConnectionError> {
        let budget: Vec<String> = self
            .pacing
            .problems()
            .iter()
            .map(|p| format!("{}: {}", p.path(), p.problem))
            .collect();
        if !budget.is_empty() {
            return Err(ConnectionError::InvalidBudget(budget.join("; ")));
        }
        let endpoint = match (&self.endpoint, &self.region) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(region)) => regional_endpoint(region)?,
            (None, None) => return Err(ConnectionError::MissingEndpoint),
        };
        let project_id = self
            .project_id
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or(ConnectionError::MissingProjectId)?;
        Connection::with_options(
            parse_endpoint(&endpoint)?,
            project_id,
            credentials,
            self.app_user_id.clone(),
            ConnectionOptions {
                insecure_http: self.insecure_http,
                pacing: self.pacing,
                // With an endpoint, a region still names the quotas.
                region: self.region.clone(),
            },
        )
    }
}

/// Whether `endpoint` is exactly the official endpoint of a region,
/// `https://metastudio.{region}.myhuaweicloud.com` (a trailing `/` aside):
/// https, no other port, path, user or host around it.
pub fn is_official_endpoint(endpoint: &str) -> bool {
    let Ok(url) = parse_endpoint(endpoint) else {
        return false;
    };
    let region = url
        .host_str()
        .and_then(|host| host.strip_prefix("metastudio."))
        .and_then(|rest| rest.strip_suffix(".myhuaweicloud.com"));
    region
        .and_then(|region| regional_endpoint(region).ok())
        .and_then(|official| parse_endpoint(&official).ok())
        .is_some_and(|official| official == url)
}

/// Credentials from `CLOUD_SDK_AK` / `CLOUD_SDK_SK` (and
/// `CLOUD_SDK_SECURITY_TOKEN`), or from a static token; `Ok(None)` when
/// none are given. Both at once is an error: neither silently wins.
pub fn credentials_from(
    lookup: impl Fn(&str) -> Option<String>,
    auth_token: Option<String>,
) -> Result<Option<Credentials>, ConnectionError> {
    let non_empty = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let token = auth_token.filter(|t| !t.is_empty());
    match (non_empty(ENV_ACCESS_KEY), non_empty(ENV_SECRET_KEY), token) {
        (Some(_), Some(_), Some(_)) => Err(ConnectionError::AmbiguousCredentials),
        (Some(ak), Some(sk), None) => Ok(Some(Credentials::AkSk {
            access_key: Secret::new(ak),
            secret_key: Secret::new(sk),
            security_token: non_empty(ENV_SECURITY_TOKEN).map(Secret::new),
        })),
        (Some(_), None, _) | (None, Some(_), _) => Err(ConnectionError::IncompleteAkSk),
        (None, None, token) => Ok(token.map(|t| Credentials::Token(Secret::new(t)))),
    }
}

/// [`credentials_from`] over the process environment.
pub fn credentials_from_env(
    auth_token: Option<String>,
) -> Result<Option<Credentials>, ConnectionError> {
    credentials_from(|name| std::env::var(name).ok(), auth_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        endpoint: Option<&str>,
        region: Option<&str>,
        project: Option<&str>,
    ) -> ConnectionSettings {
        ConnectionSettings {
            endpoint: endpoint.map(Into::into),
            region: region.map(Into::into),
            project_id: project.map(Into::into),
            ..ConnectionSettings::default()
        }
    }

    #[test]
    fn a_resource_region_replaces_the_operator_endpoint() {
        let operator = settings(Some("http://127.0.0.1:1"), None, Some("p"));
        let merged = operator.overlay(&settings(None, Some("ap-southeast-1"), None));
        let conn = merged.resolve(Credentials::ak_sk("a", "s")).unwrap();
        assert_eq!(
            conn.endpoint.as_str(),
            "https://metastudio.ap-southeast-1.myhuaweicloud.com/"
        );
        assert_eq!(conn.project_id, "p");
        assert_eq!(conn.quota_region().as_deref(), Some("ap-southeast-1"));
    }

    #[test]
    fn a_region_beside_an_endpoint_names_the_quotas() {
        let both = settings(Some("http://127.0.0.1:1"), Some("cn-north-4"), Some("p"));
        let conn = both.resolve(Credentials::ak_sk("a", "s")).unwrap();
        assert_eq!(conn.endpoint.as_str(), "http://127.0.0.1:1/");
        assert_eq!(conn.quota_region().as_deref(), Some("cn-north-4"));
        let endpoint_only = settings(Some("http://127.0.0.1:1"), None, Some("p"));
        let conn = endpoint_only.resolve(Credentials::ak_sk("a", "s")).unwrap();
        assert_eq!(conn.quota_region(), None);
    }

    #[test]
    fn missing_pieces_are_named() {
        let creds = || Credentials::ak_sk("a", "s");
        assert_eq!(
            settings(None, None, Some("p")).resolve(creds()),
            Err(ConnectionError::MissingEndpoint)
        );
        assert_eq!(
            settings(None, Some("cn-north-4"), None).resolve(creds()),
            Err(ConnectionError::MissingProjectId)
        );
    }

    #[test]
    fn only_the_exact_regional_form_is_an_official_endpoint() {
        for official in [
            "https://metastudio.cn-north-4.myhuaweicloud.com",
            "https://metastudio.ap-southeast-1.myhuaweicloud.com/",
            "https://METASTUDIO.cn-north-4.myhuaweicloud.com:443",
        ] {
            assert!(is_official_endpoint(official), "{official}");
        }
        for other in [
            "http://metastudio.cn-north-4.myhuaweicloud.com",
            "https://metastudio.cn-north-4.myhuaweicloud.com:8443",
            "https://metastudio.cn-north-4.myhuaweicloud.com/proxy",
            "https://metastudio.cn-north-4.myhuaweicloud.com.attacker.example",
            "https://metastudio.cn-north-4.myhuaweicloud.com./",
            "https://metastudio.a.b.myhuaweicloud.com",
            "https://metastudio..myhuaweicloud.com",
            "https://user@metastudio.cn-north-4.myhuaweicloud.com",
            "https://attacker.example/metastudio.cn-north-4.myhuaweicloud.com",
            "https://metastudio.cn-north-4.myhuaweicloud.com?x=1",
            "http://127.0.0.1:8080",
            "not a url",
        ] {
            assert!(!is_official_endpoint(other), "{other}");
        }
    }

    #[test]
    fn a_budget_out_of_bounds_makes_no_connection() {
        let mut tiny = settings(None, Some("cn-north-4"), Some("p"));
        tiny.pacing.reads_per_second = Some(1e-30);
        let err = tiny.resolve(Credentials::ak_sk("a", "s")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.budget.readsPerSecond: must be 0 (no limit) or from 0.1 to 1000 requests per second, not 1e-30"
        );
    }

    #[test]
    fn credentials_come_from_the_sdk_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let got = credentials_from(
            env(&[
                ("CLOUD_SDK_AK", "a"),
                ("CLOUD_SDK_SK", "s"),
                ("CLOUD_SDK_SECURITY_TOKEN", "t"),
            ]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.kind(), "AK/SK with security token");
        assert_eq!(
            credentials_from(env(&[("CLOUD_SDK_AK", "a")]), None),
            Err(ConnectionError::IncompleteAkSk)
        );
        assert_eq!(
            credentials_from(env(&[]), Some("tok".into()))
                .unwrap()
                .unwrap()
                .kind(),
            "token"
        );
        assert_eq!(credentials_from(env(&[]), None).unwrap(), None);
        assert_eq!(
            credentials_from(
                env(&[("CLOUD_SDK_AK", "a"), ("CLOUD_SDK_SK", "s")]),
                Some("tok".into())
            ),
            Err(ConnectionError::AmbiguousCredentials)
        );
    }
}
