//! Judging the broker's answer: a grant (200 with the once-code), or a
//! refusal named by status, reason and message. Text the broker sends is
//! shown cleaned (control characters replaced, length bounded, the token
//! blanked out should it come back); the body of a 200 is never shown.

use super::BrokerError;
use super::error::Refusal;
use super::http::Reply;
use crate::secret::Secret;
use serde::Deserialize;

/// The longest broker text (reason, message, a body excerpt) shown.
const MAX_TEXT_CHARS: usize = 1000;

/// What the error messages name.
#[derive(Debug)]
pub struct Context<'a> {
    pub url: &'a reqwest::Url,
    pub connection: &'a str,
    /// Only to blank it out of the broker's text.
    pub token: &'a Secret,
}

/// A once-code, when it expires, the request id, and the broker's answer
/// as one line of JSON.
#[derive(Debug)]
pub struct Grant {
    pub once_code: Secret,
    pub expires_at: jiff::Timestamp,
    pub request_id: String,
    pub json: String,
}

impl Grant {
    /// That a code was received, without the code: for output that ends
    /// in a log.
    pub fn receipt(&self, connection: &str) -> String {
        format!(
            "once-code <redacted> from connection {connection}, valid until {}, request id {}",
            self.expires_at, self.request_id
        )
    }
}

/// The 200 answer, as the contract has it; parsed to check it.
#[derive(Deserialize)]
struct GrantBody {
    #[serde(rename = "onceCode")]
    once_code: Secret,
    #[serde(rename = "expiresAt")]
    expires_at: jiff::Timestamp,
    #[serde(rename = "requestId")]
    request_id: String,
}

/// An error answer: `{"reason": "...", "message": "..."}`.
#[derive(Deserialize)]
struct RefusalBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// A grant for 200, otherwise the refusal.
pub fn judge(reply: Reply, context: &Context<'_>) -> Result<Grant, BrokerError> {
    if reply.status == 200 {
        grant(&reply.body, context)
    } else {
        Err(refusal(reply, context))
    }
}

fn grant(body: &[u8], context: &Context<'_>) -> Result<Grant, BrokerError> {
    let bad = |detail: String| BrokerError::BadGrant {
        url: context.url.to_string(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(json_problem(&e, "")))?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: GrantBody = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| bad(json_problem(e.inner(), &e.path().to_string())))?;
    if parsed.once_code.is_empty() {
        return Err(bad("onceCode is empty".into()));
    }
    Ok(Grant {
        once_code: parsed.once_code,
        expires_at: parsed.expires_at,
        request_id: clean(&parsed.request_id, context.token),
        json: value.to_string(),
    })
}

/// What is wrong with a JSON body, without quoting any of its values.
fn json_problem(err: &serde_json::Error, path: &str) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Io => {
            format!("not JSON (line {}, column {})", err.line(), err.column())
        }
        Category::Eof => "the JSON ends too early".into(),
        Category::Data if err.to_string().starts_with("missing field") => err
            .to_string()
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_owned(),
        Category::Data => format!("a value of the wrong type or form at `{path}`"),
    }
}

fn refusal(reply: Reply, context: &Context<'_>) -> BrokerError {
    let clean = |text: &str| clean(text, context.token);
    let (reason, message) = match serde_json::from_slice::<RefusalBody>(&reply.body) {
        Ok(body) => (clean(&body.reason), clean(&body.message)),
        Err(_) => (
            String::new(),
            format!(
                "not the broker's JSON error body: {}",
                clean(&String::from_utf8_lossy(&reply.body))
            ),
        ),
    };
    BrokerError::Refused(Box::new(Refusal {
        url: context.url.to_string(),
        connection: context.connection.to_owned(),
        status: reply.status,
        reason: if reason.is_empty() {
            "(no reason)".into()
        } else {
            reason
        },
        message: if message.is_empty() {
            "(no message)".into()
        } else {
            message
        },
        retry_after: reply.retry_after.map(|r| clean(&r)),
        hint: hint(reply.status, context.connection),
    }))
}

