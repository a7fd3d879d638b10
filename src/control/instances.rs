//! Every instance of every project on this machine (`devstack ls`, the MCP tool `ls`): from the
//! state folders (what `up` recorded, who holds the lock) and the container engine (containers
//! and volumes labelled with a project). A running one is asked through its control socket how
//! many services are ready and on which ports.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::client;
use super::protocol::{PsRow, Reply, Request};
use crate::config::Protocol;
use crate::docker::DockerRuntime;
use crate::error::Error;
use crate::event::ServiceState;
use crate::project::instance::{self, Record};
use crate::runtime::{ContainerRuntime, ContainerStatus};

/// One published port, with the URL a browser opens for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortRow {
    pub service: String,
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: IpAddr,
    /// None: chosen when it starts (an automatic port of a stack not running).
    pub host_port: Option<u16>,
    pub url: Option<String>,
}

/// The URL a browser opens for a TCP port on the host.
pub fn url(host_ip: IpAddr, host_port: u16, protocol: Protocol) -> Option<String> {
    if protocol != Protocol::Tcp {
        return None;
    }
    let host = match host_ip {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    Some(format!("http://{host}:{host_port}/"))
}

impl PortRow {
    pub fn new(
        service: &str,
        host_ip: IpAddr,
        host_port: Option<u16>,
        container_port: u16,
        protocol: Protocol,
    ) -> PortRow {
        PortRow {
            service: service.to_string(),
            container_port,
            protocol,
            host_ip,
            host_port,
            url: host_port.and_then(|h| url(host_ip, h, protocol)),
        }
    }

    /// Every published port of a running stack's `ps` rows.
    pub fn of_live(rows: &[PsRow]) -> Vec<PortRow> {
        rows.iter()
            .flat_map(|r| {
                r.status.ports.iter().map(|p| {
                    PortRow::new(
                        &r.status.service,
                        p.host_ip,
                        Some(p.host_port),
                        p.container_port,
                        p.protocol,
                    )
                })
            })
            .collect()
    }
}

/// One instance on this machine.
#[derive(Debug, Serialize)]
pub struct Instance {
    pub project: String,
    /// The instance's own name; none for a main instance.
    pub instance: Option<String>,
    /// The folder of the stack file it was last started from.
    pub path: Option<PathBuf>,
    pub running: bool,
    /// The devstack that runs it.
    pub pid: Option<u32>,
    /// Services ready (or completed) and selected, while it runs.
    pub ready: Option<usize>,
    pub total: Option<usize>,
    /// As the running devstack publishes them, else as recorded for the instance.
    pub ports: Vec<PortRow>,
    /// The running devstack's dashboard, with its access token.
    pub dashboard: Option<String>,
    /// Containers of the project in the engine (any state), and how many of them run.
    pub containers: usize,
    pub containers_running: usize,
    /// Named volumes of the project in the engine.
    pub volumes: Vec<String>,
    /// Bytes on disk of those volumes, as the engine counts them (`docker system df -v`); none
    /// when the engine does not say.
    pub volume_bytes: Option<u64>,
    /// A thin instance: the main instance whose services it shares…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_from: Option<String>,
    /// …and its share of each (its database, Redis index, topic or collection prefix).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<crate::project::thin::Share>,
}

impl Instance {
    fn new(project: String) -> Instance {
        Instance {
            project,
            instance: None,
            path: None,
            running: false,
            pid: None,
            ready: None,
            total: None,
            ports: Vec::new(),
            dashboard: None,
            containers: 0,
            containers_running: 0,
            volumes: Vec::new(),
            volume_bytes: None,
            shared_from: None,
            shares: Vec::new(),
        }
    }
}

/// Every instance, by project name; the error says why the engine's containers and volumes are
/// not in it (no engine: the state folders alone).
pub fn list() -> (Vec<Instance>, Result<(), Error>) {
    let mut rows: Vec<Instance> = Vec::new();
    for (project, dir) in crate::project::known_state_dirs() {
        let record = instance::load_record(&dir);
        let pid = crate::project::lock::holder(&dir);
        if record.is_none() && pid.is_none() {
            continue;
        }
        let mut row = Instance::new(project);
        row.pid = pid;
        row.running = pid.is_some();
        fill_from_state(&mut row, record, &dir);
        rows.push(row);
    }
    let docker = fill_from_engine(&mut rows);
    rows.sort_by(|a, b| a.project.cmp(&b.project));
    (rows, docker)
}

/// The `ps` rows of the devstack that runs `project`, if it answers.
fn live_ps(dir: &Path, project: &str) -> Option<Vec<PsRow>> {
    let mut conn = client::connect(dir, project).ok()?;
    conn.send(Request::Ps).ok()?;
    loop {
        match conn.answer().ok()?? {
            Reply::Ps { services } => return Some(services),
            Reply::Record { .. } => {}
            _ => return None,
        }
    }
}

/// What the state folder knows: where it runs from, and (running) the live states and ports,
/// else the recorded ports.
fn fill_from_state(row: &mut Instance, record: Option<Record>, dir: &Path) {
    if let Some(r) = &record {
        row.instance = r.instance.clone();
        row.path = Some(r.path.clone());
    }
    if let Some(t) = crate::project::thin::load_record(dir) {
        row.shared_from = Some(t.main);
        row.shares = t.shares;
    }
    if row.running {
        // A devstack that is stopping or starting may not answer: it still runs.
        if let Some(live) = live_ps(dir, &row.project) {
            row.total = Some(live.len());
            row.ready = Some(
                live.iter()
                    .filter(|r| {
                        matches!(
                            r.status.state,
                            ServiceState::Ready | ServiceState::Completed
                        )
                    })
                    .count(),
            );
            row.ports = PortRow::of_live(&live);
        }
        row.dashboard = record.and_then(|r| r.dashboard);
    }
    if row.ports.is_empty() {
        let recorded = crate::project::ports::load(&crate::project::ports::path(dir));
        for (service, ps) in &recorded.0 {
            for p in ps {
                let ip = std::net::Ipv4Addr::LOCALHOST.into();
                row.ports.push(PortRow::new(
                    service,
                    ip,
                    Some(p.host_port),
                    p.container_port,
                    p.protocol,
                ));
            }
        }
    }
}

/// The containers and volumes of every project in the engine; projects known only there get a
/// row of their own. Without an engine, nothing is added (the error says why).
fn fill_from_engine(rows: &mut Vec<Instance>) -> Result<(), Error> {
    let rt = crate::session::runtime()?;
    rt.block_on(async {
        let docker = DockerRuntime::connect().await?;
        for project in docker.projects().await? {
            if !rows.iter().any(|r| r.project == project) {
                rows.push(Instance::new(project));
            }
        }
        for row in rows.iter_mut() {
            let containers = docker.list(&row.project).await?;
            row.containers = containers.len();
            row.containers_running = containers
                .iter()
                .filter(|c| c.status == ContainerStatus::Running)
                .count();
            row.volumes = docker
                .list_volumes(&row.project)
                .await?
                .into_iter()
                .map(|(full, _)| full)
                .collect();
        }
        Ok::<_, Error>(())
    })?;
    if rows.iter().any(|r| !r.volumes.is_empty()) {
        // One walk of every volume by the engine, on a thread: it may take a while.
        let sizes = std::thread::spawn(crate::docker::df::volume_sizes)
            .join()
            .ok()
            .flatten();
        for row in rows.iter_mut().filter(|r| !r.volumes.is_empty()) {
            row.volume_bytes = sizes
                .as_ref()
                .and_then(|s| row.volumes.iter().map(|v| s.get(v)).sum());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_table() {
        let cases: &[(&str, Protocol, Option<&str>)] = &[
            ("0.0.0.0", Protocol::Tcp, Some("http://127.0.0.1:8080/")),
            ("127.0.0.1", Protocol::Tcp, Some("http://127.0.0.1:8080/")),
            ("::1", Protocol::Tcp, Some("http://[::1]:8080/")),
            ("127.0.0.1", Protocol::Udp, None),
        ];
        for (ip, proto, want) in cases {
            assert_eq!(
                url(ip.parse().unwrap(), 8080, *proto).as_deref(),
                *want,
                "{ip}"
            );
        }
    }
}
