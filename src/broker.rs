//! The once-code broker (`run --broker-addr`): workloads in the cluster get
//! MetaStudio one-off codes (CreateOnceCode) by proving who they are with a
//! ServiceAccount token, never holding AK/SK themselves.
//!
//! One request, `POST /v1/oncecodes/{connection}` with a bearer token, goes
//! through these steps, each refusing with its own status and reason
//! ([`contract::Denial`]) before anything remote happens:
//!
//! 1. [`route`]: the method, path and (absent) body;
//! 2. [`review`]: TokenReview with the broker's audience (who is calling:
//!    a ServiceAccount, so a namespace), cached briefly by [`review_cache`],
//!    which asks about a token it has not seen authenticated only within
//!    the review budget ([`limits::ReviewBudget`]): anyone can send junk
//!    tokens, and past the budget they get 429 without a review;
//! 3. [`limits`]: the caller's own token bucket;
//! 4. [`review`] again: SubjectAccessReview, `create` on `oncecodes` named
//!    `{connection}` in the caller's namespace (plain RBAC decides);
//! 5. [`issuer`]: the connection the namespace may use (the tenancy rules
//!    of ActivationCodes), its credentials, the budget those credentials
//!    share, and the CreateOnceCode call.
//!
//! [`server`] serves it over HTTPS ([`tls`]: the certificate is reloaded
//! when its files change) or, on loopback only, plain HTTP, within
//! connection limits ([`crate::telemetry::connections`]). Every replica
//! serves, standbys too: the broker keeps no Lease-guarded state, only its
//! own caches of connection resources.

pub mod contract;
pub mod issuer;
pub mod launch;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod review;
pub mod review_cache;
pub mod route;
pub mod server;
pub mod tls;
