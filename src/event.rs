//! The one vocabulary every client reads: typed, serde-serialisable, versioned events about the
//! stack and its services ([`StackEvent`]), the state of a service as a person reads it
//! ([`ServiceState`]), and the lines a person reads for each event. Pure: no I/O, no clock, no
//! decisions (the kernel and the engine publish these). The log mux (terminal, `--json`, the
//! log files), the control socket and the terminal and web views render them; imports nothing
//! from the kernel or the engine.

use serde::{Deserialize, Serialize};

use crate::config::ServiceName;

/// Crashes within the kernel's `CRASH_WINDOW` that make a crash loop. Here, not in the kernel,
/// because a [`StackEvent::Backoff`] reads as a crash loop from this count on; the kernel
/// re-exports it.
pub(crate) const CRASH_LOOP_COUNT: usize = 3;

/// Where a service is in its life. Readable as it is: `ps` and the status line show these names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its dependencies.
    Waiting,
    /// Told to start; not running yet (container being created, process being spawned).
    Starting,
    /// Running; readiness not shown yet.
    Probing,
    /// Its probe passed; its `seed:` runs (or is found done) before it counts as ready.
    Seeding,
    Ready,
    /// Exited 0 as a one-shot task.
    Completed,
    /// Asked to stop; its processes or container are not gone yet.
    Stopping,
    /// Crashed; its restart policy starts it again after a pause.
    Backoff {
        restart_in_ms: u64,
        crash_loop: bool,
    },
    /// Exited non-zero and is not restarted (policy `no`, or a fault no restart can fix).
    Crashed {
        code: i64,
    },
    /// Exited 0 by itself, and nobody waited for it to complete.
    Exited {
        code: i64,
    },
    /// Could not be started, or never got ready; what runs of it keeps running.
    Failed {
        reason: String,
    },
    /// Stopped on request (or at shutdown).
    Stopped,
}

