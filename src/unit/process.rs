//! The process unit: owns one native service's process group across its starts. Start spawns
//! it (its own group, marked with `DEVSTACK_MARK`); Stop signals the group, waits its grace,
//! kills it, and then ends whatever of the service escaped the group (`setsid` children,
//! double-forked daemons). A stop never waits on pipes an escaped child holds open, and a Kill
//! cuts short a graceful stop at once.

use std::time::Duration;

use regex::Regex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::output::{pump_pipe, Pump};
use super::{stopped_how, UnitCommand, UnitEvent, UnitHandle};
use crate::config::ServiceName;
use crate::config::{Command, Probe, Service, ServiceKind};
use crate::logs::{LogHandle, Stream};
use crate::plan::HostPorts;
use crate::process::state::{Entry, StateFile};
use crate::process::{self, SpawnSpec};
use crate::redact::Redactor;

/// How long a new instance waits for the old one's ports to be released.
const PORT_WAIT: Duration = Duration::from_secs(5);
/// How long the output of an ended instance may take to drain. Its pipes close as soon as its
/// last process is gone (escaped ones included, they were ended first), so this is only reached
/// when something outside the service holds a pipe; the wait must still be long enough on a
/// loaded machine never to lose a last line.
const DRAIN: Duration = Duration::from_secs(2);

pub(crate) struct ProcessSetup {
    pub project: String,
    pub svc: Service,
    pub ports: HostPorts,
    pub logs: LogHandle,
    pub events: mpsc::UnboundedSender<UnitEvent>,
    pub state: StateFile,
    pub redact: Redactor,
}

pub(crate) fn spawn(setup: ProcessSetup) -> (UnitHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UnitHandle::new(tx), tokio::spawn(run(setup, rx)))
}

/// The command and environment with port references resolved; the service's mark added.
pub(crate) fn spawn_spec(project: &str, svc: &Service, ports: &HostPorts) -> Option<SpawnSpec> {
    let ServiceKind::Process {
        command,
        working_dir,
    } = &svc.kind
    else {
        return None;
    };
    let command = match command {
        Command::Shell(s) => Command::Shell(ports.resolve(s)),
        Command::Argv(v) => Command::Argv(v.iter().map(|a| ports.resolve(a)).collect()),
    };
    let mut env: Vec<(String, String)> = svc
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), ports.resolve(v)))
        .collect();
    env.push((
        process::MARK_VAR.to_string(),
        process::mark(project, &svc.name),
    ));
    Some(SpawnSpec {
        command,
        cwd: working_dir.clone(),
        env,
    })
}

pub(crate) fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(v) => v.join(" "),
    }
}

/// Waits until every port the service listens on is free; the holder if one stays taken.
async fn ports_free(svc: &Service, ports: &HostPorts) -> Result<(), String> {
    for p in ports.0.get(&svc.name).into_iter().flatten() {
        let addr = crate::ports::check_addr(p.host_ip);
        let (port, protocol) = (p.host_port, p.protocol);
        let free = move || crate::ports::is_free(addr, port, protocol);
        if !process::poll_until(Instant::now() + PORT_WAIT, free).await {
            let holder = crate::ports::holder(p.host_port, p.protocol)
                .map_or_else(|| "another process".to_string(), |h| h.to_string());
            return Err(format!(
                "port {}:{} is still held by {holder}; stop it, or the new instance cannot listen there",
                p.host_ip, p.host_port
            ));
        }
    }
    Ok(())
}

