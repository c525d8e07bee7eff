//! The `ActivationCode` custom resource. Every doc comment here becomes the
//! field's description in the CRD, which is what `kubectl explain` prints.

use crate::duration::HumanDuration;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub mod bounds;
pub mod cel;
pub mod connection;
pub mod deletion;
pub mod export;
pub mod rollout;
pub mod status;
pub mod unknown_fields;

pub use export::{ExportSecretReference, RestartTarget, WorkloadKind};
pub use rollout::{MaxCodes, Rollout};
pub use status::{
    ActivationCodeStatus, CodeStatus, Condition, CreateIntent, DeleteIntent, Drift, LastReset,
    LedgerEntry, MissingCodes, ResetIntent, TokenRollout,
};
pub use unknown_fields::UnknownFields;

pub const GROUP: &str = "metastudio.huaweicloud.com";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "ActivationCode";
pub const API_VERSION: &str = "metastudio.huaweicloud.com/v1alpha1";

/// The default drift-check period.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(600);

/// Desired state of one MetaStudio application's (robot's) activation codes:
/// their validity and how they rotate.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "metastudio.huaweicloud.com",
    version = "v1alpha1",
    kind = "ActivationCode",
    doc = "Keeps the activation codes of one Huawei Cloud MetaStudio application (robot) as declared: their validity in days and how they rotate.",
    namespaced,
    shortname = "ac",
    category = "metastudio",
    status = "ActivationCodeStatus",
    derive = "PartialEq",
    // `kubectl scale` drives spec.count; the current replicas are the codes
    // the resource manages (with count, those of its room).
    scale(
        spec_replicas_path = ".spec.count",
        status_replicas_path = ".status.managedCodes"
    ),
    // Raw JSON columns: the attribute form trips clippy's duplicated_attributes.
    printcolumn = r#"{"name":"Robot","type":"string","jsonPath":".spec.robotId","description":"MetaStudio application (robot) id"}"#,
    printcolumn = r#"{"name":"Valid (days)","type":"integer","jsonPath":".spec.validPeriod","description":"Desired validity in days (0 = permanent)"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.count","description":"Codes the room should hold (spec.count, what kubectl scale sets); empty when the codes are managed as they are"}"#,
    printcolumn = r#"{"name":"Codes","type":"integer","jsonPath":".status.managedCodes","description":"Activation codes managed: with spec.count, the codes of the room"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Rotation","type":"string","jsonPath":".status.resetToken.progress","description":"Codes reset for spec.reset.token so far, of all it resets"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ActivationCodeSpec {
    /// The MetaStudio application (robot) whose activation codes this resource
    /// manages. Immutable: create a new resource to manage another robot.
    #[x_kube(validation = Rule::new("self == oldSelf").message("robotId is immutable: create a new ActivationCode for another robot"))]
    #[schemars(length(min = 1, max = 128))]
    pub robot_id: String,

    /// Desired validity of every managed code, in days, from 0 to 65535 (the
    /// API's range); 0 means permanent. Changing it restarts each code's
    /// validity window at the moment of the change (that is how MetaStudio
    /// applies it).
    #[schemars(schema_with = "days_schema")]
    pub valid_period: u16,

    /// Only manage the codes of this interactive dialog (room). Default: codes
    /// of every room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub room_id: Option<String>,

    /// Only manage the codes with these ids. Default: every code of the robot
    /// (within `roomId`, when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 128)))]
    pub active_code_ids: Option<Vec<String>>,

    /// How many codes this resource keeps in its room (spec.roomId, which
    /// it needs: a create names the room), from 0 to 30000 (the most one
    /// resource manages). Every code of the room counts, whoever created
    /// it. Missing codes are created with validPeriod and join the managed
    /// codes, the export Secret and the status at once; codes over the
    /// count are kept or deleted as spec.surplus says. Each create is
    /// recorded in status before it is made and settled from the next
    /// complete listing when its answer is lost, so the room never gets
    /// more codes than asked through a retry, a crash or a second
    /// reconciler. Not together with activeCodeIds (a new code's id is not
    /// known in advance). `kubectl scale activationcode NAME --replicas=N`
    /// sets it (the scale subresource's replicas; its status replicas are
    /// status.managedCodes) once it is set: some API servers (1.20 among
    /// them) serve no scale for a resource without it. Default: unset, the
    /// codes are managed as they are and none is created or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "code_count_schema")]
    pub count: Option<u32>,

    /// What to do with codes of the room over spec.count: Keep (default)
    /// reports them as drift and deletes nothing; Delete deletes down to
    /// the count, the codes this resource created first, newest first,
    /// never a code outside its room. managementPolicy Observe never
    /// deletes.
    #[serde(default, skip_serializing_if = "SurplusPolicy::is_default")]
    pub surplus: SurplusPolicy,

    /// What deleting this resource does to the codes it created
    /// (spec.count; status.createdCodes and the reset ledger's created
    /// entries): Orphan (default) keeps them; Delete deletes them, and only
    /// them, before the resource goes (the finalizer
    /// metastudio.huaweicloud.com/delete-codes, held while the policy is
    /// Delete). managementPolicy Observe never deletes. When they cannot be
    /// deleted (credentials or connection gone, suspended, refused) the
    /// resource says so (reason DeletionBlocked) and deletes nothing; the
    /// annotation metastudio.huaweicloud.com/orphan-codes: "true" lets it
    /// go with its codes kept. `reconcile -f` has no deletion: there it
    /// changes nothing.
    #[serde(default, skip_serializing_if = "DeletionPolicy::is_default")]
    pub deletion_policy: DeletionPolicy,

    /// Rotation policy: when to reset (mint new values for) the managed codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetPolicy>,

    /// Renew codes that expire within this window, e.g. 24h: an update with
    /// the code's own validPeriod restarts its validity window and keeps its
    /// value, so devices stay activated. From 1m to 3650d, and shorter than
    /// validPeriod; permanent codes are never renewed. Not together with
    /// reset.beforeExpiry, which mints new values instead: choose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_expiry: Option<HumanDuration>,

    /// Where and as whom to call MetaStudio, inline. Unset fields fall back
    /// to the operator's defaults (its flags and environment). An endpoint,
    /// region or projectId of the resource's own needs its own
    /// credentialsSecretRef: the operator's credentials never go where a
    /// resource chooses. In a cluster, an endpoint of its own may only be
    /// an official one: other endpoints are named in a MetaStudioConnection
    /// (connectionRef). Instead of connectionRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionSpec>,

    /// A MetaStudioConnection in this namespace, or a
    /// ClusterMetaStudioConnection whose conditions admit this namespace
    /// (and robot): where and as whom to call MetaStudio. Instead of
    /// connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<connection::ConnectionReference>,

    /// A Secret, in this namespace, that receives the code values (one key
    /// per code id). It is owned by this resource and deleted with it. Code
    /// values never appear in status. Its restartTargets roll out the
    /// workloads that read it when the values change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_secret_ref: Option<ExportSecretReference>,

    /// How often to check the remote codes for drift, e.g. 10m or 1h, from
    /// 10s to 30d. Default 10m. Each period gets a little random jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<HumanDuration>,

    /// Enforce (default) changes remote codes to match this spec; Observe
    /// only reports the drift in status and changes nothing.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Stop all remote calls for this resource while true.
    #[serde(default)]
    pub suspend: bool,

    /// Fields this operator does not know, e.g. of a newer CRD (see
    /// [`unknown_fields`]); serialised back as they came.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// When the managed codes are reset. A reset mints a new code value for the
