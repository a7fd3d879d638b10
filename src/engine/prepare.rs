//! Before anything starts: host ports decided and checked (naming who holds a taken one),
//! images present (pulled if not), the project's network and named volumes created, and the
//! image builds started. A failure here leaves nothing behind. Builds keep running after
//! `prepare` returns: the engine starts what does not need them meanwhile, and each built
//! service once its image is there.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::{PortConflict, UpError};
use crate::build::BuildJob;
use crate::config::ServiceName;
use crate::config::Stack;
use crate::config::{ServiceKind, Volume};
use crate::logs::LogHandle;
use crate::plan::PortMode;
use crate::plan::{self, HostPorts};
use crate::ports;
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, RuntimeError,
};

/// What the container engine had before this run, and the plan for this run.
pub(crate) struct Prepared {
    pub existing: Vec<ContainerInfo>,
    pub ports: HostPorts,
    /// The container services whose image is known; a built service gets its spec when its
    /// build is done.
    pub specs: IndexMap<String, ContainerSpec>,
    pub builds: Builds,
}

/// One finished build: the services whose image it is, and the image id (or why not).
pub(crate) struct BuildDone {
    pub services: Vec<ServiceName>,
    pub result: Result<String, UpError>,
}

/// The builds still running, and those waiting for tasks.
pub(crate) struct Builds {
    /// Services whose image is being built, or will be.
    pub waiting: HashSet<String>,
    pub done: mpsc::UnboundedReceiver<BuildDone>,
    done_tx: mpsc::UnboundedSender<BuildDone>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Builds that start once these tasks (`condition: completed` dependencies of their
    /// services) have completed: a task may make what the build sends (a binary in its context,
    /// a base image).
    pub after_tasks: Vec<(BuildJob, Vec<String>)>,
    flags: super::BuildFlags,
}

impl Builds {
    pub(crate) fn none() -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        Self {
            waiting: HashSet::new(),
            done,
            done_tx,
            tasks: Vec::new(),
            after_tasks: Vec::new(),
            flags: Default::default(),
        }
    }

    /// Starts a build; its result comes on `done`.
    pub(crate) fn start<R: ContainerRuntime>(&mut self, rt: &R, job: BuildJob, logs: &LogHandle) {
        let (rt, logs, tx, flags) = (rt.clone(), logs.clone(), self.done_tx.clone(), self.flags);
        self.tasks.push(tokio::spawn(async move {
            let result = super::build::ensure(&rt, &job, flags, &logs).await;
            // The engine may be gone (interrupted); then nobody waits for the image.
            let _ = tx.send(BuildDone {
                services: job.services.clone(),
                result,
            });
        }));
    }

    /// Starts the builds whose tasks have all completed (`completed` says which have).
    pub(crate) fn start_ready<R: ContainerRuntime>(
        &mut self,
        rt: &R,
        logs: &LogHandle,
        completed: &dyn Fn(&str) -> bool,
    ) {
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.after_tasks)
            .into_iter()
            .partition(|(_, tasks)| tasks.iter().all(|t| completed(t)));
        self.after_tasks = later;
        for (job, _) in ready {
            self.start(rt, job, logs);
        }
    }

    /// Stops the builds that still run (the engine cancels a build whose request is dropped).
    pub(crate) fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Every fixed host port must be free or held by this project's own container of that service.
