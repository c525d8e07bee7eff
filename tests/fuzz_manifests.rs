//! Fuzzing manifest parsing (src/offline/manifests.rs) through the loader's
//! own entry point: arbitrary bytes, YAML token soup, and valid
//! ActivationCodes mutated in structure (a wrong type, an unknown or a
//! missing field) or as text never panic, every error names its file (and
//! document) and a location, a mutated field is named by its path, and
//! valid manifests load as written. Runs briefly by default; see
//! tests/common/fuzz.rs for FUZZ_CASES / FUZZ_SEED.

mod common;

use common::fuzz::{LOWER_DIGITS, chars_of};
use metastudio_operator::crd::ActivationCodeSpec;
use metastudio_operator::offline::manifests::{ManifestError, Manifests, parse_bytes};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::path::Path;

const ORIGIN: &str = "fuzz.yaml";

fn parse(bytes: &[u8]) -> Result<Manifests, Vec<ManifestError>> {
    parse_bytes(bytes, Path::new(ORIGIN), "default")
}

/// Words by which a message places its problem.
const LOCATIONS: [&str; 10] = [
    "line ",
    "spec",
    "metadata",
    "apiVersion",
    "kind",
    "document",
    "UTF-8",
    "Kubernetes object",
    "Secret",
    "also defined",
];

/// Every error names the file (or `file#N`), a location, and is bounded.
fn check_errors(result: &Result<Manifests, Vec<ManifestError>>) -> Result<(), TestCaseError> {
    if let Err(errors) = result {
        prop_assert!(!errors.is_empty());
        for error in errors {
            let origin_ok = error.origin == ORIGIN
                || error
                    .origin
                    .strip_prefix("fuzz.yaml#")
                    .is_some_and(|n| n.parse::<usize>().is_ok());
            prop_assert!(origin_ok, "origin {}", error.origin);
            prop_assert!(
                LOCATIONS.iter().any(|w| error.message.contains(w)),
                "no location in: {}",
                error
            );
            prop_assert!(error.message.len() < 4096, "{} bytes", error.message.len());
        }
    }
    Ok(())
}

fn name() -> impl Strategy<Value = String> {
    (
        chars_of("abcdefghijklmnopqrstuvwxyz", 1..2),
        chars_of("abcdefghijklmnopqrstuvwxyz0123456789-", 0..11),
        chars_of(LOWER_DIGITS, 1..2),
    )
        .prop_map(|(a, b, c)| a + &b + &c)
}

/// The spec of a valid ActivationCode, as JSON.
fn valid_spec() -> impl Strategy<Value = Value> {
    (
        chars_of(LOWER_DIGITS, 1..33),
        0u16..=65535,
        proptest::option::of(chars_of(LOWER_DIGITS, 1..17)),
        proptest::option::of(proptest::collection::vec(chars_of(LOWER_DIGITS, 1..33), 1..4)),
        proptest::option::of((proptest::option::of(chars_of("abcdefghijklmnopqrstuvwxyz0123456789-", 1..21)), any::<bool>(), 1u64..10_000)),
        proptest::option::of(10u64..100_000),
        prop_oneof![Just("Enforce"), Just("Observe")],
        any::<bool>(),
        proptest::option::of(name()),
    )
        .prop_map(|(robot, days, room, ids, reset, sync, policy, suspend, export)| {
            let mut spec = json!({"robotId": robot, "validPeriod": days, "managementPolicy": policy, "suspend": suspend});
            let map = spec.as_object_mut().unwrap();
            if let Some(room) = room {
                map.insert("roomId".into(), json!(room));
            }
            if let Some(ids) = ids {
                map.insert("activeCodeIds".into(), json!(ids));
            }
            if let Some((token, clean, hours)) = reset {
                let mut reset = json!({"cleanAuthCredential": clean});
                if let Some(token) = token {
                    reset["token"] = json!(token);
                }
                // Shorter than the validity, as validation demands.
                let limit = if days == 0 { u64::MAX } else { u64::from(days) * 24 - 1 };
                if limit > 0 {
                    reset["beforeExpiry"] = json!(format!("{}h", 1 + hours % limit));
                }
                map.insert("reset".into(), reset);
            }
            if let Some(secs) = sync {
                map.insert("syncInterval".into(), json!(format!("{secs}s")));
            }
            if let Some(export) = export {
                map.insert("exportSecretRef".into(), json!({"name": export}));
            }
            spec
        })
}

fn activation_code(spec: Value, name: &str) -> Value {
    json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode",
        "metadata": {"name": name, "labels": {"team": "kiosk"}},
        "spec": spec,
    })
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("JSON values serialise")
}

/// What a field holds, and so which values are wrong for it.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Text,
    Days,
    Count,
    Duration,
    Flag,
    Policy,
    Mapping,
    List,
}

