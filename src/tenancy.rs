//! Who may use which credentials: one decision, made in one place, before
//! any remote call. An ActivationCode in namespace N gets its connection
//!
//! * from `spec.connectionRef`: a MetaStudioConnection in N, or a
//!   ClusterMetaStudioConnection whose conditions admit N (and the robot);
//! * from `spec.connection` with N's own `credentialsSecretRef`, and then
//!   never an endpoint of the resource's choosing other than an official
//!   one ([`InlineEndpoints`]): where credentials go is chosen in a
//!   connection resource, by whoever may create one;
//! * from the operator's defaults, only when N may use the operator's own
//!   credentials (`--default-credentials-namespaces`), and then without an
//!   endpoint, region or project of the resource's choosing: the operator
//!   never signs for, or sends its token to, a place a tenant picked.
//!
//! The result is a [`Grant`] (what to resolve) or a [`Refusal`] that names
//! the field, the connection and the rule. Pure: the lookups come through
//! a [`Directory`], the cluster's caches or the manifests on disk.

use crate::crd::connection::{
    AccessCondition, ClusterMetaStudioConnectionSpec, ConnectionKind, ConnectionReference,
    ConnectionTarget, MetaStudioConnectionSpec,
};
use crate::crd::{ActivationCodeSpec, ConnectionSpec};
use crate::engine::conditions::reason::{
    CONNECTION_NOT_ALLOWED, CONNECTION_NOT_FOUND, NAMESPACE_LABELS_UNKNOWN,
};
use crate::metastudio::Credentials;
use crate::metastudio::settings::{ConnectionSettings, is_official_endpoint};
use kube::core::{Selector, SelectorExt};
use std::collections::{BTreeMap, BTreeSet};

/// The connection resources and namespace labels the decision reads.
pub trait Directory {
    /// The MetaStudioConnection `namespace/name`, if it exists.
    fn connection(&self, namespace: &str, name: &str) -> Option<MetaStudioConnectionSpec>;
    /// The ClusterMetaStudioConnection `name`, if it exists.
    fn cluster_connection(&self, name: &str) -> Option<ClusterMetaStudioConnectionSpec>;
    /// The labels of `namespace`; `None` when they are not known (the
    /// namespace was not seen yet): then no selector admits it but one
    /// that matches every namespace ({}), and the refusal is looked at
    /// again ([`NAMESPACE_LABELS_UNKNOWN`]).
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
}

/// A [`Directory`] held in memory: the manifests on disk, or a test's.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// By `(namespace, name)`.
    pub connections: BTreeMap<(String, String), MetaStudioConnectionSpec>,
    pub cluster_connections: BTreeMap<String, ClusterMetaStudioConnectionSpec>,
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl Directory for Catalog {
    fn connection(&self, namespace: &str, name: &str) -> Option<MetaStudioConnectionSpec> {
        self.connections
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn cluster_connection(&self, name: &str) -> Option<ClusterMetaStudioConnectionSpec> {
        self.cluster_connections.get(name).cloned()
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespace_labels.get(namespace).cloned()
    }
}

/// Which namespaces may use the operator's own credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DefaultCredentialsScope {
    /// None (the chart's default).
    #[default]
    Nobody,
    /// Every namespace (`*`: single-tenant installs, `reconcile -f`).
    Everyone,
    /// These namespaces.
    Only(BTreeSet<String>),
}

impl DefaultCredentialsScope {
    /// `*` for everyone, otherwise namespace names; empty for nobody.
    pub fn from_names(names: &[String]) -> Self {
        let names: BTreeSet<String> = names
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if names.contains("*") {
            Self::Everyone
        } else if names.is_empty() {
            Self::Nobody
        } else {
            Self::Only(names)
        }
    }

