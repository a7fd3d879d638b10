//! The top-level error: every way a command fails, its exit code, and how each is told to a
//! person (`render`). The exit codes are stable and listed in docs/commands.md.

use crate::config::ConfigError;
use crate::engine::UpError;
use crate::engine::{BuildFailure, NotReadyReport, PortConflict};
use crate::program::MissingProgram;
use crate::runtime::RuntimeError;

/// Exit codes. Stable: scripts and CI branch on them; docs/commands.md lists them.
pub mod exit {
    pub const OK: i32 = 0;
    /// An unexpected failure (I/O, an engine error): the message says what.
    pub const FAILURE: i32 = 1;
    /// Bad command line or stack file: nothing was started.
    pub const CONFIG: i32 = 2;
    /// The Docker engine cannot be reached.
    pub const DOCKER_UNAVAILABLE: i32 = 3;
    /// A host port the stack publishes is taken by something else.
    pub const PORT_CONFLICT: i32 = 4;
    /// A service did not become ready (timed out, exited, or its probe failed).
    pub const NOT_READY: i32 = 5;
    /// An image is neither present locally nor pullable.
    pub const IMAGE_UNAVAILABLE: i32 = 6;
    /// The project is already up: another devstack runs it (its pid is printed).
    pub const ALREADY_UP: i32 = 7;
    /// An image build failed (the Dockerfile line and the engine's message are printed).
    pub const BUILD_FAILED: i32 = 8;
    /// No devstack runs the project, so there is nothing to talk to (`restart`, `wait`, ...).
    pub const NOT_RUNNING: i32 = 9;
    /// A native service's program is not there, and no task it depends on creates it (the
    /// message names the program and what provides it); nothing was started.
    pub const MISSING_PROGRAM: i32 = 10;
    /// A snapshot is missing, damaged (manifest, sizes, paths inside its tars), or its name is
    /// not allowed; nothing was written.
    pub const SNAPSHOT: i32 = 11;
    /// A thin instance cannot have what it shares (the main instance does not run it, or a
    /// share cannot be made), or the main instance is in use by thin instances (`down`
    /// without `--force`); nothing was started or stopped.
    pub const SHARED: i32 = 12;
    /// Stopped by Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stack files are wrong; rendered with snippets.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The command line names something that does not exist.
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },

    #[error("{0}")]
    DockerUnavailable(String),

    #[error("host ports are taken")]
    PortConflicts(Vec<PortConflict>),

    #[error("service `{}` did not become ready: {}", .0.service, .0.reason)]
    NotReady(Box<NotReadyReport>),

    #[error("image `{image}` is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },

    #[error("building `{}` failed: {}", .0.image, .0.message)]
    BuildFailed(Box<BuildFailure>),

    #[error("{} native service(s) cannot start: their program is missing", .0.len())]
    MissingPrograms(Vec<MissingProgram>),

    #[error("project `{project}` is already up (devstack pid {pid})")]
    AlreadyUp { project: String, pid: u32 },

    /// A service asked for from the running stack did not become ready; the stack keeps running.
    #[error("service `{}` did not become ready: {}", .0.service, .0.reason)]
    NotReadyLive(Box<NotReadyReport>),

    /// `devstack apply`: the files are valid but cannot run as written (a port taken, an image
    /// missing); the running stack did not change.
    #[error("not applied: {reason}")]
    ApplyRefused { code: i32, reason: String },

    #[error("no devstack is running for project `{project}`")]
    NotRunning { project: String },

    /// This checkout's instance name is already another checkout's.
    #[error("instance `{project}` belongs to another checkout")]
    InstanceTaken {
        project: String,
        here: std::path::PathBuf,
        other: std::path::PathBuf,
    },

    /// A snapshot cannot be used or made as asked (its name, missing, damaged).
    #[error("{0}")]
    Snapshot(String),

    /// A thin instance cannot have its shares of the main instance's services (not running,
    /// not ready, or a share that cannot be made).
    #[error("{message}")]
    Shared { message: String, help: String },

    /// `down` of a main instance that thin instances use, without `--force`.
    #[error("the main instance `{project}` is in use by thin instances")]
    InUse { project: String, users: Vec<String> },

    #[error("interrupted")]
    Interrupted,

    /// A foreground run ended by a signal after a clean stop: not an error, but not success.
    #[error("stopped")]
    Stopped,

    /// A background devstack ended with this code; its own message was shown.
    #[error("exited with code {0}")]
    Exit(i32),

    /// `devstack doctor` found blockers (it printed them).
    #[error("{0} blocker(s) found")]
    Doctor(usize),

    /// `devstack test`'s suite failed with this exit code (it printed its own story).
    #[error("the suite exited with code {0}")]
    Suite(i32),

    #[error("{0}")]
    Engine(String),

    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),

    #[error("cannot encode output: {0}")]
    Encode(String),
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Unavailable(m) => Error::DockerUnavailable(m),
            RuntimeError::ImageUnavailable { image, reason } => {
                Error::ImageUnavailable { image, reason }
            }
            RuntimeError::Engine(m) => Error::Engine(m),
            RuntimeError::BuildFailed(m) => Error::Engine(format!("an image build failed: {m}")),
        }
    }
}

