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
mod develop;
mod healthcheck;
mod networks;
mod ports;
mod readiness;
mod resources;
mod sharing;
mod top_level;
mod volumes;

use develop::*;
use healthcheck::*;
use networks::*;
use ports::*;
use readiness::*;
use resources::*;
pub use top_level::normalize_project;
use top_level::*;
use volumes::*;

pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_secs(1);
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
    let root = KeyPath::root();
    let name = project_name(&mut c, raw.name.as_deref());

    let raw_services = match &raw.services {
        // A misspelt `services` was reported by the typed pass already.
        None if ctx.top_level_errors => return Err(c.errors),
        None => {
            c.err(Diagnostic::new("the stack has no `services`").help(
                "add a `services:` map with at least one service, e.g.\n  services:\n    redis:\n      image: redis:7",
            ));
            return Err(c.errors);
        }
        Some(s) if s.is_empty() && ctx.broken.is_empty() => {
            c.err(
                Diagnostic::new("`services` is empty")
                    .at(root.key("services"))
                    .help("add at least one service: a container (`image:`) or a native process (`command:`)"),
            );
            return Err(c.errors);
        }
        Some(s) => s,
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

    // A service is enabled when it has no profiles or one of them is active.
    let enabled = |rs: &RawService| {
        rs.profiles.is_empty() || rs.profiles.iter().any(|p| ctx.profiles.contains(p))
    };
    let names: Vec<&str> = raw_services
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
    let disabled: Vec<(&str, &[String])> = raw_services
        .iter()
        .filter(|(_, rs)| !enabled(rs))
        .map(|(n, rs)| (n.as_str(), rs.profiles.as_slice()))
        .collect();
    let mut services = IndexMap::new();
    for (sname, rs) in raw_services {
        if !enabled(rs) {
            continue;
        }
        let path = root.key("services").key(sname.clone());
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

    let test = TestSettings {
        environment: raw
            .test
            .as_ref()
            .map(|t| environment(&mut c, &t.environment))
            .unwrap_or_default(),
    };
    if c.errors.is_empty() {
        let tpath = root.key("test").key("environment");
        for (k, v) in &test.environment {
            check_refs(&mut c, v, &tpath.key(k.clone()), &services, &names);
        }
    }

    if c.errors.is_empty() {
        Ok(Stack {
            name,
            root: ctx.root.to_path_buf(),
            files: Vec::new(),
            inputs: Vec::new(),
            services,
            test,
            secret_values: Vec::new(),
            k8s,
            volumes,
            networks,
            secrets,
            profiles: ctx.profiles.to_vec(),
        })
    } else {
        Err(c.errors)
    }
}

fn valid_service_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// What services may refer to at the top level.
struct TopLevel<'a> {
    project: &'a str,
    raw_services: &'a IndexMap<String, RawService>,
    volumes: &'a IndexMap<String, VolumeDef>,
    networks: &'a IndexMap<String, NetworkDef>,
    secrets: &'a IndexMap<String, SecretDef>,
}

