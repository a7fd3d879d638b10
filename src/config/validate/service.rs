//! Service keys: what a service is (a container, a native process, a task), its command, environment, restart and stop settings, and the container options Compose gives it.

use super::*;

pub(super) fn valid_service_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub(super) fn service(
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
    let kind = service_kind(c, rs, path, name, image.as_deref(), command, top);
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
    let stop_signal = stop_signal(c, rs, path);
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
    let (task, watch) = task_and_watch(c, rs, path, name, &kind, restart);
    let seed = seed(c, rs, path, name, &kind);

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
        seed,
        options,
    })
}

/// `task:`: paths against the service's working folder (the stack's folder for a container).
pub(super) fn task(
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
    let sources = host_paths(
        c,
        &base,
        &spec.sources,
        &at.key("sources"),
        "task.sources",
        name,
    );
    let generates = host_paths(
        c,
        &base,
        &spec.generates,
        &at.key("generates"),
        "task.generates",
        name,
    );
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

/// Files and folders listed under `key` (`task.sources`, `seed.sources`), made absolute against
/// `base`; a pattern or an empty entry is an error.
pub(super) fn host_paths(
    c: &mut Checker<'_>,
    base: &Path,
    list: &[String],
    at: &KeyPath,
    key: &str,
    name: &str,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        if p.trim().is_empty() || p.contains(['*', '?', '[']) {
            c.err(
                Diagnostic::new(format!("`{key}` of `{name}` holds `{p}`, which is not a path"))
                    .at_value(at.index(i))
                    .help("list files or folders (a folder counts with everything in it); patterns are not supported"),
            );
            continue;
        }
        out.push(normalize_path(&base.join(p)));
    }
    out
}

pub(super) fn command(
    c: &mut Checker<'_>,
    cmd: &RawCommand,
    path: &KeyPath,
    name: &str,
) -> Option<Command> {
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

pub(super) fn environment(c: &mut Checker<'_>, env: &Environment) -> IndexMap<String, String> {
    env.0
        .iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k.clone(), v.clone())),
            None => (c.ctx.env)(k).map(|v| (k.clone(), v)),
        })
        .collect()
}

pub(super) fn duration(c: &mut Checker<'_>, s: &str, path: &KeyPath) -> Option<Duration> {
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

/// The keys that only a container can use, as written on a native process.
pub(super) fn container_keys_given(rs: &RawService) -> Vec<&'static str> {
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
        ("post_start", !rs.post_start.is_empty()),
        ("pre_stop", !rs.pre_stop.is_empty()),
        ("pre_start", !rs.pre_start.is_empty()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

pub(super) fn refuse_container_keys(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
) {
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

pub(super) fn container_options(
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
        post_start: hooks(c, &rs.post_start, &path.key("post_start"), name),
        pre_stop: hooks(c, &rs.pre_stop, &path.key("pre_stop"), name),
        pre_start: init_hooks(c, &rs.pre_start, &path.key("pre_start"), name),
    }
}

/// Lifecycle hooks: each a command, and a `working_dir` inside the container.
fn hooks(c: &mut Checker<'_>, raw: &[RawHook], path: &KeyPath, name: &str) -> Vec<Hook> {
    let mut out = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let hpath = path.index(i);
        hook_working_dir(c, h.working_dir.as_deref(), &hpath, name);
        let Some(command) = command(c, &h.command, &hpath.key("command"), name) else {
            continue;
        };
        out.push(Hook {
            command,
            user: h.user.clone(),
            privileged: h.privileged.unwrap_or(false),
            working_dir: h.working_dir.clone(),
            environment: environment(c, &h.environment),
        });
    }
    out
}

/// `pre_start` steps: an optional command and image, a `working_dir` inside the container.
fn init_hooks(
    c: &mut Checker<'_>,
    raw: &[RawInitHook],
    path: &KeyPath,
    name: &str,
) -> Vec<InitHook> {
    let mut out = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let hpath = path.index(i);
        hook_working_dir(c, h.working_dir.as_deref(), &hpath, name);
        if h.image.as_deref().is_some_and(|im| im.trim().is_empty()) {
            c.err(
                Diagnostic::new(format!(
                    "`image` of a `pre_start` step of `{name}` is empty"
                ))
                .at_value(hpath.key("image"))
                .help("name an image, or leave `image` out to use the service's"),
            );
        }
        let command = match &h.command {
            Some(raw) => match command(c, raw, &hpath.key("command"), name) {
                Some(cmd) => Some(cmd),
                None => continue,
            },
            None => None,
        };
        out.push(InitHook {
            image: h.image.clone(),
            command,
            user: h.user.clone(),
            privileged: h.privileged.unwrap_or(false),
            working_dir: h.working_dir.clone(),
            environment: environment(c, &h.environment),
        });
    }
    out
}

/// A hook's `working_dir` is a path inside the container: absolute.
fn hook_working_dir(c: &mut Checker<'_>, dir: Option<&str>, hpath: &KeyPath, name: &str) {
    if let Some(w) = dir.filter(|w| !w.starts_with('/')) {
        c.err(
            Diagnostic::new(format!(
                "`working_dir` of a hook of `{name}` must be an absolute path inside the container"
            ))
            .at_value(hpath.key("working_dir"))
            .help(format!("write `/{}`", w.trim_start_matches("./"))),
        );
    }
}

/// `pull_policy` is one Compose knows, `container_name` one the engine takes.
pub(super) fn check_pull_policy_and_name(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
) {
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

/// A container (with `image` or `build`), a native process (with `command` only), or none
/// (reported) when it is neither.
fn service_kind(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    image: Option<&str>,
    command: Option<Command>,
    top: &TopLevel<'_>,
) -> Option<ServiceKind> {
    match image {
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
    }
}

/// `stop_signal` by name or number; `SIGTERM` when absent.
fn stop_signal(c: &mut Checker<'_>, rs: &RawService, path: &KeyPath) -> Signal {
    match &rs.stop_signal {
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
    }
}

/// A task (it runs once) and what is watched: a task is not watched unless `watch` says so,
/// and is not restarted forever.
fn task_and_watch(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    kind: &Option<ServiceKind>,
    restart: RestartPolicy,
) -> (Option<Task>, Option<Watch>) {
    let task = task(c, rs, path, name, kind);
    // A task runs once: it is not watched unless `watch` says so.
    let watch = if task.is_some() && rs.watch.is_none() {
        None
    } else {
        watch(c, rs.watch.as_ref(), &path.key("watch"), name, kind)
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
    (task, watch)
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
