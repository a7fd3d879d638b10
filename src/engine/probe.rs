//! Probe tasks: one per service start that has `ready:`. Each runs the probe from the host with
//! backoff (one attempt at a time through the protocol clients in `crate::probe`) until it
//! passes or the service's timeout, then reports `Ready` or `ProbeFailed` to the engine, or
//! nothing once the container it probes has exited. Exits are not its business (the unit
//! reports them), and a `log` probe passes only when a line matched (never at end of output):
//! that is the pump's report, so here it only keeps the deadline. Also words a probe for
//! messages ([`describe`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::ServiceName;
use crate::config::{Command, Probe, Readiness, Service, ServiceKind};
use crate::kernel::Input;
use crate::plan::{shell_words, HostPorts};
use crate::probe::{self as protocol, Backoff, ProbeError};
use crate::runtime::{ContainerRuntime, ContainerStatus};

/// Starts the probe of one start of `svc`; it reports `Ready` or `ProbeFailed` on `tx`.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the values are what the event carries"
)]
pub(crate) fn spawn<R: ContainerRuntime>(
    rt: R,
    project: &str,
    svc: &Service,
    epoch: u64,
    timeout: Duration,
    container: Option<String>,
    ports: HostPorts,
    tx: mpsc::UnboundedSender<Input>,
) -> Option<tokio::task::AbortHandle> {
    let ready = svc.ready.clone()?;
    let name = svc.name.clone();
    let send = move |i: Input| {
        // The engine outlives its probes.
        let _ = tx.send(i);
    };
    if let Probe::Log(re) = &ready.probe {
        let reason = format!(
            "no line matched `{re}` within {}",
            humantime::format_duration(timeout)
        );
        let task = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            send(Input::ProbeFailed {
                service: ServiceName::from(name),
                epoch,
                reason,
            });
        });
        return Some(task.abort_handle());
    }
    let process = crate::unit::process::spawn_spec(project, svc, &ports);
    let is_process = matches!(svc.kind, ServiceKind::Process { .. });
    let task = tokio::spawn(async move {
        let result = match (is_process, process, container) {
            (true, Some(spec), _) => {
                let target = ProcessTarget {
                    cwd: spec.cwd,
                    env: spec.env,
                };
                wait_ready(&target, &name, &ready, &ports).await
            }
            (false, _, Some(id)) => {
                let target = ContainerTarget { rt: &rt, id: &id };
                wait_ready(&target, &name, &ready, &ports).await
            }
            _ => Err(NotReady::Engine("nothing to probe".to_string())),
        };
        match result {
            Ok(()) => send(Input::Ready {
                service: ServiceName::from(name),
                epoch,
            }),
            Err(NotReady::TimedOut { after, last_error }) => send(Input::ProbeFailed {
                service: ServiceName::from(name),
                epoch,
                reason: format!(
                    "not ready after {}: {last_error}",
                    humantime::format_duration(after)
                ),
            }),
            Err(NotReady::Engine(e)) => send(Input::ProbeFailed {
                service: ServiceName::from(name),
                epoch,
                reason: e,
            }),
            // The unit reports the exit.
            Err(NotReady::Exited) => {}
        }
    });
    Some(task.abort_handle())
}

/// A short description of the probe for messages: `postgres on 127.0.0.1:5432`.
pub(crate) fn describe(probe: &Probe, service: &str, ports: &HostPorts) -> String {
    let at = |p: u16| match ports.host_port(service, p) {
        Some(h) => format!("127.0.0.1:{h}"),
        None => format!("port {p} (not published)"),
    };
    match probe {
        Probe::Tcp(p) => format!("tcp on {}", at(*p)),
        Probe::Http(u) => format!("http GET {}", ports.resolve(u)),
        Probe::Exec(c) => format!("exec `{}`", command_text(c)),
        Probe::Log(r) => format!("log line matching `{r}`"),
        Probe::Healthcheck => "the container's healthcheck".to_string(),
        Probe::Postgres {
            port,
            user,
            database,
            ..
        } => format!(
            "postgres login as `{user}` to `{database}` on {}",
            at(*port)
        ),
        Probe::Redis { port, .. } => format!("redis PING on {}", at(*port)),
        Probe::Kafka { port } => format!("kafka ApiVersions on {}", at(*port)),
        Probe::Zookeeper { port } => format!("zookeeper ruok on {}", at(*port)),
        Probe::Qdrant { port } => format!("qdrant GET /readyz on {}", at(*port)),
    }
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(v) => v.join(" "),
    }
}

