//! The Docker Engine adapter: the only module that talks bollard, and the only one that talks
//! to the engine at all (the builder negotiation reads `/_ping` on its socket itself, for a
//! header bollard does not return). It implements `ContainerRuntime`, turns engine errors into
//! `RuntimeError`s a person can act on, and turns classic and BuildKit build output into steps.
//! Beside the trait, what only commands need: an attached exec (`devstack exec`), and the
//! engine's version and builder choice (`doctor`). It decides nothing about services.

pub(crate) mod df;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, Mount as DockerMount, MountTmpfsOptions, MountType,
    NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions,
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, LogsOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions, TagImageOptions,
    UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::config::Protocol;
use crate::config::ServiceName;
use crate::runtime::{
    labels, parse_rfc3339, parse_rfc3339_ns, BuildOutput, BuildRequest, ContainerInfo,
    ContainerRuntime, ContainerSpec, ContainerStatus, HookExec, InitSpec, Mount, OutputChunk,
    OutputStream, Published, Result, RuntimeError, UsageSample,
};

/// How long the engine gets to answer the first call before devstack says it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One log message as the engine sends it with `timestamps` (`2026-12-07T21:05:45.227123456Z
/// text`): its stamp in nanoseconds since the epoch and its text. A message without a stamp is
/// all text.
fn stamped(message: &[u8]) -> (Option<i128>, &[u8]) {
    let Some(space) = message.iter().position(|&b| b == b' ') else {
        return (None, message);
    };
    let stamp = std::str::from_utf8(&message[..space])
        .ok()
        .and_then(parse_rfc3339_ns);
    match stamp {
        Some(at) => (Some(at), &message[space + 1..]),
        None => (None, message),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_message_s_stamp_is_read_and_taken_off() {
        use super::stamped;
        let at = crate::runtime::parse_rfc3339_ns("2026-12-07T21:05:45.966000001Z").unwrap();
        assert_eq!(at % 1_000_000_000, 966_000_001);
        assert_eq!(
            stamped(b"2026-12-07T21:05:45.966000001Z Ready to accept connections\n"),
            (Some(at), &b"Ready to accept connections\n"[..])
        );
        // A stamp with fewer digits counts them as the leading ones.
        assert_eq!(
            stamped(b"2026-12-07T21:05:45.9Z x").0,
            Some(at - 66_000_001)
        );
        // No stamp (an engine that ignored the option): all text, kept as it came.
        assert_eq!(stamped(b"plain text\n"), (None, &b"plain text\n"[..]));
        assert_eq!(stamped(b"nospace"), (None, &b"nospace"[..]));
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(super::strip_ansi("\x1b[91moops\x1b[0m done"), "oops done");
        assert_eq!(super::strip_ansi("plain"), "plain");
    }

    #[test]
    fn tags() {
        assert_eq!(super::split_tag("app"), ("app", "latest"));
        assert_eq!(super::split_tag("app:1"), ("app", "1"));
        assert_eq!(
            super::split_tag("host:5000/team/app"),
            ("host:5000/team/app", "latest")
        );
        assert_eq!(
            super::split_tag("host:5000/team/app:v2"),
            ("host:5000/team/app", "v2")
        );
    }
}

#[derive(Clone)]
pub(crate) struct DockerRuntime {
    docker: Docker,
}

fn describe_engine() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => format!("`{h}` (from DOCKER_HOST)"),
        _ => "`unix:///var/run/docker.sock` (DOCKER_HOST is not set)".to_string(),
    }
}

