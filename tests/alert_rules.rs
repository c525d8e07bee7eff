//! The alerts (deploy/prometheus/) and the dashboard (deploy/grafana/) name
//! only series and labels the operator really exports. Every PromQL
//! expression parses, and every metric it selects, every label it matches,
//! groups or joins by, and every label an annotation or a legend prints is
//! one the operator's own registry encodes (built here and encoded as
//! `/metrics` encodes it), or one Prometheus adds to every scrape (`job`,
//! `instance`, and the series `up`). Also: every alert says what happened,
//! what to do and where the runbook is (a heading of README.md), and
//! tests/prometheus/alerts_test.yaml has a case where it fires and one where
//! it must not. `scripts/alert-check` parses the same expressions with
//! promtool, Prometheus' own parser, and runs those promtool tests.

use metastudio_operator::broker::metrics::{BrokerMetrics, IssuedLabels};
use metastudio_operator::crd::{ActivationCode, ActivationCodeStatus};
use metastudio_operator::engine::conditions::{READY, set, set_progress};
use metastudio_operator::engine::{Next, ReconcileReport};
use metastudio_operator::metastudio::Operation;
use metastudio_operator::metastudio::metrics::{CallLabels, ClassLabels, OperationLabels};
use metastudio_operator::telemetry::metrics::{Census, OperatorMetrics, ReasonLabels};
use promql_parser::label::Labels;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

const RULES: &str = "deploy/prometheus/metastudio-operator.rules.yaml";
const RULE_TESTS: &str = "tests/prometheus/alerts_test.yaml";
const DASHBOARD: &str = "deploy/grafana/metastudio-operator-dashboard.json";
const RUNBOOKS: &str =
    "https://github.com/metastudio-operator/metastudio-operator/blob/main/README.md#";
/// The README section whose headings the runbook URLs point at.
const RUNBOOK_SECTION: &str = "## Alert runbooks";
/// Labels Prometheus attaches to every series of a scrape target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

type Series = BTreeMap<String, BTreeSet<String>>;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The operator's and the broker's metrics, as `run` registers them, with
/// a sample in every family, so each encodes its labels.
fn sampled_metrics() -> (Arc<OperatorMetrics>, BrokerMetrics) {
    let metrics = Arc::new(OperatorMetrics::default());
    metrics.record_reconcile(
        &ReconcileReport {
            status: Arc::default(),
            reason: "RemoteError",
            converged: false,
            planned: vec![],
            applied: vec![],
            next: Next::AwaitChange,
        },
        std::time::Duration::from_millis(40),
    );
    metrics.leader.set(1);
    let operation = Operation::ListActiveCode.name();
    let api = &metrics.api;
    api.calls
        .get_or_create(&CallLabels {
            operation,
            status: "200".into(),
        })
        .inc();
    api.retries
        .get_or_create(&OperationLabels { operation })
        .inc();
    api.call_duration
        .get_or_create(&OperationLabels { operation })
        .observe(0.02);
    api.rate_limit_waits.inc();
    api.rate_limit_wait_seconds.inc_by(0.5);
    api.rate_cuts
        .get_or_create(&ClassLabels { class: "write" })
        .inc();
    let broker = BrokerMetrics::default();
    broker
        .issued
        .get_or_create(&IssuedLabels {
            namespace: "shop".into(),
            connection: "shared".into(),
        })
        .inc();
    broker
        .denials
        .get_or_create(&ReasonLabels {
            reason: "Forbidden".into(),
        })
        .inc();
    broker.duration.observe(0.01);
    (metrics, broker)
}

