//! `build`: the image a service builds, its context resolved against the stack's folder.

use super::*;

/// The service's `build`, checked; `None` without one.
pub(super) fn build(c: &mut Checker<'_>, rs: &RawService, path: &KeyPath) -> Option<Build> {
    rs.build.as_ref().map(|b| {
        let b = &b.0;
        let context = b.context.clone().unwrap_or_else(|| ".".to_string());
        let is_url = context.contains("://") || context.starts_with("git@");
        let context = if is_url {
            context
        } else {
            normalize_path(&c.ctx.root.join(&context))
                .display()
                .to_string()
        };
        let shm_size = b
            .shm_size
            .as_ref()
            .and_then(|s| bytes(c, &s.0, &path.key("build").key("shm_size")));
        Build {
            context,
            image_given: rs.image.is_some(),
            dockerfile: b.dockerfile.clone(),
            dockerfile_inline: b.dockerfile_inline.clone(),
            args: environment(c, &b.args),
            target: b.target.clone(),
            labels: b.labels.0.clone(),
            cache_from: b.cache_from.clone(),
            cache_to: b.cache_to.clone(),
            network: b.network.clone(),
            pull: b.pull,
            no_cache: b.no_cache,
            tags: b.tags.clone(),
            platforms: b.platforms.clone(),
            extra_hosts: b
                .extra_hosts
                .0
                .iter()
                .map(|(h, ip)| format!("{h}:{ip}"))
                .collect(),
            shm_size,
            additional_contexts: b.additional_contexts.0.clone(),
        }
    })
}
