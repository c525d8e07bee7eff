//! `reconcile -f PATH...`: the engine over manifests on disk.

use super::connection_args::{ConnectionArgs, EngineArgs};
use crate::crd::ActivationCode;
use crate::crd::connection::ConnectionTarget;
use crate::engine::{Mode, OperatorDefaults};
use crate::metastudio::client::TransportError;
use crate::metastudio::{ConnectionError, Credentials, Transport};
use crate::offline::host::OfflineHost;
use crate::offline::manifests::{self, ManifestError, Manifests};
use crate::offline::status_file::StatusFileError;
use crate::offline::{reconcile_all, report};
use crate::simulator::seed::{Seed, SeedSpec};
use crate::simulator::{
    Accepted, DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY, Simulator,
    SimulatorConfig,
};
use crate::tenancy::{DefaultCredentialsScope, InlineEndpoints};
use clap::Args;
use std::path::PathBuf;

/// Where statuses are kept when `--status-file` is not given.
pub const DEFAULT_STATUS_FILE: &str = ".metastudio-operator-status.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Manifest files or directories (YAML, multi-document; directories are
    /// read recursively). Kinds other than ActivationCode are skipped;
    /// Secrets serve as credentials (spec.connection.credentialsSecretRef).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Plan only: make no remote change and write no status.
    #[arg(long)]
    pub dry_run: bool,
    /// Where statuses are kept between runs [default: .metastudio-operator-status.json,
    /// or only in memory with --simulate].
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Report format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,
    /// Namespace of manifests that name none.
    #[arg(short = 'n', long, default_value = "default", value_parser = super::parsers::namespace)]
    pub namespace: String,
    /// Run against an embedded simulator seeded from the SimulatorSeed
    /// documents among the manifests (no cloud account needed): every
    /// ActivationCode and connection resource calls it, whatever endpoint,
    /// region or project it names.
    #[arg(long)]
    pub simulate: bool,
    /// Write each exportSecretRef as a Secret manifest file
    /// DIR/NAMESPACE/NAME.yaml (mode 0600, replaced atomically; a symbolic
    /// link below DIR is refused, DIR itself may be one). Without it, code
    /// values are not exported.
    #[arg(long)]
    pub export_dir: Option<PathBuf>,
    /// Resources reconciled at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileCommandError {
    #[error("{} problem(s) in the manifests; nothing was changed:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Manifests(Vec<ManifestError>),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    StatusFile(#[from] StatusFileError),
    #[error(
        "--simulate found no SimulatorSeed document among the manifests: add one (see examples/simulator-seed.yaml)"
    )]
    NoSeed,
    #[error("cannot start the embedded simulator: {0}")]
    Simulator(std::io::Error),
}

/// The report to print and whether every resource converged.
pub struct ReconcileOutput {
    pub report: String,
    pub converged: bool,
    /// The statuses could not be written at the end: the report still
    /// tells what was changed.
    pub not_saved: Option<StatusFileError>,
}

pub async fn run(args: ReconcileArgs) -> Result<ReconcileOutput, ReconcileCommandError> {
    let mut manifests =
        manifests::load(&args.paths, &args.namespace).map_err(ReconcileCommandError::Manifests)?;
    // No tenants on disk: the operator's own credentials serve everyone,
    // and a resource's own endpoint is the choice of whoever runs this (and
    // holds the Secrets anyway).
    let mut defaults = OperatorDefaults {
        settings: args.connection.settings(),
        credentials: args.connection.credentials()?,
        credentials_scope: DefaultCredentialsScope::Everyone,
        inline_endpoints: InlineEndpoints::Any,
    };
    let mut notes = Vec::new();
    let simulator = if args.simulate {
        let (simulator, note) = start_simulator(&mut manifests, &mut defaults).await?;
        notes.push(note);
        Some(simulator)
    } else {
        None
    };
    let status_path = match (&args.status_file, args.simulate) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => None,
        (None, false) => Some(PathBuf::from(DEFAULT_STATUS_FILE)),
    };
    let transport = Transport::new(args.connection.client.options())?;
    let engine = args
        .engine
        .engine(transport.clone(), defaults)
        .with_concurrency(usize::from(args.concurrency));
    let (host, mode) = if args.dry_run {
        let host = OfflineHost::read_only(manifests.secrets.clone(), status_path.as_deref())?
            .with_catalog(manifests.catalog.clone());
        (host, Mode::DryRun)
    } else {
        let host = OfflineHost::new(
            manifests.secrets.clone(),
            status_path.clone(),
            args.export_dir.clone(),
        )?
        .with_catalog(manifests.catalog.clone());
        (host, Mode::Normal)
    };
    // The CRD's CEL rules, the transition rules against the previous
    // resource as the status file records it (see manifests::check_rules).
    let refused = manifests::check_rules(&manifests.resources, |key| host.recorded_robot(key));
    if !refused.is_empty() {
        return Err(ReconcileCommandError::Manifests(refused));
    }
    let outcomes = reconcile_all(
        &engine,
        &host,
        &manifests.resources,
        mode,
        usize::from(args.concurrency),
    )
    .await;
    let not_saved = host.flush().await.err();

    let mut report = match args.output {
        ReportFormat::Table => report::render_table(&outcomes),
        ReportFormat::Json => report::render_json(&outcomes),
    };
    if args.output == ReportFormat::Table {
        if let Some(sim) = &simulator {
            let counters = sim.counters();
            let calls: Vec<String> = counters
                .calls
                .iter()
                .map(|(op, by_status)| format!("{op} {}", by_status.values().sum::<u64>()))
                .collect();
            notes.push(format!(
                "simulator saw {} call(s): {}; {} update(s), {} reset(s), {} create(s) and {} delete(s) applied",
                counters.total_calls(),
                calls.join(", "),
                counters.total_updates(),
                counters.total_resets(),
                counters.total_creates(),
                counters.total_deletes()
            ));
        }
        if let Some(path) = &status_path
            && mode == Mode::Normal
        {
            notes.push(format!("statuses kept in {}", path.display()));
        }
        if !host.exports_enabled()
            && manifests
                .resources
                .iter()
                .any(|l| l.resource.spec.export_secret_ref.is_some())
        {
            notes.push("exportSecretRef is only written in a cluster, or with --export-dir".into());
        }
        if manifests.resources.iter().any(|l| {
            l.resource
                .spec
                .export_secret_ref
                .as_ref()
                .is_some_and(|r| !r.restart_targets.is_empty())
        }) {
            notes.push(
                "exportSecretRef.restartTargets roll out workloads only in a cluster: no workload was touched".into(),
            );
        }
        if !manifests.skipped.is_empty() {
            let kinds: Vec<String> = manifests
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} x{n}"))
                .collect();
            notes.push(format!("skipped other kinds: {}", kinds.join(", ")));
        }
        for note in notes {
            report.push_str(&format!("note: {note}\n"));
        }
    }
    Ok(ReconcileOutput {
        converged: not_saved.is_none() && outcomes.iter().all(|o| o.report.converged),
        report,
        not_saved,
    })
}