/// What a workload can check, by status.
fn hint(status: u16, connection: &str) -> String {
    match status {
        401 => "; the broker did not accept the token of --token-file: its audience must be the broker's \
                (the chart's broker.audience, default metastudio-operator), and the file the one kubelet \
                keeps fresh"
            .into(),
        403 => format!(
            "; let this pod's ServiceAccount `create` `oncecodes` named {connection} (apiGroup \
             metastudio.huaweicloud.com) in its namespace, e.g. with a Role like deploy/broker-client/role.yaml"
        ),
        404 => format!(
            "; {connection} is neither a MetaStudioConnection of this pod's namespace nor a \
             ClusterMetaStudioConnection that admits it"
        ),
        503 => "; the broker is not ready to serve: try again shortly".into(),
        300..=399 => "; once-code follows no redirect (the token goes to the --broker URL alone)".into(),
        _ => String::new(),
    }
}

/// Broker text fit for a terminal: control characters replaced, at most
/// [`MAX_TEXT_CHARS`], the token blanked out.
fn clean(text: &str, token: &Secret) -> String {
    let text = if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token.expose(), "<redacted>")
    };
    let mut shown: String = text
        .trim()
        .chars()
        .take(MAX_TEXT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > MAX_TEXT_CHARS {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge_body(status: u16, body: &str) -> Result<Grant, BrokerError> {
        let url = reqwest::Url::parse("https://b.ns.svc/v1/oncecodes/retail").unwrap();
        let token = Secret::new("tok-en.value");
        let context = Context {
            url: &url,
            connection: "retail",
            token: &token,
        };
        let reply = Reply {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        };
        judge(reply, &context)
    }

    #[test]
    fn a_grant_keeps_the_whole_answer() {
        let body =
            r#"{"onceCode":"C0DE","expiresAt":"2026-12-01T10:05:00Z","requestId":"r-1","extra":1}"#;
        let grant = judge_body(200, body).unwrap();
        assert_eq!(grant.once_code.expose(), "C0DE");
        let json: serde_json::Value = serde_json::from_str(&grant.json).unwrap();
        assert_eq!(
            json,
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        );
    }

    #[test]
    fn a_bad_grant_never_shows_the_code() {
        for (body, want) in [
            (
                r#"{"onceCode":"SECRETC0DE","requestId":"r"}"#,
                "missing field `expiresAt`",
            ),
            (
                r#"{"onceCode":"SECRETC0DE","expiresAt":"SECRETC0DE-soon","requestId":"r"}"#,
                "`expiresAt`",
            ),
            (
                r#"{"onceCode":["SECRETC0DE"],"expiresAt":"2026-12-01T10:05:00Z","requestId":"r"}"#,
                "`onceCode`",
            ),
            (
                r#"{"onceCode":"","expiresAt":"2026-12-01T10:05:00Z","requestId":"r"}"#,
                "onceCode is empty",
            ),
            ("SECRETC0DE", "not JSON"),
            (r#"{"onceCode":"SECRETC0DE""#, "ends too early"),
        ] {
            let message = judge_body(200, body).unwrap_err().to_string();
            assert!(message.contains(want), "{body}: {message}");
            assert!(!message.contains("SECRETC0DE"), "{message}");
        }
    }

    #[test]
    fn a_refusal_is_cleaned_and_never_echoes_the_token() {
        let message = judge_body(
            401,
            r#"{"reason":"Unauthenticated","message":"token tok-en.value\nexpired"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("HTTP 401 Unauthenticated: token <redacted> expired"),
            "{message}"
        );
        assert!(message.contains("audience"), "{message}");
        let message = judge_body(502, "<html>bad gateway</html>")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("HTTP 502 (no reason): not the broker's JSON error body: <html>"),
            "{message}"
        );
        let long = format!(r#"{{"reason":"R","message":"{}"}}"#, "x".repeat(5000));
        let message = judge_body(500, &long).unwrap_err().to_string();
        assert!(
            message.len() < 1300 && message.ends_with("..."),
            "{}",
            message.len()
        );
    }
}
