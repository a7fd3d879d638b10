//! What devstack needs from a container engine, as data and one trait. The Docker adapter
//! (`docker.rs`) implements it; the engine's tests implement it with a recording fake.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use crate::config::ServiceName;
use crate::config::{ContainerOptions, Protocol, RestartPolicy};

/// Labels devstack puts on everything it creates; nothing without them is ever touched.
pub(crate) mod labels {
    pub(crate) const PROJECT: &str = "org.devstack.project";
    pub(crate) const SERVICE: &str = "org.devstack.service";
    pub(crate) const CONFIG_HASH: &str = "org.devstack.config-hash";
    pub(crate) const VOLUME: &str = "org.devstack.volume";
    /// On a volume devstack created: a token of that creation, new when the volume is made
    /// again (`down -v`), so that data seeded into the old one is not taken for this one's.
    pub(crate) const VOLUME_ID: &str = "org.devstack.volume-id";
    /// On an image devstack built: the hash of its build inputs (context after `.dockerignore`,
    /// Dockerfile, args, target, labels); equal means the build can be skipped.
    pub(crate) const BUILD_HASH: &str = "org.devstack.build-hash";
    /// On a `pre_start` init container (instead of `SERVICE`): the service it prepares.
    pub(crate) const PRE_START: &str = "org.devstack.pre-start";
    /// On a short-lived helper container of a snapshot: the volume it copies, or `api` for one
    /// that serves a stopped service's API (Qdrant's) for a restore.
    pub(crate) const SNAPSHOT_HELPER: &str = "org.devstack.snapshot-helper";
}

/// A port to publish on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Published {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mount {
    /// An engine volume, by its full name (`<project>_<name>`).
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    /// A fresh unnamed volume (Compose's `- /app/node_modules`).
    Anonymous { target: String },
    /// A memory file system; `size` in bytes.
    Tmpfs { target: String, size: Option<u64> },
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub project: String,
    pub service: ServiceName,
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub ports: Vec<Published>,
    pub mounts: Vec<Mount>,
    pub network: String,
    pub stop_signal: String,
    pub stop_grace: Duration,
    pub restart: RestartPolicy,
    pub labels: BTreeMap<String, String>,
    /// The entrypoint, port references resolved.
    pub entrypoint: Option<Vec<String>>,
    /// Compose's other container settings as validated (secrets and `tmpfs` are in `mounts`).
    pub options: ContainerOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Other,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Paused => "paused",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Other => "unknown",
        }
    }
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: ServiceName,
    pub config_hash: String,
    pub image: String,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    /// The container's own healthcheck, if it has one: `starting`, `healthy`, `unhealthy`.
    pub health: Option<String>,
    /// Whether the newest health result was produced after the current start (a result from
    /// before a restart is stale and must not count).
    pub health_fresh: bool,
    /// Seconds since the Unix epoch.
    pub started_at: Option<i64>,
    pub ports: Vec<Published>,
}

/// One reading of a container's counters, for `ps`: CPU% is the change of `cpu_ns` against the
/// change of `system_ns` between two readings, times `online_cpus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSample {
    pub cpu_ns: u64,
    pub system_ns: u64,
    pub online_cpus: u32,
    /// Memory in use without the page cache (what `docker stats` shows).
    pub memory_bytes: u64,
}

impl UsageSample {
    /// CPU % between two readings (100 = one core busy). Pure.
    pub fn cpu_percent_since(&self, before: &UsageSample) -> Option<f64> {
        let cpu = self.cpu_ns.checked_sub(before.cpu_ns)?;
        let system = self.system_ns.checked_sub(before.system_ns)?;
        if system == 0 {
            return None;
        }
        Some(cpu as f64 / system as f64 * f64::from(self.online_cpus.max(1)) * 100.0)
    }
}

/// One chunk of container output, split into lines by the log mux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stderr: bool,
    pub bytes: Vec<u8>,
    /// The engine's timestamp of the message, in nanoseconds since the epoch (not for a TTY's
    /// raw stream).
    pub at_ns: Option<i128>,
}

/// One image build, as the engine receives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildRequest {
    /// The first is the build's tag; the others are added to the built image.
    pub tags: Vec<String>,
    /// The context as an uncompressed tar.
    pub context: Vec<u8>,
    /// The Dockerfile's path inside the context tar.
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cache_from: Vec<String>,
    pub network: Option<String>,
    /// `HOST:IP` entries.
    pub extra_hosts: Vec<String>,
    pub no_cache: bool,
    /// Pull newer versions of the base images.
    pub pull: bool,
}

