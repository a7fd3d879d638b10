//! Bytes copied, per volume, on a terminal: shown only once a copy has taken more than a
//! second, redrawn at most four times a second, on stderr. Silent when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const AFTER: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_millis(250);

pub(crate) struct Progress {
    label: String,
    bytes: u64,
    started: Instant,
    drawn: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(label: String) -> Self {
        Self {
            label,
            bytes: 0,
            started: Instant::now(),
            drawn: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        if !self.tty {
            return;
        }
        let now = Instant::now();
        let due = match self.drawn {
            None => now.duration_since(self.started) >= AFTER,
            Some(t) => now.duration_since(t) >= EVERY,
        };
        if due {
            self.drawn = Some(now);
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[K  {}: {} copied",
                self.label,
                mib(self.bytes)
            );
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn.is_some() {
            let _ = writeln!(
                std::io::stderr(),
                "\r\x1b[K  {}: {} in {:.1}s",
                self.label,
                mib(self.bytes),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// `12.3 MiB`.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
