//! `StackHandle`: the one way in to a running stack. Cheap to clone; commands go in over a
//! channel, the current state of every service is a snapshot, and the stream of typed events
//! (lines included) is a subscription. No shared mutable state: the engine owns everything.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use super::apply::{ApplyAnswer, ApplyRequest};
use crate::config::ServiceName;
use crate::event::ServiceState;
use crate::kernel::Command;
use crate::logs::fanout::Fanout;
use crate::logs::mux::Published;

/// One service as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: ServiceName,
    pub kind: crate::config::Kind,
    #[serde(flatten)]
    pub state: ServiceState,
    /// What a start waits for (`waiting for image`, `checking task`), or why it cannot happen
    /// (`build failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub restarts: u32,
    /// Which start of the service this is: a restart gives a higher one.
    pub epoch: u64,
    /// An instance exists (a process group or a running container).
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Milliseconds since the Unix epoch of the current instance's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// Published ports as they really are on the host (also under `--free-ports`).
    pub ports: Vec<PortView>,
}

/// One published port of a running stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub host_ip: std::net::IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: crate::config::Protocol,
}

impl std::fmt::Display for PortView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}",
            self.host_ip, self.host_port, self.container_port
        )?;
        if self.protocol == crate::config::Protocol::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct StackHandle {
    commands: mpsc::UnboundedSender<Command>,
    applies: mpsc::UnboundedSender<ApplyRequest>,
    snapshot: watch::Receiver<Vec<ServiceStatus>>,
    config_error: watch::Receiver<Option<String>>,
    events: Fanout,
}

/// The engine's end of a [`StackHandle`].
pub(crate) struct Inbox {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub applies: mpsc::UnboundedReceiver<ApplyRequest>,
    pub snapshot: watch::Sender<Vec<ServiceStatus>>,
    /// Why the stack files as they are now are not applied (invalid), if they are not.
    pub config_error: watch::Sender<Option<String>>,
}

/// A handle and the inbox the engine reads it from. `events` is the log mux's fan-out.
pub(crate) fn channel(events: Fanout) -> (StackHandle, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (apply_tx, apply_rx) = mpsc::unbounded_channel();
    let (snap_tx, snap_rx) = watch::channel(Vec::new());
    let (err_tx, err_rx) = watch::channel(None);
    (
        StackHandle {
            commands: tx,
            applies: apply_tx,
            snapshot: snap_rx,
            config_error: err_rx,
            events,
        },
        Inbox {
            commands: rx,
            applies: apply_rx,
            snapshot: snap_tx,
            config_error: err_tx,
        },
    )
}

/// The engine's receiving ends of an inbox, each `None` when nobody can send.
pub(super) type InboxParts = (
    Option<mpsc::UnboundedReceiver<Command>>,
    Option<mpsc::UnboundedReceiver<ApplyRequest>>,
    Option<watch::Sender<Vec<ServiceStatus>>>,
    Option<watch::Sender<Option<String>>>,
);

pub(super) fn split(inbox: Option<Inbox>) -> InboxParts {
    match inbox {
        Some(i) => (
            Some(i.commands),
            Some(i.applies),
            Some(i.snapshot),
            Some(i.config_error),
        ),
        None => (None, None, None, None),
    }
}

impl StackHandle {
    fn send(&self, c: Command) -> bool {
        self.commands.send(c).is_ok()
    }

    /// Stops and starts `service` again (or starts it, if it is not running). `false` once the
    /// engine has ended.
    pub fn restart(&self, service: &str) -> bool {
        self.send(Command::Restart(service.into()))
    }

    pub fn stop(&self, service: &str) -> bool {
        self.send(Command::Stop(service.into()))
    }

    /// Starts `service`, and first what it depends on.
    pub fn start(&self, service: &str) -> bool {
        self.send(Command::Start(service.into()))
    }

    /// Stops everything, dependents first, and ends the run.
    pub fn shutdown(&self) -> bool {
        self.send(Command::Shutdown)
    }

    /// Applies the stack files as they are now (`dry_run`: only plans); the answer says what
    /// changed, or why nothing did. `None` once the engine has ended.
    pub async fn apply(&self, dry_run: bool) -> Option<ApplyAnswer> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let req = ApplyRequest {
            dry_run,
            reply: Some(reply),
        };
        self.applies.send(req).ok()?;
        answer.await.ok()
    }

    /// Why the stack files as they are now are not applied, while they are invalid.
    pub fn config_error(&self) -> Option<String> {
        self.config_error.borrow().clone()
    }

    /// Every service's state now.
    pub fn snapshot(&self) -> Vec<ServiceStatus> {
        self.snapshot.borrow().clone()
    }

    /// Waits until the snapshot changes (`false` once the engine has ended).
    pub async fn changed(&mut self) -> bool {
        self.snapshot.changed().await.is_ok()
    }

    /// Every event and line from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.events.subscribe()
    }

    /// The stream's last items kept (see [`Fanout::keep`]) and every item after them.
    pub fn subscribe_with_recent(&self) -> (Vec<Published>, broadcast::Receiver<Published>) {
        self.events.subscribe_with_recent()
    }

    /// Keeps the stream's last `n` items for [`StackHandle::subscribe_with_recent`].
    pub fn keep_recent(&self, n: usize) {
        self.events.keep(n);
    }
}
