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
        None => {
            c.err(Diagnostic::new("the stack has no `services`").help(
                "add a `services:` map with at least one service, e.g.\n  services:\n    redis:\n      image: redis:7",
            ));
            return Err(c.errors);
        }
        Some(s) if s.is_empty() => {
            c.err(
                Diagnostic::new("`services` is empty")
                    .at(root.key("services"))
                    .help("add at least one service: a container (`image:`) or a native process (`command:`)"),
            );
            return Err(c.errors);
        }
        Some(s) => s,
    };

    let names: Vec<&str> = raw_services.keys().map(String::as_str).collect();
    let mut services = IndexMap::new();
    for (sname, rs) in raw_services {
        let path = root.key("services").key(sname.clone());
        if let Some(s) = service(&mut c, sname, rs, &path, &names) {
            services.insert(sname.clone(), s);
        }
    }

    let k8s = super::k8s::validate(raw, &mut services, ctx.env, &mut c.errors);

    // Checks across services need every service parsed.
    if c.errors.is_empty() {
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
            services,
            test,
            secrets: Vec::new(),
            k8s,
        })
    } else {
        Err(c.errors)
    }
}

fn project_name(c: &mut Checker<'_>, written: Option<&str>) -> String {
    if let Some(p) = c.ctx.project_override {
        let n = normalize_project(p);
        if n.is_empty() {
            c.err(
                Diagnostic::new(format!("project name `{p}` has no usable characters"))
                    .help("use lowercase letters, digits, `-` and `_`"),
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

fn service(
    c: &mut Checker<'_>,
    name: &str,
    rs: &RawService,
    path: &KeyPath,
    names: &[&str],
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

    let kind = match &rs.image {
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
                .filter_map(|(i, v)| volume(c, v, &path.key("volumes").index(i), c.ctx.root))
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
                    if rs.command.is_none() {
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
    let is_container = rs.image.is_some();

    let env = environment(c, &rs.environment);
    let ports = ports(c, &rs.ports, &path.key("ports"), name, is_container);
    let (depends_on, restart_with) =
        depends_on(c, &rs.depends_on, &path.key("depends_on"), name, names);
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
    let ready = rs
        .ready
        .as_ref()
        .and_then(|r| readiness(c, r, &path.key("ready"), name, is_container, &env, &ports));
    let watch = watch(c, rs.watch.as_ref(), &path.key("watch"), name, &kind);

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
    })
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
fn normalize_path(p: &Path) -> PathBuf {
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
    if s.contains('-') {
        return Err(format!("port ranges (`{s}`) are not supported"));
    }
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
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
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
    raw: &[Scalar],
    path: &KeyPath,
    name: &str,
    is_container: bool,
) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let ppath = path.index(i);
        match parse_port_mapping(p.0.trim(), is_container) {
            Ok(m) => {
                if out
                    .iter()
                    .any(|o| o.container_port == m.container_port && o.protocol == m.protocol)
                {
                    c.err(
                        Diagnostic::new(format!(
                            "service `{name}` publishes port {} twice",
                            m.container_port
                        ))
                        .at_value(ppath)
                        .help("remove one of the two entries"),
                    );
                } else {
                    out.push(m);
                }
            }
            Err((message, help)) => c.err(Diagnostic::new(message).at_value(ppath).help(help)),
        }
    }
    out
}

fn volume(c: &mut Checker<'_>, spec: &str, path: &KeyPath, root: &Path) -> Option<Volume> {
    let bad = |msg: String| {
        Diagnostic::new(msg)
            .at_value(path.clone())
            .help("write `NAME:/container/path` for a named volume or `./host/path:/container/path` for a host folder, with an optional `:ro`")
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => {
            c.err(bad(format!("malformed volume `{spec}`")));
            return None;
        }
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => {
            c.err(bad(format!("unknown volume mode `{m}` in `{spec}`")));
            return None;
        }
    };
    if !target.starts_with('/') {
        c.err(bad(format!(
            "volume target `{target}` must be an absolute path inside the container"
        )));
        return None;
    }
    let target = target.to_string();
    if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
        let src = if let Some(home_rel) = source.strip_prefix("~/") {
            match (c.ctx.env)("HOME") {
                Some(h) => PathBuf::from(h).join(home_rel),
                None => {
                    c.err(bad(format!("`~` in volume `{spec}` but `HOME` is not set")));
                    return None;
                }
            }
        } else {
            root.join(source)
        };
        Some(Volume::Bind {
            source: normalize_path(&src),
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

fn depends_on(
    c: &mut Checker<'_>,
    raw: &DependsOn,
    path: &KeyPath,
    name: &str,
    names: &[&str],
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
            c.err(
                Diagnostic::new(format!("`ready` of service `{name}` has no probe"))
                    .at(path.clone())
                    .help(format!("give exactly one of {}", list(PROBE_KINDS))),
            );
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
                "8000-8010:8000-8010",
                true,
                "port ranges (`8000-8010`) are not supported",
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
            let (m, _help) = parse_port_mapping(spec, *container).expect_err(spec);
            assert_eq!(&m, msg, "{spec}");
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
