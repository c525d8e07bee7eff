//! The RBAC the chart grants is exactly what the operator uses: runs the
//! operator (with leader election) against an in-memory API server through
//! every kind of request it makes — list and watch ActivationCodes, a
//! metadata-only watch of Secrets, credentials read, an export Secret
//! created by server-side apply, the workloads of its restartTargets (one
//! of each kind) read and patched, the finalizer of deletionPolicy Delete
//! patched onto a resource, status applied, a status write refused
//! because the resource changed (409) and the fresh read that follows,
//! Events created and folded into a series, the Lease created, acquired,
//! renewed, read and released —
//! maps each request to the RBAC verb the API server authorises, and
//! compares the set with charts/metastudio-operator/rbac/operator-rules.yaml,
//! from which the chart renders its Roles.

mod common;

use common::fake_api::{
    Call, FakeCluster, Operator, RUN_TOKEN, activation_code, connection, eventually, namespace,
    secret,
};
use common::{ROBOT, robot_seed};
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use serde_json::{Value, json};
use std::collections::BTreeSet;

type Grant = (String, String, String);

/// The verbs the API server checks for one request. A server-side apply
/// (PATCH with an apply-patch body) of an object, not a subresource, may
/// create it, and then `create` is authorised too.
fn verbs(call: &Call) -> Vec<Grant> {
    // API discovery (`/apis`, `/apis/GROUP/VERSION`, the operator's check
    // that its CRDs are installed) is open to every authenticated user by
    // the default `system:discovery` ClusterRole: nothing to grant.
    if call.path.starts_with("/apis") && call.path.split('/').filter(|p| !p.is_empty()).count() <= 3
    {
        return Vec::new();
    }
    let target = call.target().expect("an API path");
    let resource = match &target.subresource {
        Some(sub) => format!("{}/{sub}", target.resource),
        None => target.resource.clone(),
    };
    let named = target.name.is_some();
    let verbs: &[&str] = match call.method.as_str() {
        "GET" if named => &["get"],
        "GET" if call.is_watch() => &["watch"],
        "GET" => &["list"],
        "POST" => &["create"],
        "PUT" => &["update"],
        "DELETE" if named => &["delete"],
        "DELETE" => &["deletecollection"],
        "PATCH" if call.content_type.contains("apply-patch") && target.subresource.is_none() => {
            &["patch", "create"]
        }
        "PATCH" => &["patch"],
        other => panic!("unexpected method {other}"),
    };
    verbs
        .iter()
        .map(|v| (target.group.clone(), resource.clone(), (*v).to_owned()))
        .collect()
}

