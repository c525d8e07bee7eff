//! A string that must never be printed: credentials, tokens, activation
//! code values and once-codes.
//!
//! `Debug` shows a placeholder and there is deliberately no `Display`, so a
//! value can only reach a log line, an error or an Event through an explicit
//! [`Secret::expose`]. Serde is transparent because the values do have to
//! cross the wire and reach the export Secret.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only where it must leave the process:
    /// a signed request, a Secret's data, a command's own output.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("AKIA-very-secret");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.expose(), "AKIA-very-secret");
    }

    #[test]
    fn serde_is_transparent() {
        let secret: Secret = serde_json::from_str("\"H7GW3T2E7\"").unwrap();
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"H7GW3T2E7\"");
    }
}
