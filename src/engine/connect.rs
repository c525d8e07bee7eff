//! The connection of one reconcile: the tenancy decision (which connection
//! the resource may use), then the credentials that connection names, then
//! the resolved endpoint. Every refusal comes before any remote call.

use super::Next;
use super::conditions::{self, Progress, reason};
use super::host::{Host, SecretSource};
use crate::crd::ActivationCode;
use crate::credentials;
use crate::metastudio::breaker::CredentialsId;
use crate::metastudio::{Connection, ConnectionError, Credentials};
use crate::tenancy::{self, CredentialsSource, Grant, OperatorDefaults};
use kube::ResourceExt;

/// Why a reconcile stops before any remote call: the Ready reason, the
/// message (naming the field and the fix), when to look again.
pub(crate) type Stop = (&'static str, String, Next);

/// Why a resource has no connection now, and whether that lasts until
/// something is changed (a refused connection, credentials missing or
/// malformed) or may pass by itself (a namespace not seen yet, a Secret
/// that could not be read now).
pub(super) struct Unconnected {
    pub stop: Stop,
    pub lasting: bool,
}

/// The connection `resource` may use, and what granted it.
pub(super) async fn connect<H: Host>(
    resource: &ActivationCode,
    host: &H,
    defaults: &OperatorDefaults,
) -> Result<(Connection, Grant), Unconnected> {
    let namespace = resource.namespace().unwrap_or_default();
    let grant = tenancy::decide(&namespace, &resource.spec, host, defaults).map_err(|refusal| {
        // Most refusals wait for an edit; a namespace not seen yet, for the
        // cache (which nudges the resource too).
        let (next, lasting) = match conditions::progress(refusal.reason) {
            Progress::Retrying => (Next::Retry { at_least: None }, false),
            Progress::NeedsHuman | Progress::Settled => (Next::AwaitChange, true),
        };
        Unconnected {
            stop: (refusal.reason, refusal.message, next),
            lasting,
        }
    })?;
    let credentials = credentials_of(&grant, host, defaults)
        .await
        .map_err(|missing| Unconnected {
            lasting: matches!(missing, NoCredentials::Unusable(_)),
            stop: missing.stop(),
        })?;
    let connection = resolved(&grant, credentials).map_err(|stop| Unconnected {
        stop,
        lasting: true,
    })?;
    Ok((connection, grant))
}

/// The connection `grant` names: its credentials, read now, and its
/// resolved endpoint.
pub(crate) async fn connect_grant(
    grant: &Grant,
    secrets: &impl SecretSource,
    defaults: &OperatorDefaults,
) -> Result<Connection, Stop> {
    let credentials = credentials_of(grant, secrets, defaults)
        .await
        .map_err(NoCredentials::stop)?;
    resolved(grant, credentials)
}

/// The connection the granted settings make with `credentials`.
fn resolved(grant: &Grant, credentials: Credentials) -> Result<Connection, Stop> {
    grant.settings.resolve(credentials).map_err(|err| {
        let (why, message) = unresolved(grant, &err);
        (why, message, Next::AwaitChange)
    })
}

/// Why the granted settings do not make a connection (the reason and a
/// message naming where to fix it).
fn unresolved(grant: &Grant, err: &ConnectionError) -> (&'static str, String) {
    match (&grant.reference, err) {
        (_, ConnectionError::InsecureTransport { .. }) => (
            reason::CONNECTION_NOT_ALLOWED,
            format!("{}: {err}", grant.via),
        ),
        (Some(_), ConnectionError::MissingEndpoint) => (
            reason::INVALID_SPEC,
            format!(
                "{} sets neither spec.region nor spec.endpoint: set one of them",
                grant.via
            ),
        ),
        (Some(_), _) => (reason::INVALID_SPEC, format!("{}: {err}", grant.via)),
        (None, _) => (
            reason::INVALID_SPEC,
            format!("{err} (or set it in spec.connection)"),
        ),
    }
}

/// Why the credentials a grant names are not at hand.
enum NoCredentials {
    /// Missing or malformed: nobody using the grant can make a call.
    Unusable(Stop),
    /// Its Secret could not be read now (the API server): try again.
    Unreadable(Stop),
}

impl NoCredentials {
    fn stop(self) -> Stop {
        match self {
            Self::Unusable(stop) | Self::Unreadable(stop) => stop,
        }
    }
}

/// The credentials the grant names: a Secret, read now, or the operator's.
async fn credentials_of(
    grant: &Grant,
    secrets: &impl SecretSource,
    defaults: &OperatorDefaults,
) -> Result<Credentials, NoCredentials> {
    let retry = Next::Retry { at_least: None };
    let unusable =
        |message: String| NoCredentials::Unusable((reason::CREDENTIALS_NOT_FOUND, message, retry));
    let (namespace, name, field) = match &grant.credentials {
        CredentialsSource::Operator => {
            return defaults.credentials.clone().ok_or_else(|| unusable(
                "no credentials: set spec.connection.credentialsSecretRef to a Secret with accessKey and secretKey, or give the operator CLOUD_SDK_AK and CLOUD_SDK_SK".into(),
            ));
        }
        CredentialsSource::Secret {
            namespace,
            name,
            field,
        } => (namespace, name, field),
    };
    let secret = format!("{namespace}/{name}");
    match secrets.secret_data(namespace, name).await {
        Ok(Some(data)) => {
            credentials::from_secret_data(&secret, &data).map_err(|err| unusable(err.to_string()))
        }
        Ok(None) => Err(unusable(format!(
            "Secret {secret} ({field}) does not exist: create it with keys accessKey and secretKey"
        ))),
        Err(err) => Err(NoCredentials::Unreadable((
            reason::CREDENTIALS_NOT_FOUND,
            format!("cannot read Secret {secret} ({field}): {err}"),
            retry,
        ))),
    }
}

/// The warning for a connection whose tokens travel unencrypted, which its
/// owner allowed; `None` for every other connection.
pub(super) fn insecure_note(connection: &Connection, grant: &Grant) -> Option<String> {
    connection.sends_token_in_clear().then(|| {
        format!(
            "calls to {} carry a token (X-Auth-Token or X-Security-Token) unencrypted, as {} allows plain http: use https",
            connection.endpoint, grant.via
        )
    })
}

/// Whether `other`, which has no record of its own yet (see
/// [`super::callers`]), would call as the same caller as this reconcile
/// (its `connection`, granted by `grant`): the same endpoint, project and
/// credentials. Only then is its robot the same robot and its claim on the
/// codes a rival claim. A resource whose connection is refused, or whose
/// credentials are missing or malformed, touches nothing and is no rival;
/// neither is one of another tenant's project, or with other credentials
/// naming this project (by chance, or to squat it): such credentials
/// cannot act for this caller. When its Secret cannot be read now, that
/// cannot be told: the reconcile stops and retries
/// ([`reason::CONFLICT_UNCHECKED`]).
pub(super) async fn same_caller<H: Host>(
    other: &ActivationCode,
    host: &H,
    defaults: &OperatorDefaults,
    connection: &Connection,
    grant: &Grant,
) -> Result<bool, Stop> {
    let namespace = other.namespace().unwrap_or_default();
    let Ok(theirs) = tenancy::decide(&namespace, &other.spec, host, defaults) else {
        return Ok(false);
    };
    let same_target = theirs.settings.target().is_some_and(|(endpoint, project)| {
        endpoint == connection.endpoint && project == connection.project_id
    });
    if !same_target {
        // Another endpoint or project: no need to read its credentials.
        return Ok(false);
    }
    let credentials = if theirs.credentials.same_source(&grant.credentials) {
        // The Secret this reconcile has just read: not read again.
        connection.credentials.clone()
    } else {
        match credentials_of(&theirs, host, defaults).await {
            Ok(credentials) => credentials,
            Err(NoCredentials::Unusable(_)) => return Ok(false),
            Err(NoCredentials::Unreadable((_, message, next))) => {
                let name = other.name_any();
                return Err((
                    reason::CONFLICT_UNCHECKED,
                    format!(
                        "ActivationCode {namespace}/{name} is older and selects some of the same codes, and whether it calls as this resource does cannot be told now ({message}): nothing is changed until it can"
                    ),
                    next,
                ));
            }
        }
    };
    Ok(theirs
        .settings
        .resolve(credentials)
        .is_ok_and(|theirs| CredentialsId::of(&theirs) == CredentialsId::of(connection)))
}
