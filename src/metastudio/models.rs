//! Wire models of the MetaStudio activation-code API (`shared/api/`).

use crate::secret::Secret;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

/// The longest id (`active_code_id`, `robot_id`, `room_id`) or code value
/// accepted in an answer. MetaStudio's ids have 32 characters and
/// its code values 9: a longer field would only bloat a listing's memory
/// (a listing holds up to `MAX_LISTED_CODES` codes) and the status ledger,
/// so it is refused like any other malformed field.
pub const MAX_FIELD_BYTES: usize = 128;

/// `ActiveCodeInfo`: one activation code of an application (robot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCode {
    #[serde(deserialize_with = "bounded")]
    pub active_code_id: String,
    /// The code value itself; it only ever leaves through the export Secret
    /// or a command's explicit output.
    #[serde(deserialize_with = "bounded")]
    pub active_code: Secret,
    #[serde(deserialize_with = "bounded")]
    pub robot_id: String,
    /// Interactive dialog this code belongs to, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub room_id: Option<String>,
    /// Validity in days, `0` = permanent (`0~65535`).
    pub valid_period: u16,
    /// Absent for permanent codes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub expire_time: Option<Timestamp>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl ActiveCode {
    /// Whether the code has expired at `now` (permanent codes never do).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expire_time.is_some_and(|t| t <= now)
    }
}

/// The body of `ListActiveCode`'s response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCodePage {
    pub offset: u32,
    pub limit: u32,
    /// Total number of codes the query matches, over all pages.
    pub count: u32,
    #[serde(default)]
    pub data: Vec<ActiveCode>,
}

/// `UpdateActiveCodeReq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateActiveCodeBody {
    pub valid_period: u16,
}

/// `ResetActiveCodeReq`; `clean_auth_credential` defaults to true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetActiveCodeBody {
    #[serde(default = "default_true")]
    pub clean_auth_credential: bool,
}

fn default_true() -> bool {
    true
}

/// `CreateActiveCodeReq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateActiveCodeBody {
    pub robot_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_period: Option<u16>,
}

/// `CreateOnceCodeResponse`: a single-use code, valid for five minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnceCode {
    pub once_code: Secret,
}

/// The error body of every MetaStudio and API gateway error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: String,
    pub error_msg: String,
}

/// serde's error message with the offending value hidden: before
/// `, expected` (what the schema wanted, which is safe to show), every
/// backquoted (`` `5` ``) or double-quoted (`"abc"`, with its escapes) part
/// becomes `<hidden>`, except field names (`` field `name` ``). serde quotes
/// the value it could not use, and that value may be a code or a key in the
/// wrong place; the rest (type, expectation, position) is kept.
pub fn hide_values(message: &str) -> String {
    let (head, tail) = match message.find(", expected ") {
        Some(at) => message.split_at(at),
        None => (message, ""),
    };
    let mut out = String::with_capacity(message.len());
    let mut chars = head.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' if out.ends_with("field ") => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '`' {
                        break;
                    }
                }
            }
            '`' => {
                out.push_str("`<hidden>`");
                chars.by_ref().find(|&d| d == '`');
            }
            '"' => {
                out.push_str("\"<hidden>\"");
                let mut escaped = false;
                for d in chars.by_ref() {
                    match (escaped, d) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out.push_str(tail);
    out
}

/// A text field of at most [`MAX_FIELD_BYTES`].
fn bounded<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let text = String::deserialize(deserializer)?;
    within_bound(&text)?;
    Ok(T::from(text))
}

/// The error for a field longer than [`MAX_FIELD_BYTES`]; it never quotes
/// the value (it could be a code).
fn within_bound<E: serde::de::Error>(text: &str) -> Result<(), E> {
    if text.len() > MAX_FIELD_BYTES {
        return Err(E::custom(format!(
            "{} bytes, longer than the {MAX_FIELD_BYTES} a field may have",
            text.len()
        )));
    }
    Ok(())
}