impl ServiceState {
    /// The short name: `ready`, `backoff`, `crashed`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Probing => "probing",
            Self::Seeding => "seeding",
            Self::Ready => "ready",
            Self::Completed => "completed",
            Self::Stopping => "stopping",
            Self::Backoff { .. } => "backoff",
            Self::Crashed { .. } => "crashed",
            Self::Exited { .. } => "exited",
            Self::Failed { .. } => "failed",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Backoff {
                restart_in_ms,
                crash_loop: true,
            } => write!(f, "crashed: crash loop (next start in {restart_in_ms} ms)"),
            Self::Backoff { restart_in_ms, .. } => write!(f, "backoff ({restart_in_ms} ms)"),
            Self::Crashed { code } => write!(f, "crashed ({code})"),
            Self::Exited { code } => write!(f, "exited ({code})"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Something that happened. `service` is `None` for events about the whole stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StackEvent {
    /// A service's state changed.
    State {
        service: ServiceName,
        state: ServiceState,
    },
    /// An instance runs: a process group (`pid`) or a container (`container`).
    Started {
        service: ServiceName,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        /// What runs, secrets redacted.
        detail: String,
    },
    Ready {
        service: ServiceName,
        after_ms: u64,
    },
    /// The probe gave up; the service stays as it is (after start-up) or start-up fails.
    NotReady {
        service: ServiceName,
        probe: String,
        reason: String,
        tail: Vec<String>,
    },
    /// The instance ended by itself.
    Exited {
        service: ServiceName,
        code: i64,
    },
    /// Stopped on request; `how` says whether it needed SIGKILL.
    Stopped {
        service: ServiceName,
        how: String,
    },
    /// Going to stop and start again.
    Restarting {
        service: ServiceName,
        reason: String,
    },
    /// Crashed; its restart policy starts it again after `restart_in_ms`.
    Backoff {
        service: ServiceName,
        code: i64,
        restart_in_ms: u64,
        #[serde(with = "policy_label")]
        policy: crate::config::RestartPolicy,
        /// Crashed this many times within a minute (a crash loop from 3 on).
        crashes: usize,
        /// With a crash loop: its last lines.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tail: Vec<String>,
    },
    /// Every selected service is ready (or completed): start-up is over.
    AllReady {
        services: usize,
        after_ms: u64,
    },
    /// An image a service needs is there: built, found up to date, pulled, or used as found.
    Built {
        /// The first service of the build.
        service: ServiceName,
        /// Every service that shares the build.
        services: Vec<ServiceName>,
        image: String,
        id: String,
        how: BuildHow,
        /// Bytes of the context tar sent to the engine (when built).
        #[serde(skip_serializing_if = "Option::is_none")]
        context_bytes: Option<u64>,
        after_ms: u64,
    },
    /// An image build started a step of its Dockerfile.
    BuildStep {
        service: ServiceName,
        /// 1-based, of `of` steps.
        step: usize,
        of: usize,
        instruction: String,
    },
    /// A service's `seed:` ran and succeeded (`ran`), or was found done for this data and these
    /// sources (`reason` says why).
    Seeded {
        service: ServiceName,
        ran: bool,
        reason: String,
        after_ms: u64,
    },
    /// A task (`task:`) was up to date, so it did not run; it counts as completed.
    Skipped {
        service: ServiceName,
        /// What said so: `sources unchanged`, `status commands passed`, or both.
        reason: String,
        /// How long the check took.
        after_ms: u64,
    },
    /// The stack files changed and were applied (or, `dry_run`, only planned): what each
    /// service does about it.
    ConfigApplied {
        changes: Vec<ConfigChange>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
    /// The stack files changed and are invalid: nothing changed. `error` is what `validate`
    /// prints (file:line:col and a snippet); it stands until a later edit is valid.
    ConfigInvalid {
        error: String,
    },
    /// A note from devstack about a service or the stack (`service: None`).
    Note {
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<ServiceName>,
        text: String,
    },
    /// Something the user should fix.
    Warning {
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<ServiceName>,
        text: String,
    },
}

impl StackEvent {
    /// How severe the event is, as a line's level: warnings and crashes stand out in
    /// `logs --level warn`.
    pub fn level(&self) -> Option<crate::logs::Level> {
        use crate::logs::Level;
        match self {
            StackEvent::Warning { .. } | StackEvent::NotReady { .. } => Some(Level::Warn),
            StackEvent::Backoff { .. } => Some(Level::Error),
            StackEvent::Exited { code, .. } if *code != 0 => Some(Level::Error),
            StackEvent::State { .. } => None,
            _ => Some(Level::Info),
        }
    }

    pub fn note(service: Option<&str>, text: impl Into<String>) -> Self {
        Self::Note {
            service: service.map(ServiceName::from),
            text: text.into(),
        }
    }

    pub fn warning(service: Option<&str>, text: impl Into<String>) -> Self {
        Self::Warning {
            service: service.map(ServiceName::from),
            text: text.into(),
        }
    }

    /// Masks secret values in every text the event carries.
    pub fn redact(&mut self, r: &crate::redact::Redactor) {
        if r.is_empty() {
            return;
        }
        match self {
            Self::Started { detail, .. } => *detail = r.apply(detail),
            Self::NotReady {
                probe,
                reason,
                tail,
                ..
            } => {
                *probe = r.apply(probe);
                *reason = r.apply(reason);
                tail.iter_mut().for_each(|l| *l = r.apply(l));
            }
            Self::Backoff { tail, .. } => tail.iter_mut().for_each(|l| *l = r.apply(l)),
            Self::Restarting { reason: text, .. }
            | Self::Stopped { how: text, .. }
            | Self::Skipped { reason: text, .. }
            | Self::Seeded { reason: text, .. }
            | Self::BuildStep {
                instruction: text, ..
            }
            | Self::Note { text, .. }
            | Self::Warning { text, .. }
            | Self::ConfigInvalid { error: text } => *text = r.apply(text),
            Self::State {
                state: ServiceState::Failed { reason },
                ..
            } => *reason = r.apply(reason),
            Self::State { .. }
            | Self::Ready { .. }
            | Self::Exited { .. }
            | Self::Built { .. }
            | Self::ConfigApplied { .. }
            | Self::AllReady { .. } => {}
        }
    }

    /// The service it is about, if any.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::State { service, .. }
            | Self::Started { service, .. }
            | Self::Ready { service, .. }
            | Self::NotReady { service, .. }
            | Self::Exited { service, .. }
            | Self::Stopped { service, .. }
            | Self::Restarting { service, .. }
            | Self::Backoff { service, .. }
            | Self::Built { service, .. }
            | Self::Skipped { service, .. }
            | Self::Seeded { service, .. }
            | Self::BuildStep { service, .. } => Some(service),
            Self::Note { service, .. } | Self::Warning { service, .. } => service.as_deref(),
            Self::AllReady { .. } | Self::ConfigApplied { .. } | Self::ConfigInvalid { .. } => None,
        }
    }

    /// The lines a person reads for it in the merged log (none for a bare state change, which
    /// the other events already tell). Pure.
    pub fn text_lines(&self) -> Vec<String> {
        match self {
            Self::State { .. } => Vec::new(),
            Self::Started { pid, detail, .. } => vec![match pid {
                Some(pid) => format!("started (pid {pid}): {detail}"),
                None => detail.clone(),
            }],
            Self::Ready { after_ms, .. } => vec![format!("ready in {after_ms} ms")],
            Self::NotReady { reason, .. } => vec![format!("not ready: {reason}")],
            Self::Exited { code, .. } => vec![format!("exited with code {code}")],
            Self::Stopped { how, .. } => vec![how.clone()],
            Self::Restarting { reason, .. } => vec![format!("restarting: {reason}")],
            Self::Backoff {
                restart_in_ms,
                policy,
                crashes,
                tail,
                ..
            } => {
                let pause =
                    humantime::format_duration(std::time::Duration::from_millis(*restart_in_ms));
                if *crashes >= CRASH_LOOP_COUNT {
                    let mut out = vec![format!(
                        "crash loop: exited {crashes} times in the last minute; next start in {pause}; last lines:"
                    )];
                    out.extend(tail.iter().map(|l| format!("  {l}")));
                    out
                } else {
                    vec![format!("restarting in {pause} ({})", policy.label())]
                }
            }
            Self::AllReady { services, after_ms } => {
                vec![format!("{services} services ready in {after_ms} ms")]
            }
            Self::BuildStep {
                step,
                of,
                instruction,
                ..
            } => vec![format!("step {step}/{of}: {instruction}")],
            Self::Skipped {
                reason, after_ms, ..
            } => vec![format!(
                "up to date ({reason}): skipped, checked in {after_ms} ms"
            )],
            Self::Seeded {
                ran: true,
                after_ms,
                ..
            } => vec![format!("seeded in {after_ms} ms")],
            Self::Seeded { reason, .. } => vec![format!("seed skipped: {reason}")],
            Self::Built {
                image,
                id,
                how,
                context_bytes,
                after_ms,
                ..
            } => {
                let short = id.trim_start_matches("sha256:");
                let short = &short[..short.len().min(12)];
                vec![match how {
                    BuildHow::Built => format!(
                        "built `{image}` ({short}) in {:.1} s from a {} context",
                        *after_ms as f64 / 1000.0,
                        human_bytes(context_bytes.unwrap_or(0))
                    ),
                    BuildHow::UpToDate => {
                        format!("image `{image}` ({short}) is up to date: build skipped")
                    }
                    BuildHow::Pulled => format!("pulled `{image}` ({short})"),
                    BuildHow::Local => format!("using the local image `{image}` ({short})"),
                }]
            }
            Self::Note { text, .. } => vec![text.clone()],
            Self::Warning { text, .. } => vec![format!("warning: {text}")],
            Self::ConfigApplied { changes, dry_run } => vec![format!(
                "config {}: {}",
                if *dry_run { "plan" } else { "applied" },
                plan_summary(changes)
            )],
            Self::ConfigInvalid { error } => {
                let mut out = vec!["config not applied: the stack files are invalid; the stack keeps running as it was".to_string()];
                out.extend(error.lines().map(str::to_string));
                out
            }
        }
    }
}

/// What a change of the stack files does to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Unchanged,
    /// A process whose command, environment or working folder changed: stopped and started.
    Restart,
    /// A container whose effective config changed: replaced by a new one.
    Recreate,
    /// New in the stack.
    Start,
    /// Gone from the stack: stopped (a container also removed, its volumes kept).
    Stop,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Restart => "restart",
            Self::Recreate => "recreate",
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }
}

