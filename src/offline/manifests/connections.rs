//! Connection resources and Namespaces among the manifests: what the
//! tenancy decision of `reconcile -f` reads (`spec.connectionRef`, and
//! namespace labels for a ClusterMetaStudioConnection's selectors). They
//! are held to the same standard as ActivationCodes: an unknown field, a
//! bad name or an endpoint that cannot work is an error naming the field.

use super::messages;
use super::{ManifestError, error};
use crate::crd::connection::{
    ClusterMetaStudioConnection, ClusterMetaStudioConnectionSpec, MetaStudioConnection,
    MetaStudioConnectionSpec, cluster_definition, definition,
};
use crate::crd::unknown_fields::{self, UnknownField};
use crate::validate::{self, SpecProblem};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use std::collections::BTreeMap;

/// A MetaStudioConnection: its `(namespace, name)` and spec.
pub(super) fn parse_connection(
    document: Value,
    source: &str,
    default_namespace: &str,
) -> Result<((String, String), MetaStudioConnectionSpec), ManifestError> {
    let kind = crate::crd::connection::CONNECTION_KIND;
    let resource: MetaStudioConnection = decode(document, source, kind)?;
    let spec = resource.spec;
    check(source, &unknown_fields::connection_paths(&spec), definition)?;
    check_problems(source, validate::connection_target(&spec.target))?;
    let name = name_of(&resource.metadata, source)?;
    let namespace = namespace_of(&resource.metadata, source, default_namespace)?;
    Ok(((namespace, name), spec))
}

/// A ClusterMetaStudioConnection: its name and spec.
pub(super) fn parse_cluster_connection(
    document: Value,
    source: &str,
) -> Result<(String, ClusterMetaStudioConnectionSpec), ManifestError> {
    let kind = crate::crd::connection::CLUSTER_CONNECTION_KIND;
    let resource: ClusterMetaStudioConnection = decode(document, source, kind)?;
    let spec = resource.spec;
    check(
        source,
        &unknown_fields::cluster_connection_paths(&spec),
        cluster_definition,
    )?;
    let mut problems = validate::connection_target(&spec.target);
    if let Some(why) = validate::dns_label_problem(&spec.credentials_secret_ref.namespace) {
        problems.push(SpecProblem {
            field: "spec.credentialsSecretRef.namespace".into(),
            problem: why,
        });
    }
    check_problems(source, problems)?;
    if resource.metadata.namespace.is_some() {
        return Err(error(
            source,
            "metadata.namespace: a ClusterMetaStudioConnection is cluster-wide: remove the namespace",
        ));
    }
    Ok((name_of(&resource.metadata, source)?, spec))
}

/// A Namespace: its name and labels.
pub(super) fn parse_namespace(
    document: Value,
    source: &str,
) -> Result<(String, BTreeMap<String, String>), ManifestError> {
    let namespace: Namespace = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        error(source, messages::explain(&path, &e.inner().to_string()))
    })?;
    let name = name_of(&namespace.metadata, source)?;
    if let Some(why) = validate::dns_label_problem(&name) {
        return Err(error(source, format!("metadata.name: {why}")));
    }
    Ok((name, namespace.metadata.labels.unwrap_or_default()))
}

/// Decodes a connection resource, after the checks serde cannot make.
fn decode<T: serde::de::DeserializeOwned>(
    document: Value,
    source: &str,
    kind: &str,
) -> Result<T, ManifestError> {
    if let Value::Object(map) = &document {
        if let Some(field) = map.keys().find(|f| {
            !matches!(
                f.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            )
        }) {
            return Err(error(
                source,
                format!(
                    "unknown top-level field `{field}`: a {kind} has apiVersion, kind, metadata and spec"
                ),
            ));
        }
        if !map.contains_key("spec") {
            return Err(error(
                source,
                "has no `spec`: add spec.projectId, spec.region (or spec.endpoint) and spec.credentialsSecretRef",
            ));
        }
        if let Some(problem) = messages::metadata_problem(map.get("metadata")) {
            return Err(error(source, problem));
        }
    }
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        error(source, messages::explain(&path, &e.inner().to_string()))
    })
}

/// Refuses unknown fields, with the fields known there (`crd`'s schema).
fn check(
    source: &str,
    unknown: &[UnknownField],
    crd: fn() -> CustomResourceDefinition,
) -> Result<(), ManifestError> {
    if unknown.is_empty() {
        return Ok(());
    }
    Err(error(source, messages::unknown_fields(unknown, &crd())))
}

fn check_problems(source: &str, problems: Vec<SpecProblem>) -> Result<(), ManifestError> {
    if problems.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(error(source, all.join("; ")))
}

/// `metadata.name`: present and a valid object name.
pub(super) fn name_of(metadata: &ObjectMeta, source: &str) -> Result<String, ManifestError> {
    match metadata.name.as_deref() {
        None | Some("") => Err(error(source, "metadata.name is missing: name the resource")),
        Some(name) => match validate::dns_subdomain_problem(name) {
            Some(why) => Err(error(source, format!("metadata.name: {why}"))),
            None => Ok(name.to_owned()),
        },
    }
}

/// `metadata.namespace`, or `default` when it is unset.
pub(super) fn namespace_of(
    metadata: &ObjectMeta,
    source: &str,
    default: &str,
) -> Result<String, ManifestError> {
    match metadata.namespace.as_deref() {
        None => Ok(default.to_owned()),
        Some(namespace) => match validate::dns_label_problem(namespace) {
            Some(why) => Err(error(source, format!("metadata.namespace: {why}"))),
            None => Ok(namespace.to_owned()),
        },
    }
}
