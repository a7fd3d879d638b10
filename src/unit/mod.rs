//! Units: one actor per running thing, mechanism only, the same contract for a container and a
//! process. `Start` / `Stop{grace}` / `Kill` go in; `Started` / `StartFailed` / `Exited` and
//! `LogMatched` come out, each tagged with the epoch of the start it belongs to. No policy here:
//! restarts, backoff and order are the kernel's.

pub(crate) mod container;
pub(crate) mod output;
pub(crate) mod pre_start;
pub(crate) mod process;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::ServiceName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitCommand {
    Start {
        epoch: u64,
    },
    Stop {
        grace: Duration,
    },
    /// SIGKILL now; also cuts short a graceful stop under way.
    Kill,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitEvent {
    Started {
        service: ServiceName,
        epoch: u64,
        pid: Option<u32>,
        container: Option<String>,
        detail: String,
    },
    StartFailed {
        service: ServiceName,
        epoch: u64,
        reason: String,
    },
    /// Everything of the instance is gone. `how` is set when it was stopped or killed.
    Exited {
        service: ServiceName,
        epoch: u64,
        code: i64,
        how: Option<String>,
    },
    /// A line matched the service's `log` readiness pattern.
    LogMatched { service: ServiceName, epoch: u64 },
}

/// A cheap handle to a unit. Dropping every handle ends the unit: a process unit kills its
/// group; a container unit leaves its container as it is (`up --wait` leaves it running).
#[derive(Clone, Debug)]
pub(crate) struct UnitHandle {
    tx: mpsc::UnboundedSender<UnitCommand>,
}

impl UnitHandle {
    pub(crate) fn new(tx: mpsc::UnboundedSender<UnitCommand>) -> Self {
        Self { tx }
    }

    pub(crate) fn send(&self, c: UnitCommand) {
        // A unit that has ended (its task returned) has nothing left to act on.
        let _ = self.tx.send(c);
    }
}

/// How a stop ended, as people read it.
pub(crate) fn stopped_how(killed: bool, code: i64, grace: Duration, by_kill: bool) -> String {
    if by_kill {
        "killed".to_string()
    } else if killed {
        format!(
            "killed after the {} grace period",
            humantime::format_duration(grace)
        )
    } else {
        format!("stopped (exit code {code})")
    }
}
