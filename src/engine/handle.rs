//! `StackHandle`: the one way in to a running stack. Cheap to clone; commands go in over a
//! channel, the current state of every service is a snapshot, and the stream of typed events
//! (lines included) is a subscription. No shared mutable state: the engine owns everything.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use crate::event::ServiceState;
use crate::kernel::Command;
use crate::logs::mux::Published;

/// One service as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
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
    snapshot: watch::Receiver<Vec<ServiceStatus>>,
    events: broadcast::Sender<Published>,
}

/// The engine's end of a [`StackHandle`].
pub struct Inbox {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub snapshot: watch::Sender<Vec<ServiceStatus>>,
}

/// A handle and the inbox the engine reads it from. `events` is the log mux's fan-out.
pub fn channel(events: broadcast::Sender<Published>) -> (StackHandle, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (snap_tx, snap_rx) = watch::channel(Vec::new());
    (
        StackHandle {
            commands: tx,
            snapshot: snap_rx,
            events,
        },
        Inbox {
            commands: rx,
            snapshot: snap_tx,
        },
    )
}

impl StackHandle {
    fn send(&self, c: Command) -> bool {
        self.commands.send(c).is_ok()
    }

    /// Stops and starts `service` again (or starts it, if it is not running). `false` once the
    /// engine has ended.
    pub fn restart(&self, service: &str) -> bool {
        self.send(Command::Restart(service.to_string()))
    }

    pub fn stop(&self, service: &str) -> bool {
        self.send(Command::Stop(service.to_string()))
    }

    /// Starts `service`, and first what it depends on.
    pub fn start(&self, service: &str) -> bool {
        self.send(Command::Start(service.to_string()))
    }

    /// Stops everything, dependents first, and ends the run.
    pub fn shutdown(&self) -> bool {
        self.send(Command::Shutdown)
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
}
