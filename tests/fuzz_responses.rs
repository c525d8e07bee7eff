//! Fuzzing the decoding of MetaStudio answers (the list, show, update,
//! reset and once-code bodies, and error bodies) through the client's own
//! decode functions: arbitrary bytes and structure-aware mutations of valid
//! JSON never panic, errors never quote a code value and stay printable,
//! and valid bodies round-trip. Runs briefly by default; see
//! tests/common/fuzz.rs for FUZZ_CASES / FUZZ_SEED.

mod common;

use common::fuzz::{HEX, chars_of};
use jiff::Timestamp;
use metastudio_operator::metastudio::ApiErrorKind;
use metastudio_operator::metastudio::client::{decode_failure, decode_success};
use metastudio_operator::metastudio::models::{ActiveCode, ActiveCodePage, OnceCode};
use metastudio_operator::secret::Secret;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn id() -> impl Strategy<Value = String> {
    chars_of(HEX, 1..33)
}

/// Code values are long and marked, so an error that quotes one is caught.
fn code_value() -> impl Strategy<Value = String> {
    chars_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8..17).prop_map(|v| format!("SECRET{v}"))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800, 0i32..1_000_000_000)
        .prop_map(|(s, ns)| Timestamp::new(s, ns).expect("in range"))
}

fn active_code() -> impl Strategy<Value = ActiveCode> {
    (
        id(),
        code_value(),
        id(),
        proptest::option::of(id()),
        any::<u16>(),
        proptest::option::of(timestamp()),
        timestamp(),
        timestamp(),
    )
        .prop_map(
            |(
                active_code_id,
                code,
                robot_id,
                room_id,
                valid_period,
                expire_time,
                create,
                update,
            )| {
                ActiveCode {
                    active_code_id,
                    active_code: Secret::new(code),
                    robot_id,
                    room_id,
                    valid_period,
                    expire_time,
                    create_time: create,
                    update_time: update,
                }
            },
        )
}

fn page() -> impl Strategy<Value = ActiveCodePage> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(active_code(), 0..4),
    )
        .prop_map(|(offset, limit, count, data)| ActiveCodePage {
            offset,
            limit,
            count,
            data,
        })
}

fn once_code() -> impl Strategy<Value = OnceCode> {
    code_value().prop_map(|v| OnceCode {
        once_code: Secret::new(v),
    })
}

/// Values a broken or hostile server might put anywhere.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(65536)),
        Just(json!(-1)),
        Just(json!("")),
        any::<String>().prop_map(Value::from),
        code_value().prop_map(Value::from),
        Just(json!("9999-99-99T99:99:99Z")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                chars_of("abcdefghijklmnopqrstuvwxyz_", 1..13),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a valid body.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value at the n-th place (pre-order) with another value.
    Replace(prop::sample::Index, Value),
    /// Remove the n-th object field.
    Remove(prop::sample::Index),
    /// Add a field to the n-th object.
    Add(prop::sample::Index, String, Value),
    /// Cut the serialised text at a point.
    Truncate(prop::sample::Index),
    /// Put a byte into the serialised text.
    Insert(prop::sample::Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), hostile_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => (any::<prop::sample::Index>(), chars_of("abcdefghijklmnopqrstuvwxyz_", 1..17), hostile_value()).prop_map(|(i, k, v)| Mutation::Add(i, k, v)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn count_values(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_values).sum(),
        Value::Object(map) => map.values().map(count_values).sum(),
        _ => 0,
    }
}

fn children(value: &mut Value) -> Vec<&mut Value> {
    match value {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(map) => map.values_mut().collect(),
        _ => Vec::new(),
    }
}

/// Replaces the `n`-th value in pre-order; true once done.
fn replace_nth(value: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *value = with.clone();
        return true;
    }
    *n -= 1;
    children(value)
        .into_iter()
        .any(|child| replace_nth(child, n, with))
}

fn count_fields(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(count_fields).sum::<usize>(),
        Value::Array(items) => items.iter().map(count_fields).sum(),
        _ => 0,
    }
}

/// Removes the `n`-th object field (each object's own fields, then its
/// children's); true once done.
fn remove_nth_field(value: &mut Value, n: &mut usize) -> bool {
    if let Value::Object(map) = value {
        if *n < map.len() {
            let key = map.keys().nth(*n).cloned().expect("n < len");
            map.remove(&key);
            return true;
        }
        *n -= map.len();
    }
    children(value)
        .into_iter()
        .any(|child| remove_nth_field(child, n))
}

fn count_objects(value: &Value) -> usize {
    usize::from(value.is_object())
        + match value {
            Value::Object(map) => map.values().map(count_objects).sum(),
            Value::Array(items) => items.iter().map(count_objects).sum(),
            _ => 0,
        }
}

/// Adds `key: extra` to the `n`-th object in pre-order; true once done.
fn add_to_nth_object(value: &mut Value, n: &mut usize, key: &str, extra: &Value) -> bool {
    if let Value::Object(map) = value {
        if *n == 0 {
            map.insert(key.to_owned(), extra.clone());
            return true;
        }
        *n -= 1;
    }
    children(value)
        .into_iter()
        .any(|child| add_to_nth_object(child, n, key, extra))
}

