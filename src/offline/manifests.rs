//! Manifests on disk: files and directories of YAML (multi-document), as a
//! GitOps repository holds them. ActivationCodes are kept, credentials
//! Secrets and simulator seeds noted, other kinds skipped.

mod cel;
mod connections;
mod messages;

pub use cel::check_rules;

use crate::crd::connection::{CLUSTER_CONNECTION_KIND, CONNECTION_KIND};
use crate::crd::{API_VERSION, ActivationCode, GROUP, KIND, unknown_fields};
use crate::metastudio::models::hide_values;
use crate::secret::Secret;
use crate::simulator::seed::{self, Seed};
use crate::tenancy::Catalog;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use serde_json::Value;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Larger files are refused (a manifest is a few KiB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Everything found under the given paths.
#[derive(Debug, Default)]
pub struct Manifests {
    /// In the order found (files sorted, documents in file order).
    pub resources: Vec<Loaded>,
    /// `namespace/name` to decoded data.
    pub secrets: BTreeMap<String, BTreeMap<String, Secret>>,
    pub seeds: Vec<(PathBuf, Seed)>,
    /// Connection resources and namespace labels.
    pub catalog: Catalog,
    /// Kinds skipped, e.g. `Kustomization`, with counts.
    pub skipped: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub resource: ActivationCode,
    /// `path` or `path#N` for the N-th document of a file.
    pub origin: String,
}

/// One problem with one document; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ManifestError {
    /// The file, or `file#N` for the N-th document.
    pub origin: String,
    pub message: String,
}

fn error(source: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        origin: source.into(),
        message: message.into(),
    }
}

/// Loads every path; returns every problem found, not just the first.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Result<Manifests, Vec<ManifestError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut errors);
    }
    let mut manifests = Manifests::default();
    for file in files {
        if let Err(err) = load_file(&file, default_namespace, &mut manifests) {
            errors.extend(err);
        }
    }
    errors.extend(duplicates(&manifests));
    if errors.is_empty() && manifests.resources.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        errors.push(error(
            shown.join(", "),
            "holds no ActivationCode: pass the files or directories of your ActivationCode manifests (*.yaml, *.yml or *.json)",
        ));
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

/// Parses the bytes of one manifest file, as [`load`] does for each file
/// (without the size limit, which applies before reading); `origin` names
/// the file in errors. An input without any ActivationCode is not an error
/// here.
pub fn parse_bytes(
    bytes: &[u8],
    origin: &Path,
    default_namespace: &str,
) -> Result<Manifests, Vec<ManifestError>> {
    let mut manifests = Manifests::default();
    load_bytes(bytes, origin, default_namespace, &mut manifests)?;
    let errors = duplicates(&manifests);
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

/// A problem for each resource defined a second time.
fn duplicates(manifests: &Manifests) -> Vec<ManifestError> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for loaded in &manifests.resources {
        let key = key_of(&loaded.resource);
        if let Some(first) = seen.insert(key.clone(), loaded.origin.clone()) {
            errors.push(error(
                &loaded.origin,
                format!("ActivationCode {key} is also defined in {first}: give each resource its own metadata.name"),
            ));
        }
    }
    errors
}