/// What a probe needs from the thing it probes, container or process.
trait ProbeTarget: Send + Sync {
    /// Whether the service has exited (or died).
    fn exited(&self) -> impl std::future::Future<Output = Result<bool, String>> + Send;
    /// Runs `argv` (inside the container, or on the host for a process): exit code and output.
    fn exec(
        &self,
        argv: &[String],
    ) -> impl std::future::Future<Output = Result<(i64, String), String>> + Send;
    /// The container's own healthcheck: status and whether it is from the current start.
    fn health(
        &self,
    ) -> impl std::future::Future<Output = Result<(Option<String>, bool), String>> + Send;
}

/// A container, through the runtime.
struct ContainerTarget<'a, R: ContainerRuntime> {
    rt: &'a R,
    id: &'a str,
}

impl<R: ContainerRuntime> ProbeTarget for ContainerTarget<'_, R> {
    async fn exited(&self) -> Result<bool, String> {
        match self.rt.inspect(self.id).await {
            Ok(info) => Ok(matches!(
                info.status,
                ContainerStatus::Exited | ContainerStatus::Dead
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn exec(&self, argv: &[String]) -> Result<(i64, String), String> {
        self.rt.exec(self.id, argv).await.map_err(|e| e.to_string())
    }

    async fn health(&self) -> Result<(Option<String>, bool), String> {
        let info = self.rt.inspect(self.id).await.map_err(|e| e.to_string())?;
        Ok((info.health, info.health_fresh))
    }
}

/// A process as a probe target: exec runs on the host, in its folder with its environment.
struct ProcessTarget {
    cwd: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl ProbeTarget for ProcessTarget {
    /// The unit watches the process; the probe never stops for its exit.
    async fn exited(&self) -> Result<bool, String> {
        Ok(false)
    }

    async fn exec(&self, argv: &[String]) -> Result<(i64, String), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
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

/// Why a service did not get ready.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NotReady {
    /// The container exited before it was ready.
    Exited,
    /// The probe kept failing until the timeout; the last error.
    TimedOut { after: Duration, last_error: String },
    /// The runtime failed while checking, or there was nothing to probe.
    Engine(String),
}

/// How often a probe looks whether its container has exited (an inspect through the engine),
/// however often it attempts.
const EXIT_CHECK: Duration = Duration::from_millis(100);

/// Probes `target` (running `service`) until it passes, the service's timeout, or the
/// container's exit.
async fn wait_ready<T: ProbeTarget>(
    target: &T,
    service: &str,
    ready: &Readiness,
    ports: &HostPorts,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + ready.timeout;
    let mut backoff = if ready.probe.costly() {
        Backoff::gradual(ready.interval)
    } else {
        Backoff::new(ready.interval)
    };
    let mut exit_checked: Option<Instant> = None;
    loop {
        // A container's exit is an engine round trip to see: not before every brisk attempt.
        if exit_checked.is_none_or(|t| t.elapsed() >= EXIT_CHECK) {
            exit_checked = Some(Instant::now());
            match target.exited().await {
                Ok(true) => return Err(NotReady::Exited),
                Ok(false) => {}
                Err(e) => return Err(NotReady::Engine(e)),
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limit = remaining.min(backoff.patience());
        let began = Instant::now();
        let result = tokio::time::timeout(
            limit.max(Duration::from_millis(1)),
            attempt(target, service, &ready.probe, ports),
        )
        .await;
        backoff.spent(began.elapsed());
        let (last_error, refused) = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => (e.text, e.refused),
            Err(_) if limit < remaining => (
                format!("no answer within {}", humantime::format_duration(limit)),
                false,
            ),
            Err(_) => (
                format!(
                    "no answer within {}",
                    humantime::format_duration(ready.timeout)
                ),
                false,
            ),
        };
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut {
                after: ready.timeout,
                last_error,
            });
        }
        let pause = backoff
            .next_delay_after(refused)
            .min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
    }
}

/// Why an attempt failed, and whether nothing listened (the connection was refused).
struct Failed {
    text: String,
    refused: bool,
}

/// One attempt of a network, exec or healthcheck probe.
async fn attempt<T: ProbeTarget>(
    target: &T,
    service: &str,
    probe: &Probe,
    ports: &HostPorts,
) -> Result<(), Failed> {
    attempt_once(target, service, probe, ports)
        .await
        .map_err(|text| Failed {
            // Exactly a network probe's refusal (an exec probe's text starts "exited with").
            refused: text == ProbeError::Refused.to_string(),
            text,
        })
}

async fn attempt_once<T: ProbeTarget>(
    target: &T,
    service: &str,
    probe: &Probe,
    ports: &HostPorts,
) -> Result<(), String> {
    let addr = |p: u16| host_addr(service, p, ports);
    let r: Result<(), ProbeError> = match probe {
        Probe::Tcp(p) => protocol::tcp(addr(*p)?).await,
        Probe::Http(u) => protocol::http(&ports.resolve(u)).await,
        Probe::Postgres {
            port,
            user,
            password,
            database,
        } => protocol::postgres(addr(*port)?, user, password, database).await,
        Probe::Redis { port, password } => protocol::redis(addr(*port)?, password.as_deref()).await,
        Probe::Kafka { port } => protocol::kafka(addr(*port)?).await,
        Probe::Zookeeper { port } => protocol::zookeeper(addr(*port)?).await,
        Probe::Qdrant { port } => protocol::qdrant(addr(*port)?).await,
        Probe::Exec(c) => {
            let argv = match c {
                Command::Shell(s) => shell_words(&ports.resolve(s)),
                Command::Argv(v) => v.iter().map(|a| ports.resolve(a)).collect(),
            };
            return match target.exec(&argv).await {
                Ok((0, _)) => Ok(()),
                Ok((code, out)) => {
                    let last = out
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    Err(if last.is_empty() {
                        format!("exited with code {code}")
                    } else {
                        format!("exited with code {code}: {last}")
                    })
                }
                Err(e) => Err(e),
            };
        }
        Probe::Healthcheck => {
            return match target.health().await {
                Ok((health, fresh)) => match (health.as_deref(), fresh) {
                    (Some("healthy"), true) => Ok(()),
                    (Some("healthy"), false) => {
                        Err("healthy status is from before the last start".to_string())
                    }
                    (Some(s), _) => Err(format!("health is `{s}`")),
                    (None, _) => Err("the image defines no HEALTHCHECK".to_string()),
                },
                Err(e) => Err(e),
            };
        }
        // `spawn` never probes a `log` probe: the pump reports its match.
        Probe::Log(_) => return Err("no matching line yet".to_string()),
    };
    r.map_err(|e| e.to_string())
}

/// Where the host reaches `service`'s container `port`.
fn host_addr(service: &str, port: u16, ports: &HostPorts) -> Result<SocketAddr, String> {
    let p = ports
        .0
        .get(service)
        .and_then(|ps| ps.iter().find(|p| p.container_port == port))
        .ok_or_else(|| format!("port {port} is not published"))?;
    // A port published on all addresses is reached through loopback.
    let ip = if p.host_ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        p.host_ip
    };
    Ok(SocketAddr::new(ip, p.host_port))
}
