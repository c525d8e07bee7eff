//! metastudio-operator: keeps Huawei Cloud MetaStudio activation codes as an
//! `ActivationCode` resource declares.

pub mod broker;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod duration;
pub mod engine;
pub mod fingerprint;
pub mod metastudio;
pub mod offline;
pub mod panics;
pub mod plan;
pub mod secret;
pub mod simulator;
pub mod slots;
pub mod telemetry;
pub mod tenancy;
pub mod tls;
pub mod validate;
