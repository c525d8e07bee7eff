//! Reconciling ActivationCodes at once when something they depend on
//! changed (a connection resource, a namespace's labels): each controller
//! (one per watched namespace, or one for all) takes the references of its
//! namespace from a channel.

use crate::crd::ActivationCode;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// The channel to the controller of one namespace (`None`: of every
/// namespace).
type Route = (Option<String>, UnboundedSender<ObjectRef<ActivationCode>>);

/// The channels to the controllers, by the namespace each watches.
#[derive(Clone, Default)]
pub struct Nudges {
    routes: Arc<Mutex<Vec<Route>>>,
}

impl Nudges {
    /// A channel for the controller of `namespace` (`None`: of all).
    pub fn channel(
        &self,
        namespace: Option<String>,
    ) -> UnboundedReceiver<ObjectRef<ActivationCode>> {
        let (sender, receiver) = unbounded();
        self.routes
            .lock()
            .expect("nudge routes lock")
            .push((namespace, sender));
        receiver
    }

    /// Has `resource` reconciled by the controller that watches it.
    pub fn send(&self, resource: ObjectRef<ActivationCode>) {
        let routes = self.routes.lock().expect("nudge routes lock");
        let route = routes
            .iter()
            .find(|(namespace, _)| namespace.is_none() || *namespace == resource.namespace);
        if let Some((_, sender)) = route {
            // A controller that stopped has dropped its receiver: nothing to do.
            let _ = sender.unbounded_send(resource);
        }
    }
}

/// Remembers the last value seen per key (a generation, a set of labels),
/// to tell a change that matters from one that does not (a status write).
#[derive(Debug)]
pub struct LastSeen<K, V> {
    seen: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for LastSeen<K, V> {
    fn default() -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: PartialEq> LastSeen<K, V> {
    /// Whether `value` differs from the last one seen for `key` (or is the
    /// first); remembers it.
    pub fn changed(&self, key: K, value: V) -> bool {
        let mut seen = self.seen.lock().expect("last seen lock");
        if seen.get(&key) == Some(&value) {
            return false;
        }
        seen.insert(key, value);
        true
    }

    pub fn forget(&self, key: &K) {
        self.seen.lock().expect("last seen lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_go_to_the_controller_of_their_namespace() {
        let nudges = Nudges::default();
        let mut a = nudges.channel(Some("a".into()));
        let mut b = nudges.channel(Some("b".into()));
        nudges.send(ObjectRef::new("x").within("b"));
        nudges.send(ObjectRef::new("y").within("elsewhere"));
        assert!(a.try_recv().is_err(), "nothing for a");
        assert_eq!(b.try_recv().unwrap().name, "x");
        assert!(b.try_recv().is_err(), "y has no controller");
        let all = Nudges::default();
        let mut every = all.channel(None);
        all.send(ObjectRef::new("z").within("c"));
        assert_eq!(every.try_recv().unwrap().name, "z");
    }

    #[test]
    fn last_seen_tells_changes() {
        let seen = LastSeen::default();
        assert!(seen.changed("uid", 1));
        assert!(!seen.changed("uid", 1));
        assert!(seen.changed("uid", 2));
        seen.forget(&"uid");
        assert!(seen.changed("uid", 2));
    }
}
