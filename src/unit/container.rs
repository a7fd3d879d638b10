//! The container unit: owns one container service's container from `create` on. It reuses an
//! unchanged container, recreates a changed one, follows its output and its exit itself (the
//! engine's restart policy is off), so a container that crashes after start-up is reported like
//! a crashed process. Stop is the engine's stop with grace; Kill cuts it short.

use futures_util::StreamExt;
use regex::Regex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::output::Pump;
use super::{stopped_how, UnitCommand, UnitEvent, UnitHandle};
use crate::config::ServiceName;
use crate::config::{Hook, Probe, Service};
use crate::logs::{LogHandle, Stream};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, RuntimeError,
};

pub(crate) struct ContainerSetup<R> {
    pub rt: R,
    pub svc: Service,
    pub spec: ContainerSpec,
    /// This project's container of the service from before this run, if any.
    pub existing: Option<ContainerInfo>,
    pub logs: LogHandle,
    pub events: mpsc::UnboundedSender<UnitEvent>,
    /// The project's state folder, where a succeeded `pre_start` run is recorded.
    pub state_dir: Option<std::path::PathBuf>,
    /// Create the container now, before its start is asked for (its dependencies are not
    /// ready yet): the start then only starts it, and the create is off the critical path.
    pub create_ahead: bool,
}

pub(crate) fn spawn<R: ContainerRuntime>(setup: ContainerSetup<R>) -> (UnitHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UnitHandle::new(tx), tokio::spawn(run(setup, rx)))
}

fn conflict_help(e: RuntimeError, name: &str) -> RuntimeError {
    match e {
        RuntimeError::Engine(m) if m.contains("already in use") => RuntimeError::Engine(format!(
            "a container named `{name}` exists but devstack did not create it: {m}; remove or rename it, or pick another project name with `-p`"
        )),
        other => other,
    }
}

/// The container to start: the existing one when its config hash matches, else a new one.
async fn ensure<R: ContainerRuntime>(
    rt: &R,
    spec: &ContainerSpec,
    existing: Option<ContainerInfo>,
) -> Result<(String, &'static str, bool), RuntimeError> {
    let hash = spec
        .labels
        .get(crate::runtime::labels::CONFIG_HASH)
        .cloned()
        .unwrap_or_default();
    match existing {
        Some(c) if c.config_hash == hash => {
            let running = c.status == ContainerStatus::Running;
            let what = if running {
                "running already, config unchanged"
            } else {
                "starting (config unchanged)"
            };
            Ok((c.id, what, running))
        }
        Some(c) => {
            rt.remove(&c.id).await?;
            Ok((rt.create(spec).await?, "config changed: recreated", false))
        }
        None => Ok((
            rt.create(spec)
                .await
                .map_err(|e| conflict_help(e, &spec.name))?,
            "created",
            false,
        )),
    }
}

