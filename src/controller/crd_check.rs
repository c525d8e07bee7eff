//! Before the controllers (and the broker) start: are the CRDs this
//! operator watches installed, and served at the version it reads? It asks
//! the API server's discovery (which every authenticated user may read), so
//! it needs no RBAC on CustomResourceDefinitions.
//!
//! Without this check a missing CRD shows only as watches failing with
//! `404 page not found` every few seconds and a `/readyz` that says "caches
//! not synced" (a `helm upgrade` from a chart that lacked the connection
//! CRDs did exactly that). Instead the operator names each missing CRD and
//! the command that installs it, in its log once per [`REPEAT`] and in
//! `/readyz` meanwhile, polls every [`POLL`], and starts the controllers
//! once all of them are served.

use crate::crd::ActivationCode;
use crate::crd::connection::{ClusterMetaStudioConnection, MetaStudioConnection};
use crate::telemetry::http::Health;
use kube::{Client, Resource};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// How often discovery is asked again while something is missing.
pub const POLL: Duration = Duration::from_secs(3);
/// How often the log repeats what is missing.
pub const REPEAT: Duration = Duration::from_secs(30);

/// What installs the CRDs, in every message that finds one missing.
const FIX: &str =
    "kubectl apply --server-side -f crds/ (or helm upgrade with --set crds.enabled=true)";

/// One CRD the operator watches: its kind's API coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedCrd {
    pub group: String,
    /// The version the operator reads.
    pub version: String,
    pub plural: String,
}

impl WatchedCrd {
    fn of<K: Resource<DynamicType = ()>>() -> Self {
        Self {
            group: K::group(&()).into_owned(),
            version: K::version(&()).into_owned(),
            plural: K::plural(&()).into_owned(),
        }
    }

    /// The CRD's name, `PLURAL.GROUP`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

/// Every CRD the controllers and the broker watch.
pub fn watched() -> [WatchedCrd; 3] {
    [
        WatchedCrd::of::<ActivationCode>(),
        WatchedCrd::of::<MetaStudioConnection>(),
        WatchedCrd::of::<ClusterMetaStudioConnection>(),
    ]
}

/// Why a watched CRD cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The server serves no version of it.
    NotInstalled { crd: String },
    /// It is installed, but not at the version the operator reads.
    NotServed {
        crd: String,
        version: String,
        served: Vec<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled { crd } => write!(f, "CRD {crd} is not installed: {FIX}"),
            Self::NotServed {
                crd,
                version,
                served,
            } => write!(
                f,
                "CRD {crd} does not serve {version}, the version this operator reads (it serves {}): install the CRDs of this operator's release: {FIX}",
                served.join(", ")
            ),
        }
    }
}

/// What discovery says about each watched CRD: the problems, none when
/// every one is served at its version.
pub async fn problems(client: &Client) -> Result<Vec<Problem>, kube::Error> {
    let wanted = watched();
    let served = served_versions(client, &wanted).await?;
    Ok(wanted
        .iter()
        .filter_map(|crd| {
            let versions = served.get(&crd.plural).cloned().unwrap_or_default();
            if versions.contains(&crd.version) {
                None
            } else if versions.is_empty() {
                Some(Problem::NotInstalled { crd: crd.name() })
            } else {
                Some(Problem::NotServed {
                    crd: crd.name(),
                    version: crd.version.clone(),
                    served: versions,
                })
            }
        })
        .collect())
}

/// Plural -> the versions that serve it, for the groups of `wanted`: one
/// GET of `/apis`, then one per version of those groups.
async fn served_versions(
    client: &Client,
    wanted: &[WatchedCrd],
) -> Result<BTreeMap<String, Vec<String>>, kube::Error> {
    let groups = client.list_api_groups().await?;
    let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for group in groups
        .groups
        .iter()
        .filter(|g| wanted.iter().any(|w| w.group == g.name))
    {
        for version in &group.versions {
            let resources = match client
                .list_api_group_resources(&version.group_version)
                .await
            {
                Ok(list) => list.resources,
                // Discovery can lag a CRD's removal by a moment.
                Err(kube::Error::Api(status)) if status.is_not_found() => continue,
                Err(err) => return Err(err),
            };
            for resource in resources.iter().filter(|r| !r.name.contains('/')) {
                served
                    .entry(resource.name.clone())
                    .or_default()
                    .push(version.version.clone());
            }
        }
    }
    Ok(served)
}

/// Asks discovery until every watched CRD is served, saying what is missing
/// in the log (once per [`REPEAT`]) and in `/readyz` meanwhile. Returns
/// `true` once they are all served, `false` when `shutdown` turned true
/// first.
pub async fn wait_until_served(
    client: &Client,
    health: &Health,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let mut said: Option<(Instant, String)> = None;
    loop {
        let text = match problems(client).await {
            Ok(found) if found.is_empty() => {
                health.set_waiting(None);
                if said.is_some() {
                    info!("every CRD the operator watches is installed: starting");
                }
                return true;
            }
            Ok(found) => found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Err(err) => format!(
                "cannot tell whether the CRDs are installed (API discovery failed: {err}); retrying"
            ),
        };
        let due = said
            .as_ref()
            .is_none_or(|(at, before)| *before != text || at.elapsed() >= REPEAT);
        if due {
            warn!("{text}");
            said = Some((Instant::now(), text.clone()));
        }
        health.set_waiting(Some(text));
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watched_crds_are_the_shipped_ones() {
        let names: Vec<String> = watched().iter().map(WatchedCrd::name).collect();
        let shipped: Vec<String> = crate::crd::definitions()
            .iter()
            .map(|(_, crd)| crd.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, shipped);
        assert!(watched().iter().all(|w| w.version == "v1alpha1"));
    }

    #[test]
    fn problems_name_the_crd_and_the_fix() {
        let missing = Problem::NotInstalled {
            crd: "metastudioconnections.metastudio.huaweicloud.com".into(),
        };
        assert_eq!(
            missing.to_string(),
            "CRD metastudioconnections.metastudio.huaweicloud.com is not installed: kubectl apply --server-side -f crds/ (or helm upgrade with --set crds.enabled=true)"
        );
        let elsewhere = Problem::NotServed {
            crd: "activationcodes.metastudio.huaweicloud.com".into(),
            version: "v1alpha1".into(),
            served: vec!["v1beta1".into()],
        };
        assert!(elsewhere.to_string().contains(
            "does not serve v1alpha1, the version this operator reads (it serves v1beta1)"
        ));
    }
}
