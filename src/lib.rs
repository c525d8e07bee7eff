//! metastudio-operator: keeps Huawei Cloud MetaStudio activation codes as an
//! `ActivationCode` resource declares.

pub mod cli;
pub mod crd;
pub mod duration;
pub mod metastudio;
pub mod plan;
pub mod secret;
pub mod simulator;
pub mod telemetry;
pub mod tls;
pub mod validate;
