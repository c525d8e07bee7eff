//! The remote half: the MetaStudio activation-code API.

pub mod breaker;
pub mod client;
pub mod connection;
pub mod error;
pub mod listing;
pub mod listing_budget;
pub mod metrics;
pub mod models;
pub mod pacing;
pub mod rate_limit;
mod recent;
pub mod retry;
pub mod settings;
pub mod signer;

pub use client::{ClientOptions, MetaStudioClient, Reply, Transport};
pub use connection::{Connection, ConnectionError, Credentials};
pub use error::{ApiError, ApiErrorKind, Operation};
pub use listing::Listing;
pub use models::ActiveCode;