async fn run<R: ContainerRuntime>(
    setup: ContainerSetup<R>,
    mut rx: mpsc::UnboundedReceiver<UnitCommand>,
) {
    let ContainerSetup {
        rt,
        svc,
        spec,
        mut existing,
        logs,
        events,
        state_dir,
        create_ahead,
    } = setup;
    let name = svc.name.clone();
    let send = |e: UnitEvent| {
        // The engine outlives its units.
        let _ = events.send(e);
    };
    let matcher = match svc.ready.as_ref().map(|r| &r.probe) {
        Some(Probe::Log(re)) => Regex::new(re).ok(),
        _ => None,
    };
    let mut id: Option<String> = None;
    // The engine's stamp of the last line shown: a restart's log starts after it.
    let mut shown: Option<i128> = None;
    // Made ahead: the first start takes it. A failure here is left to that start to meet
    // again and report.
    let mut ahead = None;
    if create_ahead {
        if let Ok(made) = ensure(&rt, &spec, existing.clone()).await {
            existing = None;
            ahead = Some(made);
        }
    }

    loop {
        let epoch = loop {
            match rx.recv().await {
                Some(UnitCommand::Start { epoch }) => break epoch,
                Some(UnitCommand::Stop { .. } | UnitCommand::Kill) => {}
                // devstack leaves: the container stays as it is (`up --wait`), but one made
                // ahead for a start that never came goes: nothing of a failed start-up stays.
                None => {
                    if let Some((cid, "created", _)) = ahead {
                        if let Err(e) = rt.remove(&cid).await {
                            logs.event(&name, format!("could not remove: {e}")).await;
                        }
                    }
                    return;
                }
            }
        };
        let (cid, what, running) = match (&id, ahead.take()) {
            (Some(cid), _) => (cid.clone(), "started", false),
            (None, Some(made)) => made,
            (None, None) => match ensure(&rt, &spec, existing.take()).await {
                Ok(x) => x,
                Err(e) => {
                    send(UnitEvent::StartFailed {
                        service: ServiceName::from(name.clone()),
                        epoch,
                        reason: e.to_string(),
                    });
                    continue;
                }
            },
        };
        // From here on the container is this unit's: whatever happens, a stop reaches it.
        id = Some(cid.clone());
        if !running {
            let fresh = matches!(what, "created" | "config changed: recreated");
            let started =
                start_with_hooks(&rt, &spec, &svc, &cid, fresh, state_dir.as_deref(), &logs);
            if let Err((reason, removed)) = started.await {
                if removed {
                    id = None;
                }
                send(UnitEvent::StartFailed {
                    service: ServiceName::from(name.clone()),
                    epoch,
                    reason,
                });
                continue;
            }
        }
        // Started goes out as soon as the engine has started it, so that the probe begins at
        // once (the inspect for where its log starts is off that path), and before any line
        // can match a `log` probe: the engine gets them in order.
        send(UnitEvent::Started {
            service: ServiceName::from(name.clone()),
            epoch,
            pid: None,
            container: Some(cid.clone()),
            detail: format!("container `{}` {what}", spec.name),
        });
        let (done_tx, mut done_rx) = oneshot::channel();
        let follower = tokio::spawn(follow(
            rt.clone(),
            cid.clone(),
            name.clone(),
            epoch,
            (shown, spec.options.tty),
            logs.clone(),
            matcher.clone().map(|re| (re, events.clone())),
            done_tx,
        ));

        let (code, how) = tokio::select! {
            ended = &mut done_rx => {
                let (code, last) = ended.unwrap_or((-1, shown));
                shown = last;
                (code, None)
            }
            cmd = rx.recv() => {
                let (mut by_kill, grace) = match cmd {
                    Some(UnitCommand::Stop { grace }) => (false, grace),
                    Some(UnitCommand::Kill) | Some(UnitCommand::Start { .. }) => (true, std::time::Duration::ZERO),
                    None => {
                        // `up --wait`: leave it running.
                        follower.abort();
                        return;
                    }
                };
                if !by_kill {
                    // A failed `pre_stop` hook is shown; the container is stopped all the same,
                    // as Compose does.
                    let hooks = &svc.options.pre_stop;
                    if let Err(why) = run_hooks(&rt, &cid, hooks, "pre_stop", &logs, &name).await {
                        logs.event(&name, why).await;
                    }
                }
                let result = if by_kill {
                    rt.kill(&cid).await
                } else {
                    tokio::select! {
                        r = rt.stop(&cid, grace) => r,
                        Some(UnitCommand::Kill) = rx.recv() => {
                            by_kill = true;
                            rt.kill(&cid).await
                        }
                    }
                };
                if let Err(e) = result {
                    logs.event(&name, format!("could not stop: {e}")).await;
                }
                let code = match tokio::time::timeout(std::time::Duration::from_secs(10), &mut done_rx).await {
                    Ok(Ok((code, last))) => {
                        shown = last;
                        code
                    }
                    _ => rt.inspect(&cid).await.ok().and_then(|i| i.exit_code).unwrap_or(-1),
                };
                // Docker reports 137 after its own SIGKILL at the end of the grace.
                let killed = !by_kill && code == 137;
                (code, Some(stopped_how(killed, code, grace, by_kill)))
            }
        };
        follower.abort();
        send(UnitEvent::Exited {
            service: ServiceName::from(name.clone()),
            epoch,
            code,
            how,
        });
    }
}