/// The grants of the chart's rules file.
fn rules_file() -> BTreeSet<Grant> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/metastudio-operator/rbac/operator-rules.yaml"
    );
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut grants = BTreeSet::new();
    let rules = doc["rules"].as_array().unwrap().iter();
    let cluster_rules = doc["clusterRules"].as_array().unwrap().iter();
    let restart_targets = doc["restartTargets"].as_array().unwrap().iter();
    let single = [&doc["leases"], &doc["connectionSecrets"]];
    for rule in rules
        .chain(cluster_rules)
        .chain(restart_targets)
        .chain(single)
    {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    grants.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    grants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_file_grants_exactly_the_verbs_the_operator_uses() {
    let sim =
        common::simulator_accepting(robot_seed(2, 3), FaultConfig::default(), &[RUN_TOKEN]).await;
    let cluster = FakeCluster::new(
        vec![
            activation_code(
                "retail",
                "lobby",
                json!({"robotId": ROBOT, "validPeriod": 9,
                       "exportSecretRef": {"name": "lobby-codes", "restartTargets": [
                           {"kind": "Deployment", "name": "web"}, {"kind": "StatefulSet", "name": "db"},
                           {"kind": "DaemonSet", "name": "agent"}]},
                       "connection": {"credentialsSecretRef": {"name": "metastudio-credentials"}}}),
            ),
            activation_code(
                "retail",
                "held",
                json!({"robotId": "another-robot", "validPeriod": 1, "deletionPolicy": "Delete",
                       "connection": {"credentialsSecretRef": {"name": "gone"}}}),
            ),
            activation_code(
                "retail",
                "orphan",
                json!({"robotId": "another-robot", "validPeriod": 1,
                       "connection": {"credentialsSecretRef": {"name": "missing"}}}),
            ),
        ],
        vec![
            secret(
                "retail",
                "metastudio-credentials",
                &[
                    ("accessKey", DEFAULT_ACCESS_KEY),
                    ("secretKey", DEFAULT_SECRET_KEY),
                ],
            ),
            secret(
                "metastudio-system",
                "shared-credentials",
                &[
                    ("accessKey", DEFAULT_ACCESS_KEY),
                    ("secretKey", DEFAULT_SECRET_KEY),
                ],
            ),
        ],
    )
    .with_connections(
        vec![
            connection(
                "MetaStudioConnection",
                Some("retail"),
                "team",
                json!({"endpoint": sim.endpoint(), "projectId": sim.project_id(),
                       "credentialsSecretRef": {"name": "metastudio-credentials"}}),
            ),
            connection(
                "ClusterMetaStudioConnection",
                None,
                "shared",
                json!({"endpoint": sim.endpoint(), "projectId": sim.project_id(),
                       "credentialsSecretRef": {"name": "shared-credentials", "namespace": "metastudio-system"},
                       "conditions": [{"namespaceSelector": {"matchLabels": {"tier": "kiosk"}}}]}),
            ),
        ],
        vec![namespace("retail", json!({"tier": "kiosk"}))],
    );
    for (kind, name) in [
        ("Deployment", "web"),
        ("StatefulSet", "db"),
        ("DaemonSet", "agent"),
    ] {
        cluster.put_workload(kind, "retail", name);
    }
    let operator = Operator::start(
        &sim,
        cluster.client("operator"),
        &[
            "--leader-election",
            "--identity",
            "operator-0",
            "--lease-namespace",
            "metastudio-system",
        ],
    )
    .await;
    let reason = |name: &str| {
        cluster.resource("retail", name).and_then(|r| {
            r["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
        })
    };
    let connection_ready = |kind: &str, name: &str| {
        cluster.connection(kind, name).is_some_and(|c| {
            c["status"]["conditions"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    };
    let rolled_out = |plural: &str, name: &str| {
        cluster.workload(plural, "retail", name).is_some_and(|w| {
            w["spec"]["template"]["metadata"]["annotations"]
                ["metastudio.huaweicloud.com/export-hash"]
                .is_string()
        })
    };
    eventually(
        "lobby synced, its workloads rolled out, orphan without credentials, connections ready",
        async || {
            reason("lobby").as_deref() == Some("Synced")
                && rolled_out("deployments", "web")
                && rolled_out("statefulsets", "db")
                && rolled_out("daemonsets", "agent")
                && reason("orphan").as_deref() == Some("CredentialsNotFound")
                && cluster.resource("retail", "held").is_some_and(|r| {
                    r["metadata"]["finalizers"][0] == "metastudio.huaweicloud.com/delete-codes"
                })
                && cluster.secret("retail", "lobby-codes").is_some()
                && connection_ready("MetaStudioConnection", "team")
                && connection_ready("ClusterMetaStudioConnection", "shared")
        },
    )
    .await;
    // A Secret named "missing" appears, without the keys: orphan is
    // reconciled again and warns with another note, a new Event; the
    // Secret changes again (still without the keys) and the identical
    // warning becomes that Event's series.
    let new_note_posted = async || {
        cluster.calls_of("operator").iter().any(|c| {
            c.method == "POST"
                && c.path.ends_with("/events")
                && c.body["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("has neither"))
        })
    };
    cluster.put_secret(secret("retail", "missing", &[("unrelated", "x")]));
    eventually("an Event for the new note", new_note_posted).await;
    cluster.put_secret(secret("retail", "missing", &[("unrelated", "y")]));
    eventually("an Event series", async || {
        cluster
            .calls_of("operator")
            .iter()
            .any(|c| c.method == "PATCH" && c.path.contains("/events/"))
    })
    .await;
    // Someone else changes lobby without the operator's cache seeing it;
    // a changed credentials Secret makes the operator reconcile lobby: its
    // status write finds lobby changed (409), so it reads lobby again.
    cluster.edit_unseen("retail", "lobby");
    cluster.put_secret(secret(
        "retail",
        "metastudio-credentials",
        &[
            ("accessKey", DEFAULT_ACCESS_KEY),
            ("secretKey", DEFAULT_SECRET_KEY),
        ],
    ));
    eventually("a fresh read of lobby after a 409", async || {
        cluster.calls_of("operator").iter().any(|c| {
            c.method == "GET"
                && c.target()
                    .is_some_and(|t| t.resource == "activationcodes" && t.name.is_some())
        })
    })
    .await;
    operator.stop().await.expect("run ends cleanly");

    let calls = cluster.calls_of("operator");
    for call in &calls {
        if call
            .target()
            .is_some_and(|t| t.resource == "secrets" && t.name.is_none())
        {
            assert!(
                call.accept.contains("as=PartialObjectMetadata"),
                "Secrets are listed and watched by metadata only: {} {}?{} accepts {:?}",
                call.method,
                call.path,
                call.query,
                call.accept
            );
        }
    }
    let used: BTreeSet<Grant> = calls.iter().flat_map(verbs).collect();
    let granted = rules_file();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "rbac/operator-rules.yaml is out of step with the code.\n  used but not granted: {missing:?}\n  granted but never used: {unused:?}"
    );
    assert!(
        used.contains(&("".into(), "secrets".into(), "create".into())),
        "the export Secret was created by server-side apply"
    );
}
