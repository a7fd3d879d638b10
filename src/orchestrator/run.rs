//! The `up` loop: preflight (ports, images), then services started as their dependencies allow,
//! each followed (logs) and probed until ready; `down` and the reverse-order stop. The order of
//! events is decided here and only here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use indexmap::IndexMap;
use regex::Regex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{Decision, Input, Scheduler};
use crate::config::{Probe, Service, ServiceKind, Stack, Volume};
use crate::graph::Graph;
use crate::logs::split::LineSplitter;
use crate::logs::{LogHandle, LogLine, Stream};
use crate::plan::{self, HostPorts, PortMode};
use crate::ports;
use crate::readiness::{self, NotReady};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, RuntimeError,
};

/// Lines of a failing service's output shown with the error.
pub const TAIL_LINES: usize = 20;

pub struct UpRequest<'a> {
    pub stack: &'a Stack,
    /// The services to start, dependencies included (see `Graph::closure`).
    pub selected: Vec<String>,
    /// Return once everything is ready, leaving it running.
    pub wait: bool,
    pub port_mode: PortMode,
    /// Restart processes when their files change.
    pub watch: bool,
    /// Where native processes are recorded, so a later run can end what a killed one left.
    pub state: crate::process::state::StateFile,
    /// Run this once ready, then stop (instead of waiting for Ctrl-C).
    pub then: Option<Then>,
}

#[derive(Debug)]
pub enum UpOutcome {
    /// `wait`: everything is ready and left running.
    Ready { ports: HostPorts },
    /// Foreground run ended by a signal after a clean stop.
    Stopped,
    /// The `then` task finished with this exit code, and the stack was stopped.
    Finished(i32),
}

/// Work to run once everything is ready, while devstack keeps supervising (`devstack test`'s
/// suite); the stack is stopped when it ends. Gets the host ports.
pub type Then = Box<dyn FnOnce(HostPorts) -> futures_util::future::BoxFuture<'static, i32> + Send>;

/// A host port that is taken by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    pub service: String,
    pub address: String,
    pub holder: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReadyReport {
    pub service: String,
    pub probe: String,
    pub reason: String,
    pub tail: Vec<String>,
}

#[derive(Debug)]
pub enum UpError {
    PortConflicts(Vec<PortConflict>),
    Runtime(RuntimeError),
    NotReady(Box<NotReadyReport>),
    /// Ctrl-C, SIGTERM or SIGHUP; what was started has been stopped.
    Interrupted,
}

impl From<RuntimeError> for UpError {
    fn from(e: RuntimeError) -> Self {
        UpError::Runtime(e)
    }
}

/// What this run started, to stop it again.
#[derive(Clone)]
enum Running {
    Container(String),
    Process(super::supervisor::SupervisorHandle),
}

enum Msg {
    Sched(Input),
    Created { service: String, id: String },
    Fatal(RuntimeError),
}

/// What the container engine had before this run, and the plan for this run.
struct Prepared {
    existing: Vec<ContainerInfo>,
    ports: HostPorts,
    specs: IndexMap<String, ContainerSpec>,
}

fn is_selected_container(stack: &Stack, selected: &[String], name: &str) -> bool {
    selected.iter().any(|s| s == name)
        && stack.services.get(name).is_some_and(Service::is_container)
}

/// Every fixed host port must be free or held by this project's own container of that service.
async fn port_preflight<R: ContainerRuntime>(
    rt: &R,
    req: &UpRequest<'_>,
    existing: &[ContainerInfo],
    ports: &HostPorts,
) -> Result<(), UpError> {
    let mut conflicts = Vec::new();
    let mut foreign: Option<Vec<(String, Vec<crate::runtime::Published>)>> = None;
    for (service, p) in ports.all() {
        if !req.selected.iter().any(|s| s == service) {
            continue;
        }
        let ours = existing.iter().any(|c| {
            c.service == service
                && c.status == ContainerStatus::Running
                && c.ports.iter().any(|e| e.host_port == p.host_port)
        });
        if ours || ports::is_free(ports::check_addr(p.host_ip), p.host_port, p.protocol) {
            continue;
        }
        if foreign.is_none() {
            foreign = Some(rt.list_publishing().await?);
        }
        let by_container = foreign
            .iter()
            .flatten()
            .find(|(_, ps)| ps.iter().any(|e| e.host_port == p.host_port))
            .map(|(name, _)| format!("container `{name}`"));
        let holder = by_container
            .or_else(|| ports::holder(p.host_port, p.protocol).map(|h| h.to_string()))
            .unwrap_or_else(|| "a process devstack cannot see (another user's?)".to_string());
        conflicts.push(PortConflict {
            service: service.to_string(),
            address: format!("{}:{}", p.host_ip, p.host_port),
            holder,
        });
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(UpError::PortConflicts(conflicts))
    }
}

