//! Turns the stack file as written (`raw`) into the checked model, collecting every problem with
//! its key path. Pure: the environment and the stack's folder come in as arguments.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use super::diagnostic::{did_you_mean, Diagnostic};
use super::interpolate::port_refs;
use super::keypath::KeyPath;
use super::model::*;
use super::raw::*;

mod build;
mod dependencies;
mod develop;
mod healthcheck;
mod instances;
mod networks;
mod ports;
mod readiness;
mod resources;
mod seed;
mod service;
mod sharing;
mod top_level;
mod volumes;

use dependencies::*;
use develop::*;
use healthcheck::*;
use networks::*;
use ports::*;
use readiness::*;
use resources::*;
pub use seed::DEFAULT_SEED_TIMEOUT;
use seed::*;
use service::*;
pub use top_level::normalize_project;
use top_level::*;
use volumes::*;

pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

pub const PROBE_KINDS: &[&str] = &[
    "tcp",
    "http",
    "exec",
    "log",
    "healthcheck",
    "postgres",
    "redis",
    "kafka",
    "zookeeper",
    "qdrant",
];

/// What validation needs besides the file.
pub struct Context<'a> {
    /// The folder of the first stack file.
    pub root: &'a Path,
    /// `-p`, if given.
    pub project_override: Option<&'a str>,
    /// Looks up devstack's own environment (for `KEY:` entries without a value).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The first file is a Compose file (`compose*.y*ml`, `docker-compose*.y*ml`): a bare
    /// `depends_on` list means `started`, and named volumes must be declared.
    pub compose: bool,
    /// The active profiles (`--profile`, `COMPOSE_PROFILES`).
    pub profiles: &'a [String],
    /// Services whose problems the typed pass reported already: known by name, not checked again.
    pub broken: &'a [String],
    /// A top-level key had a problem (a missing `services` may be that key misspelt).
    pub top_level_errors: bool,
}

struct Checker<'a> {
    ctx: &'a Context<'a>,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }
}

pub fn validate(raw: &RawStack, ctx: &Context<'_>) -> Result<Stack, Vec<Diagnostic>> {
    let mut c = Checker {
        ctx,
        errors: Vec::new(),
    };
    let name = project_name(&mut c, raw.name.as_deref());
    let Some(raw_services) = services_given(&mut c, raw) else {
        return Err(c.errors);
    };

    let volumes = volume_defs(&mut c, raw, &name);
    let networks = network_defs(&mut c, raw, &name);
    let secrets = secret_defs(&mut c, raw);
    let top = TopLevel {
        project: &name,
        raw_services,
        volumes: &volumes,
        networks: &networks,
        secrets: &secrets,
    };
    let (names, disabled) = enabled_names(raw_services, ctx);
    let mut services = IndexMap::new();
    for (sname, rs) in raw_services {
        if disabled.iter().any(|(d, _)| d == sname) {
            continue;
        }
        let path = KeyPath::root().key("services").key(sname.clone());
        // A service with problems reported already is still checked for the others.
        if let Some(s) = service(&mut c, sname, rs, &path, &names, &disabled, &top) {
            if !ctx.broken.contains(sname) {
                services.insert(sname.clone(), s);
            }
        }
    }

    sharing::links(&mut c, raw_services, &names, &mut services);
    let k8s = super::k8s::validate(raw, &mut services, ctx.env, &mut c.errors);

    // Checks across services need every service parsed.
    if c.errors.is_empty() && ctx.broken.is_empty() {
        cross_checks(&mut c, raw, &services);
    }
    let test = test_settings(&mut c, raw, &services, &names);
    let instances = instances::instance_settings(&mut c, raw.instances.as_ref(), &services, &names);
    let logs = top_level::log_settings(&mut c, raw.logs.as_ref());

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(Stack {
        name,
        root: ctx.root.to_path_buf(),
        files: Vec::new(),
        inputs: Vec::new(),
        services,
        test,
        logs,
        secret_values: Vec::new(),
        k8s,
        volumes,
        networks,
        secrets,
        profiles: ctx.profiles.to_vec(),
        instances,
    })
}

