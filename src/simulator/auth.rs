//! How the simulator's "API gateway" authenticates a request: an AK/SK
//! signature it recomputes with the shared canonicalisation, or a token.

use crate::metastudio::signer::{self, SignableRequest};
use jiff::Timestamp;
use std::collections::HashMap;

/// What the simulator accepts.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// Access key to secret key.
    pub keys: HashMap<String, String>,
    /// Static `X-Auth-Token` values.
    pub tokens: Vec<String>,
}

/// Why a request was refused; the text goes into the 401 body, as the real
/// gateway explains its refusals. It never echoes a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The gateway accepts `X-Sdk-Date` this far from its own clock.
const MAX_SKEW_SECONDS: i64 = 15 * 60;

pub struct ReceivedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Decodes a raw query string into pairs, as the gateway reads it.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (signer::decode(k), signer::decode(v))
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Accepted {
    pub fn check(&self, request: &ReceivedRequest<'_>, now: Timestamp) -> Result<(), Refusal> {
        if let Some(token) = header(request.headers, "X-Auth-Token") {
            return if self.tokens.iter().any(|t| t == token) {
                Ok(())
            } else {
                Err(Refusal(
                    "Incorrect IAM authentication information: token is invalid".into(),
                ))
            };
        }
        let authorization = header(request.headers, "Authorization").ok_or_else(|| {
            Refusal(
                "Incorrect IAM authentication information: Authorization not found in header"
                    .into(),
            )
        })?;
        let parts = signer::parse_authorization(authorization).ok_or_else(|| {
            Refusal(
                "Incorrect IAM authentication information: unsupported Authorization format".into(),
            )
        })?;
        let secret = self.keys.get(parts.access_key).ok_or_else(|| {
            Refusal("Incorrect IAM authentication information: AK is not found".into())
        })?;
        for required in ["host", "x-sdk-date"] {
            if !parts.signed_headers.iter().any(|h| h == required) {
                return Err(Refusal(format!(
                    "Incorrect IAM authentication information: {required} is not signed"
                )));
            }
        }
        let date = header(request.headers, signer::HEADER_DATE).unwrap_or_default();
        let signed_at = jiff::civil::DateTime::strptime(signer::DATE_FORMAT, date)
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
            .ok_or_else(|| {
                Refusal("Incorrect IAM authentication information: X-Sdk-Date is malformed".into())
            })?;
        if (now.as_second() - signed_at.as_second()).abs() > MAX_SKEW_SECONDS {
            return Err(Refusal(
                "Incorrect IAM authentication information: the request has expired (clock skew)"
                    .into(),
            ));
        }
        let query = parse_query(request.raw_query);
        let signable = SignableRequest {
            method: request.method,
            path: request.path,
            query: &query,
            headers: request.headers,
            body: request.body,
        };
        let canonical = signer::canonical_request(&signable, &parts.signed_headers)
            .map_err(|e| Refusal(format!("Incorrect IAM authentication information: {e}")))?;
        let expected = signer::signature(secret, &signer::string_to_sign(&canonical, date));
        if !constant_time_eq(expected.as_bytes(), parts.signature.as_bytes()) {
            return Err(Refusal(
                "Incorrect IAM authentication information: verify aksk signature fail".into(),
            ));
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_headers(sk: &str, date: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            ("Host".to_owned(), "127.0.0.1:1".to_owned()),
            ("X-Sdk-Date".to_owned(), date.to_owned()),
        ];
        let auth = signer::sign(
            "AK",
            sk,
            &SignableRequest {
                method: "GET",
                path: "/v1/p/x",
                query: &[("a".into(), "b c".into())],
                headers: &headers,
                body: b"",
            },
        )
        .unwrap();
        headers.push(("Authorization".into(), auth));
        headers
    }

    fn accepted() -> Accepted {
        Accepted {
            keys: [("AK".to_owned(), "SK".to_owned())].into(),
            tokens: vec!["tok".into()],
        }
    }

    fn check(headers: &[(String, String)], now: Timestamp) -> Result<(), Refusal> {
        accepted().check(
            &ReceivedRequest {
                method: "GET",
                path: "/v1/p/x",
                raw_query: "a=b%20c",
                headers,
                body: b"",
            },
            now,
        )
    }

    #[test]
    fn accepts_a_good_signature_and_refuses_a_wrong_key_or_stale_date() {
        let now: Timestamp = "2026-11-22T13:30:00Z".parse().unwrap();
        assert_eq!(
            check(&signed_headers("SK", "20261122T133000Z"), now),
            Ok(())
        );
        assert!(check(&signed_headers("wrong", "20261122T133000Z"), now).is_err());
        assert!(check(&signed_headers("SK", "20261122T120000Z"), now).is_err());
        assert!(check(&[], now).is_err());
    }

    #[test]
    fn token_must_be_known() {
        let now = Timestamp::now();
        assert_eq!(check(&[("X-Auth-Token".into(), "tok".into())], now), Ok(()));
        assert!(check(&[("X-Auth-Token".into(), "other".into())], now).is_err());
    }
}