/// One service in a config plan, with the fields that cause the change
/// (`environment.LOG_LEVEL`, `ports[0]`, `image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub service: ServiceName,
    pub action: ChangeAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

/// The one-line summary a person reads: `api restart (environment.LOG_LEVEL), worker and 6
/// others unchanged`.
pub(crate) fn plan_summary(changes: &[ConfigChange]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut unchanged: Vec<&str> = Vec::new();
    for c in changes {
        if c.action == ChangeAction::Unchanged {
            unchanged.push(&c.service);
            continue;
        }
        let causes = if c.causes.is_empty() {
            String::new()
        } else if c.causes.len() > 3 {
            format!(
                " ({} and {} more)",
                c.causes[..3].join(", "),
                c.causes.len() - 3
            )
        } else {
            format!(" ({})", c.causes.join(", "))
        };
        parts.push(format!("{} {}{causes}", c.service, c.action.as_str()));
    }
    match unchanged.len() {
        0 => {}
        1 => parts.push(format!("{} unchanged", unchanged[0])),
        n => parts.push(format!("{} and {} others unchanged", unchanged[0], n - 1)),
    }
    if parts.is_empty() {
        return "nothing to change".to_string();
    }
    parts.join(", ")
}

/// How an image a service needs came to be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildHow {
    /// Built now.
    Built,
    /// Its build hash matches: the build was skipped.
    UpToDate,
    /// Present, not built by devstack, used as `pull_policy` allows.
    Local,
    Pulled,
}

