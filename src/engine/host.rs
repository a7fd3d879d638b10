//! What the engine asks of the machine to run native services: a unit per service, ending what
//! a killed run left, being the subreaper of their descendants and reaping its orphans, and
//! watching their files. Mechanism only, no policy. [`Host`] is the real machine; the engine's
//! tests use a recording fake with paused time, so the loop's handling of processes is tested
//! without spawning any.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Stack;
use crate::logs::LogHandle;
use crate::process::state::StateFile;
use crate::program::MissingProgram;
use crate::unit::process::ProcessSetup;
use crate::unit::UnitHandle;
use crate::watch::{FilesChanged, WatchError, WatchSpec, Watcher};

pub(crate) trait ProcessHost: Clone + Send + Sync + 'static {
    /// Spawns the unit of one native service (nothing runs until it gets `Start`).
    fn unit(&self, setup: ProcessSetup) -> (UnitHandle, JoinHandle<()>);

    /// Ends what a killed devstack left of these services, saying so on `logs`. Called before the
    /// port preflight, so a leftover is never blamed for holding a port.
    fn end_leftovers(
        &self,
        stack: &Stack,
        services: &[String],
        state: &StateFile,
        logs: &LogHandle,
    ) -> impl Future<Output = ()> + Send;

    /// Makes devstack the reaper of the services' orphaned descendants.
    fn become_subreaper(&self);

    /// Reaps the zombies of those orphans.
    fn reap_orphans(&self) -> impl Future<Output = ()> + Send;

    /// The regular files devstack's own output goes to: changes to them are never a service's.
    fn own_output(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Starts watching files; the watcher (if any) watches until dropped.
    fn watch(
        &self,
        specs: Vec<WatchSpec>,
    ) -> Result<(Option<Watcher>, mpsc::Receiver<FilesChanged>), WatchError>;

    /// The native services among `services` whose program is not there. Before the run
    /// (`before_tasks`), a program that a task the service depends on creates is not missing
    /// yet; once the tasks have run, it is.
    fn missing_programs(
        &self,
        stack: &Stack,
        services: &[String],
        before_tasks: bool,
    ) -> Vec<MissingProgram>;
}

/// The real machine: process groups, `/proc`, inotify.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Host;

impl ProcessHost for Host {
    fn unit(&self, setup: ProcessSetup) -> (UnitHandle, JoinHandle<()>) {
        crate::unit::process::spawn(setup)
    }

    async fn end_leftovers(
        &self,
        stack: &Stack,
        services: &[String],
        state: &StateFile,
        logs: &LogHandle,
    ) {
        for e in crate::process::state::reap_leftovers(state).await {
            logs.event(
                &e.service,
                format!("ended pid {} left running by a previous run", e.pid),
            )
            .await;
        }
        let marks: Vec<(String, String)> = services
            .iter()
            .map(|s| (s.clone(), crate::process::mark(&stack.name, s)))
            .collect();
        let ended = tokio::task::spawn_blocking(move || {
            marks
                .into_iter()
                .map(|(s, m)| {
                    (
                        s,
                        crate::process::end_marked(&m, libc::SIGTERM, Duration::from_secs(3), &[]),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (service, n) in ended {
            logs.event(
                &service,
                format!("ended {n} process(es) left running by a previous run"),
            )
            .await;
        }
    }

    fn become_subreaper(&self) {
        crate::process::become_subreaper();
    }

    async fn reap_orphans(&self) {
        // A reap that panicked has reaped nothing; the next tick tries again.
        let _ = tokio::task::spawn_blocking(crate::process::reap_orphans).await;
    }

    fn own_output(&self) -> Vec<std::path::PathBuf> {
        crate::process::own_output_files()
    }

    fn watch(
        &self,
        specs: Vec<WatchSpec>,
    ) -> Result<(Option<Watcher>, mpsc::Receiver<FilesChanged>), WatchError> {
        Watcher::start(specs).map(|(w, rx)| (Some(w), rx))
    }

    fn missing_programs(
        &self,
        stack: &Stack,
        services: &[String],
        before_tasks: bool,
    ) -> Vec<MissingProgram> {
        let path = std::env::var("PATH").ok();
        crate::program::missing(stack, services, path.as_deref(), before_tasks)
    }
}
