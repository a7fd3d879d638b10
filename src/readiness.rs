//! Waits until a service is ready: runs its probe from the host with backoff, watches that the
//! service is still running, and gives up at the service's timeout with the last error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Command, Probe, Readiness};
use crate::plan::{shell_words, HostPorts};
use crate::probe::{self, Backoff, ProbeError};
use crate::runtime::{ContainerRuntime, ContainerStatus};

/// What a probe needs from the thing it probes, container or process.
pub trait ProbeTarget: Send + Sync {
    /// The exit code if the service has exited (or died), `None` while it runs.
    fn exited(&self) -> impl std::future::Future<Output = Result<Option<i64>, String>> + Send;
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

/// A container, through the engine.
pub struct ContainerTarget<'a, R: ContainerRuntime> {
    pub rt: &'a R,
    pub id: &'a str,
}

impl<R: ContainerRuntime> ProbeTarget for ContainerTarget<'_, R> {
    async fn exited(&self) -> Result<Option<i64>, String> {
        match self.rt.inspect(self.id).await {
            Ok(info) if matches!(info.status, ContainerStatus::Exited | ContainerStatus::Dead) => {
                Ok(Some(info.exit_code.unwrap_or(-1)))
            }
            Ok(_) => Ok(None),
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

/// Why a service did not get ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Exited before it was ready.
    Exited(i64),
    /// The probe kept failing until the timeout; the last error.
    TimedOut { after: Duration, last_error: String },
    /// Cancelled (Ctrl-C or another service failed).
    Cancelled,
    /// The engine failed while checking.
    Engine(String),
}

/// A short description of the probe for messages: `postgres on 127.0.0.1:5432`.
pub fn describe(probe: &Probe, service: &str, ports: &HostPorts) -> String {
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

/// One attempt of a network or exec probe.
async fn attempt<T: ProbeTarget>(
    target: &T,
    service: &str,
    probe: &Probe,
    ports: &HostPorts,
) -> Result<(), String> {
    let addr = |p: u16| host_addr(service, p, ports);
    let r: Result<(), ProbeError> = match probe {
        Probe::Tcp(p) => probe::tcp(addr(*p)?).await,
        Probe::Http(u) => probe::http(&ports.resolve(u)).await,
        Probe::Postgres {
            port,
            user,
            password,
            database,
        } => probe::postgres(addr(*port)?, user, password, database).await,
        Probe::Redis { port, password } => probe::redis(addr(*port)?, password.as_deref()).await,
        Probe::Kafka { port } => probe::kafka(addr(*port)?).await,
        Probe::Zookeeper { port } => probe::zookeeper(addr(*port)?).await,
        Probe::Qdrant { port } => probe::qdrant(addr(*port)?).await,
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
                Err(e) => Err(e.to_string()),
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
        // Log readiness is signalled by the log follower.
        Probe::Log(_) => return Err("no matching line yet".to_string()),
    };
    r.map_err(|e| e.to_string())
}

/// Waits until `target` (running `service`) is ready. `log_matched` fires when a `log` probe's
/// regex matched a line.
pub async fn wait_ready<T: ProbeTarget>(
    target: &T,
    service: &str,
    ready: &Readiness,
    ports: &HostPorts,
    mut log_matched: Option<oneshot::Receiver<()>>,
    cancel: &CancellationToken,
) -> Result<Duration, NotReady> {
    let start = Instant::now();
    let deadline = start + ready.timeout;
    let mut backoff = Backoff::new(ready.interval);
    loop {
        match target.exited().await {
            Ok(Some(code)) => return Err(NotReady::Exited(code)),
            Ok(None) => {}
            Err(e) => return Err(NotReady::Engine(e)),
        }
        if let Some(rx) = log_matched.as_mut() {
            if rx.try_recv().is_ok() {
                return Ok(start.elapsed());
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = tokio::select! {
            r = tokio::time::timeout(remaining.max(Duration::from_millis(1)), attempt(target, service, &ready.probe, ports)) => r,
            _ = cancel.cancelled() => return Err(NotReady::Cancelled),
        };
        let last_error = match result {
            Ok(Ok(())) => return Ok(start.elapsed()),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(ready.timeout)
            ),
        };
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut {
                after: ready.timeout,
                last_error,
            });
        }
        let pause = backoff
            .next_delay()
            .min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Err(NotReady::Cancelled),
            // Only a match counts: a sender dropped because the output ended is not one.
            _ = async { match log_matched.as_mut() { Some(rx) => { if rx.await.is_err() { std::future::pending::<()>().await } } None => std::future::pending().await } } => {
                return Ok(start.elapsed());
            }
        }
    }
}