fn service(
    c: &mut Checker<'_>,
    name: &str,
    rs: &RawService,
    path: &KeyPath,
    names: &[&str],
    disabled: &[(&str, &[String])],
    top: &TopLevel<'_>,
) -> Option<Service> {
    let before = c.errors.len();
    if !valid_service_name(name) {
        c.err(
            Diagnostic::new(format!("invalid service name `{name}`"))
                .at(path.clone())
                .help("service names use letters, digits, `-`, `_` and `.`, starting with a letter or digit"),
        );
    }

    let command = rs
        .command
        .as_ref()
        .and_then(|cmd| command(c, cmd, &path.key("command"), name));

    // `build` without `image` builds `<project>-<service>`, as Compose names it.
    let image = rs.image.clone().or_else(|| {
        rs.build
            .as_ref()
            .map(|_| format!("{}-{}", top.project, name))
    });
    let kind = match &image {
        Some(image) if image.trim().is_empty() => {
            c.err(
                Diagnostic::new(format!("service `{name}` has an empty `image`"))
                    .at_value(path.key("image"))
                    .help("name an image such as `postgres:15`, or remove `image` and give a `command` to run a native process"),
            );
            None
        }
        Some(image) => {
            let working_dir = rs.working_dir.clone();
            if let Some(w) = &working_dir {
                if !w.starts_with('/') {
                    c.err(
                        Diagnostic::new(format!("`working_dir` of container `{name}` must be an absolute path inside the container"))
                            .at_value(path.key("working_dir"))
                            .help(format!("write `/{}`", w.trim_start_matches("./"))),
                    );
                }
            }
            let volumes = rs
                .volumes
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    service_volume(c, v, &path.key("volumes").index(i), c.ctx.root, top)
                })
                .collect();
            Some(ServiceKind::Container {
                image: image.trim().to_string(),
                command,
                working_dir,
                volumes,
            })
        }
        None => {
            if !rs.volumes.is_empty() {
                c.err(
                    Diagnostic::new(format!("`volumes` are for containers, but `{name}` is a native process"))
                        .at(path.key("volumes"))
                        .help("a process uses host files directly; remove `volumes`, or give the service an `image`"),
                );
            }
            let working_dir = match &rs.working_dir {
                Some(w) => c.ctx.root.join(w),
                None => c.ctx.root.to_path_buf(),
            };
            match command {
                Some(command) => Some(ServiceKind::Process {
                    command,
                    working_dir: normalize_path(&working_dir),
                }),
                None => {
                    if rs.command.is_none() && !c.ctx.broken.iter().any(|b| b == name) {
                        c.err(
                            Diagnostic::new(format!("service `{name}` has neither `image` nor `command`"))
                                .at(path.clone())
                                .help("add `image:` to run a container, or `command:` to run a native process"),
                        );
                    }
                    None
                }
            }
        }
    };
    let is_container = image.is_some();

    let env = environment(c, &rs.environment);
    let ports = ports(c, &rs.ports, &path.key("ports"), name, is_container);
    let (depends_on, restart_with) = depends_on(
        c,
        &rs.depends_on,
        &path.key("depends_on"),
        name,
        names,
        disabled,
    );
    let options = if is_container {
        container_options(c, rs, path, name, names, top)
    } else {
        refuse_container_keys(c, rs, path, name);
        ContainerOptions::default()
    };
    let restart = match rs.restart {
        None | Some(RawRestart::No) => RestartPolicy::No,
        Some(RawRestart::OnFailure) => RestartPolicy::OnFailure,
        Some(RawRestart::Always) | Some(RawRestart::UnlessStopped) => RestartPolicy::Always,
    };
    let stop_signal = match &rs.stop_signal {
        None => Signal::TERM,
        Some(s) => match Signal::parse(s) {
            Some(sig) => sig,
            None => {
                let names: Vec<&str> = Signal::names().collect();
                c.err(
                    Diagnostic::new(format!("unknown stop signal `{s}`"))
                        .at_value(path.key("stop_signal"))
                        .help(
                            did_you_mean(&s.to_ascii_uppercase(), names.iter().copied())
                                .unwrap_or_else(|| format!("use one of {}", list(&names))),
                        ),
                );
                Signal::TERM
            }
        },
    };
    let stop_grace_period = rs
        .stop_grace_period
        .as_ref()
        .and_then(|s| duration(c, &s.0, &path.key("stop_grace_period")))
        .unwrap_or(DEFAULT_STOP_GRACE);
    let ready = match &rs.ready {
        Some(r) => readiness(c, r, &path.key("ready"), name, is_container, &env, &ports),
        // Compose's healthcheck is the readiness probe when `ready:` does not name one.
        None => match &options.healthcheck {
            Some(h) if !h.is_disabled() => Some(healthcheck_readiness(h)),
            Some(_) => None,
            // A Compose file says nothing about readiness: the image's protocol preset, when
            // the image is one devstack knows and the port is published (probes run from the
            // host).
            None if c.ctx.compose => match &kind {
                Some(ServiceKind::Container { image, .. }) => image_preset(image, &env, &ports),
                _ => None,
            },
            None => None,
        },
    };
    let task = task(c, rs, path, name, &kind);
    // A task runs once: it is not watched unless `watch` says so.
    let watch = if task.is_some() && rs.watch.is_none() {
        None
    } else {
        watch(c, rs.watch.as_ref(), &path.key("watch"), name, &kind)
    };
    if task.is_some() && restart == RestartPolicy::Always {
        c.err(
            Diagnostic::new(format!(
                "`{name}` is a task (it runs once), but `restart` would start it again forever"
            ))
            .at_value(path.key("restart"))
            .help("remove `restart`, or use `restart: on-failure` to retry a failed run"),
        );
    }

    if c.errors.len() > before {
        return None;
    }
    Some(Service {
        name: name.to_string(),
        kind: kind?,
        environment: env,
        ports,
        depends_on,
        restart_with,
        ready,
        watch,
        restart,
        stop_signal,
        stop_grace_period,
        k8s: Default::default(),
        profiles: rs.profiles.clone(),
        task,
        options,
    })
}

