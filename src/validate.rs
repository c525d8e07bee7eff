//! Checks of an `ActivationCode` spec beyond its schema: the cross-field
//! rules the API server cannot express, and the schema's own rules again
//! for manifests that never met an API server (`reconcile -f`) and for a
//! CRD older than the operator (a Helm upgrade leaves `crds/` alone). The
//! bounds of numbers and durations are [`crate::crd::bounds`]' and, for a
//! connection's budget, [`crate::metastudio::pacing`]'s.

use crate::crd::bounds::{self, EXPIRY_WINDOW, ROLLOUT_INTERVAL, SYNC_INTERVAL};
use crate::crd::connection::{Budget, ConnectionTarget};
use crate::crd::export::MAX_RESTART_TARGETS;
use crate::crd::{ActivationCodeSpec, ResetPolicy, RestartTarget, WorkloadKind};
use crate::duration::HumanDuration;
use crate::metastudio::connection::{is_app_user_id, is_project_id, parse_endpoint};
use std::ops::RangeInclusive;
use std::time::Duration;

/// One problem, naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecProblem {
    pub field: String,
    pub problem: String,
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> SpecProblem {
    SpecProblem {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The longest MetaStudio id (robot, code) the schema accepts.
pub const MAX_ID_LEN: usize = 128;
/// The most `activeCodeIds` entries the schema accepts.
pub const MAX_CODE_IDS: usize = 1000;
/// The longest `reset.token` the schema accepts.
pub const MAX_TOKEN_LEN: usize = 253;

/// Why `value` is not a Kubernetes object name (an RFC 1123 subdomain:
/// lower-case letters, digits, `-` and `.`, at most 253 characters,
/// starting and ending with a letter or digit); `None` when it is one.
pub fn dns_subdomain_problem(value: &str) -> Option<String> {
    name_problem(value, 253, true)
}

/// Why `value` is not a namespace name (an RFC 1123 label: lower-case
/// letters, digits and `-`, at most 63 characters, starting and ending
/// with a letter or digit); `None` when it is one.
pub fn dns_label_problem(value: &str) -> Option<String> {
    name_problem(value, 63, false)
}

fn name_problem(value: &str, max: usize, dots: bool) -> Option<String> {
    let allowed = if dots {
        "lower-case letters, digits, `-` and `.`"
    } else {
        "lower-case letters, digits and `-`"
    };
    let shown: String = value.chars().take(64).collect();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = value.as_bytes();
    if value.is_empty() {
        Some("is empty: set a name".into())
    } else if value.len() > max {
        Some(format!(
            "`{shown}...` is {} characters long: use at most {max}",
            value.chars().count()
        ))
    } else if !bytes
        .iter()
        .all(|&b| alnum(b) || b == b'-' || (dots && b == b'.'))
        || !alnum(bytes[0])
        || !alnum(bytes[bytes.len() - 1])
    {
        Some(format!(
            "`{shown}` is not a valid name: use {allowed}, starting and ending with a letter or digit"
        ))
    } else {
        None
    }
}

fn too_long(what: &str, value: &str, max: usize) -> Option<String> {
    let len = value.chars().count();
    (len > max).then(|| format!("{what} is {len} characters long: use at most {max}"))
}

/// Every problem of a spec, field by field in the order a manifest lists
/// them; empty when it is valid.
pub fn validate(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let phases: [fn(&ActivationCodeSpec) -> Vec<SpecProblem>; 10] = [
        robot_problems,
        selection_problems,
        count_problems,
        sync_interval_problems,
        reset_problems,
        renewal_problems,
        rollout_problems,
        inline_connection_problems,
        export_problems,
        connection_ref_problems,
    ];
    phases.iter().flat_map(|phase| phase(spec)).collect()
}

/// `spec.robotId`: set, and no longer than an id.
fn robot_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let fix = "set the MetaStudio application (robot) id";
    if spec.robot_id.trim().is_empty() {
        return vec![problem("spec.robotId", format!("is empty: {fix}"))];
    }
    too_long("the id", &spec.robot_id, MAX_ID_LEN)
        .map(|long| problem("spec.robotId", format!("{long}: {fix}")))
        .into_iter()
        .collect()
}

/// `spec.roomId` and `spec.activeCodeIds`: which codes, stated sensibly.
fn selection_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    if spec.room_id.as_deref().is_some_and(str::is_empty) {
        problems.push(problem(
            "spec.roomId",
            "is empty: remove it to manage every room, or set a room id",
        ));
    }
    let Some(ids) = &spec.active_code_ids else {
        return problems;
    };
    let field = "spec.activeCodeIds";
    if ids.iter().any(|id| id.trim().is_empty()) {
        problems.push(problem(field, "holds an empty id: remove it"));
    }
    if ids.is_empty() {
        problems.push(problem(
            field,
            "is an empty list, which selects no code: remove it to manage every code",
        ));
    }
    if ids.len() > MAX_CODE_IDS {
        problems.push(problem(
            field,
            format!(
                "holds {} ids: list at most {MAX_CODE_IDS}, or remove it to manage every code",
                ids.len()
            ),
        ));
    }
    if let Some(long) = ids.iter().find_map(|id| too_long("an id", id, MAX_ID_LEN)) {
        problems.push(problem(
            field,
            format!("{long}: list MetaStudio activation code ids"),
        ));
    }
    problems
}