    pub fn admits(&self, namespace: &str) -> bool {
        match self {
            Self::Nobody => false,
            Self::Everyone => true,
            Self::Only(names) => names.contains(namespace),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Nobody => "none".into(),
            Self::Everyone => "all".into(),
            Self::Only(names) => names.iter().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSource {
    /// A Secret, named by `field` (for messages), e.g.
    /// `spec.credentialsSecretRef of MetaStudioConnection retail/main`.
    Secret {
        namespace: String,
        name: String,
        field: String,
    },
    /// The operator's own (`CLOUD_SDK_AK`/`SK`, `--auth-token`).
    Operator,
}

impl CredentialsSource {
    /// Whether both name the same credentials: the same Secret (whichever
    /// field names it), or both the operator's own.
    pub fn same_source(&self, other: &CredentialsSource) -> bool {
        match (self, other) {
            (
                Self::Secret {
                    namespace, name, ..
                },
                Self::Secret {
                    namespace: other_namespace,
                    name: other_name,
                    ..
                },
            ) => (namespace, name) == (other_namespace, other_name),
            (Self::Operator, Self::Operator) => true,
            _ => false,
        }
    }
}

/// A connection the resource may use, not yet resolved (its Secret is read
/// when it is used).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub settings: ConnectionSettings,
    pub credentials: CredentialsSource,
    /// What granted it, for messages: `MetaStudioConnection retail/main`,
    /// `spec.connection`, `the operator's defaults`.
    pub via: String,
    /// The connection resource, when one granted it.
    pub reference: Option<(ConnectionKind, String)>,
}

/// Why the resource may not have the connection it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// `ConnectionNotFound` or `ConnectionNotAllowed`.
    pub reason: &'static str,
    /// Names the field, the connection and the rule.
    pub message: String,
}

fn not_allowed(message: String) -> Refusal {
    Refusal {
        reason: CONNECTION_NOT_ALLOWED,
        message,
    }
}

/// The operator's own connection settings and credentials, and who may use
/// the credentials.
#[derive(Debug, Clone, Default)]
pub struct OperatorDefaults {
    /// Endpoint, region, project and app user id defaults (its flags).
    pub settings: ConnectionSettings,
    /// From `CLOUD_SDK_AK`/`CLOUD_SDK_SK` or `--auth-token`.
    pub credentials: Option<Credentials>,
    /// Who may use `credentials` (`--default-credentials-namespaces`).
    pub credentials_scope: DefaultCredentialsScope,
    /// Where a resource's own `spec.connection.endpoint` may send the
    /// namespace's credentials.
    pub inline_endpoints: InlineEndpoints,
}

/// Where an ActivationCode's own `spec.connection.endpoint` may send the
/// credentials of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InlineEndpoints {
    /// Only to an official MetaStudio endpoint,
    /// `https://metastudio.{region}.myhuaweicloud.com`: in a cluster,
    /// whoever may create an ActivationCode need not be allowed to read the
    /// namespace's Secrets, so they must not choose where those go; any
    /// other endpoint is named in a connection resource, whose authors the
    /// administrators choose. The default.
    #[default]
    OfficialOnly,
    /// Anywhere: `reconcile -f`, which has no tenants (whoever runs it
    /// holds the manifests and their Secrets already).
    Any,
}

impl InlineEndpoints {
    /// Whether `endpoint` (set in `spec.connection`) may receive the
    /// namespace's credentials.
    fn check(self, endpoint: Option<&str>) -> Result<(), Refusal> {
        match (self, endpoint) {
            (_, None) | (Self::Any, _) => Ok(()),
            (Self::OfficialOnly, Some(endpoint)) if is_official_endpoint(endpoint) => Ok(()),
            (Self::OfficialOnly, Some(_)) => Err(not_allowed(
                "spec.connection.endpoint is not an official MetaStudio endpoint (https://metastudio.{region}.myhuaweicloud.com), and an ActivationCode may not choose where its namespace's credentials go: create a MetaStudioConnection with this endpoint (its spec.endpoint) and credentials Secret, and refer to it in spec.connectionRef; or set spec.connection.region instead of the endpoint".into(),
            )),
        }
    }
}

/// Decides which connection the ActivationCode `spec` in `namespace` may
/// use.
pub fn decide(
    namespace: &str,
    spec: &ActivationCodeSpec,
    directory: &(impl Directory + ?Sized),
    policy: &OperatorDefaults,
) -> Result<Grant, Refusal> {
    match &spec.connection_ref {
        Some(reference) => by_reference(namespace, &spec.robot_id, reference, directory),
        None => inline(
            namespace,
            &spec.connection.clone().unwrap_or_default(),
            policy,
        ),
    }
}

/// `spec.connection` (or none): the namespace's own credentials Secret,
/// with an official endpoint, any region and project; or the operator's
/// credentials, with the operator's endpoint, region and project only.
fn inline(
    namespace: &str,
    inline: &ConnectionSpec,
    policy: &OperatorDefaults,
) -> Result<Grant, Refusal> {
    let overrides = ConnectionSettings {
        endpoint: inline.endpoint.clone(),
        region: inline.region.clone(),
        project_id: inline.project_id.clone(),
        app_user_id: inline.app_user_id.clone(),
        ..ConnectionSettings::default()
    };
    let settings = policy.settings.overlay(&overrides);
    if let Some(secret) = &inline.credentials_secret_ref {
        policy.inline_endpoints.check(inline.endpoint.as_deref())?;
        return Ok(Grant {
            settings,
            credentials: CredentialsSource::Secret {
                namespace: namespace.to_owned(),
                name: secret.name.clone(),
                field: "spec.connection.credentialsSecretRef".into(),
            },
            via: "spec.connection".into(),
            reference: None,
        });
    }
    if let Some(field) = chosen_target(&overrides) {
        return Err(not_allowed(format!(
            "spec.connection.{field} is set without spec.connection.credentialsSecretRef: the operator's own credentials are never sent to an endpoint, region or project a resource chooses; add credentialsSecretRef with credentials of your own, or use spec.connectionRef"
        )));
    }
    if !policy.credentials_scope.admits(namespace) {
        return Err(not_allowed(format!(
            "no connection: namespace {namespace} may not use the operator's own credentials (--default-credentials-namespaces allows: {}); set spec.connectionRef to a MetaStudioConnection or ClusterMetaStudioConnection, or spec.connection.credentialsSecretRef",
            policy.credentials_scope.describe()
        )));
    }
    Ok(Grant {
        settings,
        credentials: CredentialsSource::Operator,
        via: "the operator's defaults".into(),
        reference: None,
    })
}

