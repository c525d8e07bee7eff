//! Keyed fingerprints of code values, so status can prove whether a reset
//! happened without holding the value.
//!
//! The key is derived from the credentials' secret part (SK or token):
//! whoever can read the status but not the credentials cannot test guesses
//! of a code against a fingerprint. Whoever holds the credentials can list
//! the codes anyway.

use crate::metastudio::{ActiveCode, Credentials};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

impl FingerprintKey {
    pub fn from_credentials(credentials: &Credentials) -> Self {
        let material = match credentials {
            Credentials::AkSk { secret_key, .. } => secret_key.expose(),
            Credentials::Token(token) => token.expose(),
        };
        let mut hasher = Sha256::new();
        hasher.update(b"metastudio-operator code fingerprint v1\0");
        hasher.update(material.as_bytes());
        Self(hasher.finalize().into())
    }

    /// Names the key without revealing it: 32 bits of a hash of the key,
    /// enough to tell credentials apart, too few to test guesses with.
    fn id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"metastudio-operator fingerprint key id\0");
        hasher.update(self.0);
        hex::encode(&hasher.finalize()[..4])
    }

    /// `KEYID:` and 128 bits of HMAC-SHA256 over the code id and value, as
    /// hex.
    pub fn fingerprint(&self, code: &ActiveCode) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(code.active_code_id.as_bytes());
        mac.update(b"\0");
        mac.update(code.active_code.expose().as_bytes());
        format!(
            "{}:{}",
            self.id(),
            hex::encode(&mac.finalize().into_bytes()[..16])
        )
    }

    /// Whether `code`'s value differs from the one `previous` was taken of;
    /// `None` when `previous` was taken with another key (the credentials
    /// changed since), so the two cannot be compared.
    pub fn value_changed(&self, previous: &str, code: &ActiveCode) -> Option<bool> {
        let (key_id, _) = previous.split_once(':')?;
        (key_id == self.id()).then(|| self.fingerprint(code) != previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn code(value: &str) -> ActiveCode {
        ActiveCode {
            active_code_id: "id".into(),
            active_code: Secret::new(value),
            robot_id: "r".into(),
            room_id: None,
            valid_period: 1,
            expire_time: None,
            create_time: jiff::Timestamp::UNIX_EPOCH,
            update_time: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn depends_on_value_and_key_and_hides_both() {
        let a = FingerprintKey::from_credentials(&Credentials::ak_sk("ak", "sk-1"));
        let b = FingerprintKey::from_credentials(&Credentials::ak_sk("ak", "sk-2"));
        let fp = a.fingerprint(&code("H7GW3T2E7"));
        assert_eq!(fp.len(), 8 + 1 + 32);
        assert_eq!(fp, a.fingerprint(&code("H7GW3T2E7")));
        assert_ne!(fp, a.fingerprint(&code("K93SY62U3")));
        assert_ne!(fp, b.fingerprint(&code("H7GW3T2E7")));
        assert!(!fp.contains("H7GW3T2E7"));
        assert_eq!(format!("{a:?}"), "FingerprintKey(<redacted>)");
    }

    #[test]
    fn values_compare_only_under_the_same_key() {
        let a = FingerprintKey::from_credentials(&Credentials::ak_sk("ak", "sk-1"));
        let b = FingerprintKey::from_credentials(&Credentials::Token(Secret::new("rotated-token")));
        let before = a.fingerprint(&code("H7GW3T2E7"));
        assert_eq!(a.value_changed(&before, &code("H7GW3T2E7")), Some(false));
        assert_eq!(a.value_changed(&before, &code("K93SY62U3")), Some(true));
        // New credentials cannot judge an old fingerprint either way.
        assert_eq!(b.value_changed(&before, &code("H7GW3T2E7")), None);
        assert_eq!(a.value_changed("", &code("H7GW3T2E7")), None);
    }
}
