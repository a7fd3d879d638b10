//! The top-level error and the exit codes scripts rely on.

use crate::config::ConfigError;

/// Exit codes. Stable: scripts and CI branch on them; the README lists them.
pub mod exit {
    pub const OK: i32 = 0;
    /// An unexpected failure (I/O, a bug): the message says what.
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
    /// Stopped by Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stack files are wrong; rendered with snippets by `main`.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The command line names something that does not exist.
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },

    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),

    #[error("cannot encode output: {0}")]
    Encode(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage { .. } => exit::CONFIG,
            Error::Output(_) | Error::Encode(_) => exit::FAILURE,
        }
    }
}