/// The spec's fields: path below `spec` and shape.
const FIELDS: [(&str, Shape); 23] = [
    ("robotId", Shape::Text),
    ("validPeriod", Shape::Days),
    ("roomId", Shape::Text),
    ("count", Shape::Count),
    ("surplus", Shape::Policy),
    ("deletionPolicy", Shape::Policy),
    ("activeCodeIds", Shape::List),
    ("syncInterval", Shape::Duration),
    ("managementPolicy", Shape::Policy),
    ("suspend", Shape::Flag),
    ("reset", Shape::Mapping),
    ("reset.token", Shape::Text),
    ("reset.beforeExpiry", Shape::Duration),
    ("reset.cleanAuthCredential", Shape::Flag),
    ("reset.rollout", Shape::Mapping),
    ("reset.rollout.interval", Shape::Duration),
    ("renewBeforeExpiry", Shape::Duration),
    ("connection", Shape::Mapping),
    ("connection.region", Shape::Text),
    ("exportSecretRef", Shape::Mapping),
    ("exportSecretRef.name", Shape::Text),
    ("connectionRef", Shape::Mapping),
    ("connectionRef.name", Shape::Text),
];

fn wrong_value(shape: Shape) -> BoxedStrategy<Value> {
    let number = any::<i64>().prop_map(Value::from);
    let mapping = Just(json!({"a": 1}));
    let list = Just(json!(["a", "b"]));
    match shape {
        Shape::Text => {
            prop_oneof![number, any::<bool>().prop_map(Value::from), mapping, list].boxed()
        }
        Shape::Days => prop_oneof![
            Just(json!("3")),
            (i64::MIN..0).prop_map(Value::from),
            (65_536i64..).prop_map(Value::from),
            Just(json!(1.5)),
            any::<bool>().prop_map(Value::from),
            mapping,
        ]
        .boxed(),
        Shape::Count => prop_oneof![
            Just(json!("3")),
            (i64::MIN..0).prop_map(Value::from),
            (4_294_967_296i64..).prop_map(Value::from),
            Just(json!(1.5)),
            any::<bool>().prop_map(Value::from),
            mapping,
        ]
        .boxed(),
        Shape::Duration => prop_oneof![
            number,
            mapping,
            Just(json!("")),
            Just(json!("-5m")),
            Just(json!("1y")),
            Just(json!("5")),
            Just(json!("1.5h")),
            Just(json!("100001d")),
        ]
        .boxed(),
        Shape::Flag => prop_oneof![number, Just(json!("maybe")), mapping, list].boxed(),
        Shape::Policy => {
            prop_oneof![Just(json!("enforce")), Just(json!("")), number, mapping].boxed()
        }
        Shape::Mapping => prop_oneof![number, Just(json!("text")), list].boxed(),
        Shape::List => prop_oneof![Just(json!("a")), number, mapping, Just(json!([1, 2]))].boxed(),
    }
}

/// A field of the spec and a value that is wrong for it.
fn wrong_field() -> impl Strategy<Value = (&'static str, Value)> {
    (0..FIELDS.len()).prop_flat_map(|i| {
        let (path, shape) = FIELDS[i];
        wrong_value(shape).prop_map(move |v| (path, v))
    })
}

/// Sets `spec.<path>` (dotted) to `value`, creating parent mappings.
fn set(spec: &mut Value, path: &str, value: Value) {
    let mut place = spec;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let map = place.as_object_mut().unwrap();
        let child = map.entry(part.to_string()).or_insert_with(|| json!({}));
        if !child.is_object() {
            *child = json!({});
        }
        place = child;
    }
    place
        .as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].to_owned(), value);
}

/// A YAML-ish token, to reach the parser's corners faster than bytes do.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("apiVersion: metastudio.huaweicloud.com/v1alpha1\n".to_owned()),
        Just("kind: ActivationCode\n".to_owned()),
        Just("kind: Secret\n".to_owned()),
        Just("apiVersion: v1\n".to_owned()),
        Just("metadata: {name: a}\n".to_owned()),
        Just("spec:\n".to_owned()),
        Just("  robotId: r\n".to_owned()),
        Just("  validPeriod: 3\n".to_owned()),
        Just("---\n".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a ".to_owned()),
        Just("<<: *a\n".to_owned()),
        Just("!!binary ".to_owned()),
        Just("\t".to_owned()),
        Just("  ".to_owned()),
        Just("\n".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(", ".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("|\n".to_owned()),
        Just("? ".to_owned()),
        Just("# c\n".to_owned()),
        Just("%YAML 1.2\n".to_owned()),
        chars_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            1..7
        ),
        any::<char>().prop_map(String::from),
    ]
}

/// A change to a manifest's text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(prop::sample::Index),
    DuplicateLine(prop::sample::Index),
    Insert(prop::sample::Index, String),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::DeleteLine),
        any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
        (any::<prop::sample::Index>(), token()).prop_map(|(i, t)| Edit::Insert(i, t)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edit: &Edit) -> Vec<u8> {
    let lines: Vec<&str> = text.lines().collect();
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    match edit {
        Edit::DeleteLine(i) => {
            let n = i.index(lines.len());
            lines
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != n)
                .map(|(_, l)| format!("{l}\n"))
                .collect::<String>()
                .into_bytes()
        }
        Edit::DuplicateLine(i) => {
            let n = i.index(lines.len());
            let mut out = lines.clone();
            out.insert(n, lines[n]);
            (out.join("\n") + "\n").into_bytes()
        }
        Edit::Insert(i, token) => {
            let at = boundaries[i.index(boundaries.len())];
            format!("{}{token}{}", &text[..at], &text[at..]).into_bytes()
        }
        Edit::Truncate(i) => text.as_bytes()[..boundaries[i.index(boundaries.len())]].to_vec(),
    }
}