/// Starts the embedded simulator and points every resource at it: the
/// ActivationCodes and the connection resources.
async fn start_simulator(
    manifests: &mut Manifests,
    defaults: &mut OperatorDefaults,
) -> Result<(Simulator, String), ReconcileCommandError> {
    if manifests.seeds.is_empty() {
        return Err(ReconcileCommandError::NoSeed);
    }
    let mut robots = Vec::new();
    let mut sources = Vec::new();
    for (path, seed) in &manifests.seeds {
        robots.extend(seed.spec.robots.iter().cloned());
        sources.push(path.display().to_string());
    }
    let mut accepted = Accepted::default();
    let credentials = defaults
        .credentials
        .get_or_insert_with(|| Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY))
        .clone();
    let mut trust = |credentials: &Credentials| match credentials {
        Credentials::AkSk {
            access_key,
            secret_key,
            ..
        } => {
            accepted.keys.insert(
                access_key.expose().to_owned(),
                secret_key.expose().to_owned(),
            );
        }
        Credentials::Token(token) => accepted.tokens.push(token.expose().to_owned()),
    };
    trust(&credentials);
    for (name, data) in &manifests.secrets {
        if let Ok(found) = crate::credentials::from_secret_data(name, data) {
            trust(&found);
        }
    }
    let project_id = defaults
        .settings
        .project_id
        .clone()
        .unwrap_or_else(|| DEFAULT_PROJECT_ID.to_owned());
    let config = SimulatorConfig {
        project_id: project_id.clone(),
        accepted,
        seed: Some(Seed {
            spec: SeedSpec { robots },
            ..Seed::default()
        }),
        ..SimulatorConfig::default()
    };
    let simulator = Simulator::start(config, "127.0.0.1:0".parse().expect("static address"))
        .await
        .map_err(ReconcileCommandError::Simulator)?;
    let endpoint = simulator.endpoint();
    defaults.settings.endpoint = Some(endpoint.clone());
    defaults.settings.region = None;
    defaults.settings.project_id = Some(project_id.clone());
    for loaded in &mut manifests.resources {
        point_at_simulator(&mut loaded.resource);
    }
    let catalog = &mut manifests.catalog;
    let connections = catalog.connections.values_mut().map(|c| &mut c.target);
    let cluster_connections = catalog
        .cluster_connections
        .values_mut()
        .map(|c| &mut c.target);
    for target in connections.chain(cluster_connections) {
        point_connection_at_simulator(target, &endpoint, &project_id);
    }
    let note = format!(
        "embedded simulator at {} seeded with {} code(s) from {}",
        simulator.endpoint(),
        simulator.with_store(|s| s.code_count()),
        sources.join(", ")
    );
    Ok((simulator, note))
}

/// An inline spec.connection falls back to the operator's defaults, which
/// name the simulator: clear its own endpoint, region and project.
fn point_at_simulator(resource: &mut ActivationCode) {
    if let Some(connection) = &mut resource.spec.connection {
        connection.endpoint = None;
        connection.region = None;
        connection.project_id = None;
    }
}

/// A connection resource takes none of the operator's defaults (see
/// [`crate::tenancy::target_settings`]): name the simulator and its project
/// in it. Its credentials Secret, budget and app user id are kept.
fn point_connection_at_simulator(target: &mut ConnectionTarget, endpoint: &str, project_id: &str) {
    target.endpoint = Some(endpoint.to_owned());
    target.region = None;
    target.project_id = project_id.to_owned();
}