async fn run(setup: ProcessSetup, mut rx: mpsc::UnboundedReceiver<UnitCommand>) {
    let ProcessSetup {
        project,
        svc,
        ports,
        logs,
        events,
        state,
        redact,
    } = setup;
    let name = svc.name.clone();
    let Some(spec) = spawn_spec(&project, &svc, &ports) else {
        return;
    };
    let mark = process::mark(&project, &name);
    let send = |e: UnitEvent| {
        // The engine outlives its units.
        let _ = events.send(e);
    };
    let matcher = match svc.ready.as_ref().map(|r| &r.probe) {
        Some(Probe::Log(re)) => Regex::new(re).ok(),
        _ => None,
    };

    loop {
        let epoch = loop {
            match rx.recv().await {
                Some(UnitCommand::Start { epoch }) => break epoch,
                // Nothing runs: nothing to stop.
                Some(UnitCommand::Stop { .. } | UnitCommand::Kill) => {}
                None => return,
            }
        };
        if let Err(reason) = ports_free(&svc, &ports).await {
            send(UnitEvent::StartFailed {
                service: ServiceName::from(name.clone()),
                epoch,
                reason,
            });
            continue;
        }
        let mut child = match process::spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                send(UnitEvent::StartFailed {
                    service: ServiceName::from(name.clone()),
                    epoch,
                    reason: redact.apply(&format!(
                        "cannot start `{}` in `{}`: {e}",
                        command_text(&spec.command),
                        spec.cwd.display()
                    )),
                });
                continue;
            }
        };
        let pid = child.pid;
        if let Err(e) = state.record(Entry {
            service: name.clone(),
            pid,
            pgid: pid,
            start_time: child.start_time,
            command: redact.apply(&command_text(&spec.command)),
        }) {
            tracing::warn!("cannot write the state file: {e}");
        }
        // Started goes out before any line can match a `log` probe: the engine gets them in order.
        send(UnitEvent::Started {
            service: ServiceName::from(name.clone()),
            epoch,
            pid: Some(pid),
            container: None,
            detail: redact.apply(&command_text(&spec.command)),
        });
        let (out, err) = child.take_output_fds();
        let mut pumps: Vec<JoinHandle<()>> = Vec::new();
        for (pipe, stream) in [(out, Stream::Stdout), (err, Stream::Stderr)] {
            if let Some(pipe) = pipe {
                let m = matcher.clone().map(|re| (re, events.clone()));
                let pump = Pump::new(&name, epoch, stream, logs.clone(), m);
                pumps.push(tokio::spawn(pump_pipe(pipe, pump)));
            }
        }

        let (code, how) = tokio::select! {
            code = child.wait() => {
                // The leader is gone: the rest of its group must not outlive it, or a restart
                // would run two copies.
                let _ = process::stop(&mut child, svc.stop_signal.number, svc.stop_grace_period).await;
                (code, None)
            }
            cmd = rx.recv() => {
                let (mut by_kill, grace) = match cmd {
                    Some(UnitCommand::Stop { grace }) => (false, grace),
                    // A second start of a running instance cannot happen (the kernel stops first);
                    // every handle gone means devstack is leaving: kill.
                    Some(UnitCommand::Kill) | Some(UnitCommand::Start { .. }) | None => (true, Duration::ZERO),
                };
                let result = if by_kill {
                    process::kill(&mut child).await
                } else {
                    let stopping = process::stop(&mut child, svc.stop_signal.number, grace);
                    tokio::select! {
                        r = stopping => r,
                        Some(UnitCommand::Kill) = rx.recv() => {
                            by_kill = true;
                            process::kill(&mut child).await
                        }
                    }
                };
                let code = child.wait().await;
                let killed = result == process::Stopped::Killed;
                (code, Some(stopped_how(killed, code, grace, by_kill)))
            }
        };
        // Whatever of the service escaped its group (setsid, a daemon) goes too.
        let (m, sig, grace) = (mark.clone(), svc.stop_signal.number, svc.stop_grace_period);
        let escaped =
            tokio::task::spawn_blocking(move || process::end_escaped(&m, sig, grace, &[pid]))
                .await
                .unwrap_or(0);
        if escaped > 0 {
            logs.event(
                &name,
                format!("ended {escaped} process(es) that had left its process group"),
            )
            .await;
        }
        // The last lines are read; a pipe still held by someone is not waited for.
        let deadline = Instant::now() + DRAIN;
        for p in pumps {
            let abort = p.abort_handle();
            if tokio::time::timeout_at(deadline, p).await.is_err() {
                abort.abort();
            }
        }
        let _ = state.forget(pid);
        send(UnitEvent::Exited {
            service: ServiceName::from(name.clone()),
            epoch,
            code,
            how,
        });
    }
}
