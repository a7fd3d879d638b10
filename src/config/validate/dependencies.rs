//! `depends_on` and the checks across services that need every service parsed.

use super::*;

pub(super) fn depends_on(
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

pub(super) fn raw_is_list(raw: &DependsOn) -> bool {
    raw.1 == DependsForm::List
}

pub(super) fn command_strings(cmd: &Command) -> Vec<&str> {
    match cmd {
        Command::Shell(s) => vec![s.as_str()],
        Command::Argv(v) => v.iter().map(String::as_str).collect(),
    }
}

pub(super) fn cross_checks(
    c: &mut Checker<'_>,
    raw: &RawStack,
    services: &IndexMap<String, Service>,
) {
    let graph = crate::graph::Graph::from_services(services);
    if let Some(cycle) = graph.find_cycle() {
        cycle_error(c, raw, &cycle);
    }
    host_ports_once(c, services);
    completed_needs_an_end(c, services);
    port_refs_name_published_ports(c, services);
}

/// A dependency cycle, printed in order, at the first dependency of it.
fn cycle_error(c: &mut Checker<'_>, raw: &RawStack, cycle: &[String]) {
    let root = KeyPath::root().key("services");
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

/// The same host port published twice.
fn host_ports_once(c: &mut Checker<'_>, services: &IndexMap<String, Service>) {
    let root = KeyPath::root().key("services");
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
}

/// `completed` waits for an exit 0 that an `always` service never gives.
fn completed_needs_an_end(c: &mut Checker<'_>, services: &IndexMap<String, Service>) {
    let root = KeyPath::root().key("services");
    for (sname, s) in services {
        for (dep, cond) in &s.depends_on {
            let always = services
                .get(dep)
                .is_some_and(|d| d.restart == RestartPolicy::Always);
            if *cond == Condition::Completed && always {
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

/// Port references, wherever a value can carry one.
fn port_refs_name_published_ports(c: &mut Checker<'_>, services: &IndexMap<String, Service>) {
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    let root = KeyPath::root().key("services");
    for (sname, s) in services {
        let spath = root.key(sname.clone());
        let check = |c: &mut Checker<'_>, v: &str, path: KeyPath| {
            check_refs(c, v, &path, services, &names);
        };
        for (k, v) in &s.environment {
            check(c, v, spath.key("environment").key(k.clone()));
        }
        let cmd = match &s.kind {
            ServiceKind::Container { command, .. } => command.as_ref(),
            ServiceKind::Process { command, .. } => Some(command),
        };
        for v in cmd.map(command_strings).unwrap_or_default() {
            check(c, v, spath.key("command"));
        }
        match s.ready.as_ref().map(|r| &r.probe) {
            Some(Probe::Http(u)) => check(c, u, spath.key("ready").key("http")),
            Some(Probe::Exec(cmd)) => {
                for v in command_strings(cmd) {
                    check(c, v, spath.key("ready").key("exec"));
                }
            }
            _ => {}
        }
        for (i, step) in s.options.pre_start.iter().enumerate() {
            let hpath = spath.key("pre_start").index(i);
            for v in step
                .command
                .as_ref()
                .map(command_strings)
                .unwrap_or_default()
            {
                check(c, v, hpath.key("command"));
            }
            for (k, v) in &step.environment {
                check(c, v, hpath.key("environment").key(k.clone()));
            }
        }
    }
}