fn census() -> Census {
    let resource: ActivationCode = serde_json::from_value(serde_json::json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode",
        "metadata": {"name": "kiosk", "namespace": "retail"},
        "spec": {"robotId": "r1", "validPeriod": 7},
    }))
    .unwrap();
    let mut status = ActivationCodeStatus::default();
    let now = jiff::Timestamp::UNIX_EPOCH;
    let reason = "CredentialsRejected";
    set(
        &mut status.conditions,
        READY,
        Some(false),
        reason,
        "",
        None,
        now,
    );
    set_progress(&mut status.conditions, reason, "", None, now);
    let mut census = Census::default();
    census.add(&resource, Some(&status));
    census
}

/// Every series name the operator encodes on `/metrics`, with its label
/// names; plus `up`, which Prometheus records for each target.
fn exported() -> Series {
    let (metrics, broker) = sampled_metrics();
    let _census = metrics.census_from(census);
    let mut registry = metrics.registry();
    broker.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let mut series = Series::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let labels = series.entry(line[..name_end].to_owned()).or_default();
        if let Some(inner) = line[name_end..].strip_prefix('{') {
            let inner = &inner[..inner.rfind('}').unwrap()];
            labels.extend(
                inner
                    .split("\",")
                    .map(|kv| kv.split('=').next().unwrap().to_owned()),
            );
        }
    }
    for family in &families {
        assert!(
            series.keys().any(|name| name.starts_with(family.as_str())),
            "family {family} has no sample here: give it one in sampled_metrics() so its labels are known\n{text}"
        );
    }
    series.insert("up".into(), BTreeSet::new());
    for labels in series.values_mut() {
        labels.extend(TARGET_LABELS.map(str::to_owned));
    }
    series
}

/// One PromQL expression and where it comes from.
struct Query {
    origin: String,
    expr: String,
    /// The labels its output must carry: `$labels.x` of an alert's
    /// annotations, `{{x}}` of a panel's legend.
    printed: BTreeSet<String>,
}

