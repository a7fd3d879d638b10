//! The engine as a dispatcher: [`Engine`] owns the state of a run. Its `select!`
//! ([`Engine::next_event`]) only turns each source — units, probes and timers, task checks,
//! builds and rebuilds, handle commands, file changes, the suite, signals, the reaper — into one
//! [`Event`]; [`Engine::on_event`] turns that into the kernel's input (doing the mechanism it
//! needs: recording an instance, a task's hash, a new image's spec); the kernel decides; and
//! [`Engine::apply`] carries out each effect it returns. Every task the engine spawns is owned:
//! timers, task checks, rebuilds and syncs in one `JoinSet`, probes by their abort handles, the
//! suite by its join handle; all are cancelled, and the jobs awaited, when the run ends.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use super::apply::{self, ApplyRequest, Reload};
use super::develop::{self, Develop};
use super::handle::{self, ServiceStatus};
use super::prepare::{BuildDone, Builds};
use super::{now, probe, task, unix_ms, Then, Units, UpError, UpOutcome};
use super::{NotReadyReport, CRASH_TAIL};
use crate::config::ServiceName;
use crate::config::Stack;
use crate::event::{ServiceState, StackEvent};
use crate::kernel::{Command, Effect, Input, Kernel, Outcome};
use crate::logs::LogHandle;
use crate::plan::HostPorts;
use crate::redact::Redactor;
use crate::runtime::ContainerRuntime;
use crate::unit::{UnitCommand, UnitEvent};
use crate::watch::{FilesChanged, WatchSpec};

use super::host::ProcessHost;

mod live;

/// One thing that happened, from whichever source.
pub(super) enum Event {
    Unit(UnitEvent),
    /// Apply the stack files as they are now (`devstack apply`).
    Apply(ApplyRequest),
    /// From the engine's own jobs: probes, timers, syncs.
    Input(Input),
    Checked(task::Answer),
    Rebuilt(develop::Rebuilt),
    Built(BuildDone),
    Command(Command),
    Files(FilesChanged),
    SuiteEnded(i32),
    Interrupt,
    /// A child may have exited (SIGCHLD), or the backstop tick: reap orphans.
    Reap,
    /// A tracked job ended; nothing to tell.
    JobDone,
}

/// The receiving ends the engine waits on (kept apart from [`Engine`] so that waiting borrows
/// them while the handlers borrow the engine).
pub(super) struct Sources<'i> {
    pub units: mpsc::UnboundedReceiver<UnitEvent>,
    pub inputs: mpsc::UnboundedReceiver<Input>,
    pub checked: mpsc::UnboundedReceiver<task::Answer>,
    pub rebuilt: mpsc::UnboundedReceiver<develop::Rebuilt>,
    pub commands: Option<mpsc::UnboundedReceiver<Command>>,
    pub applies: Option<mpsc::UnboundedReceiver<ApplyRequest>>,
    pub changes: Option<mpsc::Receiver<FilesChanged>>,
    pub interrupts: &'i mut mpsc::UnboundedReceiver<()>,
    pub reaper: Option<Reaper>,
    /// Watches the files until the run ends.
    pub _watcher: Option<crate::watch::Watcher>,
}

/// devstack as subreaper: every SIGCHLD, and a slow tick as a backstop.
pub(super) struct Reaper {
    pub tick: tokio::time::Interval,
    pub child_exits: Option<tokio::signal::unix::Signal>,
}

/// What the engine knows of a service's current instance: pid, container, start (ms).
type Instance = (Option<u32>, Option<String>, u64);

