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

    let logs = log_settings(&mut c, raw.logs.as_ref());

    if c.errors.is_empty() {
        Ok(Stack {
            name,
            root: ctx.root.to_path_buf(),
            files: Vec::new(),
            services,
            test,
            logs,
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

/// `logs:`, checked: at least one run is kept.
fn log_settings(c: &mut Checker<'_>, raw: Option<&super::raw::RawLogs>) -> LogSettings {
    let mut s = LogSettings::default();
    if let Some(n) = raw.and_then(|r| r.keep_runs) {
        match usize::try_from(n) {
            Ok(n) if n >= 1 => s.keep_runs = n,
            _ => c.err(
                Diagnostic::new(format!("`logs.keep_runs` is {n}; at least one run is kept"))
                    .at_value(KeyPath::root().key("logs").key("keep_runs"))
                    .help("e.g. `logs: { keep_runs: 10 }` (the default); the current run counts"),
            ),
        }
    }
    s
}

fn project_name(c: &mut Checker<'_>, written: Option<&str>) -> String {
    // `-p ""` (or an empty `COMPOSE_PROJECT_NAME`) falls back as if not given, as in Compose.
    if let Some(p) = c.ctx.project_override.filter(|p| !p.is_empty()) {
        // A name given on purpose must already be normal; only the folder name is normalised.
        let n = normalize_project(p);
        if n != p {
            c.err(
                Diagnostic::new(format!("invalid project name `{p}`")).help(if n.is_empty() {
                    "use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                        .to_string()
                } else {
                    format!("use lowercase letters, digits, `-` and `_`, starting with a letter or digit: `{n}`")
                }),
            );
        }
        return n;
    }
    if let Some(w) = written {
        let n = normalize_project(w);
        if n.is_empty() || n != w {
            c.err(
                Diagnostic::new(format!("invalid project name `{w}`"))
                    .at_value(KeyPath::root().key("name"))
                    .help(if n.is_empty() {
                        "use lowercase letters, digits, `-` and `_`, starting with a letter or digit".to_string()
                    } else {
                        format!("use lowercase letters, digits, `-` and `_`: `{n}`")
                    }),
            );
        }
        return n;
    }
    let dir = c
        .ctx
        .root
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = normalize_project(&dir);
    if n.is_empty() {
        "devstack".to_string()
    } else {
        n
    }
}

/// Lowercase, only `[a-z0-9_-]`, starting with a letter or digit (Compose's rule).
pub fn normalize_project(s: &str) -> String {
    let lowered: String = s
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    lowered
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn valid_service_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// What services may refer to at the top level.
struct TopLevel<'a> {
    project: &'a str,
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

fn parse_port_number(s: &str) -> Result<u16, String> {
    let s = s.trim();
    match s.parse::<u64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("port `{n}` is out of range (1-65535)")),
        Err(_) => Err(format!("`{s}` is not a port number")),
    }
}

/// Parses one `ports` entry: `C`, `H:C`, `IP:H:C`, `IP::C`, each with an optional `/tcp|/udp`.
pub fn parse_port_mapping(s: &str, is_container: bool) -> Result<PortMapping, (String, String)> {
    let form_help = || {
        if is_container {
            "write `HOST:CONTAINER` (`\"5432:5432\"`), `IP:HOST:CONTAINER`, or just `CONTAINER` for a free host port".to_string()
        } else {
            "a native process publishes the port it listens on: write it alone, e.g. `\"5000\"`"
                .to_string()
        }
    };
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => {
            return Err((
                format!("unknown protocol `{other}` in port mapping `{s}`"),
                "use `/tcp` or `/udp`".to_string(),
            ))
        }
        None => (s, Protocol::Tcp),
    };
    // An IPv6 address is written in brackets: `[::1]:8080:80`.
    let (ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
        match stripped.split_once("]:") {
            Some((ip, rest)) => (Some(ip), rest),
            None => return Err((format!("malformed port mapping `{s}`"), form_help())),
        }
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
            _ => return Err((format!("malformed port mapping `{s}`"), form_help())),
        }
    };
    let host_ip: IpAddr = match ip {
        // An empty address (`":2283:2283"`) is the default one, loopback for devstack.
        None | Some("") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(ip) => ip.parse().map_err(|_| {
            (
                format!("invalid address `{ip}` in port mapping `{s}`"),
                "give an IP address such as `127.0.0.1` or `0.0.0.0`".to_string(),
            )
        })?,
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    if container.is_empty() || host.is_some_and(|h| h.is_empty() && ip.is_none()) {
        return Err((format!("malformed port mapping `{s}`"), form_help()));
    }
    let container_port = parse_port_number(container).map_err(|m| (m, form_help()))?;
    let host_port = match host {
        None | Some("") => None,
        Some(h) => Some(parse_port_number(h).map_err(|m| (m, form_help()))?),
    };
    if !is_container {
        if ip.is_some() || host_port.is_some_and(|h| h != container_port) {
            return Err((
                format!("a native process cannot map ports (`{s}`)"),
                form_help(),
            ));
        }
        return Ok(PortMapping {
            host_ip,
            host_port: Some(container_port),
            container_port,
            protocol,
        });
    }
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    })
}

