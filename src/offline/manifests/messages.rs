//! The words of manifest errors: YAML problems in one line, serde's
//! messages with the hint each field needs, fields this operator does not
//! know, and the checks of metadata and simulator seeds that serde does not
//! make.

use crate::crd::unknown_fields::UnknownField;
use crate::simulator::Seed;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaPropsOrArray,
};
use serde_json::Value;

/// The most codes the embedded simulator (`reconcile --simulate`) is seeded
/// with: a seed is a few lines, so `generate.count` could otherwise ask for
/// billions of codes and fill memory.
pub const MAX_SEED_CODES: u64 = 1_000_000;

/// The fields of Kubernetes object metadata (`ObjectMeta`).
const METADATA_FIELDS: [&str; 15] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// A YAML error in one line, with its position and no source snippet (a
/// snippet could quote a Secret's value).
pub(super) fn yaml_problem(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut inner = err;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = inner {
        inner = error;
    }
    let at = err
        .location()
        .filter(|l| l.line() > 0)
        .map_or(String::new(), |l| {
            format!(" at line {} column {}", l.line(), l.column())
        });
    let expands = "YAML aliases (*name) here expand to more values than any manifest needs, as in an alias bomb: write the values out instead of repeating aliases";
    match inner {
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::Budget {
            breach:
                B::Aliases { .. }
                | B::Anchors { .. }
                | B::AliasAnchorRatio { .. }
                | B::RecordedAnchorEvents { .. }
                | B::RecordedAnchorBytes { .. }
                | B::MergeKeys { .. },
            ..
        } => format!("is refused{at}: {expands}"),
        E::Budget {
            breach: B::Depth { .. },
            ..
        } => format!("is refused{at}: values nest deeper than a manifest ever does (32 levels)"),
        E::Budget {
            breach: B::Documents { .. },
            ..
        } => format!("is refused{at}: it holds more than 100000 YAML documents: split it"),
        E::Budget { .. } => format!(
            "is refused{at}: it holds more YAML values than a manifest file should: split it"
        ),
        _ => {
            let text = inner.render_with_formatter(&serde_saphyr::UserMessageFormatter);
            // The parser appends the position itself; keep one copy.
            let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
            let fix = if text.contains("tab") {
                ": indent with spaces, not tabs"
            } else {
                ""
            };
            format!("is not valid YAML{at}: {text}{fix}")
        }
    }
}

/// A deserialisation error at `path` (`.` for the whole document), with the
/// fix where serde's own words do not say it.
pub(super) fn explain(path: &str, text: &str) -> String {
    let field = if path == "." { "document" } else { path };
    match hint(path, text) {
        Some(hint) => format!("{field}: {text}; {hint}"),
        None => format!("{field}: {text}"),
    }
}