/// Treats `null`, a missing field and `""` alike as absent; a value has at
/// most [`MAX_FIELD_BYTES`].
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => {
            within_bound(&s)?;
            s.parse().map(Some).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_EXAMPLE: &str = r#"{
      "offset" : 0, "limit" : 10, "count" : 1,
      "data" : [ {
        "active_code_id" : "39b9cedccec1f19b33d8f7ce1a6d35b9",
        "active_code" : "H7GW3T2E7",
        "robot_id" : "4d54xxxxxxc446249xxxxxxxxxx6526",
        "room_id" : "41c86xxxxxx34253850af102cdxxxxxx",
        "valid_period" : 3,
        "expire_time" : "2023-09-04T06:34:21Z",
        "create_time" : "2023-09-01T06:34:21Z",
        "update_time" : "2023-09-01T06:34:21Z"
      } ]
    }"#;

    #[test]
    fn decodes_the_documented_list_example() {
        let page: ActiveCodePage = serde_json::from_str(DOC_EXAMPLE).unwrap();
        assert_eq!(page.count, 1);
        let code = &page.data[0];
        assert_eq!(code.valid_period, 3);
        assert_eq!(code.active_code.expose(), "H7GW3T2E7");
        assert_eq!(
            code.expire_time.unwrap(),
            "2023-09-04T06:34:21Z".parse::<Timestamp>().unwrap()
        );
        assert!(!format!("{code:?}").contains("H7GW3T2E7"));
    }

    #[test]
    fn permanent_code_has_no_expiry_whether_missing_null_or_empty() {
        for expire in ["", r#","expire_time":null"#, r#","expire_time":"""#] {
            let json = format!(
                r#"{{"active_code_id":"a","active_code":"c","robot_id":"r","valid_period":0,
                "create_time":"2023-09-01T06:34:21Z","update_time":"2023-09-01T06:34:21Z"{expire}}}"#
            );
            let code: ActiveCode = serde_json::from_str(&json).unwrap();
            assert_eq!(code.expire_time, None);
            assert_eq!(code.room_id, None);
        }
    }

    #[test]
    fn hide_values_keeps_the_shape_of_the_message() {
        assert_eq!(
            hide_values("invalid type: integer `123456`, expected a string at line 1 column 9"),
            "invalid type: integer `<hidden>`, expected a string at line 1 column 9"
        );
        assert_eq!(
            hide_values(r#"invalid type: string "a\"b`c", expected u16"#),
            r#"invalid type: string "<hidden>", expected u16"#
        );
        assert_eq!(hide_values("unterminated `abc"), "unterminated `<hidden>`");
        assert_eq!(
            hide_values("missing field `once_code` at line 1 column 2"),
            "missing field `once_code` at line 1 column 2"
        );
        assert_eq!(
            hide_values("unknown variant `enforce`, expected `Enforce` or `Observe`"),
            "unknown variant `<hidden>`, expected `Enforce` or `Observe`"
        );
    }

    #[test]
    fn a_field_longer_than_the_bound_is_refused_without_its_value() {
        let long = "A".repeat(MAX_FIELD_BYTES + 1);
        let fits = "A".repeat(MAX_FIELD_BYTES);
        for field in ["active_code_id", "active_code", "robot_id", "room_id"] {
            let code = |value: &str| {
                let mut json = serde_json::json!({
                    "active_code_id": "a", "active_code": "c", "robot_id": "r", "room_id": "m",
                    "valid_period": 0, "create_time": "2023-09-01T06:34:21Z",
                    "update_time": "2023-09-01T06:34:21Z"
                });
                json[field] = value.into();
                serde_json::from_value::<ActiveCode>(json)
            };
            assert!(code(&fits).is_ok(), "{field}");
            let err = code(&long).unwrap_err().to_string();
            assert!(
                err.contains("129 bytes, longer than the 128"),
                "{field}: {err}"
            );
            assert!(!err.contains(&long), "{field}: the value is quoted");
        }
    }

    #[test]
    fn reset_body_defaults_to_cleaning_credentials() {
        let body: ResetActiveCodeBody = serde_json::from_str("{}").unwrap();
        assert!(body.clean_auth_credential);
    }

    #[test]
    fn out_of_range_valid_period_is_rejected() {
        assert!(serde_json::from_str::<UpdateActiveCodeBody>(r#"{"valid_period":65536}"#).is_err());
        assert!(serde_json::from_str::<UpdateActiveCodeBody>(r#"{"valid_period":-1}"#).is_err());
    }
}