/// same code id and restarts its validity window.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResetPolicy {
    /// Any string (a date works well, e.g. "2026-11-22"): every managed code
    /// is reset once for each value, unless its last reset was for this
    /// value already, or it was created after the value was first seen.
    /// Setting it on creation resets the codes once too; leave it unset to
    /// adopt codes as they are. Going back to an earlier value resets the
    /// codes whose last reset was for another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub token: Option<String>,

    /// Reset codes that expire within this window, or have expired, e.g. 24h.
    /// From 1m to 3650d, and shorter than validPeriod. Permanent codes never
    /// expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_expiry: Option<HumanDuration>,

    /// Whether a reset also clears the authentication credentials of devices
    /// that used the old code (they must activate again). Default true.
    #[serde(default = "default_true")]
    pub clean_auth_credential: bool,

    /// Spread a token's resets over time: at most maxCodes codes per
    /// interval, the first batch at once. Default: every code at once.
    /// Resets before expiry are not batched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// Fields this operator does not know, e.g. of a newer CRD (see
    /// [`unknown_fields`]); serialised back as they came.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

fn default_true() -> bool {
    true
}

/// Connection overrides for this resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// Huawei Cloud project id of the region, e.g. 70b76xxxxxx34253880af501cdxxxxxx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub project_id: Option<String>,

    /// Region, e.g. cn-north-4 or ap-southeast-1; the endpoint becomes
    /// https://metastudio.{region}.myhuaweicloud.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,

    /// Full endpoint URL; overrides region. In a cluster only an official
    /// one, https://metastudio.{region}.myhuaweicloud.com (region says the
    /// same): any other endpoint (a private one, a proxy) is refused with
    /// ConnectionNotAllowed and must be named in a MetaStudioConnection,
    /// so that only whoever may create connections chooses where the
    /// namespace's credentials go. `reconcile -f` takes any endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,

    /// A Secret in this namespace with keys `accessKey` and `secretKey`
    /// (optionally `securityToken` for temporary credentials), or `authToken`
    /// for a static IAM token. Default: the operator's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalSecretReference>,

    /// Third-party user id sent as X-App-UserId (printable ASCII only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[ -~]+$"))]
    pub app_user_id: Option<String>,

    /// Fields this operator does not know, e.g. of a newer CRD (see
    /// [`unknown_fields`]); serialised back as they came.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// A Secret in the resource's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Fields this operator does not know, e.g. of a newer CRD (see
    /// [`unknown_fields`]); serialised back as they came.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// Whether the operator changes remote codes or only reports drift.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ManagementPolicy {
    /// Change remote codes to match the spec.
    #[default]
    Enforce,
    /// Report drift in status; change nothing.
    Observe,
}