/// Applies `mutation` to `value`, returning the bytes to decode.
fn mutate(mut value: Value, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::Replace(index, replacement) => {
            let mut n = index.index(count_values(&value));
            replace_nth(&mut value, &mut n, replacement);
        }
        Mutation::Remove(index) => {
            let fields = count_fields(&value);
            if fields > 0 {
                remove_nth_field(&mut value, &mut index.index(fields));
            }
        }
        Mutation::Add(index, key, extra) => {
            let objects = count_objects(&value);
            if objects > 0 {
                add_to_nth_object(&mut value, &mut index.index(objects), key, extra);
            }
        }
        Mutation::Truncate(index) => {
            let bytes = serde_json::to_vec(&value).unwrap();
            return bytes[..index.index(bytes.len() + 1)].to_vec();
        }
        Mutation::Insert(index, byte) => {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            bytes.insert(index.index(bytes.len() + 1), *byte);
            return bytes;
        }
    }
    serde_json::to_vec(&value).unwrap()
}

/// Every string and number in `value` that could be a secret: the values
/// the generator marked, and what a mutation put in their place.
fn secrets(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("SECRET") => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| secrets(v, out)),
        Value::Object(map) => {
            for (key, v) in map {
                if matches!(key.as_str(), "active_code" | "once_code")
                    && !v.is_object()
                    && !v.is_array()
                {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    // Short values (`1`, `true`) occur in any message.
                    if text.len() >= 6 {
                        out.push(text);
                    }
                }
                secrets(v, out);
            }
        }
        _ => {}
    }
}

/// What every decode error must be: a `Decode` with the status and request
/// id, printable, bounded and free of every secret.
fn check_error(kind: &ApiErrorKind, secrets: &[String]) -> Result<(), TestCaseError> {
    let text = kind.to_string();
    prop_assert!(
        matches!(kind, ApiErrorKind::Decode { status: 200, .. }),
        "{}",
        text
    );
    prop_assert!(text.contains("X-Request-Id: fuzz-1"), "{}", text);
    prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
    prop_assert!(text.len() < 1024, "{} bytes: {}", text.len(), text);
    for secret in secrets {
        prop_assert!(
            !text.contains(secret.as_str()),
            "quotes {}: {}",
            secret,
            text
        );
    }
    Ok(())
}

/// Decodes `bytes` as `T`: a success must re-encode and decode to itself,
/// an error must pass [`check_error`].
fn decode_checked<T>(bytes: &[u8], secrets: &[String]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    match decode_success::<T>(200, Some("fuzz-1".into()), bytes) {
        Ok(value) => {
            let again = serde_json::to_vec(&value).unwrap();
            match decode_success::<T>(200, None, &again) {
                Ok(decoded) => prop_assert_eq!(decoded, value),
                Err(kind) => prop_assert!(false, "re-encoded body fails: {}", kind),
            }
            Ok(())
        }
        Err(kind) => check_error(&kind, secrets),
    }
}

fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let bytes = serde_json::to_vec(value).unwrap();
    let decoded =
        decode_success::<T>(200, None, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, value);
    Ok(())
}

proptest! {
    #![proptest_config(common::fuzz::config(500))]

    #[test]
    fn valid_bodies_round_trip(page in page(), code in active_code(), once in once_code()) {
        round_trips(&page)?;
        round_trips(&code)?;
        round_trips(&once)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), status in any::<u16>()) {
        decode_checked::<ActiveCodePage>(&bytes, &[])?;
        decode_checked::<ActiveCode>(&bytes, &[])?;
        decode_checked::<OnceCode>(&bytes, &[])?;
        let kind = decode_failure(status, Some("fuzz-1".into()), None, &bytes);
        let text = kind.to_string();
        prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
        prop_assert!(text.len() < 1024, "{}", text);
    }

    #[test]
    fn mutated_list_bodies_fail_cleanly(page in page(), mutation in mutation()) {
        let value = serde_json::to_value(&page).unwrap();
        let mut marked = Vec::new();
        secrets(&value, &mut marked);
        let bytes = mutate(value, &mutation);
        if let Ok(mutated) = serde_json::from_slice::<Value>(&bytes) {
            secrets(&mutated, &mut marked);
        }
        decode_checked::<ActiveCodePage>(&bytes, &marked)?;
    }

    #[test]
    fn mutated_code_bodies_fail_cleanly(code in active_code(), once in once_code(), mutation in mutation()) {
        for value in [serde_json::to_value(&code).unwrap(), serde_json::to_value(&once).unwrap()] {
            let mut marked = Vec::new();
            secrets(&value, &mut marked);
            let bytes = mutate(value, &mutation);
            if let Ok(mutated) = serde_json::from_slice::<Value>(&bytes) {
                secrets(&mutated, &mut marked);
            }
            decode_checked::<ActiveCode>(&bytes, &marked)?;
            decode_checked::<OnceCode>(&bytes, &marked)?;
        }
    }

    #[test]
    fn error_bodies_are_cut_and_cleaned(code in any::<String>(), message in any::<String>(), status in 400u16..600) {
        let body = serde_json::to_vec(&json!({"error_code": code, "error_msg": message})).unwrap();
        let kind = decode_failure(status, Some("fuzz-1".into()), None, &body);
        let text = kind.to_string();
        prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
        prop_assert!(text.len() < 1024, "{}", text);
        prop_assert!(text.contains(&format!("HTTP {status}")), "{}", text);
    }
}