/// The `services` map, or why there is none to check.
fn services_given<'r>(
    c: &mut Checker<'_>,
    raw: &'r RawStack,
) -> Option<&'r IndexMap<String, RawService>> {
    match &raw.services {
        // A misspelt `services` was reported by the typed pass already.
        None if c.ctx.top_level_errors => None,
        None => {
            c.err(Diagnostic::new("the stack has no `services`").help(
                "add a `services:` map with at least one service, e.g.\n  services:\n    redis:\n      image: redis:7",
            ));
            None
        }
        Some(s) if s.is_empty() && c.ctx.broken.is_empty() => {
            c.err(
                Diagnostic::new("`services` is empty")
                    .at(KeyPath::root().key("services"))
                    .help("add at least one service: a container (`image:`) or a native process (`command:`)"),
            );
            None
        }
        Some(s) => Some(s),
    }
}

/// The services that take part (no profiles, or one of them active), with the broken ones the
/// typed pass knows by name; and the others with their profiles.
fn enabled_names<'r>(
    raw_services: &'r IndexMap<String, RawService>,
    ctx: &'r Context<'_>,
) -> (Vec<&'r str>, Vec<(&'r str, &'r [String])>) {
    let enabled = |rs: &RawService| {
        rs.profiles.is_empty() || rs.profiles.iter().any(|p| ctx.profiles.contains(p))
    };
    let names = raw_services
        .iter()
        .filter(|(_, rs)| enabled(rs))
        .map(|(n, _)| n.as_str())
        .chain(
            ctx.broken
                .iter()
                .map(String::as_str)
                .filter(|b| !raw_services.contains_key(*b)),
        )
        .collect();
    let disabled = raw_services
        .iter()
        .filter(|(_, rs)| !enabled(rs))
        .map(|(n, rs)| (n.as_str(), rs.profiles.as_slice()))
        .collect();
    (names, disabled)
}

/// `test:`: its environment, whose port references must name published ports.
fn test_settings(
    c: &mut Checker<'_>,
    raw: &RawStack,
    services: &IndexMap<String, Service>,
    names: &[&str],
) -> TestSettings {
    let test = TestSettings {
        environment: raw
            .test
            .as_ref()
            .map(|t| environment(c, &t.environment))
            .unwrap_or_default(),
    };
    if c.errors.is_empty() {
        let tpath = KeyPath::root().key("test").key("environment");
        for (k, v) in &test.environment {
            check_refs(c, v, &tpath.key(k.clone()), services, names);
        }
    }
    test
}

/// What services may refer to at the top level.
struct TopLevel<'a> {
    project: &'a str,
    raw_services: &'a IndexMap<String, RawService>,
    volumes: &'a IndexMap<String, VolumeDef>,
    networks: &'a IndexMap<String, NetworkDef>,
    secrets: &'a IndexMap<String, SecretDef>,
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
pub fn normalize_path(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "`KEY` is a Compose key devstack does not support yet", pointing at the README's list.
pub fn unsupported(path: &KeyPath, key: &str) -> Diagnostic {
    // Keys refused for a reason of their own say why.
    let why = match key {
        "provider" => Some((
            "`provider` services are not supported: Compose hands them to a provider plugin, a program it runs instead of a container (Docker Model Runner for `type: model`), and devstack runs no plugins",
            "run what the provider sets up as a container or a native process (`image:` or `command:`)",
        )),
        "models" => Some((
            "`models` is not supported: Compose runs the models on Docker Model Runner, which devstack does not drive",
            "run the model server as a service of its own (an `image:` that serves the model) and pass its URL in `environment`",
        )),
        _ => None,
    };
    if let Some((message, help)) = why {
        return Diagnostic::new(message).at(path.clone()).help(help);
    }
    Diagnostic::new(format!(
        "`{key}` is a Compose key devstack does not support yet"
    ))
    .at(path.clone())
    .help(format!(
        "remove it, or see {COMPAT_LINK} for what devstack reads"
    ))
}

/// Where the README lists every Compose key.
pub const COMPAT_LINK: &str = "README.md#compose-compatibility";
