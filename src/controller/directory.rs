//! The cluster's connection resources and namespaces, as the tenancy
//! decision reads them: the caches of their watches (namespaces by
//! metadata only, for their labels).

use crate::crd::connection::{
    ClusterMetaStudioConnection, ClusterMetaStudioConnectionSpec, MetaStudioConnection,
    MetaStudioConnectionSpec,
};
use crate::tenancy::Directory;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::BTreeMap;

/// The caches the tenancy decision reads.
#[derive(Clone)]
pub struct ClusterDirectory {
    /// One cache per watched namespace, or one for all.
    pub connections: Vec<Store<MetaStudioConnection>>,
    pub cluster_connections: Store<ClusterMetaStudioConnection>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl ClusterDirectory {
    /// A directory of exactly these objects, already synced (for tests and
    /// for hosts without watches).
    pub fn of(
        connections: &[MetaStudioConnection],
        cluster_connections: &[ClusterMetaStudioConnection],
        namespaces: &[PartialObjectMeta<Namespace>],
    ) -> Self {
        Self {
            connections: vec![filled(connections)],
            cluster_connections: filled(cluster_connections),
            namespaces: filled(namespaces),
        }
    }

    /// Whether every cache has its first list: before, a connection that
    /// exists may look missing.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for store in &self.connections {
            store.wait_until_ready().await?;
        }
        self.cluster_connections.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await
    }

    /// Every MetaStudioConnection of every cache.
    pub fn all_connections(&self) -> Vec<std::sync::Arc<MetaStudioConnection>> {
        self.connections.iter().flat_map(Store::state).collect()
    }
}

/// A synced cache of `objects`.
fn filled<K>(objects: &[K]) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

impl Directory for ClusterDirectory {
    fn connection(&self, namespace: &str, name: &str) -> Option<MetaStudioConnectionSpec> {
        let key = ObjectRef::new(name).within(namespace);
        self.connections
            .iter()
            .find_map(|store| store.get(&key))
            .map(|c| c.spec.clone())
    }

    fn cluster_connection(&self, name: &str) -> Option<ClusterMetaStudioConnectionSpec> {
        self.cluster_connections
            .get(&ObjectRef::new(name))
            .map(|c| c.spec.clone())
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.labels().clone())
    }
}