/// `spec.count`: within [`bounds::COUNT`], with a room to create codes in
/// and no list of ids (a new code's id is not known in advance).
fn count_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(count) = spec.count else {
        return Vec::new();
    };
    let field = "spec.count";
    let mut problems = Vec::new();
    if !bounds::COUNT.contains(&count) {
        problems.push(problem(
            field,
            format!(
                "{count} is more than the {} codes one ActivationCode manages: use at most {}, and split the codes into several rooms (spec.roomId)",
                bounds::COUNT.end(),
                bounds::COUNT.end()
            ),
        ));
    }
    if spec.room_id.is_none() {
        problems.push(problem(
            field,
            "needs spec.roomId: a create names the room its code belongs to, so a resource without a room is neither counted nor scaled (`kubectl scale` sets count); set roomId, or remove count from the spec (kubectl edit) to manage the codes as they are",
        ));
    }
    if spec.active_code_ids.is_some() {
        problems.push(problem(
            field,
            "is set together with spec.activeCodeIds, which lists codes by id, while a code count creates codes whose ids are not known in advance: remove activeCodeIds to count every code of the room, or remove count",
        ));
    }
    problems
}

/// `spec.syncInterval`: within [`SYNC_INTERVAL`].
fn sync_interval_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    out_of_range(
        "spec.syncInterval",
        spec.sync_interval(),
        &SYNC_INTERVAL,
        " (the default is 10m)",
    )
    .into_iter()
    .collect()
}

/// `spec.reset.token` and `spec.reset.beforeExpiry`.
fn reset_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(reset) = &spec.reset else {
        return Vec::new();
    };
    let mut problems = token_problems(reset);
    if let Some(window) = reset.before_expiry {
        problems.extend(expiry_window_problems(
            "spec.reset.beforeExpiry",
            window,
            spec.valid_period,
            ("reset", "beforeExpiry"),
            "remove it to reset only expired codes, or set a window such as 24h",
        ));
    }
    problems
}

/// `spec.reset.token`: not blank, not too long.
fn token_problems(reset: &ResetPolicy) -> Vec<SpecProblem> {
    let Some(token) = reset.token.as_deref() else {
        return Vec::new();
    };
    if token.trim().is_empty() {
        return vec![problem(
            "spec.reset.token",
            "is empty: remove it, or set any non-empty string (a date works well)",
        )];
    }
    too_long("the token", token, MAX_TOKEN_LEN)
        .map(|long| {
            problem(
                "spec.reset.token",
                format!("{long}: a date such as 2026-11-22 works well"),
            )
        })
        .into_iter()
        .collect()
}

