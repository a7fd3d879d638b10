//! The lifecycle kernel: every service's state for the whole life of the stack — start order,
//! readiness, restart policy with backoff and crash loops, coalesced reloads, dependents-first
//! stop and Ctrl-C escalation. PURE: events and `now` in, effects out. No tokio, no files, no
//! clock; the engine carries the effects out and feeds back what happened.
//!
//! The kernel knows whether start-up is over. Before, a failure ends the run (`up --wait` fails,
//! and what was started is stopped); after, a failure is the state of its service, shown and
//! recoverable, and every other service keeps running.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::config::{Condition, RestartPolicy, ServiceName};
use crate::event::{ChangeAction, ConfigChange, ServiceState, StackEvent};

pub(crate) mod plan;
pub(crate) use plan::Spec;

/// First pause before restarting a crashed service; doubles up to [`BACKOFF_CAP`].
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A run this long counts as stable: the backoff starts over.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Crashes within [`CRASH_WINDOW`] that make a crash loop.
pub(crate) use crate::event::CRASH_LOOP_COUNT;
pub(crate) const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Reloads within [`RELOAD_LOOP_WINDOW`], each caused by the same file, that make a reload loop.
pub(crate) const RELOAD_LOOP_COUNT: usize = 5;
pub(crate) const RELOAD_LOOP_WINDOW: Duration = Duration::from_secs(30);
/// A change counts towards a reload loop when it comes this soon after the service started,
/// beyond the watch's own debounce: a file written at every start (`devstack up > up.log` in a
/// watched folder) changes at once, while a person, or an editor's autosave, edits later.
pub(crate) const RELOAD_LOOP_LAG: Duration = Duration::from_millis(500);

/// The next pause after `failures` crashes in a row. Pure.
pub(crate) fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_CAP)
}

/// Whether an instance that exited with `code` is started again by `policy`. Pure.
pub(crate) fn restarts(policy: RestartPolicy, code: i64) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Always => true,
    }
}

/// A request from a person or a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Restart(ServiceName),
    Stop(ServiceName),
    /// Starts the service, and first what it depends on.
    Start(ServiceName),
    /// Stops everything in reverse dependency order and ends the run.
    Shutdown,
}

/// What happened, as the engine tells it. `epoch` names one start of a service: anything about
/// an older instance is stale and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// The instance runs.
    Started {
        service: ServiceName,
        epoch: u64,
        pid: Option<u32>,
        container: Option<String>,
        detail: String,
    },
    /// The instance could not be started (no container, a port still held, spawn failed).
    StartFailed {
        service: ServiceName,
        epoch: u64,
        reason: String,
    },
    Ready {
        service: ServiceName,
        epoch: u64,
    },
    /// The probe gave up (its timeout passed).
    ProbeFailed {
        service: ServiceName,
        epoch: u64,
        reason: String,
    },
    /// The instance is gone: the whole process group, or the container. `how` is set when it
    /// ended because it was asked to (`stopped (exit code 0)`, `killed after ...`).
    Exited {
        service: ServiceName,
        epoch: u64,
        code: i64,
        how: Option<String>,
    },
    /// A timer armed by [`Effect::ArmTimer`] ran out.
    Timer {
        service: ServiceName,
        epoch: u64,
    },
    Command(Command),
    /// Files of the service changed (already debounced); paths relative to the stack folder.
    FilesChanged {
        service: ServiceName,
        paths: Vec<String>,
    },
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupt,
    /// The answer to [`Effect::CheckTask`] for that start.
    TaskChecked {
        service: ServiceName,
        epoch: u64,
        verdict: TaskVerdict,
    },
    /// A build these services wait for ended: built, or failed for `failure`.
    ImageBuilt {
        services: Vec<ServiceName>,
        failure: Option<String>,
    },
    /// The stack files changed: every service as it is to run now (see [`plan::diff`]).
    Desired(IndexMap<String, Spec>),
    /// The answer to [`Effect::Seed`] for that start: done (it ran, or was found done), or
    /// failed for this reason.
    Seeded {
        service: ServiceName,
        epoch: u64,
        result: Result<SeedDone, String>,
    },
    /// A service's image was built again (`develop.watch` rebuild) and differs: its container
    /// must be recreated from it.
    ImageRebuilt {
        service: ServiceName,
        image: String,
    },
}

/// What a task's up-to-date check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskVerdict {
    /// Nothing it depends on changed since its last successful run: it completes unrun.
    UpToDate { reason: String, after_ms: u64 },
    /// It runs.
    Run,
}

/// A seed that is done for the data the service has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeedDone {
    /// It ran now (else it had run for this data and these sources before).
    pub ran: bool,
    /// Why it ran or was skipped, as a person reads it.
    pub reason: String,
    pub after_ms: u64,
}

/// Why a start has not reached its unit yet: a state detail a person can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Its image is being built.
    Image,
    /// Its task's up-to-date check runs.
    Check,
}

impl Pending {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Pending::Image => "waiting for image",
            Pending::Check => "checking task",
        }
    }
}

/// Where a built service's image stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Image {
    /// There (or not built by devstack).
    Ready,
    Building,
    /// The build failed: every start fails with this reason.
    Failed(String),
}