async fn prepare<R: ContainerRuntime>(
    rt: &R,
    req: &UpRequest<'_>,
    logs: &LogHandle,
) -> Result<Prepared, UpError> {
    let stack = req.stack;
    let existing = rt.list(&stack.name).await?;
    let mut taken: HashSet<u16> = HashSet::new();
    let ports = plan::assign_ports(stack, &existing, req.port_mode, &mut |ip| {
        let p = ports::pick_free(ip, &taken)?;
        taken.insert(p);
        Ok(p)
    })
    .map_err(|e| {
        UpError::Runtime(RuntimeError::Engine(format!(
            "cannot find a free port: {e}"
        )))
    })?;
    port_preflight(rt, req, &existing, &ports).await?;

    // Images before anything is created, so a missing one leaves nothing behind.
    let mut image_ids: HashMap<String, String> = HashMap::new();
    for name in &req.selected {
        let Some(ServiceKind::Container { image, .. }) = stack.services.get(name).map(|s| &s.kind)
        else {
            continue;
        };
        if image_ids.contains_key(image) {
            continue;
        }
        let id = match rt.image_id(image).await? {
            Some(id) => id,
            None => {
                logs.event("devstack", format!("pulling `{image}`")).await;
                let (tx, mut rx) = mpsc::unbounded_channel();
                let pull = rt.pull(image, tx);
                let show = async {
                    let mut last = String::new();
                    while let Some(line) = rx.recv().await {
                        if line != last {
                            logs.event("devstack", format!("{image}: {line}")).await;
                            last = line;
                        }
                    }
                };
                let (result, ()) = tokio::join!(pull, show);
                result?;
                rt.image_id(image)
                    .await?
                    .ok_or_else(|| RuntimeError::ImageUnavailable {
                        image: image.clone(),
                        reason: "the pull finished but the image is not there".into(),
                    })?
            }
        };
        image_ids.insert(image.clone(), id);
    }

    let mut specs = IndexMap::new();
    for name in &req.selected {
        let svc = &stack.services[name];
        let ServiceKind::Container { image, .. } = &svc.kind else {
            continue;
        };
        if let Some(spec) = plan::container_spec(&stack.name, svc, &ports, &image_ids[image]) {
            specs.insert(name.clone(), spec);
        }
    }
    if !specs.is_empty() {
        rt.ensure_network(&stack.name, &plan::network_name(&stack.name))
            .await?;
        let mut volumes: Vec<&str> = Vec::new();
        for name in specs.keys() {
            if let ServiceKind::Container { volumes: vs, .. } = &stack.services[name].kind {
                for v in vs {
                    if let Volume::Named { name, .. } = v {
                        if !volumes.contains(&name.as_str()) {
                            volumes.push(name);
                        }
                    }
                }
            }
        }
        for v in volumes {
            rt.ensure_volume(&stack.name, v, &plan::volume_name(&stack.name, v))
                .await?;
        }
    }
    Ok(Prepared {
        existing,
        ports,
        specs,
    })
}

