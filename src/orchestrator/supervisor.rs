//! The supervisor of one native process service: an actor that owns the child. It starts it,
//! pumps its output into the log mux, probes readiness after every start, restarts it on file
//! changes (stop, wait until the whole group is gone, start again) and on crashes by its restart
//! policy with exponential backoff, and stops it on command.

use std::time::Duration;

use regex::Regex;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::Input;
use crate::config::{Command, Probe, RestartPolicy, Service, ServiceKind};
use crate::logs::split::LineSplitter;
use crate::logs::{LogHandle, LogLine, Stream};
use crate::plan::HostPorts;
use crate::process::state::{Entry, StateFile};
use crate::process::{self, SpawnSpec};
use crate::readiness::{self, NotReady, ProbeTarget};

/// First pause before restarting a crashed process; doubles up to [`BACKOFF_CAP`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A run this long counts as stable: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Restarts within this window that make a crash loop worth calling one.
const CRASH_LOOP_COUNT: usize = 3;

pub enum SupervisorCommand {
    /// Files changed: stop and start again. `why` is shown.
    Restart { why: String },
    /// Stop with the service's signal and grace; reply once the whole group is gone.
    Stop { reply: oneshot::Sender<()> },
    /// SIGKILL the group now; reply once it is gone.
    Kill { reply: oneshot::Sender<()> },
}

/// A cheap handle to a supervisor.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<SupervisorCommand>,
}

impl SupervisorHandle {
    pub fn restart(&self, why: String) {
        // A supervisor that has ended has nothing left to restart.
        let _ = self.tx.send(SupervisorCommand::Restart { why });
    }

    pub async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(SupervisorCommand::Stop { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn kill(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(SupervisorCommand::Kill { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The next pause after `failures` crashes in a row. Pure.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_CAP)
}

/// Whether a process that exited with `code` is started again by `policy`. Pure.
pub fn restarts(policy: RestartPolicy, code: i64) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Always => true,
    }
}

/// A process as a probe target: its exit shows on a watch channel; exec runs on the host.
struct ProcessTarget {
    exited: watch::Receiver<Option<i64>>,
    cwd: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl ProbeTarget for ProcessTarget {
    async fn exited(&self) -> Result<Option<i64>, String> {
        Ok(*self.exited.borrow())
    }

    async fn exec(&self, argv: &[String]) -> Result<(i64, String), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((i64::from(out.status.code().unwrap_or(-1)), text))
    }

    async fn health(&self) -> Result<(Option<String>, bool), String> {
        Err("a native process has no container healthcheck".to_string())
    }
}

pub struct SupervisorSetup {
    pub svc: Service,
    pub ports: HostPorts,
    pub logs: LogHandle,
    pub events: mpsc::UnboundedSender<Input>,
    pub state: StateFile,
    /// Cancelled when start-up is abandoned; the supervisor then only waits for Stop/Kill.
    pub cancel: CancellationToken,
}

pub fn spawn(setup: SupervisorSetup) -> (SupervisorHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(setup, rx));
    (SupervisorHandle { tx }, task)
}

fn spawn_spec(svc: &Service, ports: &HostPorts) -> Option<SpawnSpec> {
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
    let env = svc
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), ports.resolve(v)))
        .collect();
    Some(SpawnSpec {
        command,
        cwd: working_dir.clone(),
        env,
    })
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(v) => v.join(" "),
    }
}

/// Reads one pipe to its end, line by line, into the mux; the last line without a newline too.
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut pipe: R,
    service: String,
    stream: Stream,
    logs: LogHandle,
    matcher: Option<Regex>,
    matched: Option<mpsc::UnboundedSender<()>>,
) {
    let mut split = LineSplitter::default();
    let mut buf = vec![0u8; 16 * 1024];
    let emit = |text: String| {
        if let (Some(re), Some(tx)) = (&matcher, &matched) {
            if re.is_match(&text) {
                let _ = tx.send(());
            }
        }
        LogLine {
            at: std::time::SystemTime::now(),
            source: service.clone(),
            stream,
            text,
        }
    };
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for text in split.push(&buf[..n]) {
                    logs.line(emit(text)).await;
                }
            }
        }
    }
    if let Some(text) = split.finish() {
        logs.line(emit(text)).await;
    }
}

/// While nothing runs: the next command. `Some(why)` to start again, `None` to end (a stop is
/// answered at once: there is nothing to stop).
async fn idle(rx: &mut mpsc::UnboundedReceiver<SupervisorCommand>) -> Option<String> {
    match rx.recv().await? {
        SupervisorCommand::Restart { why } => Some(why),
        SupervisorCommand::Stop { reply } | SupervisorCommand::Kill { reply } => {
            let _ = reply.send(());
            None
        }
    }
}

