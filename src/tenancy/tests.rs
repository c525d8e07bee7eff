use super::*;
use crate::crd::ActivationCodeSpec;
use serde_json::{Value, json};

fn spec(value: Value) -> ActivationCodeSpec {
    let mut full = json!({"robotId": "robot-1", "validPeriod": 7});
    for (k, v) in value.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(full).unwrap()
}

fn target() -> Value {
    json!({"region": "cn-north-4", "projectId": "p1"})
}

/// retail has a MetaStudioConnection `main`; `shared` admits namespace
/// `retail` by name and namespaces labelled team=kiosk, robots r-a and r-b
/// only for the label; `closed` has no conditions.
fn catalog() -> Catalog {
    let mut catalog = Catalog::default();
    let mut connection = target();
    connection["credentialsSecretRef"] = json!({"name": "main-credentials"});
    catalog.connections.insert(
        ("retail".into(), "main".into()),
        serde_json::from_value(connection).unwrap(),
    );
    let mut shared = target();
    shared["credentialsSecretRef"] = json!({"name": "shared", "namespace": "metastudio-system"});
    shared["conditions"] = json!([
        {"namespaces": ["retail"]},
        {"namespaceSelector": {"matchLabels": {"team": "kiosk"}}, "robotIds": ["r-a", "r-b"]},
    ]);
    catalog
        .cluster_connections
        .insert("shared".into(), serde_json::from_value(shared).unwrap());
    let mut closed = target();
    closed["credentialsSecretRef"] = json!({"name": "closed", "namespace": "metastudio-system"});
    catalog
        .cluster_connections
        .insert("closed".into(), serde_json::from_value(closed).unwrap());
    catalog.namespace_labels.insert(
        "museum".into(),
        [("team".to_owned(), "kiosk".to_owned())].into(),
    );
    catalog
}

fn operator(scope: DefaultCredentialsScope) -> OperatorDefaults {
    OperatorDefaults {
        settings: ConnectionSettings {
            region: Some("cn-north-4".into()),
            project_id: Some("operator-project".into()),
            ..ConnectionSettings::default()
        },
        credentials: Some(Credentials::ak_sk("ak", "sk")),
        credentials_scope: scope,
    }
}

fn decided(
    namespace: &str,
    value: Value,
    scope: DefaultCredentialsScope,
) -> Result<Grant, Refusal> {
    decide(namespace, &spec(value), &catalog(), &operator(scope))
}

fn secret_of(grant: &Grant) -> (String, String) {
    match &grant.credentials {
        CredentialsSource::Secret {
            namespace, name, ..
        } => (namespace.clone(), name.clone()),
        CredentialsSource::Operator => panic!("the operator's credentials: {grant:?}"),
    }
}

#[test]
fn a_namespaced_connection_serves_its_own_namespace_only() {
    let reference = json!({"connectionRef": {"name": "main"}});
    let grant = decided("retail", reference.clone(), DefaultCredentialsScope::Nobody).unwrap();
    assert_eq!(
        secret_of(&grant),
        ("retail".into(), "main-credentials".into())
    );
    assert_eq!(grant.settings.project_id.as_deref(), Some("p1"));
    assert_eq!(grant.via, "MetaStudioConnection retail/main");
    // Another team names the same connection: it is not theirs to use.
    let refused = decided("museum", reference, DefaultCredentialsScope::Everyone).unwrap_err();
    assert_eq!(refused.reason, CONNECTION_NOT_FOUND);
    assert!(
        refused
            .message
            .starts_with("spec.connectionRef: MetaStudioConnection museum/main does not exist"),
        "{}",
        refused.message
    );
}

