//! The merged log stream: every line of every service and devstack's own events, in one order.

pub(crate) mod fanout;
pub(crate) mod files;
pub(crate) mod level;
pub(crate) mod mux;
pub(crate) mod query;
pub(crate) mod render;
pub(crate) mod screen;
pub(crate) mod search;
pub(crate) mod split;

use std::sync::Arc;
use std::time::SystemTime;

pub(crate) use level::Level;
pub(crate) use mux::{spawn, Format, LogHandle};

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// devstack's own event about the service (starting, ready, exited, ...).
    Event,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    /// The service name, or `devstack` for events not about one service (shared: a flood of
    /// lines of one service holds one copy of its name, not one per line).
    pub source: Arc<str>,
    pub stream: Stream,
    pub text: String,
    /// The level the text says it has ([`level::detect`], once, where the line is read).
    pub level: Option<Level>,
}

impl LogLine {
    pub fn event(source: &str, text: impl Into<String>) -> Self {
        Self {
            at: SystemTime::now(),
            source: source.into(),
            stream: Stream::Event,
            text: text.into(),
            level: None,
        }
    }

    /// A line of a service's output, its level read from its text.
    pub fn output(
        at: SystemTime,
        source: impl Into<Arc<str>>,
        stream: Stream,
        text: String,
    ) -> Self {
        Self {
            at,
            source: source.into(),
            stream,
            level: level::detect(&text),
            text,
        }
    }
}
