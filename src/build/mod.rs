//! Image builds (Compose's `build:`): which builds a run needs — one per distinct context,
//! Dockerfile, args and target, however many services share it — and what decides whether a
//! build can be skipped (a hash of its inputs, kept as a label on the image). Planning is pure;
//! `context` reads the files; the engine (`engine::build`) runs the builds.

pub(crate) mod context;
pub(crate) mod dockerfile;
pub(crate) mod dockerignore;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::ServiceName;
use crate::config::{ServiceKind, Stack};

/// Compose's `pull_policy`, for a service that has a `build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    /// Use the local image, else pull (when `image` is given), else build. The default.
    Missing,
    /// Never pull: use the local image, else build.
    Never,
    /// Pull first; build if the pull fails.
    Always,
    /// Build (skipped only when the image's build hash matches).
    Build,
}

impl PullPolicy {
    pub(crate) fn parse(s: Option<&str>) -> Self {
        match s {
            Some("never") => Self::Never,
            Some("always") => Self::Always,
            Some("build") => Self::Build,
            // `missing`, `if_not_present`, and the periodic ones (`daily`, …): devstack keeps no
            // pull dates, so a present image is used.
            _ => Self::Missing,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerfileSource {
    /// An absolute path (inside the context or not).
    Path(PathBuf),
    /// `dockerfile_inline`.
    Inline(String),
}

/// One build: what the engine gets, and the services whose image it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildJob {
    pub services: Vec<ServiceName>,
    /// The first is the build's tag; a service of the same build that names another image gets
    /// its tag added.
    pub tags: Vec<String>,
    pub context: PathBuf,
    pub dockerfile: DockerfileSource,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cache_from: Vec<String>,
    pub network: Option<String>,
    pub extra_hosts: Vec<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub pull_policy: PullPolicy,
    /// A service named the image, so it may exist elsewhere (a registry): a pull may find it.
    pub image_given: bool,
}

impl BuildJob {
    /// What the log calls the build: `web` or `web, worker`.
    pub(crate) fn who(&self) -> String {
        self.services.join(", ")
    }

    /// The Dockerfile on disk, for messages (`None` when inline).
    pub(crate) fn dockerfile_path(&self) -> Option<&Path> {
        match &self.dockerfile {
            DockerfileSource::Path(p) => Some(p),
            DockerfileSource::Inline(_) => None,
        }
    }

    /// The Dockerfile's name inside the context tar, and its content when it must be added to
    /// the tar (inline, or outside the context).
    pub(crate) fn dockerfile_in_tar(&self, text: &str) -> (String, Option<Vec<u8>>) {
        let extra = || {
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            format!(".dockerfile.{}", &context::hex(&h.finalize())[..12])
        };
        match &self.dockerfile {
            DockerfileSource::Path(p) => match p.strip_prefix(&self.context) {
                Ok(rel) => (
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                    None,
                ),
                Err(_) => (extra(), Some(text.as_bytes().to_vec())),
            },
            DockerfileSource::Inline(_) => (extra(), Some(text.as_bytes().to_vec())),
        }
    }

    /// The hash of everything that decides what the build produces: the context after
    /// `.dockerignore` (its own hash), the Dockerfile, args, target and labels.
    pub(crate) fn input_hash(&self, dockerfile_text: &str, context_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"devstack-build-1\n");
        h.update(dockerfile_text.as_bytes());
        h.update(b"\0");
        for (k, v) in &self.args {
            h.update(format!("arg {k}={v}\0"));
        }
        h.update(format!("target {:?}\0", self.target));
        for (k, v) in &self.labels {
            h.update(format!("label {k}={v}\0"));
        }
        h.update(context_hash.as_bytes());
        context::hex(&h.finalize())
    }
}

/// The builds the `selected` services need, in the order of their first service. Services with
/// the same context, Dockerfile, args and target share one build.
pub(crate) fn jobs(stack: &Stack, selected: &[String]) -> Result<Vec<BuildJob>, String> {
    let mut out: Vec<BuildJob> = Vec::new();
    for name in selected {
        let Some(svc) = stack.services.get(name) else {
            continue;
        };
        let ServiceKind::Container { image, .. } = &svc.kind else {
            continue;
        };
        let Some(b) = &svc.options.build else {
            continue;
        };
        if b.context.contains("://") || b.context.starts_with("git@") {
            return Err(format!(
                "service `{name}` builds from `{}`: a remote build context is not supported yet; clone it and point `build.context` at the folder",
                b.context
            ));
        }
        let context = PathBuf::from(&b.context);
        let dockerfile = match (&b.dockerfile_inline, &b.dockerfile) {
            (Some(text), _) => DockerfileSource::Inline(text.clone()),
            (None, Some(f)) => DockerfileSource::Path(context.join(f)),
            (None, None) => DockerfileSource::Path(context.join("Dockerfile")),
        };
        let args: BTreeMap<String, String> = b.args.clone().into_iter().collect();
        if let Some(job) = out.iter_mut().find(|j| {
            j.context == context
                && j.dockerfile == dockerfile
                && j.args == args
                && j.target == b.target
        }) {
            job.services.push(ServiceName::from(name.clone()));
            if !job.tags.contains(image) {
                job.tags.push(image.clone());
            }
            continue;
        }
        let mut tags = vec![image.clone()];
        tags.extend(b.tags.iter().filter(|t| *t != image).cloned());
        out.push(BuildJob {
            services: vec![ServiceName::from(name.clone())],
            tags,
            context,
            dockerfile,
            args,
            target: b.target.clone(),
            labels: b.labels.clone().into_iter().collect(),
            cache_from: b.cache_from.clone(),
            network: b.network.clone(),
            extra_hosts: b.extra_hosts.clone(),
            no_cache: b.no_cache.unwrap_or(false),
            pull: b.pull.unwrap_or(false),
            pull_policy: PullPolicy::parse(svc.options.pull_policy.as_deref()),
            image_given: b.image_given,
        });
    }
    Ok(out)
}
