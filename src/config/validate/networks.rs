//! Networks: the top-level `networks` and a service's `network_mode` and `networks`.

use super::*;

pub(super) fn network_defs(
    c: &mut Checker<'_>,
    raw: &RawStack,
    project: &str,
) -> IndexMap<String, NetworkDef> {
    let mut out = IndexMap::new();
    for (key, def) in raw.networks.iter().flatten() {
        let d = def.clone().unwrap_or_default();
        let external = d.external.unwrap_or(false);
        let name = engine_name(key, d.name.as_ref(), external, project);
        out.insert(
            key.clone(),
            NetworkDef {
                name,
                driver: d.driver,
                driver_opts: d.driver_opts.into_iter().map(|(k, v)| (k, v.0)).collect(),
                external,
                internal: d.internal.unwrap_or(false),
                attachable: d.attachable.unwrap_or(false),
                labels: d.labels.0,
            },
        );
    }
    let _ = c;
    out
}

/// The engine's name of a top-level volume or network: its `name:`, else the key itself when
/// external, else `<project>_<key>` (Compose's rule).
pub(super) fn engine_name(
    key: &str,
    name: Option<&String>,
    external: bool,
    project: &str,
) -> String {
    match (name, external) {
        (Some(n), _) => n.clone(),
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    }
}

/// A service's `network_mode` (checked, kept as written) and `networks` (each declared at the
/// top level).
pub(super) fn service_networks(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    names: &[&str],
    top: &TopLevel<'_>,
) -> IndexMap<String, ServiceNetwork> {
    if let Some(mode) = &rs.network_mode {
        if rs.networks.is_some() {
            c.err(
                Diagnostic::new(format!(
                    "service `{name}` sets both `network_mode` and `networks`"
                ))
                .at(path.key("network_mode"))
                .help("keep one: `network_mode` replaces the networks"),
            );
        }
        let other = mode.strip_prefix("service:").filter(|o| !names.contains(o));
        if let Some(other) = other {
            c.err(
                Diagnostic::new(format!(
                    "`network_mode` of `{name}` names unknown service `{other}`"
                ))
                .at_value(path.key("network_mode"))
                .help(
                    did_you_mean(other, names.iter().copied())
                        .unwrap_or_else(|| format!("the services are {}", list(names))),
                ),
            );
        } else if !(["bridge", "host", "none", "default"].contains(&mode.as_str())
            || mode.starts_with("service:")
            || mode.starts_with("container:"))
        {
            c.err(
                Diagnostic::new(format!("unknown network mode `{mode}`"))
                    .at_value(path.key("network_mode"))
                    .help("use `bridge`, `host`, `none`, `service:NAME` or `container:NAME`"),
            );
        }
    }
    let mut networks = IndexMap::new();
    if let Some(ns) = &rs.networks {
        for (n, sn) in &ns.0 {
            if n != "default" && !top.networks.contains_key(n) {
                let declared: Vec<&str> = top.networks.keys().map(String::as_str).collect();
                c.err(
                    Diagnostic::new(format!("service `{name}` joins undeclared network `{n}`"))
                        .at(path.key("networks").key(n.clone()))
                        .help(
                            did_you_mean(n, declared.iter().copied()).unwrap_or_else(|| {
                                format!("declare it at the top level:\n  networks:\n    {n}:")
                            }),
                        ),
                );
                continue;
            }
            networks.insert(
                n.clone(),
                ServiceNetwork {
                    aliases: sn.aliases.clone(),
                    ipv4_address: sn.ipv4_address.clone(),
                    ipv6_address: sn.ipv6_address.clone(),
                },
            );
        }
    }
    networks
}