fn hint(path: &str, text: &str) -> Option<String> {
    let leaf = path
        .rsplit('.')
        .next()
        .unwrap_or(path)
        .split('[')
        .next()
        .unwrap_or(path);
    if text.starts_with("missing field `robotId`") {
        return Some("set spec.robotId to the MetaStudio application (robot) id".into());
    }
    if text.starts_with("missing field `validPeriod`") {
        return Some("set spec.validPeriod to the validity in days (0 = permanent)".into());
    }
    if text.starts_with("missing field") {
        return Some("add it".into());
    }
    if text.starts_with("unknown field") {
        return Some("remove it or correct its spelling".into());
    }
    let hint = match path {
        "spec.validPeriod" => {
            "write validPeriod as a whole number of days from 0 to 65535 (0 = permanent), without quotes"
        }
        "spec.syncInterval"
        | "spec.reset.beforeExpiry"
        | "spec.renewBeforeExpiry"
        | "spec.reset.rollout.interval" => "write a duration like 90s, 10m, 24h, 1h30m or 7d",
        "spec.suspend" | "spec.reset.cleanAuthCredential" => "write true or false",
        "spec.managementPolicy" => "write Enforce or Observe (capitalised)",
        "spec" => "spec is a mapping with at least robotId and validPeriod",
        "spec.activeCodeIds" => "write a list of activation code ids, e.g. [id1, id2]",
        "spec.reset" => "reset is a mapping, e.g. {token: \"2026-11-22\"} or {beforeExpiry: 24h}",
        "spec.reset.rollout" => "rollout is a mapping, e.g. {maxCodes: \"10%\", interval: 1h}",
        "spec.connection" => "connection is a mapping, e.g. {region: cn-north-4}",
        "spec.exportSecretRef" | "spec.connection.credentialsSecretRef" => {
            "a Secret reference is a mapping, e.g. {name: my-secret}"
        }
        _ if text.contains("expected a string") => {
            return Some(format!(
                "quote the value, e.g. {leaf}: \"0123\" (unquoted digits, true/false and yes/no are not strings in YAML)"
            ));
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// The error for spec fields this operator does not know, one clause per
/// field, worded as serde's own unknown-field error (with the fields the
/// mapping has) and the fix.
pub(super) fn unknown_fields(fields: &[UnknownField], crd: &CustomResourceDefinition) -> String {
    fields
        .iter()
        .map(|field| {
            let text = format!(
                "unknown field `{}`, {}",
                field.name,
                expected(&known_fields(&field.parent, crd).unwrap_or_default())
            );
            explain(&field.to_string(), &text)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The fields `crd`'s schema gives the mapping at `parent` (e.g.
/// `spec.reset`, or `spec.conditions[0]` for an item of a list), in name
/// order; `None` for a path it does not have.
fn known_fields(parent: &str, crd: &CustomResourceDefinition) -> Option<Vec<String>> {
    let root = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    let schema = parent.split('.').try_fold(root, |schema, key| {
        let (key, item) = match key.split_once('[') {
            Some((key, _)) => (key, true),
            None => (key, false),
        };
        let field = schema.properties.as_ref()?.get(key)?;
        if item {
            match field.items.as_ref()? {
                JSONSchemaPropsOrArray::Schema(items) => Some(&**items),
                JSONSchemaPropsOrArray::Schemas(_) => None,
            }
        } else {
            Some(field)
        }
    })?;
    Some(schema.properties.as_ref()?.keys().cloned().collect())
}

/// serde's words for the fields a mapping has instead of an unknown one.
fn expected(fields: &[String]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
    match quoted.as_slice() {
        [] => "there are no fields".to_owned(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        all => format!("expected one of {}", all.join(", ")),
    }
}

/// Why an ActivationCode's `metadata` is unusable before serde reads it:
/// not a mapping, or a misspelt field that Kubernetes would drop silently.
pub(super) fn metadata_problem(metadata: Option<&Value>) -> Option<String> {
    match metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => map.keys().find(|k| !METADATA_FIELDS.contains(&k.as_str())).map(|k| {
            format!("metadata.{k}: unknown field: remove it or correct its spelling (metadata holds name, namespace, labels, annotations, ...)")
        }),
        Some(_) => Some(
            "metadata: must be a mapping with name (and optionally namespace, labels, annotations)"
                .into(),
        ),
    }
}

/// The parts of an ActivationCode that are mappings. Kubernetes refuses a
/// list in their place, and so do we, in its words: serde refuses one too
/// (it reads these types as maps, to keep their unknown fields), but names
/// the Rust type it expected (`expected struct ConnectionSpec`).
const MAPPINGS: [&str; 6] = [
    "spec",
    "spec.reset",
    "spec.reset.rollout",
    "spec.connection",
    "spec.connection.credentialsSecretRef",
    "spec.exportSecretRef",
];

/// Why a part of an ActivationCode that must be a mapping is a list.
pub(super) fn list_for_mapping(document: &Value) -> Option<String> {
    MAPPINGS.iter().find_map(|path| {
        let value = path
            .split('.')
            .try_fold(document, |value, key| value.get(key))?;
        value
            .is_array()
            .then(|| explain(path, "invalid type: sequence, expected a mapping"))
    })
}

/// Refuses a seed that would make the embedded simulator hold more than
/// [`MAX_SEED_CODES`] codes.
pub(super) fn check_seed_size(seed: &Seed) -> Result<(), String> {
    let total: u64 = seed
        .spec
        .robots
        .iter()
        .map(|r| r.codes.len() as u64 + r.generate.as_ref().map_or(0, |g| u64::from(g.count)))
        .sum();
    if total > MAX_SEED_CODES {
        return Err(format!(
            "spec.robots: the seed asks for {total} codes: the embedded simulator holds at most {MAX_SEED_CODES}, lower generate.count"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_fix_for_each_field() {
        let cases = [
            (
                "spec.validPeriod",
                "invalid type: string \"3\", expected u16",
                "without quotes",
            ),
            (
                "spec.robotId",
                "invalid type: integer `123`, expected a string",
                "robotId: \"0123\"",
            ),
            (
                "spec.syncInterval",
                "invalid type: integer `5`, expected a string",
                "like 90s",
            ),
            (
                "spec.suspend",
                "invalid type: string \"yes please\", expected a boolean",
                "true or false",
            ),
            (
                "spec.foo",
                "unknown field `foo`, expected one of `robotId`",
                "remove it",
            ),
        ];
        for (path, text, fix) in cases {
            let message = explain(path, text);
            assert!(message.starts_with(path), "{message}");
            assert!(message.contains(fix), "{message}");
        }
        assert_eq!(explain(".", "oops"), "document: oops");
    }

    #[test]
    fn unknown_fields_are_named_with_the_fields_known_there() {
        let field = |parent: &str, name: &str| UnknownField {
            parent: parent.into(),
            name: name.into(),
        };
        let crd = crate::crd::definition();
        let message = unknown_fields(
            &[
                field("spec.reset", "tokn"),
                field("spec.exportSecretRef", "format"),
            ],
            &crd,
        );
        assert_eq!(
            message,
            "spec.reset.tokn: unknown field `tokn`, expected one of `beforeExpiry`, `cleanAuthCredential`, `rollout`, `token`; remove it or correct its spelling; \
             spec.exportSecretRef.format: unknown field `format`, expected `name` or `restartTargets`; remove it or correct its spelling"
        );
        assert_eq!(known_fields("spec.nowhere", &crd), None);
        let cluster = crate::crd::connection::cluster_definition();
        assert_eq!(
            unknown_fields(&[field("spec.conditions[1]", "namspaces")], &cluster),
            "spec.conditions[1].namspaces: unknown field `namspaces`, expected one of `namespaceSelector`, `namespaces`, `robotIds`; remove it or correct its spelling"
        );
        assert_eq!(expected(&[]), "there are no fields");
    }

    #[test]
    fn a_list_in_place_of_a_mapping_is_named() {
        let doc = serde_json::json!({"spec": {"robotId": "r", "connection": ["p", "cn-north-4"]}});
        let problem = list_for_mapping(&doc).unwrap();
        assert!(
            problem.starts_with("spec.connection: invalid type: sequence"),
            "{problem}"
        );
        assert!(list_for_mapping(&serde_json::json!({"spec": {"reset": {}}})).is_none());
    }

    #[test]
    fn metadata_must_be_a_mapping_of_known_fields() {
        assert_eq!(metadata_problem(None), None);
        let ok = serde_json::json!({"name": "a", "labels": {"x": "y"}});
        assert_eq!(metadata_problem(Some(&ok)), None);
        let typo = serde_json::json!({"name": "a", "lables": {}});
        assert!(
            metadata_problem(Some(&typo))
                .unwrap()
                .starts_with("metadata.lables")
        );
        assert!(metadata_problem(Some(&serde_json::json!("a"))).is_some());
    }
}