/// `task:`: paths against the service's working folder (the stack's folder for a container).
fn task(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    kind: &Option<ServiceKind>,
) -> Option<Task> {
    let spec = match rs.task.as_ref()? {
        RawTask::Enabled(false) => return None,
        RawTask::Enabled(true) => RawTaskSpec::default(),
        RawTask::Spec(s) => s.clone(),
    };
    let base = match kind {
        Some(ServiceKind::Process { working_dir, .. }) => working_dir.clone(),
        _ => c.ctx.root.to_path_buf(),
    };
    let at = path.key("task");
    let mut paths = |key: &str, list: &[String]| -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            if p.trim().is_empty() || p.contains(['*', '?', '[']) {
                c.err(
                    Diagnostic::new(format!(
                        "`task.{key}` of `{name}` holds `{p}`, which is not a path"
                    ))
                    .at_value(at.key(key).index(i))
                    .help("list files or folders (a folder counts with everything in it); patterns are not supported"),
                );
                continue;
            }
            out.push(normalize_path(&base.join(p)));
        }
        out
    };
    let sources = paths("sources", &spec.sources);
    let generates = paths("generates", &spec.generates);
    for (i, s) in spec.status.iter().enumerate() {
        if s.trim().is_empty() {
            c.err(
                Diagnostic::new(format!("`task.status` of `{name}` holds an empty command"))
                    .at_value(at.key("status").index(i))
                    .help("write a shell command that exits 0 when the task is up to date"),
            );
        }
    }
    Some(Task {
        sources,
        generates,
        status: spec.status,
    })
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

fn command(c: &mut Checker<'_>, cmd: &RawCommand, path: &KeyPath, name: &str) -> Option<Command> {
    match cmd {
        RawCommand::Shell(s) if s.trim().is_empty() => {
            c.err(
                Diagnostic::new(format!("service `{name}` has an empty `command`"))
                    .at_value(path.clone())
                    .help("give the command line to run, e.g. `command: npm run dev`"),
            );
            None
        }
        RawCommand::Argv(v) if v.is_empty() || v[0].trim().is_empty() => {
            c.err(
                Diagnostic::new(format!("service `{name}` has an empty `command`"))
                    .at_value(path.clone())
                    .help("the first item is the program to run, e.g. `command: [npm, run, dev]`"),
            );
            None
        }
        RawCommand::Shell(s) => Some(Command::Shell(s.trim().to_string())),
        RawCommand::Argv(v) => Some(Command::Argv(v.clone())),
    }
}

fn environment(c: &mut Checker<'_>, env: &Environment) -> IndexMap<String, String> {
    env.0
        .iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k.clone(), v.clone())),
            None => (c.ctx.env)(k).map(|v| (k.clone(), v)),
        })
        .collect()
}

fn duration(c: &mut Checker<'_>, s: &str, path: &KeyPath) -> Option<Duration> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) => Some(d),
        Err(_) => {
            let help = if s.trim().parse::<f64>().is_ok() {
                format!("add a unit: `{}s` or `{}ms`", s.trim(), s.trim())
            } else {
                "write a number with a unit, like `30s`, `500ms` or `2m`".to_string()
            };
            c.err(
                Diagnostic::new(format!("invalid duration `{s}`"))
                    .at_value(path.clone())
                    .help(help),
            );
            None
        }
    }
}

