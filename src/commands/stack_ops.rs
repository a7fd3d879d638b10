//! `up`, `down` and `ps`: the commands that talk to the engine. Each builds a tokio runtime of
//! its own; the pure commands stay synchronous.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::mpsc;

use super::{selected_services, Env};
use crate::cli::{BuildArgs, DownArgs, PsArgs, UpArgs};
use crate::config::Stack;
use crate::docker::DockerRuntime;
use crate::engine::{self as orchestrator, DownRequest, UpError, UpOutcome, UpRequest};
use crate::error::Error;
use crate::logs::render::{local_utc_offset, Renderer};
use crate::logs::Format;
use crate::plan::{container_name, PortMode};
use crate::process::state::StateFile;
use crate::runtime::ContainerRuntime;

pub use crate::project::state_dir;

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Engine(format!("cannot start the async runtime: {e}")))
}

/// Ctrl-C, SIGTERM and SIGHUP as a stream of interrupts (through `tokio::signal`, on `rt`).
/// The kernel escalates: stop, kill, leave. Should even that not end the run, the fifth exits.
/// The sender injects the same interrupt (the terminal view's `q`).
fn interrupts(
    rt: &tokio::runtime::Runtime,
) -> (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::unbounded_channel();
    let inject = tx.clone();
    rt.block_on(async {
        let kinds = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ];
        let mut streams = Vec::new();
        for k in kinds {
            match signal(k) {
                Ok(s) => streams.push(s),
                Err(e) => tracing::warn!("cannot install a signal handler: {e}"),
            }
        }
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                let any = futures_util::future::select_all(
                    streams.iter_mut().map(|s| Box::pin(s.recv())),
                );
                if any.await.0.is_none() {
                    return;
                }
                count += 1;
                if count >= 5 {
                    // No destructor runs on this path: put the terminal back by hand.
                    crate::views::terminal::restore();
                    std::process::exit(crate::error::exit::INTERRUPTED);
                }
                // The receiver lives as long as the command; after that nobody needs the signal.
                let _ = tx.send(());
            }
        });
    });
    (inject, rx)
}

/// Service names are padded to the longest (within reason), `devstack` included.
pub(super) fn log_width(selected: &[String]) -> usize {
    selected
        .iter()
        .map(String::len)
        .chain(std::iter::once("devstack".len()))
        .max()
        .unwrap_or(8)
        .min(24)
}

pub(super) fn color_for(stdout: bool, env: &Env<'_>) -> bool {
    let no_color = (env.vars)("NO_COLOR").is_some_and(|v| !v.is_empty());
    let tty = if stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    tty && !no_color && !env.no_color
}

fn already_up(project: &str, pid: u32) -> Error {
    Error::AlreadyUp {
        project: project.to_string(),
        pid,
    }
}