impl From<UpError> for Error {
    fn from(e: UpError) -> Self {
        match e {
            UpError::PortConflicts(c) => Error::PortConflicts(c),
            UpError::Runtime(e) => e.into(),
            UpError::NotReady(r) => Error::NotReady(r),
            UpError::Build(f) => Error::BuildFailed(f),
            UpError::Interrupted => Error::Interrupted,
            UpError::MissingPrograms(m) => Error::MissingPrograms(m),
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage { .. } | Error::InstanceTaken { .. } => exit::CONFIG,
            Error::DockerUnavailable(_) => exit::DOCKER_UNAVAILABLE,
            Error::PortConflicts(_) => exit::PORT_CONFLICT,
            Error::NotReady(_) | Error::NotReadyLive(_) => exit::NOT_READY,
            Error::NotRunning { .. } => exit::NOT_RUNNING,
            Error::ApplyRefused { code, .. } => *code,
            Error::ImageUnavailable { .. } => exit::IMAGE_UNAVAILABLE,
            Error::Interrupted | Error::Stopped => exit::INTERRUPTED,
            Error::AlreadyUp { .. } => exit::ALREADY_UP,
            Error::BuildFailed(_) => exit::BUILD_FAILED,
            Error::MissingPrograms(_) => exit::MISSING_PROGRAM,
            Error::Snapshot(_) => exit::SNAPSHOT,
            Error::Shared { .. } | Error::InUse { .. } => exit::SHARED,
            Error::Suite(code) => *code,
            Error::Doctor(_) => exit::FAILURE,
            Error::Exit(code) => *code,
            Error::Engine(_) | Error::Output(_) | Error::Encode(_) => exit::FAILURE,
        }
    }