/// How a run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything is ready and is left running (`up --wait`).
    Ready,
    /// Stopped after start-up (Ctrl-C, SIGTERM, a finished suite, a `down` from elsewhere).
    Stopped,
    /// Interrupted during start-up; what was started has been stopped.
    Interrupted,
    /// Start-up failed; what was started has been stopped.
    NotReady {
        service: ServiceName,
        reason: String,
    },
    /// A third interrupt: ends at once, without waiting for anything.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    Start {
        service: ServiceName,
        epoch: u64,
    },
    /// Run the service's probe until ready or `timeout`; report `Ready` or `ProbeFailed`.
    Probe {
        service: ServiceName,
        epoch: u64,
        timeout: Duration,
    },
    /// Stop signal, `grace`, SIGKILL; report `Exited` once everything of it is gone.
    Stop {
        service: ServiceName,
        grace: Duration,
    },
    /// SIGKILL now, even while a graceful stop is under way.
    Kill {
        service: ServiceName,
    },
    ArmTimer {
        service: ServiceName,
        epoch: u64,
        after: Duration,
    },
    /// Run the service's seed unless it is done for its data; answer with [`Input::Seeded`].
    Seed {
        service: ServiceName,
        epoch: u64,
    },
    /// Check whether the task is up to date; answer with [`Input::TaskChecked`].
    CheckTask {
        service: ServiceName,
        epoch: u64,
    },
    /// Replace the service's container with one from its rebuilt image, then start it.
    Recreate {
        service: ServiceName,
        epoch: u64,
    },
    /// The service is gone from the stack file and has stopped: drop its unit (a container is
    /// removed, its volumes kept).
    Remove {
        service: ServiceName,
    },
    Publish(StackEvent),
    Finish(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    StartingUp,
    Up,
    ShuttingDown,
}

#[derive(Debug, Clone)]
struct Node {
    /// What the stack file says, as of the last applied config.
    spec: Spec,
    state: ServiceState,
    epoch: u64,
    /// An instance of the current epoch exists (from `Start` until `Exited`/`StartFailed`).
    running: bool,
    /// Stopping in order to start again, for this reason.
    after_stop: Option<String>,
    /// A person stopped it: file changes leave it alone until it is started again.
    held: bool,
    failures: u32,
    crashes: VecDeque<Instant>,
    started_at: Option<Instant>,
    first_start: Option<Instant>,
    probe_started: Option<Instant>,
    ever_ready: bool,
    restarts: u32,
    reloads: VecDeque<(Instant, Vec<String>)>,
    ignored_paths: Vec<String>,
    image: Image,
    /// Its container must be recreated at its next start (a rebuilt image).
    recreate: bool,
    /// A start that has not reached the unit yet, and why.
    pending: Option<Pending>,
    /// Gone from the stack file: stopped, then removed.
    removing: bool,
}

impl Node {
    fn new(spec: Spec) -> Self {
        Node {
            spec,
            state: ServiceState::Waiting,
            epoch: 0,
            running: false,
            after_stop: None,
            held: false,
            failures: 0,
            crashes: VecDeque::new(),
            started_at: None,
            first_start: None,
            probe_started: None,
            ever_ready: false,
            restarts: 0,
            reloads: VecDeque::new(),
            ignored_paths: Vec::new(),
            image: Image::Ready,
            recreate: false,
            pending: None,
            removing: false,
        }
    }
}

/// One service as the kernel sees it, for `ps` and the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeView<'a> {
    pub service: &'a str,
    pub state: &'a ServiceState,
    pub restarts: u32,
    pub running: bool,
    pub started_at: Option<Instant>,
    /// Which start of the service this is; a restart gives a higher one.
    pub epoch: u64,
    /// What a start is waiting for (`waiting for image`, `checking task`), or why it cannot
    /// happen (`build failed`).
    pub detail: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    nodes: IndexMap<String, Node>,
    phase: Phase,
    outcome: Option<Outcome>,
    interrupts: u32,
    leave_running: bool,
    began: Option<Instant>,
    finished: bool,
}

impl Kernel {
    #[cfg(test)]
    /// `selected`: the services to run, their dependencies included. With `leave_running`, the
    /// run finishes as [`Outcome::Ready`] once everything is ready (`up --wait`).
    pub(crate) fn new(
        stack: &crate::config::Stack,
        selected: &[String],
        leave_running: bool,
    ) -> Self {
        let none = crate::plan::HostPorts::default();
        let specs = selected
            .iter()
            .filter_map(|name| {
                let svc = stack.services.get(name)?;
                Some((name.clone(), Spec::of(svc, selected, &none, None)))
            })
            .collect();
        Self::with_specs(specs, leave_running)
    }

    /// A kernel for these services, as [`Spec::of`] makes them.
    pub(crate) fn with_specs(specs: IndexMap<String, Spec>, leave_running: bool) -> Self {
        Self {
            nodes: specs
                .into_iter()
                .map(|(name, spec)| (name, Node::new(spec)))
                .collect(),
            phase: Phase::StartingUp,
            outcome: None,
            interrupts: 0,
            leave_running,
            began: None,
            finished: false,
        }
    }

