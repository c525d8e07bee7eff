//! The broker's one route, `POST /v1/oncecodes/{connection}`, checked
//! before anything else: a request that is not exactly that is refused
//! without reading its body or looking at its token.

use super::contract::{Denial, reason};

/// The path prefix of the route.
pub const PREFIX: &str = "/v1/oncecodes/";

/// The request line and framing, as far as the route needs them.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// Whether the request announces a body (a non-zero Content-Length, or
    /// a Transfer-Encoding).
    pub has_body: bool,
}

/// The connection a request names, or why it is refused.
pub fn route(head: RequestHead<'_>) -> Result<&str, Denial> {
    let Some(name) = head.path.strip_prefix(PREFIX) else {
        return Err(Denial::new(
            404,
            reason::NOT_FOUND,
            format!("no such endpoint: the broker serves POST {PREFIX}{{connection}}"),
        ));
    };
    if head.method != "POST" {
        return Err(Denial::new(
            405,
            reason::METHOD_NOT_ALLOWED,
            format!("{PREFIX}{{connection}} takes POST only"),
        ));
    }
    if head.has_body {
        return Err(Denial::new(
            400,
            reason::BAD_REQUEST,
            "this endpoint takes no body: send the POST without one",
        ));
    }
    if !is_object_name(name) {
        return Err(Denial::new(
            400,
            reason::BAD_REQUEST,
            "{connection} must be the name of a MetaStudioConnection or ClusterMetaStudioConnection: lowercase letters, digits, '-' and '.', at most 253 characters",
        ));
    }
    Ok(name)
}

/// A Kubernetes object name (a DNS subdomain): nothing that could climb a
/// path, be decoded into something else, or name two objects.
fn is_object_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alphanumeric =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=253).contains(&name.len())
        && name.chars().all(allowed)
        && alphanumeric(name.chars().next())
        && alphanumeric(name.chars().last())
        && name.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> Result<&str, Denial> {
        route(RequestHead {
            method: "POST",
            path,
            has_body: false,
        })
    }

    #[test]
    fn only_a_body_less_post_of_a_connection_name_passes() {
        assert_eq!(post("/v1/oncecodes/retail"), Ok("retail"));
        assert_eq!(post("/v1/oncecodes/team-a.kiosk"), Ok("team-a.kiosk"));
        let get = route(RequestHead {
            method: "GET",
            path: "/v1/oncecodes/retail",
            has_body: false,
        });
        assert_eq!(get.unwrap_err().status, 405);
        let body = route(RequestHead {
            method: "POST",
            path: "/v1/oncecodes/retail",
            has_body: true,
        });
        assert_eq!(body.unwrap_err().status, 400);
        assert_eq!(post("/v1/oncecode/retail").unwrap_err().status, 404);
        assert_eq!(post("/").unwrap_err().status, 404);
    }

    #[test]
    fn names_that_climb_encode_or_nest_are_refused() {
        for path in [
            "/v1/oncecodes/",
            "/v1/oncecodes/..",
            "/v1/oncecodes/../../api/v1/secrets",
            "/v1/oncecodes/retail/../other",
            "/v1/oncecodes/%2e%2e",
            "/v1/oncecodes/retail%2Fother",
            "/v1/oncecodes/Retail",
            "/v1/oncecodes/-retail",
            "/v1/oncecodes/retail.",
            "/v1/oncecodes/a..b",
            "/v1/oncecodes/retail/",
        ] {
            let denial = post(path).unwrap_err();
            assert_eq!(denial.status, 400, "{path}");
            assert_eq!(denial.reason, reason::BAD_REQUEST);
        }
        assert_eq!(
            post(&format!("/v1/oncecodes/{}", "a".repeat(253))).map(str::len),
            Ok(253)
        );
        assert!(post(&format!("/v1/oncecodes/{}", "a".repeat(254))).is_err());
    }
}