#[test]
fn a_cluster_connection_admits_by_name_and_by_label_and_limits_robots() {
    let reference = |robot: &str| json!({"robotId": robot, "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "shared"}});
    let grant = decided(
        "retail",
        reference("any-robot"),
        DefaultCredentialsScope::Nobody,
    )
    .unwrap();
    assert_eq!(
        secret_of(&grant),
        ("metastudio-system".into(), "shared".into())
    );
    assert!(decided("museum", reference("r-b"), DefaultCredentialsScope::Nobody).is_ok());
    let robot = decided("museum", reference("r-z"), DefaultCredentialsScope::Nobody).unwrap_err();
    assert_eq!(robot.reason, CONNECTION_NOT_ALLOWED);
    assert!(
        robot.message.starts_with("spec.robotId: ClusterMetaStudioConnection shared admits namespace museum only for other robots (spec.conditions[1].robotIds [r-a, r-b])"),
        "{}",
        robot.message
    );
    let outsider = decided(
        "finance",
        reference("r-a"),
        DefaultCredentialsScope::Everyone,
    )
    .unwrap_err();
    assert_eq!(outsider.reason, CONNECTION_NOT_ALLOWED);
    assert!(
        outsider
            .message
            .contains("does not admit namespace finance"),
        "{}",
        outsider.message
    );
}

#[test]
fn a_cluster_connection_without_conditions_admits_nobody_and_an_empty_selector_everybody() {
    let closed =
        json!({"connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "closed"}});
    assert_eq!(
        decided("retail", closed, DefaultCredentialsScope::Everyone)
            .unwrap_err()
            .reason,
        CONNECTION_NOT_ALLOWED
    );
    let mut open = catalog();
    open.cluster_connections
        .get_mut("closed")
        .unwrap()
        .conditions = serde_json::from_value(json!([{"namespaceSelector": {}}])).unwrap();
    let reference =
        spec(json!({"connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "closed"}}));
    // Even a namespace whose labels are not known.
    assert!(
        decide(
            "unknown",
            &reference,
            &open,
            &operator(DefaultCredentialsScope::Nobody)
        )
        .is_ok()
    );
    let missing =
        spec(json!({"connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "nope"}}));
    assert_eq!(
        decide(
            "retail",
            &missing,
            &open,
            &operator(DefaultCredentialsScope::Everyone)
        )
        .unwrap_err()
        .reason,
        CONNECTION_NOT_FOUND
    );
}

#[test]
fn the_operators_credentials_never_go_where_a_resource_points() {
    for (field, value) in [
        ("endpoint", json!("http://attacker.example")),
        ("region", json!("ap-southeast-1")),
        ("projectId", json!("someone-elses")),
    ] {
        let refused = decided(
            "retail",
            json!({"connection": {field: value}}),
            DefaultCredentialsScope::Everyone,
        )
        .unwrap_err();
        assert_eq!(refused.reason, CONNECTION_NOT_ALLOWED, "{field}");
        assert!(
            refused.message.starts_with(&format!(
                "spec.connection.{field} is set without spec.connection.credentialsSecretRef"
            )),
            "{}",
            refused.message
        );
    }
    // With credentials of its own, a resource may point anywhere.
    let own = decided(
        "retail",
        json!({"connection": {"endpoint": "https://private.example", "credentialsSecretRef": {"name": "mine"}}}),
        DefaultCredentialsScope::Nobody,
    )
    .unwrap();
    assert_eq!(secret_of(&own), ("retail".into(), "mine".into()));
    assert_eq!(
        own.settings.endpoint.as_deref(),
        Some("https://private.example")
    );
}

#[test]
fn the_operators_credentials_serve_only_the_namespaces_allowed() {
    let nothing = json!({});
    let refused = decided("retail", nothing.clone(), DefaultCredentialsScope::Nobody).unwrap_err();
    assert_eq!(refused.reason, CONNECTION_NOT_ALLOWED);
    assert!(refused.message.contains("namespace retail may not use the operator's own credentials (--default-credentials-namespaces allows: none)"), "{}", refused.message);
    let some = DefaultCredentialsScope::from_names(&["retail".into(), " ".into()]);
    let grant = decided("retail", nothing.clone(), some.clone()).unwrap();
    assert_eq!(grant.credentials, CredentialsSource::Operator);
    assert_eq!(
        grant.settings.project_id.as_deref(),
        Some("operator-project")
    );
    assert!(decided("museum", nothing.clone(), some).is_err());
    assert!(
        decided(
            "museum",
            nothing,
            DefaultCredentialsScope::from_names(&["*".into()])
        )
        .is_ok()
    );
    // The app user id is the resource's to choose.
    let user = decided(
        "retail",
        json!({"connection": {"appUserId": "kiosk-7"}}),
        DefaultCredentialsScope::Everyone,
    )
    .unwrap();
    assert_eq!(user.settings.app_user_id.as_deref(), Some("kiosk-7"));
}

#[test]
fn a_connection_resource_brings_its_own_budget_and_plain_http_permission() {
    let mut catalog = catalog();
    let main = catalog
        .connections
        .get_mut(&("retail".to_owned(), "main".to_owned()))
        .unwrap();
    main.target.insecure_http = true;
    main.target.budget =
        Some(serde_json::from_value(json!({"writesPerSecond": 4, "share": 0.5})).unwrap());
    let grant = decide(
        "retail",
        &spec(json!({"connectionRef": {"name": "main"}})),
        &catalog,
        &operator(DefaultCredentialsScope::Nobody),
    )
    .unwrap();
    assert!(grant.settings.insecure_http);
    let budgets = grant.settings.pacing.budgets(Some("cn-north-4"));
    assert_eq!(
        (budgets.reads.per_second, budgets.writes.per_second),
        (10.0, 2.0),
        "the documented 20 reads and the connection's 4 writes, each halved"
    );
}

#[test]
fn once_codes_come_from_the_namespaces_own_connection_first_then_an_open_cluster_one() {
    let mut catalog = catalog();
    // retail's own `shared` shadows the cluster-wide one of that name.
    let own = catalog.connections[&("retail".to_owned(), "main".to_owned())].clone();
    catalog
        .connections
        .insert(("retail".into(), "shared".into()), own);
    let grant = once_code_grant("retail", "shared", &catalog).unwrap();
    assert_eq!(grant.via, "MetaStudioConnection retail/shared");
    let grant = once_code_grant("retail", "main", &catalog).unwrap();
    assert_eq!(
        secret_of(&grant),
        ("retail".into(), "main-credentials".into())
    );
    let open = once_code_grant("retail", "closed", &catalog).unwrap_err();
    assert_eq!(open.reason, CONNECTION_NOT_ALLOWED);
    assert!(
        open.message.contains("does not admit namespace retail"),
        "{}",
        open.message
    );
}

#[test]
fn a_robot_limited_condition_grants_no_once_codes_and_another_namespaces_connection_is_not_found() {
    let catalog = catalog();
    // museum is admitted to `shared` only for robots r-a and r-b.
    let limited = once_code_grant("museum", "shared", &catalog).unwrap_err();
    assert_eq!(limited.reason, CONNECTION_NOT_ALLOWED);
    assert!(
        limited.message.contains("only for some robots"),
        "{}",
        limited.message
    );
    let foreign = once_code_grant("museum", "main", &catalog).unwrap_err();
    assert_eq!(foreign.reason, CONNECTION_NOT_FOUND);
    assert!(
        foreign.message.starts_with(
            "no MetaStudioConnection museum/main and no ClusterMetaStudioConnection main"
        ),
        "{}",
        foreign.message
    );
    let grant = once_code_grant("retail", "shared", &catalog).unwrap();
    assert_eq!(grant.via, "ClusterMetaStudioConnection shared");
}
