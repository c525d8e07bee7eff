//! Publishes the engine's events as events.k8s.io/v1 Events. A repeat of
//! an identical event (same object, type, reason, action and note) within
//! [`FOLD_WINDOW`] of the last one is counted in the first Event's
//! `series` with a PATCH; an event with any other note is a new Event.
//! (kube's `Recorder` folds by reason alone and keeps only the first
//! note, so the codes and request ids of later notes would be lost.)

use crate::engine::host::EngineEvent;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long after its last occurrence an Event still takes repeats into
/// its series (kube's `Recorder` and client-go use 6 minutes too).
pub const FOLD_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// The most Events remembered for folding; when full, the one seen least
/// recently is forgotten (its next repeat is a new Event).
pub const MAX_REMEMBERED: usize = 4096;

/// The longest name the API accepts (a DNS subdomain).
const MAX_NAME: usize = 253;

/// Writes Events, folding identical repeats into a series.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    folds: Mutex<Folds>,
}

impl EventPublisher {
    /// A publisher reporting as `reporter` (the controller's name and this
    /// replica's identity).
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            folds: Mutex::default(),
        }
    }

    /// Publishes `event` about `regarding`: a new Event, or one more in the
    /// series of an identical Event published within the fold window.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        event: &EngineEvent,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = fold_key(regarding, event);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let repeat = self
            .folds
            .lock()
            .expect("event folds lock")
            .repeat(&key, now);
        if let Some((name, count)) = repeat {
            match patch_series(&api, &name, count, now).await {
                // Deleted meanwhile: the repeat becomes a new Event.
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                done => return done,
            }
        }
        let created = self.new_event(regarding, event, now);
        let name = created.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &created).await?;
        self.folds
            .lock()
            .expect("event folds lock")
            .remember(key, name, now);
        Ok(())
    }

    /// A first occurrence, with a name of its own.
    fn new_event(&self, regarding: &ObjectReference, event: &EngineEvent, now: Timestamp) -> Event {
        let controller = &self.reporter.controller;
        let base = regarding.name.as_deref().unwrap_or(controller);
        Event {
            metadata: ObjectMeta {
                name: Some(event_name(base, rand::random())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            action: Some(event.action.to_owned()),
            reason: Some(event.reason.to_owned()),
            note: Some(event.note.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_owned()),
            regarding: Some(regarding.clone()),
            ..Event::default()
        }
    }
}

/// Counts one more occurrence in the series of Event `name`.
async fn patch_series(
    api: &Api<Event>,
    name: &str,
    count: i32,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "series": EventSeries { count, last_observed_time: MicroTime(now) },
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// `<base>.<16 hex digits>`, `base` cut so the whole fits a name's 253
/// characters, and without a trailing `-` or `.` (each dot-separated part
/// of a name must end alphanumeric).
fn event_name(base: &str, suffix: u64) -> String {
    let room = MAX_NAME - ".".len() - 16;
    let base = &base[..base.floor_char_boundary(room)];
    format!("{}.{suffix:016x}", base.trim_end_matches(['-', '.']))
}

/// What makes two events the same: the object, type, reason, action and
/// note (hashed, so the cache holds no notes).
type FoldKey = [u8; 32];

/// The key of `event` about `regarding`; each field is length-prefixed,
/// so different fields never run together into the same bytes.
fn fold_key(regarding: &ObjectReference, event: &EngineEvent) -> FoldKey {
    let mut hasher = Sha256::new();
    let object = [
        regarding.uid.as_deref(),
        regarding.namespace.as_deref(),
        regarding.name.as_deref(),
    ];
    let warning = if event.warning { "Warning" } else { "Normal" };
    for field in object.into_iter().map(Option::unwrap_or_default).chain([
        warning,
        event.reason,
        event.action,
        &event.note,
    ]) {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// An Event that repeats fold into.
#[derive(Debug)]
struct Folded {
    name: String,
    count: i32,
    last_seen: Timestamp,
}

/// The Events published within the fold window, at most
/// [`MAX_REMEMBERED`].
#[derive(Debug, Default)]
struct Folds {
    events: HashMap<FoldKey, Folded>,
}

impl Folds {
    /// For a repeat at `now` of an event seen within the window: the name
    /// of its Event and the occurrences counted with this one.
    fn repeat(&mut self, key: &FoldKey, now: Timestamp) -> Option<(String, i32)> {
        self.expire(now);
        let folded = self.events.get_mut(key)?;
        folded.count = folded.count.saturating_add(1);
        folded.last_seen = now;
        Some((folded.name.clone(), folded.count))
    }

    /// Remembers a new Event `name`, making room if needed.
    fn remember(&mut self, key: FoldKey, name: String, now: Timestamp) {
        self.expire(now);
        if self.events.len() >= MAX_REMEMBERED
            && let Some(oldest) = self
                .events
                .iter()
                .min_by_key(|(_, f)| f.last_seen)
                .map(|(k, _)| *k)
        {
            self.events.remove(&oldest);
        }
        let folded = Folded {
            name,
            count: 1,
            last_seen: now,
        };
        self.events.insert(key, folded);
    }

    /// Forgets the Events whose last occurrence is out of the window.
    fn expire(&mut self, now: Timestamp) {
        self.events
            .retain(|_, f| now.duration_since(f.last_seen) < FOLD_WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::Value;
    use std::sync::Arc;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn publisher() -> (Arc<EventPublisher>, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = Reporter {
            controller: "metastudio-operator".into(),
            instance: Some("operator-0".into()),
        };
        let client = Client::new(service, "default");
        (Arc::new(EventPublisher::new(client, reporter)), handle)
    }

    fn regarding() -> ObjectReference {
        ObjectReference {
            api_version: Some("metastudio.huaweicloud.com/v1alpha1".into()),
            kind: Some("ActivationCode".into()),
            name: Some("lobby".into()),
            namespace: Some("retail".into()),
            uid: Some("uid-lobby".into()),
            ..ObjectReference::default()
        }
    }

    fn reset(note: &str) -> EngineEvent {
        EngineEvent {
            warning: false,
            reason: "CodeReset",
            action: "Reset",
            note: note.into(),
        }
    }

    /// Answers the next request with `status` and its own body; returns
    /// its method, path and body.
    async fn answer(handle: &mut Handle, status: u16) -> (String, String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if status == 404 {
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "gone"})
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        send.send_response(
            Response::builder()
                .status(status)
                .header("Content-Type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        (method, path, serde_json::from_slice(&bytes).unwrap())
    }

    /// Publishes `notes` in order, each after the one before is answered.
    fn publish_all(publisher: &Arc<EventPublisher>, notes: &[&str]) -> tokio::task::JoinHandle<()> {
        let (publisher, notes): (_, Vec<String>) = (
            publisher.clone(),
            notes.iter().map(|n| (*n).to_owned()).collect(),
        );
        tokio::spawn(async move {
            for note in notes {
                publisher
                    .publish(&regarding(), &reset(&note))
                    .await
                    .unwrap();
            }
        })
    }

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/retail/events";

    #[tokio::test]
    async fn different_notes_are_new_events_and_an_identical_repeat_is_a_series() {
        let (publisher, mut handle) = publisher();
        let task = publish_all(
            &publisher,
            &["reset c1", "reset c2", "reset c2", "reset c2"],
        );
        let (method, path, first) = answer(&mut handle, 201).await;
        assert_eq!((method.as_str(), path.as_str()), ("POST", EVENTS));
        assert_eq!(first["note"], "reset c1");
        assert_eq!(first["reportingController"], "metastudio-operator");
        assert_eq!(first["reportingInstance"], "operator-0");
        assert_eq!(first["regarding"]["uid"], "uid-lobby");
        assert_eq!(
            (&first["type"], &first["action"]),
            (&"Normal".into(), &"Reset".into())
        );
        assert!(first["eventTime"].is_string() && first.get("series").is_none());
        let name = first["metadata"]["name"].as_str().unwrap();
        let (prefix, suffix) = name.split_once('.').unwrap();
        assert!(prefix == "lobby" && suffix.len() == 16, "{name}");

        let (method, _, second) = answer(&mut handle, 201).await;
        assert_eq!(method, "POST", "another note is another Event");
        assert_eq!(second["note"], "reset c2");
        let second_name = second["metadata"]["name"].as_str().unwrap();
        assert_ne!(second_name, name);

        for count in [2, 3] {
            let (method, path, patch) = answer(&mut handle, 200).await;
            assert_eq!(method, "PATCH");
            assert_eq!(path, format!("{EVENTS}/{second_name}"));
            assert_eq!(patch["series"]["count"], count);
            assert!(patch["series"]["lastObservedTime"].is_string());
        }
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_repeat_of_a_deleted_event_is_a_new_event() {
        let (publisher, mut handle) = publisher();
        let task = publish_all(&publisher, &["reset c1", "reset c1"]);
        let (_, _, first) = answer(&mut handle, 201).await;
        let (method, _, _) = answer(&mut handle, 404).await;
        assert_eq!(method, "PATCH");
        let (method, _, again) = answer(&mut handle, 201).await;
        assert_eq!(method, "POST");
        assert_eq!(again["note"], "reset c1");
        assert_ne!(again["metadata"]["name"], first["metadata"]["name"]);
        task.await.unwrap();
    }

    fn key(n: usize) -> FoldKey {
        let mut key = [0; 32];
        key[..8].copy_from_slice(&(n as u64).to_be_bytes());
        key
    }

    #[test]
    fn repeats_fold_within_the_window_after_the_last_one() {
        let t0: Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
        let mut folds = Folds::default();
        assert_eq!(folds.repeat(&key(1), t0), None);
        folds.remember(key(1), "e1".into(), t0);
        let t1 = t0 + SignedDuration::from_mins(5);
        assert_eq!(folds.repeat(&key(1), t1), Some(("e1".into(), 2)));
        let t2 = t1 + SignedDuration::from_mins(5);
        assert_eq!(
            folds.repeat(&key(1), t2),
            Some(("e1".into(), 3)),
            "the window runs from the last repeat"
        );
        assert_eq!(folds.repeat(&key(1), t2 + FOLD_WINDOW), None);
        assert!(folds.events.is_empty(), "expired entries are dropped");
    }

    #[test]
    fn the_cache_forgets_the_least_recently_seen_when_full() {
        let t0: Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
        let mut folds = Folds::default();
        for n in 0..MAX_REMEMBERED {
            folds.remember(
                key(n),
                format!("e{n}"),
                t0 + SignedDuration::from_millis(n as i64),
            );
        }
        let now = t0 + SignedDuration::from_secs(10);
        assert!(
            folds.repeat(&key(0), now).is_some(),
            "seen again: now the newest"
        );
        folds.remember(key(MAX_REMEMBERED), "new".into(), now);
        assert_eq!(folds.events.len(), MAX_REMEMBERED);
        assert!(
            folds.repeat(&key(1), now).is_none(),
            "the least recent went"
        );
        assert!(folds.repeat(&key(0), now).is_some());
    }

    #[test]
    fn a_long_resource_name_still_makes_a_valid_event_name() {
        assert_eq!(event_name("lobby", 0xab), "lobby.00000000000000ab");
        let long = format!("{}-{}", "a".repeat(235), "b".repeat(17));
        let name = event_name(&long, 1);
        assert_eq!(name.len(), 253 - 1, "the cut left a trailing '-', dropped");
        assert!(name.starts_with(&"a".repeat(235)) && name.ends_with(".0000000000000001"));
    }

    #[test]
    fn the_fold_key_covers_object_type_reason_action_and_note() {
        let base = reset("n");
        let mut warning = reset("n");
        warning.warning = true;
        let mut other_action = reset("n");
        other_action.action = "Update";
        let mut elsewhere = regarding();
        elsewhere.uid = Some("uid-other".into());
        let keys = [
            fold_key(&regarding(), &base),
            fold_key(&regarding(), &reset("m")),
            fold_key(&regarding(), &warning),
            fold_key(&regarding(), &other_action),
            fold_key(&elsewhere, &base),
        ];
        for (i, a) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|b| b != a), "key {i} repeats");
        }
        assert_eq!(keys[0], fold_key(&regarding(), &reset("n")));
    }
}
