//! Scenarios p and s: the chart as shipped, on a cluster as a new user
//! finds it (no CRDs of the product), installed with only the image
//! overridden and later uninstalled.
//!
//! p. `helm install`: the CRDs come with the release; both pods get Ready
//! through their probes; exactly one holds the Lease; each container runs
//! as the chart says (user 65532, root filesystem read-only, no
//! capabilities, no new privileges, a seccomp filter: read from the kernel
//! on this machine's node); a tenant's ActivationCode, through its
//! MetaStudioConnection, converges against the simulator running in the
//! cluster (the same image) and gets its export Secret.
//!
//! s. `helm uninstall`: no operator pod, Lease, ServiceAccount or RBAC
//! object of the release is left; the CRDs (helm.sh/resource-policy: keep),
//! the ActivationCode, its export Secret and the connections stay.
//!
//! Both run alone (`Cluster::connect_alone`): they delete the CRDs first.

use crate::e2e::image;
use crate::e2e::in_cluster::{
    ClusterSimulator, container_process, crd_names, credentials_secret, delete_crds,
    fleet_seed_yaml, holder_among, is_ready, pod_get, pods, root_mount_options, status_field,
};
use crate::e2e::operator::assert_no_forbidden;
use crate::e2e::release::{Release, shipped_chart};
use crate::e2e::{Cluster, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::crd::connection::{ClusterMetaStudioConnection, MetaStudioConnection};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p_s_helm_install_converges_and_uninstall_keeps_the_resources() {
    let Some(image) = image::or_skip("scenarios p and s") else {
        return;
    };
    let cluster = Cluster::connect_alone().await;
    let client = cluster.client.clone();
    delete_crds(&client, &crd_names()).await;
    let namespace = cluster.namespace("p").await;
    let tenant = cluster.namespace("p-tenant").await;
    let (ns, tenant_ns) = (namespace.name.as_str(), tenant.name.as_str());
    let mut release = Release::new(&format!("p-{}", &ns[ns.len() - 4..]), ns);
    release.install(&shipped_chart(), &image.values(), &[]);
    release.rolled_out(&client).await;

    let names = running_as_the_chart_says(&client, &release).await;
    let holder = holder_among(&client, ns, &release.fullname(), &names).await;
    let mut leading = Vec::new();
    for pod in &names {
        let (_, metrics) = pod_get(ns, pod, 8080, "/metrics").await;
        leading.push(crate::e2e::operator::sum_of(&metrics, "metastudio_leader"));
    }
    assert_eq!(
        leading.iter().sum::<f64>(),
        1.0,
        "exactly one replica leads ({names:?}: {leading:?}); the Lease names {holder}"
    );

    let code = tenant_converges(&client, &image, tenant_ns).await;
    let logs = crate::e2e::in_cluster::pod_logs(ns, &release.pod_selector());
    assert_no_forbidden(&logs, "the operator's pods");
    crate::common::capture::assert_clean(&logs, &code);

    // s: helm uninstall.
    release.uninstall();
    nothing_of_the_release_is_left(&client, &release).await;
    everything_of_the_users_is_kept(&client, tenant_ns).await;
}

/// Both pods Ready; each container as the chart's securityContext says,
/// from the kernel's view of its process where the node is this machine.
/// The pods' names.
async fn running_as_the_chart_says(client: &Client, release: &Release) -> Vec<String> {
    let running = pods(client, &release.namespace, &release.pod_selector()).await;
    assert_eq!(running.len(), 2, "the chart's two replicas");
    let mut names = Vec::new();
    for pod in &running {
        let name = pod.metadata.name.clone().unwrap();
        assert!(is_ready(pod), "{name} is Ready through its readiness probe");
        let (status, body) = pod_get(&release.namespace, &name, 8080, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"), "{name}");
        match container_process(pod) {
            Ok((status, mountinfo)) => {
                let uid = status_field(&status, "Uid").unwrap_or_default();
                assert!(
                    uid.split_whitespace().all(|id| id == "65532"),
                    "{name} runs as {uid}"
                );
                assert_eq!(
                    status_field(&status, "CapEff"),
                    Some("0000000000000000"),
                    "{name}"
                );
                assert_eq!(status_field(&status, "NoNewPrivs"), Some("1"), "{name}");
                assert_eq!(
                    status_field(&status, "Seccomp"),
                    Some("2"),
                    "{name}: a seccomp filter"
                );
                let options = root_mount_options(&mountinfo).unwrap_or_default();
                assert!(
                    options.split(',').any(|o| o == "ro"),
                    "{name}'s root filesystem is mounted {options}"
                );
                println!(
                    "{name}: uid {}, CapEff 0, NoNewPrivs 1, Seccomp 2, root mounted {options}",
                    uid.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            Err(reason) => eprintln!("SKIPPED the kernel's view of {name}: {reason}"),
        }
        names.push(name);
    }
    names
}

/// A tenant's ActivationCode, through a MetaStudioConnection in its
/// namespace, against the simulator in the cluster: Ready, its codes
/// updated, its export Secret written. The code values (secrets).
async fn tenant_converges(client: &Client, image: &image::Image, tenant: &str) -> Vec<String> {
    let sim = ClusterSimulator::start(client, tenant, image, &fleet_seed_yaml(1, 3, 7), &[]).await;
    let objects = [
        credentials_secret(tenant, "metastudio-credentials"),
        json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
               "metadata": {"name": "kiosks", "namespace": tenant},
               "spec": {"endpoint": sim.endpoint(),
                        "projectId": metastudio_operator::simulator::DEFAULT_PROJECT_ID,
                        "credentialsSecretRef": {"name": "metastudio-credentials"}}}),
        json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
               "metadata": {"name": "lobby", "namespace": tenant},
               "spec": {"robotId": "robot-0", "validPeriod": 30,
                        "connectionRef": {"name": "kiosks"},
                        "exportSecretRef": {"name": "lobby-codes"}}}),
    ];
    for object in &objects {
        crate::e2e::chart::apply_object(client, object).await;
    }
    let codes: Api<ActivationCode> = Api::namespaced(client.clone(), tenant);
    eventually("the tenant's ActivationCode to be Ready", WAIT, || async {
        let current = codes.get("lobby").await.ok()?;
        let status = current.status.as_ref()?;
        (status.condition("Ready")?.status == "True"
            && status.observed_generation == current.metadata.generation)
            .then_some(())
    })
    .await;
    let counters = sim.counters().await;
    assert_eq!(counters.updates.len(), 3, "each code updated to 30 days");
    assert!(counters.updates.values().all(|&n| n == 1), "{counters:?}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), tenant);
    let export = secrets.get("lobby-codes").await.expect("the export Secret");
    let data = export.data.unwrap_or_default();
    assert_eq!(data.len(), 3, "one key per code");
    data.values()
        .map(|v| String::from_utf8(v.0.clone()).unwrap())
        .collect()
}

/// After `helm uninstall`: no pod, Lease, ServiceAccount, Role, RoleBinding,
/// ClusterRole or ClusterRoleBinding of the release.
async fn nothing_of_the_release_is_left(client: &Client, release: &Release) {
    let ns = release.namespace.as_str();
    let selector = format!("app.kubernetes.io/instance={}", release.name);
    eventually("the operator's pods to be gone", WAIT, || async {
        pods(client, ns, &release.pod_selector())
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    assert!(
        leases.get_opt(&release.fullname()).await.unwrap().is_none(),
        "the Lease {} is left",
        release.fullname()
    );
    let by_label = ListParams::default().labels(&selector);
    let left = [
        names(
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
            &by_label,
        )
        .await,
        names(Api::<Role>::all(client.clone()), &by_label).await,
        names(Api::<RoleBinding>::all(client.clone()), &by_label).await,
        names(Api::<ClusterRole>::all(client.clone()), &by_label).await,
        names(Api::<ClusterRoleBinding>::all(client.clone()), &by_label).await,
    ]
    .concat();
    assert!(left.is_empty(), "left by helm uninstall: {left:?}");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    assert!(
        accounts
            .get_opt(&release.fullname())
            .await
            .unwrap()
            .is_none()
    );
}

async fn names<K>(api: Api<K>, params: &ListParams) -> Vec<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(params)
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                K::kind(&()),
                o.meta().name.clone().unwrap_or_default()
            )
        })
        .collect()
}

/// The CRDs, the ActivationCode, its export Secret and the connection stay.
async fn everything_of_the_users_is_kept(client: &Client, tenant: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in crd_names() {
        let crd = crds.get_opt(&name).await.unwrap();
        assert!(crd.is_some(), "CRD {name} was deleted by helm uninstall");
    }
    let codes: Api<ActivationCode> = Api::namespaced(client.clone(), tenant);
    assert!(codes.get_opt("lobby").await.unwrap().is_some());
    let connections: Api<MetaStudioConnection> = Api::namespaced(client.clone(), tenant);
    assert!(connections.get_opt("kiosks").await.unwrap().is_some());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), tenant);
    assert!(secrets.get_opt("lobby-codes").await.unwrap().is_some());
    let cluster_connections: Api<ClusterMetaStudioConnection> = Api::all(client.clone());
    cluster_connections
        .list(&ListParams::default())
        .await
        .expect("ClusterMetaStudioConnections are still served");
}
