//! Huawei Cloud `SDK-HMAC-SHA256` request signing, as the official SDKs do it.
//!
//! The reference is `huaweicloudsdkcore.signer.signer.Signer` (PyPI). The
//! canonical request is
//!
//! ```text
//! METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//! ```
//!
//! where the URI is percent-decoded, split on `/`, every segment re-encoded
//! and a `/` appended; query pairs are sorted and encoded; every header
//! without `_` in its name is signed, lower-cased and trimmed. The string to
//! sign is `SDK-HMAC-SHA256 \n X-Sdk-Date \n hex(sha256(canonical request))`
//! and the signature is `hex(hmac_sha256(sk, string to sign))`.
//!
//! The same functions canonicalise on both sides: the client signs with
//! them, and the simulator verifies a received request with them.
//! `tests/signer_vectors.rs` pins them to the official SDK's own output.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// `X-Sdk-Date` format: basic ISO 8601 in UTC, e.g. `20261122T133000Z`.
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";
pub const HEADER_DATE: &str = "X-Sdk-Date";
pub const HEADER_CONTENT_SHA256: &str = "X-Sdk-Content-Sha256";

/// Everything of a request that its signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoded or not.
    pub path: &'a str,
    /// Decoded query pairs, in any order.
    pub query: &'a [(String, String)],
    /// Header names and values as sent, including `Host` and `X-Sdk-Date`.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Percent-encodes all but `A-Za-z0-9-_.~`, with upper-case hex digits
/// (Python's `quote(s, safe='~')`).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; invalid escapes stay as they are and invalid
/// UTF-8 is replaced (Python's `unquote`). `+` is not a space here.
pub fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Exactly two hex digits: `from_str_radix` alone would also take
        // a sign, decoding `%+A` where Python keeps it as it is.
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical URI: decode, split on `/`, encode each segment, end in `/`.
pub fn canonical_uri(path: &str) -> String {
    let decoded = decode(path);
    let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The canonical query string: pairs sorted by key, then value, each
/// encoded, joined by `&`. The client sends its query in exactly this form,
/// as the official SDK does.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The headers a signature covers: every header without `_` in its name,
/// lower-cased and sorted.
pub fn signed_header_names(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = headers
        .iter()
        .filter(|(name, _)| !name.contains('_'))
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn header_value<'a>(headers: &'a [(String, String)], lower_name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case(lower_name))
        .map(|(_, value)| value.trim())
}

/// A signed header that the request does not carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("signed header `{0}` is missing from the request")]
pub struct MissingHeader(pub String);

/// The payload hash: the `X-Sdk-Content-Sha256` header when present
/// (e.g. `UNSIGNED-PAYLOAD`), otherwise hex SHA-256 of the body.
pub fn payload_hash(headers: &[(String, String)], body: &[u8]) -> String {
    if !body.is_empty()
        && let Some(value) = header_value(headers, &HEADER_CONTENT_SHA256.to_ascii_lowercase())
    {
        return value.to_owned();
    }
    hex::encode(Sha256::digest(body))
}

pub fn canonical_request(
    request: &SignableRequest<'_>,
    signed_headers: &[String],
) -> Result<String, MissingHeader> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let value =
            header_value(request.headers, name).ok_or_else(|| MissingHeader(name.clone()))?;
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        canonical_uri(request.path),
        canonical_query(request.query),
        canonical_headers,
        signed_headers.join(";"),
        payload_hash(request.headers, request.body),
    ))
}

pub fn string_to_sign(canonical_request: &str, sdk_date: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

pub fn signature(secret_key: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn authorization_header(
    access_key: &str,
    signed_headers: &[String],
    signature: &str,
) -> String {
    format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={signature}",
        signed_headers.join(";")
    )
}

/// Signs a request whose headers already hold `Host` and `X-Sdk-Date`, and
/// returns the `Authorization` header value.
pub fn sign(
    access_key: &str,
    secret_key: &str,
    request: &SignableRequest<'_>,
) -> Result<String, MissingHeader> {
    let sdk_date = header_value(request.headers, "x-sdk-date")
        .ok_or_else(|| MissingHeader("x-sdk-date".into()))?;
    let signed = signed_header_names(request.headers);
    let canonical = canonical_request(request, &signed)?;
    let sig = signature(secret_key, &string_to_sign(&canonical, sdk_date));
    Ok(authorization_header(access_key, &signed, &sig))
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthorizationParts<'a> {
    pub access_key: &'a str,
    pub signed_headers: Vec<String>,
    pub signature: &'a str,
}

/// Parses an `Authorization` header; `None` when it is not `SDK-HMAC-SHA256`
/// or lacks a part.
pub fn parse_authorization(value: &str) -> Option<AuthorizationParts<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut access_key, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Access" => access_key = Some(val),
            "SignedHeaders" => {
                signed_headers = Some(val.split(';').map(str::to_owned).collect::<Vec<_>>())
            }
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    Some(AuthorizationParts {
        access_key: access_key?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_python_quote_with_tilde_safe() {
        assert_eq!(encode("a b+c/d~e_f.g-h"), "a%20b%2Bc%2Fd~e_f.g-h");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("*"), "%2A");
    }

    #[test]
    fn decodes_escapes_and_keeps_broken_ones() {
        assert_eq!(decode("a%20b%2Fc"), "a b/c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%+A%-1"), "%+A%-1");
        assert_eq!(decode("a+b"), "a+b");
    }

    #[test]
    fn canonical_uri_reencodes_segments_and_appends_slash() {
        assert_eq!(canonical_uri("/v1/p/active-code"), "/v1/p/active-code/");
        assert_eq!(canonical_uri("/v1/a%20b/"), "/v1/a%20b/");
        assert_eq!(canonical_uri("/v1/a b"), "/v1/a%20b/");
    }

    #[test]
    fn query_is_sorted_by_key_then_value() {
        let q = vec![
            ("robot_id".to_owned(), "r 1".to_owned()),
            ("limit".to_owned(), "100".to_owned()),
            ("offset".to_owned(), "0".to_owned()),
        ];
        assert_eq!(canonical_query(&q), "limit=100&offset=0&robot_id=r%201");
    }

    #[test]
    fn authorization_round_trips() {
        let header = authorization_header("AK", &["host".into(), "x-sdk-date".into()], "abc");
        let parts = parse_authorization(&header).unwrap();
        assert_eq!(parts.access_key, "AK");
        assert_eq!(parts.signed_headers, vec!["host", "x-sdk-date"]);
        assert_eq!(parts.signature, "abc");
        assert!(parse_authorization("Bearer x").is_none());
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=a").is_none());
    }
}
