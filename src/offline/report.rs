//! What `reconcile` prints: per resource, the plan and what became of it.

use super::ResourceOutcome;
use crate::cli::output::table;
use crate::engine::conditions::{READY, SYNCED};
use crate::engine::{ActionOutcome, ActionResult};
use crate::plan::{Action, ResetReason};
use serde::Serialize;

fn describe(action: &Action) -> (&'static str, String) {
    match action {
        Action::Update { from, to, .. } => ("update", format!("validPeriod {from} -> {to} days")),
        Action::Renew { expire_time, .. } => ("renew", format!("expires {expire_time}")),
        Action::Reset {
            reason: ResetReason::Token(t),
            ..
        } => ("reset", format!("for token {t:?}")),
        Action::Reset {
            reason: ResetReason::Expiry { expire_time },
            ..
        } => ("reset", format!("expires {expire_time}")),
        Action::Create {
            room_id,
            valid_period,
            ..
        } => (
            "create",
            format!("in room {room_id}, validPeriod {valid_period} days"),
        ),
        Action::Delete { .. } => ("delete", "over spec.count".into()),
    }
}

/// The code an action changed: a create's is the one its answer named, or
/// `(new)` before (or without) one.
fn code_of(action: &Action, result: Option<&ActionResult>) -> String {
    match (action, result.map(|r| &r.outcome)) {
        (
            Action::Create { .. },
            Some(ActionOutcome::Done {
                created: Some(id), ..
            }),
        ) => id.clone(),
        (Action::Create { .. }, _) => "(new)".into(),
        _ => action.code_id().to_owned(),
    }
}

fn result_text(result: Option<&ActionResult>, not_applied: &str) -> String {
    match result.map(|r| &r.outcome) {
        None => not_applied.to_owned(),
        Some(ActionOutcome::Done { request_id, .. }) => {
            format!(
                "done (X-Request-Id: {})",
                request_id.as_deref().unwrap_or("none")
            )
        }
        Some(ActionOutcome::Failed { error, .. }) => format!("FAILED: {error}"),
        Some(ActionOutcome::Unconfirmed { error }) => format!("UNCONFIRMED: {error}"),
    }
}

fn not_applied_note(outcome: &ResourceOutcome) -> &'static str {
    match outcome.report.reason {
        "DryRun" => "not applied (dry run)",
        "Observing" => "not applied (Observe)",
        _ => "not applied",
    }
}

/// The human-readable report.
pub fn render_table(outcomes: &[ResourceOutcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        let report = &outcome.report;
        out.push_str(&format!(
            "{} ({}), {:?}\n",
            outcome.key, outcome.source, outcome.policy
        ));
        if report.planned.is_empty() {
            out.push_str("  no changes needed\n");
        } else {
            let note = not_applied_note(outcome);
            let rows: Vec<Vec<String>> = report
                .planned
                .iter()
                .map(|action| {
                    let (verb, detail) = describe(action);
                    let result = report.applied.iter().find(|r| &r.action == action);
                    vec![
                        verb.into(),
                        code_of(action, result),
                        detail,
                        result_text(result, note),
                    ]
                })
                .collect();
            for line in table(&["ACTION", "CODE", "DETAIL", "RESULT"], &rows).lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        for type_ in [READY, SYNCED] {
            if let Some(c) = report.status.condition(type_) {
                out.push_str(&format!(
                    "  {}={} ({}): {}\n",
                    c.type_, c.status, c.reason, c.message
                ));
            }
        }
        out.push('\n');
    }
    let converged = outcomes.iter().filter(|o| o.report.converged).count();
    out.push_str(&format!(
        "{} resource(s): {} converged, {} not converged\n",
        outcomes.len(),
        converged,
        outcomes.len() - converged
    ));
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonAction {
    action: &'static str,
    code_id: String,
    detail: String,
    result: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonOutcome<'a> {
    resource: &'a str,
    source: &'a str,
    converged: bool,
    reason: &'a str,
    actions: Vec<JsonAction>,
    events: Vec<JsonEvent<'a>>,
    status: &'a crate::crd::ActivationCodeStatus,
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    reason: &'a str,
    note: &'a str,
}

/// The machine-readable report: one object per resource.
pub fn render_json(outcomes: &[ResourceOutcome]) -> String {
    let list: Vec<JsonOutcome> = outcomes
        .iter()
        .map(|o| JsonOutcome {
            resource: &o.key,
            source: &o.source,
            converged: o.report.converged,
            reason: o.report.reason,
            actions: o
                .report
                .planned
                .iter()
                .map(|a| {
                    let (verb, detail) = describe(a);
                    let result = o.report.applied.iter().find(|r| &r.action == a);
                    JsonAction {
                        action: verb,
                        code_id: code_of(a, result),
                        detail,
                        result: result_text(result, not_applied_note(o)),
                    }
                })
                .collect(),
            events: o
                .events
                .iter()
                .map(|e| JsonEvent {
                    type_: if e.warning { "Warning" } else { "Normal" },
                    reason: e.reason,
                    note: &e.note,
                })
                .collect(),
            status: &o.report.status,
        })
        .collect();
    serde_json::to_string_pretty(&list).expect("reports serialise") + "\n"
}