fn ports(
    c: &mut Checker<'_>,
    raw: &[RawPort],
    path: &KeyPath,
    name: &str,
    is_container: bool,
) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let ppath = path.index(i);
        let parsed = match p {
            RawPort::Short(s) => parse_port_spec(s.trim(), is_container),
            RawPort::Long(l) => long_port(l).and_then(|s| parse_port_spec(&s, is_container)),
        };
        match parsed {
            Ok(ms) => {
                for m in ms {
                    if out
                        .iter()
                        .any(|o| o.container_port == m.container_port && o.protocol == m.protocol)
                    {
                        c.err(
                            Diagnostic::new(format!(
                                "service `{name}` publishes port {} twice",
                                m.container_port
                            ))
                            .at_value(ppath.clone())
                            .help("remove one of the two entries; an override file that changes a host port replaces the list with `ports: !override [...]`"),
                        );
                    } else {
                        out.push(m);
                    }
                }
            }
            Err((message, help)) => c.err(Diagnostic::new(message).at_value(ppath).help(help)),
        }
    }
    out
}

/// The long form `{target, published, host_ip, protocol}` as the short text it means.
fn long_port(l: &RawLongPort) -> Result<String, (String, String)> {
    let mut s = String::new();
    if let Some(ip) = &l.host_ip {
        if ip.contains(':') {
            s.push_str(&format!("[{ip}]:"));
        } else {
            s.push_str(&format!("{ip}:"));
        }
    }
    match &l.published {
        Some(p) => s.push_str(&format!("{}:", p.0)),
        None if l.host_ip.is_some() => s.push(':'),
        None => {}
    }
    s.push_str(&l.target.0);
    if let Some(proto) = &l.protocol {
        s.push_str(&format!("/{proto}"));
    }
    Ok(s)
}

/// A port or an inclusive range `A-B`.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let a = parse_port_number(a)?;
            let b = parse_port_number(b)?;
            if b < a {
                return Err(format!("port range `{s}` ends before it starts"));
            }
            Ok((a, b))
        }
        None => parse_port_number(s).map(|p| (p, p)),
    }
}

/// One `ports` entry, ranges expanded: `8000-8002:9000-9002` is three mappings.
pub fn parse_port_spec(s: &str, is_container: bool) -> Result<Vec<PortMapping>, (String, String)> {
    if !s.contains('-') {
        return parse_port_mapping(s, is_container).map(|m| vec![m]);
    }
    let range_help = || {
        "a range maps to a range of the same length: `\"8000-8010:8000-8010\"`, or `\"8000-8010\"` alone for free host ports".to_string()
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, format!("/{p}")),
        None => (s, String::new()),
    };
    let (prefix, rest) = if spec.starts_with('[') {
        match spec.find("]:") {
            Some(i) => (&spec[..i + 2], &spec[i + 2..]),
            None => return parse_port_mapping(s, is_container).map(|m| vec![m]),
        }
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        if parts.len() == 3 {
            let i = parts[0].len() + 1;
            (&spec[..i], &spec[i..])
        } else {
            ("", spec)
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    let (c0, c1) = parse_port_range(container).map_err(|m| (m, range_help()))?;
    let hosts = match host {
        None | Some("") => None,
        Some(h) => Some(parse_port_range(h).map_err(|m| (m, range_help()))?),
    };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 {
            return Err((
                format!("port ranges in `{s}` differ in length"),
                range_help(),
            ));
        }
    }
    (c0..=c1)
        .map(|cp| {
            let host = match (hosts, host) {
                (Some((h0, _)), _) => format!("{}:", h0 + (cp - c0)),
                (None, Some(_)) => ":".to_string(),
                (None, None) => String::new(),
            };
            parse_port_mapping(&format!("{prefix}{host}{cp}{proto}"), is_container)
        })
        .collect()
}