/// `spec.renewBeforeExpiry`: not with `reset.beforeExpiry`, and a window
/// like any expiry window.
fn renewal_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(window) = spec.renew_before_expiry else {
        return Vec::new();
    };
    let field = "spec.renewBeforeExpiry";
    let mut problems = Vec::new();
    if spec
        .reset
        .as_ref()
        .is_some_and(|r| r.before_expiry.is_some())
    {
        problems.push(problem(
            field,
            "is set together with spec.reset.beforeExpiry: a code near expiry is either renewed (same value, devices stay activated) or reset (a new value, devices activate again); remove one of them",
        ));
    }
    problems.extend(expiry_window_problems(
        field,
        window,
        spec.valid_period,
        ("renewal", "renewBeforeExpiry"),
        "remove it, or set a window such as 24h",
    ));
    problems
}

/// A window before expiry (`field`): shorter than the validity, not 0,
/// within [`EXPIRY_WINDOW`]. `what` names the act and the field in the
/// fix; `unset` says what to do instead of 0.
fn expiry_window_problems(
    field: &str,
    window: HumanDuration,
    valid_period: u16,
    what: (&str, &str),
    unset: &str,
) -> Vec<SpecProblem> {
    let (act, name) = what;
    let validity = Duration::from_secs(86_400 * u64::from(valid_period));
    let mut problems = Vec::new();
    if valid_period > 0 && window.0 >= validity {
        problems.push(problem(
            field,
            format!(
                "{window} is not shorter than spec.validPeriod ({valid_period} day(s)), so every {act} would land inside the window again: shorten {name} or raise validPeriod"
            ),
        ));
    }
    if window.0.is_zero() {
        problems.push(problem(field, format!("is 0: {unset}")));
    } else if let Some(out) = out_of_range(field, window.0, &EXPIRY_WINDOW, "") {
        problems.push(out);
    }
    problems
}

/// `spec.reset.rollout`: a readable batch size and an interval within
/// [`ROLLOUT_INTERVAL`].
fn rollout_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(rollout) = spec.reset.as_ref().and_then(|r| r.rollout.as_ref()) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if let Err(why) = rollout.max_codes.parse() {
        problems.push(problem("spec.reset.rollout.maxCodes", why));
    }
    let field = "spec.reset.rollout.interval";
    if rollout.interval.0.is_zero() {
        problems.push(problem(
            field,
            "is 0: set how long one batch lasts, e.g. 1h, or remove rollout to reset every code at once",
        ));
    } else if let Some(out) = out_of_range(field, rollout.interval.0, &ROLLOUT_INTERVAL, "") {
        problems.push(out);
    }
    problems
}

/// `spec.connection`: where it points and the Secret it names.
fn inline_connection_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(conn) = &spec.connection else {
        return Vec::new();
    };
    let mut problems = target_problems(
        "spec.connection",
        &Target {
            endpoint: conn.endpoint.as_deref(),
            region: conn.region.as_deref(),
            project_id: conn.project_id.as_deref(),
            app_user_id: conn.app_user_id.as_deref(),
        },
    );
    if let Some(reference) = &conn.credentials_secret_ref
        && let Some(why) = dns_subdomain_problem(&reference.name)
    {
        problems.push(problem(
            "spec.connection.credentialsSecretRef.name",
            format!("{why}: name a Secret in this namespace"),
        ));
    }
    problems
}

/// `spec.exportSecretRef`: a Secret name, and the workloads that follow it.
fn export_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(reference) = &spec.export_secret_ref else {
        return Vec::new();
    };
    let mut problems: Vec<SpecProblem> = dns_subdomain_problem(&reference.name)
        .map(|why| {
            problem(
                "spec.exportSecretRef.name",
                format!("{why}: name the Secret that should receive the code values"),
            )
        })
        .into_iter()
        .collect();
    problems.extend(restart_target_problems(&reference.restart_targets));
    problems
}

