//! The merged log stream: every line of every service and devstack's own events, in one order.

pub mod files;
pub mod mux;
pub mod render;
pub mod screen;
pub mod split;

use std::time::SystemTime;

pub use mux::{spawn, Format, LogHandle};

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
    /// The service name, or `devstack` for events not about one service.
    pub source: String,
    pub stream: Stream,
    pub text: String,
}

impl LogLine {
    pub fn event(source: &str, text: impl Into<String>) -> Self {
        Self {
            at: SystemTime::now(),
            source: source.to_string(),
            stream: Stream::Event,
            text: text.into(),
        }
    }
}