/// Brings the selected services up. With `wait`, returns once all are ready; otherwise stays in
/// the foreground until an interrupt, then stops them in reverse dependency order.
pub async fn up<R: ContainerRuntime>(
    rt: &R,
    mut req: UpRequest<'_>,
    logs: LogHandle,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, UpError> {
    let stack = req.stack;
    let prepared = tokio::select! {
        p = prepare(rt, &req, &logs) => p?,
        _ = interrupts.recv() => return Err(UpError::Interrupted),
    };
    let processes: Vec<&String> = req
        .selected
        .iter()
        .filter(|s| !is_selected_container(stack, &req.selected, s))
        .collect();
    if req.wait && !processes.is_empty() {
        return Err(UpError::Runtime(RuntimeError::Engine(format!(
            "`up --wait` cannot leave native processes running without devstack: {}; run `devstack up` in the foreground, or `up --wait` only the container services",
            processes.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        ))));
    }
    // What a previous run left behind (devstack killed with -9) is ended before anything starts.
    if !processes.is_empty() {
        for e in crate::process::state::reap_leftovers(&req.state).await {
            logs.event(
                &e.service,
                format!("ended pid {} left running by a previous run", e.pid),
            )
            .await;
        }
    }
    let mut watcher = None;
    let mut changes = if req.watch {
        let specs: Vec<crate::watch::WatchSpec> = processes
            .iter()
            .filter_map(|name| {
                let w = stack.services[name.as_str()].watch.as_ref()?;
                Some(crate::watch::WatchSpec {
                    service: name.to_string(),
                    paths: w.paths.clone(),
                    ignore: w.ignore.clone(),
                    debounce: w.debounce,
                })
            })
            .collect();
        if specs.is_empty() {
            None
        } else {
            match crate::watch::Watcher::start(specs) {
                Ok((w, rx)) => {
                    watcher = Some(w);
                    Some(rx)
                }
                Err(e) => {
                    return Err(UpError::Runtime(RuntimeError::Engine(format!(
                        "cannot watch files: {e}"
                    ))))
                }
            }
        }
    } else {
        None
    };

    let started_at = Instant::now();
    let cancel = CancellationToken::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut sched = Scheduler::new(stack, &req.selected);
    let mut ids: IndexMap<String, Running> = IndexMap::new();
    let (sup_tx, mut sup_rx) = mpsc::unbounded_channel::<Input>();
    let mut supervisors: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut decisions = sched.begin();
    let mut ready_reported = false;
    let mut then = req.then.take();
    let mut finished: Option<tokio::task::JoinHandle<i32>> = None;

    // One way out of the loop, whatever ends it: stop watching, cancel start-up work, stop what
    // runs (dependents first), wait for the supervisors, and let the log catch up.
    macro_rules! teardown {
        () => {{
            drop(watcher.take());
            cancel.cancel();
            drain(&mut tasks).await;
            stop_all(rt, stack, &req.selected, &ids, &logs, interrupts).await;
            for t in supervisors.drain(..) {
                let _ = t.await;
            }
            logs.flush().await;
        }};
    }

    loop {
        for d in std::mem::take(&mut decisions) {
            match d {
                Decision::Start(name) if !stack.services[&name].is_container() => {
                    let (handle, task) =
                        super::supervisor::spawn(super::supervisor::SupervisorSetup {
                            svc: stack.services[&name].clone(),
                            ports: prepared.ports.clone(),
                            logs: logs.clone(),
                            events: sup_tx.clone(),
                            state: req.state.clone(),
                            cancel: cancel.child_token(),
                        });
                    ids.insert(name, Running::Process(handle));
                    supervisors.push(task);
                }
                Decision::Start(name) => {
                    let spec = prepared.specs[&name].clone();
                    let existing = prepared
                        .existing
                        .iter()
                        .find(|c| c.service == name)
                        .cloned();
                    let svc = stack.services[&name].clone();
                    tasks.spawn(start_one(
                        rt.clone(),
                        spec,
                        existing,
                        svc,
                        prepared.ports.clone(),
                        logs.clone(),
                        tx.clone(),
                        cancel.child_token(),
                    ));
                }
                Decision::AllReady => {
                    ready_reported = true;
                    logs.event(
                        "devstack",
                        format!(
                            "{} services ready in {} ms",
                            req.selected.len(),
                            started_at.elapsed().as_millis()
                        ),
                    )
                    .await;
                    if req.wait {
                        cancel.cancel();
                        drain(&mut tasks).await;
                        logs.flush().await;
                        return Ok(UpOutcome::Ready {
                            ports: prepared.ports,
                        });
                    }
                    if let Some(then) = then.take() {
                        finished = Some(tokio::spawn(then(prepared.ports.clone())));
                    } else {
                        logs.event("devstack", "press Ctrl-C to stop").await;
                    }
                }
                Decision::Abort { service, reason } => {
                    let probe = stack.services[&service]
                        .ready
                        .as_ref()
                        .map(|r| readiness::describe(&r.probe, &service, &prepared.ports))
                        .unwrap_or_else(|| "start".to_string());
                    let tail = logs.tail(&service).await;
                    teardown!();
                    return Err(UpError::NotReady(Box::new(NotReadyReport {
                        service,
                        probe,
                        reason,
                        tail,
                    })));
                }
                Decision::Exited { service, code } => {
                    tracing::debug!(service, code, "exited after start-up");
                }
            }
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Sched(input)) => decisions = sched.on(input),
                Some(Msg::Created { service, id }) => { ids.insert(service, Running::Container(id)); }
                Some(Msg::Fatal(e)) => {
                    teardown!();
                    return Err(UpError::Runtime(e));
                }
                // Every sender is held by this loop too; the channel cannot close while it runs.
                None => {}
            },
            input = sup_rx.recv() => if let Some(input) = input { decisions = sched.on(input) },
            changed = async { match changes.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                // devstack's own files (state, logs) may sit inside a watched tree; they are
                // not the service's files.
                let own = req.state.path().parent().map(std::path::Path::to_path_buf);
                let changed = changed.map(|mut c| {
                    c.paths.retain(|p| own.as_ref().is_none_or(|o| !p.starts_with(o)));
                    c
                }).filter(|c| !c.paths.is_empty());
                if let Some(c) = changed {
                    if let Some(Running::Process(h)) = ids.get(&c.service) {
                        let first = c.paths.first().map(|p| p.strip_prefix(&stack.root).unwrap_or(p).display().to_string()).unwrap_or_default();
                        let why = if c.paths.len() > 1 { format!("{first} and {} more changed", c.paths.len() - 1) } else { format!("{first} changed") };
                        h.restart(why);
                    }
                }
            }
            code = async { match finished.as_mut() { Some(f) => f.await.unwrap_or(1), None => std::future::pending().await } } => {
                teardown!();
                return Ok(UpOutcome::Finished(code));
            }
            _ = interrupts.recv() => {
                if let Some(f) = finished.take() {
                    // The suite is a child of ours: it ends with the stack.
                    f.abort();
                }
                logs.event("devstack", if ready_reported { "stopping (Ctrl-C again kills at once)" } else { "interrupted; stopping what was started" }).await;
                teardown!();
                return if ready_reported && !req.wait { Ok(UpOutcome::Stopped) } else { Err(UpError::Interrupted) };
            }
        }
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn start_one<R: ContainerRuntime>(
    rt: R,
    spec: ContainerSpec,
    existing: Option<ContainerInfo>,
    svc: Service,
    ports: HostPorts,
    logs: LogHandle,
    tx: mpsc::UnboundedSender<Msg>,
    cancel: CancellationToken,
) {
    let name = svc.name.clone();
    let send = |m: Msg| {
        // The loop outlives every task it spawned; a send can only fail after it returned.
        let _ = tx.send(m);
    };
    let hash = spec
        .labels
        .get(crate::runtime::labels::CONFIG_HASH)
        .cloned()
        .unwrap_or_default();
    let id = match existing {
        Some(c) if c.config_hash == hash => {
            if c.status == ContainerStatus::Running {
                logs.event(&name, "running already, config unchanged").await;
            } else {
                logs.event(&name, "starting (config unchanged)").await;
            }
            c.id
        }
        Some(c) => {
            logs.event(&name, "config changed: recreating").await;
            if let Err(e) = rt.remove(&c.id).await {
                return send(Msg::Fatal(e));
            }
            match rt.create(&spec).await {
                Ok(id) => id,
                Err(e) => return send(Msg::Fatal(e)),
            }
        }
        None => {
            logs.event(&name, "creating").await;
            match rt.create(&spec).await {
                Ok(id) => id,
                Err(e) => return send(Msg::Fatal(conflict_help(e, &spec.name))),
            }
        }
    };
    send(Msg::Created {
        service: name.clone(),
        id: id.clone(),
    });
    if let Err(e) = rt.start(&id).await {
        return send(Msg::Sched(Input::Failed {
            service: name,
            reason: format!("cannot start: {e}"),
        }));
    }
    let since = match rt.inspect(&id).await {
        Ok(info) => info.started_at.unwrap_or(0),
        Err(e) => return send(Msg::Fatal(e)),
    };

    let (matched_tx, matched_rx) = oneshot::channel();
    let matcher = match svc.ready.as_ref().map(|r| &r.probe) {
        // Validated when the stack was loaded.
        Some(Probe::Log(re)) => Regex::new(re).ok().map(|r| (r, matched_tx)),
        _ => None,
    };
    let follower_cancel = cancel.clone();
    let follower = tokio::spawn(follow(
        rt.clone(),
        id.clone(),
        name.clone(),
        since,
        logs.clone(),
        matcher,
        tx.clone(),
        follower_cancel,
    ));
    send(Msg::Sched(Input::Started(name.clone())));

    if let Some(ready) = &svc.ready {
        let log_rx = matches!(ready.probe, Probe::Log(_)).then_some(matched_rx);
        match readiness::wait_ready(
            &readiness::ContainerTarget { rt: &rt, id: &id },
            &name,
            ready,
            &ports,
            log_rx,
            &cancel,
        )
        .await
        {
            Ok(took) => {
                logs.event(&name, format!("ready in {} ms", took.as_millis()))
                    .await;
                send(Msg::Sched(Input::Ready(name.clone())));
            }
            Err(NotReady::Cancelled) => {}
            Err(NotReady::Exited(code)) => send(Msg::Sched(Input::Exited {
                service: name.clone(),
                code,
            })),
            Err(NotReady::TimedOut { after, last_error }) => send(Msg::Sched(Input::Failed {
                service: name.clone(),
                reason: format!(
                    "not ready after {}: {last_error}",
                    humantime::format_duration(after)
                ),
            })),
            Err(NotReady::Engine(e)) => send(Msg::Sched(Input::Failed {
                service: name.clone(),
                reason: e,
            })),
        }
    }
    // Keep following the logs until cancelled or the container stops.
    let _ = follower.await;
}

fn conflict_help(e: RuntimeError, name: &str) -> RuntimeError {
    match e {
        RuntimeError::Engine(m) if m.contains("already in use") => RuntimeError::Engine(format!(
            "a container named `{name}` exists but devstack did not create it: {m}; remove or rename it, or pick another project name with `-p`"
        )),
        other => other,
    }
}

/// Streams a container's output into the mux until it stops (or `cancel`). Reports the exit.
#[allow(clippy::too_many_arguments)]
async fn follow<R: ContainerRuntime>(
    rt: R,
    id: String,
    service: String,
    mut since: i64,
    logs: LogHandle,
    mut matcher: Option<(Regex, oneshot::Sender<()>)>,
    tx: mpsc::UnboundedSender<Msg>,
    cancel: CancellationToken,
) {
    loop {
        let mut stream = rt.logs(&id, since);
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        loop {
            let chunk = tokio::select! {
                c = stream.next() => c,
                _ = cancel.cancelled() => return,
            };
            let Some(Ok(chunk)) = chunk else { break };
            let (splitter, kind) = if chunk.stderr {
                (&mut err, Stream::Stderr)
            } else {
                (&mut out, Stream::Stdout)
            };
            for text in splitter.push(&chunk.bytes) {
                emit(&logs, &service, kind, text, &mut matcher).await;
            }
        }
        for (splitter, kind) in [(&mut out, Stream::Stdout), (&mut err, Stream::Stderr)] {
            if let Some(text) = splitter.finish() {
                emit(&logs, &service, kind, text, &mut matcher).await;
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        match rt.inspect(&id).await {
            Ok(info)
                if matches!(
                    info.status,
                    ContainerStatus::Running | ContainerStatus::Restarting
                ) =>
            {
                // The engine restarted it (restart policy): follow the new run.
                logs.event(&service, "restarted by its restart policy")
                    .await;
                since = info.started_at.unwrap_or(since);
            }
            Ok(info) => {
                let code = info.exit_code.unwrap_or(-1);
                logs.event(&service, format!("exited with code {code}"))
                    .await;
                let _ = tx.send(Msg::Sched(Input::Exited { service, code }));
                return;
            }
            Err(_) => return,
        }
    }
}

async fn emit(
    logs: &LogHandle,
    service: &str,
    stream: Stream,
    text: String,
    matcher: &mut Option<(Regex, oneshot::Sender<()>)>,
) {
    if matcher.as_ref().is_some_and(|(re, _)| re.is_match(&text)) {
        if let Some((_, tx)) = matcher.take() {
            let _ = tx.send(());
        }
    }
    logs.line(LogLine {
        at: std::time::SystemTime::now(),
        source: service.to_string(),
        stream,
        text,
    })
    .await;
}

/// Stops the given containers level by level, dependents first; a further interrupt kills
/// whatever is still running at once.
async fn stop_all<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    selected: &[String],
    ids: &IndexMap<String, Running>,
    logs: &LogHandle,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) {
    let graph = Graph::from_stack(stack).subset(selected);
    let mut levels = graph.levels();
    levels.reverse();
    let stopping = async {
        for level in &levels {
            let mut set = JoinSet::new();
            for name in level {
                let Some(running) = ids.get(name) else {
                    continue;
                };
                let (rt, running, name, logs) =
                    (rt.clone(), running.clone(), name.clone(), logs.clone());
                let grace = stack.services[&name].stop_grace_period;
                set.spawn(async move {
                    match running {
                        // The supervisor reports how it stopped.
                        Running::Process(h) => h.stop().await,
                        Running::Container(id) => match rt.stop(&id, grace).await {
                            Ok(()) => logs.event(&name, "stopped").await,
                            Err(e) => logs.event(&name, format!("could not stop: {e}")).await,
                        },
                    }
                });
            }
            while set.join_next().await.is_some() {}
        }
    };
    tokio::select! {
        () = stopping => {}
        _ = interrupts.recv() => {
            logs.event("devstack", "killing everything now").await;
            let mut set = JoinSet::new();
            for running in ids.values() {
                let (rt, running) = (rt.clone(), running.clone());
                set.spawn(async move {
                    match running {
                        Running::Process(h) => h.kill().await,
                        Running::Container(id) => {
                            // Killing is the last resort; an error here leaves nothing better to do.
                            let _ = rt.kill(&id).await;
                        }
                    }
                });
            }
            while set.join_next().await.is_some() {}
        }
    }
}

pub struct DownRequest<'a> {
    pub stack: &'a Stack,
    pub volumes: bool,
    pub remove_orphans: bool,
}

/// What `down` did, for its summary.
#[derive(Debug, Default)]
pub struct DownReport {
    pub removed: Vec<String>,
    pub orphans_left: Vec<String>,
    pub volumes_removed: Vec<String>,
}

/// Stops and removes this project's containers (dependents first), its network, and with
/// `volumes` its named volumes. Touches nothing without the project's label.
pub async fn down<R: ContainerRuntime>(
    rt: &R,
    req: DownRequest<'_>,
    logs: &LogHandle,
) -> Result<DownReport, RuntimeError> {
    let stack = req.stack;
    let containers = rt.list(&stack.name).await?;
    let mut report = DownReport::default();
    let (known, orphans): (Vec<_>, Vec<_>) = containers
        .into_iter()
        .partition(|c| stack.services.contains_key(&c.service));
    let mut order = Graph::from_stack(stack).stop_order();
    order.retain(|s| known.iter().any(|c| &c.service == s));
    let mut batches: Vec<Vec<&ContainerInfo>> = Vec::new();
    if req.remove_orphans {
        batches.push(orphans.iter().collect());
    } else {
        report.orphans_left = orphans.iter().map(|c| c.name.clone()).collect();
    }
    for s in &order {
        batches.push(known.iter().filter(|c| &c.service == s).collect());
    }
    for batch in batches {
        for c in batch {
            let grace = stack
                .services
                .get(&c.service)
                .map_or(Duration::from_secs(5), |s| s.stop_grace_period);
            if c.status == ContainerStatus::Running {
                rt.stop(&c.id, grace).await?;
            }
            rt.remove(&c.id).await?;
            logs.event(&c.service, format!("removed container `{}`", c.name))
                .await;
            report.removed.push(c.name.clone());
        }
    }
    if report.orphans_left.is_empty() {
        rt.remove_network(&plan::network_name(&stack.name)).await?;
    }
    if req.volumes {
        for (full, _) in rt.list_volumes(&stack.name).await? {
            rt.remove_volume(&full).await?;
            logs.event("devstack", format!("removed volume `{full}`"))
                .await;
            report.volumes_removed.push(full);
        }
    }
    logs.flush().await;
    Ok(report)
}
