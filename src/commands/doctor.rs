//! `devstack doctor`: checks this machine against the stack, each finding with what to do.
//! Read-only: it starts and changes nothing.

use std::os::unix::fs::PermissionsExt;

use super::Env;
use crate::config::ServiceName;
use crate::config::{ServiceKind, Stack};
use crate::docker::DockerRuntime;
use crate::error::Error;
use crate::program::{argv_of, find as find_program};
use crate::runtime::ContainerRuntime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Ok,
    Warn,
    Blocker,
}

#[derive(Debug, Clone)]
pub(super) struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warn,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

fn blocker(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Blocker,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// What each native service needs to start: its program, and a Python module run with `-m`.
async fn tools(stack: &Stack, path_var: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, svc) in &stack.services {
        let ServiceKind::Process {
            command,
            working_dir,
        } = &svc.kind
        else {
            continue;
        };
        if !working_dir.is_dir() {
            out.push(blocker(
                format!(
                    "`{name}`: working folder `{}` does not exist",
                    working_dir.display()
                ),
                "fix `working_dir` in the stack file, or check out the missing code",
            ));
            continue;
        }
        let argv = argv_of(command);
        let Some(program) = argv.first() else {
            continue;
        };
        let Some(found) = find_program(program, working_dir, path_var) else {
            let all: Vec<String> = stack.services.keys().cloned().collect();
            if crate::program::missing(stack, &all, path_var, true)
                .iter()
                .all(|m| m.service != *name)
            {
                // A task the service depends on creates it: `up` runs that first.
                out.push(ok(format!(
                    "`{name}`: `{program}` is created by a task it depends on, when `up` runs"
                )));
                continue;
            }
            let fix = if program.contains(".venv") {
                "create the virtualenv: `scripts/setup-example.sh` (or your project's setup step)"
                    .to_string()
            } else {
                format!("install `{program}` or put it on PATH")
            };
            out.push(blocker(
                format!("`{name}` needs `{program}`, which is not found"),
                fix,
            ));
            continue;
        };
        // `python -m celery ...`: the module must import.
        let module = argv
            .iter()
            .position(|a| a == "-m")
            .and_then(|i| argv.get(i + 1));
        if let (Some(module), true) = (module, program.contains("python")) {
            let check = tokio::process::Command::new(&found)
                .args(["-c", &format!("import {module}")])
                .current_dir(working_dir)
                .stdin(std::process::Stdio::null())
                .output();
            match tokio::time::timeout(std::time::Duration::from_secs(20), check).await {
                Ok(Ok(o)) if o.status.success() => {
                    out.push(ok(format!("`{name}`: {program} with module `{module}`")))
                }
                _ => out.push(blocker(
                    format!(
                        "`{name}` runs `{program} -m {module}`, but `{module}` does not import"
                    ),
                    "install the service's Python dependencies (e.g. `scripts/setup-example.sh`)",
                )),
            }
        } else {
            out.push(ok(format!(
                "`{name}`: `{program}` found at {}",
                found.display()
            )));
        }
    }
    out
}

fn dotenv(stack: &Stack) -> Vec<Finding> {
    let env = stack.root.join(".env");
    let example = stack.root.join(".env.example");
    match std::fs::metadata(&env) {
        Err(_) if example.exists() => {
            vec![warn(
                "no `.env` (the stack runs on its defaults)",
                "copy `.env.example` to `.env` and fill it in (`scripts/onboard.sh` does it)",
            )]
        }
        Err(_) => vec![ok("no `.env` and no `.env.example`: nothing to check")],
        Ok(m) if m.permissions().mode() & 0o004 != 0 => {
            vec![blocker(
                "`.env` holds secrets but everyone on this machine can read it",
                "chmod 600 .env",
            )]
        }
        Ok(_) => vec![ok("`.env` present, readable by you only")],
    }
}