/// What a build says while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutput {
    /// The builder started step `n` of `of`: `RUN make`.
    Step {
        n: usize,
        of: usize,
        instruction: String,
    },
    /// One line of output (the builder's or a `RUN` command's).
    Line(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The engine does not answer.
    Unavailable(String),
    /// The image is missing and cannot be pulled.
    ImageUnavailable { image: String, reason: String },
    /// Anything else the engine refused.
    Engine(String),
    /// An image build failed: the engine's message.
    BuildFailed(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(m) | Self::Engine(m) => f.write_str(m),
            Self::BuildFailed(m) => write!(f, "the image build failed: {m}"),
            Self::ImageUnavailable { image, reason } => {
                write!(f, "image `{image}` is not available: {reason}")
            }
        }
    }
}

impl std::error::Error for RuntimeError {}

pub(crate) type Result<T> = std::result::Result<T, RuntimeError>;
/// Bytes read from a file for the engine, chunk by chunk.
pub(crate) type ByteStream =
    Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static>>;
pub(crate) type OutputStream = Pin<Box<dyn Stream<Item = Result<OutputChunk>> + Send>>;

/// A lifecycle hook as the engine runs it (`docker exec` with its options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookExec {
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub privileged: bool,
    pub working_dir: Option<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
}

/// A `pre_start` init container: run to completion beside the service's created (not yet
/// started) container, with that container's volumes and binds, on the project network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSpec {
    pub project: String,
    pub service: String,
    /// The init container's name (`<container>-pre_start-<n>`).
    pub name: String,
    pub image: String,
    /// The image's own command when `None`.
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub privileged: bool,
    pub network: String,
    /// The service's container, whose volumes and binds are mounted (`volumes_from`).
    pub volumes_from: String,
    /// Memory mounts cannot be shared between containers: the init container gets its own.
    pub tmpfs: Vec<Mount>,
}