/// `spec.exportSecretRef.restartTargets`: at most [`MAX_RESTART_TARGETS`]
/// workloads, each of a kind that rolls out, each with an object name.
fn restart_target_problems(targets: &[RestartTarget]) -> Vec<SpecProblem> {
    let field = "spec.exportSecretRef.restartTargets";
    let mut problems = Vec::new();
    if targets.len() > MAX_RESTART_TARGETS {
        problems.push(problem(
            field,
            format!(
                "names {} workloads: name at most {MAX_RESTART_TARGETS} (the ones that read the Secret and cannot reload it)",
                targets.len()
            ),
        ));
    }
    for (i, target) in targets.iter().enumerate() {
        if target.workload_kind().is_none() {
            let shown: String = target.kind.chars().take(64).collect();
            problems.push(problem(
                format!("{field}[{i}].kind"),
                format!(
                    "`{shown}` is not a kind that rolls out: use {} (spelled so)",
                    WorkloadKind::choices()
                ),
            ));
        }
        if let Some(why) = dns_subdomain_problem(&target.name) {
            problems.push(problem(
                format!("{field}[{i}].name"),
                format!("{why}: name a workload in this namespace"),
            ));
        }
    }
    problems
}

/// `value` of `field` outside `range`: too short or too long, with the
/// range and `hint`.
fn out_of_range(
    field: &str,
    value: Duration,
    range: &RangeInclusive<Duration>,
    hint: &str,
) -> Option<SpecProblem> {
    let shown = HumanDuration(value);
    let (start, end) = (bounds::shown(*range.start()), bounds::shown(*range.end()));
    if value < *range.start() {
        Some(problem(
            field,
            format!("{shown} is too short: use at least {start}, at most {end}{hint}"),
        ))
    } else if value > *range.end() {
        Some(problem(
            field,
            format!("{shown} is too long: use at most {end}, at least {start}{hint}"),
        ))
    } else {
        None
    }
}

/// Where a connection points, as a spec states it.
struct Target<'a> {
    endpoint: Option<&'a str>,
    region: Option<&'a str>,
    project_id: Option<&'a str>,
    app_user_id: Option<&'a str>,
}

/// The problems of the endpoint, region, project id and app user id under
/// `prefix` (e.g. `spec.connection`).
fn target_problems(prefix: &str, target: &Target) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    if let Some(Err(err)) = target.endpoint.map(parse_endpoint) {
        problems.push(problem(format!("{prefix}.endpoint"), err.to_string()));
    }
    if let Some(Err(err)) = target
        .region
        .map(crate::metastudio::connection::regional_endpoint)
    {
        problems.push(problem(format!("{prefix}.region"), err.to_string()));
    }
    if target
        .app_user_id
        .is_some_and(|u| u.is_empty() || !is_app_user_id(u))
    {
        problems.push(problem(
            format!("{prefix}.appUserId"),
            "must be printable ASCII (MetaStudio forbids Chinese characters): use an ASCII user id",
        ));
    }
    if target.project_id.is_some_and(|p| !is_project_id(p)) {
        problems.push(problem(
            format!("{prefix}.projectId"),
            "may hold only letters, digits, `-` and `_`: copy the project id of the region (IAM console, My Credentials, API Credentials)",
        ));
    }
    problems
}