fn inotify(stack: &Stack) -> Vec<Finding> {
    let specs: Vec<crate::watch::WatchSpec> = stack
        .services
        .iter()
        .filter_map(|(name, s)| {
            let w = s.watch.as_ref()?;
            Some(crate::watch::WatchSpec {
                service: ServiceName::from(name.clone()),
                paths: w.paths.clone(),
                ignore: w.ignore.clone(),
                debounce: w.debounce,
            })
        })
        .collect();
    if specs.is_empty() {
        return Vec::new();
    }
    // The polling watcher walks the same trees with the same rules and adds no inotify watch.
    let dirs = match crate::watch::Watcher::start_polling(specs) {
        Ok((w, _rx)) => w.watched_dirs().len(),
        Err(e) => {
            return vec![blocker(
                format!("cannot watch files: {e}"),
                "fix the `watch` paths in the stack file",
            )]
        }
    };
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if limit == 0 {
        vec![warn(
            format!("hot reload watches {dirs} folders; the inotify limit cannot be read"),
            "nothing to do unless reloads are missed",
        )]
    } else if dirs * 2 > limit {
        vec![warn(
            format!("hot reload watches {dirs} folders, near the inotify limit fs.inotify.max_user_watches = {limit}"),
            "raise it: `sudo sysctl fs.inotify.max_user_watches=524288` (devstack falls back to polling otherwise)",
        )]
    } else {
        vec![ok(format!(
            "hot reload watches {dirs} folders (inotify limit {limit})"
        ))]
    }
}

async fn engine(stack: &Stack, recorded: bool) -> Vec<Finding> {
    let containers: Vec<(&String, &String, bool)> = stack
        .services
        .iter()
        .filter_map(|(n, s)| match &s.kind {
            ServiceKind::Container { image, .. } => Some((n, image, s.options.build.is_some())),
            ServiceKind::Process { .. } => None,
        })
        .collect();
    if containers.is_empty() {
        return vec![ok("no container services: no Docker engine needed")];
    }
    // Its own connection, not `session::ContainerEngine`: doctor reports on the engine itself
    // (why it cannot be reached, its version, its builder), which only Docker's own API tells.
    let docker = match DockerRuntime::connect().await {
        Ok(d) => d,
        Err(e) => {
            return vec![blocker(e.to_string(), "start the engine (`sudo systemctl start docker`, or `sudo dockerd &`), or set DOCKER_HOST")]
        }
    };
    let mut out = Vec::new();
    match docker.version().await {
        Ok((v, api)) => out.push(ok(format!("Docker engine {v} (API {api})"))),
        Err(e) => out.push(warn(
            format!("Docker answers but its version is unknown: {e}"),
            "check the engine",
        )),
    }
    if containers.iter().any(|(_, _, built)| *built) {
        let (builder, why) = crate::docker::negotiated_builder().await;
        let name = match builder {
            crate::docker::Builder::Classic => "the classic builder",
            crate::docker::Builder::BuildKit => "BuildKit",
        };
        out.push(ok(format!("image builds use {name} ({why})")));
    }
    let mut seen = Vec::new();
    for (_, image, built) in containers {
        if seen.contains(&image) {
            continue;
        }
        seen.push(image);
        match docker.image_id(image).await {
            Ok(Some(_)) => out.push(ok(format!("image `{image}` present"))),
            // `up` builds it (from `build:`); only the Dockerfile's base images must be there.
            Ok(None) if built => out.push(ok(format!("image `{image}` is built by `up` (`build:`)"))),
            Ok(None) => out.push(blocker(
                format!("image `{image}` is missing"),
                "build the local images: `scripts/offline-images.sh` (no registry here), or `docker pull` it",
            )),
            Err(e) => out.push(warn(format!("cannot look up image `{image}`: {e}"), "check the engine")),
        }
    }
    // Ports held by this project's own running containers are fine.
    let ours: Vec<u16> = docker
        .list(&stack.name)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|c| c.status == crate::runtime::ContainerStatus::Running)
        .flat_map(|c| c.ports.iter().map(|p| p.host_port))
        .collect();
    out.extend(ports(stack, &ours, recorded));
    out
}

