//! Credentials from a Kubernetes Secret's data (or a Secret manifest on
//! disk): `accessKey` + `secretKey` (+ `securityToken`), or `authToken`.

use crate::metastudio::Credentials;
use crate::secret::Secret;
use std::collections::BTreeMap;

pub const KEY_ACCESS_KEY: &str = "accessKey";
pub const KEY_SECRET_KEY: &str = "secretKey";
pub const KEY_SECURITY_TOKEN: &str = "securityToken";
pub const KEY_AUTH_TOKEN: &str = "authToken";

/// Why a credentials Secret cannot be used; names the Secret and the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Secret {secret} {problem}")]
pub struct CredentialsSecretError {
    pub secret: String,
    pub problem: String,
}

/// Reads credentials from Secret data (decoded values by key).
pub fn from_secret_data(
    secret: &str,
    data: &BTreeMap<String, Secret>,
) -> Result<Credentials, CredentialsSecretError> {
    let get = |key: &str| {
        data.get(key)
            .filter(|v| !v.expose().trim().is_empty())
            .cloned()
    };
    let fail = |problem: String| CredentialsSecretError {
        secret: secret.to_owned(),
        problem,
    };
    match (
        get(KEY_ACCESS_KEY),
        get(KEY_SECRET_KEY),
        get(KEY_AUTH_TOKEN),
    ) {
        (Some(access_key), Some(secret_key), _) => Ok(Credentials::AkSk {
            access_key,
            secret_key,
            security_token: get(KEY_SECURITY_TOKEN),
        }),
        (Some(_), None, _) => Err(fail(format!(
            "has `{KEY_ACCESS_KEY}` but no `{KEY_SECRET_KEY}`: add the secret key"
        ))),
        (None, Some(_), _) => Err(fail(format!(
            "has `{KEY_SECRET_KEY}` but no `{KEY_ACCESS_KEY}`: add the access key"
        ))),
        (None, None, Some(token)) => Ok(Credentials::Token(token)),
        (None, None, None) => Err(fail(format!(
            "has neither `{KEY_ACCESS_KEY}`/`{KEY_SECRET_KEY}` nor `{KEY_AUTH_TOKEN}`: add them (kubectl create secret generic NAME --from-literal={KEY_ACCESS_KEY}=... --from-literal={KEY_SECRET_KEY}=...)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn reads_ak_sk_token_and_names_missing_keys() {
        let creds = from_secret_data(
            "ns/c",
            &data(&[
                ("accessKey", "a"),
                ("secretKey", "s"),
                ("securityToken", "t"),
            ]),
        )
        .unwrap();
        assert_eq!(creds.kind(), "AK/SK with security token");
        assert_eq!(
            from_secret_data("ns/c", &data(&[("authToken", "t")]))
                .unwrap()
                .kind(),
            "token"
        );
        let err = from_secret_data("ns/c", &data(&[("accessKey", "a")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Secret ns/c has `accessKey` but no `secretKey`: add the secret key"
        );
        let err =
            from_secret_data("ns/c", &data(&[("accessKey", "a"), ("secretKey", " ")])).unwrap_err();
        assert!(err.to_string().contains("no `secretKey`"));
        assert!(
            from_secret_data("ns/c", &data(&[]))
                .unwrap_err()
                .to_string()
                .contains("kubectl create secret")
        );
    }
}
