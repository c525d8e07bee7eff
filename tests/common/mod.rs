//! Shared test fixtures: a simulator on port 0 and clients for it.
#![allow(dead_code)]

pub mod broker;
pub mod capture;
pub mod controller;
pub mod failure_text;
pub mod fake_api;
pub mod fenced;
pub mod fuzz;
pub mod kube_mock;
pub mod offline;
pub mod raw_http;

use metastudio_operator::metastudio::connection::parse_endpoint;
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::retry::RetryPolicy;
use metastudio_operator::metastudio::{
    ClientOptions, Connection, Credentials, MetaStudioClient, Transport,
};
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Seed, Simulator, SimulatorConfig,
};
use std::time::Duration;

pub const ROBOT: &str = "4d54c0ffee446249aa00bb11cc226526";

/// Fast retries and no rate limit, so fault tests run in milliseconds.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(30),
        },
        pacing: Pacing::UNLIMITED,
        ..ClientOptions::default()
    }
}

pub fn seed_yaml(yaml: &str) -> Seed {
    Seed::from_yaml(yaml).expect("test seed parses")
}

/// A robot with `count` codes of `valid_period` days.
pub fn robot_seed(count: u32, valid_period: u16) -> Seed {
    seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, generate: {{count: {count}, validPeriod: {valid_period}}}}}]}}"
    ))
}

pub async fn simulator(seed: Seed, faults: FaultConfig) -> Simulator {
    simulator_accepting(seed, faults, &[]).await
}

/// A simulator on port 0 that also accepts these static `X-Auth-Token`s.
pub async fn simulator_accepting(seed: Seed, faults: FaultConfig, tokens: &[&str]) -> Simulator {
    let mut config = SimulatorConfig {
        seed: Some(seed),
        faults,
        ..SimulatorConfig::default()
    };
    config
        .accepted
        .tokens
        .extend(tokens.iter().map(|t| (*t).to_owned()));
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator binds port 0")
}

pub fn connection(endpoint: &str, credentials: Credentials) -> Connection {
    Connection::new(
        parse_endpoint(endpoint).unwrap(),
        metastudio_operator::simulator::DEFAULT_PROJECT_ID,
        credentials,
        None,
    )
    .unwrap()
}

pub fn good_credentials() -> Credentials {
    Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
}

pub fn client(sim: &Simulator, options: ClientOptions) -> MetaStudioClient {
    Transport::new(options)
        .unwrap()
        .client(connection(&sim.endpoint(), good_credentials()))
}
