//! The engine: one async loop, the only place where events are put in order. It receives unit
//! events, probe results, timers, commands from handles, file changes and signals; stamps
//! `now`; asks the kernel; and carries out the effects it returns (start, stop, kill, probe,
//! timers, publishing). Everything a person or a client sees goes through the log mux as typed
//! events.

pub mod build;
pub mod develop;
pub mod down;
pub mod handle;
pub mod host;
pub mod prepare;
pub mod probe;
pub mod task;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

pub use build::{BuildFailure, BuildFlags};
pub use down::{down, DownReport, DownRequest};
pub use handle::{channel, Inbox, PortView, ServiceStatus, StackHandle};
pub use host::{Host, ProcessHost};

use crate::clock::unix_ms;
use crate::config::{Service, Stack};
use crate::event::StackEvent;
use crate::kernel::{Effect, Input, Kernel, Outcome};
use crate::logs::LogHandle;
use crate::plan::{HostPorts, PortMode};
use crate::process::state::StateFile;
use crate::redact::Redactor;
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::unit::{self, UnitCommand, UnitEvent, UnitHandle};

/// Lines of a failing service's output shown with the error.
pub const TAIL_LINES: usize = 20;
/// Lines shown with a crash loop.
const CRASH_TAIL: usize = 5;
/// How often zombies of orphaned descendants are looked for besides SIGCHLD (a backstop: each
/// exit of a child is reaped as its signal arrives).
const REAP_EVERY: Duration = Duration::from_secs(2);

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
    pub state: StateFile,
    /// Run this once ready, then stop (instead of waiting for Ctrl-C).
    pub then: Option<Then>,
    /// Commands from [`StackHandle`]s; `None` when nobody can send any.
    pub inbox: Option<Inbox>,
    /// How image builds are asked for (`up --build`).
    pub build: BuildFlags,
}

#[derive(Debug)]
pub enum UpOutcome {
    /// `wait`: everything is ready and left running.
    Ready { ports: HostPorts },
    /// Foreground run ended by a signal (or a shutdown command) after a clean stop.
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// An image build failed; nothing was started.
    Build(Box<BuildFailure>),
    /// Ctrl-C, SIGTERM or SIGHUP; what was started has been stopped.
    Interrupted,
    /// Native services whose program is not there, found before anything started.
    MissingPrograms(Vec<crate::program::MissingProgram>),
}