/// Whether each host port is free. `recorded`: the stack is an instance beside the main one,
/// whose ports were chosen and recorded by devstack: a taken one is chosen again at `up` (a
/// warning), not a blocker as a port written in the file is.
fn ports(stack: &Stack, ours: &[u16], recorded: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let own_processes = crate::process::state::StateFile::new(
        crate::project::state_dir(&stack.name).join("processes.json"),
    )
    .load();
    for (name, svc) in &stack.services {
        for p in &svc.ports {
            let Some(host) = p.host_port else { continue };
            if ours.contains(&host) {
                out.push(ok(format!("port {host} held by this project's `{name}`")));
            } else if crate::ports::is_free(crate::ports::check_addr(p.host_ip), host, p.protocol) {
                out.push(ok(format!("port {host} for `{name}` is free")));
            } else {
                let found = crate::ports::holder(host, p.protocol);
                // A process this project's devstack runs holds it: that is the stack, running.
                // SAFETY: getpgid only reads the process table.
                let group = found
                    .as_ref()
                    .map(|h| unsafe { libc::getpgid(h.pid as i32) } as u32);
                if let Some(e) = own_processes.iter().find(|e| Some(e.pgid) == group) {
                    out.push(ok(format!(
                        "port {host} held by this project's `{}` (pid {})",
                        e.service, e.pid
                    )));
                    continue;
                }
                let holder = found.map_or_else(
                    || "another program (or container)".to_string(),
                    |h| h.to_string(),
                );
                if recorded {
                    out.push(warn(
                        format!("recorded port {host} for `{name}` is taken by {holder}"),
                        "`up` chooses a free port for it and records that one (`devstack ports` shows it)",
                    ));
                    continue;
                }
                out.push(blocker(
                    format!("port {host} for `{name}` is taken by {holder}"),
                    "stop it, or publish the service on another port in a local overlay file (`-f`)",
                ));
            }
        }
    }
    out
}

pub(super) fn doctor(
    stack: &Stack,
    identity: &crate::project::instance::Identity,
    json: bool,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let recorded = identity.is_instance();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Engine(format!("cannot start the async runtime: {e}")))?;
    let path_var = (env.vars)("PATH");
    let mut findings = rt.block_on(async {
        let mut f = engine(stack, recorded).await;
        if !stack.services.values().any(|s| s.is_container()) {
            f.extend(ports(stack, &[], recorded));
        }
        f.extend(tools(stack, path_var.as_deref()).await);
        f
    });
    findings.extend(dotenv(stack));
    {
        // The watcher runs its debounce on tokio.
        let _runtime = rt.enter();
        findings.extend(inotify(stack));
    }
    let blockers = findings
        .iter()
        .filter(|f| f.level == Level::Blocker)
        .count();
    if json {
        let v: Vec<serde_json::Value> = findings
            .iter()
            .map(|f| serde_json::json!({"level": format!("{:?}", f.level).to_lowercase(), "what": f.what, "fix": f.fix}))
            .collect();
        writeln!(
            env.out,
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::Encode(e.to_string()))?
        )?;
    } else {
        for f in &findings {
            let mark = match f.level {
                Level::Ok => "ok     ",
                Level::Warn => "warn   ",
                Level::Blocker => "BLOCKER",
            };
            writeln!(env.out, "{mark} {}", f.what)?;
            if let Some(fix) = &f.fix {
                writeln!(env.out, "        → {fix}")?;
            }
        }
        let warns = findings.iter().filter(|f| f.level == Level::Warn).count();
        writeln!(
            env.out,
            "\n{} checks: {blockers} blocker(s), {warns} warning(s)",
            findings.len()
        )?;
    }
    if blockers > 0 {
        Err(Error::Doctor(blockers))
    } else {
        Ok(())
    }
}
