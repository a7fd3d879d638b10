//! `develop.watch` (Compose) and `watch` (devstack): paths, actions and targets.

use super::*;

/// `develop.watch`: paths against the stack's folder, known actions, a `target` for `sync`, a
/// `build` for `rebuild`.
pub(super) fn develop_rules(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
) -> Vec<WatchRule> {
    let Some(d) = &rs.develop else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in d.watch.iter().enumerate() {
        let at = path.key("develop").key("watch").index(i);
        let action = match r.action.as_str() {
            "rebuild" => WatchAction::Rebuild,
            "sync" => WatchAction::Sync,
            "restart" => WatchAction::Restart,
            "sync+restart" => WatchAction::SyncRestart,
            "sync+exec" => {
                c.err(
                    Diagnostic::new(
                        "`sync+exec` is a Compose watch action devstack does not support yet",
                    )
                    .at_value(at.key("action"))
                    .help("use `sync+restart`, or `sync` with the command reloading by itself"),
                );
                continue;
            }
            other => {
                c.err(
                    Diagnostic::new(format!("unknown watch action `{other}`"))
                        .at_value(at.key("action"))
                        .help("use `rebuild`, `sync`, `restart` or `sync+restart`"),
                );
                continue;
            }
        };
        if matches!(action, WatchAction::Sync | WatchAction::SyncRestart) {
            match &r.target {
                Some(t) if t.starts_with('/') => {}
                Some(_) => c.err(
                    Diagnostic::new(format!("`target` of a `{}` rule of `{name}` must be an absolute path inside the container", r.action))
                        .at_value(at.key("target")),
                ),
                None => c.err(
                    Diagnostic::new(format!("a `{}` rule of `{name}` needs a `target`", r.action))
                        .at(at.clone())
                        .help("the folder inside the container the files are copied to, e.g. `target: /app`"),
                ),
            }
        }
        if action == WatchAction::Rebuild && rs.build.is_none() {
            c.err(
                Diagnostic::new(format!(
                    "a `rebuild` rule of `{name}` needs a `build` section"
                ))
                .at_value(at.key("action"))
                .help("add `build:` to the service, or use `restart`"),
            );
        }
        out.push(WatchRule {
            path: normalize_path(&c.ctx.root.join(&r.path)),
            action,
            target: r
                .target
                .clone()
                .map(|t| t.trim_end_matches('/').to_string()),
            ignore: r.ignore.clone(),
        });
    }
    out
}

pub(super) fn watch(
    c: &mut Checker<'_>,
    raw: Option<&RawWatch>,
    path: &KeyPath,
    name: &str,
    kind: &Option<ServiceKind>,
) -> Option<Watch> {
    let workdir = match kind {
        Some(ServiceKind::Process { working_dir, .. }) => working_dir.clone(),
        Some(ServiceKind::Container { .. }) => {
            if matches!(raw, Some(RawWatch::Spec(_)) | Some(RawWatch::Enabled(true))) {
                c.err(
                    Diagnostic::new(format!(
                        "`watch` is for native processes, but `{name}` is a container"
                    ))
                    .at(path.clone())
                    .help("remove `watch`; containers are recreated when their config changes"),
                );
            }
            return None;
        }
        None => return None,
    };
    let spec = match raw {
        Some(RawWatch::Enabled(false)) => return None,
        Some(RawWatch::Enabled(true)) | None => RawWatchSpec::default(),
        Some(RawWatch::Spec(s)) => s.clone(),
    };
    let paths = match &spec.paths {
        Some(ps) if ps.is_empty() => {
            c.err(
                Diagnostic::new("`watch.paths` is empty")
                    .at(path.key("paths"))
                    .help(
                        "list the folders to watch, or write `watch: false` to turn watching off",
                    ),
            );
            return None;
        }
        Some(ps) => ps
            .iter()
            .map(|p| normalize_path(&workdir.join(p)))
            .collect(),
        None => vec![workdir],
    };
    let debounce = spec
        .debounce
        .as_ref()
        .and_then(|s| duration(c, &s.0, &path.key("debounce")))
        .unwrap_or(DEFAULT_DEBOUNCE);
    Some(Watch {
        paths,
        ignore: spec.ignore,
        debounce,
    })
}
