//! Volumes and mounts: a service's `volumes` (short and long forms, named, bind, anonymous, `tmpfs`) and the top-level `volumes`.

use super::*;

pub(super) fn service_volume(
    c: &mut Checker<'_>,
    v: &RawServiceVolume,
    path: &KeyPath,
    root: &Path,
    top: &TopLevel<'_>,
) -> Option<Volume> {
    let vol = match v {
        RawServiceVolume::Short(spec) => volume(c, spec, path, root)?,
        RawServiceVolume::Long(l) => long_volume(c, l, path, root)?,
    };
    if let Volume::Named { name, .. } = &vol {
        if c.ctx.compose && !top.volumes.contains_key(name) {
            c.err(
                Diagnostic::new(format!("service uses undeclared volume `{name}`"))
                    .at_value(path.clone())
                    .help(format!(
                        "declare it at the top level:\n  volumes:\n    {name}:"
                    )),
            );
            return None;
        }
    }
    Some(vol)
}

/// Volume options after the second `:` (`ro`, `rw`, `z`, `Z`, `nocopy`, propagation,
/// consistency), comma-separated. Returns whether the mount is read-only.
pub(super) fn volume_mode(mode: Option<&str>) -> bool {
    let mut read_only = false;
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            // SELinux relabelling, copy-on-create, mount propagation and macOS consistency
            // hints: accepted; the engine gets the mount without them.
            "z" | "Z" | "nocopy" | "shared" | "slave" | "private" | "rshared" | "rslave"
            | "rprivate" | "cached" | "delegated" | "consistent" => {}
            // Compose ignores an option it does not know (`name:/target:bogus`); so does devstack.
            _ => {}
        }
    }
    read_only
}

pub(super) fn volume(
    c: &mut Checker<'_>,
    spec: &str,
    path: &KeyPath,
    root: &Path,
) -> Option<Volume> {
    let bad = |msg: String| {
        Diagnostic::new(msg)
            .at_value(path.clone())
            .help("write `NAME:/container/path` for a named volume, `./host/path:/container/path` for a host folder or `/container/path` alone for an anonymous volume, with an optional `:ro`")
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] if t.starts_with('/') => {
            return Some(Volume::Anonymous {
                target: t.to_string(),
            })
        }
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => {
            c.err(bad(format!("malformed volume `{spec}`")));
            return None;
        }
    };
    let read_only = volume_mode(mode);
    mount(c, source, target, read_only, spec, path, root)
}

/// A mount from its source and target, as a bind mount when the source is a path.
pub(super) fn mount(
    c: &mut Checker<'_>,
    source: &str,
    target: &str,
    read_only: bool,
    spec: &str,
    path: &KeyPath,
    root: &Path,
) -> Option<Volume> {
    let bad = |msg: String| {
        Diagnostic::new(msg)
            .at_value(path.clone())
            .help("write `NAME:/container/path` for a named volume, `./host/path:/container/path` for a host folder or `/container/path` alone for an anonymous volume, with an optional `:ro`")
    };
    if !target.starts_with('/') {
        c.err(bad(format!(
            "volume target `{target}` must be an absolute path inside the container"
        )));
        return None;
    }
    let target = target.to_string();
    if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
        Some(Volume::Bind {
            source: host_path(c, source, spec, path, root)?,
            target,
            read_only,
        })
    } else {
        let ok = source
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphanumeric())
            && source
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
        if !ok {
            c.err(bad(format!("invalid volume name `{source}`")));
            return None;
        }
        Some(Volume::Named {
            name: source.to_string(),
            target,
            read_only,
        })
    }
}

/// A host path: `~/` from `HOME`, relative to the stack's folder, normalised.
pub(super) fn host_path(
    c: &mut Checker<'_>,
    source: &str,
    spec: &str,
    path: &KeyPath,
    root: &Path,
) -> Option<PathBuf> {
    let src = if let Some(home_rel) = source.strip_prefix("~/") {
        match (c.ctx.env)("HOME") {
            Some(h) => PathBuf::from(h).join(home_rel),
            None => {
                c.err(
                    Diagnostic::new(format!("`~` in `{spec}` but `HOME` is not set"))
                        .at_value(path.clone())
                        .help("write the path out, or set `HOME`"),
                );
                return None;
            }
        }
    } else {
        root.join(source)
    };
    Some(normalize_path(&src))
}

pub(super) fn long_volume(
    c: &mut Checker<'_>,
    l: &RawLongVolume,
    path: &KeyPath,
    root: &Path,
) -> Option<Volume> {
    let Some(target) = l.target.as_deref() else {
        c.err(
            Diagnostic::new("volume has no `target`")
                .at(path.clone())
                .help("give the path inside the container: `target: /data`"),
        );
        return None;
    };
    let kind = l.kind.as_deref().unwrap_or("volume");
    let shown = format!("{kind} volume at `{target}`");
    match kind {
        "tmpfs" => {
            if !target.starts_with('/') {
                c.err(
                    Diagnostic::new(format!(
                        "volume target `{target}` must be an absolute path inside the container"
                    ))
                    .at_value(path.key("target")),
                );
                return None;
            }
            let size = match l.tmpfs.as_ref().and_then(|t| t.size.as_ref()) {
                Some(sz) => Some(bytes(c, &sz.0, &path.key("tmpfs").key("size"))?),
                None => None,
            };
            Some(Volume::Tmpfs {
                target: target.to_string(),
                size,
            })
        }
        "bind" => {
            let Some(source) = l.source.as_deref() else {
                c.err(
                    Diagnostic::new("bind mount has no `source`")
                        .at(path.clone())
                        .help("give the host folder: `source: ./data`"),
                );
                return None;
            };
            let source = if source.starts_with(['.', '/', '~']) {
                source.to_string()
            } else {
                format!("./{source}")
            };
            mount(c, &source, target, l.read_only, &shown, path, root)
        }
        "volume" => match l.source.as_deref() {
            None | Some("") => Some(Volume::Anonymous {
                target: target.to_string(),
            }),
            Some(source) if source.starts_with(['.', '/', '~']) => {
                c.err(
                    Diagnostic::new(format!("volume source `{source}` is a path"))
                        .at_value(path.key("source"))
                        .help("use `type: bind` for a host folder, or name a volume"),
                );
                None
            }
            Some(source) => mount(c, source, target, l.read_only, &shown, path, root),
        },
        "npipe" | "cluster" | "image" => {
            c.err(unsupported(&path.key("type"), &format!("type: {kind}")));
            None
        }
        other => {
            c.err(
                Diagnostic::new(format!("unknown volume type `{other}`"))
                    .at_value(path.key("type"))
                    .help(
                        did_you_mean(other, ["bind", "volume", "tmpfs"])
                            .unwrap_or_else(|| "use `bind`, `volume` or `tmpfs`".to_string()),
                    ),
            );
            None
        }
    }
}

pub(super) fn volume_defs(
    c: &mut Checker<'_>,
    raw: &RawStack,
    project: &str,
) -> IndexMap<String, VolumeDef> {
    let mut out = IndexMap::new();
    for (key, def) in raw.volumes.iter().flatten() {
        let d = def.clone().unwrap_or_default();
        let external = d.external.unwrap_or(false);
        let name = super::networks::engine_name(key, d.name.as_ref(), external, project);
        out.insert(
            key.clone(),
            VolumeDef {
                name,
                driver: d.driver,
                driver_opts: d.driver_opts.into_iter().map(|(k, v)| (k, v.0)).collect(),
                external,
                labels: d.labels.0,
            },
        );
    }
    let _ = c;
    out
}