impl From<RuntimeError> for UpError {
    fn from(e: RuntimeError) -> Self {
        UpError::Runtime(e)
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Things worth saying before start: containers of services no longer in the stack, and ports
/// published on every address.
async fn warnings(
    stack: &Stack,
    selected: &[String],
    prepared: &prepare::Prepared,
    logs: &LogHandle,
) {
    let orphans: Vec<&str> = prepared
        .existing
        .iter()
        .filter(|c| !stack.services.contains_key(&c.service))
        .map(|c| c.name.as_str())
        .collect();
    if !orphans.is_empty() {
        logs.publish(StackEvent::warning(
            None,
            format!(
                "orphan containers of services no longer in the stack: {}; `devstack down --remove-orphans` removes them",
                orphans.join(", ")
            ),
        ))
        .await;
    }
    for name in selected {
        for p in &stack.services[name.as_str()].ports {
            if p.host_ip.is_unspecified() {
                logs.publish(StackEvent::warning(
                    Some(name),
                    format!(
                        "port {} is published on {}: reachable from other machines; drop the address to publish on 127.0.0.1 only",
                        p.container_port, p.host_ip
                    ),
                ))
                .await;
            }
        }
    }
}

struct Units<R, H> {
    rt: R,
    host: H,
    stack_name: String,
    ports: HostPorts,
    specs: indexmap::IndexMap<String, crate::runtime::ContainerSpec>,
    existing: Vec<crate::runtime::ContainerInfo>,
    logs: LogHandle,
    events: mpsc::UnboundedSender<UnitEvent>,
    state: StateFile,
    redact: Redactor,
    live: HashMap<String, (UnitHandle, JoinHandle<()>)>,
}

impl<R: ContainerRuntime, H: ProcessHost> Units<R, H> {
    fn get(&mut self, svc: &Service) -> &UnitHandle {
        if !self.live.contains_key(&svc.name) {
            let unit = if svc.is_container() {
                unit::container::spawn(unit::container::ContainerSetup {
                    rt: self.rt.clone(),
                    svc: svc.clone(),
                    spec: self.specs[&svc.name].clone(),
                    existing: self
                        .existing
                        .iter()
                        .find(|c| c.service == svc.name)
                        .cloned(),
                    logs: self.logs.clone(),
                    events: self.events.clone(),
                })
            } else {
                self.host.unit(unit::process::ProcessSetup {
                    project: self.stack_name.clone(),
                    svc: svc.clone(),
                    ports: self.ports.clone(),
                    logs: self.logs.clone(),
                    events: self.events.clone(),
                    state: self.state.clone(),
                    redact: self.redact.clone(),
                })
            };
            self.live.insert(svc.name.clone(), unit);
        }
        &self.live[&svc.name].0
    }

    fn send(&self, service: &str, c: UnitCommand) {
        if let Some((u, _)) = self.live.get(service) {
            u.send(c);
        }
    }

    /// Drops every handle and waits for the unit tasks (idle units end at once; a process unit
    /// that still runs kills its group).
    async fn close(self) {
        let tasks: Vec<JoinHandle<()>> = self.live.into_values().map(|(_, t)| t).collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Brings the selected services up and runs them until the kernel says the run is over: with
/// `wait`, once everything is ready (left running); otherwise at an interrupt, a shutdown
/// command, the end of `then`, or a failure during start-up (everything started is stopped).
pub async fn up<R: ContainerRuntime>(
    rt: &R,
    req: UpRequest<'_>,
    logs: LogHandle,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, UpError> {
    up_with(rt, &Host, req, logs, interrupts).await
}

/// [`up`] with native services run by `host` (the engine's tests pass a fake).
pub async fn up_with<R: ContainerRuntime, H: ProcessHost>(
    rt: &R,
    host: &H,
    mut req: UpRequest<'_>,
    logs: LogHandle,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, UpError> {
    let stack = req.stack;
    let redact = Redactor::new(stack.secret_values.iter().cloned());
    let has_processes = req
        .selected
        .iter()
        .any(|s| !stack.services[s.as_str()].is_container());
    let supervised = req
        .selected
        .iter()
        .any(|s| stack.services[s.as_str()].is_supervised_process());
    if req.wait && supervised {
        let names: Vec<String> = req
            .selected
            .iter()
            .filter(|s| stack.services[s.as_str()].is_supervised_process())
            .map(|s| format!("`{s}`"))
            .collect();
        return Err(UpError::Runtime(RuntimeError::Engine(format!(
            "`up --wait` cannot leave native processes running without devstack: {}; run `devstack up` in the foreground, or `up --wait` only the container services",
            names.join(", ")
        ))));
    }
    let missing = host.missing_programs(stack, &req.selected, true);
    if !missing.is_empty() {
        return Err(UpError::MissingPrograms(missing));
    }
    // Programs a task is to create: checked again at their service's start (only these; the
    // rest were just found).
    let from_tasks: std::collections::HashSet<String> = host
        .missing_programs(stack, &req.selected, false)
        .into_iter()
        .map(|m| m.service)
        .collect();
    if has_processes {
        let processes: Vec<String> = req
            .selected
            .iter()
            .filter(|s| !stack.services[s.as_str()].is_container())
            .cloned()
            .collect();
        host.end_leftovers(stack, &processes, &req.state, &logs)
            .await;
    }
    let mut prepared = tokio::select! {
        p = prepare::prepare(rt, stack, &req.selected, req.port_mode, req.build, &logs) => p?,
        _ = interrupts.recv() => return Err(UpError::Interrupted),
    };
    warnings(stack, &req.selected, &prepared, &logs).await;
    if has_processes {
        host.become_subreaper();
    }

    let own_files = req.state.path().parent().map(std::path::Path::to_path_buf);
    let mut watcher = None;
    let mut changes = None;
    if req.watch {
        let mut specs: Vec<crate::watch::WatchSpec> = req
            .selected
            .iter()
            .filter(|s| !stack.services[s.as_str()].is_container())
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
        // Containers with `develop.watch`: their rules decide what a change does.
        for name in &req.selected {
            let svc = &stack.services[name.as_str()];
            if !svc.is_container() || svc.options.develop.is_empty() {
                continue;
            }
            let mut paths: Vec<std::path::PathBuf> = Vec::new();
            for r in &svc.options.develop {
                if !paths.contains(&r.path) {
                    paths.push(r.path.clone());
                }
            }
            specs.push(crate::watch::WatchSpec {
                service: name.clone(),
                paths,
                ignore: Vec::new(),
                debounce: crate::config::validate::DEFAULT_DEBOUNCE,
            });
        }
        ignore_own_output(&host.own_output(), &mut specs, &logs).await;
        if !specs.is_empty() {
            let (w, rx) = host.watch(specs).map_err(|e| {
                UpError::Runtime(RuntimeError::Engine(format!("cannot watch files: {e}")))
            })?;
            watcher = w;
            changes = Some(rx);
        }
    }

    let (unit_tx, mut unit_rx) = mpsc::unbounded_channel::<UnitEvent>();
    let (input_tx, mut input_rx) = mpsc::unbounded_channel::<Input>();
    let mut units = Units {
        rt: rt.clone(),
        host: host.clone(),
        stack_name: stack.name.clone(),
        ports: prepared.ports.clone(),
        specs: prepared.specs.clone(),
        existing: prepared.existing.clone(),
        logs: logs.clone(),
        events: unit_tx,
        state: req.state.clone(),
        redact: redact.clone(),
        live: HashMap::new(),
    };
    let mut probes: HashMap<String, AbortHandle> = HashMap::new();
    let mut timers: Vec<AbortHandle> = Vec::new();
    let mut instances: HashMap<String, (Option<u32>, Option<String>, u64)> = HashMap::new();
    let mut kernel = Kernel::new(stack, &req.selected, req.wait);
    let mut inbox = req.inbox.take();
    let mut then = req.then.take();
    let mut suite: Option<JoinHandle<i32>> = None;
    let mut suite_code: Option<i32> = None;
    let mut reaper = tokio::time::interval(REAP_EVERY);
    reaper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An orphan that ends is reaped at once: devstack never holds a zombie.
    let mut child_exits = has_processes
        .then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok())
        .flatten();
    let mut builds = std::mem::replace(&mut prepared.builds, prepare::Builds::none());
    // Starts of built services whose image is not there yet: (service, epoch).
    let mut deferred: HashMap<String, u64> = HashMap::new();
    // Services whose build failed, with the reason; and the failure itself, which ends the run.
    let mut unbuilt: HashMap<String, String> = HashMap::new();
    let mut build_failure: Option<UpError> = None;
    // `develop.watch` rebuilds: their results, and the services whose unit must be replaced
    // (new image, new container) at their next start.
    let (rebuilt_tx, mut rebuilt_rx) =
        mpsc::unbounded_channel::<(String, Result<String, UpError>)>();
    let mut recreate: std::collections::HashSet<String> = Default::default();
    // Tasks: the start whose up-to-date check runs, the check's answers, and the hash to
    // record when a run succeeds.
    let state_dir = req.state.path().parent().map(std::path::Path::to_path_buf);
    let mut task_checks: HashMap<String, u64> = HashMap::new();
    let mut task_hashes: HashMap<String, (u64, String)> = HashMap::new();
    let (checked_tx, mut checked_rx) = mpsc::unbounded_channel::<(String, u64, task::Check)>();
    let mut effects = kernel.begin(now());

    let outcome = loop {
        let mut finished = None;
        for effect in std::mem::take(&mut effects) {
            match effect {
                Effect::Start { service, epoch } => {
                    if let Some(p) = probes.remove(&service) {
                        p.abort();
                    }
                    if let Some(reason) = unbuilt.get(&service) {
                        let _ = input_tx.send(Input::StartFailed {
                            service,
                            epoch,
                            reason: reason.clone(),
                        });
                        continue;
                    }
                    let svc = &stack.services[&service];
                    if svc.task.as_ref().is_some_and(|t| t.skippable())
                        && task_checks.get(&service) != Some(&epoch)
                    {
                        // Up to date? The answer starts it, or tells the kernel it completed.
                        task_checks.insert(service.clone(), epoch);
                        let (svc, dir, tx) = (svc.clone(), state_dir.clone(), checked_tx.clone());
                        tokio::spawn(async move {
                            let c = task::check(&svc, dir.as_deref()).await;
                            let _ = tx.send((svc.name.clone(), epoch, c));
                        });
                        continue;
                    }
                    if from_tasks.contains(&service) {
                        // A task that was to create the program did not: say so, not exit 127.
                        if let Some(m) = host
                            .missing_programs(stack, std::slice::from_ref(&service), false)
                            .pop()
                        {
                            let from = m
                                .task
                                .map(|t| format!(" (task `{t}` was to create it)"))
                                .unwrap_or_default();
                            let _ = input_tx.send(Input::StartFailed {
                                service,
                                epoch,
                                reason: format!("`{}` is not there{from}", m.program),
                            });
                            continue;
                        }
                    }
                    if builds.waiting.contains(&service) && !units.specs.contains_key(&service) {
                        // Started as soon as its image is built.
                        deferred.insert(service, epoch);
                        continue;
                    }
                    if recreate.remove(&service) {
                        // A rebuilt image: a new unit with the new spec replaces the container
                        // (stopped by now) of the old one.
                        if let Some((handle, task)) = units.live.remove(&service) {
                            drop(handle);
                            let _ = task.await;
                        }
                        let old = instances.get(&service).and_then(|i| i.1.clone());
                        units.existing.retain(|c| c.service != service);
                        if let Some(id) = old {
                            if let Ok(info) = rt.inspect(&id).await {
                                units.existing.push(info);
                            }
                        }
                    }
                    units
                        .get(&stack.services[&service])
                        .send(UnitCommand::Start { epoch });
                }
                Effect::Probe {
                    service,
                    epoch,
                    timeout,
                } => {
                    let container = instances.get(&service).and_then(|i| i.1.clone());
                    if let Some(p) = probe::spawn(
                        rt.clone(),
                        &stack.name,
                        &stack.services[&service],
                        epoch,
                        timeout,
                        container,
                        prepared.ports.clone(),
                        input_tx.clone(),
                    ) {
                        if let Some(old) = probes.insert(service, p) {
                            old.abort();
                        }
                    }
                }
                Effect::Stop { service, grace } => {
                    if let Some(p) = probes.remove(&service) {
                        p.abort();
                    }
                    units.send(&service, UnitCommand::Stop { grace });
                }
                Effect::Kill { service } => {
                    if let Some(p) = probes.remove(&service) {
                        p.abort();
                    }
                    units.send(&service, UnitCommand::Kill);
                }
                Effect::ArmTimer {
                    service,
                    epoch,
                    after,
                } => {
                    let tx = input_tx.clone();
                    let t = tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Input::Timer { service, epoch });
                    });
                    timers.retain(|t| !t.is_finished());
                    timers.push(t.abort_handle());
                }
                Effect::Publish(mut event) => {
                    match &mut event {
                        StackEvent::NotReady {
                            service,
                            probe,
                            tail,
                            ..
                        } => {
                            *probe = describe_probe(stack, service, &prepared.ports);
                            *tail = logs.tail(service).await;
                        }
                        StackEvent::Backoff {
                            service,
                            crashes,
                            tail,
                            ..
                        } if *crashes >= crate::kernel::CRASH_LOOP_COUNT => {
                            let all = logs.tail(service).await;
                            *tail = all[all.len().saturating_sub(CRASH_TAIL)..].to_vec();
                        }
                        _ => {}
                    }
                    let all_ready = matches!(event, StackEvent::AllReady { .. });
                    logs.publish(event).await;
                    if all_ready && !req.wait {
                        if let Some(then) = then.take() {
                            suite = Some(tokio::spawn(then(prepared.ports.clone())));
                        } else {
                            logs.event("devstack", "press Ctrl-C to stop").await;
                        }
                    }
                }
                Effect::Finish(o) => finished = Some(o),
            }
        }
        if !builds.after_tasks.is_empty() {
            let completed: HashMap<&str, bool> = kernel
                .views()
                .map(|v| (v.service, *v.state == crate::event::ServiceState::Completed))
                .collect();
            builds.start_ready(rt, &logs, &|t| completed.get(t).copied().unwrap_or(false));
        }
        if let Some(inbox) = &inbox {
            let snapshot = kernel
                .views()
                .map(|v| {
                    let inst = instances.get(v.service);
                    ServiceStatus {
                        service: v.service.to_string(),
                        kind: stack.services[v.service].kind_name().to_string(),
                        state: v.state.clone(),
                        restarts: v.restarts,
                        epoch: v.epoch,
                        running: v.running,
                        pid: inst.and_then(|i| i.0).filter(|_| v.running),
                        container: inst.and_then(|i| i.1.clone()),
                        started_at_ms: inst.map(|i| i.2).filter(|_| v.running),
                        ports: prepared
                            .ports
                            .0
                            .get(v.service)
                            .map(|ps| {
                                ps.iter()
                                    .map(|p| handle::PortView {
                                        host_ip: p.host_ip,
                                        host_port: p.host_port,
                                        container_port: p.container_port,
                                        protocol: p.protocol,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                })
                .collect();
            inbox.snapshot.send_replace(snapshot);
        }
        if let Some(o) = finished {
            break o;
        }

        let input = tokio::select! {
            Some(ev) = unit_rx.recv() => match ev {
                UnitEvent::Started { service, epoch, pid, container, detail } => {
                    instances.insert(service.clone(), (pid, container.clone(), unix_ms()));
                    Input::Started { service, epoch, pid, container, detail: redact.apply(&detail) }
                }
                UnitEvent::StartFailed { service, epoch, reason } => Input::StartFailed { service, epoch, reason: redact.apply(&reason) },
                UnitEvent::Exited { service, epoch, code, how } => {
                    if let Some((e, hash)) = task_hashes.remove(&service) {
                        if e == epoch && code == 0 && how.is_none() {
                            if let Some(dir) = &state_dir {
                                if let Err(err) = task::record(dir, &service, &hash) {
                                    tracing::debug!("cannot record the run of task `{service}`: {err}");
                                }
                            }
                        }
                    }
                    Input::Exited { service, epoch, code, how }
                }
                UnitEvent::LogMatched { service, epoch } => Input::Ready { service, epoch },
            },
            Some(i) = input_rx.recv() => i,
            Some((service, epoch, check)) = checked_rx.recv() => {
                // Only the start the kernel still wants (not one a stop or a newer start overtook).
                let wanted = kernel.views().any(|v| {
                    v.service == service && v.epoch == epoch && *v.state == crate::event::ServiceState::Starting
                });
                if task_checks.get(&service) != Some(&epoch) || !wanted {
                    continue;
                }
                match check {
                    task::Check::UpToDate { reason, after_ms } => {
                        logs.publish(StackEvent::Skipped { service: service.clone(), reason, after_ms }).await;
                        Input::Skipped { service, epoch }
                    }
                    task::Check::Run { hash } => {
                        if let Some(h) = hash {
                            task_hashes.insert(service.clone(), (epoch, h));
                        }
                        effects.push(Effect::Start { service, epoch });
                        continue;
                    }
                }
            }
            Some((service, result)) = rebuilt_rx.recv() => match result {
                Ok(id) => {
                    let svc = &stack.services[service.as_str()];
                    let Some(spec) = crate::plan::container_spec(&stack.name, svc, &prepared.ports, &id) else {
                        continue;
                    };
                    let hash = |s: &crate::runtime::ContainerSpec| s.labels.get(crate::runtime::labels::CONFIG_HASH).cloned();
                    if units.specs.get(&service).map(hash) == Some(hash(&spec)) {
                        continue;
                    }
                    let what = format!("image `{}`", spec.image);
                    units.specs.insert(service.clone(), spec);
                    recreate.insert(service.clone());
                    Input::FilesChanged { service, paths: vec![what] }
                }
                Err(e) => {
                    let text = match e {
                        UpError::Build(f) => format!(
                            "the rebuild of `{}` failed: {} ({}{}); the container keeps running the previous image",
                            f.image,
                            f.message,
                            f.dockerfile,
                            f.line.map(|l| format!(":{l}")).unwrap_or_default()
                        ),
                        UpError::Runtime(r) => format!("the rebuild failed: {r}"),
                        _ => "the rebuild failed".to_string(),
                    };
                    logs.publish(StackEvent::warning(Some(&service), text)).await;
                    continue;
                }
            },
            Some(done) = builds.done.recv(), if !builds.waiting.is_empty() => {
                for s in &done.services {
                    builds.waiting.remove(s);
                }
                match done.result {
                    Ok(id) => {
                        for s in &done.services {
                            let svc = &stack.services[s.as_str()];
                            if let Some(spec) = crate::plan::container_spec(&stack.name, svc, &prepared.ports, &id) {
                                units.specs.insert(s.clone(), spec);
                            }
                            if let Some(epoch) = deferred.remove(s) {
                                units.get(svc).send(UnitCommand::Start { epoch });
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        let reason = match &e {
                            UpError::Build(f) => format!("the build of `{}` failed: {}", f.image, f.message),
                            UpError::Runtime(r) => format!("the image build failed: {r}"),
                            _ => "the image build failed".to_string(),
                        };
                        if build_failure.is_none() {
                            build_failure = Some(e);
                        }
                        for s in &done.services {
                            unbuilt.insert(s.clone(), reason.clone());
                        }
                        // Every start still waiting for an image fails (which ends start-up);
                        // with none waiting, the run stops.
                        if deferred.is_empty() {
                            Input::Command(crate::kernel::Command::Shutdown)
                        } else {
                            for (service, epoch) in std::mem::take(&mut deferred) {
                                let _ = input_tx.send(Input::StartFailed {
                                    service: service.clone(),
                                    epoch,
                                    reason: unbuilt.get(&service).cloned().unwrap_or_else(|| "not started: another image build failed".to_string()),
                                });
                            }
                            continue;
                        }
                    }
                }
            }
            Some(c) = async { match inbox.as_mut() { Some(i) => i.commands.recv().await, None => std::future::pending().await } } => Input::Command(c),
            Some(c) = async { match changes.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                // devstack's own files (state, logs) may sit inside a watched tree.
                let paths: Vec<String> = c
                    .paths
                    .iter()
                    .filter(|p| own_files.as_ref().is_none_or(|o| !p.starts_with(o)))
                    .map(|p| p.strip_prefix(&stack.root).unwrap_or(p).display().to_string())
                    .collect();
                if paths.is_empty() {
                    continue;
                }
                let svc = &stack.services[c.service.as_str()];
                if svc.is_container() && !svc.options.develop.is_empty() {
                    let plan = develop::plan(&svc.options.develop, &c.paths, &stack.root, &|p| p.exists());
                    if plan.is_empty() {
                        continue;
                    }
                    let service = c.service.clone();
                    if plan.rebuild {
                        logs.event(&service, format!("files changed: {}; rebuilding", plan.paths.join(", "))).await;
                        let jobs = crate::build::jobs(stack, std::slice::from_ref(&service)).unwrap_or_default();
                        if let Some(job) = jobs.into_iter().next() {
                            let (rt, logs, tx) = (rt.clone(), logs.clone(), rebuilt_tx.clone());
                            tokio::spawn(async move {
                                let r = build::ensure(&rt, &job, BuildFlags::default(), &logs).await;
                                let _ = tx.send((service, r));
                            });
                        }
                        continue;
                    }
                    if plan.copy.is_empty() && plan.delete.is_empty() {
                        Input::FilesChanged { service, paths: plan.paths }
                    } else {
                        let Some(id) = instances.get(&service).and_then(|i| i.1.clone()) else {
                            continue;
                        };
                        let (rt, logs, tx) = (rt.clone(), logs.clone(), input_tx.clone());
                        tokio::spawn(async move {
                            let copy = plan.copy.clone();
                            let tar = tokio::task::spawn_blocking(move || crate::build::context::files_tar(&copy)).await;
                            let mut problems = Vec::new();
                            match tar {
                                Ok(Ok(t)) if !plan.copy.is_empty() => {
                                    if let Err(e) = rt.copy_into(&id, t).await {
                                        problems.push(e.to_string());
                                    }
                                }
                                Ok(Err(e)) => problems.push(e.to_string()),
                                _ => {}
                            }
                            if !plan.delete.is_empty() {
                                let mut argv = vec!["rm".to_string(), "-rf".to_string(), "--".to_string()];
                                argv.extend(plan.delete.iter().cloned());
                                if let Err(e) = rt.exec(&id, &argv).await {
                                    problems.push(e.to_string());
                                }
                            }
                            let what = format!(
                                "synced {} file(s){} into the container: {}",
                                plan.copy.len(),
                                if plan.delete.is_empty() { String::new() } else { format!(", removed {}", plan.delete.len()) },
                                plan.paths.join(", ")
                            );
                            if problems.is_empty() {
                                logs.event(&service, what).await;
                            } else {
                                logs.publish(StackEvent::warning(Some(&service), format!("sync failed: {}", problems.join("; ")))).await;
                            }
                            if plan.restart {
                                let _ = tx.send(Input::FilesChanged { service, paths: plan.paths });
                            }
                        });
                        continue;
                    }
                } else {
                    Input::FilesChanged { service: c.service, paths }
                }
            }
            code = async { match suite.as_mut() { Some(s) => s.await.unwrap_or(1), None => std::future::pending().await } } => {
                suite = None;
                suite_code = Some(code);
                Input::Command(crate::kernel::Command::Shutdown)
            }
            Some(()) = interrupts.recv() => {
                if let Some(s) = suite.take() {
                    // The suite is a child of ours: it ends with the stack.
                    s.abort();
                }
                Input::Interrupt
            }
            _ = reaper.tick() => {
                if has_processes {
                    host.reap_orphans().await;
                }
                continue;
            }
            Some(()) = async { match child_exits.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                host.reap_orphans().await;
                continue;
            }
        };
        effects = kernel.handle(now(), input);
    };

    drop(watcher);
    builds.abort();
    for p in probes.into_values().chain(timers) {
        p.abort();
    }
    if let Some(failure) = build_failure {
        if !matches!(outcome, Outcome::Abandoned) {
            units.close().await;
        }
        logs.flush().await;
        return Err(failure);
    }
    match outcome {
        Outcome::Ready => {
            // Containers stay as they are; their units end without touching them.
            units.close().await;
            logs.flush().await;
            Ok(UpOutcome::Ready {
                ports: prepared.ports,
            })
        }
        Outcome::Abandoned => {
            // Third interrupt: do not wait. Process groups die with their units.
            drop(units);
            logs.flush().await;
            Err(UpError::Interrupted)
        }
        other => {
            units.close().await;
            logs.flush().await;
            match other {
                Outcome::Stopped => Ok(match suite_code {
                    Some(code) => UpOutcome::Finished(code),
                    None => UpOutcome::Stopped,
                }),
                Outcome::NotReady { service, reason } => {
                    let tail = logs.tail(&service).await;
                    Err(UpError::NotReady(Box::new(NotReadyReport {
                        probe: redact.apply(&describe_probe(stack, &service, &prepared.ports)),
                        reason: redact.apply(&reason),
                        tail,
                        service,
                    })))
                }
                _ => Err(UpError::Interrupted),
            }
        }
    }
}

fn describe_probe(stack: &Stack, service: &str, ports: &HostPorts) -> String {
    stack.services[service]
        .ready
        .as_ref()
        .map(|r| probe::describe(&r.probe, service, ports))
        .unwrap_or_else(|| "start".to_string())
}

/// Where devstack's own output is redirected (`up > up.log`) inside a watched folder, that
/// file is ignored by the watch of each service that watches it (before any debounce, so the
/// stream of its changes never holds a real change back), with one note.
async fn ignore_own_output(
    own: &[std::path::PathBuf],
    specs: &mut [crate::watch::WatchSpec],
    logs: &crate::logs::LogHandle,
) {
    for file in own {
        let mut services: Vec<String> = Vec::new();
        for spec in specs.iter_mut() {
            let inside = spec.paths.iter().find_map(|p| {
                let root = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                file.strip_prefix(root)
                    .ok()
                    .map(std::path::Path::to_path_buf)
            });
            if let Some(relative) = inside {
                // Anchored to the watched folder, special characters taken literally.
                let literal: String = relative
                    .to_string_lossy()
                    .chars()
                    .flat_map(|c| {
                        let escape = matches!(c, '*' | '?' | '[' | ']' | '\\' | '!' | '#');
                        escape.then_some('\\').into_iter().chain([c])
                    })
                    .collect();
                spec.ignore.push(format!("/{literal}"));
                services.push(format!("`{}`", spec.service));
            }
        }
        if !services.is_empty() {
            logs.event(
                "devstack",
                format!(
                    "devstack's output goes to `{}`, inside what {} watch: its changes are ignored",
                    file.display(),
                    services.join(", ")
                ),
            )
            .await;
        }
    }
}
