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
/// only for the label; `closed` has no conditions. The labels of museum
/// (team=kiosk) and finance (team=accounts) are known.
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
    catalog.namespace_labels.insert(
        "finance".into(),
        [("team".to_owned(), "accounts".to_owned())].into(),
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
        inline_endpoints: InlineEndpoints::OfficialOnly,
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
}

/// What the decision gives a resource with its namespace's own Secret and
/// `connection` (merged in), under `rule`: the endpoint calls would go to,
/// or the refusal's reason and message.
fn own_secret_with(connection: Value, rule: InlineEndpoints) -> Result<String, (String, String)> {
    let mut inline = json!({"credentialsSecretRef": {"name": "mine"}});
    for (k, v) in connection.as_object().unwrap() {
        inline[k] = v.clone();
    }
    let policy = OperatorDefaults {
        inline_endpoints: rule,
        ..operator(DefaultCredentialsScope::Nobody)
    };
    decide(
        "retail",
        &spec(json!({"connection": inline})),
        &catalog(),
        &policy,
    )
    .map(|grant| {
        assert_eq!(secret_of(&grant), ("retail".into(), "mine".into()));
        let connection = grant
            .settings
            .resolve(Credentials::ak_sk("a", "s"))
            .unwrap();
        connection.endpoint.to_string()
    })
    .map_err(|refusal| (refusal.reason.to_owned(), refusal.message))
}

#[test]
fn a_resource_sends_its_namespaces_credentials_only_to_an_official_endpoint_in_a_cluster() {
    use InlineEndpoints::{Any, OfficialOnly};
    let official = "https://metastudio.cn-north-4.myhuaweicloud.com/";
    let table = [
        // Chosen by the resource: refused in a cluster, whatever the form.
        ("http://attacker.example:8080", OfficialOnly, None),
        (
            "https://metastudio.cn-north-4.myhuaweicloud.com.attacker.example",
            OfficialOnly,
            None,
        ),
        (
            "https://metastudio.cn-north-4.myhuaweicloud.com:8443",
            OfficialOnly,
            None,
        ),
        (
            "https://metastudio.cn-north-4.myhuaweicloud.com/relay",
            OfficialOnly,
            None,
        ),
        (
            "http://metastudio.cn-north-4.myhuaweicloud.com",
            OfficialOnly,
            None,
        ),
        ("http://127.0.0.1:9", OfficialOnly, None),
        // The official endpoint of a region: Huawei Cloud's, as a region would name it.
        (official, OfficialOnly, Some(official)),
        (
            "https://metastudio.ap-southeast-1.myhuaweicloud.com",
            OfficialOnly,
            Some("https://metastudio.ap-southeast-1.myhuaweicloud.com/"),
        ),
        // reconcile -f: no tenants, whoever runs it holds the Secrets.
        ("http://127.0.0.1:9", Any, Some("http://127.0.0.1:9/")),
        (
            "https://private.example",
            Any,
            Some("https://private.example/"),
        ),
    ];
    for (endpoint, rule, expected) in table {
        let decided = own_secret_with(json!({"endpoint": endpoint}), rule);
        match expected {
            Some(expected) => assert_eq!(decided, Ok(expected.to_owned()), "{endpoint} {rule:?}"),
            None => {
                let (reason, message) = decided.expect_err(endpoint);
                assert_eq!(reason, CONNECTION_NOT_ALLOWED, "{endpoint}");
                assert!(
                    message.starts_with(
                        "spec.connection.endpoint is not an official MetaStudio endpoint"
                    ) && message.contains("create a MetaStudioConnection with this endpoint")
                        && message.contains("spec.connectionRef"),
                    "{message}"
                );
                assert!(
                    !message.contains(endpoint),
                    "the tenant's text is not echoed: {message}"
                );
            }
        }
    }
}