/// Everything one run needs, set up by [`super::up_with`].
pub(super) struct Parts<R, H> {
    /// The stack as last applied (a removed service stays until it is gone).
    pub stack: Stack,
    pub selected: Vec<String>,
    pub reload: Option<Reload>,
    /// What is watched now, to know when a new config changes it.
    pub watching: Vec<WatchSpec>,
    pub watch_services: bool,
    pub watch_config: bool,
    /// Why the stack files are not applied, for the handles.
    pub config_error: Option<tokio::sync::watch::Sender<Option<String>>>,
    pub rt: R,
    pub host: H,
    pub logs: LogHandle,
    pub redact: Redactor,
    pub wait: bool,
    pub ports: HostPorts,
    pub kernel: Kernel,
    pub units: Units<R, H>,
    /// Where the handles read the state of every service from.
    pub snapshot: Option<tokio::sync::watch::Sender<Vec<ServiceStatus>>>,
    pub then: Option<Then>,
    pub inputs: mpsc::UnboundedSender<Input>,
    pub builds: Builds,
    pub tasks: task::Checks,
    pub develop: Develop,
    pub from_tasks: HashSet<String>,
    pub own_files: Option<PathBuf>,
    /// An instance's `ports.json`: a port a live edit adds is recorded there at once.
    pub recorded_ports: Option<PathBuf>,
}

pub(super) struct Engine<R, H> {
    p: Parts<R, H>,
    /// A new watcher (after a config changed what is watched), for the loop to take.
    rewatch: Option<super::Watching>,
    /// Why the stack files as they are now are not applied.
    config_error: Option<String>,
    /// The loader's warnings at the last apply (each said once).
    config_warnings: Vec<String>,
    /// The probe, or then the seed, running for each service.
    probes: HashMap<String, AbortHandle>,
    jobs: JoinSet<()>,
    instances: HashMap<String, Instance>,
    suite: Option<JoinHandle<i32>>,
    suite_code: Option<i32>,
    /// The first build failure: it ends the run as the error it is.
    build_failure: Option<UpError>,
    finished: Option<Outcome>,
}

impl<R: ContainerRuntime, H: ProcessHost> Engine<R, H> {
    pub(super) fn new(parts: Parts<R, H>) -> Self {
        Self {
            p: parts,
            rewatch: None,
            config_error: None,
            config_warnings: Vec::new(),
            probes: HashMap::new(),
            jobs: JoinSet::new(),
            instances: HashMap::new(),
            suite: None,
            suite_code: None,
            build_failure: None,
            finished: None,
        }
    }

    /// Runs until the kernel says the run is over; then ends it (see [`Engine::end`]).
    pub(super) async fn run(mut self, mut src: Sources<'_>) -> Result<UpOutcome, UpError> {
        let first = self.p.kernel.begin(now());
        self.turn(first).await;
        self.create_ahead();
        let outcome = loop {
            if let Some(o) = self.finished.take() {
                break o;
            }
            let event = self.next_event(&mut src).await;
            if let Some(input) = self.on_event(event).await {
                let effects = self.p.kernel.handle(now(), input);
                self.turn(effects).await;
            }
            if let Some((watcher, changes)) = self.rewatch.take() {
                src._watcher = watcher;
                src.changes = changes;
            }
        };
        drop(src);
        self.end(outcome).await
    }

    /// The containers of services that wait for their dependencies are created now, beside
    /// those starts, so that each start is only a start once its dependencies are ready. Not
    /// for a service built here (its image may still change) or whose start waits on anything
    /// else (a build, a task check).
    fn create_ahead(&mut self) {
        let waiting: Vec<String> = self
            .p
            .kernel
            .views()
            .filter(|v| *v.state == ServiceState::Waiting && v.detail.is_none())
            .map(|v| v.service.to_string())
            .collect();
        for name in waiting {
            let svc = &self.p.stack.services[name.as_str()];
            let built = svc.options.build.is_some() || self.p.builds.waiting.contains(&name);
            if svc.is_container() && !built && self.p.units.specs.contains_key(&name) {
                let svc = svc.clone();
                self.p.units.create_ahead(&svc);
            }
        }
    }