fn service_volume(
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
fn volume_mode(mode: Option<&str>) -> Result<bool, String> {
    let mut read_only = false;
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            // SELinux relabelling, copy-on-create, mount propagation and macOS consistency
            // hints: accepted; the engine gets the mount without them.
            "z" | "Z" | "nocopy" | "shared" | "slave" | "private" | "rshared" | "rslave"
            | "rprivate" | "cached" | "delegated" | "consistent" => {}
            other => return Err(other.to_string()),
        }
    }
    Ok(read_only)
}

fn volume(c: &mut Checker<'_>, spec: &str, path: &KeyPath, root: &Path) -> Option<Volume> {
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
    let read_only = match volume_mode(mode) {
        Ok(ro) => ro,
        Err(m) => {
            c.err(bad(format!("unknown volume mode `{m}` in `{spec}`")));
            return None;
        }
    };
    mount(c, source, target, read_only, spec, path, root)
}

/// A mount from its source and target, as a bind mount when the source is a path.
fn mount(
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
fn host_path(
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

fn long_volume(
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

/// "`KEY` is a Compose key devstack does not support yet", pointing at the README's list.
pub fn unsupported(path: &KeyPath, key: &str) -> Diagnostic {
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

/// A byte size as Compose writes it: `1024`, `64m`, `1.5g`, `512kb` (1024-based).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mul: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let v = n * mul as f64;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

fn bytes(c: &mut Checker<'_>, s: &str, path: &KeyPath) -> Option<u64> {
    let v = parse_bytes(s);
    if v.is_none() {
        c.err(
            Diagnostic::new(format!("invalid size `{s}`"))
                .at_value(path.clone())
                .help("write bytes with an optional unit: `64m`, `1g`, `512k`"),
        );
    }
    v
}

fn cpus(c: &mut Checker<'_>, s: &str, path: &KeyPath) -> Option<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Some(v),
        _ => {
            c.err(
                Diagnostic::new(format!("invalid CPU count `{s}`"))
                    .at_value(path.clone())
                    .help("write a number of CPUs, e.g. `0.5` or `2`"),
            );
            None
        }
    }
}

fn healthcheck(c: &mut Checker<'_>, h: &RawHealthcheck, path: &KeyPath) -> Option<Healthcheck> {
    let dur = |c: &mut Checker<'_>, v: &Option<Scalar>, key: &str| {
        v.as_ref().and_then(|s| duration(c, &s.0, &path.key(key)))
    };
    let test = if h.disable {
        Some(vec!["NONE".to_string()])
    } else {
        match &h.test {
            None => None,
            Some(RawCommand::Shell(s)) => Some(vec!["CMD-SHELL".to_string(), s.clone()]),
            Some(RawCommand::Argv(v)) => {
                match v.first().map(String::as_str) {
                    Some("CMD") | Some("CMD-SHELL") | Some("NONE") => {}
                    _ => {
                        c.err(
                            Diagnostic::new("a healthcheck `test` list starts with `CMD`, `CMD-SHELL` or `NONE`")
                                .at_value(path.key("test"))
                                .help("e.g. `test: [\"CMD\", \"pg_isready\"]` or `test: pg_isready -U user` (run by a shell)"),
                        );
                        return None;
                    }
                }
                Some(v.clone())
            }
        }
    };
    Some(Healthcheck {
        test,
        interval: dur(c, &h.interval, "interval"),
        timeout: dur(c, &h.timeout, "timeout"),
        retries: h.retries,
        start_period: dur(c, &h.start_period, "start_period"),
        start_interval: dur(c, &h.start_interval, "start_interval"),
    })
}

/// The protocol preset for a well-known image (`postgres:15` → a real login), if its port is
/// published.
fn image_preset(
    image: &str,
    env: &IndexMap<String, String>,
    ports: &[PortMapping],
) -> Option<Readiness> {
    let name = image.split('@').next().unwrap_or(image);
    let repo = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let repo = repo
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    let published = |port: u16| ports.iter().any(|p| p.container_port == port);
    let probe = match repo {
        "postgres" if published(5432) => {
            let user = env
                .get("POSTGRES_USER")
                .cloned()
                .unwrap_or_else(|| "postgres".into());
            Probe::Postgres {
                port: 5432,
                password: env.get("POSTGRES_PASSWORD").cloned().unwrap_or_default(),
                database: env
                    .get("POSTGRES_DB")
                    .cloned()
                    .unwrap_or_else(|| user.clone()),
                user,
            }
        }
        "redis" if published(6379) => Probe::Redis {
            port: 6379,
            password: None,
        },
        "qdrant/qdrant" if published(6333) => Probe::Qdrant { port: 6333 },
        "confluentinc/cp-kafka" | "bitnami/kafka" | "apache/kafka" if published(9092) => {
            Probe::Kafka { port: 9092 }
        }
        "confluentinc/cp-zookeeper" | "zookeeper" if published(2181) => {
            Probe::Zookeeper { port: 2181 }
        }
        _ => return None,
    };
    Some(Readiness {
        probe,
        timeout: DEFAULT_READY_TIMEOUT,
        interval: DEFAULT_READY_INTERVAL,
    })
}

/// The readiness a Compose healthcheck gives: the container's health, waited on at least as
/// long as the engine takes to call it unhealthy.
fn healthcheck_readiness(h: &Healthcheck) -> Readiness {
    // Docker's defaults: every 30s, 30s timeout, 3 retries.
    let interval = h.interval.unwrap_or(Duration::from_secs(30));
    let timeout = h.timeout.unwrap_or(Duration::from_secs(30));
    let retries = h.retries.unwrap_or(3);
    let engine = h.start_period.unwrap_or_default() + (interval + timeout) * retries;
    Readiness {
        probe: Probe::Healthcheck,
        timeout: DEFAULT_READY_TIMEOUT.max(engine),
        interval: DEFAULT_READY_INTERVAL,
    }
}

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
    let build = rs.build.as_ref().map(|b| {
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
    });
    let develop = develop_rules(c, rs, path, name);
    let pull_policy = rs.pull_policy.clone();
    if let Some(p) = &pull_policy {
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
    let shm_size = rs
        .shm_size
        .as_ref()
        .and_then(|s| bytes(c, &s.0, &path.key("shm_size")));
    let mut limits = Resources::default();
    let mut reservations = Resources::default();
    if let Some(res) = rs.deploy.as_ref().and_then(|d| d.resources.as_ref()) {
        let rpath = path.key("deploy").key("resources");
        if let Some(l) = &res.limits {
            let lpath = rpath.key("limits");
            limits.cpus = l
                .cpus
                .as_ref()
                .and_then(|s| cpus(c, &s.0, &lpath.key("cpus")));
            limits.memory = l
                .memory
                .as_ref()
                .and_then(|s| bytes(c, &s.0, &lpath.key("memory")));
            limits.pids = l.pids;
        }
        if let Some(r) = &res.reservations {
            let lpath = rpath.key("reservations");
            reservations.cpus = r
                .cpus
                .as_ref()
                .and_then(|s| cpus(c, &s.0, &lpath.key("cpus")));
            reservations.memory = r
                .memory
                .as_ref()
                .and_then(|s| bytes(c, &s.0, &lpath.key("memory")));
        }
    }
    // The older service-level forms; `deploy` wins when both are given, as in Compose.
    if limits.cpus.is_none() {
        limits.cpus = rs
            .cpus
            .as_ref()
            .and_then(|s| cpus(c, &s.0, &path.key("cpus")));
    }
    if limits.memory.is_none() {
        limits.memory = rs
            .mem_limit
            .as_ref()
            .and_then(|s| bytes(c, &s.0, &path.key("mem_limit")));
    }
    if limits.pids.is_none() {
        limits.pids = rs.pids_limit;
    }

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
    let mut secrets = Vec::new();
    for (i, ServiceSecret(s)) in rs.secrets.iter().enumerate() {
        let spath = path.key("secrets").index(i);
        if !top.secrets.contains_key(&s.source) {
            let declared: Vec<&str> = top.secrets.keys().map(String::as_str).collect();
            c.err(
                Diagnostic::new(format!(
                    "service `{name}` uses undeclared secret `{}`",
                    s.source
                ))
                .at_value(spath)
                .help(
                    did_you_mean(&s.source, declared.iter().copied()).unwrap_or_else(|| {
                        format!(
                        "declare it at the top level:\n  secrets:\n    {}:\n      file: ./{}.txt",
                        s.source, s.source
                    )
                    }),
                ),
            );
            continue;
        }
        let target = match &s.target {
            Some(t) if t.starts_with('/') => t.clone(),
            Some(t) => format!("/run/secrets/{t}"),
            None => format!("/run/secrets/{}", s.source),
        };
        secrets.push(SecretMount {
            source: s.source.clone(),
            target,
            file: match top.secrets.get(&s.source) {
                Some(SecretDef::File(f)) => Some(f.clone()),
                _ => None,
            },
        });
    }
    let mut expose = Vec::new();
    for (i, e) in rs.expose.iter().enumerate() {
        let (ports, proto) = match e.0.rsplit_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (e.0.as_str(), None),
        };
        let proto_ok = matches!(proto, None | Some("tcp") | Some("udp"));
        match parse_port_range(ports) {
            Ok(_) if proto_ok => expose.push(e.0.trim().to_string()),
            Ok(_) => c.err(
                Diagnostic::new(format!("unknown protocol in `expose` entry `{}`", e.0))
                    .at_value(path.key("expose").index(i))
                    .help("use `/tcp` or `/udp`"),
            ),
            Err(m) => c.err(
                Diagnostic::new(m)
                    .at_value(path.key("expose").index(i))
                    .help("write a port or a range: `\"3000\"`, `\"8000-8010/udp\"`"),
            ),
        }
    }
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
    }
}