/// What happens to codes of the room over `spec.count`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum SurplusPolicy {
    /// Report the codes over the count as drift; delete none.
    #[default]
    Keep,
    /// Delete down to the count: codes this resource created first, newest
    /// first.
    Delete,
}

impl SurplusPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What deleting the resource does to the codes it created.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    /// Keep them: the resource goes, its codes stay in MetaStudio.
    #[default]
    Orphan,
    /// Delete the codes this resource created, then let the resource go.
    Delete,
}

impl DeletionPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Days, 0..=65535, without the `format: uint16` Kubernetes does not know.
pub(crate) fn days_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "minimum": 0, "maximum": 65535})
}

/// `spec.count`: within [`bounds::COUNT`].
fn code_count_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "minimum": *bounds::COUNT.start(),
        "maximum": *bounds::COUNT.end()
    })
}

pub(crate) fn count_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "minimum": 0})
}

/// An RFC 3339 time, as Kubernetes writes its own timestamps.
pub(crate) fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

impl ActivationCodeSpec {
    pub fn sync_interval(&self) -> Duration {
        self.sync_interval.map_or(DEFAULT_SYNC_INTERVAL, |d| d.0)
    }

    /// Whether `code` (of this robot) is one this resource manages.
    pub fn selects(&self, room_id: Option<&str>, code_id: &str) -> bool {
        let room_ok = self
            .room_id
            .as_deref()
            .is_none_or(|wanted| room_id == Some(wanted));
        let id_ok = self
            .active_code_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == code_id));
        room_ok && id_ok
    }
}

/// The ActivationCode CustomResourceDefinition the operator ships.
pub fn definition() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    without_nullable(ActivationCode::crd())
}

/// Every CustomResourceDefinition the operator ships, each with the file
/// name it has in `crds/`.
pub fn definitions() -> [(&'static str, CustomResourceDefinition); 3] {
    [
        ("activationcode.yaml", definition()),
        ("metastudioconnection.yaml", connection::definition()),
        (
            "clustermetastudioconnection.yaml",
            connection::cluster_definition(),
        ),
    ]
}

/// kube's derived CRD without `nullable: true`. The operator never writes
/// a null (it leaves an unset field out), and the API server drops a null
/// that a user writes for a field that is not nullable, so it reads as
/// unset. But OpenAPI v2, which `kubectl explain` reads from servers
/// without OpenAPI v3 (1.20, say), publishes a nullable field without its
/// type and fields: `kubectl explain activationcode.spec.reset` would list
/// nothing.
pub fn without_nullable(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_nullable(schema);
        }
    }
    crd
}

fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        drop_nullable(property);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        drop_nullable(items);
    }
}

/// One CRD as YAML, exactly what its file in `crds/` holds.
pub fn yaml_of(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).expect("the CRD serialises")
}

/// Every CRD as one YAML stream, what `metastudio-operator crd` prints.
pub fn crd_yaml() -> String {
    definitions()
        .iter()
        .map(|(_, crd)| yaml_of(crd))
        .collect::<Vec<_>>()
        .join("---\n")
}
