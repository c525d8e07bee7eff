//! The connection of one reconcile: the tenancy decision (which connection
//! the resource may use), then the credentials that connection names, then
//! the resolved endpoint. Every refusal comes before any remote call.

use super::Next;
use super::conditions::{self, Progress, reason};
use super::host::{Host, SecretSource};
use crate::crd::ActivationCode;
use crate::credentials;
use crate::metastudio::{Connection, ConnectionError, Credentials};
use crate::tenancy::{self, CredentialsSource, Grant, OperatorDefaults};
use kube::ResourceExt;

/// Why a reconcile stops before any remote call: the Ready reason, the
/// message (naming the field and the fix), when to look again.
pub(crate) type Stop = (&'static str, String, Next);

/// The connection `resource` may use, and what granted it.
pub(super) async fn connect<H: Host>(
    resource: &ActivationCode,
    host: &H,
    defaults: &OperatorDefaults,
) -> Result<(Connection, Grant), Stop> {
    let namespace = resource.namespace().unwrap_or_default();
    let grant = tenancy::decide(&namespace, &resource.spec, host, defaults).map_err(|refusal| {
        // Most refusals wait for an edit; a namespace not seen yet, for the
        // cache (which nudges the resource too).
        let next = match conditions::progress(refusal.reason) {
            Progress::Retrying => Next::Retry { at_least: None },
            Progress::NeedsHuman | Progress::Settled => Next::AwaitChange,
        };
        (refusal.reason, refusal.message, next)
    })?;
    let connection = connect_grant(&grant, host, defaults).await?;
    Ok((connection, grant))
}

/// The connection `grant` names: its credentials, read now, and its
/// resolved endpoint.
pub(crate) async fn connect_grant(
    grant: &Grant,
    secrets: &impl SecretSource,
    defaults: &OperatorDefaults,
) -> Result<Connection, Stop> {
    let credentials = credentials_of(grant, secrets, defaults).await?;
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

/// The credentials the grant names: a Secret, read now, or the operator's.
async fn credentials_of(
    grant: &Grant,
    secrets: &impl SecretSource,
    defaults: &OperatorDefaults,
) -> Result<Credentials, Stop> {
    let retry = Next::Retry { at_least: None };
    let (namespace, name, field) = match &grant.credentials {
        CredentialsSource::Operator => {
            return defaults.credentials.clone().ok_or((
                reason::CREDENTIALS_NOT_FOUND,
                "no credentials: set spec.connection.credentialsSecretRef to a Secret with accessKey and secretKey, or give the operator CLOUD_SDK_AK and CLOUD_SDK_SK".into(),
                retry,
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
        Ok(Some(data)) => credentials::from_secret_data(&secret, &data)
            .map_err(|err| (reason::CREDENTIALS_NOT_FOUND, err.to_string(), retry)),
        Ok(None) => Err((
            reason::CREDENTIALS_NOT_FOUND,
            format!(
                "Secret {secret} ({field}) does not exist: create it with keys accessKey and secretKey"
            ),
            retry,
        )),
        Err(err) => Err((
            reason::CREDENTIALS_NOT_FOUND,
            format!("cannot read Secret {secret} ({field}): {err}"),
            retry,
        )),
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

/// Whether `other` would call the same endpoint and project as
/// `connection`: only then is its robot the same robot, and only then can
/// it conflict with this resource. A resource of another tenant's project
/// that names the same robot id (by chance, or to squat it) is not a
/// rival, and neither is one whose connection is refused (it touches
/// nothing).
pub(super) fn same_target(
    other: &ActivationCode,
    directory: &(impl crate::tenancy::Directory + ?Sized),
    defaults: &OperatorDefaults,
    connection: &Connection,
) -> bool {
    let namespace = other.namespace().unwrap_or_default();
    tenancy::decide(&namespace, &other.spec, directory, defaults)
        .ok()
        .and_then(|grant| grant.settings.target())
        .is_some_and(|(endpoint, project)| {
            endpoint == connection.endpoint && project == connection.project_id
        })
}