/// `develop.watch`: paths against the stack's folder, known actions, a `target` for `sync`, a
/// `build` for `rebuild`.
fn develop_rules(
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

fn volume_defs(c: &mut Checker<'_>, raw: &RawStack, project: &str) -> IndexMap<String, VolumeDef> {
    let mut out = IndexMap::new();
    for (key, def) in raw.volumes.iter().flatten() {
        let d = def.clone().unwrap_or_default();
        let external = d.external.unwrap_or(false);
        let name = match (&d.name, external) {
            (Some(n), _) => n.clone(),
            (None, true) => key.clone(),
            (None, false) => format!("{project}_{key}"),
        };
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

fn network_defs(
    c: &mut Checker<'_>,
    raw: &RawStack,
    project: &str,
) -> IndexMap<String, NetworkDef> {
    let mut out = IndexMap::new();
    for (key, def) in raw.networks.iter().flatten() {
        let d = def.clone().unwrap_or_default();
        let external = d.external.unwrap_or(false);
        let name = match (&d.name, external) {
            (Some(n), _) => n.clone(),
            (None, true) => key.clone(),
            (None, false) => format!("{project}_{key}"),
        };
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

fn secret_defs(c: &mut Checker<'_>, raw: &RawStack) -> IndexMap<String, SecretDef> {
    let mut out = IndexMap::new();
    for (key, d) in raw.secrets.iter().flatten() {
        let path = KeyPath::root().key("secrets").key(key.clone());
        let def = match (&d.file, &d.environment) {
            (Some(f), None) => {
                let Some(p) = host_path(c, f, f, &path.key("file"), c.ctx.root) else {
                    continue;
                };
                SecretDef::File(p)
            }
            (None, Some(e)) => SecretDef::Environment(e.clone()),
            _ => {
                c.err(
                    Diagnostic::new(format!(
                        "secret `{key}` needs exactly one of `file` and `environment`"
                    ))
                    .at(path)
                    .help("e.g. `file: ./db_password.txt` or `environment: DB_PASSWORD`"),
                );
                continue;
            }
        };
        out.insert(key.clone(), def);
    }
    out
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

#[allow(clippy::too_many_arguments)]
fn readiness(
    c: &mut Checker<'_>,
    r: &RawReady,
    path: &KeyPath,
    name: &str,
    is_container: bool,
    env: &IndexMap<String, String>,
    ports: &[PortMapping],
) -> Option<Readiness> {
    let given: Vec<&str> = [
        ("tcp", r.tcp.is_some()),
        ("http", r.http.is_some()),
        ("exec", r.exec.is_some()),
        ("log", r.log.is_some()),
        ("healthcheck", r.healthcheck == Some(true)),
        ("postgres", r.postgres.is_some()),
        ("redis", r.redis.is_some()),
        ("kafka", r.kafka.is_some()),
        ("zookeeper", r.zookeeper.is_some()),
        ("qdrant", r.qdrant.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match given.len() {
        0 => {
            // A misspelt probe kind, reported already, leaves a `ready` without one.
            if !c.ctx.broken.iter().any(|b| b == name) {
                c.err(
                    Diagnostic::new(format!("`ready` of service `{name}` has no probe"))
                        .at(path.clone())
                        .help(format!("give exactly one of {}", list(PROBE_KINDS))),
                );
            }
            return None;
        }
        1 => {}
        _ => {
            c.err(
                Diagnostic::new(format!(
                    "`ready` of service `{name}` has more than one probe: {}",
                    list(&given)
                ))
                .at(path.key(given[1]))
                .help("keep exactly one probe kind"),
            );
            return None;
        }
    }
    let kind = given[0];
    let kpath = path.key(kind);
    let needs_published = |c: &mut Checker<'_>, port: u16, what: &str| {
        if !is_container && !ports.iter().any(|p| p.container_port == port) {
            c.err(
                Diagnostic::new(format!(
                    "the `{what}` probe of `{name}` checks port {port}, which is not in its `ports`"
                ))
                .at(kpath.clone())
                .help(format!("for a native process, `ports` lists the ports it listens on: add `\"{port}\"` to `ports`, or probe a port it lists")),
            );
        } else if is_container && !ports.iter().any(|p| p.container_port == port) {
            c.err(
                Diagnostic::new(format!(
                    "the `{what}` probe of `{name}` needs port {port} published, as probes run from the host"
                ))
                .at(kpath.clone())
                .help(format!("add `\"{port}:{port}\"` (or `\"{port}\"` for a free host port) to `ports`")),
            );
        }
    };
    let probe = match kind {
        "tcp" => {
            let raw = r.tcp.as_ref().map(|s| s.0.clone()).unwrap_or_default();
            match parse_port_number(&raw) {
                Ok(p) => {
                    needs_published(c, p, "tcp");
                    Probe::Tcp(p)
                }
                Err(m) => {
                    c.err(
                        Diagnostic::new(m)
                            .at_value(kpath.clone())
                            .help("`tcp:` takes the port the service listens on, e.g. `tcp: 5432`"),
                    );
                    return None;
                }
            }
        }
        "http" => {
            let url = r.http.clone().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                c.err(
                    Diagnostic::new(format!(
                        "`http` probe URL `{url}` must start with `http://`"
                    ))
                    .at_value(kpath.clone())
                    .help("e.g. `http: \"http://127.0.0.1:${port:web:8080}/health\"`"),
                );
                return None;
            }
            Probe::Http(url)
        }
        "exec" => Probe::Exec(command(c, r.exec.as_ref()?, &kpath, name)?),
        "log" => {
            let re = r.log.clone().unwrap_or_default();
            if let Err(e) = regex::Regex::new(&re) {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                c.err(
                    Diagnostic::new(format!("invalid `log` regex `{re}`: {last}"))
                        .at_value(kpath.clone())
                        .help("the pattern is a Rust regex matched against each output line"),
                );
                return None;
            }
            Probe::Log(re)
        }
        "healthcheck" => {
            if !is_container {
                c.err(
                    Diagnostic::new(format!("`healthcheck` readiness needs a container, but `{name}` is a native process"))
                        .at(kpath.clone())
                        .help("use `http`, `tcp`, `log` or `exec` for a process"),
                );
                return None;
            }
            Probe::Healthcheck
        }
        "postgres" => {
            let p = r.postgres.clone().unwrap_or_default();
            let port = p.port.unwrap_or(5432);
            needs_published(c, port, "postgres");
            let user = p
                .user
                .or_else(|| env.get("POSTGRES_USER").cloned())
                .unwrap_or_else(|| "postgres".into());
            let password = p
                .password
                .or_else(|| env.get("POSTGRES_PASSWORD").cloned())
                .unwrap_or_default();
            let database = p
                .database
                .or_else(|| env.get("POSTGRES_DB").cloned())
                .unwrap_or_else(|| user.clone());
            Probe::Postgres {
                port,
                user,
                password,
                database,
            }
        }
        "redis" => {
            let p = r.redis.clone().unwrap_or_default();
            let port = p.port.unwrap_or(6379);
            needs_published(c, port, "redis");
            Probe::Redis {
                port,
                password: p.password,
            }
        }
        "kafka" => {
            let port = r.kafka.as_ref().and_then(|p| p.port).unwrap_or(9092);
            needs_published(c, port, "kafka");
            Probe::Kafka { port }
        }
        "zookeeper" => {
            let port = r.zookeeper.as_ref().and_then(|p| p.port).unwrap_or(2181);
            needs_published(c, port, "zookeeper");
            Probe::Zookeeper { port }
        }
        _ => {
            let port = r.qdrant.as_ref().and_then(|p| p.port).unwrap_or(6333);
            needs_published(c, port, "qdrant");
            Probe::Qdrant { port }
        }
    };
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|s| duration(c, &s.0, &path.key("timeout")))
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    let interval = r
        .interval
        .as_ref()
        .and_then(|s| duration(c, &s.0, &path.key("interval")))
        .unwrap_or(DEFAULT_READY_INTERVAL);
    if timeout.is_zero() {
        c.err(
            Diagnostic::new("readiness `timeout` must be more than zero")
                .at_value(path.key("timeout"))
                .help("e.g. `timeout: 60s`"),
        );
    }
    Some(Readiness {
        probe,
        timeout,
        interval,
    })
}

fn watch(
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

/// Port references must name a service that publishes that port.
fn check_refs(
    c: &mut Checker<'_>,
    value: &str,
    path: &KeyPath,
    services: &IndexMap<String, Service>,
    names: &[&str],
) {
    for r in port_refs(value) {
        let shown = format!("${{port:{}:{}}}", r.service, r.port);
        match services.get(&r.service) {
            None if names.contains(&r.service.as_str()) => {} // invalid service, reported already
            None => c.err(
                Diagnostic::new(format!(
                    "port reference `{shown}` names unknown service `{}`",
                    r.service
                ))
                .at_value(path.clone())
                .help(
                    did_you_mean(&r.service, names.iter().copied())
                        .unwrap_or_else(|| format!("the services are {}", list(names))),
                ),
            ),
            Some(s) if s.port(r.port).is_none() => {
                let published: Vec<String> = s
                    .ports
                    .iter()
                    .map(|p| p.container_port.to_string())
                    .collect();
                let help = if published.is_empty() {
                    format!(
                        "`{}` publishes no ports; add `\"{}\"` to its `ports`",
                        r.service, r.port
                    )
                } else {
                    format!(
                        "`{}` publishes {}",
                        r.service,
                        list(&published.iter().map(String::as_str).collect::<Vec<_>>())
                    )
                };
                c.err(
                    Diagnostic::new(format!(
                        "port reference `{shown}`: service `{}` does not publish port {}",
                        r.service, r.port
                    ))
                    .at_value(path.clone())
                    .help(help),
                );
            }
            Some(_) => {}
        }
    }
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
    fn port_mappings_table() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        type Want = (IpAddr, Option<u16>, u16, Protocol);
        let ok: &[(&str, bool, Want)] = &[
            ("5432:5432", true, (lo, Some(5432), 5432, Protocol::Tcp)),
            ("15432:5432", true, (lo, Some(15432), 5432, Protocol::Tcp)),
            ("5432", true, (lo, None, 5432, Protocol::Tcp)),
            (
                "0.0.0.0:8080:80",
                true,
                (any, Some(8080), 80, Protocol::Tcp),
            ),
            ("127.0.0.1::80", true, (lo, None, 80, Protocol::Tcp)),
            ("53:53/udp", true, (lo, Some(53), 53, Protocol::Udp)),
            (
                "[::1]:8080:80",
                true,
                ("::1".parse().unwrap(), Some(8080), 80, Protocol::Tcp),
            ),
            ("5000", false, (lo, Some(5000), 5000, Protocol::Tcp)),
            ("5000:5000", false, (lo, Some(5000), 5000, Protocol::Tcp)),
        ];
        for (spec, container, (ip, host, cport, proto)) in ok {
            let m =
                parse_port_mapping(spec, *container).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
            assert_eq!(
                (m.host_ip, m.host_port, m.container_port, m.protocol),
                (*ip, *host, *cport, *proto),
                "{spec}"
            );
        }
        let bad: &[(&str, bool, &str)] = &[
            ("70000:80", true, "port `70000` is out of range (1-65535)"),
            ("0:80", true, "port `0` is out of range (1-65535)"),
            ("http:80", true, "`http` is not a port number"),
            ("1:2:3:4", true, "malformed port mapping `1:2:3:4`"),
            (
                "8000-8010:9000",
                true,
                "port ranges in `8000-8010:9000` differ in length",
            ),
            (
                "8010-8000:8010-8000",
                true,
                "port range `8010-8000` ends before it starts",
            ),
            (
                "80/sctp",
                true,
                "unknown protocol `sctp` in port mapping `80/sctp`",
            ),
            (
                "example.com:80:80",
                true,
                "invalid address `example.com` in port mapping `example.com:80:80`",
            ),
            (":80", true, "malformed port mapping `:80`"),
            (
                "8080:5000",
                false,
                "a native process cannot map ports (`8080:5000`)",
            ),
            (
                "127.0.0.1:5000:5000",
                false,
                "a native process cannot map ports (`127.0.0.1:5000:5000`)",
            ),
        ];
        for (spec, container, msg) in bad {
            let (m, _help) = parse_port_spec(spec, *container).expect_err(spec);
            assert_eq!(&m, msg, "{spec}");
        }
    }

    #[test]
    fn port_ranges_and_empty_addresses() {
        let shown = |spec: &str| -> Vec<String> {
            parse_port_spec(spec, true)
                .unwrap_or_else(|e| panic!("{spec}: {e:?}"))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            shown("8000-8002:9000-9002"),
            [
                "127.0.0.1:8000:9000",
                "127.0.0.1:8001:9001",
                "127.0.0.1:8002:9002"
            ]
        );
        assert_eq!(
            shown("8000-8001"),
            ["127.0.0.1:auto:8000", "127.0.0.1:auto:8001"]
        );
        assert_eq!(
            shown("0.0.0.0:53-54:53-54/udp"),
            ["0.0.0.0:53:53/udp", "0.0.0.0:54:54/udp"]
        );
        // Compose's empty host address is the default one: loopback for devstack.
        assert_eq!(shown(":2283:2283"), ["127.0.0.1:2283:2283"]);
        let long = |target: &str, published: Option<&str>, ip: Option<&str>| RawLongPort {
            target: Scalar(target.into()),
            published: published.map(|p| Scalar(p.into())),
            host_ip: ip.map(str::to_string),
            protocol: None,
            mode: None,
            name: None,
            app_protocol: None,
        };
        for (l, want) in [
            (long("80", Some("8080"), None), "8080:80"),
            (long("80", None, None), "80"),
            (long("80", None, Some("0.0.0.0")), "0.0.0.0::80"),
            (long("80", Some("8080"), Some("::1")), "[::1]:8080:80"),
        ] {
            assert_eq!(long_port(&l).unwrap(), want);
        }
    }

    #[test]
    fn byte_sizes_as_compose_writes_them() {
        for (s, want) in [
            ("1024", Some(1024)),
            ("64m", Some(64 << 20)),
            ("1gb", Some(1 << 30)),
            ("512K", Some(512 << 10)),
            ("1.5g", Some(3 << 29)),
            ("2 MB", Some(2 << 20)),
            ("lots", None),
            ("-1m", None),
        ] {
            assert_eq!(parse_bytes(s), want, "{s}");
        }
    }

    #[test]
    fn project_names_are_normalized() {
        for (input, want) in [
            ("ensurestudy", "ensurestudy"),
            ("My_App", "my_app"),
            ("-x y", "xy"),
            ("__", ""),
            ("a.b", "ab"),
            ("www.my.project", "wwwmyproject"),
            ("-my_project", "my_project"),
        ] {
            assert_eq!(normalize_project(input), want, "{input}");
        }
    }

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

#[cfg(test)]
mod log_settings_tests {
    use super::super::{load, LoadOptions, DEFAULT_FILE};

    fn try_load(yaml: &str) -> Result<crate::config::Stack, String> {
        let dir = tempfile::tempdir().expect("a temp folder");
        std::fs::write(dir.path().join(DEFAULT_FILE), yaml).expect("writing the stack file");
        let opts = LoadOptions {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        load(&opts, &|_| None)
            .map(|l| l.stack)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn keep_runs_defaults_to_ten_and_must_keep_one() {
        let svc = "services:\n  a: { command: [sleep, '1'] }\n";
        assert_eq!(try_load(svc).expect("valid").logs.keep_runs, 10);
        let three = try_load(&format!("{svc}logs: {{ keep_runs: 3 }}\n")).expect("valid");
        assert_eq!(three.logs.keep_runs, 3);
        let zero = try_load(&format!("{svc}logs: {{ keep_runs: 0 }}\n")).unwrap_err();
        assert!(zero.contains("`logs.keep_runs` is 0"), "{zero}");
        let typo = try_load(&format!("{svc}logs: {{ keep_run: 3 }}\n")).unwrap_err();
        assert!(typo.contains("keep_run"), "{typo}");
    }
}
