//! The control socket's server: serves a running stack's `StackHandle` to other processes on
//! `<state>/control.sock`, mode 0600 in a 0700 folder; a peer of another uid is refused
//! (`SO_PEERCRED`). It keeps no state about services: every answer comes from the handle's
//! snapshot and event stream, and commands go through the handle like any other client's.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use super::protocol::{Envelope, PsRow, Reply, Request, PROTOCOL_VERSION};
use crate::config::ServiceName;
use crate::engine::{NotReadyReport, ServiceStatus, StackHandle, TAIL_LINES};
use crate::error::exit;
use crate::event::{ServiceState, StackEvent};
use crate::logs::files::{event_records, Record};
use crate::logs::mux::Published;
use crate::logs::LogHandle;
use crate::runtime::{ContainerRuntime, UsageSample};

/// How long a client gets to send its request after connecting.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer waits for the events behind a state it already sees.
const EVENT_GRACE: Duration = Duration::from_secs(2);
/// The gap between the two readings that give CPU %.
const CPU_WINDOW: Duration = Duration::from_millis(250);

/// What a connection needs; shared read-only by every connection.
struct Ctx<R> {
    project: String,
    handle: StackHandle,
    rt: R,
    logs_dir: PathBuf,
    /// The run's log mux: its tails hold every line a unit sent before it reported an exit.
    logs: LogHandle,
}

/// A running server. [`Server::close`] stops it and removes the socket.
pub struct Server {
    path: PathBuf,
    accept: tokio::task::JoinHandle<JoinSet<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Makes `dir` private (0700) and binds `dir/control.sock` (0600). A socket file already there
/// is a dead devstack's: the caller holds the project lock, so nobody else serves it.
pub fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl Server {
    /// Starts serving on `socket` (on the current tokio runtime).
    pub fn start<R: ContainerRuntime>(
        socket: &Path,
        project: &str,
        handle: StackHandle,
        rt: R,
        logs_dir: PathBuf,
        logs: LogHandle,
    ) -> std::io::Result<Server> {
        let listener = bind(socket)?;
        let ctx = std::sync::Arc::new(Ctx {
            project: project.to_string(),
            handle,
            rt,
            logs_dir,
            logs,
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let accept = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let ctx = ctx.clone();
                            conns.spawn(async move { connection(ctx, stream).await });
                        }
                        Err(e) => tracing::warn!("control socket: cannot accept: {e}"),
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns
        });
        Ok(Server {
            path: socket.to_path_buf(),
            accept,
            stop,
        })
    }

    /// Stops accepting, removes the socket, lets the connections that wait for the end of the
    /// run (`shutdown`, `logs`) say so, and ends the rest.
    pub async fn close(self) {
        let _ = self.stop.send(());
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut conns) = self.accept.await {
            let deadline = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    next = conns.join_next() => if next.is_none() { break },
                }
            }
            conns.shutdown().await;
        }
    }
}

/// Whether the peer runs as our own user.
fn same_user(stream: &UnixStream) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => Ok(()),
        Ok(cred) => Err(format!(
            "connection refused: uid {} may not control a devstack of uid {me}",
            cred.uid()
        )),
        Err(e) => Err(format!("connection refused: cannot check the peer: {e}")),
    }
}

struct Conn {
    stream: tokio::io::WriteHalf<UnixStream>,
}

impl Conn {
    async fn send(&mut self, reply: &Reply) -> bool {
        let Ok(mut line) = serde_json::to_vec(reply) else {
            return false;
        };
        line.push(b'\n');
        self.stream.write_all(&line).await.is_ok()
    }

    async fn error(&mut self, code: i32, message: impl Into<String>) {
        self.send(&Reply::Error {
            code,
            message: message.into(),
            not_ready: None,
        })
        .await;
    }
}