/// `namespace/name` of a resource.
pub fn key_of(resource: &ActivationCode) -> String {
    format!(
        "{}/{}",
        resource.metadata.namespace.as_deref().unwrap_or("default"),
        resource.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Files under `path`, in sorted order; each directory is read once, so a
/// symbolic link back up the tree cannot loop.
fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ManifestError>) {
    let mut visited = BTreeSet::new();
    collect(path, files, errors, &mut visited);
}

fn collect(
    path: &Path,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<ManifestError>,
    visited: &mut BTreeSet<PathBuf>,
) {
    let display = path.display().to_string();
    match std::fs::metadata(path) {
        Err(err) => errors.push(error(display, format!("cannot read: {err}"))),
        Ok(meta) if meta.is_dir() => {
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            if !visited.insert(canonical) {
                return;
            }
            match std::fs::read_dir(path) {
                Err(err) => errors.push(error(display, format!("cannot list directory: {err}"))),
                Ok(entries) => {
                    let mut children: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    children.sort();
                    for child in children {
                        let name = child
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or_default();
                        if name.starts_with('.') {
                            continue;
                        }
                        let is_yaml = matches!(
                            child.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        );
                        if child.is_dir() || is_yaml {
                            collect(&child, files, errors, visited);
                        }
                    }
                }
            }
        }
        Ok(_) => files.push(path.to_path_buf()),
    }
}

fn load_file(
    path: &Path,
    default_namespace: &str,
    out: &mut Manifests,
) -> Result<(), Vec<ManifestError>> {
    let display = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|e| vec![error(&display, format!("cannot read: {e}"))])?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(vec![error(
            &display,
            format!(
                "is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for a manifest: split it or pass only the manifests"
            ),
        )]);
    }
    // Read at most one byte past the limit: a device or a pipe (which has
    // no size) must not fill memory either.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| vec![error(&display, format!("cannot read: {e}"))])?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(vec![error(
            &display,
            format!(
                "is over the {MAX_FILE_BYTES}-byte limit for a manifest: split it or pass only the manifests"
            ),
        )]);
    }
    load_bytes(&bytes, path, default_namespace, out)
}

/// The YAML parser's limits. A manifest needs a few dozen values and hardly
/// any aliases; these stop alias bombs ("billion laughs") and nesting storms
/// early, with little memory, yet leave room for a file of thousands of
/// resources.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 100_000,
            max_nodes: 1_000_000,
            max_aliases: 10_000,
            max_anchors: 10_000,
            max_depth: 32,
            max_recorded_anchor_events: 100_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
    }
}

fn load_bytes(
    bytes: &[u8],
    path: &Path,
    default_namespace: &str,
    out: &mut Manifests,
) -> Result<(), Vec<ManifestError>> {
    let display = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| {
        vec![error(
            &display,
            format!(
                "is not UTF-8 (invalid byte at offset {}): save it as UTF-8",
                e.valid_up_to()
            ),
        )]
    })?;
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| vec![error(&display, messages::yaml_problem(&e))])?;
    let many = documents.len() > 1;
    let mut errors = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let source = if many {
            format!("{display}#{}", index + 1)
        } else {
            display.clone()
        };
        if let Err(err) = load_document(document, &source, path, default_namespace, out) {
            errors.push(err);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn load_document(
    document: Value,
    source: &str,
    path: &Path,
    default_namespace: &str,
    out: &mut Manifests,
) -> Result<(), ManifestError> {
    if document.is_null() {
        return Ok(());
    }
    let Value::Object(map) = &document else {
        return Err(error(
            source,
            "is not a Kubernetes object (a YAML mapping with apiVersion and kind)",
        ));
    };
    for field in ["apiVersion", "kind"] {
        if map.get(field).is_some_and(|v| !v.is_string()) {
            return Err(error(
                source,
                format!(
                    "{field}: must be a string, e.g. apiVersion: {API_VERSION} and kind: {KIND}"
                ),
            ));
        }
    }
    let kind = map.get("kind").and_then(Value::as_str);
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    match (kind, api_version) {
        (Some(KIND), Some(API_VERSION)) => {
            let resource = parse_activation_code(document, source, default_namespace)?;
            out.resources.push(Loaded {
                resource,
                origin: source.to_owned(),
            });
        }
        (Some(KIND), other) => {
            return Err(error(
                source,
                format!(
                    "apiVersion is {}: an ActivationCode has apiVersion: {API_VERSION}",
                    other.map_or("missing".into(), |v| format!("`{v}`"))
                ),
            ));
        }
        (Some(CONNECTION_KIND), Some(API_VERSION)) => {
            let (key, spec) = connections::parse_connection(document, source, default_namespace)?;
            out.catalog.connections.insert(key, spec);
        }
        (Some(CLUSTER_CONNECTION_KIND), Some(API_VERSION)) => {
            let (name, spec) = connections::parse_cluster_connection(document, source)?;
            out.catalog.cluster_connections.insert(name, spec);
        }
        (Some("Namespace"), Some("v1")) => {
            let (name, labels) = connections::parse_namespace(document, source)?;
            out.catalog.namespace_labels.insert(name, labels);
        }
        (Some(kind), _) if kind.eq_ignore_ascii_case(KIND) => {
            return Err(error(
                source,
                format!("kind is `{kind}`: kinds are case-sensitive, write kind: {KIND}"),
            ));
        }
        // Our own status file may sit among the manifests: skip it.
        (Some(kind), Some(api))
            if api.split('/').next() == Some(GROUP) && kind != super::status_file::KIND =>
        {
            return Err(error(
                source,
                format!(
                    "kind `{kind}` does not exist in {GROUP}: write kind: {KIND}, {CONNECTION_KIND} or {CLUSTER_CONNECTION_KIND} (apiVersion: {API_VERSION})"
                ),
            ));
        }
        (Some("Secret"), Some("v1")) => {
            let (key, data) = parse_secret(document, source, default_namespace)?;
            out.secrets.insert(key, data);
        }
        (Some(seed::KIND), _) => {
            let text = serde_json::to_string(&document).expect("JSON values serialise");
            let parsed = Seed::from_yaml(&text).map_err(|e| error(source, e))?;
            messages::check_seed_size(&parsed).map_err(|m| error(source, m))?;
            out.seeds.push((path.to_path_buf(), parsed));
        }
        (Some(kind), Some(_)) => *out.skipped.entry(kind.to_owned()).or_default() += 1,
        (None, _) => {
            return Err(error(
                source,
                "has no `kind`: every document must be a Kubernetes object",
            ));
        }
        (Some(_), None) => {
            return Err(error(
                source,
                "has no `apiVersion`: every document must be a Kubernetes object",
            ));
        }
    }
    Ok(())
}

/// A credentials Secret: `namespace/name` and its decoded data. Errors
/// name the field but never quote a value.
fn parse_secret(
    document: Value,
    source: &str,
    default_namespace: &str,
) -> Result<(String, BTreeMap<String, Secret>), ManifestError> {
    let secret: KubeSecret = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let detail = if path.starts_with("data.") && !e.inner().to_string().contains("invalid type")
        {
            "is not base64: encode the value (base64 -w0), or put plain text under stringData"
                .to_owned()
        } else {
            hide_values(&e.inner().to_string())
        };
        error(source, format!("is not a valid Secret: {path}: {detail}"))
    })?;
    let namespace = secret
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace.to_owned());
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut data: BTreeMap<String, Secret> = BTreeMap::new();
    for (key, bytes) in secret.data.unwrap_or_default() {
        let value = String::from_utf8(bytes.0)
            .map_err(|_| error(source, format!("Secret data `{key}` is not UTF-8 text")))?;
        data.insert(key, Secret::new(value));
    }
    for (key, value) in secret.string_data.unwrap_or_default() {
        data.insert(key, Secret::new(value));
    }
    Ok((format!("{namespace}/{name}"), data))
}

