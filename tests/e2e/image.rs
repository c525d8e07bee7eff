//! The operator's image the chart scenarios (p to u) run: the one
//! `E2E_IMAGE` names (`REPOSITORY:TAG`), already in the cluster's nodes.
//! `scripts/e2e` builds it with `scripts/image` and loads it into the node
//! of `scripts/control-plane` (as `E2E_IMAGE`, and the same image under a
//! second tag as `E2E_IMAGE_NEXT`, for the upgrade of scenario r); on a
//! cluster `E2E_KUBECONFIG` names, whoever runs the suite loads it (`kind
//! load image-archive`, `k3d image import`) and sets the variables.

/// An image reference split as the chart's values take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub repository: String,
    pub tag: String,
}

impl Image {
    /// `REPOSITORY:TAG` (the repository may hold a registry's port).
    pub fn parse(reference: &str) -> Option<Self> {
        let (repository, tag) = reference.rsplit_once(':')?;
        (!repository.is_empty() && !tag.is_empty() && !tag.contains('/')).then(|| Self {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The image `variable` names, or why a scenario cannot run.
    pub fn from_env(variable: &str) -> Result<Self, String> {
        let reference = std::env::var(variable).map_err(|_| {
            format!(
                "{variable} is not set: it names the operator's image (REPOSITORY:TAG) loaded into the cluster's nodes (scripts/e2e builds and loads it with scripts/image; on another cluster, load target/image/*.tar yourself, e.g. `kind load image-archive`, and set {variable})"
            )
        })?;
        Self::parse(&reference)
            .ok_or_else(|| format!("{variable}={reference:?} is not REPOSITORY:TAG"))
    }

    /// The chart's values that select this image (and nothing else).
    pub fn values(&self) -> [String; 2] {
        [
            format!("image.repository={}", self.repository),
            format!("image.tag={}", self.tag),
        ]
    }

    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// The image of `E2E_IMAGE`; prints SKIPPED with the reason for `scenario`
/// and gives `None` when it is not set.
pub fn or_skip(scenario: &str) -> Option<Image> {
    match Image::from_env("E2E_IMAGE") {
        Ok(image) => Some(image),
        Err(reason) => {
            eprintln!("SKIPPED {scenario}: {reason}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_last_colon_of_the_name() {
        assert_eq!(
            Image::parse("localhost:5000/metastudio-operator:e2e"),
            Some(Image {
                repository: "localhost:5000/metastudio-operator".into(),
                tag: "e2e".into()
            })
        );
        assert_eq!(Image::parse("localhost:5000/metastudio-operator"), None);
        assert_eq!(Image::parse("metastudio-operator"), None);
    }
}