/// The container engine (Docker), as devstack's engine sees it. Cheap to clone.
pub trait ContainerRuntime: Clone + Send + Sync + 'static {
    /// Containers with this project's label (all states).
    fn list(&self, project: &str) -> impl Future<Output = Result<Vec<ContainerInfo>>> + Send;
    /// Running containers of any project that publish host ports (for port conflict reports).
    fn list_publishing(&self)
        -> impl Future<Output = Result<Vec<(String, Vec<Published>)>>> + Send;
    fn inspect(&self, id: &str) -> impl Future<Output = Result<ContainerInfo>> + Send;
    /// The local image's id, or `None` when the image is not present.
    fn image_id(&self, image: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The local image's id and labels, or `None` when the image is not present.
    fn image_labels(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<(String, BTreeMap<String, String>)>>> + Send;
    /// Builds an image from a context tar; `progress` gets the steps and output lines. Returns
    /// the built image's id.
    fn build(
        &self,
        req: BuildRequest,
        progress: tokio::sync::mpsc::UnboundedSender<BuildOutput>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Extracts a tar into the running container at `/` (`develop.watch` sync).
    fn copy_into(&self, id: &str, tar: Vec<u8>) -> impl Future<Output = Result<()>> + Send;
    /// Pulls an image; `progress` gets short status lines.
    fn pull(
        &self,
        image: &str,
        progress: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn ensure_network(&self, project: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn ensure_volume(
        &self,
        project: &str,
        volume: &str,
        full_name: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn create(&self, spec: &ContainerSpec) -> impl Future<Output = Result<String>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stop signal, then SIGKILL after `grace`.
    fn stop(&self, id: &str, grace: Duration) -> impl Future<Output = Result<()>> + Send;
    fn kill(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Runs `argv` inside the container; its exit code and combined output.
    fn exec(&self, id: &str, argv: &[String])
        -> impl Future<Output = Result<(i64, String)>> + Send;
    /// Runs a lifecycle hook in the container: exit code and the tail of its output.
    fn exec_hook(
        &self,
        id: &str,
        hook: &HookExec,
    ) -> impl Future<Output = Result<(i64, String)>> + Send;
    /// Runs a `pre_start` init container to completion and removes it: its exit code and the
    /// tail of its output. A leftover of the same name from a killed run is removed first.
    fn run_init(&self, spec: &InitSpec) -> impl Future<Output = Result<(i64, String)>> + Send;
    /// Output from `since` (seconds since the epoch: the engine takes whole seconds) on,
    /// following until the container stops, without the messages stamped at or before
    /// `after_ns` (the last one already shown). A `tty` container's raw stream has no messages
    /// to cut or stamp: all of it from `since`.
    fn logs(&self, id: &str, since: i64, after_ns: Option<i128>, tty: bool) -> OutputStream;
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Volumes with this project's label: (full name, name in the stack).
    fn list_volumes(
        &self,
        project: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// The creation token devstack labelled the volume with ([`labels::VOLUME_ID`]; empty for
    /// a volume made elsewhere or before the label); `None` when there is no such volume.
    fn volume_id(&self, name: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// One reading of the container's CPU and memory counters (no waiting for a second one).
    fn usage(&self, id: &str) -> impl Future<Output = Result<UsageSample>> + Send;
}

/// Seconds since the epoch of an RFC 3339 UTC time as Docker writes it
/// (`2026-11-29T20:49:41.123456789Z`). Pure; `None` for the zero time or garbage.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if y <= 1 {
        return None;
    }
    let time = time.trim_end_matches('Z');
    let (hms, offset) = match time.find(['+', '-']) {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    let hms = hms.split('.').next()?;
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    if let Some(off) = offset {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let mut o = off[1..].split(':');
        let oh: i64 = o.next()?.parse().ok()?;
        let om: i64 = o.next().unwrap_or("0").parse().ok()?;
        secs -= sign * (oh * 3600 + om * 60);
    }
    Some(secs)
}

/// [`parse_rfc3339`] to the nanosecond (Docker's `StartedAt` and log timestamps carry nine
/// digits).
pub(crate) fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let secs = parse_rfc3339(s)?;
    let (_, time) = s.split_once('T')?;
    let fraction = time
        .split_once('.')
        .map(|(_, f)| f.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
        .unwrap_or("");
    let digits = &fraction[..fraction.len().min(9)];
    let nanos: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32)
    };
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-29T20:49:41.123456789Z"),
            Some(1_795_985_381)
        );
        assert_eq!(
            parse_rfc3339("2026-11-29T21:49:41+01:00"),
            Some(1_795_985_381)
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}

/// The runtime for a run without container services: devstack works without a Docker engine
/// when only native processes are selected. It has no containers; anything else is an error.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NoEngine;

fn no_engine<T>() -> Result<T> {
    Err(RuntimeError::Unavailable(
        "this run selected no container services, so no engine was contacted".into(),
    ))
}

impl ContainerRuntime for NoEngine {
    async fn list(&self, _project: &str) -> Result<Vec<ContainerInfo>> {
        Ok(Vec::new())
    }
    async fn list_publishing(&self) -> Result<Vec<(String, Vec<Published>)>> {
        Ok(Vec::new())
    }
    async fn inspect(&self, _id: &str) -> Result<ContainerInfo> {
        no_engine()
    }
    async fn image_id(&self, _image: &str) -> Result<Option<String>> {
        no_engine()
    }
    async fn image_labels(
        &self,
        _image: &str,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        no_engine()
    }
    async fn build(
        &self,
        _req: BuildRequest,
        _progress: tokio::sync::mpsc::UnboundedSender<BuildOutput>,
    ) -> Result<String> {
        no_engine()
    }
    async fn copy_into(&self, _id: &str, _tar: Vec<u8>) -> Result<()> {
        no_engine()
    }
    async fn pull(
        &self,
        _image: &str,
        _progress: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<()> {
        no_engine()
    }
    async fn ensure_network(&self, _project: &str, _name: &str) -> Result<()> {
        no_engine()
    }
    async fn ensure_volume(&self, _project: &str, _volume: &str, _full_name: &str) -> Result<()> {
        no_engine()
    }
    async fn create(&self, _spec: &ContainerSpec) -> Result<String> {
        no_engine()
    }
    async fn start(&self, _id: &str) -> Result<()> {
        no_engine()
    }
    async fn stop(&self, _id: &str, _grace: Duration) -> Result<()> {
        no_engine()
    }
    async fn kill(&self, _id: &str) -> Result<()> {
        no_engine()
    }
    async fn remove(&self, _id: &str) -> Result<()> {
        no_engine()
    }
    async fn exec(&self, _id: &str, _argv: &[String]) -> Result<(i64, String)> {
        no_engine()
    }
    async fn exec_hook(&self, _id: &str, _hook: &HookExec) -> Result<(i64, String)> {
        no_engine()
    }
    async fn run_init(&self, _spec: &InitSpec) -> Result<(i64, String)> {
        no_engine()
    }
    fn logs(&self, _id: &str, _since: i64, _after_ns: Option<i128>, _tty: bool) -> OutputStream {
        Box::pin(futures_util::stream::empty())
    }
    async fn remove_network(&self, _name: &str) -> Result<()> {
        Ok(())
    }
    async fn list_volumes(&self, _project: &str) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    async fn remove_volume(&self, _name: &str) -> Result<()> {
        no_engine()
    }
    async fn volume_id(&self, _name: &str) -> Result<Option<String>> {
        no_engine()
    }
    async fn usage(&self, _id: &str) -> Result<UsageSample> {
        no_engine()
    }
}