/// Starts a container that is not running, with Compose's hooks around the start: `pre_start`
/// steps before it, `post_start` hooks after it. On failure, why, and whether the container is
/// gone: a failed `pre_start` leaves nothing half started, so a container made for this start
/// (`fresh`) is removed (the next start makes it anew and runs every step again), one found
/// stopped stays as it was; a failed `post_start` stops the container, so that it does not run
/// on without it.
async fn start_with_hooks<R: ContainerRuntime>(
    rt: &R,
    spec: &ContainerSpec,
    svc: &Service,
    cid: &str,
    fresh: bool,
    state_dir: Option<&std::path::Path>,
    logs: &LogHandle,
) -> Result<(), (String, bool)> {
    let name = &svc.name;
    if let Err(reason) = super::pre_start::run(rt, spec, cid, state_dir, logs).await {
        if fresh {
            if let Err(e) = rt.remove(cid).await {
                logs.event(name, format!("could not remove: {e}")).await;
            }
        }
        return Err((reason, fresh));
    }
    if let Err(e) = rt.start(cid).await {
        return Err((format!("cannot start: {e}"), false));
    }
    let hooks = &svc.options.post_start;
    if let Err(reason) = run_hooks(rt, cid, hooks, "post_start", logs, name).await {
        if let Err(e) = rt.kill(cid).await {
            logs.event(name, format!("could not stop: {e}")).await;
        }
        return Err((reason, false));
    }
    Ok(())
}

/// Runs lifecycle hooks in order in the container; the first that fails ends the run, with why.
pub(crate) async fn run_hooks<R: ContainerRuntime>(
    rt: &R,
    cid: &str,
    hooks: &[Hook],
    what: &str,
    logs: &LogHandle,
    name: &str,
) -> Result<(), String> {
    for hook in hooks {
        let exec = crate::plan::hook_exec(hook);
        let shown = exec.argv.join(" ");
        logs.event(name, format!("{what} hook `{shown}`")).await;
        match rt.exec_hook(cid, &exec).await {
            Ok((0, _)) => {}
            Ok((code, out)) => {
                return Err(format!(
                    "{what} hook `{shown}` exited with {code}: {}",
                    out.trim()
                ))
            }
            Err(e) => return Err(format!("{what} hook `{shown}` could not run: {e}")),
        }
    }
    Ok(())
}

/// Streams a container's output into the mux until it stops; then sends its exit code and the
/// engine's stamp of the last line it showed. `after`: that stamp from the run before (its
/// lines from the second this start began in are not shown again), and whether the container
/// has a TTY (whose raw stream has no stamps).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the values are what the event carries"
)]
async fn follow<R: ContainerRuntime>(
    rt: R,
    id: String,
    service: String,
    epoch: u64,
    (mut shown, tty): (Option<i128>, bool),
    logs: LogHandle,
    matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
    done: oneshot::Sender<(i64, Option<i128>)>,
) {
    let mut out = Pump::new(
        &service,
        epoch,
        Stream::Stdout,
        logs.clone(),
        matcher.clone(),
    );
    let mut err = Pump::new(&service, epoch, Stream::Stderr, logs.clone(), matcher);
    // From the second this start began in (its first lines can be stamped a little before the
    // engine's `StartedAt`); an inspect that fails is left to the one after the stream.
    let mut since = match rt.inspect(&id).await {
        Ok(info) => info.started_at.unwrap_or_else(now_secs),
        Err(_) => now_secs(),
    };
    loop {
        let mut stream = rt.logs(&id, since, shown, tty);
        while let Some(Ok(chunk)) = stream.next().await {
            shown = chunk.at_ns.or(shown);
            if chunk.stderr {
                err.push(&chunk.bytes).await;
            } else {
                out.push(&chunk.bytes).await;
            }
        }
        match rt.inspect(&id).await {
            Ok(info)
                if matches!(
                    info.status,
                    ContainerStatus::Running | ContainerStatus::Restarting
                ) =>
            {
                // The log stream broke off while it runs: on from the last line shown (whose
                // stamp drops what came with it), or from now for a TTY's.
                since = match (shown, tty) {
                    (Some(at), false) => at.div_euclid(1_000_000_000) as i64,
                    _ => now_secs(),
                };
            }
            Ok(info) => {
                out.finish().await;
                err.finish().await;
                let _ = done.send((info.exit_code.unwrap_or(-1), shown));
                return;
            }
            Err(_) => {
                let _ = done.send((-1, shown));
                return;
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