impl DockerRuntime {
    /// Runs a command in a container, attached: its exit code and the tail of its output.
    async fn exec_with(
        &self,
        id: &str,
        mut opts: bollard::exec::CreateExecOptions<String>,
    ) -> Result<(i64, String)> {
        use bollard::exec::StartExecResults;
        opts.attach_stdout = Some(true);
        opts.attach_stderr = Some(true);
        let created = self.docker.create_exec(id, opts).await.map_err(engine)?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(engine)?
        {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(engine)?;
                // Keep the tail only: it is for error messages.
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                if output.len() > 4096 {
                    output = output.split_off(output.len() - 2048);
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(engine)?;
        Ok((inspected.exit_code.unwrap_or(-1), output))
    }

    /// Creates a `pre_start` init container; a leftover of the same name that this project's
    /// init container left (a killed run) is removed first, anything else is refused.
    async fn create_init(&self, spec: &InitSpec) -> Result<String> {
        let labels = HashMap::from([
            (labels::PROJECT.to_string(), spec.project.clone()),
            (labels::PRE_START.to_string(), spec.service.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            labels: Some(labels),
            host_config: Some(HostConfig {
                volumes_from: Some(vec![spec.volumes_from.clone()]),
                mounts: Some(spec.tmpfs.iter().map(docker_mount).collect()),
                network_mode: Some(spec.network.clone()),
                privileged: Some(spec.privileged),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = || CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match self
            .docker
            .create_container(Some(opts()), body.clone())
            .await
        {
            Ok(r) => return Ok(r.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("image") => {
                return Err(RuntimeError::ImageUnavailable {
                    image: spec.image.clone(),
                    reason: message,
                })
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(engine(e)),
        }
        let theirs = self
            .docker
            .inspect_container(&spec.name, None)
            .await
            .map_err(engine)?
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default();
        if theirs.get(labels::PROJECT) != Some(&spec.project)
            || !theirs.contains_key(labels::PRE_START)
        {
            return Err(RuntimeError::Engine(format!(
                "a container named `{}` exists but devstack did not create it; remove or rename it",
                spec.name
            )));
        }
        self.remove(&spec.name).await?;
        self.docker
            .create_container(Some(opts()), body)
            .await
            .map(|r| r.id)
            .map_err(engine)
    }

    /// Starts a created init container and waits for its end: exit code and output tail.
    async fn wait_init(&self, id: &str) -> Result<(i64, String)> {
        use bollard::container::LogOutput;
        self.docker
            .start_container(id, None)
            .await
            .map_err(engine)?;
        let mut wait = Box::pin(self.docker.wait_container(id, None));
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(engine(e)),
            None => -1,
        };
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: "40".to_string(),
            ..Default::default()
        };
        let mut output = String::new();
        let mut logs = Box::pin(self.docker.logs(id, Some(opts)));
        while let Some(item) = logs.next().await {
            match item {
                Ok(LogOutput::StdErr { message } | LogOutput::StdOut { message }) => {
                    output.push_str(&String::from_utf8_lossy(&message));
                }
                Ok(_) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        Ok((code, output))
    }

    /// Every project that has containers (any state) or volumes here: the values of the
    /// project label, each once, sorted (`devstack ls`).
    pub(crate) async fn projects(&self) -> Result<Vec<String>> {
        let filter = HashMap::from([("label".to_string(), vec![labels::PROJECT.to_string()])]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filter.clone()),
                ..Default::default()
            }))
            .await
            .map_err(engine)?;
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filter),
            }))
            .await
            .map_err(engine)?;
        let mut out: Vec<String> = containers
            .into_iter()
            .filter_map(|c| c.labels?.get(labels::PROJECT).cloned())
            .chain(
                volumes
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|v| v.labels.get(labels::PROJECT).cloned()),
            )
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Connects and negotiates the API version (engines as old as API 1.41 answer here).
    /// Fails within about a second when nothing answers.
    pub(crate) async fn connect() -> Result<Self> {
        let unavailable = |why: String| {
            RuntimeError::Unavailable(format!(
                "cannot reach the Docker engine at {}: {why}",
                describe_engine()
            ))
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unavailable(short(&e)))?;
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(unavailable(short(&e))),
            Err(_) => {
                return Err(unavailable(format!(
                    "no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        Ok(Self { docker })
    }

    /// Runs `argv` in container `id` attached to this process: output to stdout and stderr,
    /// stdin forwarded when `stdin`, a pseudo-terminal of `size` (columns, rows) when `tty` (the
    /// caller puts its own terminal in raw mode). Returns the command's exit code.
    pub(crate) async fn exec_attached(
        &self,
        id: &str,
        argv: &[String],
        tty: bool,
        stdin: bool,
        size: Option<(u16, u16)>,
    ) -> Result<i64> {
        use bollard::container::LogOutput;
        use bollard::exec::{
            CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults,
        };
        use tokio::io::AsyncWriteExt;
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(argv.to_vec()),
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine)?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(engine)?;
        if let (true, Some((width, height))) = (tty, size) {
            // A wrong size only wraps lines oddly; the command runs either way.
            let _ = self
                .docker
                .resize_exec(&created.id, ResizeExecOptions { height, width })
                .await;
        }
        if let StartExecResults::Attached { mut output, input } = started {
            let forward = stdin.then(|| {
                let mut input = input;
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut input).await;
                    let _ = input.shutdown().await;
                })
            });
            let mut out = tokio::io::stdout();
            let mut err = tokio::io::stderr();
            while let Some(chunk) = output.next().await {
                let written = match chunk.map_err(engine)? {
                    LogOutput::StdErr { message } => {
                        err.write_all(&message).await.and(err.flush().await)
                    }
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out.write_all(&message).await.and(out.flush().await)
                    }
                    LogOutput::StdIn { .. } => Ok(()),
                };
                if written.is_err() {
                    break;
                }
            }
            if let Some(f) = forward {
                f.abort();
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(engine)?;
        Ok(inspected.exit_code.unwrap_or(-1))
    }

    /// The engine's version and API version, for `doctor`.
    pub(crate) async fn version(&self) -> Result<(String, String)> {
        let v = self.docker.version().await.map_err(engine)?;
        Ok((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }
}

/// The engine's own message, without bollard's wrapping.
fn short(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::SocketNotFoundError(p) => format!("no socket at `{p}`"),
        BollardError::IOError { err } => match err.kind() {
            std::io::ErrorKind::NotFound => "the socket does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied on the socket (are you in the `docker` group?)".to_string()
            }
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            _ => err.to_string(),
        },
        other => other.to_string(),
    }
}

fn engine(e: BollardError) -> RuntimeError {
    match &e {
        BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::HyperResponseError { .. } => RuntimeError::Unavailable(format!(
            "lost the Docker engine at {}: {}",
            describe_engine(),
            short(&e)
        )),
        _ => RuntimeError::Engine(short(&e)),
    }
}

/// `host:5000/team/app:1.2` → (`host:5000/team/app`, `1.2`); no tag means `latest`.
fn split_tag(image: &str) -> (&str, &str) {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// Text without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits build output into lines (a chunk may hold several, or part of one) and recognises
/// the classic builder's `Step n/m : …` lines.
struct BuildLines {
    partial: String,
}

impl BuildLines {
    fn push(&mut self, chunk: &str, out: &tokio::sync::mpsc::UnboundedSender<BuildOutput>) {
        self.partial.push_str(chunk);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            Self::emit(line.trim_end_matches(['\n', '\r']), out);
        }
    }

    fn finish(&mut self, out: &tokio::sync::mpsc::UnboundedSender<BuildOutput>) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.trim().is_empty() {
            Self::emit(rest.trim_end(), out);
        }
    }

    fn emit(line: &str, out: &tokio::sync::mpsc::UnboundedSender<BuildOutput>) {
        // The classic builder colours a `RUN`'s stderr (`ESC[91m` … `ESC[0m`); the log has its own.
        let line = strip_ansi(line);
        let line = line.as_str();
        let item = match crate::build::dockerfile::parse_step(line) {
            Some((n, of, instruction)) => BuildOutput::Step { n, of, instruction },
            None => BuildOutput::Line(line.to_string()),
        };
        // A closed receiver only means nobody shows progress.
        let _ = out.send(item);
    }
}

/// Which builder a build asks for, negotiated as the Docker CLI does: `DOCKER_BUILDKIT=1` or `0`
/// decides; else the engine's own preference, the `Builder-Version` header of `/_ping` (`2`:
/// BuildKit; Docker 23 and later send it, 20.10 does not unless BuildKit is its default); else the
/// classic builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builder {
    Classic,
    BuildKit,
}

pub(crate) fn choose_builder(
    docker_buildkit: Option<&str>,
    engine_prefers: Option<&str>,
) -> Builder {
    match docker_buildkit.map(str::trim) {
        Some("1") | Some("true") => return Builder::BuildKit,
        Some("0") | Some("false") => return Builder::Classic,
        _ => {}
    }
    if engine_prefers.map(str::trim) == Some("2") {
        Builder::BuildKit
    } else {
        Builder::Classic
    }
}

/// The builder `build:` will use on this engine, and why (for `doctor`).
pub(crate) async fn negotiated_builder() -> (Builder, String) {
    let env = std::env::var("DOCKER_BUILDKIT")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let engine = engine_builder_version().await;
    let chosen = choose_builder(env.as_deref(), engine.as_deref());
    let why = match (&env, &engine) {
        (Some(v), _) => format!("DOCKER_BUILDKIT={v}"),
        (None, Some(v)) => format!("the engine's Builder-Version is {v}"),
        (None, None) => {
            "the engine states no preference; DOCKER_BUILDKIT=1 asks for BuildKit".into()
        }
    };
    (chosen, why)
}

/// The `Builder-Version` header of the engine's `/_ping`, over its Unix socket (`None` for an
/// engine over TCP, or when the header is absent). bollard's ping does not return headers.
async fn engine_builder_version() -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let path = if host.is_empty() {
        "/var/run/docker.sock".to_string()
    } else {
        host.strip_prefix("unix://")?.to_string()
    };
    let ask = async {
        let mut s = tokio::net::UnixStream::connect(&path).await.ok()?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("builder-version")
                    .then(|| v.trim().to_string())
            })
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// BuildKit's progress (`moby.buildkit.trace`) as the classic builder's: a step when a numbered
/// vertex (`[2/5] RUN make`, `[builder 2/5] …`) starts, again when it fails (so the failing step
/// is the last one told), and each vertex's log lines.
#[derive(Default)]
struct BuildKitTrace {
    told: std::collections::HashSet<String>,
    /// The vertex of the last step told.
    last: String,
    logs: HashMap<String, BuildLines>,
}