proptest! {
    #![proptest_config(common::fuzz::config(200))]

    #[test]
    fn valid_manifests_load_as_written(spec in valid_spec(), name in name()) {
        let text = yaml(&activation_code(spec.clone(), &name));
        let manifests = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        prop_assert_eq!(manifests.resources.len(), 1);
        let loaded = &manifests.resources[0].resource;
        let expected: ActivationCodeSpec = serde_json::from_value(spec).unwrap();
        prop_assert_eq!(&loaded.spec, &expected);
        prop_assert_eq!(loaded.metadata.name.as_deref(), Some(name.as_str()));
        prop_assert_eq!(loaded.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_errors(&parse(&bytes))?;
    }

    #[test]
    fn yaml_token_soup_never_panics(tokens in proptest::collection::vec(token(), 0..40)) {
        check_errors(&parse(tokens.concat().as_bytes()))?;
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named(spec in valid_spec(), (path, value) in wrong_field()) {
        let mut spec = spec;
        set(&mut spec, path, value);
        let text = yaml(&activation_code(spec, "lobby"));
        let result = parse(text.as_bytes());
        check_errors(&result)?;
        let errors = result.err().ok_or_else(|| TestCaseError::fail(format!("accepted:\n{text}")))?;
        let field = format!("spec.{path}");
        prop_assert!(errors.iter().any(|e| e.message.contains(&field)), "{} not named in {:?}\n{}", field, errors, text);
    }

    #[test]
    fn an_unknown_field_is_named(spec in valid_spec(), parent in prop_oneof![Just(""), Just("reset."), Just("connection."), Just("exportSecretRef.")], key in chars_of("abcdefghijklmnopqrstuvwxyz", 1..11).prop_map(|k| k + "x")) {
        let mut spec = spec;
        if parent == "exportSecretRef." {
            set(&mut spec, "exportSecretRef.name", json!("export"));
        }
        set(&mut spec, &format!("{parent}{key}"), json!(1));
        let text = yaml(&activation_code(spec, "lobby"));
        let result = parse(text.as_bytes());
        check_errors(&result)?;
        let errors = result.err().ok_or_else(|| TestCaseError::fail(format!("accepted:\n{text}")))?;
        let field = format!("spec.{parent}{key}: unknown field");
        prop_assert!(errors.iter().any(|e| e.message.contains(&field)), "{} not in {:?}", field, errors);
    }

    #[test]
    fn a_missing_required_field_is_named(spec in valid_spec(), which in prop_oneof![Just("robotId"), Just("validPeriod")]) {
        let mut spec = spec;
        spec.as_object_mut().unwrap().remove(which);
        let result = parse(yaml(&activation_code(spec, "lobby")).as_bytes());
        check_errors(&result)?;
        let errors = result.err().ok_or_else(|| TestCaseError::fail("accepted"))?;
        let missing = format!("missing field `{which}`; set spec.{which}");
        prop_assert!(errors.iter().any(|e| e.message.contains(&missing)), "{:?}", errors);
    }

    #[test]
    fn edited_manifests_never_panic(spec in valid_spec(), second in valid_spec(), edit in edit()) {
        // Two documents, so errors name `file#N`.
        let text = format!("{}---\n{}", yaml(&activation_code(spec, "one")), yaml(&activation_code(second, "two")));
        check_errors(&parse(&apply(&text, &edit)))?;
    }
}

#[test]
fn the_unknown_field_table_covers_every_spec_field() {
    // FIELDS drives the wrong-type fuzzing: it must not miss a field the
    // spec gains later.
    let spec = serde_json::to_value(ActivationCodeSpec {
        robot_id: "r".into(),
        valid_period: 1,
        room_id: Some("x".into()),
        active_code_ids: Some(vec!["a".into()]),
        count: Some(1),
        surplus: metastudio_operator::crd::SurplusPolicy::Delete,
        deletion_policy: metastudio_operator::crd::DeletionPolicy::Delete,
        reset: Some(Default::default()),
        renew_before_expiry: Some("1h".parse().unwrap()),
        connection: Some(Default::default()),
        connection_ref: Some(serde_json::from_value(json!({"name": "c"})).unwrap()),
        export_secret_ref: Some(serde_json::from_value(json!({"name": "n"})).unwrap()),
        sync_interval: Some("10m".parse().unwrap()),
        management_policy: Default::default(),
        suspend: false,
        unknown_fields: Default::default(),
    })
    .unwrap();
    let top: Vec<&str> = FIELDS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !p.contains('.'))
        .collect();
    let keys: Map<String, Value> = spec.as_object().unwrap().clone();
    for key in keys.keys() {
        assert!(top.contains(&key.as_str()), "spec.{key} is not in FIELDS");
    }
}