/// The credentials `resource` would use, if the decision grants it any:
/// which Secret changes concern it.
pub fn decide_secret(
    resource: &crate::crd::ActivationCode,
    directory: &(impl Directory + ?Sized),
) -> Option<CredentialsSource> {
    let namespace = kube::ResourceExt::namespace(resource).unwrap_or_default();
    let everyone = OperatorDefaults {
        credentials_scope: DefaultCredentialsScope::Everyone,
        ..OperatorDefaults::default()
    };
    decide(&namespace, &resource.spec, directory, &everyone)
        .ok()
        .map(|grant| grant.credentials)
}

/// The first of endpoint, region and projectId a resource set itself.
fn chosen_target(overrides: &ConnectionSettings) -> Option<&'static str> {
    [
        ("endpoint", &overrides.endpoint),
        ("region", &overrides.region),
        ("projectId", &overrides.project_id),
    ]
    .into_iter()
    .find_map(|(field, value)| value.is_some().then_some(field))
}

fn by_reference(
    namespace: &str,
    robot: &str,
    reference: &ConnectionReference,
    directory: &(impl Directory + ?Sized),
) -> Result<Grant, Refusal> {
    let name = &reference.name;
    match reference.kind {
        ConnectionKind::MetaStudioConnection => {
            let connection = directory.connection(namespace, name).ok_or_else(|| Refusal {
                reason: CONNECTION_NOT_FOUND,
                message: format!(
                    "spec.connectionRef: MetaStudioConnection {namespace}/{name} does not exist: create it in namespace {namespace} (a MetaStudioConnection serves only its own namespace), or refer to a ClusterMetaStudioConnection"
                ),
            })?;
            Ok(namespaced_grant(namespace, name, &connection))
        }
        ConnectionKind::ClusterMetaStudioConnection => {
            let connection = directory.cluster_connection(name).ok_or_else(|| Refusal {
                reason: CONNECTION_NOT_FOUND,
                message: format!(
                    "spec.connectionRef: ClusterMetaStudioConnection {name} does not exist: ask the cluster's administrators which connections your namespace may use"
                ),
            })?;
            admit(namespace, robot, name, &connection.conditions, directory)?;
            Ok(cluster_grant(name, &connection))
        }
    }
}

/// What the MetaStudioConnection `namespace/name` grants.
fn namespaced_grant(namespace: &str, name: &str, connection: &MetaStudioConnectionSpec) -> Grant {
    let via = format!("MetaStudioConnection {namespace}/{name}");
    Grant {
        settings: target_settings(&connection.target),
        credentials: CredentialsSource::Secret {
            namespace: namespace.to_owned(),
            name: connection.credentials_secret_ref.name.clone(),
            field: format!("spec.credentialsSecretRef of {via}"),
        },
        via,
        reference: Some((ConnectionKind::MetaStudioConnection, name.to_owned())),
    }
}

/// What the ClusterMetaStudioConnection `name` grants (once admitted).
fn cluster_grant(name: &str, connection: &ClusterMetaStudioConnectionSpec) -> Grant {
    let via = format!("ClusterMetaStudioConnection {name}");
    let secret = &connection.credentials_secret_ref;
    Grant {
        settings: target_settings(&connection.target),
        credentials: CredentialsSource::Secret {
            namespace: secret.namespace.clone(),
            name: secret.name.clone(),
            field: format!("spec.credentialsSecretRef of {via}"),
        },
        via,
        reference: Some((ConnectionKind::ClusterMetaStudioConnection, name.to_owned())),
    }
}

