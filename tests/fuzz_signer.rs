//! Fuzzing the signer's canonicalisation (src/metastudio/signer.rs) against
//! a straightforward reference model, and sign -> verify round trips as the
//! simulator's gateway verifies them. Runs briefly by default; see
//! tests/common/fuzz.rs for FUZZ_CASES / FUZZ_SEED.

mod common;

use common::fuzz::chars_of;
use jiff::Timestamp;
use metastudio_operator::metastudio::signer::{self, SignableRequest};
use metastudio_operator::simulator::Accepted;
use metastudio_operator::simulator::auth::{ReceivedRequest, parse_query};
use proptest::prelude::*;

/// Reference: Python's `quote(s, safe='~')`, byte by byte.
fn ref_encode(value: &str) -> String {
    const UNRESERVED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::new();
    for &byte in value.as_bytes() {
        if UNRESERVED.as_bytes().contains(&byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    out
}

/// Reference: Python's `unquote_to_bytes` (split on `%`, each piece that
/// starts with two hex digits is an escape), then lossy UTF-8.
fn ref_decode(value: &str) -> String {
    let mut pieces = value.as_bytes().split(|&b| b == b'%');
    let mut out: Vec<u8> = pieces.next().unwrap_or_default().to_vec();
    for piece in pieces {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            piece.first().copied().and_then(hex),
            piece.get(1).copied().and_then(hex),
        ) {
            (Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                out.extend_from_slice(&piece[2..]);
            }
            _ => {
                out.push(b'%');
                out.extend_from_slice(piece);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ref_canonical_uri(path: &str) -> String {
    let segments: Vec<String> = ref_decode(path).split('/').map(ref_encode).collect();
    let uri = segments.join("/");
    if uri.ends_with('/') { uri } else { uri + "/" }
}

fn ref_canonical_query(query: &[(String, String)]) -> String {
    let mut pairs = query.to_vec();
    pairs.sort_by(|a, b| (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes())));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", ref_encode(k), ref_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Text with many `%`, hex digits, `/` and signs, where escapes go wrong.
fn escape_heavy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            chars_of("%/+-", 1..2),
            chars_of("0123456789abcdefABCDEF", 1..3),
            any::<char>().prop_map(String::from),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// Any UTF-8, or text built to trip escapes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        escape_heavy(),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((text(), text()), 0..6)
}

const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const NAME_CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const PRINTABLE: &str = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// Headers a request may carry besides the ones the signer needs (names
/// with `_` are left unsigned, as the official SDK does).
fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let reserved = [
        "host",
        "x-sdk-date",
        "authorization",
        "x-auth-token",
        "x-sdk-content-sha256",
    ];
    let name = (chars_of(LETTERS, 1..2), chars_of(NAME_CHARS, 0..15))
        .prop_map(|(first, rest)| first + &rest)
        .prop_filter("not a header the gateway reads", move |n| {
            !reserved.contains(&n.to_ascii_lowercase().as_str())
        });
    proptest::collection::vec((name, chars_of(PRINTABLE, 0..40)), 0..5)
}

/// A request as the client sends it: path segments encoded, query in
/// canonical order, Host and X-Sdk-Date set.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![Just("GET"), Just("PUT"), Just("POST"), Just("DELETE")],
        proptest::collection::vec(text(), 1..5),
        pairs(),
        extra_headers(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, segments, query, extra, body)| {
            let path = format!(
                "/v1/{}",
                segments
                    .iter()
                    .map(|s| signer::encode(s))
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let mut headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Host".to_owned(), "127.0.0.1:8080".to_owned()),
                (
                    signer::HEADER_DATE.to_owned(),
                    Timestamp::now().strftime(signer::DATE_FORMAT).to_string(),
                ),
            ];
            headers.extend(extra);
            Request {
                method,
                path,
                query,
                headers,
                body,
            }
        })
}

const AK: &str = "fuzz-access-key";
const SK: &str = "fuzz-secret-key";

/// Signs `request` as the client does and verifies what arrives as the
/// simulator's gateway does.
fn sign_then_verify(request: &Request, arrives: impl FnOnce(&mut Request), sk: &str) -> bool {
    let authorization = signer::sign(
        AK,
        sk,
        &SignableRequest {
            method: request.method,
            path: &request.path,
            query: &request.query,
            headers: &request.headers,
            body: &request.body,
        },
    )
    .expect("Host and X-Sdk-Date are set");
    let mut received = request.clone();
    arrives(&mut received);
    received
        .headers
        .push(("Authorization".into(), authorization));
    let accepted = Accepted {
        keys: [(AK.to_owned(), SK.to_owned())].into(),
        tokens: Vec::new(),
    };
    accepted
        .check(
            &ReceivedRequest {
                method: received.method,
                path: &received.path,
                raw_query: &signer::canonical_query(&received.query),
                headers: &received.headers,
                body: &received.body,
            },
            Timestamp::now(),
        )
        .is_ok()
}

proptest! {
    #![proptest_config(common::fuzz::config(1000))]

    #[test]
    fn encode_matches_the_reference_and_decodes_back(value in text()) {
        let encoded = signer::encode(&value);
        prop_assert_eq!(&encoded, &ref_encode(&value));
        prop_assert_eq!(signer::decode(&encoded), value);
    }

    #[test]
    fn decode_matches_the_reference(value in text()) {
        prop_assert_eq!(signer::decode(&value), ref_decode(&value));
    }

    #[test]
    fn canonical_uri_matches_the_reference(path in text()) {
        let uri = signer::canonical_uri(&path);
        prop_assert!(uri.ends_with('/'));
        prop_assert_eq!(uri, ref_canonical_uri(&path));
    }

}

proptest! {
    #![proptest_config(common::fuzz::config(500))]

    #[test]
    fn canonical_query_matches_the_reference_and_survives_the_wire(query in pairs()) {
        let canonical = signer::canonical_query(&query);
        prop_assert_eq!(&canonical, &ref_canonical_query(&query));
        let mut sent = query.clone();
        let mut received = parse_query(&canonical);
        sent.sort();
        received.sort();
        prop_assert_eq!(received, sent);
    }

}

proptest! {
    // Five signatures per case: fewer cases, the same few seconds.
    #![proptest_config(common::fuzz::config(250))]

    #[test]
    fn a_signed_request_verifies_and_any_change_fails(request in request(), which in 0..5usize) {
        prop_assert!(sign_then_verify(&request, |_| {}, SK), "an untouched request verifies");
        let tampered = match which {
            0 => sign_then_verify(&request, |r| r.body.push(b'!'), SK),
            1 => sign_then_verify(&request, |r| r.path.push('x'), SK),
            2 => sign_then_verify(&request, |r| r.query.push(("injected".into(), "1".into())), SK),
            3 => sign_then_verify(&request, |r| r.method = if r.method == "GET" { "PUT" } else { "GET" }, SK),
            _ => sign_then_verify(&request, |_| {}, "another-secret-key"),
        };
        prop_assert!(!tampered, "change {} went unnoticed", which);
    }
}