    /// Carries out one answer of the kernel, then shows the new state.
    async fn turn(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            self.apply(effect).await;
        }
        self.start_builds_after_tasks();
        self.publish_snapshot();
    }

    /// Waits for the next event of any source. Nothing else happens here.
    async fn next_event(&mut self, src: &mut Sources<'_>) -> Event {
        let building = !self.p.builds.waiting.is_empty();
        tokio::select! {
            Some(ev) = src.units.recv() => Event::Unit(ev),
            Some(i) = src.inputs.recv() => Event::Input(i),
            Some(a) = src.checked.recv() => Event::Checked(a),
            Some(r) = src.rebuilt.recv() => Event::Rebuilt(r),
            Some(done) = self.p.builds.done.recv(), if building => Event::Built(done),
            Some(c) = recv_command(&mut src.commands) => Event::Command(c),
            Some(a) = recv_command(&mut src.applies) => Event::Apply(a),
            Some(c) = recv_change(&mut src.changes) => Event::Files(c),
            code = suite_end(&mut self.suite) => Event::SuiteEnded(code),
            Some(()) = src.interrupts.recv() => Event::Interrupt,
            () = reap_due(&mut src.reaper) => Event::Reap,
            Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => Event::JobDone,
        }
    }

    /// The kernel's input for an event, after the mechanism it needs; `None` when the kernel
    /// has nothing to decide.
    async fn on_event(&mut self, event: Event) -> Option<Input> {
        match event {
            Event::Unit(ev) => Some(self.on_unit(ev)),
            Event::Input(i) => Some(i),
            Event::Checked(answer) => Some(self.p.tasks.answer(answer)),
            Event::Rebuilt(r) => self.on_rebuilt(r).await,
            Event::Built(done) => Some(self.on_built(done)),
            Event::Command(c) => Some(Input::Command(c)),
            Event::Apply(req) => self.on_apply(req).await,
            Event::Files(c) => self.on_files(c).await,
            Event::SuiteEnded(code) => {
                self.suite = None;
                self.suite_code = Some(code);
                Some(Input::Command(Command::Shutdown))
            }
            Event::Interrupt => {
                if let Some(s) = self.suite.take() {
                    // The suite is a child of ours: it ends with the stack.
                    s.abort();
                }
                Some(Input::Interrupt)
            }
            Event::Reap => {
                self.p.host.reap_orphans().await;
                None
            }
            Event::JobDone => None,
        }
    }

    fn on_unit(&mut self, ev: UnitEvent) -> Input {
        let redact = &self.p.redact;
        match ev {
            UnitEvent::Started {
                service,
                epoch,
                pid,
                container,
                detail,
            } => {
                let instance = (pid, container.clone(), unix_ms());
                self.instances.insert(service.to_string(), instance);
                let detail = redact.apply(&detail);
                Input::Started {
                    service,
                    epoch,
                    pid,
                    container,
                    detail,
                }
            }
            UnitEvent::StartFailed {
                service,
                epoch,
                reason,
            } => Input::StartFailed {
                service,
                epoch,
                reason: redact.apply(&reason),
            },
            UnitEvent::Exited {
                service,
                epoch,
                code,
                how,
            } => {
                let clean = code == 0 && how.is_none();
                self.p.tasks.exited(&service, epoch, clean);
                Input::Exited {
                    service,
                    epoch,
                    code,
                    how,
                }
            }
            UnitEvent::LogMatched { service, epoch } => Input::Ready { service, epoch },
        }
    }

    /// A build ended: the new image's specs for its services, and the kernel decides what
    /// their starts do.
    fn on_built(&mut self, done: BuildDone) -> Input {
        for s in &done.services {
            self.p.builds.waiting.remove(s.as_str());
        }
        let failure = match done.result {
            Ok(id) => {
                for s in &done.services {
                    let svc = &self.p.stack.services[s.as_str()];
                    let name = &self.p.stack.name;
                    if let Some(spec) = crate::plan::container_spec(name, svc, &self.p.ports, &id) {
                        self.p.kernel.identify(s, config_hash(&spec));
                        self.p.units.specs.insert(s.to_string(), spec);
                    }
                }
                None
            }
            Err(e) => {
                let reason = match &e {
                    UpError::Build(f) => {
                        format!("the build of `{}` failed: {}", f.image, f.message)
                    }
                    UpError::Runtime(r) => format!("the image build failed: {r}"),
                    _ => "the image build failed".to_string(),
                };
                self.build_failure.get_or_insert(e);
                Some(reason)
            }
        };
        Input::ImageBuilt {
            services: ServiceName::list(&done.services),
            failure,
        }
    }

    /// A `develop.watch` rebuild ended: a changed image is the kernel's to recreate from.
    async fn on_rebuilt(&mut self, (service, result): develop::Rebuilt) -> Option<Input> {
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                let text = develop::rebuild_failed(&e);
                let warning = StackEvent::warning(Some(&service), text);
                self.p.logs.publish(warning).await;
                return None;
            }
        };
        let svc = &self.p.stack.services[service.as_str()];
        let spec = crate::plan::container_spec(&self.p.stack.name, svc, &self.p.ports, &id)?;
        if self.p.units.specs.get(&service).map(config_hash) == Some(config_hash(&spec)) {
            return None;
        }
        let image = spec.image.clone();
        self.p.kernel.identify(&service, config_hash(&spec));
        self.p.units.specs.insert(service.clone(), spec);
        Some(Input::ImageRebuilt {
            service: ServiceName::from(service),
            image,
        })
    }

    /// Changed files of one service: devstack's own files left out; a container with
    /// `develop.watch` rules follows them.
    async fn on_files(&mut self, c: FilesChanged) -> Option<Input> {
        if c.service == apply::CONFIG_WATCH {
            let req = ApplyRequest {
                dry_run: false,
                reply: None,
            };
            return self.on_apply(req).await;
        }
        let stack = &self.p.stack;
        let own = self.p.own_files.as_ref();
        // devstack's own files (state, logs) may sit inside a watched tree.
        let paths: Vec<String> = c
            .paths
            .iter()
            .filter(|p| own.is_none_or(|o| !p.starts_with(o)))
            .map(|p| {
                p.strip_prefix(&stack.root)
                    .unwrap_or(p)
                    .display()
                    .to_string()
            })
            .collect();
        if paths.is_empty() {
            return None;
        }
        let svc = &stack.services[c.service.as_str()];
        if !svc.is_container() || svc.options.develop.is_empty() {
            return Some(Input::FilesChanged {
                service: c.service,
                paths,
            });
        }
        let container = self
            .instances
            .get(c.service.as_str())
            .and_then(|i| i.1.clone());
        let p = &self.p;
        let (rt, logs, inputs) = (&p.rt, &p.logs, &p.inputs);
        p.develop
            .on_change(
                rt,
                stack,
                &c.service,
                &c.paths,
                container,
                logs,
                inputs,
                &mut self.jobs,
            )
            .await
    }

    /// Carries out one effect.
    async fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Start { service, epoch } => self.start(service, epoch, false).await,
            Effect::Recreate { service, epoch } => self.start(service, epoch, true).await,
            Effect::Probe {
                service,
                epoch,
                timeout,
            } => self.probe(service, epoch, timeout),
            Effect::Stop { service, grace } => {
                self.end_probe(&service);
                self.p.units.send(&service, UnitCommand::Stop { grace });
            }
            Effect::Kill { service } => {
                self.end_probe(&service);
                self.p.units.send(&service, UnitCommand::Kill);
            }
            Effect::ArmTimer {
                service,
                epoch,
                after,
            } => {
                let tx = self.p.inputs.clone();
                self.jobs.spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Input::Timer { service, epoch });
                });
            }
            Effect::Seed { service, epoch } => self.seed(service, epoch),
            Effect::CheckTask { service, epoch } => {
                let svc = &self.p.stack.services[service.as_str()];
                self.p.tasks.ask(svc, epoch, &mut self.jobs);
            }
            Effect::Remove { service } => self.remove(&service).await,
            Effect::Publish(event) => self.publish(event).await,
            Effect::Finish(o) => self.finished = Some(o),
        }
    }

    fn end_probe(&mut self, service: &str) {
        if let Some(p) = self.probes.remove(service) {
            p.abort();
        }
    }

    /// Hands a start to the service's unit; with `recreate`, a new unit (and container, from
    /// the rebuilt image) replaces the old one first.
    async fn start(&mut self, service: ServiceName, epoch: u64, recreate: bool) {
        self.end_probe(&service);
        if let Some(reason) = self.program_not_made(&service) {
            let _ = self.p.inputs.send(Input::StartFailed {
                service,
                epoch,
                reason,
            });
            return;
        }
        if recreate {
            self.replace_unit(&service).await;
        }
        let svc = &self.p.stack.services[service.as_str()];
        self.p.units.get(svc).send(UnitCommand::Start { epoch });
    }

    /// A program a task was to create and did not: said as such, not as an exit 127.
    fn program_not_made(&self, service: &str) -> Option<String> {
        if !self.p.from_tasks.contains(service) {
            return None;
        }
        let stack = &self.p.stack;
        let m = self
            .p
            .host
            .missing_programs(stack, &[service.to_string()], false)
            .pop()?;
        let from = m
            .task
            .map(|t| format!(" (task `{t}` was to create it)"))
            .unwrap_or_default();
        Some(format!("`{}` is not there{from}", m.program))
    }

    /// Drops the unit of `service` (its container is stopped by now) and lets the next one find
    /// that container as it is, to replace it.
    async fn replace_unit(&mut self, service: &str) {
        if let Some((handle, task)) = self.p.units.live.remove(service) {
            drop(handle);
            let _ = task.await;
        }
        let old = self.instances.get(service).and_then(|i| i.1.clone());
        self.p.units.existing.retain(|c| c.service != service);
        if let Some(id) = old {
            if let Ok(info) = self.p.rt.inspect(&id).await {
                self.p.units.existing.push(info);
            }
        }
    }

    fn probe(&mut self, service: ServiceName, epoch: u64, timeout: std::time::Duration) {
        let container = self
            .instances
            .get(service.as_str())
            .and_then(|i| i.1.clone());
        let p = &self.p;
        let svc = &p.stack.services[service.as_str()];
        let (rt, ports, tx) = (p.rt.clone(), p.ports.clone(), p.inputs.clone());
        let Some(task) = probe::spawn(rt, &p.stack.name, svc, epoch, timeout, container, ports, tx)
        else {
            return;
        };
        if let Some(old) = self.probes.insert(service.into_string(), task) {
            old.abort();
        }
    }

    /// Runs the seed of this start (kept with the probes: a stop ends it the same way).
    fn seed(&mut self, service: ServiceName, epoch: u64) {
        let p = &self.p;
        let run = super::seed::SeedRun {
            rt: p.rt.clone(),
            project: p.stack.name.clone(),
            svc: p.stack.services[service.as_str()].clone(),
            epoch,
            container: self
                .instances
                .get(service.as_str())
                .and_then(|i| i.1.clone()),
            ports: p.ports.clone(),
            state_dir: p.own_files.clone(),
            logs: Some(p.logs.clone()),
        };
        let Some(task) = super::seed::spawn(run, p.inputs.clone()) else {
            return;
        };
        if let Some(old) = self.probes.insert(service.into_string(), task) {
            old.abort();
        }
    }

    /// Publishes an event, with what only the engine knows filled in (a probe's description,
    /// the last lines); once everything is ready, starts the suite or says how to stop.
    async fn publish(&mut self, mut event: StackEvent) {
        let logs = &self.p.logs;
        match &mut event {
            StackEvent::NotReady {
                service,
                probe,
                tail,
                ..
            } => {
                *probe = super::describe_probe(&self.p.stack, service, &self.p.ports);
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
        if !all_ready || self.p.wait {
            return;
        }
        match self.p.then.take() {
            Some(then) => self.suite = Some(tokio::spawn(then(self.p.ports.clone()))),
            None => logs.event("devstack", "press Ctrl-C to stop").await,
        }
    }

    /// Builds that waited for tasks start once those have completed.
    fn start_builds_after_tasks(&mut self) {
        if self.p.builds.after_tasks.is_empty() {
            return;
        }
        let completed: HashMap<&str, bool> = self
            .p
            .kernel
            .views()
            .map(|v| (v.service, *v.state == crate::event::ServiceState::Completed))
            .collect();
        let done = |t: &str| completed.get(t).copied().unwrap_or(false);
        self.p.builds.start_ready(&self.p.rt, &self.p.logs, &done);
    }

    /// The handles' snapshot of every service.
    fn publish_snapshot(&self) {
        let Some(tx) = &self.p.snapshot else {
            return;
        };
        tx.send_replace(self.p.kernel.views().map(|v| self.status(v)).collect());
    }

    fn status(&self, v: crate::kernel::NodeView<'_>) -> ServiceStatus {
        let inst = self.instances.get(v.service);
        let ports = self.p.ports.0.get(v.service).map(|ps| {
            ps.iter()
                .map(|p| handle::PortView {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: p.protocol,
                })
                .collect()
        });
        ServiceStatus {
            service: v.service.into(),
            kind: self.p.stack.services[v.service].kind_of(),
            state: v.state.clone(),
            detail: v.detail.map(str::to_string),
            restarts: v.restarts,
            epoch: v.epoch,
            running: v.running,
            pid: inst.and_then(|i| i.0).filter(|_| v.running),
            container: inst.and_then(|i| i.1.clone()),
            started_at_ms: inst.map(|i| i.2).filter(|_| v.running),
            ports: ports.unwrap_or_default(),
        }
    }

    /// Ends the run: every job and probe cancelled, the units closed (or dropped at a third
    /// interrupt), the log flushed; the outcome, or the error it is.
    async fn end(mut self, outcome: Outcome) -> Result<UpOutcome, UpError> {
        self.p.builds.abort();
        for (_, p) in self.probes.drain() {
            p.abort();
        }
        self.jobs.shutdown().await;
        let Parts {
            units,
            logs,
            redact,
            stack,
            ports,
            ..
        } = self.p;
        if matches!(outcome, Outcome::Abandoned) {
            // Third interrupt: do not wait. Process groups die with their units.
            drop(units);
        } else {
            // With `Ready`, containers stay as they are; their units end without touching them.
            units.close().await;
        }
        logs.flush().await;
        if let Some(failure) = self.build_failure {
            return Err(failure);
        }
        match outcome {
            Outcome::Ready => Ok(UpOutcome::Ready { ports }),
            Outcome::Stopped => Ok(match self.suite_code {
                Some(code) => UpOutcome::Finished(code),
                None => UpOutcome::Stopped,
            }),
            Outcome::NotReady { service, reason } => {
                let tail = logs.tail(&service).await;
                Err(UpError::NotReady(Box::new(NotReadyReport {
                    probe: redact.apply(&super::describe_probe(&stack, &service, &ports)),
                    reason: redact.apply(&reason),
                    tail,
                    service,
                })))
            }
            Outcome::Interrupted | Outcome::Abandoned => Err(UpError::Interrupted),
        }
    }
}

fn config_hash(spec: &crate::runtime::ContainerSpec) -> Option<String> {
    spec.labels
        .get(crate::runtime::labels::CONFIG_HASH)
        .cloned()
}

async fn recv_command<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_change(rx: &mut Option<mpsc::Receiver<FilesChanged>>) -> Option<FilesChanged> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn suite_end(suite: &mut Option<JoinHandle<i32>>) -> i32 {
    match suite.as_mut() {
        Some(s) => s.await.unwrap_or(1),
        None => std::future::pending().await,
    }
}

async fn reap_due(reaper: &mut Option<Reaper>) {
    let Some(r) = reaper.as_mut() else {
        return std::future::pending().await;
    };
    match r.child_exits.as_mut() {
        Some(sig) => {
            tokio::select! {
                _ = r.tick.tick() => {}
                Some(()) = sig.recv() => {}
            }
        }
        None => {
            r.tick.tick().await;
        }
    }
}