/// Every problem of a connection resource's spec (either kind): where it
/// points, and that it points somewhere.
pub fn connection_target(target: &ConnectionTarget) -> Vec<SpecProblem> {
    let mut problems = target_problems(
        "spec",
        &Target {
            endpoint: target.endpoint.as_deref(),
            region: target.region.as_deref(),
            project_id: Some(&target.project_id),
            app_user_id: target.app_user_id.as_deref(),
        },
    );
    if target.endpoint.is_none() && target.region.is_none() {
        problems.push(problem(
            "spec.region",
            "neither spec.region nor spec.endpoint is set: set one of them (e.g. region: cn-north-4)",
        ));
    }
    if let Some(budget) = &target.budget {
        problems.extend(budget_problems(budget));
    }
    problems
}

/// `spec.budget`: every figure within the bounds the pacing arithmetic
/// holds (the schema says as much; this catches what bypassed it).
fn budget_problems(budget: &Budget) -> Vec<SpecProblem> {
    budget
        .pacing()
        .problems()
        .into_iter()
        .map(|p| problem(p.path(), p.problem))
        .collect()
}

/// `spec.connectionRef`: a valid name, and not together with
/// `spec.connection` (which of the two would win is not obvious).
fn connection_ref_problems(spec: &ActivationCodeSpec) -> Vec<SpecProblem> {
    let Some(reference) = &spec.connection_ref else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if spec.connection.is_some() {
        problems.push(problem(
            "spec.connectionRef",
            "is set together with spec.connection: use one of them (connectionRef names a connection resource that holds everything spec.connection would)",
        ));
    }
    if let Some(why) = dns_subdomain_problem(&reference.name) {
        problems.push(problem(
            "spec.connectionRef.name",
            format!("{why}: name a MetaStudioConnection or ClusterMetaStudioConnection"),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ResetPolicy;

    fn spec() -> ActivationCodeSpec {
        serde_json::from_value(serde_json::json!({"robotId": "r", "validPeriod": 2})).unwrap()
    }

    #[test]
    fn a_minimal_spec_is_valid() {
        assert!(validate(&spec()).is_empty());
    }

    #[test]
    fn before_expiry_must_be_shorter_than_validity() {
        let mut s = spec();
        s.reset = Some(ResetPolicy {
            before_expiry: Some("48h".parse().unwrap()),
            ..Default::default()
        });
        let problems = validate(&s);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.reset.beforeExpiry");
        assert!(problems[0].to_string().contains("shorten beforeExpiry"));
        s.reset.as_mut().unwrap().before_expiry = Some("47h".parse().unwrap());
        assert!(validate(&s).is_empty());
    }

    #[test]
    fn renewal_and_rollout_problems_name_the_field_and_the_fix() {
        let of = |json| {
            let s: ActivationCodeSpec = serde_json::from_value(json).unwrap();
            validate(&s)
                .into_iter()
                .map(|p| (p.field, p.problem))
                .collect::<Vec<_>>()
        };
        let both = of(serde_json::json!({"robotId": "r", "validPeriod": 2,
            "renewBeforeExpiry": "24h", "reset": {"beforeExpiry": "24h"}}));
        assert_eq!(both.len(), 1, "{both:?}");
        assert_eq!(both[0].0, "spec.renewBeforeExpiry");
        assert!(both[0].1.contains("remove one of them"), "{both:?}");
        let long =
            of(serde_json::json!({"robotId": "r", "validPeriod": 2, "renewBeforeExpiry": "48h"}));
        assert!(long[0].1.contains("shorten renewBeforeExpiry"), "{long:?}");
        let permanent =
            of(serde_json::json!({"robotId": "r", "validPeriod": 0, "renewBeforeExpiry": "48h"}));
        assert!(
            permanent.is_empty(),
            "permanent codes are never renewed: {permanent:?}"
        );
        let rollout = of(serde_json::json!({"robotId": "r", "validPeriod": 2,
            "reset": {"token": "t", "rollout": {"maxCodes": "ten", "interval": "0s"}}}));
        let fields: Vec<_> = rollout.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.reset.rollout.maxCodes", "spec.reset.rollout.interval"]
        );
        let fine = of(
            serde_json::json!({"robotId": "r", "validPeriod": 2, "renewBeforeExpiry": "12h",
            "reset": {"token": "t", "rollout": {"maxCodes": "10%", "interval": "1h"}}}),
        );
        assert!(fine.is_empty(), "{fine:?}");
    }

    #[test]
    fn a_count_needs_a_room_and_no_ids_and_stays_within_the_cap() {
        let of = |json| {
            let s: ActivationCodeSpec = serde_json::from_value(json).unwrap();
            validate(&s)
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        let fine = of(serde_json::json!({"robotId": "r", "validPeriod": 2,
            "roomId": "lobby", "count": 30000, "surplus": "Delete"}));
        assert!(fine.is_empty(), "{fine:?}");
        assert!(
            of(
                serde_json::json!({"robotId": "r", "validPeriod": 2, "roomId": "lobby", "count": 0})
            )
            .is_empty(),
            "0 is a count"
        );
        let problems = of(serde_json::json!({"robotId": "r", "validPeriod": 2,
            "count": 30001, "activeCodeIds": ["a"]}));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("spec.count: ")));
        assert!(problems[0].contains("use at most 30000"), "{problems:?}");
        assert!(problems[1].contains("needs spec.roomId"), "{problems:?}");
        assert!(
            problems[1].contains("`kubectl scale` sets count"),
            "a scaled resource without a room says why: {problems:?}"
        );
        assert!(
            problems[2].contains("remove activeCodeIds to count every code of the room"),
            "{problems:?}"
        );
        let unknown = serde_json::from_value::<ActivationCodeSpec>(serde_json::json!(
            {"robotId": "r", "validPeriod": 2, "surplus": "Prune"}
        ));
        assert!(unknown.is_err(), "surplus is Keep or Delete");
    }

    #[test]
    fn names_are_rfc_1123() {
        assert_eq!(dns_subdomain_problem("codes-export.v1"), None);
        assert_eq!(dns_label_problem("team-a"), None);
        for bad in ["", "Upper", "../x", "a/b", "-a", "a-", "a_b", "caf\u{e9}"] {
            assert!(dns_subdomain_problem(bad).is_some(), "{bad}");
        }
        assert!(dns_label_problem("a.b").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        assert!(dns_subdomain_problem(&"a".repeat(254)).is_some());
    }

    #[test]
    fn restart_targets_are_workloads_that_roll_out_named_by_object_names() {
        let of = |targets: serde_json::Value| {
            let s: ActivationCodeSpec = serde_json::from_value(serde_json::json!({
                "robotId": "r", "validPeriod": 2,
                "exportSecretRef": {"name": "codes", "restartTargets": targets}
            }))
            .unwrap();
            validate(&s)
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        let fine = of(serde_json::json!([{"kind": "Deployment", "name": "web"},
            {"kind": "StatefulSet", "name": "db.v1"}, {"kind": "DaemonSet", "name": "agent"}]));
        assert!(fine.is_empty(), "{fine:?}");
        assert_eq!(
            of(serde_json::json!([{"kind": "CronJob", "name": "nightly"},
                {"kind": "deployment", "name": "Web_1"}])),
            [
                "spec.exportSecretRef.restartTargets[0].kind: `CronJob` is not a kind that rolls out: use Deployment, StatefulSet or DaemonSet (spelled so)",
                "spec.exportSecretRef.restartTargets[1].kind: `deployment` is not a kind that rolls out: use Deployment, StatefulSet or DaemonSet (spelled so)",
                "spec.exportSecretRef.restartTargets[1].name: `Web_1` is not a valid name: use lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit: name a workload in this namespace",
            ]
        );
        let many: Vec<_> = (0..17)
            .map(|i| serde_json::json!({"kind": "Deployment", "name": format!("web-{i}")}))
            .collect();
        let too_many = of(serde_json::Value::Array(many));
        assert_eq!(too_many.len(), 1, "{too_many:?}");
        assert!(
            too_many[0].starts_with(
                "spec.exportSecretRef.restartTargets: names 17 workloads: name at most 16"
            ),
            "{too_many:?}"
        );
    }

    #[test]
    fn schema_limits_are_checked_again() {
        let s: ActivationCodeSpec = serde_json::from_value(serde_json::json!({
            "robotId": "r".repeat(129), "validPeriod": 1,
            "activeCodeIds": vec!["c"; 1001],
            "reset": {"token": "t".repeat(254)},
            "connection": {"projectId": "p/../q", "credentialsSecretRef": {"name": "A"}},
            "exportSecretRef": {"name": "../../etc"}
        }))
        .unwrap();
        let problems = validate(&s);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.robotId",
                "spec.activeCodeIds",
                "spec.reset.token",
                "spec.connection.projectId",
                "spec.connection.credentialsSecretRef.name",
                "spec.exportSecretRef.name"
            ]
        );
    }

    #[test]
    fn each_problem_names_its_field() {
        let s: ActivationCodeSpec = serde_json::from_value(serde_json::json!({
            "robotId": " ", "validPeriod": 1, "syncInterval": "1s", "activeCodeIds": [""],
            "reset": {"token": ""},
            "connection": {"endpoint": "ftp://x", "appUserId": "用户"}
        }))
        .unwrap();
        let problems = validate(&s);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.robotId",
                "spec.activeCodeIds",
                "spec.syncInterval",
                "spec.reset.token",
                "spec.connection.endpoint",
                "spec.connection.appUserId"
            ]
        );
    }

    #[test]
    fn numbers_and_durations_out_of_their_bounds_name_the_field_and_the_range() {
        let of = |json| {
            let s: ActivationCodeSpec = serde_json::from_value(json).unwrap();
            validate(&s)
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        let problems = of(serde_json::json!({"robotId": "r", "validPeriod": 0,
            "syncInterval": "31d", "renewBeforeExpiry": "30s",
            "reset": {"token": "t", "rollout": {"maxCodes": 4294967295u64, "interval": "9999d"}}}));
        assert_eq!(
            problems,
            [
                "spec.syncInterval: 744h is too long: use at most 30d, at least 10s (the default is 10m)",
                "spec.renewBeforeExpiry: 30s is too short: use at least 1m, at most 3650d",
                "spec.reset.rollout.maxCodes: 4294967295 is not a count of codes: use 1 to 100000, or a percentage such as \"10%\"",
                "spec.reset.rollout.interval: 239976h is too long: use at most 30d, at least 1m",
            ]
        );
        let longest = of(serde_json::json!({"robotId": "r", "validPeriod": 0,
            "syncInterval": "30d", "reset": {"beforeExpiry": "3650d", "token": "t",
            "rollout": {"maxCodes": 100000, "interval": "30d"}}}));
        assert!(longest.is_empty(), "{longest:?}");
        let too_wide = of(serde_json::json!({"robotId": "r", "validPeriod": 0,
            "reset": {"beforeExpiry": "3651d"}}));
        assert_eq!(too_wide.len(), 1, "{too_wide:?}");
        assert!(too_wide[0].starts_with("spec.reset.beforeExpiry: 87624h is too long"));
    }

    #[test]
    fn a_budget_out_of_bounds_names_each_field() {
        let target: ConnectionTarget = serde_json::from_value(serde_json::json!({
            "region": "cn-north-4", "projectId": "p",
            "budget": {"readsPerSecond": 1e-30, "writesPerSecond": 1e300, "share": 0.001,
                       "burst": 4294967295u64, "requestsPerSecond": -1}
        }))
        .unwrap();
        let fields: Vec<String> = connection_target(&target)
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.budget.readsPerSecond",
                "spec.budget.writesPerSecond",
                "spec.budget.requestsPerSecond",
                "spec.budget.share",
                "spec.budget.burst"
            ]
        );
    }
}