#[test]
fn a_resources_own_region_and_project_go_with_its_own_secret_to_official_endpoints() {
    // A region only picks Huawei Cloud's endpoint of that region, even over
    // the operator's own endpoint: the credentials reach only their issuer.
    for rule in [InlineEndpoints::OfficialOnly, InlineEndpoints::Any] {
        assert_eq!(
            own_secret_with(json!({"region": "ap-southeast-1"}), rule),
            Ok("https://metastudio.ap-southeast-1.myhuaweicloud.com/".to_owned())
        );
    }
    let mut policy = operator(DefaultCredentialsScope::Nobody);
    policy.settings.endpoint = Some("https://gateway.internal.example".into());
    let grant = decide(
        "retail",
        &spec(json!({"connection": {"projectId": "another-project", "credentialsSecretRef": {"name": "mine"}}})),
        &catalog(),
        &policy,
    )
    .unwrap();
    // A project of its own: the operator's (administrator's) endpoint, the
    // namespace's credentials, which act only for their own account.
    assert_eq!(
        grant.settings.target().unwrap(),
        (
            "https://gateway.internal.example".parse().unwrap(),
            "another-project".to_owned()
        )
    );
    assert_eq!(secret_of(&grant), ("retail".into(), "mine".into()));
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

/// A catalog whose ClusterMetaStudioConnection `open` has `conditions`;
/// namespace `plain` is known without labels, `unseen` is not known.
fn open_to(conditions: Value) -> Catalog {
    let mut catalog = catalog();
    catalog
        .cluster_connections
        .get_mut("closed")
        .unwrap()
        .conditions = serde_json::from_value(conditions).unwrap();
    let open = catalog.cluster_connections.remove("closed").unwrap();
    catalog.cluster_connections.insert("open".into(), open);
    catalog
        .namespace_labels
        .insert("plain".into(), BTreeMap::new());
    catalog
}

/// The reason of each path's decision for `namespace`: the resource's
/// (`spec.connectionRef`) and the broker's (once-codes); "ok" when granted.
fn reasons(catalog: &Catalog, namespace: &str) -> [String; 2] {
    let reference =
        spec(json!({"connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "open"}}));
    let policy = operator(DefaultCredentialsScope::Nobody);
    let reason = |decided: Result<Grant, Refusal>| match decided {
        Ok(_) => "ok".to_owned(),
        Err(refusal) => refusal.reason.to_owned(),
    };
    [
        reason(decide(namespace, &reference, catalog, &policy)),
        reason(once_code_grant(namespace, "open", catalog)),
    ]
}

#[test]
fn labels_not_seen_yet_are_matched_by_no_selector_only_by_name() {
    let not_in =
        json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["finance"]}]});
    let absent = json!({"matchExpressions": [{"key": "restricted", "operator": "DoesNotExist"}]});
    let kiosk = json!({"matchLabels": {"team": "kiosk"}});
    let unknown = NAMESPACE_LABELS_UNKNOWN;
    let table = [
        // Labels not seen: a selector that reads them admits nothing.
        (json!([{"namespaceSelector": not_in}]), "unseen", unknown),
        (json!([{"namespaceSelector": absent}]), "unseen", unknown),
        (json!([{"namespaceSelector": kiosk}]), "unseen", unknown),
        // Known to have no labels: NotIn and DoesNotExist admit it.
        (json!([{"namespaceSelector": not_in}]), "plain", "ok"),
        (json!([{"namespaceSelector": absent}]), "plain", "ok"),
        (
            json!([{"namespaceSelector": kiosk}]),
            "plain",
            CONNECTION_NOT_ALLOWED,
        ),
        // A name needs no label; {} reads none.
        (
            json!([{"namespaceSelector": kiosk}, {"namespaces": ["unseen"]}]),
            "unseen",
            "ok",
        ),
        (json!([{"namespaceSelector": {}}]), "unseen", "ok"),
        // No selector at all: labels do not matter.
        (
            json!([{"namespaces": ["plain"]}]),
            "unseen",
            CONNECTION_NOT_ALLOWED,
        ),
    ];
    for (conditions, namespace, expected) in table {
        let catalog = open_to(conditions.clone());
        assert_eq!(
            reasons(&catalog, namespace),
            [expected, expected],
            "{conditions} for {namespace}"
        );
    }
}

#[test]
fn a_namespace_refused_for_unknown_labels_is_admitted_once_they_are_known() {
    let mut catalog = open_to(json!([{"namespaceSelector": {"matchExpressions": [
        {"key": "team", "operator": "NotIn", "values": ["finance"]}]}}]));
    let refused = decide(
        "unseen",
        &spec(json!({"connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "open"}})),
        &catalog,
        &operator(DefaultCredentialsScope::Nobody),
    )
    .unwrap_err();
    assert_eq!(refused.reason, NAMESPACE_LABELS_UNKNOWN);
    assert!(
        refused.message.starts_with("spec.connectionRef: ClusterMetaStudioConnection open admits namespaces by their labels, and the labels of namespace unseen are not known yet"),
        "{}",
        refused.message
    );
    assert_eq!(
        crate::engine::conditions::progress(refused.reason),
        crate::engine::conditions::Progress::Retrying,
        "looked at again without an edit"
    );
    catalog.namespace_labels.insert(
        "unseen".into(),
        [("team".to_owned(), "kiosk".to_owned())].into(),
    );
    assert_eq!(reasons(&catalog, "unseen"), ["ok", "ok"]);
    catalog.namespace_labels.insert(
        "unseen".into(),
        [("team".to_owned(), "finance".to_owned())].into(),
    );
    assert_eq!(
        reasons(&catalog, "unseen"),
        [CONNECTION_NOT_ALLOWED, CONNECTION_NOT_ALLOWED]
    );
}
