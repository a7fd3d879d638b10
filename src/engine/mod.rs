//! The engine: brings a run up (preflight, preparation, the watch) and hands it to the
//! dispatcher (`dispatch.rs`), the only place where events are put in order: it turns each
//! source into one event, asks the kernel, and carries out the effects it returns. Everything a
//! person or a client sees goes through the log mux as typed events.

pub(crate) mod apply;
pub(crate) mod build;
pub(crate) mod develop;
mod dispatch;
pub(crate) mod down;
pub(crate) mod handle;
pub(crate) mod host;
pub(crate) mod prepare;
pub(crate) mod probe;
pub(crate) mod seed;
pub(crate) mod task;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub(crate) use build::{BuildFailure, BuildFlags};
pub(crate) use down::{down, DownReport, DownRequest};
pub(crate) use handle::{channel, Inbox, ServiceStatus, StackHandle};
pub(crate) use host::{Host, ProcessHost};

use crate::clock::unix_ms;
use crate::config::{Service, ServiceName, Stack};
use crate::event::StackEvent;
use crate::kernel::{Input, Kernel};
use crate::logs::LogHandle;
use crate::plan::{HostPorts, PortMode};
use crate::process::state::StateFile;
use crate::redact::Redactor;
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::unit::{self, UnitCommand, UnitEvent, UnitHandle};

/// Lines of a failing service's output shown with the error.
pub(crate) const TAIL_LINES: usize = 20;
/// Lines shown with a crash loop.
const CRASH_TAIL: usize = 5;
/// How often zombies of orphaned descendants are looked for besides SIGCHLD (a backstop: each
/// exit of a child is reaped as its signal arrives).
const REAP_EVERY: Duration = Duration::from_secs(2);
/// How long the stack's own files must be quiet before a change is applied: an editor's
/// truncate-then-write, or a `git checkout` of several files (microseconds to a few
/// milliseconds apart), is one change. watchexec's default; a half-written file that slips
/// through is invalid, changes nothing, and the write that completes it applies.
const CONFIG_DEBOUNCE: Duration = Duration::from_millis(50);

pub(crate) struct UpRequest<'a> {
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
    /// Loads the stack files again, for `devstack apply` and the watch of the stack's own
    /// files; `None`: this run keeps the stack it started with.
    pub reload: Option<apply::Reload>,
    /// Apply the stack files whenever they change (`up --no-watch-config` turns it off).
    pub watch_config: bool,
}

#[derive(Debug)]
pub(crate) enum UpOutcome {
    /// `wait`: everything is ready and left running.
    Ready { ports: HostPorts },
    /// Foreground run ended by a signal (or a shutdown command) after a clean stop.
    Stopped,
    /// The `then` task finished with this exit code, and the stack was stopped.
    Finished(i32),
}

/// Work to run once everything is ready, while devstack keeps supervising (`devstack test`'s
/// suite); the stack is stopped when it ends. Gets the host ports.
pub(crate) type Then =
    Box<dyn FnOnce(HostPorts) -> futures_util::future::BoxFuture<'static, i32> + Send>;