/// The connection `name` that once-codes for a workload of `namespace`
/// come from: the MetaStudioConnection `namespace/name` when it exists (a
/// namespace's own connection shadows a cluster-wide one of the same
/// name), else the ClusterMetaStudioConnection `name` if one of its
/// conditions admits `namespace` for every robot. A once-code is not tied
/// to a robot, so a condition limited to some robots (spec.conditions[].robotIds)
/// does not admit it.
pub fn once_code_grant(
    namespace: &str,
    name: &str,
    directory: &(impl Directory + ?Sized),
) -> Result<Grant, Refusal> {
    if let Some(connection) = directory.connection(namespace, name) {
        return Ok(namespaced_grant(namespace, name, &connection));
    }
    let connection = directory.cluster_connection(name).ok_or_else(|| Refusal {
        reason: CONNECTION_NOT_FOUND,
        message: format!(
            "no MetaStudioConnection {namespace}/{name} and no ClusterMetaStudioConnection {name}: name a connection of namespace {namespace}, or one the cluster's administrators opened to it"
        ),
    })?;
    let admitting = admitting(namespace, name, &connection.conditions, directory, "")?;
    if admitting.iter().all(|(_, c)| !c.robot_ids.is_empty()) {
        return Err(not_allowed(format!(
            "ClusterMetaStudioConnection {name} admits namespace {namespace} only for some robots (spec.conditions[].robotIds), and a once-code is valid for every robot of the project; ask its owner for a condition without robotIds"
        )));
    }
    Ok(cluster_grant(name, &connection))
}

/// The settings a connection resource states: all of them, no operator
/// default mixed in.
pub fn target_settings(target: &ConnectionTarget) -> ConnectionSettings {
    ConnectionSettings {
        endpoint: target.endpoint.clone(),
        region: target.region.clone(),
        project_id: Some(target.project_id.clone()),
        app_user_id: target.app_user_id.clone(),
        insecure_http: target.insecure_http,
        pacing: target
            .budget
            .as_ref()
            .map(|b| b.pacing())
            .unwrap_or_default(),
    }
}

/// Whether the conditions of ClusterMetaStudioConnection `name` admit
/// `namespace` and `robot`.
fn admit(
    namespace: &str,
    robot: &str,
    name: &str,
    conditions: &[AccessCondition],
    directory: &(impl Directory + ?Sized),
) -> Result<(), Refusal> {
    let admitting = admitting(
        namespace,
        name,
        conditions,
        directory,
        "spec.connectionRef: ",
    )?;
    let robot_ok = admitting
        .iter()
        .any(|(_, c)| c.robot_ids.is_empty() || c.robot_ids.iter().any(|r| r == robot));
    if robot_ok {
        return Ok(());
    }
    let rules: Vec<String> = admitting
        .iter()
        .map(|(i, c)| format!("spec.conditions[{i}].robotIds [{}]", c.robot_ids.join(", ")))
        .collect();
    Err(not_allowed(format!(
        "spec.robotId: ClusterMetaStudioConnection {name} admits namespace {namespace} only for other robots ({}): robot {robot} is not among them; ask its owner to add it",
        rules.join("; ")
    )))
}

/// The conditions (with their index) of ClusterMetaStudioConnection `name`
/// that admit `namespace`, or why none does; `field` starts the message.
fn admitting<'a>(
    namespace: &str,
    name: &str,
    conditions: &'a [AccessCondition],
    directory: &(impl Directory + ?Sized),
    field: &str,
) -> Result<Vec<(usize, &'a AccessCondition)>, Refusal> {
    let labels = directory.namespace_labels(namespace);
    let admitting: Vec<(usize, &AccessCondition)> = conditions
        .iter()
        .enumerate()
        .filter(|(_, c)| admits_namespace(c, namespace, labels.as_ref()))
        .collect();
    if !admitting.is_empty() {
        return Ok(admitting);
    }
    let by_labels = conditions.iter().any(|c| c.namespace_selector.is_some());
    if labels.is_none() && by_labels {
        return Err(Refusal {
            reason: NAMESPACE_LABELS_UNKNOWN,
            message: format!(
                "{field}ClusterMetaStudioConnection {name} admits namespaces by their labels, and the labels of namespace {namespace} are not known yet (the operator has not seen the Namespace): a selector admits no namespace whose labels are unknown; this is decided again once they are known (with reconcile -f, add the Namespace's manifest)"
            ),
        });
    }
    Err(not_allowed(format!(
        "{field}ClusterMetaStudioConnection {name} does not admit namespace {namespace}: none of its spec.conditions names it or selects its labels; ask its owner to add the namespace there"
    )))
}

/// Whether `condition` admits `namespace`: by name, or by its `labels`
/// (`None`: not known, so only a selector that reads no label, {}, admits
/// it; a NotIn or DoesNotExist selector must not take unknown labels for
/// none).
fn admits_namespace(
    condition: &AccessCondition,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let selected = || {
        let selector = condition.namespace_selector.clone()?;
        let selector = Selector::try_from(selector).ok()?;
        Some(match labels {
            Some(labels) => selector.matches(labels),
            None => selector.selects_all(),
        })
    };
    condition.namespaces.iter().any(|n| n == namespace) || selected().unwrap_or(false)
}

#[cfg(test)]
mod tests;