pub fn up(stack: &Stack, args: &UpArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let selected = selected_services(stack, &args.services)?;
    let dir = state_dir(&stack.name);
    // Tasks run to completion before `--wait` returns: only long-running processes need a
    // supervisor.
    let has_processes = selected
        .iter()
        .any(|s| stack.services[s.as_str()].is_supervised_process());
    let detached_copy = (env.vars)(super::detach::DETACHED_ENV).is_some_and(|v| v == "1");
    if has_processes && !detached_copy && args.wait {
        // Processes need a supervisor that outlives this command: a background copy.
        let renderer = Renderer {
            width: log_width(&selected),
            color: color_for(false, env),
            utc_offset: local_utc_offset(),
        };
        if let Some(note) = crate::project::fallback_note(&stack.name) {
            writeln!(env.err, "warning: {note}")?;
        }
        return super::detach::up_detached(&stack.name, &dir, renderer, env);
    }
    if !detached_copy {
        if let Some(pid) = crate::project::lock::holder(&dir) {
            return Err(already_up(&stack.name, pid));
        }
    }
    // Held until `up` returns: one devstack per project.
    // Without a folder to hold it in (see `project::fallback_note`), the run goes on unlocked.
    let _lock = match crate::project::lock::acquire(&dir) {
        Ok(Ok(lock)) => Some(lock),
        Ok(Err(pid)) => return Err(already_up(&stack.name, pid)),
        Err(e) => {
            tracing::debug!("no project lock in `{}`: {e}", dir.display());
            None
        }
    };
    // With --wait the caller is a script: progress goes to stderr, stdout stays clean.
    let to_stdout = !args.wait;
    let renderer = Renderer {
        width: log_width(&selected),
        color: color_for(to_stdout, env),
        utc_offset: local_utc_offset(),
    };
    let out: Box<dyn Write + Send> = if to_stdout {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::io::stderr())
    };
    let format = if args.json {
        Format::Json
    } else {
        Format::Text(renderer)
    };
    let files = Some(dir.join("logs"));
    let (logs, writer) = crate::logs::mux::spawn_with(
        out,
        format,
        orchestrator::TAIL_LINES,
        files,
        crate::redact::Redactor::new(stack.secret_values.iter().cloned()),
    );
    let rt = runtime()?;
    if let Some(note) = crate::project::fallback_note(&stack.name) {
        rt.block_on(logs.publish(crate::event::StackEvent::warning(None, note)));
    }
    let (interrupt, mut signals) = interrupts(&rt);
    let needs_engine = selected
        .iter()
        .any(|s| stack.services[s.as_str()].is_container());
    let (handle, inbox) = crate::engine::channel(logs.fanout());
    // `up --wait` returns once ready: nobody would be left to serve a dashboard (with native
    // processes, the background copy serves it).
    let dashboard = if args.no_dashboard || args.wait {
        None
    } else {
        let info = crate::views::web::StackInfo::of(stack, &selected, args.free_ports);
        let started = rt.block_on(crate::views::web::start(
            handle.clone(),
            info,
            args.dashboard,
            crate::views::web::secrets(stack),
        ));
        match started {
            Ok(d) => {
                rt.block_on(logs.event("devstack", format!("dashboard: {}", d.url)));
                Some(d)
            }
            Err(e) if args.dashboard.is_some() => {
                return Err(Error::Usage {
                    message: format!(
                        "cannot serve the dashboard on 127.0.0.1:{}: {e}",
                        args.dashboard.unwrap_or_default()
                    ),
                    help: Some(
                        "choose another `--dashboard` port, or leave it out for a free one".into(),
                    ),
                });
            }
            Err(e) => {
                rt.block_on(logs.publish(crate::event::StackEvent::warning(
                    None,
                    format!("cannot serve the dashboard: {e}"),
                )));
                None
            }
        }
    };
    // The interactive view: on a terminal, in the foreground, for people (not --json, not CI).
    let interactive = !args.no_tty
        && !args.json
        && !args.wait
        && crate::views::terminal::wanted((env.vars)("CI"));
    let tty = if interactive {
        crate::views::terminal::TtyGuard::enter()
            .map_err(|e| tracing::warn!("no interactive view: cannot set the terminal up: {e}"))
            .ok()
    } else {
        None
    };
    let view = tty.as_ref().map(|_| {
        rt.spawn(crate::views::terminal::run(crate::views::terminal::Setup {
            handle: handle.clone(),
            logs: logs.clone(),
            services: selected.clone(),
            color: color_for(true, env),
            dashboard: dashboard.as_ref().map(|d| d.url.clone()),
            interrupt: interrupt.clone(),
        }))
    });
    let req = UpRequest {
        stack,
        selected: selected.clone(),
        wait: args.wait,
        port_mode: if args.free_ports {
            PortMode::AllFree
        } else {
            PortMode::AsWritten
        },
        watch: !args.no_watch,
        state: StateFile::new(dir.join("processes.json")),
        then: None,
        inbox: Some(inbox),
        build: crate::engine::BuildFlags {
            force: args.build,
            ..Default::default()
        },
    };
    let result = rt.block_on(async {
        let outcome = if needs_engine {
            let docker = DockerRuntime::connect().await?;
            serve_and_run(&docker, stack, handle.clone(), req, &logs, &mut signals).await
        } else {
            // Only native processes: no Docker engine needed.
            let rt = crate::runtime::NoEngine;
            serve_and_run(&rt, stack, handle.clone(), req, &logs, &mut signals).await
        };
        outcome.map_err(Error::from)
    });
    // The view ends with the engine; it holds a log handle, so it goes before the writer.
    if let Some(v) = view {
        let abort = v.abort_handle();
        rt.block_on(async {
            if tokio::time::timeout(std::time::Duration::from_secs(2), v)
                .await
                .is_err()
            {
                tracing::warn!("the terminal view did not end with the stack");
                abort.abort();
            }
        });
    }
    drop(handle);
    drop(logs);
    // The writer ends once every handle is gone; join so no line is lost.
    let _ = writer.join();
    drop(tty);
    match result? {
        UpOutcome::Ready { ports } => {
            let mut published: Vec<String> = Vec::new();
            for (service, p) in ports.all() {
                if selected.iter().any(|s| s == service) {
                    published.push(format!(
                        "{service} {}:{}->{}",
                        p.host_ip, p.host_port, p.container_port
                    ));
                }
            }
            writeln!(env.err, "ready: {}", selected.join(", "))?;
            for p in published {
                writeln!(env.err, "  {p}")?;
            }
            Ok(())
        }
        // The log already says everything stopped; the exit code says it was a signal.
        UpOutcome::Stopped => Err(Error::Stopped),
        // `up` runs no suite.
        UpOutcome::Finished(code) => Err(Error::Suite(code)),
    }
}

