//! What a container shares with another one (Compose's `links`, `pid`, `volumes_from`, and
//! `runtime` beside them): checked against the other services, a service named resolved to its
//! container, and the implicit dependency Compose adds. Pure, like the rest of `validate`.

use indexmap::IndexMap;

use super::{list, Checker};
use crate::config::diagnostic::{did_you_mean, Diagnostic};
use crate::config::keypath::KeyPath;
use crate::config::model::{default_container_name, Condition, Service};
use crate::config::raw::RawService;

/// `pid` and `volumes_from` of one service, with services resolved to container names.
pub(super) struct Namespaces {
    pub pid: Option<String>,
    pub volumes_from: Vec<String>,
}

/// The container a service runs in: its `container_name`, else the default name.
fn container_of(project: &str, service: &str, raw: &IndexMap<String, RawService>) -> String {
    raw.get(service)
        .and_then(|rs| rs.container_name.clone())
        .unwrap_or_else(|| default_container_name(project, service))
}

fn unknown_service(
    c: &mut Checker<'_>,
    key: &str,
    name: &str,
    other: &str,
    names: &[&str],
    at: KeyPath,
) {
    c.err(
        Diagnostic::new(format!(
            "`{key}` of `{name}` names unknown service `{other}`"
        ))
        .at_value(at)
        .help(
            did_you_mean(other, names.iter().copied())
                .unwrap_or_else(|| format!("the services are {}", list(names))),
        ),
    );
}

/// Checks `pid` and `volumes_from` and resolves the services they name.
pub(super) fn namespaces(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    names: &[&str],
    project: &str,
    raw: &IndexMap<String, RawService>,
) -> Namespaces {
    let pid = rs.pid.as_ref().and_then(|p| {
        let at = path.key("pid");
        if p == "host" || p.starts_with("container:") {
            return Some(p.clone());
        }
        match p.strip_prefix("service:") {
            Some(other) if names.contains(&other) => {
                Some(format!("container:{}", container_of(project, other, raw)))
            }
            Some(other) => {
                unknown_service(c, "pid", name, other, names, at);
                None
            }
            None => {
                c.err(
                    Diagnostic::new(format!("unknown pid mode `{p}`"))
                        .at_value(at)
                        .help("use `host`, `service:NAME` or `container:NAME`"),
                );
                None
            }
        }
    });
    let mut volumes_from = Vec::new();
    for (i, v) in rs.volumes_from.iter().enumerate() {
        let at = path.key("volumes_from").index(i);
        let (source, mode) = match v.rsplit_once(':') {
            Some((s, m)) if m == "ro" || m == "rw" => (s, Some(m)),
            _ => (v.as_str(), None),
        };
        let container = match source.strip_prefix("container:") {
            Some(container) => container.to_string(),
            None if names.contains(&source) => container_of(project, source, raw),
            None => {
                unknown_service(c, "volumes_from", name, source, names, at);
                continue;
            }
        };
        volumes_from.push(match mode {
            Some(m) => format!("{container}:{m}"),
            None => container,
        });
    }
    Namespaces { pid, volumes_from }
}

/// The service a `links` entry names and the alias it gives it (the name itself without one).
fn link_parts(link: &str) -> (&str, &str) {
    link.split_once(':').unwrap_or((link, link))
}

/// Compose's `links`: each linked service is reachable under its alias on the project network,
/// and is started first. The services named by `pid: service:X` and `volumes_from` are started
/// first too, as in Compose.
pub(super) fn links(
    c: &mut Checker<'_>,
    raw: &IndexMap<String, RawService>,
    names: &[&str],
    services: &mut IndexMap<String, Service>,
) {
    let root = KeyPath::root().key("services");
    for (name, rs) in raw {
        let mut needs: Vec<String> = Vec::new();
        for (i, link) in rs.links.iter().enumerate() {
            let (target, alias) = link_parts(link);
            if !names.contains(&target) {
                let at = root.key(name.clone()).key("links").index(i);
                unknown_service(c, "links", name, target, names, at);
                continue;
            }
            if let Some(t) = services.get_mut(target) {
                if alias != target && !t.options.link_aliases.iter().any(|a| a == alias) {
                    t.options.link_aliases.push(alias.to_string());
                }
            }
            needs.push(target.to_string());
        }
        if let Some(other) = rs.pid.as_deref().and_then(|p| p.strip_prefix("service:")) {
            needs.push(other.to_string());
        }
        for v in &rs.volumes_from {
            let source = v.split(':').next().unwrap_or(v);
            if v.starts_with("container:") || !names.contains(&source) {
                continue;
            }
            needs.push(source.to_string());
        }
        let Some(svc) = services.get_mut(name) else {
            continue;
        };
        for dep in needs {
            if dep != *name {
                svc.depends_on.entry(dep).or_insert(Condition::Started);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_stack;

    /// compose-go's loader reads `links` and `pid` as written (compose-go loader/loader_test.go
    /// TestUnsupportedProperties, and TestFullExample with loader/full-example.yml's
    /// `links: [db, "db:database", redis]` and `pid: "host"`); `volumes_from` and `runtime` as
    /// the specification's services.md writes them (no compose-go test of their own);
    /// here each also gets its effect: aliases, resolved containers and the implicit dependency.
    #[test]
    fn links_pid_volumes_from_runtime_table() {
        let stack = test_stack(
            "name: demo\nservices:\n  db:\n    image: postgres\n    container_name: the-db\n  cache:\n    image: redis\n  web:\n    image: nginx\n    links: [\"db:database\", cache]\n    pid: \"service:db\"\n    volumes_from: [\"cache:ro\", \"container:other\"]\n    runtime: runc\n",
        );
        let db = &stack.services["db"].options;
        assert_eq!(db.link_aliases, vec!["database".to_string()]);
        assert!(stack.services["cache"].options.link_aliases.is_empty());
        let web = &stack.services["web"];
        assert_eq!(web.options.pid.as_deref(), Some("container:the-db"));
        assert_eq!(
            web.options.volumes_from,
            vec!["demo-cache:ro".to_string(), "other".to_string()]
        );
        assert_eq!(web.options.runtime.as_deref(), Some("runc"));
        let deps: Vec<&str> = web.depends_on.keys().map(String::as_str).collect();
        assert_eq!(deps, ["db", "cache"]);
    }
}
