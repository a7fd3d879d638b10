//! The control protocol: versioned JSON lines over the project's Unix socket. One request per
//! connection: the server greets (`hello`), the client sends one request line, the server
//! answers with lines (one `ps` line for `ps`; else `record`s of the live stream, then `done`
//! or `error`) and closes. Pure data; docs/control.md documents it for other clients, so a
//! change here is a change there.

use serde::{Deserialize, Serialize};

use crate::config::ServiceName;
use crate::engine::{NotReadyReport, ServiceStatus};
use crate::logs::files::Record;

/// Bumped when a field changes meaning or goes away (new fields and requests do not bump it).
pub const PROTOCOL_VERSION: u32 = 1;

/// What a client asks. `services` empty means every service of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Every service's state, pid or container, ports, CPU and memory.
    Ps,
    /// Stop and start again; with `wait`, answer once each is ready again (a new instance).
    Restart {
        services: Vec<ServiceName>,
        #[serde(default)]
        wait: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Stop (dependents keep running); with `wait`, answer once each is gone.
    Stop {
        services: Vec<ServiceName>,
        #[serde(default)]
        wait: bool,
    },
    /// Start, and first what each depends on; with `wait`, answer once each is ready.
    Start {
        services: Vec<ServiceName>,
        #[serde(default)]
        wait: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Answer once every named service is ready (or completed).
    Wait {
        services: Vec<ServiceName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// The live stream (lines and events) of these services, until the client goes away.
    Logs { services: Vec<ServiceName> },
    /// Stop everything, dependents first, and end the run; answers once it has ended.
    Shutdown,
    /// Apply the stack files as they are now (`dry_run`: only plan); answers with the plan, or
    /// why nothing changed.
    Apply {
        #[serde(default)]
        dry_run: bool,
    },
}

/// A request as sent: the protocol version beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// One service in a `ps` answer: the engine's status plus what `/proc` or the engine measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsRow {
    #[serde(flatten)]
    pub status: ServiceStatus,
    /// Summed over the process group (processes) or the container's cgroup; 100 = one core.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// While the stack files are invalid: what `validate` says (the stack runs as it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
}

/// A line from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// First line of every connection.
    Hello {
        v: u32,
        project: String,
        /// The devstack that serves the socket.
        pid: u32,
        version: String,
    },
    /// An item of the live stream, as the log files store it.
    Record {
        record: Record,
    },
    Ps {
        services: Vec<PsRow>,
    },
    /// What an `apply` did.
    Apply {
        answer: crate::engine::apply::ApplyAnswer,
    },
    /// The request is done; the services' states at that moment.
    Done {
        services: Vec<ServiceStatus>,
    },
    Error {
        /// devstack's exit code for it (2 unknown service, 5 not ready, ...).
        code: i32,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_ready: Option<NotReadyReport>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_flat_json_with_their_version() {
        let e = Envelope {
            v: PROTOCOL_VERSION,
            request: Request::Restart {
                services: vec!["db".into()],
                wait: true,
                timeout_ms: None,
            },
        };
        let text = serde_json::to_string(&e).expect("serialises");
        assert_eq!(
            text,
            r#"{"v":1,"cmd":"restart","services":["db"],"wait":true}"#
        );
        let back: Envelope = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, e);
        let ps: Envelope = serde_json::from_str(r#"{"v":1,"cmd":"ps"}"#).expect("parses");
        assert_eq!(ps.request, Request::Ps);
        assert!(serde_json::from_str::<Envelope>(r#"{"v":1,"cmd":"explode"}"#).is_err());
    }
}
