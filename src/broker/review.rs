//! Who is calling, and whether RBAC lets them: the API server answers both
//! (TokenReview, SubjectAccessReview), so the broker trusts nothing the
//! caller says about itself.

use super::contract::{Denial, reason};
use crate::crd::GROUP;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::core::ClusterResourceScope;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The resource RBAC rules name to let a ServiceAccount get once-codes:
/// `create` on `oncecodes` in `metastudio.huaweicloud.com`, the resource
/// name being the connection's.
pub const RESOURCE: &str = "oncecodes";
pub const VERB: &str = "create";

/// A ServiceAccount the API server authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `system:serviceaccount:NAMESPACE:NAME`.
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    pub namespace: String,
    pub service_account: String,
}

impl Caller {
    /// `NAMESPACE/NAME` of the ServiceAccount, for logs and limits.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.service_account)
    }
}

/// The two questions the broker asks of the API server.
pub trait Reviewer: Send + Sync {
    /// Who `token` belongs to, if the API server authenticates it for the
    /// broker's audience.
    fn authenticate(&self, token: &str) -> impl Future<Output = Result<Caller, Denial>> + Send;
    /// Whether `caller` may create `oncecodes` named `connection` in its
    /// namespace.
    fn authorize(
        &self,
        caller: &Caller,
        connection: &str,
    ) -> impl Future<Output = Result<(), Denial>> + Send;
}

/// Reviews in flight at once. The operator's Lease renewals and status
/// writes go through the same API server, for the same ServiceAccount:
/// the broker's reviews must never crowd them out.
pub const REVIEWS_IN_FLIGHT: usize = 8;
/// The longest a review may take, its wait for a place included; then the
/// caller is told to try again (503 ReviewUnavailable).
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The API server's answers, asked each time, at most
/// [`REVIEWS_IN_FLIGHT`] at once.
#[derive(Clone)]
pub struct KubeReviewer {
    client: Client,
    audience: String,
    in_flight: Arc<Semaphore>,
}

impl KubeReviewer {
    pub fn new(client: Client, audience: impl Into<String>) -> Self {
        Self {
            client,
            audience: audience.into(),
            in_flight: Arc::new(Semaphore::new(REVIEWS_IN_FLIGHT)),
        }
    }

    /// Creates `review` (a TokenReview or SubjectAccessReview) and returns
    /// the API server's answer, within the cap and [`REVIEW_TIMEOUT`].
    async fn ask<K>(&self, review: &K) -> Result<K, Denial>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let asked = async {
            let _place = self.in_flight.acquire().await.expect("never closed");
            Api::<K>::all(self.client.clone())
                .create(&PostParams::default(), review)
                .await
        };
        match tokio::time::timeout(REVIEW_TIMEOUT, asked).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(unavailable(&K::kind(&()), &err.to_string())),
            Err(_) => Err(unavailable(
                &K::kind(&()),
                &format!("no answer within {REVIEW_TIMEOUT:?}"),
            )),
        }
    }
}

impl Reviewer for KubeReviewer {
    async fn authenticate(&self, token: &str) -> Result<Caller, Denial> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let answer = self.ask(&review).await?;
        caller_of(answer.status.unwrap_or_default(), &self.audience)
    }

    async fn authorize(&self, caller: &Caller, connection: &str) -> Result<(), Denial> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.username.clone()),
                uid: Some(caller.uid.clone()),
                groups: Some(caller.groups.clone()),
                extra: Some(caller.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(caller.namespace.clone()),
                    verb: Some(VERB.into()),
                    group: Some(GROUP.into()),
                    resource: Some(RESOURCE.into()),
                    name: Some(connection.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = self.ask(&review).await?;
        if answer.status.is_some_and(|s| s.allowed) {
            return Ok(());
        }
        Err(Denial::new(
            403,
            reason::FORBIDDEN,
            format!(
                "ServiceAccount {} may not {VERB} {RESOURCE} {connection:?} in namespace {}: grant it with a Role (apiGroups [{GROUP}], resources [{RESOURCE}], resourceNames [{connection}], verbs [{VERB}]) and a RoleBinding",
                caller.id(),
                caller.namespace,
            ),
        ))
    }
}

/// The caller a TokenReview's status names, if it authenticated a
/// ServiceAccount for `audience`.
pub fn caller_of(status: TokenReviewStatus, audience: &str) -> Result<Caller, Denial> {
    let for_audience = status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|a| a == audience));
    if status.authenticated != Some(true) || !for_audience {
        return Err(Denial::unauthenticated(format!(
            "the token is not valid (unknown, expired, or not issued for audience {audience:?}): send a projected ServiceAccount token with audience {audience:?}"
        )));
    }
    let user = status.user.unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let Some((namespace, service_account)) = service_account_of(&username) else {
        return Err(Denial::new(
            403,
            reason::NOT_A_SERVICE_ACCOUNT,
            format!(
                "{username:?} is not a ServiceAccount: the broker serves workloads by their ServiceAccount token"
            ),
        ));
    };
    Ok(Caller {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        uid: user.uid.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
        username,
    })
}

/// `(namespace, name)` of `system:serviceaccount:NAMESPACE:NAME`.
fn service_account_of(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// The API server could not be asked: the caller may try again.
fn unavailable(review: &str, err: &str) -> Denial {
    Denial::new(
        503,
        reason::REVIEW_UNAVAILABLE,
        format!("the API server did not answer the {review} ({err}): try again shortly"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn status(authenticated: bool, audiences: &[&str], username: &str) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
            user: Some(UserInfo {
                username: Some(username.into()),
                uid: Some("uid-1".into()),
                ..UserInfo::default()
            }),
            error: None,
        }
    }

    #[test]
    fn a_service_account_authenticated_for_the_audience_is_a_caller() {
        let caller = caller_of(
            status(
                true,
                &["metastudio-operator"],
                "system:serviceaccount:retail:kiosk",
            ),
            "metastudio-operator",
        )
        .unwrap();
        assert_eq!(caller.id(), "retail/kiosk");
        assert_eq!(caller.uid, "uid-1");
    }

    #[test]
    fn other_audiences_users_and_failures_are_refused() {
        let aud = "metastudio-operator";
        let sa = "system:serviceaccount:retail:kiosk";
        for (status, code) in [
            (status(false, &[aud], sa), 401),
            (status(true, &["https://kubernetes.default.svc"], sa), 401),
            (status(true, &[], sa), 401),
            (TokenReviewStatus::default(), 401),
            (status(true, &[aud], "alice"), 403),
            (status(true, &[aud], "system:serviceaccount:retail"), 403),
            (status(true, &[aud], "system:serviceaccount::kiosk"), 403),
        ] {
            assert_eq!(
                caller_of(status.clone(), aud).unwrap_err().status,
                code,
                "{status:?}"
            );
        }
    }
}