fn parse_activation_code(
    document: Value,
    source: &str,
    default_namespace: &str,
) -> Result<ActivationCode, ManifestError> {
    if let Value::Object(map) = &document {
        for field in map.keys() {
            if !matches!(
                field.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                return Err(error(
                    source,
                    format!(
                        "unknown top-level field `{field}`: an ActivationCode has apiVersion, kind, metadata and spec"
                    ),
                ));
            }
        }
        if !map.contains_key("spec") {
            return Err(error(
                source,
                "has no `spec`: add spec.robotId and spec.validPeriod",
            ));
        }
        if let Some(problem) = messages::metadata_problem(map.get("metadata"))
            .or_else(|| messages::list_for_mapping(&document))
        {
            return Err(error(source, problem));
        }
    }
    let mut resource: ActivationCode = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        error(source, messages::explain(&path, &e.inner().to_string()))
    })?;
    let unknown = unknown_fields::paths(&resource.spec);
    if !unknown.is_empty() {
        return Err(error(
            source,
            messages::unknown_fields(&unknown, &crate::crd::definition()),
        ));
    }
    connections::name_of(&resource.metadata, source)?;
    resource.metadata.namespace = Some(connections::namespace_of(
        &resource.metadata,
        source,
        default_namespace,
    )?);
    let problems = crate::validate::validate(&resource.spec);
    if !problems.is_empty() {
        let all = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(error(source, all));
    }
    // A manifest's status (say, from `kubectl get -o yaml`) is not this
    // run's: the status file is.
    resource.status = None;
    Ok(resource)
}