/// Grafana's interval variables, as scripts/alert-check replaces them too.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// The names inside `{{ ... }}` that match `prefix` (e.g. `$labels.`).
fn template_names(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split("{{")
        .skip(1)
        .filter_map(|rest| {
            let inner = rest.split("}}").next()?.trim();
            let name = inner.strip_prefix(prefix)?;
            let end = name
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            Some(name[..end].to_owned())
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn alerting_rules() -> Vec<Value> {
    yaml(RULES)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

fn rule_queries() -> Vec<Query> {
    alerting_rules()
        .iter()
        .map(|rule| {
            let annotations = rule["annotations"].as_object().unwrap();
            Query {
                origin: format!("{RULES}: {}", rule["alert"].as_str().unwrap()),
                expr: rule["expr"].as_str().unwrap().to_owned(),
                printed: annotations
                    .values()
                    .flat_map(|text| template_names(text.as_str().unwrap(), "$labels."))
                    .collect(),
            }
        })
        .collect()
}

fn dashboard_queries() -> Vec<Query> {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(Query {
                origin: format!("{DASHBOARD}: panel {:?}", panel["title"]),
                expr: grafana_to_promql(target["expr"].as_str().unwrap()),
                printed: template_names(target["legendFormat"].as_str().unwrap_or(""), ""),
            });
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        // label_values(SELECTOR, LABEL): the selector must carry the label.
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!("variable {query}: only label_values(selector, label) is checked")
            });
        let (selector, label) = inner.rsplit_once(',').unwrap();
        queries.push(Query {
            origin: format!("{DASHBOARD}: variable {:?}", variable["name"]),
            expr: selector.trim().to_owned(),
            printed: [label.trim().to_owned()].into(),
        });
    }
    queries
}

/// Checks the names and labels of `expr` against `series`; returns the
/// labels its result may carry. Problems go into `errors`.
fn check_expr(expr: &Expr, series: &Series, errors: &mut Vec<String>) -> BTreeSet<String> {
    let names = |labels: &Labels| labels.labels.iter().cloned().collect::<BTreeSet<_>>();
    match expr {
        Expr::VectorSelector(selector) => check_selector(selector, series, errors),
        Expr::MatrixSelector(matrix) => check_selector(&matrix.vs, series, errors),
        Expr::Aggregate(aggregate) => {
            let inner = check_expr(&aggregate.expr, series, errors);
            if let Some(param) = &aggregate.param {
                check_expr(param, series, errors);
            }
            match &aggregate.modifier {
                Some(LabelModifier::Include(by)) => {
                    within(names(by), &inner, "groups by", errors);
                    names(by)
                }
                Some(LabelModifier::Exclude(without)) => {
                    inner.difference(&names(without)).cloned().collect()
                }
                None => BTreeSet::new(),
            }
        }
        Expr::Binary(binary) => {
            let mut both = check_expr(&binary.lhs, series, errors);
            both.extend(check_expr(&binary.rhs, series, errors));
            if let Some(modifier) = &binary.modifier {
                if let Some(matching) = &modifier.matching {
                    within(names(matching.labels()), &both, "matches on", errors);
                }
                if let Some(extra) = modifier.card.labels() {
                    within(names(extra), &both, "joins", errors);
                }
            }
            both
        }
        Expr::Call(call) => call
            .args
            .args
            .iter()
            .flat_map(|arg| check_expr(arg, series, errors))
            .collect(),
        Expr::Paren(paren) => check_expr(&paren.expr, series, errors),
        Expr::Unary(unary) => check_expr(&unary.expr, series, errors),
        Expr::Subquery(subquery) => check_expr(&subquery.expr, series, errors),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => BTreeSet::new(),
        Expr::Extension(_) => {
            errors.push("an extension expression, which Prometheus does not have".into());
            BTreeSet::new()
        }
    }
}

/// Reports each label of `wanted` that `available` lacks.
fn within(
    wanted: BTreeSet<String>,
    available: &BTreeSet<String>,
    what: &str,
    errors: &mut Vec<String>,
) {
    for label in wanted.difference(available) {
        errors.push(format!(
            "{what} label {label:?}, which its input does not have"
        ));
    }
}

fn check_selector(
    selector: &VectorSelector,
    series: &Series,
    errors: &mut Vec<String>,
) -> BTreeSet<String> {
    let Some(name) = &selector.name else {
        errors.push(format!("selector {selector} has no metric name"));
        return BTreeSet::new();
    };
    let Some(labels) = series.get(name) else {
        errors.push(format!(
            "series {name:?}, which the operator does not export"
        ));
        return BTreeSet::new();
    };
    let matchers = selector.matchers.matchers.iter();
    let alternatives = selector.matchers.or_matchers.iter().flatten();
    for matcher in matchers.chain(alternatives) {
        if matcher.name != "__name__" && !labels.contains(&matcher.name) {
            errors.push(format!(
                "label {:?} of {name}, which it does not have",
                matcher.name
            ));
        }
    }
    labels.clone()
}

#[test]
fn every_rule_and_panel_names_only_exported_series_and_labels() {
    let series = exported();
    let queries: Vec<Query> = rule_queries()
        .into_iter()
        .chain(dashboard_queries())
        .collect();
    assert!(
        queries.len() > 20,
        "too few expressions found: {}",
        queries.len()
    );
    let mut problems = Vec::new();
    for query in &queries {
        let expr = match parser::parse(&query.expr) {
            Ok(expr) => expr,
            Err(e) => {
                problems.push(format!(
                    "{}: does not parse ({e}): {}",
                    query.origin, query.expr
                ));
                continue;
            }
        };
        let mut errors = Vec::new();
        let output = check_expr(&expr, &series, &mut errors);
        for label in query.printed.difference(&output) {
            errors.push(format!(
                "prints label {label:?}, which its result does not carry"
            ));
        }
        problems.extend(
            errors
                .into_iter()
                .map(|e| format!("{}: {e}\n    in {}", query.origin, query.expr.trim())),
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\n\nthe operator exports:\n{series:#?}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_check_catches_unknown_series_labels_and_groupings() {
    let series = exported();
    for (expr, expected) in [
        ("metastudio_resource_conditions", "does not export"),
        (
            r#"metastudio_resource_condition{resource="x"}"#,
            "label \"resource\"",
        ),
        (
            "sum by (code_id) (metastudio_resource_drift)",
            "groups by label \"code_id\"",
        ),
        (
            "sum by (reason) (rate(metastudio_api_calls_total[5m]))",
            "groups by label \"reason\"",
        ),
        (
            "metastudio_leader * on (pod) up",
            "matches on label \"pod\"",
        ),
    ] {
        let mut errors = Vec::new();
        check_expr(&parser::parse(expr).unwrap(), &series, &mut errors);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expr}: expected a problem naming {expected:?}, got {errors:?}"
        );
    }
    let mut errors = Vec::new();
    check_expr(
        &parser::parse("sum by (le, operation) (rate(metastudio_api_call_duration_seconds_bucket{job=\"x\"}[5m]))").unwrap(),
        &series,
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_says_what_happened_what_to_do_and_links_its_runbook() {
    let readme = read("README.md");
    // The headings of the README's runbook section, up to the next section.
    let anchors: BTreeSet<String> = readme
        .lines()
        .skip_while(|l| *l != RUNBOOK_SECTION)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect();
    assert!(
        !anchors.is_empty(),
        "README.md has no {RUNBOOK_SECTION:?} section with ### headings"
    );
    for rule in alerting_rules() {
        let alert = rule["alert"].as_str().unwrap();
        let text = |key: &str| rule["annotations"][key].as_str().unwrap_or("").to_owned();
        assert!(
            !text("summary").is_empty() && text("description").len() > 80,
            "{alert}: summary or description missing"
        );
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{alert}: severity {severity:?}"
        );
        let runbook = text("runbook_url");
        let target = runbook
            .strip_prefix(RUNBOOKS)
            .unwrap_or_else(|| panic!("{alert}: runbook_url {runbook:?} is not in README.md"));
        assert_eq!(
            target,
            alert.to_lowercase(),
            "{alert}: its runbook is the README heading named after it"
        );
        assert!(
            anchors.contains(target),
            "{alert}: README.md's {RUNBOOK_SECTION:?} has no heading with anchor #{target}"
        );
        let expr = rule["expr"].as_str().unwrap();
        if expr.contains("namespace, name") {
            assert!(
                text("summary").contains("{{ $labels.namespace }}/{{ $labels.name }}"),
                "{alert}: the summary names the resource"
            );
        }
    }
}

#[test]
fn every_alert_has_a_promtool_case_where_it_fires_and_one_where_it_must_not() {
    let tests = yaml(RULE_TESTS);
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let alert = case["alertname"].as_str().unwrap().to_owned();
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(alert);
            } else {
                silent.insert(alert);
            }
        }
    }
    assert_eq!(
        tests["rule_files"][0].as_str(),
        Some("../../deploy/prometheus/metastudio-operator.rules.yaml")
    );
    for rule in alerting_rules() {
        let alert = rule["alert"].as_str().unwrap();
        assert!(
            fires.contains(alert),
            "{RULE_TESTS}: no case where {alert} fires"
        );
        assert!(
            silent.contains(alert),
            "{RULE_TESTS}: no case where {alert} must not fire"
        );
    }
}

#[test]
fn the_chart_ships_the_same_rule_file_and_dashboard_as_deploy() {
    for (plain, copy) in [
        (
            RULES,
            "charts/metastudio-operator/monitoring/metastudio-operator.rules.yaml",
        ),
        (
            DASHBOARD,
            "charts/metastudio-operator/monitoring/metastudio-operator-dashboard.json",
        ),
    ] {
        assert!(
            read(plain) == read(copy),
            "{copy} differs from {plain}: cp {plain} {copy}"
        );
    }
}
