//! The one HTTP exchange with the broker: a client that trusts only the
//! given CA (when one is given) and follows no redirect, the URL of a
//! connection's once-codes, and a POST whose answer is read with a bound.

use super::BrokerError;
use crate::secret::Secret;
use std::path::Path;
use std::time::Duration;

/// More than any answer of the broker; a bigger body is cut off.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Connecting takes no longer than this, within the request's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's answer, before it is judged.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After`, when sent and printable.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// A client for the broker. With `ca_file`, only its certificates are
/// trusted. Redirects are not followed: the token goes to the broker alone.
pub fn client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, BrokerError> {
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "metastudio-operator/",
            env!("CARGO_PKG_VERSION"),
            " once-code"
        ));
    if let Some(path) = ca_file {
        builder = builder.tls_certs_only(ca_certificates(path)?);
    }
    builder
        .build()
        .map_err(|e| BrokerError::Client(crate::metastudio::client::error_chain(&e)))
}

/// The certificates of a PEM file; at least one.
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, BrokerError> {
    let pem = std::fs::read(path).map_err(|source| BrokerError::CaUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |detail: String| BrokerError::CaInvalid {
        path: path.to_path_buf(),
        detail,
    };
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Ok(certificates),
        Ok(_) => Err(invalid(String::new())),
        Err(e) => Err(invalid(format!(
            ": {}",
            crate::metastudio::client::error_chain(&e)
        ))),
    }
}

/// `{broker}/v1/oncecodes/{connection}`, below any path the broker URL has.
/// The connection is a checked object name, so it is one path segment.
pub fn endpoint(broker: &reqwest::Url, connection: &str) -> reqwest::Url {
    let mut url = broker.clone();
    url.path_segments_mut()
        .expect("an http(s) URL has a path")
        .pop_if_empty()
        .extend(["v1", "oncecodes", connection]);
    url
}

/// Sends the request (no body, the token as a bearer credential) and reads
/// the answer.
pub async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    token: &Secret,
) -> Result<Reply, BrokerError> {
    let unreachable = |e: reqwest::Error| BrokerError::Unreachable {
        url: url.to_string(),
        detail: crate::metastudio::client::error_chain(&e),
    };
    let mut response = client
        .post(url.clone())
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        let room = MAX_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY_BYTES {
            break;
        }
    }
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_below_the_broker_url() {
        for (broker, want) in [
            ("https://b.ns.svc", "https://b.ns.svc/v1/oncecodes/retail"),
            ("https://b.ns.svc/", "https://b.ns.svc/v1/oncecodes/retail"),
            (
                "https://b:8443/prefix",
                "https://b:8443/prefix/v1/oncecodes/retail",
            ),
            (
                "https://b:8443/prefix/",
                "https://b:8443/prefix/v1/oncecodes/retail",
            ),
        ] {
            let url = endpoint(&reqwest::Url::parse(broker).unwrap(), "retail");
            assert_eq!(url.as_str(), want);
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let message = ca_certificates(&path).unwrap_err().to_string();
        assert!(message.contains("holds no PEM certificate"), "{message}");
        let missing = dir.path().join("missing.crt");
        let message = ca_certificates(&missing).unwrap_err().to_string();
        assert!(
            message.contains("--broker-ca-file") && message.contains("missing.crt"),
            "{message}"
        );
    }
}
