//! `devstack ls [--json]`: every instance of every project on this machine, from the state
//! folders (what `up` recorded, who holds the lock) and the container engine (containers and
//! volumes labelled with a project). A running one is asked through its control socket how many
//! services are ready and on which ports.

use std::path::PathBuf;

use serde::Serialize;

use super::output::print_table;
use super::ports::PortRow;
use super::Env;
use crate::cli::LsArgs;
use crate::config::{Protocol, Stack};
use crate::docker::DockerRuntime;
use crate::error::Error;
use crate::event::ServiceState;
use crate::project::instance::{self, Record};
use crate::runtime::{ContainerRuntime, ContainerStatus};

#[derive(Debug, Serialize)]
struct Row {
    project: String,
    /// The instance's own name; none for a main instance.
    instance: Option<String>,
    /// The folder of the stack file it was last started from.
    path: Option<PathBuf>,
    running: bool,
    /// The devstack that runs it.
    pid: Option<u32>,
    /// Services ready (or completed) and selected, while it runs.
    ready: Option<usize>,
    total: Option<usize>,
    /// As the running devstack publishes them, else as recorded for the instance.
    ports: Vec<PortRow>,
    /// The running devstack's dashboard, with its access token.
    dashboard: Option<String>,
    /// Containers of the project in the engine (any state), and how many of them run.
    containers: usize,
    containers_running: usize,
    /// Named volumes of the project in the engine.
    volumes: Vec<String>,
}

impl Row {
    fn new(project: String) -> Row {
        Row {
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
        }
    }
}

pub fn ls(args: &LsArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let mut rows: Vec<Row> = Vec::new();
    for (project, dir) in crate::project::known_state_dirs() {
        let record = instance::load_record(&dir);
        let pid = crate::project::lock::holder(&dir);
        if record.is_none() && pid.is_none() {
            continue;
        }
        let mut row = Row::new(project);
        row.pid = pid;
        row.running = pid.is_some();
        fill_from_state(&mut row, record, &dir);
        rows.push(row);
    }
    let docker = fill_from_engine(&mut rows);
    rows.sort_by(|a, b| a.project.cmp(&b.project));
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
    } else {
        print_rows(&rows, env)?;
    }
    if let Err(e) = docker {
        writeln!(env.err, "note: containers and volumes not listed: {e}")?;
    }
    Ok(())
}

/// What the state folder knows: where it runs from, and (running) the live states and ports,
/// else the recorded ports.
fn fill_from_state(row: &mut Row, record: Option<Record>, dir: &std::path::Path) {
    if let Some(r) = &record {
        row.instance = r.instance.clone();
        row.path = Some(r.path.clone());
    }
    if row.running {
        let stack = Stack::named(row.project.clone(), row.path.clone().unwrap_or_default());
        // A devstack that is stopping or starting may not answer: it still runs.
        if let Ok(Some(live)) = super::control::live_ps(&stack) {
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
            row.ports = super::ports::live_rows(&stack)
                .ok()
                .flatten()
                .unwrap_or_default();
        }
        row.dashboard = record.and_then(|r| r.dashboard);
    }
    if row.ports.is_empty() {
        let recorded = crate::project::ports::load(&crate::project::ports::path(dir));
        for (service, ps) in &recorded.0 {
            for p in ps {
                let ip = std::net::Ipv4Addr::LOCALHOST.into();
                row.ports.push(PortRow {
                    service: service.clone(),
                    container_port: p.container_port,
                    protocol: p.protocol,
                    host_ip: ip,
                    host_port: Some(p.host_port),
                    url: super::ports::url(ip, p.host_port, p.protocol),
                });
            }
        }
    }
}

/// The containers and volumes of every project in the engine; projects known only there get a
/// row of their own. Without an engine, nothing is added (the error says why).
fn fill_from_engine(rows: &mut Vec<Row>) -> Result<(), Error> {
    let rt = crate::session::runtime()?;
    rt.block_on(async {
        let docker = DockerRuntime::connect().await?;
        for project in docker.projects().await? {
            if !rows.iter().any(|r| r.project == project) {
                rows.push(Row::new(project));
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
    })
}

fn print_rows(rows: &[Row], env: &mut Env<'_>) -> Result<(), Error> {
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let state = match r.pid {
                Some(pid) => format!("running (pid {pid})"),
                None if r.containers_running > 0 => "containers running".to_string(),
                None => "stopped".to_string(),
            };
            let ready = match (r.ready, r.total) {
                (Some(ready), Some(total)) => format!("{ready}/{total}"),
                _ => "-".to_string(),
            };
            let ports: Vec<String> = r
                .ports
                .iter()
                .filter_map(|p| {
                    let udp = if p.protocol == Protocol::Udp {
                        "/udp"
                    } else {
                        ""
                    };
                    Some(format!(
                        "{}:{}{udp}→{}",
                        p.service, p.container_port, p.host_port?
                    ))
                })
                .collect();
            let left = format!(
                "{} container{}, {} volume{}",
                r.containers,
                if r.containers == 1 { "" } else { "s" },
                r.volumes.len(),
                if r.volumes.len() == 1 { "" } else { "s" }
            );
            [
                r.project.clone(),
                state,
                ready,
                if ports.is_empty() {
                    "-".to_string()
                } else {
                    ports.join(", ")
                },
                left,
                r.path
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |p| p.display().to_string()),
            ]
        })
        .collect();
    print_table(
        &["PROJECT", "STATE", "READY", "PORTS", "LEFT", "PATH"],
        &table,
        env.out,
    )
}