    /// Whether a new config can still be applied (not once the stack is stopping).
    pub(crate) fn follows_config(&self) -> bool {
        self.phase != Phase::ShuttingDown && !self.finished
    }

    /// The config hash a container runs with now (known once its image is built or rebuilt):
    /// what the next config plan compares with.
    pub(crate) fn identify(&mut self, service: &str, identity: Option<String>) {
        if let Some(n) = self.nodes.get_mut(service) {
            n.spec.identity = identity;
        }
    }

    #[cfg(test)]
    pub(crate) fn is_starting_up(&self) -> bool {
        self.phase == Phase::StartingUp
    }

    pub(crate) fn state(&self, service: &str) -> Option<&ServiceState> {
        self.nodes.get(service).map(|n| &n.state)
    }

    #[cfg(test)]
    pub(crate) fn epoch(&self, service: &str) -> Option<u64> {
        self.nodes.get(service).map(|n| n.epoch)
    }

    pub(crate) fn views(&self) -> impl Iterator<Item = NodeView<'_>> {
        self.nodes.iter().map(|(k, n)| NodeView {
            service: k,
            state: &n.state,
            restarts: n.restarts,
            running: n.running,
            started_at: n.started_at,
            epoch: n.epoch,
            detail: match (&n.pending, &n.image) {
                (Some(p), _) => Some(p.detail()),
                (None, Image::Failed(_)) => Some("build failed"),
                _ => None,
            },
        })
    }

    /// These services' images are being built: their starts wait for [`Input::ImageBuilt`].
    pub(crate) fn building(&mut self, services: &[String]) {
        for s in services {
            if let Some(n) = self.nodes.get_mut(s) {
                n.image = Image::Building;
            }
        }
    }

    /// Starts what can start right away.
    pub(crate) fn begin(&mut self, now: Instant) -> Vec<Effect> {
        self.began = Some(now);
        let mut out = Vec::new();
        for (name, n) in &self.nodes {
            out.push(Effect::Publish(StackEvent::State {
                service: ServiceName::from(name.clone()),
                state: n.state.clone(),
            }));
        }
        self.schedule(now, &mut out);
        self.check_all_ready(now, &mut out);
        out
    }

    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match input {
            Input::Started {
                service,
                epoch,
                pid,
                container,
                detail,
            } => self.on_started(now, &service, epoch, pid, container, detail, &mut out),
            Input::StartFailed {
                service,
                epoch,
                reason,
            } => self.on_start_failed(&service, epoch, reason, &mut out),
            Input::Ready { service, epoch } => self.on_ready(now, &service, epoch, &mut out),
            Input::ProbeFailed {
                service,
                epoch,
                reason,
            } => self.on_probe_failed(&service, epoch, reason, &mut out),
            Input::Exited {
                service,
                epoch,
                code,
                how,
            } => self.on_exited(now, &service, epoch, code, how, &mut out),
            Input::Timer { service, epoch } => {
                let due = self.nodes.get(service.as_str()).is_some_and(|n| {
                    n.epoch == epoch && matches!(n.state, ServiceState::Backoff { .. })
                });
                if due && self.phase != Phase::ShuttingDown {
                    self.start(now, &service, &mut out);
                }
            }
            Input::Command(c) => self.on_command(now, c, &mut out),
            Input::FilesChanged { service, paths } => {
                self.on_files_changed(now, &service, paths, &mut out)
            }
            Input::Interrupt => self.on_interrupt(&mut out),
            Input::TaskChecked {
                service,
                epoch,
                verdict,
            } => self.on_task_checked(&service, epoch, verdict, &mut out),
            Input::ImageBuilt { services, failure } => {
                self.on_image_built(now, &services, failure, &mut out)
            }
            Input::Desired(specs) => self.on_desired(now, specs, &mut out),
            Input::Seeded {
                service,
                epoch,
                result,
            } => self.on_seeded(now, &service, epoch, result, &mut out),
            Input::ImageRebuilt { service, image } => {
                if let Some(n) = self.nodes.get_mut(service.as_str()) {
                    n.recreate = true;
                }
                self.on_files_changed(now, &service, vec![format!("image `{image}`")], &mut out)
            }
        }
        self.remove_stopped(&mut out);
        if self.phase != Phase::ShuttingDown {
            self.stop_removed(&mut out);
            self.schedule(now, &mut out);
            self.check_all_ready(now, &mut out);
        } else {
            self.cascade(&mut out);
        }
        out
    }

    /// What applying `desired` would change, service by service (see [`plan::diff`]).
    pub(crate) fn plan(&self, desired: &IndexMap<String, Spec>) -> Vec<ConfigChange> {
        let current: IndexMap<String, &Spec> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.removing)
            .map(|(k, n)| (k.clone(), &n.spec))
            .collect();
        plan::diff(&current, desired)
    }

    /// A new config: its plan is published, then carried out. Removed services stop
    /// (dependents first) and go; new ones wait for their dependencies like any start; changed
    /// ones stop and start again on a new unit (their next start, when a person stopped them);
    /// every other service takes its new settings in place. During shutdown it is ignored.
    fn on_desired(
        &mut self,
        now: Instant,
        mut desired: IndexMap<String, Spec>,
        out: &mut Vec<Effect>,
    ) {
        if self.phase == Phase::ShuttingDown {
            return;
        }
        let changes = self.plan(&desired);
        out.push(Effect::Publish(StackEvent::ConfigApplied {
            changes: changes.clone(),
            dry_run: false,
        }));
        for c in changes {
            let name = c.service;
            match c.action {
                ChangeAction::Stop => {
                    if let Some(n) = self.nodes.get_mut(name.as_str()) {
                        n.removing = true;
                        n.after_stop = None;
                        n.held = true;
                    }
                }
                ChangeAction::Start => {
                    let spec = desired
                        .swap_remove(name.as_str())
                        .expect("planned from desired");
                    self.nodes.insert(name.to_string(), Node::new(spec));
                    out.push(Effect::Publish(StackEvent::State {
                        service: name,
                        state: ServiceState::Waiting,
                    }));
                }
                ChangeAction::Unchanged => {
                    let spec = desired
                        .swap_remove(name.as_str())
                        .expect("planned from desired");
                    if let Some(n) = self.nodes.get_mut(name.as_str()) {
                        n.spec = spec;
                    }
                }
                ChangeAction::Restart | ChangeAction::Recreate => {
                    let spec = desired
                        .swap_remove(name.as_str())
                        .expect("planned from desired");
                    let Some(n) = self.nodes.get_mut(name.as_str()) else {
                        continue;
                    };
                    let own = n.spec.fields != spec.fields || n.spec.identity != spec.identity;
                    n.spec = spec;
                    if !own {
                        // Only after a dependency that restarts: `became_ready` restarts it.
                        continue;
                    }
                    n.recreate = true;
                    let why = format!("config changed: {}", c.causes.join(", "));
                    self.restart(now, &name, why, false, out);
                }
            }
        }
    }

    /// Stops each running removed service whose running removed dependents are gone.
    fn stop_removed(&mut self, out: &mut Vec<Effect>) {
        for name in self.free_to_stop(|n| n.removing) {
            let grace = self.nodes[&name].spec.grace;
            self.set_state(&name, ServiceState::Stopping, out);
            out.push(Effect::Stop {
                service: ServiceName::from(name),
                grace,
            });
        }
    }

    /// The running services of `which` that are not stopping yet and that no running service
    /// depends on: those a dependents-first stop can stop now.
    fn free_to_stop(&self, which: impl Fn(&Node) -> bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| which(n) && n.running && n.state != ServiceState::Stopping)
            .filter(|(name, _)| {
                !self
                    .nodes
                    .values()
                    .any(|d| d.running && d.spec.deps.iter().any(|(dep, _)| dep == *name))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Removed services that no longer run leave the kernel; their units go.
    fn remove_stopped(&mut self, out: &mut Vec<Effect>) {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.removing && !n.running)
            .map(|(k, _)| k.clone())
            .collect();
        for name in gone {
            self.nodes.shift_remove(&name);
            out.push(Effect::Remove {
                service: ServiceName::from(name),
            });
        }
    }

    fn set_state(&mut self, name: &str, state: ServiceState, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if n.state != state {
            n.state = state.clone();
            out.push(Effect::Publish(StackEvent::State {
                service: name.into(),
                state,
            }));
        }
    }

    fn start(&mut self, now: Instant, name: &str, out: &mut Vec<Effect>) {
        let starting_up = self.phase == Phase::StartingUp;
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        n.epoch += 1;
        n.started_at = Some(now);
        n.probe_started = None;
        if starting_up && n.first_start.is_none() {
            n.first_start = Some(now);
        }
        self.set_state(name, ServiceState::Starting, out);
        self.launch(name, true, out);
    }

    /// Takes a start of the current epoch as far as it can go: a failed image fails it, a
    /// build or a task check makes it wait, else the unit gets it. `check`: a skippable task is
    /// checked first (not again once its check said run).
    fn launch(&mut self, name: &str, check: bool, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let (service, epoch) = (name.to_string(), n.epoch);
        n.pending = None;
        match &n.image {
            Image::Failed(reason) => {
                let reason = reason.clone();
                self.not_ready(name, reason, out);
                return;
            }
            Image::Building => {
                n.pending = Some(Pending::Image);
                return;
            }
            Image::Ready => {}
        }
        if check && n.spec.checked {
            n.pending = Some(Pending::Check);
            out.push(Effect::CheckTask {
                service: ServiceName::from(service),
                epoch,
            });
            return;
        }
        n.running = true;
        if std::mem::take(&mut n.recreate) {
            out.push(Effect::Recreate {
                service: ServiceName::from(service),
                epoch,
            });
        } else {
            out.push(Effect::Start {
                service: ServiceName::from(service),
                epoch,
            });
        }
    }

    /// A task check's answer, for the start it was asked for: anything else (a stop, a newer
    /// start, a shutdown overtook it) is stale.
    fn on_task_checked(
        &mut self,
        name: &str,
        epoch: u64,
        verdict: TaskVerdict,
        out: &mut Vec<Effect>,
    ) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if n.epoch != epoch || n.pending != Some(Pending::Check) {
            return;
        }
        n.pending = None;
        match verdict {
            TaskVerdict::Run => self.launch(name, false, out),
            TaskVerdict::UpToDate { reason, after_ms } => {
                out.push(Effect::Publish(StackEvent::Skipped {
                    service: name.into(),
                    reason,
                    after_ms,
                }));
                self.set_state(name, ServiceState::Completed, out);
            }
        }
    }

    /// A build ended. Built: the starts waiting for it go ahead. Failed: its services cannot
    /// start; every start still waiting for an image fails (which ends start-up), and with none
    /// waiting the run stops.
    fn on_image_built(
        &mut self,
        now: Instant,
        services: &[ServiceName],
        failure: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(reason) = failure else {
            for s in services {
                if let Some(n) = self.nodes.get_mut(s.as_str()) {
                    n.image = Image::Ready;
                    if n.pending == Some(Pending::Image) {
                        self.launch(s, true, out);
                    }
                }
            }
            return;
        };
        for s in services {
            if let Some(n) = self.nodes.get_mut(s.as_str()) {
                n.image = Image::Failed(reason.clone());
            }
        }
        // The failed build's own services first: their reason is the story.
        let mut waiting: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.pending == Some(Pending::Image))
            .map(|(k, _)| k.clone())
            .collect();
        waiting.sort_by_key(|s| !services.iter().any(|n| n == s));
        if waiting.is_empty() {
            self.on_command(now, Command::Shutdown, out);
            return;
        }
        for s in waiting {
            // The first failure ends start-up: the shutdown has stopped the other waiting ones.
            let Some(n) = self
                .nodes
                .get_mut(&s)
                .filter(|n| n.pending == Some(Pending::Image))
            else {
                continue;
            };
            n.pending = None;
            let why = match &n.image {
                Image::Failed(r) => r.clone(),
                _ => "not started: another image build failed".to_string(),
            };
            self.not_ready(&s, why, out);
        }
    }

    fn satisfied(&self, dep: &str, cond: Condition) -> bool {
        let Some(d) = self.nodes.get(dep) else {
            return true;
        };
        match cond {
            Condition::Started => matches!(
                d.state,
                ServiceState::Probing
                    | ServiceState::Seeding
                    | ServiceState::Ready
                    | ServiceState::Completed
            ),
            Condition::Ready => matches!(d.state, ServiceState::Ready | ServiceState::Completed),
            Condition::Completed => d.state == ServiceState::Completed,
        }
    }

    fn schedule(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.phase == Phase::ShuttingDown {
            return;
        }
        let startable: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.state == ServiceState::Waiting
                    && !n.running
                    && n.spec.deps.iter().all(|(d, c)| self.satisfied(d, *c))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for name in startable {
            self.start(now, &name, out);
        }
    }

    fn check_all_ready(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.phase != Phase::StartingUp {
            return;
        }
        if !self
            .nodes
            .values()
            .all(|n| matches!(n.state, ServiceState::Ready | ServiceState::Completed))
        {
            return;
        }
        self.phase = Phase::Up;
        let after = self.began.map_or(Duration::ZERO, |b| now.duration_since(b));
        out.push(Effect::Publish(StackEvent::AllReady {
            services: self.nodes.len(),
            after_ms: after.as_millis() as u64,
        }));
        if self.leave_running {
            self.finish(Outcome::Ready, out);
        }
    }

    fn finish(&mut self, outcome: Outcome, out: &mut Vec<Effect>) {
        if !self.finished {
            self.finished = true;
            out.push(Effect::Finish(outcome));
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the values are what the event carries"
    )]
    fn on_started(
        &mut self,
        now: Instant,
        name: &str,
        epoch: u64,
        pid: Option<u32>,
        container: Option<String>,
        detail: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if n.epoch != epoch || n.state != ServiceState::Starting {
            return;
        }
        let (has_probe, timeout) = (n.spec.has_probe, n.spec.ready_timeout);
        out.push(Effect::Publish(StackEvent::Started {
            service: name.into(),
            pid,
            container,
            detail,
        }));
        if has_probe {
            n.probe_started = Some(now);
            self.set_state(name, ServiceState::Probing, out);
            out.push(Effect::Probe {
                service: name.into(),
                epoch,
                timeout,
            });
        } else {
            n.probe_started = Some(now);
            self.passed(now, name, epoch, out);
        }
    }

    fn on_ready(&mut self, now: Instant, name: &str, epoch: u64, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        if n.epoch != epoch || n.state != ServiceState::Probing {
            return;
        }
        self.passed(now, name, epoch, out);
    }

    /// Its probe passed (or it has none): ready, or first seeded.
    fn passed(&mut self, now: Instant, name: &str, epoch: u64, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        if n.spec.seeded {
            self.set_state(name, ServiceState::Seeding, out);
            out.push(Effect::Seed {
                service: name.into(),
                epoch,
            });
            return;
        }
        self.now_ready(now, name, out);
    }

    fn now_ready(&mut self, now: Instant, name: &str, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        if n.spec.has_probe || n.spec.seeded {
            let after = n
                .probe_started
                .map_or(Duration::ZERO, |s| now.duration_since(s));
            out.push(Effect::Publish(StackEvent::Ready {
                service: name.into(),
                after_ms: after.as_millis() as u64,
            }));
        }
        self.set_state(name, ServiceState::Ready, out);
        self.became_ready(now, name, out);
    }

    /// A seed's answer for the start it was asked for (a stop or a newer start makes it stale):
    /// done makes the service ready; a failure is a start that did not get ready.
    fn on_seeded(
        &mut self,
        now: Instant,
        name: &str,
        epoch: u64,
        result: Result<SeedDone, String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        if n.epoch != epoch || n.state != ServiceState::Seeding {
            return;
        }
        match result {
            Ok(done) => {
                out.push(Effect::Publish(StackEvent::Seeded {
                    service: name.into(),
                    ran: done.ran,
                    reason: done.reason,
                    after_ms: done.after_ms,
                }));
                self.now_ready(now, name, out);
            }
            Err(reason) => self.not_ready(name, reason, out),
        }
    }

    /// After a restart of `name` is ready, the dependents that asked for it restart too.
    fn became_ready(&mut self, now: Instant, name: &str, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let again = n.ever_ready;
        n.ever_ready = true;
        if !again || self.phase == Phase::ShuttingDown {
            return;
        }
        let dependents: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, d)| d.spec.restart_with.iter().any(|r| r == name) && !d.held)
            .map(|(k, _)| k.clone())
            .collect();
        for d in dependents {
            self.restart(now, &d, format!("`{name}` restarted"), false, out);
        }
    }

    fn on_probe_failed(&mut self, name: &str, epoch: u64, reason: String, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        if n.epoch != epoch || n.state != ServiceState::Probing {
            return;
        }
        self.not_ready(name, reason, out);
    }

    /// The service could not start or get ready: shown as failed (the engine adds its probe and
    /// last lines); during start-up that ends the run.
    fn not_ready(&mut self, name: &str, reason: String, out: &mut Vec<Effect>) {
        out.push(Effect::Publish(StackEvent::NotReady {
            service: name.into(),
            probe: String::new(),
            reason: reason.clone(),
            tail: Vec::new(),
        }));
        self.set_state(
            name,
            ServiceState::Failed {
                reason: reason.clone(),
            },
            out,
        );
        if self.phase == Phase::StartingUp {
            self.abort(name, reason, out);
        }
    }

    fn on_start_failed(&mut self, name: &str, epoch: u64, reason: String, out: &mut Vec<Effect>) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if n.epoch != epoch {
            return;
        }
        n.running = false;
        if n.state == ServiceState::Stopping || self.phase == Phase::ShuttingDown {
            self.set_state(name, ServiceState::Stopped, out);
            return;
        }
        self.not_ready(name, reason, out);
    }

    fn on_exited(
        &mut self,
        now: Instant,
        name: &str,
        epoch: u64,
        code: i64,
        how: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let starting_up = self.phase == Phase::StartingUp;
        let shutting_down = self.phase == Phase::ShuttingDown;
        let waited_for = self.nodes.values().any(|n| {
            n.spec
                .deps
                .iter()
                .any(|(d, c)| d == name && *c == Condition::Completed)
        });
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if n.epoch != epoch || !n.running {
            return;
        }
        n.running = false;
        let before = n.state.clone();

        if before == ServiceState::Stopping {
            out.push(Effect::Publish(StackEvent::Stopped {
                service: name.into(),
                how: how.unwrap_or_else(|| format!("stopped (exit code {code})")),
            }));
            match n.after_stop.take() {
                Some(_) if !shutting_down => {
                    n.restarts += 1;
                    self.start(now, name, out);
                }
                _ => self.set_state(name, ServiceState::Stopped, out),
            }
            return;
        }

        // It ended by itself.
        out.push(Effect::Publish(StackEvent::Exited {
            service: name.into(),
            code,
        }));
        if shutting_down {
            self.set_state(name, ServiceState::Stopped, out);
            return;
        }
        if code == 126 || code == 127 {
            // The shell's "not executable" / "not found": no restart can fix that.
            let what = if code == 127 {
                "its command was not found"
            } else {
                "its command is not executable"
            };
            let reason = format!("exited with code {code}: {what} (see its last lines); fix the command or run the setup that installs it");
            self.set_state(
                name,
                ServiceState::Failed {
                    reason: reason.clone(),
                },
                out,
            );
            if starting_up {
                self.abort(name, reason, out);
            }
            return;
        }
        let n = self.nodes.get_mut(name).expect("looked up above");
        if restarts(n.spec.policy, code) {
            if n.started_at
                .is_some_and(|s| now.duration_since(s) >= STABLE_AFTER)
            {
                n.failures = 0;
                n.crashes.clear();
            }
            n.failures += 1;
            n.crashes.push_back(now);
            while n
                .crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) >= CRASH_WINDOW)
            {
                n.crashes.pop_front();
            }
            let pause = backoff(n.failures);
            let crashes = n.crashes.len();
            let crash_loop = crashes >= CRASH_LOOP_COUNT;
            let deadline = n.first_start.map(|f| f + n.spec.ready_timeout);
            let (policy, epoch, timeout) = (n.spec.policy, n.epoch, n.spec.ready_timeout);
            if starting_up && (crash_loop || deadline.is_some_and(|d| now + pause >= d)) {
                let reason = if crash_loop {
                    format!("crash loop: exited {crashes} times in the last minute, last with code {code}")
                } else {
                    format!(
                        "exited with code {code} and cannot be ready within its {} timeout",
                        humantime::format_duration(timeout)
                    )
                };
                self.set_state(name, ServiceState::Crashed { code }, out);
                self.abort(name, reason, out);
                return;
            }
            let restart_in_ms = pause.as_millis() as u64;
            self.set_state(
                name,
                ServiceState::Backoff {
                    restart_in_ms,
                    crash_loop,
                },
                out,
            );
            out.push(Effect::Publish(StackEvent::Backoff {
                service: name.into(),
                code,
                restart_in_ms,
                policy,
                crashes,
                tail: Vec::new(),
            }));
            out.push(Effect::ArmTimer {
                service: name.into(),
                epoch,
                after: pause,
            });
            return;
        }
        let completed =
            code == 0 && (before == ServiceState::Ready || waited_for || !n.spec.has_probe);
        if completed {
            self.set_state(name, ServiceState::Completed, out);
            return;
        }
        let state = if code == 0 {
            ServiceState::Exited { code }
        } else {
            ServiceState::Crashed { code }
        };
        self.set_state(name, state, out);
        if starting_up {
            let reason = if before == ServiceState::Ready {
                format!("exited with code {code} during start-up")
            } else {
                format!("exited with code {code} before it was ready")
            };
            self.abort(name, reason, out);
        }
    }

    fn on_command(&mut self, now: Instant, c: Command, out: &mut Vec<Effect>) {
        if self.phase == Phase::ShuttingDown {
            return;
        }
        match c {
            Command::Restart(name) => {
                if let Some(n) = self.nodes.get_mut(name.as_str()) {
                    n.held = false;
                }
                self.restart(now, &name, "restart requested".to_string(), true, out);
            }
            Command::Stop(name) => {
                let Some(n) = self.nodes.get_mut(name.as_str()) else {
                    return;
                };
                n.held = true;
                n.after_stop = None;
                if n.running {
                    let grace = n.spec.grace;
                    if n.state != ServiceState::Stopping {
                        self.set_state(&name, ServiceState::Stopping, out);
                        out.push(Effect::Stop {
                            service: name,
                            grace,
                        });
                    }
                } else {
                    // A pending backoff timer, build or task check must not start it again.
                    n.epoch += 1;
                    n.pending = None;
                    self.set_state(&name, ServiceState::Stopped, out);
                }
            }
            Command::Start(name) => {
                let closure = self.closure(&name);
                for s in closure {
                    let Some(n) = self.nodes.get_mut(&s).filter(|n| !n.removing) else {
                        continue;
                    };
                    n.held = false;
                    if n.running {
                        if n.state == ServiceState::Stopping && n.after_stop.is_none() {
                            n.after_stop = Some("start requested".into());
                        }
                        continue;
                    }
                    if !matches!(
                        n.state,
                        ServiceState::Ready | ServiceState::Completed | ServiceState::Waiting
                    ) {
                        n.epoch += 1;
                        n.failures = 0;
                        n.crashes.clear();
                        self.set_state(&s, ServiceState::Waiting, out);
                    }
                }
            }
            Command::Shutdown => {
                let outcome = self.phase_outcome();
                self.shutdown(outcome, out);
            }
        }
    }

    /// `name` and everything it depends on (within the selection).
    fn closure(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut todo = vec![name.to_string()];
        while let Some(s) = todo.pop() {
            if out.contains(&s) || !self.nodes.contains_key(&s) {
                continue;
            }
            todo.extend(self.nodes[&s].spec.deps.iter().map(|(d, _)| d.clone()));
            out.push(s);
        }
        out
    }

    fn restart(
        &mut self,
        now: Instant,
        name: &str,
        why: String,
        by_person: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        if (n.held && !by_person) || n.removing {
            return;
        }
        n.failures = 0;
        n.crashes.clear();
        match n.state.clone() {
            // Not started yet: it starts with the new files anyway.
            ServiceState::Waiting => {}
            ServiceState::Stopping => {
                // Coalesce: a burst of changes during a stop gives one start after it.
                if n.after_stop.is_some() || by_person {
                    n.after_stop = Some(why);
                }
            }
            _ if n.running => {
                n.after_stop = Some(why.clone());
                let grace = n.spec.grace;
                out.push(Effect::Publish(StackEvent::Restarting {
                    service: name.into(),
                    reason: why,
                }));
                self.set_state(name, ServiceState::Stopping, out);
                out.push(Effect::Stop {
                    service: name.into(),
                    grace,
                });
            }
            ServiceState::Stopped if !by_person => {}
            _ => {
                n.restarts += 1;
                out.push(Effect::Publish(StackEvent::Restarting {
                    service: name.into(),
                    reason: why,
                }));
                self.start(now, name, out);
            }
        }
    }

    fn on_files_changed(
        &mut self,
        now: Instant,
        name: &str,
        mut paths: Vec<String>,
        out: &mut Vec<Effect>,
    ) {
        if self.phase == Phase::ShuttingDown {
            return;
        }
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        paths.retain(|p| !n.ignored_paths.contains(p));
        if paths.is_empty() {
            return;
        }
        // Only a change that comes right after a start can be caused by that start; one that
        // arrives during a stop is coalesced, and one long after a start breaks the chain.
        let soon_after_start = n
            .started_at
            .is_some_and(|s| now.duration_since(s) < n.spec.loop_lag);
        if n.state == ServiceState::Stopping {
        } else if !soon_after_start {
            n.reloads.clear();
        } else {
            n.reloads.push_back((now, paths.clone()));
            while n
                .reloads
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) >= RELOAD_LOOP_WINDOW)
            {
                n.reloads.pop_front();
            }
        }
        if n.reloads.len() >= RELOAD_LOOP_COUNT {
            // One file behind every one of the recent reloads: something rewrites it each time
            // the service restarts (devstack's own output redirected into the watched folder).
            let culprit = paths
                .iter()
                .find(|p| n.reloads.iter().all(|(_, ps)| ps.contains(p)))
                .cloned();
            if let Some(file) = culprit {
                let count = n.reloads.len();
                n.ignored_paths.push(file.clone());
                n.reloads.clear();
                paths.retain(|p| p != &file);
                let base = file.rsplit('/').next().unwrap_or(&file).to_string();
                out.push(Effect::Publish(StackEvent::warning(
                    Some(name),
                    format!(
                        "restart loop: `{file}` changed before each of the last {count} restarts (is output redirected into a watched folder?); ignoring it from now on; add `{base}` to `watch.ignore` of `{name}` to stop it for good"
                    ),
                )));
                if paths.is_empty() {
                    return;
                }
            }
        }
        let first = paths[0].clone();
        let why = if paths.len() > 1 {
            format!("{first} and {} more changed", paths.len() - 1)
        } else {
            format!("{first} changed")
        };
        self.restart(now, name, why, false, out);
    }

    fn phase_outcome(&self) -> Outcome {
        if self.phase == Phase::StartingUp {
            Outcome::Interrupted
        } else {
            Outcome::Stopped
        }
    }

    fn on_interrupt(&mut self, out: &mut Vec<Effect>) {
        self.interrupts += 1;
        match self.interrupts {
            1 => {
                let text = if self.phase == Phase::StartingUp {
                    "interrupted; stopping what was started"
                } else {
                    "stopping (Ctrl-C again kills at once)"
                };
                out.push(Effect::Publish(StackEvent::note(None, text)));
                let outcome = self.phase_outcome();
                self.shutdown(outcome, out);
            }
            2 => {
                out.push(Effect::Publish(StackEvent::note(
                    None,
                    "killing everything now (Ctrl-C again exits at once)",
                )));
                if self.outcome.is_none() {
                    self.outcome = Some(self.phase_outcome());
                }
                self.phase = Phase::ShuttingDown;
                let running: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.running)
                    .map(|(k, _)| k.clone())
                    .collect();
                for name in running {
                    if let Some(n) = self.nodes.get_mut(&name) {
                        n.after_stop = None;
                    }
                    self.set_state(&name, ServiceState::Stopping, out);
                    out.push(Effect::Kill {
                        service: ServiceName::from(name),
                    });
                }
            }
            _ => self.finish(Outcome::Abandoned, out),
        }
    }

    fn abort(&mut self, name: &str, reason: String, out: &mut Vec<Effect>) {
        self.shutdown(
            Outcome::NotReady {
                service: name.into(),
                reason,
            },
            out,
        );
    }

    fn shutdown(&mut self, outcome: Outcome, out: &mut Vec<Effect>) {
        if self.phase == Phase::ShuttingDown {
            return;
        }
        self.phase = Phase::ShuttingDown;
        self.outcome = Some(outcome);
        let idle: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.running && !matches!(n.state, ServiceState::Completed))
            .filter(|(_, n)| {
                n.pending.is_some()
                    || matches!(
                        n.state,
                        ServiceState::Waiting | ServiceState::Backoff { .. }
                    )
            })
            .map(|(k, _)| k.clone())
            .collect();
        for name in idle {
            if let Some(n) = self.nodes.get_mut(&name) {
                n.epoch += 1;
                n.pending = None;
            }
            self.set_state(&name, ServiceState::Stopped, out);
        }
        self.cascade(out);
    }

    /// While shutting down: stop each running service whose running dependents are all gone;
    /// finish once nothing runs.
    fn cascade(&mut self, out: &mut Vec<Effect>) {
        if self.phase != Phase::ShuttingDown || self.finished {
            return;
        }
        for name in self.free_to_stop(|_| true) {
            let grace = self.nodes[&name].spec.grace;
            if let Some(n) = self.nodes.get_mut(&name) {
                n.after_stop = None;
            }
            self.set_state(&name, ServiceState::Stopping, out);
            out.push(Effect::Stop {
                service: ServiceName::from(name),
                grace,
            });
        }
        if self.nodes.values().all(|n| !n.running) {
            let outcome = self.outcome.clone().unwrap_or(Outcome::Stopped);
            self.finish(outcome, out);
        }
    }
}

#[cfg(test)]
mod tests;