/// A host port that is taken by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    pub service: ServiceName,
    pub address: String,
    pub holder: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotReadyReport {
    pub service: ServiceName,
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
        .filter(|c| !stack.services.contains_key(c.service.as_str()))
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
        self.spawn(svc, false)
    }

    /// The unit of a container service whose dependencies are not ready yet, told to create its
    /// container now (see [`unit::container::ContainerSetup::create_ahead`]).
    fn create_ahead(&mut self, svc: &Service) {
        self.spawn(svc, true);
    }

    fn spawn(&mut self, svc: &Service, create_ahead: bool) -> &UnitHandle {
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
                    state_dir: self.state.path().parent().map(std::path::Path::to_path_buf),
                    create_ahead,
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
pub(crate) async fn up<R: ContainerRuntime>(
    rt: &R,
    req: UpRequest<'_>,
    logs: LogHandle,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, UpError> {
    up_with(rt, &Host, req, logs, interrupts).await
}

/// [`up`] with native services run by `host` (the engine's tests pass a fake).
pub(crate) async fn up_with<R: ContainerRuntime, H: ProcessHost>(
    rt: &R,
    host: &H,
    mut req: UpRequest<'_>,
    logs: LogHandle,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, UpError> {
    let stack = req.stack;
    let from_tasks = preflight(host, stack, &req.selected, req.wait, &req.state, &logs).await?;
    let state_dir = req.state.path().parent().map(std::path::Path::to_path_buf);
    let (mut tasks, checked) = task::Checks::new(state_dir.clone());
    tasks.begin_early(stack, &req.selected);
    let mut prepared = tokio::select! {
        p = prepare::prepare(rt, stack, &req.selected, &req.port_mode, req.build, &logs) => p?,
        _ = interrupts.recv() => return Err(UpError::Interrupted),
    };
    warnings(stack, &req.selected, &prepared, &logs).await;
    let has_processes = become_subreaper(host, stack, &req.selected);
    let watch_config = req.watch_config && req.reload.is_some();
    let watching = watch_specs(stack, &req.selected, req.watch, watch_config);
    let (watcher, changes) = watch(host, watching.clone(), &logs).await?;
    let redact = Redactor::new(stack.secret_values.iter().cloned());
    let (unit_tx, units_rx) = mpsc::unbounded_channel::<UnitEvent>();
    let (inputs, inputs_rx) = mpsc::unbounded_channel::<Input>();
    let (develop, rebuilt) = develop::Develop::new();
    let builds = std::mem::replace(&mut prepared.builds, prepare::Builds::none());
    let specs = kernel_specs(stack, &req.selected, &prepared.ports, &prepared.specs);
    let mut kernel = Kernel::with_specs(specs, req.wait);
    kernel.building(&builds.waiting.iter().cloned().collect::<Vec<_>>());
    let (commands, applies, snapshot, config_error) = handle::split(req.inbox.take());
    let units = Units {
        rt: rt.clone(),
        host: host.clone(),
        stack_name: stack.name.clone(),
        ports: prepared.ports.clone(),
        specs: prepared.specs,
        existing: prepared.existing,
        logs: logs.clone(),
        events: unit_tx,
        state: req.state.clone(),
        redact: redact.clone(),
        live: HashMap::new(),
    };
    let parts = dispatch::Parts {
        stack: stack.clone(),
        selected: req.selected.clone(),
        reload: req.reload.take(),
        watching,
        watch_services: req.watch,
        watch_config,
        config_error,
        rt: rt.clone(),
        host: host.clone(),
        logs,
        redact,
        wait: req.wait,
        ports: prepared.ports,
        kernel,
        units,
        snapshot,
        then: req.then.take(),
        inputs,
        builds,
        tasks,
        develop,
        from_tasks,
        own_files: state_dir,
        recorded_ports: req.port_mode.recorded_path(),
    };
    let sources = dispatch::Sources {
        units: units_rx,
        inputs: inputs_rx,
        checked,
        rebuilt,
        commands,
        applies,
        changes,
        interrupts,
        reaper: has_processes.then(reaper),
        _watcher: watcher,
    };
    dispatch::Engine::new(parts).run(sources).await
}

/// With native processes among `selected`, devstack adopts their orphans (to reap them);
/// whether there are any.
fn become_subreaper<H: ProcessHost>(host: &H, stack: &Stack, selected: &[String]) -> bool {
    let processes = selected
        .iter()
        .any(|s| !stack.services[s.as_str()].is_container());
    if processes {
        host.become_subreaper();
    }
    processes
}

/// devstack as subreaper: every SIGCHLD reaps at once (it never holds a zombie), a slow tick
/// is the backstop.
fn reaper() -> dispatch::Reaper {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let child_exits = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    dispatch::Reaper { tick, child_exits }
}

/// What must hold before anything is prepared: processes left to `up --wait` alone are
/// refused, every program is there (or made by a task: those services, returned, are checked
/// again at their start), and what a killed run left is ended.
async fn preflight<H: ProcessHost>(
    host: &H,
    stack: &Stack,
    selected: &[String],
    wait: bool,
    state: &StateFile,
    logs: &LogHandle,
) -> Result<std::collections::HashSet<String>, UpError> {
    let supervised: Vec<String> = selected
        .iter()
        .filter(|s| stack.services[s.as_str()].is_supervised_process())
        .map(|s| format!("`{s}`"))
        .collect();
    if wait && !supervised.is_empty() {
        return Err(UpError::Runtime(RuntimeError::Engine(format!(
            "`up --wait` cannot leave native processes running without devstack: {}; run `devstack up` in the foreground, or `up --wait` only the container services",
            supervised.join(", ")
        ))));
    }
    let missing = host.missing_programs(stack, selected, true);
    if !missing.is_empty() {
        return Err(UpError::MissingPrograms(missing));
    }
    let from_tasks = host
        .missing_programs(stack, selected, false)
        .into_iter()
        .map(|m| m.service)
        .collect();
    let processes: Vec<String> = selected
        .iter()
        .filter(|s| !stack.services[s.as_str()].is_container())
        .cloned()
        .collect();
    if !processes.is_empty() {
        host.end_leftovers(stack, &processes, state, logs).await;
    }
    Ok(from_tasks)
}

/// What to watch: every selected process with `watch`, every container with `develop.watch`
/// rules (with `services`), and the stack's own files (with `config`).
fn watch_specs(
    stack: &Stack,
    selected: &[String],
    services: bool,
    config: bool,
) -> Vec<crate::watch::WatchSpec> {
    let mut specs: Vec<crate::watch::WatchSpec> = Vec::new();
    for name in selected.iter().filter(|_| services) {
        let svc = &stack.services[name.as_str()];
        if !svc.is_container() {
            if let Some(w) = &svc.watch {
                specs.push(crate::watch::WatchSpec {
                    service: ServiceName::from(name.to_string()),
                    paths: w.paths.clone(),
                    ignore: w.ignore.clone(),
                    debounce: w.debounce,
                });
            }
            continue;
        }
        if svc.options.develop.is_empty() {
            continue;
        }
        // One watch per service: its rules' paths (a change is matched to its rule later).
        let mut paths: Vec<std::path::PathBuf> = Vec::new();
        for r in &svc.options.develop {
            if !paths.contains(&r.path) {
                paths.push(r.path.clone());
            }
        }
        specs.push(crate::watch::WatchSpec {
            service: ServiceName::from(name.clone()),
            paths,
            ignore: Vec::new(),
            debounce: crate::config::validate::DEFAULT_DEBOUNCE,
        });
    }
    let inputs = apply::inputs(stack);
    tracing::debug!("the stack's own files: {inputs:?}");
    if config && !inputs.is_empty() {
        specs.push(crate::watch::WatchSpec {
            service: ServiceName::from(apply::CONFIG_WATCH),
            paths: inputs,
            ignore: Vec::new(),
            debounce: CONFIG_DEBOUNCE,
        });
    }
    specs
}

/// A watcher and the changes it reports, when there is anything to watch.
type Watching = (
    Option<crate::watch::Watcher>,
    Option<mpsc::Receiver<crate::watch::FilesChanged>>,
);

/// Starts watching `specs`, devstack's own output file left out of them.
async fn watch<H: ProcessHost>(
    host: &H,
    mut specs: Vec<crate::watch::WatchSpec>,
    logs: &LogHandle,
) -> Result<Watching, UpError> {
    ignore_own_output(&host.own_output(), &mut specs, logs).await;
    if specs.is_empty() {
        return Ok((None, None));
    }
    let (w, rx) = host
        .watch(specs)
        .map_err(|e| UpError::Runtime(RuntimeError::Engine(format!("cannot watch files: {e}"))))?;
    Ok((w, Some(rx)))
}

/// Every selected service as the kernel is to run it, a container with its config hash (known
/// once its image is: a built one's comes with its build).
fn kernel_specs(
    stack: &Stack,
    selected: &[String],
    ports: &HostPorts,
    specs: &indexmap::IndexMap<String, crate::runtime::ContainerSpec>,
) -> indexmap::IndexMap<String, crate::kernel::Spec> {
    selected
        .iter()
        .map(|name| {
            let identity = specs
                .get(name)
                .and_then(|s| s.labels.get(crate::runtime::labels::CONFIG_HASH).cloned());
            let svc = &stack.services[name.as_str()];
            let spec = crate::kernel::Spec::of(svc, selected, ports, identity);
            (name.clone(), spec)
        })
        .collect()
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
