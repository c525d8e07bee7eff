//! The connection resources: where, and as whom, ActivationCodes call
//! MetaStudio, kept once by whoever owns the credentials and referred to by
//! `spec.connectionRef`.
//!
//! * `MetaStudioConnection` serves the ActivationCodes of its own namespace;
//!   its credentials Secret is in that namespace too.
//! * `ClusterMetaStudioConnection` serves the namespaces its `conditions`
//!   admit (by name or label), optionally only for some robots; its Secret
//!   is in a namespace it names (usually the operator's).
//!
//! Every doc comment here is what `kubectl explain` prints.

use super::{Condition, UnknownFields};
use crate::metastudio::pacing::{MAX_BURST, MIN_SHARE, RATE_RANGE};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const CONNECTION_KIND: &str = "MetaStudioConnection";
pub const CLUSTER_CONNECTION_KIND: &str = "ClusterMetaStudioConnection";

/// Where and as whom to call MetaStudio for the ActivationCodes of this
/// namespace that refer to it (spec.connectionRef).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "metastudio.huaweicloud.com",
    version = "v1alpha1",
    kind = "MetaStudioConnection",
    doc = "Where and as whom to call Huawei Cloud MetaStudio, for the ActivationCodes of this namespace that refer to it in spec.connectionRef.",
    namespaced,
    shortname = "msconn",
    category = "metastudio",
    status = "ConnectionStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint","description":"The MetaStudio endpoint calls go to"}"#,
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.projectId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"In Use","type":"integer","jsonPath":".status.activationCodes","description":"ActivationCodes that use it"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MetaStudioConnectionSpec {
    #[serde(flatten)]
    pub target: ConnectionTarget,

    /// A Secret in this namespace with keys `accessKey` and `secretKey`
    /// (optionally `securityToken` for temporary credentials), or
    /// `authToken` for a static IAM token.
    pub credentials_secret_ref: super::LocalSecretReference,

    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// Where and as whom to call MetaStudio, for the ActivationCodes of every
/// namespace its conditions admit.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "metastudio.huaweicloud.com",
    version = "v1alpha1",
    kind = "ClusterMetaStudioConnection",
    doc = "Where and as whom to call Huawei Cloud MetaStudio, for the ActivationCodes of the namespaces (and robots) its spec.conditions admit.",
    shortname = "cmsconn",
    category = "metastudio",
    status = "ConnectionStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint","description":"The MetaStudio endpoint calls go to"}"#,
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.projectId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"In Use","type":"integer","jsonPath":".status.activationCodes","description":"ActivationCodes that use it"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetaStudioConnectionSpec {
    #[serde(flatten)]
    pub target: ConnectionTarget,

    /// The Secret with keys `accessKey` and `secretKey` (optionally
    /// `securityToken`), or `authToken`, and its namespace (usually the
    /// operator's own, where tenants cannot read it).
    pub credentials_secret_ref: SecretReference,

    /// Who may use this connection: an ActivationCode may when at least one
    /// condition admits its namespace (and, if the condition lists robots,
    /// its robot). No conditions: nobody. To admit every namespace, use one
    /// condition with an empty namespaceSelector ({}).
    #[serde(default)]
    pub conditions: Vec<AccessCondition>,

    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// What both connection kinds say about the endpoint, the project and the
/// client's budget.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTarget {
    /// Region, e.g. cn-north-4 or ap-southeast-1; the endpoint becomes
    /// https://metastudio.{region}.myhuaweicloud.com. Set region or
    /// endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,

    /// Full endpoint URL; overrides region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,

    /// Huawei Cloud project id of the region.
    #[schemars(length(min = 1), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub project_id: String,

    /// Third-party user id sent as X-App-UserId (printable ASCII only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[ -~]+$"))]
    pub app_user_id: Option<String>,

    /// Allow a plain-http endpoint on a host other than loopback (a private
    /// test endpoint). Tokens (X-Auth-Token, X-Security-Token) and code
    /// values then travel unencrypted; the operator says so in an Event on
    /// every ActivationCode that uses it and in this resource's status.
    /// Default false: such an endpoint is refused.
    #[serde(default)]
    pub insecure_http: bool,

    /// The client-side request budget of these credentials, per class of
    /// call, shared by every connection with the same endpoint, project
    /// and credentials (and by no other). MetaStudio's flow control is per
    /// tenant and per class: reads 20/s and writes 5/s in cn-north-4, 10/s
    /// and 3/s in cn-east-3. Unset fields: the operator's --read-rate,
    /// --write-rate, --rate-share and --rate-burst, else the region's
    /// documented quota (a region without figures: the lowest documented,
    /// 10 and 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// A client-side request budget: reads and writes paced apart. Each figure
/// has bounds (the schema's, checked again by the operator); the slowest
/// budget they allow spaces calls 1000 seconds apart.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Reads (ListActiveCode, ShowActiveCode, CreateOnceCode) per second:
    /// 0 (no limit) or from 0.1 to 1000. Default: the region's documented
    /// read quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rate_schema")]
    pub reads_per_second: Option<f64>,
    /// Writes (UpdateActiveCode, ResetActiveCode, CreateActiveCode,
    /// DeleteActiveCode) per second: 0 (no limit) or from 0.1 to 1000.
    /// Default: the region's documented write quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rate_schema")]
    pub writes_per_second: Option<f64>,
    /// The share of both rates to use, from 0.01 to 1 (e.g. 0.8 leaves a
    /// fifth of the tenant's quota to its other clients). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "share_schema")]
    pub share: Option<f64>,
    /// Requests of a class that may go out at once before the rate spaces
    /// them, from 1 to 1000. Default 1: evenly spaced, which a server
    /// counting per second never sees above its quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "burst_schema")]
    pub burst: Option<u32>,
    /// Deprecated: an upper bound for reads and for writes each: 0 (none)
    /// or from 0.1 to 1000. Use readsPerSecond and writesPerSecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rate_schema")]
    pub requests_per_second: Option<f64>,
    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// 0, or within [`RATE_RANGE`]: the `anyOf` leaves out the tiny rates
/// between (1e-30 would space calls 3e22 years apart). Without the
/// `format: double` and `format: uint32` Kubernetes does not know.
fn rate_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "number",
        "minimum": 0,
        "maximum": RATE_RANGE.end(),
        // The API server names the first branch's bound when neither
        // holds: the lower bound tells a tiny rate what to write.
        "anyOf": [{"minimum": RATE_RANGE.start()}, {"maximum": 0}],
    })
}

