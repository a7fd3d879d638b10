//! `devstack ps`: the live table of a running devstack, or else what the engine and the record
//! of started processes show.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::output::{coarse, print_table};
use super::share::Thin;
use super::Env;
use crate::cli::PsArgs;
use crate::config::{Service, Stack};
use crate::error::Error;
use crate::plan::container_name;
use crate::process::state::StateFile;
use crate::project::state_dir;
use crate::runtime::{ContainerInfo, ContainerRuntime};
use crate::session::{runtime, ContainerEngine};

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

pub(super) fn ps(
    stack: &Stack,
    thin: &Thin,
    args: &PsArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    // A running devstack knows the real states; ask it.
    if let Some(rows) = super::control::live_ps(stack)? {
        if args.json && thin.is_thin() {
            let mut all = serde_json::to_value(&rows).map_err(|e| Error::Encode(e.to_string()))?;
            if let Some(a) = all.as_array_mut() {
                a.extend(shared_rows(thin));
            }
            return print_json(&all, env);
        }
        super::control::print_live_ps(&rows, args.json, env)?;
        return print_shared(thin, env);
    }
    let rt = runtime()?;
    // A stack of native processes only needs no engine (and has no containers).
    let all: Vec<String> = stack.services.keys().cloned().collect();
    let containers = rt.block_on(async {
        ContainerEngine::for_services(stack, &all)
            .await?
            .list(&stack.name)
            .await
            .map_err(Error::from)
    })?;
    let processes = StateFile::new(state_dir(&stack.name).join("processes.json")).load();
    let mut rows = Vec::new();
    for (name, svc) in &stack.services {
        rows.push(if svc.is_container() {
            container_row(
                stack,
                name,
                svc,
                containers.iter().find(|c| &c.service == name),
            )
        } else {
            let running = processes
                .iter()
                .find(|e| &e.service == name && crate::process::group_alive(e.pgid));
            process_row(name, svc, running)
        });
    }
    for c in containers
        .iter()
        .filter(|c| !stack.services.contains_key(c.service.as_str()))
    {
        rows.push(orphan_row(c));
    }
    if args.json {
        rows.extend(shared_rows(thin));
        return print_json(&serde_json::Value::Array(rows), env);
    }
    print_rows(&rows, env)?;
    print_shared(thin, env)
}

fn print_json(v: &serde_json::Value, env: &mut Env<'_>) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Encode(e.to_string()))?;
    writeln!(env.out, "{text}")?;
    Ok(())
}

/// A thin instance's shared services, one row each: state `shared`, the instance that serves
/// them, and the instance's own database, index or prefix in it.
fn shared_rows(thin: &Thin) -> Vec<serde_json::Value> {
    thin.shares
        .iter()
        .map(|s| {
            json!({
                "service": s.service,
                "kind": "container",
                "state": "shared",
                "shared_from": thin.main,
                "share": s.kind,
                s.kind.reference().word(): s.value,
            })
        })
        .collect()
}

fn print_shared(thin: &Thin, env: &mut Env<'_>) -> Result<(), Error> {
    for s in &thin.shares {
        writeln!(
            env.out,
            "{}: shared from the main instance `{}` ({} {} `{}`)",
            s.service,
            thin.main,
            s.kind.name(),
            s.kind.reference().word(),
            s.value
        )?;
    }
    Ok(())
}

/// A native process's row: running while its recorded process group lives.
fn process_row(
    name: &str,
    svc: &Service,
    running: Option<&crate::process::state::Entry>,
) -> serde_json::Value {
    let ports: Vec<String> = svc
        .ports
        .iter()
        .map(|p| format!("{}:{}", p.host_ip, p.container_port))
        .collect();
    json!({
        "service": name,
        "kind": svc.kind_name(),
        "pid": running.map(|e| e.pid),
        "state": if running.is_some() { "running" } else { "not running" },
        "exit_code": Option::<i64>::None,
        "ports": if running.is_some() { ports } else { Vec::new() },
        "health": Option::<String>::None,
        "uptime": running.map(|e| process_uptime(e.start_time)),
    })
}

/// A container service's row, as the engine shows its container (if there is one).
fn container_row(
    stack: &Stack,
    name: &str,
    svc: &Service,
    c: Option<&ContainerInfo>,
) -> serde_json::Value {
    let ports: Vec<String> = c
        .map(|c| {
            c.ports
                .iter()
                .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "service": name,
        "kind": svc.kind_name(),
        "container": c.map_or_else(|| container_name(&stack.name, name), |c| c.name.clone()),
        "id": c.map(|c| c.id.clone()),
        "state": c.map_or("not created", |c| c.status.as_str()),
        "exit_code": c.and_then(|c| (c.status.as_str() == "exited").then_some(c.exit_code).flatten()),
        "ports": ports,
        "health": c.and_then(|c| c.health.clone()),
        "uptime": c.filter(|c| c.status.as_str() == "running").map(|c| uptime(c.started_at)),
    })
}

/// A container of the project whose service is no longer in the stack.
fn orphan_row(c: &ContainerInfo) -> serde_json::Value {
    json!({
        "service": format!("{} (orphan)", c.service),
        "kind": "container",
        "container": c.name,
        "id": c.id,
        "state": c.status.as_str(),
        "exit_code": c.exit_code,
        "ports": c.ports.iter().map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port)).collect::<Vec<_>>(),
        "health": c.health,
        "uptime": Option::<String>::None,
    })
}

/// The rows as a table for people.
fn print_rows(rows: &[serde_json::Value], env: &mut Env<'_>) -> Result<(), Error> {
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