/// "`KEY` is a Compose key devstack does not support yet", pointing at the README's list.
pub fn unsupported(path: &KeyPath, key: &str) -> Diagnostic {
    // Keys refused for a reason of their own say why.
    let why = match key {
        "provider" => Some((
            "`provider` services are not supported: Compose hands them to a provider plugin (a program it runs instead of a container), and devstack runs no plugins",
            "run what the provider sets up as a container or a native process (`image:` or `command:`)",
        )),
        "models" => Some((
            "`models` is not supported: Compose runs the models on Docker Model Runner, which devstack does not drive",
            "run the model server as a service of its own (an `image:` that serves the model) and pass its URL in `environment`",
        )),
        "post_start" | "pre_stop" | "pre_start" => Some((
            "lifecycle hooks (`post_start`, `pre_stop`, `pre_start`) are not supported yet",
            "for now, run the command from the service's own entrypoint, or as a task service it `depends_on` with `condition: service_completed_successfully`",
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

/// The keys that only a container can use, as written on a native process.
fn container_keys_given(rs: &RawService) -> Vec<&'static str> {
    [
        ("container_name", rs.container_name.is_some()),
        ("hostname", rs.hostname.is_some()),
        ("domainname", rs.domainname.is_some()),
        ("user", rs.user.is_some()),
        ("entrypoint", rs.entrypoint.is_some()),
        ("labels", !rs.labels.0.is_empty()),
        ("extra_hosts", !rs.extra_hosts.0.is_empty()),
        ("cap_add", !rs.cap_add.is_empty()),
        ("cap_drop", !rs.cap_drop.is_empty()),
        ("shm_size", rs.shm_size.is_some()),
        ("tmpfs", rs.tmpfs.is_some()),
        ("ulimits", !rs.ulimits.is_empty()),
        ("sysctls", !rs.sysctls.0.is_empty()),
        ("init", rs.init.is_some()),
        ("stdin_open", rs.stdin_open.is_some()),
        ("tty", rs.tty.is_some()),
        ("privileged", rs.privileged.is_some()),
        ("read_only", rs.read_only.is_some()),
        ("platform", rs.platform.is_some()),
        ("network_mode", rs.network_mode.is_some()),
        ("networks", rs.networks.is_some()),
        ("secrets", !rs.secrets.is_empty()),
        ("deploy", rs.deploy.is_some()),
        ("healthcheck", rs.healthcheck.is_some()),
        ("expose", !rs.expose.is_empty()),
        ("mem_limit", rs.mem_limit.is_some()),
        ("cpus", rs.cpus.is_some()),
        ("pids_limit", rs.pids_limit.is_some()),
        ("pull_policy", rs.pull_policy.is_some()),
        ("develop", rs.develop.is_some()),
        ("links", !rs.links.is_empty()),
        ("pid", rs.pid.is_some()),
        ("volumes_from", !rs.volumes_from.is_empty()),
        ("runtime", rs.runtime.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

fn refuse_container_keys(c: &mut Checker<'_>, rs: &RawService, path: &KeyPath, name: &str) {
    for key in container_keys_given(rs) {
        c.err(
            Diagnostic::new(format!(
                "`{key}` is for containers, but `{name}` is a native process"
            ))
            .at(path.key(key))
            .help("remove it, or give the service an `image` (or a `build`)"),
        );
    }
}

fn container_options(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    names: &[&str],
    top: &TopLevel<'_>,
) -> ContainerOptions {
    let build = build::build(c, rs, path);
    let develop = develop_rules(c, rs, path, name);
    let pull_policy = rs.pull_policy.clone();
    check_pull_policy_and_name(c, rs, path, name);
    let shm_size = rs
        .shm_size
        .as_ref()
        .and_then(|s| bytes(c, &s.0, &path.key("shm_size")));
    let (limits, reservations) = resources(c, rs, path);

    let shared = sharing::namespaces(c, rs, path, name, names, top.project, top.raw_services);
    let networks = service_networks(c, rs, path, name, names, top);
    let secrets = service_secrets(c, rs, path, name, top);
    let expose = expose(c, rs, path);
    let healthcheck = rs
        .healthcheck
        .as_ref()
        .and_then(|h| healthcheck(c, h, &path.key("healthcheck")));
    ContainerOptions {
        build,
        container_name: rs.container_name.clone(),
        hostname: rs.hostname.clone(),
        domainname: rs.domainname.clone(),
        user: rs.user.as_ref().map(|u| u.0.clone()),
        entrypoint: rs
            .entrypoint
            .as_ref()
            .and_then(|e| command(c, e, &path.key("entrypoint"), name)),
        labels: rs.labels.0.clone(),
        extra_hosts: rs
            .extra_hosts
            .0
            .iter()
            .map(|(h, ip)| format!("{h}:{ip}"))
            .collect(),
        cap_add: rs.cap_add.clone(),
        cap_drop: rs.cap_drop.clone(),
        shm_size,
        tmpfs: rs.tmpfs.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
        ulimits: rs
            .ulimits
            .iter()
            .map(|(k, u)| {
                (
                    k.clone(),
                    Ulimit {
                        soft: u.soft,
                        hard: u.hard,
                    },
                )
            })
            .collect(),
        sysctls: rs.sysctls.0.clone(),
        init: rs.init,
        stdin_open: rs.stdin_open.unwrap_or(false),
        tty: rs.tty.unwrap_or(false),
        privileged: rs.privileged.unwrap_or(false),
        read_only: rs.read_only.unwrap_or(false),
        platform: rs.platform.clone(),
        network_mode: rs.network_mode.clone(),
        networks,
        secrets,
        limits,
        reservations,
        healthcheck,
        expose,
        pull_policy,
        develop,
        pid: shared.pid,
        volumes_from: shared.volumes_from,
        runtime: rs.runtime.clone(),
        link_aliases: Vec::new(),
    }
}

/// `pull_policy` is one Compose knows, `container_name` one the engine takes.
fn check_pull_policy_and_name(c: &mut Checker<'_>, rs: &RawService, path: &KeyPath, name: &str) {
    if let Some(p) = &rs.pull_policy {
        let known = ["always", "never", "missing", "if_not_present", "build"];
        let periodic = p == "daily" || p == "weekly" || p.starts_with("every_");
        if !known.contains(&p.as_str()) && !periodic {
            c.err(
                Diagnostic::new(format!("`pull_policy` of `{name}` is `{p}`"))
                    .at_value(path.key("pull_policy"))
                    .help("use `missing` (the default), `never`, `always` or `build`"),
            );
        }
    }
    if let Some(cn) = &rs.container_name {
        let mut chars = cn.chars();
        let ok = chars.next().is_some_and(|ch| ch.is_ascii_alphanumeric())
            && chars.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
        if !ok {
            c.err(
                Diagnostic::new(format!("invalid container name `{cn}`"))
                    .at_value(path.key("container_name"))
                    .help("use letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
            );
        }
    }
}

fn depends_on(
    c: &mut Checker<'_>,
    raw: &DependsOn,
    path: &KeyPath,
    name: &str,
    names: &[&str],
    disabled: &[(&str, &[String])],
) -> (IndexMap<String, Condition>, Vec<String>) {
    let mut out = IndexMap::new();
    let mut restart_with = Vec::new();
    for (i, entry) in raw.0.iter().enumerate() {
        let (dep, cond) = (&entry.name, &entry.condition);
        // The list form points at the item; the map form at the key.
        let dpath = if raw_is_list(raw) {
            path.index(i)
        } else {
            path.key(dep.clone())
        };
        if !names.contains(&dep.as_str()) {
            // `required: false` leaves out a dependency that is not part of this run.
            if !entry.required {
                continue;
            }
            if let Some((_, profiles)) = disabled.iter().find(|(n, _)| *n == dep.as_str()) {
                let profiles: Vec<&str> = profiles.iter().map(String::as_str).collect();
                c.err(
                    Diagnostic::new(format!(
                        "service `{name}` depends on `{dep}`, which only runs with profile {}",
                        list(&profiles)
                    ))
                    .at_value(dpath)
                    .help(format!(
                        "activate it with `--profile {}` (or `COMPOSE_PROFILES`), or mark the dependency `required: false`",
                        profiles[0]
                    )),
                );
                continue;
            }
            c.err(
                Diagnostic::new(format!(
                    "service `{name}` depends on unknown service `{dep}`"
                ))
                .at_value(dpath)
                .help(
                    did_you_mean(dep, names.iter().copied().filter(|n| *n != name))
                        .unwrap_or_else(|| format!("the services are {}", list(names))),
                ),
            );
            continue;
        }
        if out.contains_key(dep) {
            c.err(
                Diagnostic::new(format!(
                    "service `{name}` lists `{dep}` twice in `depends_on`"
                ))
                .at_value(dpath)
                .help("remove the second entry"),
            );
            continue;
        }
        let cond = match cond {
            // Compose starts a bare dependency without waiting; stack.yaml waits until ready.
            None if c.ctx.compose => Condition::Started,
            None | Some(RawCondition::Ready) => Condition::Ready,
            Some(RawCondition::Started) => Condition::Started,
            Some(RawCondition::Completed) => Condition::Completed,
        };
        out.insert(dep.clone(), cond);
        if entry.restart {
            restart_with.push(dep.clone());
        }
    }
    (out, restart_with)
}

fn raw_is_list(raw: &DependsOn) -> bool {
    raw.1 == DependsForm::List
}

fn command_strings(cmd: &Command) -> Vec<&str> {
    match cmd {
        Command::Shell(s) => vec![s.as_str()],
        Command::Argv(v) => v.iter().map(String::as_str).collect(),
    }
}

fn cross_checks(c: &mut Checker<'_>, raw: &RawStack, services: &IndexMap<String, Service>) {
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    let root = KeyPath::root().key("services");

    // Cycles, printed in order.
    let graph = crate::graph::Graph::from_services(services);
    if let Some(cycle) = graph.find_cycle() {
        let first = &cycle[0];
        let second = &cycle[1];
        let path = match raw.services.as_ref().and_then(|s| s.get(first)) {
            Some(rs) if raw_is_list(&rs.depends_on) => {
                let i = rs
                    .depends_on
                    .0
                    .iter()
                    .position(|d| &d.name == second)
                    .unwrap_or(0);
                root.key(first.clone()).key("depends_on").index(i)
            }
            _ => root
                .key(first.clone())
                .key("depends_on")
                .key(second.clone()),
        };
        let msg = if cycle.len() == 2 {
            format!("service `{first}` depends on itself")
        } else {
            format!("dependency cycle: {}", cycle.join(" → "))
        };
        c.err(Diagnostic::new(msg).at_value(path).help("remove one of these dependencies; services start in dependency order, so a cycle can never start"));
    }

    // The same host port published twice.
    let mut seen: HashMap<(u16, Protocol), (&str, usize)> = HashMap::new();
    for (sname, s) in services {
        for (i, p) in s.ports.iter().enumerate() {
            let Some(host) = p.host_port else { continue };
            match seen.get(&(host, p.protocol)) {
                Some((other, _)) => c.err(
                    Diagnostic::new(format!(
                        "host port {host} is published by both `{other}` and `{sname}`"
                    ))
                    .at_value(root.key(sname.clone()).key("ports").index(i))
                    .help(format!(
                        "give one of them another host port, e.g. `\"{}:{}\"`",
                        host.saturating_add(1),
                        p.container_port
                    )),
                ),
                None => {
                    seen.insert((host, p.protocol), (sname.as_str(), i));
                }
            }
        }
    }

    // `completed` waits for an exit 0 that an `always` service never gives.
    for (sname, s) in services {
        for (dep, cond) in &s.depends_on {
            if *cond == Condition::Completed {
                if let Some(d) = services.get(dep) {
                    if d.restart == RestartPolicy::Always {
                        c.err(
                            Diagnostic::new(format!(
                                "service `{sname}` waits for `{dep}` to complete, but `{dep}` has `restart: always` and never completes"
                            ))
                            .at_value(root.key(sname.clone()).key("depends_on").key(dep.clone()))
                            .help(format!("give `{dep}` `restart: on-failure` or `no`, or depend on it being `ready`")),
                        );
                    }
                }
            }
        }
    }

    // Port references, wherever a value can carry one.
    for (sname, s) in services {
        let spath = root.key(sname.clone());
        for (k, v) in &s.environment {
            check_refs(
                c,
                v,
                &spath.key("environment").key(k.clone()),
                services,
                &names,
            );
        }
        let cmd = match &s.kind {
            ServiceKind::Container { command, .. } => command.as_ref(),
            ServiceKind::Process { command, .. } => Some(command),
        };
        if let Some(cmd) = cmd {
            for v in command_strings(cmd) {
                check_refs(c, v, &spath.key("command"), services, &names);
            }
        }
        if let Some(r) = &s.ready {
            match &r.probe {
                Probe::Http(u) => {
                    check_refs(c, u, &spath.key("ready").key("http"), services, &names)
                }
                Probe::Exec(cmd) => {
                    for v in command_strings(cmd) {
                        check_refs(c, v, &spath.key("ready").key("exec"), services, &names);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        for (s, n) in [
            ("SIGTERM", 15),
            ("term", 15),
            ("SIGINT", 2),
            ("9", 9),
            ("sigquit", 3),
        ] {
            assert_eq!(Signal::parse(s).map(|x| x.number), Some(n), "{s}");
        }
        assert_eq!(Signal::parse("SIGTREM"), None);
    }
}