async fn connection<R: ContainerRuntime>(ctx: std::sync::Arc<Ctx<R>>, stream: UnixStream) {
    let refused = same_user(&stream);
    let (read, write) = tokio::io::split(stream);
    let mut conn = Conn { stream: write };
    if let Err(why) = refused {
        tracing::warn!("control socket: {why}");
        conn.error(exit::FAILURE, why).await;
        return;
    }
    let hello = Reply::Hello {
        v: PROTOCOL_VERSION,
        project: ctx.project.clone(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if !conn.send(&hello).await {
        return;
    }
    let mut lines = BufReader::new(read).lines();
    let line = match tokio::time::timeout(REQUEST_TIMEOUT, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        _ => return,
    };
    let envelope: Envelope = match serde_json::from_str(&line) {
        Ok(e) => e,
        Err(e) => {
            conn.error(exit::CONFIG, format!("cannot read the request: {e}"))
                .await;
            return;
        }
    };
    if envelope.v != PROTOCOL_VERSION {
        conn.error(
            exit::CONFIG,
            format!(
                "protocol version {} is not spoken here (this devstack speaks {PROTOCOL_VERSION})",
                envelope.v
            ),
        )
        .await;
        return;
    }
    let mut handle = ctx.handle.clone();
    // Until the engine's first turn the snapshot is empty: no service is known yet. An engine
    // that ends before it (a port already held, a refused start) has started nothing: that is
    // never "ready", whatever was asked.
    while handle.snapshot().is_empty() {
        if !handle.changed().await {
            return ended_before_start(&ctx.project, &envelope.request, &mut conn).await;
        }
    }
    let known: Vec<ServiceName> = handle.snapshot().into_iter().map(|s| s.service).collect();
    let check = |services: &[ServiceName]| -> Result<Vec<ServiceName>, String> {
        if services.is_empty() {
            return Ok(known.clone());
        }
        for s in services {
            if !known.contains(s) {
                return Err(format!(
                    "no service `{s}` in this run of project `{}` (it runs {})",
                    ctx.project,
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(services.to_vec())
    };
    // Subscribed before any command is sent, so nothing it causes is missed.
    let mut events = handle.subscribe();
    // Every request that names services is checked the same way; none named means all.
    let named = match &envelope.request {
        Request::Restart { services, .. }
        | Request::Start { services, .. }
        | Request::Stop { services, .. }
        | Request::Wait { services, .. }
        | Request::Logs { services } => Some(check(services)),
        Request::Ps | Request::Shutdown | Request::Apply { .. } => None,
    };
    let services = match named {
        Some(Ok(s)) => s,
        Some(Err(m)) => return conn.error(exit::CONFIG, m).await,
        None => Vec::new(),
    };
    match envelope.request {
        Request::Ps => {
            let rows = ps_rows(&ctx).await;
            conn.send(&Reply::Ps { services: rows }).await;
        }
        Request::Apply { dry_run } => match handle.apply(dry_run).await {
            Some(answer) => {
                conn.send(&Reply::Apply { answer }).await;
            }
            None => {
                let message = format!("the devstack of project `{}` stopped", ctx.project);
                conn.error(exit::NOT_RUNNING, message).await;
            }
        },
        Request::Shutdown => {
            handle.shutdown();
            // Relay everything until the engine has ended.
            loop {
                tokio::select! {
                    alive = handle.changed() => if !alive { break },
                    item = events.recv() => match item {
                        Ok(p) => { relay(&mut conn, &p, &[]).await; }
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            conn.send(&Reply::Done {
                services: Vec::new(),
            })
            .await;
        }
        Request::Logs {
            services: ref asked,
        } => {
            // None named: everything, devstack's own stack-wide events included.
            let services = if asked.is_empty() {
                Vec::new()
            } else {
                services
            };
            loop {
                tokio::select! {
                    alive = handle.changed() => if !alive { break },
                    item = events.recv() => match item {
                        Ok(p) => if !relay(&mut conn, &p, &services).await { return },
                        Err(RecvError::Lagged(n)) => {
                            let note = StackEvent::warning(None, format!("this client fell behind: {n} lines were skipped"));
                            let p = Published::Event { at: std::time::SystemTime::now(), event: note };
                            if !relay(&mut conn, &p, &[]).await { return }
                        }
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            conn.send(&Reply::Done {
                services: Vec::new(),
            })
            .await;
        }
        Request::Restart {
            wait, timeout_ms, ..
        }
        | Request::Start {
            wait, timeout_ms, ..
        } => {
            let restart = matches!(envelope.request, Request::Restart { .. });
            let targets = bring_up(&handle, &services, restart);
            finish(
                &ctx,
                &mut conn,
                &mut handle,
                &mut events,
                targets,
                wait,
                timeout_ms,
            )
            .await;
        }
        Request::Stop { wait, .. } => {
            for s in &services {
                handle.stop(s);
            }
            let targets = services.iter().map(|s| (s.clone(), Target::Down)).collect();
            finish(
                &ctx,
                &mut conn,
                &mut handle,
                &mut events,
                targets,
                wait,
                None,
            )
            .await;
        }
        Request::Wait { timeout_ms, .. } => {
            let targets = services
                .iter()
                .map(|s| (s.clone(), Target::Ready { after_epoch: None }))
                .collect();
            finish(
                &ctx,
                &mut conn,
                &mut handle,
                &mut events,
                targets,
                true,
                timeout_ms,
            )
            .await;
        }
    }
}

/// The answer of a run that ended before it started anything: what asks for a stop or the
/// states is answered (nothing runs); what waits for services is an error, never "ready".
async fn ended_before_start(project: &str, request: &Request, conn: &mut Conn) {
    match request {
        Request::Shutdown => {
            conn.send(&Reply::Done {
                services: Vec::new(),
            })
            .await;
        }
        Request::Ps => {
            conn.send(&Reply::Ps {
                services: Vec::new(),
            })
            .await;
        }
        _ => {
            let message = format!("the devstack of project `{project}` stopped");
            conn.error(exit::NOT_RUNNING, message).await;
        }
    }
}

/// Sends `restart` (or `start`) for each service; the target each must reach.
fn bring_up(
    handle: &StackHandle,
    services: &[ServiceName],
    restart: bool,
) -> Vec<(ServiceName, Target)> {
    let before: HashMap<String, ServiceStatus> = handle
        .snapshot()
        .into_iter()
        .map(|s| (s.service.to_string(), s))
        .collect();
    for s in services {
        if restart {
            handle.restart(s);
        } else {
            handle.start(s);
        }
    }
    services
        .iter()
        .map(|s| {
            let b = before.get(s.as_str());
            // A start of something already ready is done at once; a restart needs a new
            // instance; a failure only counts once the command has been taken.
            let after_epoch = b.filter(|b| restart || !is_up(&b.state)).map(|b| b.epoch);
            (s.clone(), Target::Ready { after_epoch })
        })
        .collect()
}

fn is_up(state: &ServiceState) -> bool {
    matches!(state, ServiceState::Ready | ServiceState::Completed)
}

/// Sends a stream item if it is about one of `services` (all when empty). `false` once the
/// client has gone.
async fn relay(conn: &mut Conn, item: &Published, services: &[ServiceName]) -> bool {
    let records = match item {
        Published::Line(l) => vec![Record::of(l)],
        Published::Event { at, event } => event_records(*at, event),
    };
    for record in records {
        if !services.is_empty() && !services.iter().any(|s| *s == record.service) {
            continue;
        }
        if !conn.send(&Reply::Record { record }).await {
            return false;
        }
    }
    true
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// Ready (or completed); with `after_epoch`, an instance newer than that one, and a failure
    /// of an instance up to that one is old news.
    Ready { after_epoch: Option<u64> },
    /// Not running any more.
    Down,
}

/// Why a service cannot reach its target, if it cannot.
fn failure(status: &ServiceStatus, target: Target) -> Option<String> {
    let Target::Ready { after_epoch } = target else {
        return None;
    };
    if after_epoch.is_some_and(|e| status.epoch <= e) {
        return None;
    }
    match &status.state {
        ServiceState::Failed { reason } => Some(reason.clone()),
        ServiceState::Crashed { code } => Some(format!("exited with code {code}")),
        ServiceState::Exited { code } => Some(format!("exited with code {code}")),
        ServiceState::Backoff {
            crash_loop: true, ..
        } => Some("crash loop: it keeps exiting".to_string()),
        ServiceState::Stopped if after_epoch.is_none() => Some("it is stopped".to_string()),
        _ => None,
    }
}

fn reached(status: &ServiceStatus, target: Target) -> bool {
    match target {
        Target::Ready { after_epoch } => {
            is_up(&status.state) && after_epoch.is_none_or(|e| status.epoch > e)
        }
        Target::Down => !status.running && status.state != ServiceState::Stopping,
    }
}

/// Relays the targets' events until each has reached its target (`done`), one cannot (`error`
/// 5 with its diagnostics), the timeout passes (`error` 5), or the run ends.
#[allow(clippy::too_many_arguments)]
async fn finish<R: ContainerRuntime>(
    ctx: &Ctx<R>,
    conn: &mut Conn,
    handle: &mut StackHandle,
    events: &mut tokio::sync::broadcast::Receiver<Published>,
    targets: Vec<(ServiceName, Target)>,
    wait: bool,
    timeout_ms: Option<u64>,
) {
    if !wait {
        conn.send(&Reply::Done {
            services: handle.snapshot(),
        })
        .await;
        return;
    }
    let names: Vec<ServiceName> = targets.iter().map(|(s, _)| s.clone()).collect();
    let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    // The newest probe failure of each target, for the diagnostics.
    let mut probe_failures: HashMap<String, NotReadyReport> = HashMap::new();
    // The snapshot is the engine's own; its events reach subscribers through the log writer, a
    // moment later. A target that was not there yet is done once its event has been told too,
    // so the answer never overtakes the story (with a short grace, should the event be lost).
    let first = handle.snapshot();
    let mut untold: std::collections::HashSet<ServiceName> = targets
        .iter()
        .filter(|(s, t)| {
            first
                .iter()
                .find(|x| &x.service == s)
                .is_some_and(|st| !reached(st, *t))
        })
        .map(|(s, _)| s.clone())
        .collect();
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        let snapshot = handle.snapshot();
        let status = |s: &str| snapshot.iter().find(|x| x.service == s);
        let mut all = true;
        for (s, t) in &targets {
            let Some(st) = status(s) else {
                all = false;
                continue;
            };
            if let Some(reason) = failure(st, *t) {
                let report = diagnose(ctx, s, reason, probe_failures.remove(s.as_str())).await;
                conn.send(&Reply::Error {
                    code: exit::NOT_READY,
                    message: format!("service `{s}` did not become ready: {}", report.reason),
                    not_ready: Some(report),
                })
                .await;
                return;
            }
            all &= reached(st, *t);
        }
        let grace_over = grace.is_some_and(|g| tokio::time::Instant::now() >= g);
        if all && (untold.is_empty() || grace_over) {
            conn.send(&Reply::Done { services: snapshot }).await;
            return;
        }
        if all && grace.is_none() {
            grace = Some(tokio::time::Instant::now() + EVENT_GRACE);
        }
        let timeout = async {
            match (grace, deadline) {
                (Some(g), _) => tokio::time::sleep_until(g).await,
                (None, Some(d)) => tokio::time::sleep_until(d).await,
                (None, None) => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = handle.changed() => if !alive {
                conn.error(exit::NOT_RUNNING, format!("the devstack of project `{}` stopped", ctx.project)).await;
                return;
            },
            item = events.recv() => match item {
                Ok(p) => {
                    if let Published::Event { event: StackEvent::NotReady { service, probe, reason, tail }, .. } = &p {
                        probe_failures.insert(service.to_string(), NotReadyReport {
                            service: service.clone(), probe: probe.clone(), reason: reason.clone(), tail: tail.clone(),
                        });
                    }
                    if let Published::Event { event: StackEvent::State { service, state }, .. } = &p {
                        let told = targets.iter().any(|(s, t)| s == service && match t {
                            Target::Ready { .. } => is_up(state),
                            Target::Down => !matches!(state, ServiceState::Stopping | ServiceState::Starting | ServiceState::Probing | ServiceState::Seeding | ServiceState::Ready | ServiceState::Waiting),
                        });
                        if told {
                            untold.remove(service.as_str());
                        }
                    }
                    if !relay(conn, &p, &names).await { return }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    conn.error(exit::NOT_RUNNING, format!("the devstack of project `{}` stopped", ctx.project)).await;
                    return;
                }
            },
            _ = timeout => {
                if grace.is_some() {
                    // The grace for the events is over; the next turn answers.
                    continue;
                }
                let snapshot = handle.snapshot();
                let late = targets.iter().find(|(s, t)| {
                    snapshot.iter().find(|x| &x.service == s).is_none_or(|st| !reached(st, *t))
                });
                let Some((s, _)) = late else { continue };
                let state = snapshot.iter().find(|x| &x.service == s).map_or_else(|| "unknown".into(), |x| x.state.to_string());
                let reason = format!(
                    "not ready within {} (it is {state})",
                    humantime::format_duration(Duration::from_millis(timeout_ms.unwrap_or(0)))
                );
                let report = diagnose(ctx, s, reason, probe_failures.remove(s.as_str())).await;
                conn.send(&Reply::Error {
                    code: exit::NOT_READY,
                    message: format!("service `{s}` did not become ready: {}", report.reason),
                    not_ready: Some(report),
                })
                .await;
                return;
            }
        }
    }
}

/// The diagnostics of a service that did not get ready: the probe's last failure if there was
/// one, else its last lines from its log file.
async fn diagnose<R>(
    ctx: &Ctx<R>,
    service: &str,
    reason: String,
    probe_failure: Option<NotReadyReport>,
) -> NotReadyReport {
    if let Some(mut r) = probe_failure {
        r.reason = format!("{reason}; the probe said: {}", r.reason);
        return r;
    }
    // The mux's own tail, asked through its queue: it has every line the service's unit sent
    // before it reported the exit this answer is about (the files may not be written yet). The
    // files only for a service that printed nothing in this run.
    let live = ctx.logs.tail(service).await;
    let tail = if !live.is_empty() {
        live[live.len().saturating_sub(TAIL_LINES)..].to_vec()
    } else {
        from_files(ctx.logs_dir.clone(), service.to_string()).await
    };
    NotReadyReport {
        service: service.into(),
        probe: "-".to_string(),
        reason,
        tail,
    }
}

/// The last lines of a service's log file, devstack's own events left out.
async fn from_files(dir: PathBuf, name: String) -> Vec<String> {
    tokio::task::spawn_blocking(move || {
        let records = crate::logs::files::read(&dir, &name);
        let own: Vec<String> = records
            .into_iter()
            .filter(|r| r.stream != "event")
            .map(|r| r.text)
            .collect();
        own[own.len().saturating_sub(TAIL_LINES)..].to_vec()
    })
    .await
    .unwrap_or_default()
}

/// Every service with its CPU % and resident memory.
async fn ps_rows<R: ContainerRuntime>(ctx: &Ctx<R>) -> Vec<PsRow> {
    let snapshot = ctx.handle.snapshot();
    let config_error = ctx.handle.config_error();
    let usage = usage_of(Some(&ctx.rt), &snapshot).await;
    snapshot
        .into_iter()
        .map(|status| {
            let (cpu_percent, rss_bytes) = usage
                .get(status.service.as_str())
                .copied()
                .unwrap_or_default();
            PsRow {
                status,
                cpu_percent,
                rss_bytes,
                config_error: config_error.clone(),
            }
        })
        .collect()
}

/// CPU % (one decimal) and resident bytes of each running service: two readings
/// `CPU_WINDOW` apart, one pass over `/proc` each for the processes (summed over the process
/// group), one stats call each for the containers (none without `rt`). The live `ps` and the
/// dashboard both read it.
pub async fn usage_of<R: ContainerRuntime>(
    rt: Option<&R>,
    snapshot: &[ServiceStatus],
) -> HashMap<String, (Option<f64>, Option<u64>)> {
    let pgids: Vec<u32> = snapshot.iter().filter_map(|s| s.pid).collect();
    let containers: Vec<String> = snapshot
        .iter()
        .filter(|s| s.running && s.pid.is_none())
        .filter_map(|s| s.container.clone())
        .collect();
    let read = || async {
        let p = pgids.clone();
        let procs = tokio::task::spawn_blocking(move || crate::process::group_usage(&p));
        let stats = futures_util::future::join_all(
            containers
                .iter()
                .filter(|_| rt.is_some())
                .map(|c| async move { (c.clone(), rt.expect("filtered").usage(c).await) }),
        );
        let (procs, stats) = tokio::join!(procs, stats);
        let at = std::time::Instant::now();
        let stats: HashMap<String, UsageSample> = stats
            .into_iter()
            .filter_map(|(c, s)| Some((c, s.ok()?)))
            .collect();
        (at, procs.unwrap_or_default(), stats)
    };
    let (t0, (p0, _), c0) = read().await;
    tokio::time::sleep(CPU_WINDOW).await;
    let (t1, (p1, hz), c1) = read().await;
    let secs = t1.duration_since(t0).as_secs_f64().max(1e-3);
    snapshot
        .iter()
        .map(|status| {
            let (cpu, rss) = if let Some(pid) = status.pid {
                match (p0.get(&pid), p1.get(&pid)) {
                    (Some(a), Some(b)) => (
                        Some(b.0.saturating_sub(a.0) as f64 / hz as f64 / secs * 100.0),
                        Some(b.1),
                    ),
                    (_, Some(b)) => (None, Some(b.1)),
                    _ => (None, None),
                }
            } else if let Some(c) = status.container.as_ref().filter(|_| status.running) {
                match (c0.get(c), c1.get(c)) {
                    (Some(a), Some(b)) => (b.cpu_percent_since(a), Some(b.memory_bytes)),
                    (_, Some(b)) => (None, Some(b.memory_bytes)),
                    _ => (None, None),
                }
            } else {
                (None, None)
            };
            (
                status.service.to_string(),
                (cpu.map(|c| (c * 10.0).round() / 10.0), rss),
            )
        })
        .collect()
}