/// `devstack build`: the images of the named services (all with `build:` when none are named),
/// built even when their build hash is unchanged.
pub fn build(stack: &Stack, args: &BuildArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let names: Vec<String> = if args.services.is_empty() {
        stack
            .services
            .iter()
            .filter(|(_, s)| s.options.build.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        // Checks the names (with "did you mean"); only the named services are built.
        selected_services(stack, &args.services)?;
        args.services.clone()
    };
    let jobs = crate::build::jobs(stack, &names).map_err(Error::Engine)?;
    if jobs.is_empty() {
        writeln!(
            env.err,
            "nothing to build: no selected service has `build:`"
        )?;
        return Ok(());
    }
    let renderer = Renderer {
        width: log_width(&names),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    let format = if args.json {
        Format::Json
    } else {
        Format::Text(renderer)
    };
    let (logs, writer) = crate::logs::spawn(Box::new(std::io::stderr()), format, 1, None);
    let rt = runtime()?;
    let flags = crate::engine::BuildFlags {
        force: true,
        no_cache: args.no_cache,
        pull: args.pull,
    };
    let result = rt.block_on(async {
        let docker = DockerRuntime::connect().await?;
        let r = crate::engine::build::ensure_all(&docker, &jobs, flags, &logs).await;
        logs.flush().await;
        r.map_err(Error::from)
    });
    drop(logs);
    let _ = writer.join();
    result.map(|_| ())
}

/// Runs the engine with the control socket served beside it for as long as it runs.
async fn serve_and_run<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    handle: orchestrator::StackHandle,
    req: UpRequest<'_>,
    logs: &crate::logs::LogHandle,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, UpError> {
    let dir = state_dir(&stack.name);
    let socket = crate::control::client::socket_path(&dir);
    let server = match crate::control::server::Server::start(
        &socket,
        &stack.name,
        handle,
        rt.clone(),
        dir.join("logs"),
        logs.clone(),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            logs.publish(crate::event::StackEvent::warning(
                None,
                format!(
                    "cannot serve the control socket `{}`: {e}; `devstack restart`, `ps` and `wait` will not reach this run",
                    socket.display()
                ),
            ))
            .await;
            None
        }
    };
    let outcome = orchestrator::up(rt, req, logs.clone(), signals).await;
    if let Some(s) = server {
        s.close().await;
    }
    outcome
}

/// Prints rows under a header, columns padded to the widest cell (the last one unpadded).
pub(super) fn print_table<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    out: &mut dyn Write,
) -> Result<(), Error> {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(header[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

pub fn down(stack: &Stack, args: &DownArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let renderer = Renderer {
        width: log_width(&stack.services.keys().cloned().collect::<Vec<_>>()),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    let (logs, writer) =
        crate::logs::spawn(Box::new(std::io::stderr()), Format::Text(renderer), 1, None);
    let rt = runtime()?;
    // A running devstack (in the foreground elsewhere, or the background one of `up --wait`)
    // is asked through its control socket to stop its services itself, in order; nothing is
    // killed behind its back.
    if let Some(pid) = super::detach::stop_running(stack, &state_dir(&stack.name), env)? {
        writeln!(env.err, "stopped the running devstack (pid {pid})")?;
    }
    let result = rt.block_on(async {
        // Processes a killed devstack left behind go first (they depend on the containers).
        let state = StateFile::new(state_dir(&stack.name).join("processes.json"));
        for e in crate::process::state::reap_leftovers(&state).await {
            logs.event(
                &e.service,
                format!("ended pid {} left running by a previous run", e.pid),
            )
            .await;
        }
        if !stack.services.values().any(|s| s.is_container()) {
            return Ok(Default::default());
        }
        let docker = DockerRuntime::connect().await?;
        let req = DownRequest {
            stack,
            volumes: args.volumes,
            remove_orphans: args.remove_orphans,
        };
        orchestrator::down(&docker, req, &logs)
            .await
            .map_err(Error::from)
    });
    drop(logs);
    let _ = writer.join();
    let report = result?;
    if report.removed.is_empty() {
        writeln!(env.err, "nothing to remove for project `{}`", stack.name)?;
    }
    if !report.orphans_left.is_empty() {
        writeln!(
            env.err,
            "note: left {} container(s) of services no longer in the stack: {} (use `down --remove-orphans`)",
            report.orphans_left.len(),
            report.orphans_left.join(", ")
        )?;
    }
    if !args.volumes && stack.services.values().any(|s| s.is_container()) {
        // Named volumes hold the user's data; say they were kept.
        let rt2 = runtime()?;
        let kept = rt2.block_on(async {
            DockerRuntime::connect()
                .await?
                .list_volumes(&stack.name)
                .await
                .map_err(Error::from)
        })?;
        if !kept.is_empty() {
            writeln!(
                env.err,
                "kept volumes: {} (`down -v` removes them)",
                kept.iter()
                    .map(|(f, _)| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
    }
    Ok(())
}

fn uptime(started_at: Option<i64>) -> String {
    let Some(s) = started_at else {
        return "-".to_string();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let secs = (now - s).max(0) as u64;
    coarse(secs)
}

/// `1h 5m`, `3m 12s`, `8s`: the two largest units are enough for an uptime.
pub(super) fn coarse(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs))
        .to_string()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long ago a process started, from its start time in clock ticks since boot.
fn process_uptime(start_ticks: u64) -> String {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let up = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let secs = (up as u64).saturating_sub(start_ticks / hz);
    coarse(secs)
}

pub fn ps(stack: &Stack, args: &PsArgs, env: &mut Env<'_>) -> Result<(), Error> {
    // A running devstack knows the real states; ask it.
    if let Some(rows) = super::control::live_ps(stack)? {
        return super::control::print_live_ps(&rows, args.json, env);
    }
    let rt = runtime()?;
    // A stack of native processes only needs no engine.
    let containers = if stack.services.values().any(|s| s.is_container()) {
        rt.block_on(async {
            DockerRuntime::connect()
                .await?
                .list(&stack.name)
                .await
                .map_err(Error::from)
        })?
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    let processes = StateFile::new(state_dir(&stack.name).join("processes.json")).load();
    for (name, svc) in &stack.services {
        if !svc.is_container() {
            let running = processes
                .iter()
                .find(|e| &e.service == name && crate::process::group_alive(e.pgid));
            let ports: Vec<String> = svc
                .ports
                .iter()
                .map(|p| format!("{}:{}", p.host_ip, p.container_port))
                .collect();
            rows.push(json!({
                "service": name,
                "kind": svc.kind_name(),
                "pid": running.map(|e| e.pid),
                "state": if running.is_some() { "running" } else { "not running" },
                "exit_code": Option::<i64>::None,
                "ports": if running.is_some() { ports } else { Vec::new() },
                "health": Option::<String>::None,
                "uptime": running.map(|e| process_uptime(e.start_time)),
            }));
            continue;
        }
        let c = containers.iter().find(|c| &c.service == name);
        let ports: Vec<String> = c
            .map(|c| {
                c.ports
                    .iter()
                    .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port))
                    .collect()
            })
            .unwrap_or_default();
        rows.push(json!({
            "service": name,
            "kind": svc.kind_name(),
            "container": c.map_or_else(|| container_name(&stack.name, name), |c| c.name.clone()),
            "id": c.map(|c| c.id.clone()),
            "state": c.map_or("not created", |c| c.status.as_str()),
            "exit_code": c.and_then(|c| (c.status.as_str() == "exited").then_some(c.exit_code).flatten()),
            "ports": ports,
            "health": c.and_then(|c| c.health.clone()),
            "uptime": c.filter(|c| c.status.as_str() == "running").map(|c| uptime(c.started_at)),
        }));
    }
    for c in containers
        .iter()
        .filter(|c| !stack.services.contains_key(&c.service))
    {
        rows.push(json!({
            "service": format!("{} (orphan)", c.service),
            "kind": "container",
            "container": c.name,
            "id": c.id,
            "state": c.status.as_str(),
            "exit_code": c.exit_code,
            "ports": c.ports.iter().map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port)).collect::<Vec<_>>(),
            "health": c.health,
            "uptime": Option::<String>::None,
        }));
    }
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) if a.is_empty() => "-".to_string(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let mut state = cell(&r["state"]);
            if let Some(code) = r["exit_code"].as_i64() {
                state = format!("{state} ({code})");
            }
            [
                cell(&r["service"]),
                cell(&r["kind"]),
                state,
                cell(&r["ports"]),
                cell(&r["health"]),
                cell(&r["uptime"]),
            ]
        })
        .collect();
    let header = ["SERVICE", "KIND", "STATE", "PORTS", "HEALTH", "UPTIME"];
    print_table(&header, &table, env.out)
}

/// `devstack logs`: the per-service log files, merged by time; with `-f`, then the live stream
/// of the running devstack (the files, polled, when none runs).
pub fn logs(stack: &Stack, args: &crate::cli::LogsArgs, env: &mut Env<'_>) -> Result<(), Error> {
    use crate::control::protocol::{Reply, Request};
    use crate::logs::files::{path_of, select, Filter, Record};
    let dir = state_dir(&stack.name).join("logs");
    let names: Vec<String> = if args.services.is_empty() {
        let mut all: Vec<String> = stack.services.keys().cloned().collect();
        all.push("devstack".to_string());
        all
    } else {
        for n in &args.services {
            if !stack.services.contains_key(n) {
                return Err(Error::Usage {
                    message: format!("no service `{n}` in the stack"),
                    help: crate::config::diagnostic::did_you_mean(
                        n,
                        stack.services.keys().map(String::as_str),
                    ),
                });
            }
        }
        args.services.clone()
    };
    let grep = match &args.grep {
        Some(g) => Some(regex::Regex::new(g).map_err(|e| Error::Usage {
            message: format!("`--grep {g}` is not a regular expression: {e}"),
            help: None,
        })?),
        None => None,
    };
    let filter = Filter {
        since_ms: args
            .since
            .map(|d| crate::clock::unix_ms().saturating_sub(d.as_millis() as u64)),
        grep,
        tail: args.tail,
    };
    let renderer = Renderer {
        width: log_width(&names),
        color: color_for(true, env),
        utc_offset: local_utc_offset(),
    };
    let show = |r: &Record, out: &mut dyn Write| -> std::io::Result<()> {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())
        } else {
            writeln!(out, "{}", renderer.render(&r.to_line()))
        }
    };
    // Subscribed before the files are read, so no line falls between the two.
    let mut live = None;
    if args.follow {
        match crate::control::client::connect(&state_dir(&stack.name), &stack.name) {
            Ok(mut conn) => {
                conn.send(Request::Logs {
                    services: args.services.clone(),
                })?;
                live = Some(conn);
            }
            Err(Error::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let records = select(&dir, &names, &filter);
    if records.is_empty() && !args.follow {
        writeln!(
            env.err,
            "no logs yet for project `{}` (in `{}`)",
            stack.name,
            dir.display()
        )?;
        return Ok(());
    }
    for r in &records {
        show(r, env.out)?;
    }
    if !args.follow {
        return Ok(());
    }
    env.out.flush()?;
    if let Some(mut conn) = live {
        // What the files already showed is not shown twice.
        let shown_until = records.last().map_or(0, |r| r.t);
        let seen: std::collections::HashSet<(String, String)> = records
            .iter()
            .filter(|r| r.t == shown_until)
            .map(|r| (r.service.clone(), r.text.clone()))
            .collect();
        while let Some(reply) = conn.answer()? {
            let Reply::Record { record } = reply else {
                continue;
            };
            if record.t < shown_until
                || (record.t == shown_until
                    && seen.contains(&(record.service.clone(), record.text.clone())))
                || !filter.matches(&record)
                || (record.stream == "event" && record.text.is_empty())
            {
                continue;
            }
            show(&record, env.out)?;
            env.out.flush()?;
        }
        writeln!(
            env.err,
            "the devstack of project `{}` has stopped",
            stack.name
        )?;
        return Ok(());
    }
    // Follow the files: read what is appended, polling (a few per project; cheap).
    let mut offsets: Vec<(std::path::PathBuf, u64)> = names
        .iter()
        .map(|n| {
            let p = path_of(&dir, n);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, len)
        })
        .collect();
    loop {
        let mut fresh: Vec<Record> = Vec::new();
        for (p, off) in offsets.iter_mut() {
            let Ok(meta) = std::fs::metadata(&*p) else {
                continue;
            };
            if meta.len() < *off {
                *off = 0; // rotated
            }
            if meta.len() == *off {
                continue;
            }
            let Ok(bytes) = std::fs::read(&*p) else {
                continue;
            };
            let new = &bytes[*off as usize..];
            // Only whole lines; a half-written last line waits for the next round.
            let end = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            fresh.extend(
                String::from_utf8_lossy(&new[..end])
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Record>(l).ok())
                    .filter(|r| filter.matches(r)),
            );
            *off += end as u64;
        }
        fresh.sort_by_key(|r| r.t);
        for r in &fresh {
            show(r, env.out)?;
        }
        env.out.flush()?;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A short random suffix for throwaway project names (no two runs at once share one).
fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    let from_urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if from_urandom.is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `DEVSTACK_<SERVICE>_<PORT>` for every published port: `core-service` 5000 → `DEVSTACK_CORE_SERVICE_5000`.
pub fn port_variables(ports: &crate::plan::HostPorts) -> Vec<(String, String)> {
    ports
        .all()
        .map(|(service, p)| {
            let name: String = service
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            (
                format!("DEVSTACK_{name}_{}", p.container_port),
                p.host_port.to_string(),
            )
        })
        .collect()
}

/// `devstack test -- CMD`: a throwaway stack, the suite against it, teardown whatever happens.
pub fn test(stack: &Stack, args: &crate::cli::TestArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let mut throwaway = stack.clone();
    throwaway.name = format!("{}-test-{}", stack.name, random_suffix());
    let project = throwaway.name.clone();
    let selected = if args.services.is_empty() {
        let containers: Vec<String> = stack
            .services
            .iter()
            .filter(|(_, s)| s.is_container())
            .map(|(n, _)| n.clone())
            .collect();
        selected_services(stack, &containers)?
    } else {
        selected_services(stack, &args.services)?
    };
    writeln!(
        env.err,
        "devstack test: project `{project}`, services {}",
        selected.join(", ")
    )?;
    let renderer = Renderer {
        width: log_width(&selected),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    // The suite owns stdout; the stack's log goes to stderr.
    let (logs, writer) = crate::logs::mux::spawn_with(
        Box::new(std::io::stderr()),
        Format::Text(renderer),
        orchestrator::TAIL_LINES,
        None,
        crate::redact::Redactor::new(stack.secret_values.iter().cloned()),
    );
    let rt = runtime()?;
    let (_, mut signals) = interrupts(&rt);
    let state = state_dir(&project);
    let needs_engine = selected
        .iter()
        .any(|s| stack.services[s.as_str()].is_container());

    let (handle, inbox) = orchestrator::channel(logs.fanout());
    let command = args.command.clone();
    let test_env = stack.test.environment.clone();
    let then: orchestrator::Then = Box::new(move |ports| {
        Box::pin(async move {
            let mut vars: Vec<(String, String)> = test_env
                .iter()
                .map(|(k, v)| (k.clone(), ports.resolve(v)))
                .collect();
            vars.extend(port_variables(&ports));
            let (program, rest) = command.split_first().expect("clap requires a command");
            let status = tokio::process::Command::new(program)
                .args(rest)
                .envs(vars)
                // Aborted on Ctrl-C or SIGTERM: the suite must not outlive its stack.
                .kill_on_drop(true)
                .status()
                .await;
            match status {
                Ok(s) => s.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
                }),
                Err(e) => {
                    eprintln!("devstack test: cannot run `{program}`: {e}");
                    127
                }
            }
        })
    });
    let req = UpRequest {
        stack: &throwaway,
        selected: selected.clone(),
        wait: false,
        port_mode: PortMode::AllFree,
        watch: false,
        state: StateFile::new(state.join("processes.json")),
        then: Some(then),
        inbox: Some(inbox),
        build: Default::default(),
    };
    let keep = args.keep_on_failure;
    let result = rt.block_on(async {
        let map = Error::from;
        if !needs_engine {
            let rt = crate::runtime::NoEngine;
            return serve_and_run(&rt, &throwaway, handle, req, &logs, &mut signals)
                .await
                .map_err(map);
        }
        let docker = DockerRuntime::connect().await?;
        let outcome = serve_and_run(&docker, &throwaway, handle, req, &logs, &mut signals)
            .await
            .map_err(map);
        let failed = !matches!(outcome, Ok(UpOutcome::Finished(0)));
        if keep && failed && matches!(outcome, Ok(UpOutcome::Finished(_))) {
            logs.event(
                "devstack",
                format!("kept the stack for a look: `devstack -p {project} down -v` removes it"),
            )
            .await;
        } else {
            // Teardown happens whatever the outcome; its own failure is reported but does not
            // hide the suite's result.
            let down = DownRequest {
                stack: &throwaway,
                volumes: true,
                remove_orphans: true,
            };
            if let Err(e) = orchestrator::down(&docker, down, &logs).await {
                logs.event("devstack", format!("teardown failed: {e}"))
                    .await;
            }
        }
        outcome
    });
    drop(logs);
    let _ = writer.join();
    let _ = std::fs::remove_dir_all(&state);
    match result? {
        UpOutcome::Finished(0) => Ok(()),
        UpOutcome::Finished(code) => Err(Error::Suite(code)),
        UpOutcome::Ready { .. } | UpOutcome::Stopped => Err(Error::Interrupted),
    }
}