/// `[2/5] RUN make` or `[stage 2/5] RUN make` → (2, 5, "RUN make"); `[internal] …` → None.
fn buildkit_step(name: &str) -> Option<(usize, usize, String)> {
    let rest = name.strip_prefix('[')?;
    let (counts, instruction) = rest.split_once("] ")?;
    let counts = counts.rsplit(' ').next()?;
    let (n, of) = counts.split_once('/')?;
    Some((
        n.parse().ok()?,
        of.parse().ok()?,
        instruction.trim().to_string(),
    ))
}

impl BuildKitTrace {
    fn push(
        &mut self,
        status: bollard::moby::buildkit::v1::StatusResponse,
        out: &tokio::sync::mpsc::UnboundedSender<BuildOutput>,
    ) {
        for v in status.vertexes {
            let Some((n, of, instruction)) = buildkit_step(&v.name) else {
                continue;
            };
            let failed = !v.error.is_empty() && self.last != v.digest;
            if (v.started.is_some() && self.told.insert(v.digest.clone())) || failed {
                self.last = v.digest.clone();
                let _ = out.send(BuildOutput::Step { n, of, instruction });
            }
            if v.cached && v.completed.is_some() && self.told.insert(format!("{}-cached", v.digest))
            {
                let _ = out.send(BuildOutput::Line(" ---> Using cache".into()));
            }
        }
        for log in status.logs {
            let text = String::from_utf8_lossy(&log.msg).into_owned();
            self.logs
                .entry(log.vertex)
                .or_insert_with(|| BuildLines {
                    partial: String::new(),
                })
                .push(&text, out);
        }
    }

