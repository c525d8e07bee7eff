//! Manifests on disk: files and directories of YAML (multi-document), as a
//! GitOps repository holds them. ActivationCodes are kept, credentials
//! Secrets and simulator seeds noted, other kinds skipped.

use crate::crd::{API_VERSION, ActivationCode, KIND};
use crate::secret::Secret;
use crate::simulator::seed::{self, Seed};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use serde_json::Value;
use std::collections::BTreeMap;
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
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

/// `namespace/name` of a resource.
pub fn key_of(resource: &ActivationCode) -> String {
    format!(
        "{}/{}",
        resource.metadata.namespace.as_deref().unwrap_or("default"),
        resource.metadata.name.as_deref().unwrap_or_default()
    )
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ManifestError>) {
    let display = path.display().to_string();
    match std::fs::metadata(path) {
        Err(err) => errors.push(error(display, format!("cannot read: {err}"))),
        Ok(meta) if meta.is_dir() => match std::fs::read_dir(path) {
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
                        collect_files(&child, files, errors);
                    }
                }
            }
        },
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
    let bytes =
        std::fs::read(path).map_err(|e| vec![error(&display, format!("cannot read: {e}"))])?;
    let text = String::from_utf8(bytes).map_err(|e| {
        vec![error(
            &display,
            format!(
                "is not UTF-8 (invalid byte at offset {}): save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )]
    })?;
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| vec![error(&display, format!("is not valid YAML: {e}"))])?;
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
        (Some("Secret"), Some("v1")) => {
            let secret: KubeSecret = serde_json::from_value(document)
                .map_err(|e| error(source, format!("is not a valid Secret: {e}")))?;
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
            out.secrets.insert(format!("{namespace}/{name}"), data);
        }
        (Some(seed::KIND), _) => {
            let text = serde_json::to_string(&document).expect("JSON values serialise");
            let parsed = Seed::from_yaml(&text).map_err(|e| error(source, e))?;
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
    }
    let mut resource: ActivationCode = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        error(
            source,
            format!(
                "{}: {}",
                if path == "." { "document".into() } else { path },
                explain(e.inner())
            ),
        )
    })?;
    if resource.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err(error(source, "metadata.name is missing: name the resource"));
    }
    if resource.metadata.namespace.is_none() {
        resource.metadata.namespace = Some(default_namespace.to_owned());
    }
    let problems = crate::validate::validate(&resource.spec);
    if !problems.is_empty() {
        let all = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(error(source, all));
    }
    Ok(resource)
}

/// serde's messages, with a hint where they need one.
fn explain(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if text.contains("invalid value: integer") && text.contains("u16") {
        format!("{text}; validPeriod is a number of days from 0 to 65535")
    } else if text.contains("missing field `robotId`") {
        format!("{text}; set spec.robotId to the MetaStudio application (robot) id")
    } else if text.contains("missing field `validPeriod`") {
        format!("{text}; set spec.validPeriod to the validity in days (0 = permanent)")
    } else {
        text
    }
}