/// A restart policy in an event as the log shows it (`restart: on-failure`), typed in memory.
mod policy_label {
    use crate::config::RestartPolicy;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &RestartPolicy, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.label())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RestartPolicy, D::Error> {
        let text = String::deserialize(d)?;
        RestartPolicy::from_label(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown restart policy `{text}`")))
    }
}

/// `1.2 MB`, `340 kB`, `12 B`.
pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_their_type_and_state_names() {
        let e = StackEvent::State {
            service: "db".into(),
            state: ServiceState::Backoff {
                restart_in_ms: 200,
                crash_loop: false,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "state");
        assert_eq!(v["state"]["state"], "backoff");
        assert_eq!(v["state"]["restart_in_ms"], 200);
        let back: StackEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        // Fields left out when empty read back as empty.
        let b = StackEvent::Backoff {
            service: "db".into(),
            code: 1,
            restart_in_ms: 100,
            policy: crate::config::RestartPolicy::OnFailure,
            crashes: 1,
            tail: Vec::new(),
        };
        let text = serde_json::to_string(&b).unwrap();
        assert!(!text.contains("tail"), "{text}");
        assert_eq!(serde_json::from_str::<StackEvent>(&text).unwrap(), b);
        assert_eq!(
            StackEvent::Ready {
                service: "db".into(),
                after_ms: 12
            }
            .text_lines(),
            ["ready in 12 ms"]
        );
    }
}