    /// The full message for stderr: what failed, the details, and what to do.
    pub fn render(&self, color: bool) -> String {
        let (red, bold, reset) = if color {
            ("\x1b[31m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let head = |msg: &str| format!("{red}{bold}error{reset}{bold}: {msg}{reset}\n");
        match self {
            Error::Config(c) => c.render(color),
            Error::Usage { message, help } => {
                let mut s = head(message);
                if let Some(h) = help {
                    s.push_str(&format!("  help: {h}\n"));
                }
                s
            }
            Error::DockerUnavailable(m) => format!(
                "{}  help: start the engine (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at one that runs; `devstack doctor` checks the machine\n",
                head(m)
            ),
            Error::PortConflicts(cs) => {
                let mut s = String::new();
                for c in cs {
                    s.push_str(&head(&format!("host port {} for `{}` is taken by {}", c.address, c.service, c.holder)));
                }
                s.push_str("  help: stop what holds the port, or publish the service on another host port in a local overlay\n        (e.g. `-f stack.yaml -f stack.local.yaml` with `ports: [\"15432:5432\"]`); nothing was started\n");
                s
            }
            Error::NotReady(r) | Error::NotReadyLive(r) => {
                let mut s = head(&format!("service `{}` did not become ready: {}", r.service, r.reason));
                s.push_str(&format!("  probe: {}\n", r.probe));
                if r.tail.is_empty() {
                    s.push_str(&format!("  `{}` printed nothing\n", r.service));
                } else {
                    s.push_str(&format!("  last {} lines of `{}`:\n", r.tail.len(), r.service));
                    for l in &r.tail {
                        s.push_str(&format!("    | {l}\n"));
                    }
                }
                if matches!(self, Error::NotReadyLive(_)) {
                    s.push_str(&format!("  help: the rest of the stack keeps running; fix it and `devstack restart {}`, or `devstack logs {}` for more\n", r.service, r.service));
                } else {
                    s.push_str("  help: what was started has been stopped; `devstack up` again after fixing, or raise `ready.timeout`\n");
                }
                s
            }
            Error::ApplyRefused { .. } => format!(
                "{}  help: the running stack did not change; fix it and save again, or `devstack apply`\n",
                head(&self.to_string())
            ),
            Error::InstanceTaken { project, here, other } => format!(
                "{}  help: give this checkout an instance name of its own (`devstack --instance NAME …` or `DEVSTACK_INSTANCE`), or remove `{}` and `devstack down --instance {project}`\n",
                head(&format!(
                    "instance `{project}` of `{}` is already the instance of `{}`",
                    here.display(),
                    other.display()
                )),
                other.display()
            ),
            Error::Shared { message, help } => format!("{}  help: {help}\n", head(message)),
            Error::InUse { project, users } => format!(
                "{}  help: stop them first (`devstack down --instance NAME`), or `devstack down --force` to stop `{project}` under them\n",
                head(&format!(
                    "the main instance `{project}` is in use by thin instances: {}",
                    users
                        .iter()
                        .map(|u| format!("`{u}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            ),
            Error::NotRunning { project } => format!(
                "{}  help: `devstack up` starts it (`up --wait` in the background)\n",
                head(&format!("no devstack is running for project `{project}`"))
            ),
            Error::ImageUnavailable { image, reason } => format!(
                "{}  help: this machine may reach no image registry: build local images with `scripts/offline-images.sh`, then run again\n",
                head(&format!("image `{image}` is not available: {reason}"))
            ),
            Error::BuildFailed(f) => {
                let who = f
                    .services
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut s = head(&format!(
                    "building `{}` for {who} failed: {}",
                    f.image, f.message
                ));
                match (f.line, &f.instruction) {
                    (Some(l), Some(i)) => s.push_str(&format!("  --> {}:{l}\n   | {i}\n", f.dockerfile)),
                    (Some(l), None) => s.push_str(&format!("  --> {}:{l}\n", f.dockerfile)),
                    (None, Some(i)) => s.push_str(&format!("  --> {}\n   | {i}\n", f.dockerfile)),
                    (None, None) => s.push_str(&format!("  --> {}\n", f.dockerfile)),
                }
                if !f.tail.is_empty() {
                    s.push_str(&format!("  last {} lines of the build:\n", f.tail.len()));
                    for l in &f.tail {
                        s.push_str(&format!("    | {l}\n"));
                    }
                }
                s.push_str("  help: fix the Dockerfile (or the files it uses) and run again; nothing was started\n");
                s
            }
            Error::MissingPrograms(ms) => {
                let mut s = String::new();
                for m in ms {
                    let at = m
                        .path
                        .as_ref()
                        .map_or_else(|| "on PATH".to_string(), |p| format!("at {}", p.display()));
                    s.push_str(&head(&format!(
                        "`{}` runs `{}`, which is not there ({at})",
                        m.service, m.program
                    )));
                    s.push_str(&format!("  help: {}\n", m.help()));
                }
                s.push_str("  note: nothing was started; `devstack doctor` checks every service's program\n");
                s
            }
            Error::Snapshot(m) => format!(
                "{}  help: `devstack snapshot ls` lists the snapshots; names are letters, digits, `-`, `_` and `.`; nothing was written\n",
                head(m)
            ),
            Error::AlreadyUp { .. } => format!(
                "{}  help: that devstack runs it already: `devstack logs -f` follows it, `devstack down` stops it\n",
                head(&self.to_string())
            ),
            Error::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe => String::new(),
            Error::Stopped | Error::Suite(_) | Error::Doctor(_) | Error::Exit(_) => String::new(),
            other => head(&other.to_string()),
        }
    }
}