    fn finish(&mut self, out: &tokio::sync::mpsc::UnboundedSender<BuildOutput>) {
        for lines in self.logs.values_mut() {
            lines.finish(out);
        }
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={project}", labels::PROJECT)],
    )])
}

fn proto_suffix(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn status(s: Option<ContainerStateStatusEnum>) -> ContainerStatus {
    match s {
        Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        _ => ContainerStatus::Other,
    }
}

fn port_map(map: Option<HashMap<String, Option<Vec<PortBinding>>>>) -> Vec<Published> {
    let mut out = Vec::new();
    for (key, bindings) in map.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let Ok(container_port) = port.parse() else {
            continue;
        };
        let protocol = if proto == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        for b in bindings.unwrap_or_default() {
            let Some(host_port) = b.host_port.and_then(|p| p.parse().ok()) else {
                continue;
            };
            let host_ip = b
                .host_ip
                .and_then(|ip| ip.parse().ok())
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            out.push(Published {
                host_ip,
                host_port,
                container_port,
                protocol,
            });
        }
    }
    out.sort_by_key(|p| (p.container_port, p.host_port));
    out.dedup_by_key(|p| (p.container_port, p.host_port, p.protocol));
    out
}

/// A mount as the engine takes it.
fn docker_mount(m: &Mount) -> DockerMount {
    match m {
        Mount::Volume {
            name,
            target,
            read_only,
        } => DockerMount {
            typ: Some(MountType::VOLUME),
            source: Some(name.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..Default::default()
        },
        Mount::Bind {
            source,
            target,
            read_only,
        } => DockerMount {
            typ: Some(MountType::BIND),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..Default::default()
        },
        Mount::Anonymous { target } => DockerMount {
            typ: Some(MountType::VOLUME),
            target: Some(target.clone()),
            ..Default::default()
        },
        Mount::Tmpfs { target, size } => DockerMount {
            typ: Some(MountType::TMPFS),
            target: Some(target.clone()),
            tmpfs_options: size.map(|s| MountTmpfsOptions {
                size_bytes: i64::try_from(s).ok(),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// A token unique to one volume creation: the time in nanoseconds and this process.
fn creation_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

impl ContainerRuntime for DockerRuntime {
    async fn list(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(project_filter(project)),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine)?;
        let mut out = Vec::new();
        for s in summaries {
            let Some(id) = s.id else { continue };
            match self.inspect(&id).await {
                Ok(info) => out.push(info),
                // Removed between list and inspect: it is gone, which is what a list means then.
                Err(RuntimeError::Engine(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn list_publishing(&self) -> Result<Vec<(String, Vec<Published>)>> {
        let summaries = self
            .docker
            .list_containers(None::<ListContainersOptions>)
            .await
            .map_err(engine)?;
        Ok(summaries
            .into_iter()
            .map(|s| {
                let name = s
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string();
                let ports = s
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        Some(Published {
                            host_ip: p
                                .ip
                                .and_then(|ip| ip.parse().ok())
                                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                            host_port: p.public_port?,
                            container_port: p.private_port,
                            protocol: Protocol::Tcp,
                        })
                    })
                    .collect();
                (name, ports)
            })
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(engine)?;
        let state = c.state.unwrap_or_default();
        let cfg = c.config.unwrap_or_default();
        let lbl = cfg.labels.unwrap_or_default();
        let started_at = state.started_at.as_deref().and_then(parse_rfc3339);
        let (health, health_fresh) = match state.health {
            Some(h) => {
                let st = h
                    .status
                    .filter(|s| !matches!(s, HealthStatusEnum::EMPTY | HealthStatusEnum::NONE));
                // A result counts only if its check started after the container's current start.
                let newest = h
                    .log
                    .unwrap_or_default()
                    .last()
                    .and_then(|r| r.start.map(|t| t.unix_timestamp()))
                    .filter(|t| *t > 0);
                let fresh = matches!((newest, started_at), (Some(n), Some(s)) if n >= s);
                (st.map(|s| s.to_string()), fresh)
            }
            None => (None, false),
        };
        Ok(ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            project: lbl.get(labels::PROJECT).cloned().unwrap_or_default(),
            service: ServiceName::from(lbl.get(labels::SERVICE).cloned().unwrap_or_default()),
            config_hash: lbl.get(labels::CONFIG_HASH).cloned().unwrap_or_default(),
            image: cfg.image.unwrap_or_default(),
            status: status(state.status),
            exit_code: state.exit_code,
            health,
            health_fresh,
            started_at,
            ports: port_map(c.network_settings.and_then(|n| n.ports)),
        })
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(i.id.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some((
                i.id.unwrap_or_default(),
                i.config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    async fn build(
        &self,
        req: BuildRequest,
        progress: tokio::sync::mpsc::UnboundedSender<BuildOutput>,
    ) -> Result<String> {
        let Some(tag) = req.tags.first().cloned() else {
            return Err(RuntimeError::Engine("a build needs a tag".into()));
        };
        let non_empty = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        let builder = choose_builder(
            std::env::var("DOCKER_BUILDKIT").ok().as_deref(),
            engine_builder_version().await.as_deref(),
        );
        let (version, session) = match builder {
            Builder::Classic => (bollard::query_parameters::BuilderVersion::BuilderV1, None),
            // BuildKit through the API: a gRPC session beside the build (bollard runs it).
            Builder::BuildKit => (
                bollard::query_parameters::BuilderVersion::BuilderBuildKit,
                Some(format!("devstack-{}", crate::clock::unix_ms())),
            ),
        };
        let opts = BuildImageOptions {
            version,
            session,
            dockerfile: req.dockerfile.clone(),
            t: Some(tag.clone()),
            extrahosts: non_empty(&req.extra_hosts).map(|h| h.join(",")),
            q: false,
            nocache: req.no_cache,
            cachefrom: non_empty(&req.cache_from),
            pull: req.pull.then(|| "1".to_string()),
            rm: true,
            forcerm: true,
            buildargs: (!req.args.is_empty()).then(|| req.args.clone().into_iter().collect()),
            labels: Some(req.labels.clone().into_iter().collect()),
            networkmode: req.network.clone(),
            target: req.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let body = bollard::body_full(req.context.into());
        let mut stream = self.docker.build_image(opts, None, Some(body));
        let mut lines = BuildLines {
            partial: String::new(),
        };
        let mut built: Option<String> = None;
        let mut trace = BuildKitTrace::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream.as_deref() {
                        lines.push(s, &progress);
                    } else if let Some(status) = info.status.as_deref() {
                        let line = [info.id.as_deref().unwrap_or_default(), status]
                            .into_iter()
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>()
                            .join(" ");
                        lines.push(&format!("{line}\n"), &progress);
                    }
                    match info.aux {
                        Some(bollard::models::BuildInfoAux::Default(i)) => {
                            if let Some(id) = i.id {
                                built = Some(id);
                            }
                        }
                        Some(bollard::models::BuildInfoAux::BuildKit(status)) => {
                            trace.push(status, &progress);
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    lines.finish(&progress);
                    trace.finish(&progress);
                    return Err(match e {
                        BollardError::DockerStreamError { error } => {
                            RuntimeError::BuildFailed(error.trim_end().to_string())
                        }
                        BollardError::DockerResponseServerError { message, .. } => {
                            RuntimeError::BuildFailed(message.trim_end().to_string())
                        }
                        other => engine(other),
                    });
                }
            }
        }
        lines.finish(&progress);
        trace.finish(&progress);
        let id = match built {
            Some(id) => id,
            None => self.image_id(&tag).await?.ok_or_else(|| {
                RuntimeError::BuildFailed(format!("the engine built no image `{tag}`"))
            })?,
        };
        for extra in req.tags.iter().skip(1) {
            let (repo, t) = split_tag(extra);
            self.docker
                .tag_image(
                    &id,
                    Some(TagImageOptions {
                        repo: Some(repo.to_string()),
                        tag: Some(t.to_string()),
                    }),
                )
                .await
                .map_err(engine)?;
        }
        Ok(id)
    }

    async fn copy_into(&self, id: &str, tar: Vec<u8>) -> Result<()> {
        let opts = UploadToContainerOptions {
            path: "/".to_string(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(id, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(engine)
    }

    async fn pull(
        &self,
        image: &str,
        progress: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<()> {
        let opts = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::ImageUnavailable {
                            image: image.to_string(),
                            reason: err,
                        });
                    }
                    let line = [info.id.unwrap_or_default(), info.status.unwrap_or_default()]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ");
                    // A closed receiver only means nobody shows progress.
                    let _ = progress.send(line);
                }
                Err(e) => {
                    return Err(RuntimeError::ImageUnavailable {
                        image: image.to_string(),
                        reason: short(&e),
                    })
                }
            }
        }
        Ok(())
    }

    async fn ensure_network(&self, project: &str, name: &str) -> Result<()> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let existing = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(engine)?;
        // The name filter matches substrings; only an exact name counts.
        if existing.iter().any(|n| n.name.as_deref() == Some(name)) {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(HashMap::from([(
                labels::PROJECT.to_string(),
                project.to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            // Another devstack created it between our look and our create.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn ensure_volume(&self, project: &str, volume: &str, full_name: &str) -> Result<()> {
        let req = VolumeCreateRequest {
            name: Some(full_name.to_string()),
            labels: Some(HashMap::from([
                (labels::PROJECT.to_string(), project.to_string()),
                (labels::VOLUME.to_string(), volume.to_string()),
                (labels::VOLUME_ID.to_string(), creation_token()),
            ])),
            ..Default::default()
        };
        // Creating an existing volume returns it unchanged (its labels too).
        self.docker
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(engine)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for p in &spec.ports {
            let key = format!("{}/{}", p.container_port, proto_suffix(p.protocol));
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.to_string()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let mounts = spec.mounts.iter().map(docker_mount).collect();
        // devstack applies the service's `restart:` policy itself (the container unit follows the
        // exit), so a crash is handled and shown like a crashed process; the engine must not
        // restart it behind devstack's back.
        let restart = RestartPolicyNameEnum::NO;
        let o = &spec.options;
        let nanos =
            |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let healthcheck = o.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            retries: h.retries.map(i64::from),
            start_period: nanos(h.start_period),
            start_interval: nanos(h.start_interval),
        });
        let bytes = |b: Option<u64>| b.and_then(|b| i64::try_from(b).ok());
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        // devstack's own labels win over the file's.
        let mut all_labels: HashMap<String, String> = o.labels.clone().into_iter().collect();
        all_labels.extend(spec.labels.clone());
        let mut aliases = vec![spec.service.to_string()];
        for n in o.networks.values() {
            aliases.extend(n.aliases.iter().cloned());
        }
        // Other services' `links` name this container by these aliases too.
        aliases.extend(o.link_aliases.iter().cloned());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(spec.env.clone()),
            working_dir: spec.working_dir.clone(),
            user: o.user.clone(),
            hostname: o.hostname.clone(),
            domainname: o.domainname.clone(),
            tty: Some(o.tty),
            open_stdin: Some(o.stdin_open),
            healthcheck,
            labels: Some(all_labels),
            exposed_ports: Some(exposed),
            stop_signal: Some(spec.stop_signal.clone()),
            stop_timeout: Some(spec.stop_grace.as_secs().max(1) as i64),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                mounts: Some(mounts),
                network_mode: Some(spec.network.clone()),
                restart_policy: Some(DockerRestart {
                    name: Some(restart),
                    maximum_retry_count: None,
                }),
                extra_hosts: non_empty(&o.extra_hosts),
                cap_add: non_empty(&o.cap_add),
                cap_drop: non_empty(&o.cap_drop),
                shm_size: bytes(o.shm_size),
                ulimits: (!o.ulimits.is_empty()).then(|| {
                    o.ulimits
                        .iter()
                        .map(|(name, u)| ResourcesUlimits {
                            name: Some(name.clone()),
                            soft: Some(u.soft),
                            hard: Some(u.hard),
                        })
                        .collect()
                }),
                sysctls: (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect()),
                init: o.init,
                privileged: Some(o.privileged),
                readonly_rootfs: Some(o.read_only),
                nano_cpus: o.limits.cpus.map(|c| (c * 1e9) as i64),
                memory: bytes(o.limits.memory),
                memory_reservation: bytes(o.reservations.memory),
                pids_limit: o.limits.pids,
                pid_mode: o.pid.clone(),
                volumes_from: non_empty(&o.volumes_from),
                runtime: o.runtime.clone(),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings {
                        aliases: Some(aliases),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: o.platform.clone().unwrap_or_default(),
        };
        match self.docker.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("image") => Err(RuntimeError::ImageUnavailable {
                image: spec.image.clone(),
                reason: message,
            }),
            Err(e) => Err(engine(e)),
        }
    }

    async fn start(&self, id: &str) -> Result<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // Already running.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let t = grace.as_secs_f64().ceil() as i32;
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(t),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn kill(&self, id: &str) -> Result<()> {
        match self
            .docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: "SIGKILL".to_string(),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            // Not running (409) or gone (404): nothing to kill.
            Err(BollardError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        // `v` removes the container's anonymous volumes only; named volumes are never touched here.
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Removal already in progress.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn exec(&self, id: &str, argv: &[String]) -> Result<(i64, String)> {
        self.exec_with(
            id,
            bollard::exec::CreateExecOptions {
                cmd: Some(argv.to_vec()),
                ..Default::default()
            },
        )
        .await
    }

    async fn exec_hook(&self, id: &str, hook: &HookExec) -> Result<(i64, String)> {
        self.exec_with(
            id,
            bollard::exec::CreateExecOptions {
                cmd: Some(hook.argv.clone()),
                user: hook.user.clone(),
                privileged: Some(hook.privileged),
                working_dir: hook.working_dir.clone(),
                env: (!hook.env.is_empty()).then(|| hook.env.clone()),
                ..Default::default()
            },
        )
        .await
    }

    async fn run_init(&self, spec: &InitSpec) -> Result<(i64, String)> {
        let id = self.create_init(spec).await?;
        let ran = self.wait_init(&id).await;
        // An init container is never kept, whatever happened; the volumes it shares are the
        // service's and stay (`v: false`).
        let removed = self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: false,
                    link: false,
                }),
            )
            .await;
        let ran = ran?;
        match removed {
            Err(e) if !is_not_found(&e) => Err(engine(e)),
            _ => Ok(ran),
        }
    }

    async fn usage(&self, id: &str) -> Result<UsageSample> {
        use bollard::query_parameters::StatsOptions;
        let opts = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = self.docker.stats(id, Some(opts));
        let stats = match stream.next().await {
            Some(s) => s.map_err(engine)?,
            None => return Err(RuntimeError::Engine(format!("no stats for `{id}`"))),
        };
        let cpu = stats.cpu_stats.unwrap_or_default();
        let mem = stats.memory_stats.unwrap_or_default();
        // As `docker stats`: usage without the inactive page cache (cgroup v2), or the cache (v1).
        let cache = mem.stats.as_ref().map_or(0, |s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
                .or_else(|| s.get("cache"))
                .copied()
                .unwrap_or(0)
        });
        Ok(UsageSample {
            cpu_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
            system_ns: cpu.system_cpu_usage.unwrap_or(0),
            online_cpus: cpu.online_cpus.unwrap_or(1),
            memory_bytes: mem.usage.unwrap_or(0).saturating_sub(cache),
        })
    }

    fn logs(&self, id: &str, since: i64, after_ns: Option<i128>, tty: bool) -> OutputStream {
        use bollard::container::LogOutput;
        // The engine takes whole seconds, so the messages are asked with their timestamps:
        // what was shown already (the run before a restart, in that same second; the part
        // before a broken stream) is dropped by its stamp. A TTY's raw stream has no messages
        // to stamp: it is followed from that whole second.
        let opts = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: !tty,
            since: since as i32,
            ..Default::default()
        };
        Box::pin(self.docker.logs(id, Some(opts)).filter_map(move |item| {
            let chunk = match item {
                Ok(other) if tty => Some(Ok(OutputChunk {
                    stderr: matches!(other, LogOutput::StdErr { .. }),
                    bytes: other.into_bytes().to_vec(),
                    at_ns: None,
                })),
                Ok(other) => {
                    let stderr = matches!(other, LogOutput::StdErr { .. });
                    let message = other.into_bytes();
                    let (at_ns, text) = stamped(&message);
                    let shown = matches!((at_ns, after_ns), (Some(at), Some(last)) if at <= last);
                    (!shown).then(|| {
                        Ok(OutputChunk {
                            stderr,
                            bytes: text.to_vec(),
                            at_ns,
                        })
                    })
                }
                Err(e) => Some(Err(engine(e))),
            };
            std::future::ready(chunk)
        }))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn list_volumes(&self, project: &str) -> Result<Vec<(String, String)>> {
        let resp = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(project_filter(project)),
            }))
            .await
            .map_err(engine)?;
        Ok(resp
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let short = v
                    .labels
                    .get(labels::VOLUME)
                    .cloned()
                    .unwrap_or_else(|| v.name.clone());
                (v.name, short)
            })
            .collect())
    }

    async fn volume_id(&self, name: &str) -> Result<Option<String>> {
        // Not `CreatedAt`: the local driver gives its folder's modification time, which moves
        // as the data changes.
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(
                v.labels.get(labels::VOLUME_ID).cloned().unwrap_or_default(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }
}

/// Volume copies for snapshots: a helper container of an image already present (the service's
/// own), the volume mounted at `/v`, no network, labelled with the project so `down` and the
/// tests' leftover checks see it; removed when done, whatever happened.
impl DockerRuntime {
    async fn volume_helper(
        &self,
        project: &str,
        volume: &str,
        image: &str,
        script: &str,
    ) -> Result<String> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), script.into()]),
            cmd: Some(Vec::new()),
            user: Some("0".into()),
            labels: Some(HashMap::from([
                (labels::PROJECT.to_string(), project.to_string()),
                (labels::SNAPSHOT_HELPER.to_string(), volume.to_string()),
            ])),
            host_config: Some(HostConfig {
                mounts: Some(vec![DockerMount {
                    typ: Some(MountType::VOLUME),
                    source: Some(volume.to_string()),
                    target: Some("/v".into()),
                    ..Default::default()
                }]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create_helper(project, image, body).await
    }

    /// Creates a helper named `<project>-snapshot-<pid>-<n>` (what `remove_helpers` looks for).
    async fn create_helper(
        &self,
        project: &str,
        image: &str,
        body: ContainerCreateBody,
    ) -> Result<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let opts = CreateContainerOptions {
            name: Some(format!("{project}-snapshot-{}-{n}", std::process::id())),
            platform: String::new(),
        };
        match self.docker.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("image") => Err(RuntimeError::ImageUnavailable {
                image: image.to_string(),
                reason: message,
            }),
            Err(e) => Err(engine(e)),
        }
    }

    /// A started helper that runs `image` as the service would (its own entrypoint and
    /// command, `env`), the service's volumes mounted where it mounts them (`mounts`: engine
    /// name, target) and `port` published on a free loopback port: a restore through the
    /// service's own API (Qdrant's) while the service is not running. Its id and that address;
    /// the caller stops and removes it.
    pub(crate) async fn served_helper(
        &self,
        project: &str,
        image: &str,
        mounts: &[(String, String)],
        env: &[String],
        port: u16,
    ) -> Result<(String, std::net::SocketAddr)> {
        let key = format!("{port}/tcp");
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            env: Some(env.to_vec()),
            labels: Some(HashMap::from([
                (labels::PROJECT.to_string(), project.to_string()),
                (labels::SNAPSHOT_HELPER.to_string(), "api".to_string()),
            ])),
            exposed_ports: Some(vec![key.clone()]),
            host_config: Some(HostConfig {
                mounts: Some(
                    mounts
                        .iter()
                        .map(|(source, target)| DockerMount {
                            typ: Some(MountType::VOLUME),
                            source: Some(source.clone()),
                            target: Some(target.clone()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                port_bindings: Some(HashMap::from([(
                    key,
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.create_helper(project, image, body).await?;
        let started = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(engine)?;
            let info = self.inspect(&id).await?;
            info.ports
                .iter()
                .find(|p| p.container_port == port && p.host_port != 0)
                .map(|p| std::net::SocketAddr::new([127, 0, 0, 1].into(), p.host_port))
                .ok_or_else(|| {
                    RuntimeError::Engine(format!("the helper publishes no port for {port}"))
                })
        }
        .await;
        match started {
            Ok(addr) => Ok((id, addr)),
            Err(e) => {
                let _ = self.remove(&id).await;
                Err(e)
            }
        }
    }

    /// Streams the files of `volume` as a tar (entries under `v/`) into `sink`, chunk by chunk.
    pub(crate) async fn volume_export(
        &self,
        project: &str,
        volume: &str,
        image: &str,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<()> {
        let id = self.volume_helper(project, volume, image, "true").await?;
        let result = async {
            let opts =
                bollard::query_parameters::DownloadFromContainerOptions { path: "/v".into() };
            let mut stream = self.docker.download_from_container(&id, Some(opts));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(engine)?;
                sink(&chunk).map_err(|e| {
                    RuntimeError::Engine(format!("cannot write the copy of `{volume}`: {e}"))
                })?;
            }
            Ok(())
        }
        .await;
        self.remove(&id).await?;
        result
    }

    /// Empties `volume` and extracts `tar` (a tar, plain or gzipped, whose entries sit under
    /// `v/`) into it, owners and modes as in the tar.
    pub(crate) async fn volume_import(
        &self,
        project: &str,
        volume: &str,
        image: &str,
        tar: Option<crate::runtime::ByteStream>,
    ) -> Result<()> {
        let id = self
            .volume_helper(project, volume, image, "find /v -mindepth 1 -delete")
            .await?;
        let result = async {
            self.run_to_end(&id, volume).await?;
            let Some(tar) = tar else { return Ok(()) };
            let opts = UploadToContainerOptions {
                path: "/".to_string(),
                ..Default::default()
            };
            self.docker
                .upload_to_container(&id, Some(opts), bollard::body_try_stream(tar))
                .await
                .map_err(engine)
        }
        .await;
        self.remove(&id).await?;
        result
    }

    /// Starts a helper and waits for it to exit 0.
    async fn run_to_end(&self, id: &str, volume: &str) -> Result<()> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(engine)?;
        let mut wait = self.docker.wait_container(id, None);
        let failed = |code: i64| {
            RuntimeError::Engine(format!(
                "emptying volume `{volume}` failed (exit code {code})"
            ))
        };
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) if w.status_code == 0 => {}
                Ok(w) => return Err(failed(w.status_code)),
                Err(BollardError::DockerContainerWaitError { code, .. }) => {
                    return Err(failed(code))
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;

    #[test]
    fn the_builder_is_negotiated_as_the_docker_cli_does() {
        // DOCKER_BUILDKIT decides when set.
        assert_eq!(choose_builder(Some("1"), None), Builder::BuildKit);
        assert_eq!(choose_builder(Some("0"), Some("2")), Builder::Classic);
        // Else the engine's preference.
        assert_eq!(choose_builder(None, Some("2")), Builder::BuildKit);
        assert_eq!(choose_builder(Some(""), Some("1")), Builder::Classic);
        // An engine that says nothing (20.10): the classic builder.
        assert_eq!(choose_builder(None, None), Builder::Classic);
    }

    #[test]
    fn buildkit_vertex_names_are_steps() {
        assert_eq!(
            buildkit_step("[2/5] RUN make"),
            Some((2, 5, "RUN make".to_string()))
        );
        assert_eq!(
            buildkit_step("[builder 3/4] COPY . /src"),
            Some((3, 4, "COPY . /src".to_string()))
        );
        assert_eq!(
            buildkit_step("[internal] load build definition from Dockerfile"),
            None
        );
        assert_eq!(buildkit_step("exporting to image"), None);
    }
}