fn share_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "number", "minimum": MIN_SHARE, "maximum": 1})
}

fn burst_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "minimum": 1, "maximum": MAX_BURST})
}

impl Budget {
    /// The pacing it states.
    pub fn pacing(&self) -> crate::metastudio::pacing::Pacing {
        crate::metastudio::pacing::Pacing {
            reads_per_second: self.reads_per_second,
            writes_per_second: self.writes_per_second,
            share: self.share,
            burst: self.burst,
            cap: self.requests_per_second,
        }
    }
}

/// A Secret in a named namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// One rule of who may use a ClusterMetaStudioConnection.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessCondition {
    /// Namespaces admitted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,

    /// Namespaces admitted by their labels; {} admits every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// The robots (MetaStudio applications) these namespaces may manage
    /// through this connection. Empty: any robot of the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub robot_ids: Vec<String>,
    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// Observed state of a connection, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready: the credentials Secret exists and is well formed, and
    /// MetaStudio has not rejected the credentials (CredentialsRejected).
    /// InsecureTransport: the endpoint is plain http to a non-loopback host.
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// The endpoint calls go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// How many ActivationCodes refer to this connection.
    #[serde(default)]
    #[schemars(schema_with = "super::count_schema")]
    pub activation_codes: u32,
}

/// The kinds `spec.connectionRef` may name.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ConnectionKind {
    /// A connection in the ActivationCode's own namespace.
    #[default]
    MetaStudioConnection,
    /// A cluster-wide connection whose conditions admit the namespace.
    ClusterMetaStudioConnection,
}

impl ConnectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::MetaStudioConnection => CONNECTION_KIND,
            ConnectionKind::ClusterMetaStudioConnection => CLUSTER_CONNECTION_KIND,
        }
    }
}

/// An ActivationCode's choice of connection resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReference {
    /// MetaStudioConnection (default: in this namespace) or
    /// ClusterMetaStudioConnection.
    #[serde(default)]
    pub kind: ConnectionKind,
    /// Name of the connection.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// The MetaStudioConnection CustomResourceDefinition the operator ships.
pub fn definition() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    super::without_nullable(MetaStudioConnection::crd())
}

/// The ClusterMetaStudioConnection CustomResourceDefinition.
pub fn cluster_definition() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    super::without_nullable(ClusterMetaStudioConnection::crd())
}