async fn port_preflight<R: ContainerRuntime>(
    rt: &R,
    selected: &[String],
    existing: &[ContainerInfo],
    ports: &HostPorts,
) -> Result<(), UpError> {
    let mut conflicts = Vec::new();
    let mut foreign: Option<Vec<(String, Vec<crate::runtime::Published>)>> = None;
    for (service, p) in ports.all() {
        if !selected.iter().any(|s| s == service) {
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
            service: service.into(),
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

/// The recorded ports that something other than this instance holds now (its own running
/// containers keep theirs).
fn check_recorded(mode: &PortMode, existing: &[ContainerInfo]) -> PortMode {
    let PortMode::Recorded(r) = mode else {
        return mode.clone();
    };
    let mut checked = r.clone();
    checked.busy = r
        .ports
        .0
        .iter()
        .flat_map(|(service, ps)| ps.iter().map(move |p| (service, p)))
        .filter(|(service, p)| {
            let ours = existing.iter().any(|c| {
                &c.service == *service
                    && c.status == ContainerStatus::Running
                    && c.ports.iter().any(|e| e.host_port == p.host_port)
            });
            let loopback = std::net::Ipv4Addr::LOCALHOST.into();
            !ours && !ports::is_free(loopback, p.host_port, p.protocol)
        })
        .map(|(_, p)| p.host_port)
        .collect();
    PortMode::Recorded(checked)
}

/// Says which recorded ports had to move, and records the ports of this run for the next.
pub(super) async fn record_ports(r: &plan::Recorded, assigned: &HostPorts, logs: &LogHandle) {
    for m in r.ports.moved(assigned) {
        let holder = ports::holder(m.from, crate::config::Protocol::Tcp)
            .map_or_else(|| "something else".to_string(), |h| h.to_string());
        logs.publish(crate::event::StackEvent::warning(None, format!(
            "port {} of `{}` was recorded on host port {}, which {holder} holds now: it moves to {} (and stays there)",
            m.container_port, m.service, m.from, m.to
        )))
        .await;
    }
    let updated = r.ports.updated(assigned);
    if updated != r.ports {
        if let Err(e) = crate::project::ports::save(&r.path, &updated) {
            logs.publish(crate::event::StackEvent::warning(
                None,
                format!(
                    "cannot record the host ports in `{}`: {e}; the next `up` may choose others",
                    r.path.display()
                ),
            ))
            .await;
        }
    }
}

/// Every image of the selected services that is not built: present, or pulled.
pub(super) async fn ensure_pulled<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    selected: &[String],
    built: &HashSet<&str>,
    logs: &LogHandle,
) -> Result<HashMap<String, String>, UpError> {
    let mut images: Vec<&String> = Vec::new();
    for name in selected {
        let Some(ServiceKind::Container { image, .. }) = stack.services.get(name).map(|s| &s.kind)
        else {
            continue;
        };
        if !images.contains(&image) && !built.contains(image.as_str()) {
            images.push(image);
        }
    }
    // Every image looked up at once (one engine round trip for all); the missing ones pulled
    // one after the other, each with its progress.
    let found = futures_util::future::join_all(images.iter().map(|i| rt.image_id(i))).await;
    let mut image_ids: HashMap<String, String> = HashMap::new();
    for (image, found) in images.into_iter().zip(found) {
        let id = match found? {
            Some(id) => id,
            None => pull(rt, image, logs).await?,
        };
        image_ids.insert(image.clone(), id);
    }
    Ok(image_ids)
}

/// Pulls `image`, its progress in the log; its id once there.
async fn pull<R: ContainerRuntime>(
    rt: &R,
    image: &str,
    logs: &LogHandle,
) -> Result<String, UpError> {
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
    Ok(rt
        .image_id(image)
        .await?
        .ok_or_else(|| RuntimeError::ImageUnavailable {
            image: image.to_string(),
            reason: "the pull finished but the image is not there".into(),
        })?)
}

pub(crate) async fn prepare<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    selected: &[String],
    port_mode: &PortMode,
    build_flags: super::BuildFlags,
    logs: &LogHandle,
) -> Result<Prepared, UpError> {
    let existing = rt.list(&stack.name).await?;
    let port_mode = check_recorded(port_mode, &existing);
    // A free port is never one recorded for another service of this instance.
    let mut taken: HashSet<u16> = match &port_mode {
        PortMode::Recorded(r) => r.ports.host_ports().collect(),
        _ => HashSet::new(),
    };
    let ports = plan::assign_ports(stack, &existing, &port_mode, &mut |ip| {
        let p = ports::pick_free(ip, &taken)?;
        taken.insert(p);
        Ok(p)
    })
    .map_err(|e| {
        UpError::Runtime(RuntimeError::Engine(format!(
            "cannot find a free port: {e}"
        )))
    })?;
    port_preflight(rt, selected, &existing, &ports).await?;
    if let PortMode::Recorded(r) = &port_mode {
        record_ports(r, &ports, logs).await;
    }

    // Builds start now and run side by side with each other, the pulls and the start of
    // everything that does not need them. Images to pull are there before anything is
    // created, so a missing one leaves nothing behind.
    let jobs = crate::build::jobs(stack, selected)
        .map_err(|m| UpError::Runtime(RuntimeError::Engine(m)))?;
    let built: HashSet<String> = jobs.iter().flat_map(|j| j.tags.iter().cloned()).collect();
    let builds = start_builds(rt, stack, selected, jobs, build_flags, logs);
    let built: HashSet<&str> = built.iter().map(String::as_str).collect();
    let ready = async {
        let image_ids = ensure_pulled(rt, stack, selected, &built, logs).await?;
        create_network_and_volumes(rt, stack, selected).await?;
        Ok::<_, UpError>(image_ids)
    };
    let image_ids = match ready.await {
        Ok(ids) => ids,
        Err(e) => {
            builds.abort();
            return Err(e);
        }
    };
    let mut specs = IndexMap::new();
    for name in selected {
        let svc = &stack.services[name];
        let ServiceKind::Container { image, .. } = &svc.kind else {
            continue;
        };
        // A built service's spec comes with its image.
        let spec = image_ids
            .get(image)
            .and_then(|id| plan::container_spec(&stack.name, svc, &ports, id));
        if let Some(spec) = spec {
            specs.insert(name.clone(), spec);
        }
    }
    Ok(Prepared {
        existing,
        ports,
        specs,
        builds,
    })
}

/// Starts every build now, except those whose services depend on a task being `completed`:
/// a task may make what the build sends (a binary in its context, a base image), so those
/// start once it has.
fn start_builds<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    selected: &[String],
    jobs: Vec<crate::build::BuildJob>,
    flags: super::BuildFlags,
    logs: &LogHandle,
) -> Builds {
    let mut builds = Builds::none();
    builds.flags = flags;
    builds.waiting = jobs
        .iter()
        .flat_map(|j| j.services.iter().map(ServiceName::to_string))
        .collect();
    for job in jobs {
        let mut tasks: Vec<String> = Vec::new();
        for s in &job.services {
            for (dep, c) in &stack.services[s.as_str()].depends_on {
                if *c == crate::config::Condition::Completed
                    && selected.contains(dep)
                    && !tasks.contains(dep)
                {
                    tasks.push(dep.clone());
                }
            }
        }
        if tasks.is_empty() {
            builds.start(rt, job, logs);
        } else {
            builds.after_tasks.push((job, tasks));
        }
    }
    builds
}

/// The project's network and the named volumes of the selected containers.
pub(super) async fn create_network_and_volumes<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    selected: &[String],
) -> Result<(), RuntimeError> {
    let containers: Vec<&String> = selected
        .iter()
        .filter(|s| stack.services.get(*s).is_some_and(|s| s.is_container()))
        .collect();
    if containers.is_empty() {
        return Ok(());
    }
    rt.ensure_network(&stack.name, &plan::network_name(&stack.name))
        .await?;
    let mut volumes: Vec<&str> = Vec::new();
    for name in &containers {
        let ServiceKind::Container { volumes: vs, .. } = &stack.services[name.as_str()].kind else {
            continue;
        };
        for v in vs {
            if let Volume::Named { name, .. } = v {
                if !volumes.contains(&name.as_str()) {
                    volumes.push(name);
                }
            }
        }
    }
    let names: Vec<String> = volumes
        .iter()
        .map(|v| plan::volume_name(&stack.name, v))
        .collect();
    futures_util::future::try_join_all(
        volumes
            .iter()
            .zip(&names)
            .map(|(v, full)| rt.ensure_volume(&stack.name, v, full)),
    )
    .await?;
    Ok(())
}
