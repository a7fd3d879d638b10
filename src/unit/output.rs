//! One line pump for both kinds of unit: bytes in, whole lines to the log mux, and the first
//! line of an instance that matches the `log` readiness pattern reported to the engine.

use regex::Regex;
use tokio::sync::mpsc;

use super::UnitEvent;
use crate::config::ServiceName;
use crate::logs::split::LineSplitter;
use crate::logs::{LogHandle, LogLine, Stream};

/// Splits one stream of an instance into lines and sends them on.
pub(crate) struct Pump {
    /// Shared by every line of this stream.
    service: std::sync::Arc<str>,
    epoch: u64,
    stream: Stream,
    logs: LogHandle,
    split: LineSplitter,
    matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
    /// A line matched the readiness pattern; reported once it is in the mux.
    matched: bool,
}

impl Pump {
    pub(crate) fn new(
        service: &str,
        epoch: u64,
        stream: Stream,
        logs: LogHandle,
        matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
    ) -> Self {
        Self {
            service: service.into(),
            epoch,
            stream,
            logs,
            split: LineSplitter::default(),
            matcher,
            matched: false,
        }
    }

    /// The lines these bytes complete go to the mux as one message.
    pub(crate) async fn push(&mut self, bytes: &[u8]) {
        let at = std::time::SystemTime::now();
        let lines: Vec<LogLine> = self
            .split
            .push(bytes)
            .into_iter()
            .map(|text| self.line(at, text))
            .collect();
        self.logs.lines(lines).await;
        self.report_match();
    }

    /// The last line, even without a newline.
    pub(crate) async fn finish(&mut self) {
        if let Some(text) = self.split.finish() {
            let line = self.line(std::time::SystemTime::now(), text);
            self.logs.line(line).await;
            self.report_match();
        }
    }

    /// Tells the engine about a match once the matching line is in the mux, so the `ready`
    /// that follows is never shown before the line that caused it.
    fn report_match(&mut self) {
        if let Some((_, tx)) = self.matcher.take_if(|(_, _)| self.matched) {
            // The engine outlives its units' pumps.
            let _ = tx.send(UnitEvent::LogMatched {
                service: ServiceName::from(self.service.to_string()),
                epoch: self.epoch,
            });
        }
    }

    fn line(&mut self, at: std::time::SystemTime, text: String) -> LogLine {
        if !self.matched
            && self
                .matcher
                .as_ref()
                .is_some_and(|(re, _)| re.is_match(&text))
        {
            self.matched = true;
        }
        LogLine::output(at, self.service.clone(), self.stream, text)
    }
}

/// Reads a pipe to its end through a [`Pump`]: as long as it has bytes, then it waits for the
/// next ones.
///
/// The pipe is in the runtime's epoll set only while the pump waits for it. Linux wakes the
/// watchers of a polled pipe at every write, whether anyone is waiting to read or not: a pipe
/// registered for good (as the runtime's own pipes are) woke a runtime thread for each line a
/// service wrote a line at a time, tens of thousands of times a second in a flood, while the
/// pump was busy or held back by the mux and read nothing.
pub(crate) async fn pump_pipe(pipe: std::os::fd::OwnedFd, mut pump: Pump) {
    use std::io::{ErrorKind, Read};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    if let Err(e) = crate::process::set_nonblocking(std::os::fd::AsFd::as_fd(&pipe)) {
        // Reading it as it is would block a runtime thread: its output is lost instead.
        tracing::warn!(error = %e, "cannot read an output pipe");
        return;
    }
    let mut file = std::fs::File::from(pipe);
    // A pipe holds 64 KiB: one read takes what a fast writer left, in one message to the mux.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pump.push(&buf[..n]).await,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Watched until it has something (what is there already counts at once).
                // SAFETY: a `File` owns its descriptor and always returns that one; it is
                // open, and stays so while the `AsyncFd` owns the `File`.
                let registered =
                    unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) };
                let Ok(watched) = registered else {
                    break;
                };
                let readable = watched.readable().await.is_ok();
                file = watched.into_inner();
                if !readable {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    pump.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::render::Renderer;
    use crate::logs::Format;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A real pipe written a line per write, faster than the mux takes it (the pump is held
    /// back by the in-flight budget while the writer goes on), then a last line without a
    /// newline and the end: every line arrives whole, once and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipe_written_a_line_at_a_time_arrives_whole_and_in_order() {
        const LINES: usize = 50_000;
        let sink = Sink::default();
        let renderer = Renderer {
            width: 3,
            color: false,
            utc_offset: 0,
        };
        let (logs, thread) =
            crate::logs::spawn(Box::new(sink.clone()), Format::Text(renderer), 0, None);
        let (reader, mut writer) = std::io::pipe().unwrap();
        let writing = std::thread::spawn(move || {
            for i in 0..LINES {
                writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
            }
            writer.write_all(b"last, no newline").unwrap();
        });
        let pump = Pump::new("app", 1, Stream::Stdout, logs.clone(), None);
        pump_pipe(reader.into(), pump).await;
        writing.join().unwrap();
        logs.flush().await;
        drop(logs);
        thread.join().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let got: Vec<&str> = text
            .lines()
            .map(|l| l.split_once(" | ").map_or(l, |(_, t)| t))
            .collect();
        let want: Vec<String> = (0..LINES)
            .map(|i| format!("line {i}"))
            .chain(["last, no newline".to_string()])
            .collect();
        assert_eq!(got.len(), want.len(), "every line, once");
        let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
        assert_eq!(first_wrong, None, "in order and whole");
    }
}
