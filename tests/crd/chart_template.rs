//! A CRD as a template of the chart (`templates/crds/`), made from the YAML
//! that `crds/` holds: the same text, with
//!
//! - the whole object under `crds.enabled`;
//! - the chart's labels, and `helm.sh/resource-policy: keep` under
//!   `crds.keep` (Helm then leaves the CRD, and so every resource of its
//!   kind, in place on `helm uninstall`);
//! - every `x-kubernetes-validations` block (CEL rules) under the chart's
//!   `celRules` helper, which is true from Kubernetes 1.25 on: an older
//!   server refuses the field on server-side apply;
//! - `{{` escaped, should a description ever hold one.

/// The first lines of every CRD as `yaml_of` writes it, up to its name.
const HEAD: &str =
    "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ";
/// The key of a CEL rule list.
const CEL_KEY: &str = "x-kubernetes-validations:";

/// The chart template of the CRD of `kind` whose YAML is `yaml`.
pub fn of(kind: &str, yaml: &str) -> String {
    let rest = yaml
        .strip_prefix(HEAD)
        .unwrap_or_else(|| panic!("the {kind} CRD's YAML does not start with {HEAD:?}"));
    let (name, rest) = rest.split_once('\n').expect("a name line");
    let body = rest
        .strip_prefix("spec:\n")
        .unwrap_or_else(|| panic!("the {kind} CRD has more metadata than its name"));
    let body = cel_under_condition(&escape_actions(body));
    format!(
        r#"{{{{- /*
The {kind} CRD, generated from the code (src/crd*.rs, the same YAML as
crds/) by `UPDATE_CRDS=1 cargo nextest run --test crd`: do not edit.
Rendered with crds.enabled, kept on uninstall with crds.keep; its CEL rules
(x-kubernetes-validations) only where the server knows them (1.25+).
*/}}}}
{{{{- if .Values.crds.enabled }}}}
{{{{- $cel := include "metastudio-operator.celRules" . }}}}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}
  labels:
    {{{{- include "metastudio-operator.labels" . | nindent 4 }}}}
  {{{{- if .Values.crds.keep }}}}
  annotations:
    helm.sh/resource-policy: keep
  {{{{- end }}}}
spec:
{body}{{{{- end }}}}
"#
    )
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `yaml` with each `x-kubernetes-validations:` block (the key and its
/// list, whose items sit at the key's indentation or deeper) between
/// `{{- if $cel }}` and `{{- end }}`.
fn cel_under_condition(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start() != CEL_KEY {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        let key_indent = indent(line);
        let pad = " ".repeat(key_indent);
        out.push_str(&format!("{pad}{{{{- if $cel }}}}\n{line}\n"));
        i += 1;
        while i < lines.len() {
            let next = lines[i];
            let inside = indent(next) > key_indent
                || (indent(next) == key_indent && next.trim_start().starts_with("- "));
            if !inside {
                break;
            }
            out.push_str(next);
            out.push('\n');
            i += 1;
        }
        out.push_str(&format!("{pad}{{{{- end }}}}\n"));
    }
    out
}

/// `{{` as Go templates print it literally: `{{ "{{" }}`.
fn escape_actions(yaml: &str) -> String {
    yaml.replace("{{", "{{ \"{{\" }}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: things.example.com\nspec:\n  versions:\n  - schema:\n      properties:\n        id:\n          type: string\n          x-kubernetes-validations:\n          - message: immutable\n            rule: self == oldSelf\n        other:\n          description: \"a {{ brace\"\n";

    #[test]
    fn cel_blocks_are_conditional_and_nothing_else_changes() {
        let template = of("Thing", CRD);
        assert!(template.contains(
            "          {{- if $cel }}\n          x-kubernetes-validations:\n          - message: immutable\n            rule: self == oldSelf\n          {{- end }}\n        other:\n"
        ), "{template}");
        assert!(template.contains("  name: things.example.com\n  labels:\n"));
        assert!(template.contains("helm.sh/resource-policy: keep"));
        assert!(template.contains(r#"description: "a {{ "{{" }} brace""#));
        assert!(template.starts_with("{{- /*"));
        assert!(template.ends_with("{{- end }}\n"));
    }

    #[test]
    fn a_crd_with_more_metadata_is_refused() {
        let labelled = CRD.replace(
            "  name: things.example.com\n",
            "  name: things.example.com\n  labels: {a: b}\n",
        );
        let refused = std::panic::catch_unwind(|| of("Thing", &labelled));
        assert!(refused.is_err());
    }
}