enum Outcome {
    Exited(i64),
    Command(SupervisorCommand),
}

async fn run(setup: SupervisorSetup, mut rx: mpsc::UnboundedReceiver<SupervisorCommand>) {
    let SupervisorSetup {
        svc,
        ports,
        logs,
        events,
        state,
        cancel,
    } = setup;
    let name = svc.name.clone();
    let Some(spec) = spawn_spec(&svc, &ports) else {
        return;
    };
    let send = |i: Input| {
        // The orchestrator outlives its supervisors; after it is gone nobody needs events.
        let _ = events.send(i);
    };
    let matcher = match svc.ready.as_ref().map(|r| &r.probe) {
        Some(Probe::Log(re)) => Regex::new(re).ok(),
        _ => None,
    };
    let mut failures: u32 = 0;
    let mut recent_crashes: Vec<Instant> = Vec::new();
    let mut pending_restart: Option<String> = None;

    'life: loop {
        if let Some(why) = pending_restart.take() {
            logs.event(&name, format!("restarting: {why}")).await;
        }
        // The old instance is gone; wait for its ports to be free so the new one can bind them.
        for p in ports.0.get(&name).into_iter().flatten() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !crate::ports::is_free(
                crate::ports::check_addr(p.host_ip),
                p.host_port,
                p.protocol,
            ) && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut child = match process::spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!(
                    "cannot start `{}` in `{}`: {e}",
                    command_text(&spec.command),
                    spec.cwd.display()
                );
                logs.event(&name, reason.clone()).await;
                send(Input::Failed {
                    service: name.clone(),
                    reason,
                });
                // Nothing runs; wait for a change (fix the file, it restarts) or a stop.
                match idle(&mut rx).await {
                    Some(why) => {
                        pending_restart = Some(why);
                        continue 'life;
                    }
                    None => return,
                }
            }
        };
        let started = Instant::now();
        let pid = child.pid;
        if let Err(e) = state.record(Entry {
            service: name.clone(),
            pid,
            pgid: pid,
            start_time: child.start_time,
            command: command_text(&spec.command),
        }) {
            tracing::warn!("cannot write the state file: {e}");
        }
        logs.event(
            &name,
            format!("started (pid {pid}): {}", command_text(&spec.command)),
        )
        .await;

        let (match_tx, mut match_rx) = mpsc::unbounded_channel();
        let (out, err) = child.take_output();
        let mut pumps = Vec::new();
        if let Some(out) = out {
            pumps.push(tokio::spawn(pump(
                out,
                name.clone(),
                Stream::Stdout,
                logs.clone(),
                matcher.clone(),
                Some(match_tx.clone()),
            )));
        }
        if let Some(err) = err {
            pumps.push(tokio::spawn(pump(
                err,
                name.clone(),
                Stream::Stderr,
                logs.clone(),
                matcher.clone(),
                Some(match_tx),
            )));
        }
        send(Input::Started(name.clone()));

        // Readiness runs beside the child; it ends when ready, failed, or the instance ends.
        let (exit_tx, exit_rx) = watch::channel(None);
        let probe_cancel = cancel.child_token();
        let probe = svc.ready.clone().map(|ready| {
            let target = ProcessTarget {
                exited: exit_rx,
                cwd: spec.cwd.clone(),
                env: spec.env.clone(),
            };
            let (name, ports, logs, events, probe_cancel) = (
                name.clone(),
                ports.clone(),
                logs.clone(),
                events.clone(),
                probe_cancel.clone(),
            );
            let log_rx = matches!(ready.probe, Probe::Log(_)).then(|| {
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    if match_rx.recv().await.is_some() {
                        let _ = tx.send(());
                    }
                });
                rx
            });
            tokio::spawn(async move {
                match readiness::wait_ready(&target, &name, &ready, &ports, log_rx, &probe_cancel)
                    .await
                {
                    Ok(took) => {
                        logs.event(&name, format!("ready in {} ms", took.as_millis()))
                            .await;
                        let _ = events.send(Input::Ready(name));
                    }
                    Err(NotReady::TimedOut { after, last_error }) => {
                        let reason = format!(
                            "not ready after {}: {last_error}",
                            humantime::format_duration(after)
                        );
                        logs.event(&name, reason.clone()).await;
                        let _ = events.send(Input::Failed {
                            service: name,
                            reason,
                        });
                    }
                    Err(NotReady::Engine(e)) => {
                        let _ = events.send(Input::Failed {
                            service: name,
                            reason: e,
                        });
                    }
                    // The supervisor reports exits itself.
                    Err(NotReady::Exited(_)) | Err(NotReady::Cancelled) => {}
                }
            })
        });

        let outcome = tokio::select! {
            code = child.wait() => Outcome::Exited(code),
            cmd = rx.recv() => match cmd {
                Some(c) => Outcome::Command(c),
                // Every handle dropped: the orchestrator is gone; stop like a Stop would.
                None => Outcome::Command(SupervisorCommand::Kill { reply: oneshot::channel().0 }),
            },
        };
        let code = match outcome {
            Outcome::Exited(code) => Some(code),
            Outcome::Command(cmd) => {
                probe_cancel.cancel();
                let (result, reply, restart) = match cmd {
                    SupervisorCommand::Restart { why } => (
                        process::stop(&mut child, svc.stop_signal.number, svc.stop_grace_period)
                            .await,
                        None,
                        Some(why),
                    ),
                    SupervisorCommand::Stop { reply } => (
                        process::stop(&mut child, svc.stop_signal.number, svc.stop_grace_period)
                            .await,
                        Some(reply),
                        None,
                    ),
                    SupervisorCommand::Kill { reply } => {
                        (process::kill(&mut child).await, Some(reply), None)
                    }
                };
                for p in pumps.drain(..) {
                    let _ = p.await;
                }
                let _ = state.forget(pid);
                let how = match result {
                    process::Stopped::Exited(c) => format!("stopped (exit code {c})"),
                    process::Stopped::Killed => format!(
                        "killed after the {} grace period",
                        humantime::format_duration(svc.stop_grace_period)
                    ),
                };
                if let Some(reply) = reply {
                    logs.event(&name, how).await;
                    let _ = reply.send(());
                    return;
                }
                // A burst of changes during the restart gives one more restart, not many.
                let mut why = restart.unwrap_or_default();
                while let Ok(cmd) = rx.try_recv() {
                    match cmd {
                        SupervisorCommand::Restart { why: w } => why = w,
                        SupervisorCommand::Stop { reply } | SupervisorCommand::Kill { reply } => {
                            let _ = reply.send(());
                            return;
                        }
                    }
                }
                pending_restart = Some(why);
                failures = 0;
                None
            }
        };
        let _ = exit_tx.send(code);
        let Some(code) = code else { continue 'life };

        // It exited by itself: the last lines first, then what happens next.
        for p in pumps.drain(..) {
            let _ = p.await;
        }
        if let Some(p) = probe {
            // Give the probe a moment to see the exit; it ends on its own.
            let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
        }
        let _ = state.forget(pid);
        logs.event(&name, format!("exited with code {code}")).await;
        let again = restarts(svc.restart, code) && !cancel.is_cancelled();
        // A process its policy restarts is not finished: start-up goes on around it (a crash
        // loop shows as such); only a final exit counts for dependents and for start-up.
        if !again {
            send(Input::Exited {
                service: name.clone(),
                code,
            });
        }

        if started.elapsed() >= STABLE_AFTER {
            failures = 0;
            recent_crashes.clear();
        }
        if !again {
            // Stays down until a file changes or it is stopped.
            match idle(&mut rx).await {
                Some(why) => {
                    pending_restart = Some(why);
                    continue 'life;
                }
                None => return,
            }
        }
        failures += 1;
        recent_crashes.push(Instant::now());
        recent_crashes.retain(|t| t.elapsed() < Duration::from_secs(60));
        let pause = backoff(failures);
        if recent_crashes.len() >= CRASH_LOOP_COUNT {
            let tail = logs.tail(&name).await;
            let last: Vec<&String> = tail
                .iter()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            logs.event(
                &name,
                format!(
                    "crash loop: exited {} times in the last minute; next start in {}; last lines:",
                    recent_crashes.len(),
                    humantime::format_duration(pause)
                ),
            )
            .await;
            for l in last {
                logs.event(&name, format!("  {l}")).await;
            }
        } else {
            logs.event(
                &name,
                format!(
                    "restarting in {} ({})",
                    humantime::format_duration(pause),
                    policy_name(svc.restart)
                ),
            )
            .await;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            cmd = rx.recv() => match cmd {
                Some(SupervisorCommand::Restart { why }) => pending_restart = Some(why),
                Some(SupervisorCommand::Stop { reply }) | Some(SupervisorCommand::Kill { reply }) => {
                    let _ = reply.send(());
                    return;
                }
                None => return,
            },
        }
    }
}

fn policy_name(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::No => "restart: no",
        RestartPolicy::OnFailure => "restart: on-failure",
        RestartPolicy::Always => "restart: always",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let got: Vec<u128> = (1..=12).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(
            got,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        assert_eq!(backoff(1000), BACKOFF_CAP);
    }

    #[test]
    fn restart_policies() {
        assert!(!restarts(RestartPolicy::No, 1));
        assert!(restarts(RestartPolicy::OnFailure, 1));
        assert!(!restarts(RestartPolicy::OnFailure, 0));
        assert!(restarts(RestartPolicy::Always, 0));
    }
}
