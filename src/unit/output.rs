//! One line pump for both kinds of unit: bytes in, whole lines to the log mux, and the first
//! line of an instance that matches the `log` readiness pattern reported to the engine.

use regex::Regex;
use tokio::sync::mpsc;

use super::UnitEvent;
use crate::config::ServiceName;
use crate::logs::split::LineSplitter;
use crate::logs::{LogHandle, LogLine, Stream};
use crate::process::Pipe;

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

/// What a pipe holds (Linux's default): the most one read can take.
const PIPE_HOLDS: usize = 64 * 1024;

/// How often a pipe that could not be added to the epoll set is read instead.
const POLL_PIPE: std::time::Duration = std::time::Duration::from_millis(20);

/// Reads a pipe to its end through a [`Pump`]: as long as it has bytes, then it waits for the
/// next ones.
///
/// Linux wakes the watchers of a polled pipe at every write, whether anyone waits to read or
/// not. A service that writes a line at a time faster than the pump takes it (a flood: the
/// pump busy or held back by the mux) would wake a runtime thread for every line while nothing
/// is read, tens of thousands of times a second. So a pipe that still has bytes right after a
/// push leaves the epoll set until the pump has drained it, and is added again to wait for the
/// next ones. A service that prints a line now and then stays in the set, as any pipe would.
pub(crate) async fn pump_pipe(fd: std::os::fd::OwnedFd, mut pump: Pump) {
    use std::io::{ErrorKind, Read};
    let mut pipe = match Pipe::new(fd) {
        Ok(p) => p,
        Err(e) => {
            // Reading it as it is could block a runtime thread. Dropping it closes it: the
            // service's next write fails (SIGPIPE). fcntl on an open pipe does not fail in practice.
            tracing::warn!(error = %e, "cannot read an output pipe");
            return;
        }
    };
    // Most services print a line now and then, which a page holds: 200 pipes do not keep
    // 64 KiB each. A read that fills the buffer finds a writer with more, and the buffer grows
    // once to what a pipe holds, so one read takes what a fast writer left, in one message.
    let mut buf = vec![0u8; 4 * 1024];
    // The last read took bytes, which went to the mux since.
    let mut pushed = false;
    let mut told = false;
    loop {
        match pipe.file().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if pushed {
                    pipe = pipe.plain();
                }
                pump.push(&buf[..n]).await;
                pushed = true;
                if n == buf.len() && buf.len() < PIPE_HOLDS {
                    buf.resize(PIPE_HOLDS, 0);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                pushed = false;
                let w = match pipe.watched() {
                    Ok(w) => w,
                    Err((f, e)) => {
                        // The output still arrives, a little later: not lost, and the service
                        // is not ended for it.
                        if !std::mem::replace(&mut told, true) {
                            tracing::warn!(error = %e, "cannot watch an output pipe; reading it every {POLL_PIPE:?}");
                        }
                        tokio::time::sleep(POLL_PIPE).await;
                        pipe = Pipe::Plain(f);
                        continue;
                    }
                };
                // Read again after it; a wake-up with nothing to read waits again.
                let woken = w.readable().await.map(|mut ready| ready.clear_ready());
                pipe = Pipe::Watched(w);
                // An error: the runtime is shutting down, nothing will read it any more.
                if woken.is_err() {
                    break;
                }
            }
            // A pipe's read fails only when it is not readable at all: treated as its end.
            Err(_) => break,
        }
    }
    pump.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::mux::Captured as Sink;
    use crate::logs::render::Renderer;
    use crate::logs::Format;
    use std::io::Write;

    /// A mux writing plain text into a [`Sink`].
    fn mux() -> (Sink, LogHandle, std::thread::JoinHandle<()>) {
        let sink = Sink::default();
        let renderer = Renderer {
            width: 3,
            color: false,
            utc_offset: 0,
        };
        let (logs, thread) =
            crate::logs::spawn(Box::new(sink.clone()), Format::Text(renderer), 0, None);
        (sink, logs, thread)
    }

    /// The texts of the lines the mux wrote, without their time and source.
    fn texts(sink: &Sink) -> Vec<String> {
        String::from_utf8(sink.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| l.split_once(" | ").map_or(l, |(_, t)| t).to_string())
            .collect()
    }

    /// A real pipe written a line per write, faster than the mux takes it (the pump is held
    /// back by the in-flight budget while the writer goes on), then a last line without a
    /// newline and the end: every line arrives whole, once and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipe_written_a_line_at_a_time_arrives_whole_and_in_order() {
        const LINES: usize = 50_000;
        let (sink, logs, thread) = mux();
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
        let got = texts(&sink);
        let want: Vec<String> = (0..LINES)
            .map(|i| format!("line {i}"))
            .chain(["last, no newline".to_string()])
            .collect();
        assert_eq!(got.len(), want.len(), "every line, once");
        let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
        assert_eq!(first_wrong, None, "in order and whole");
    }

    /// A service that prints now and then: the pump waits on the pipe in between (in the epoll
    /// set), each line arrives while the writer still runs, and the end of the pipe while the
    /// pump waits ends the pump with the last line.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_line_now_and_then_arrives_while_the_writer_runs_and_the_end_ends_the_pump() {
        let (sink, logs, thread) = mux();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let pump = Pump::new("app", 1, Stream::Stdout, logs.clone(), None);
        let pumping = tokio::spawn(pump_pipe(reader.into(), pump));
        for i in 1..=3 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
            // Arrives on its own, the writer still open and quiet.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while texts(&sink).len() < i {
                assert!(
                    std::time::Instant::now() < deadline,
                    "line {i} never arrived"
                );
                logs.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        writer.write_all(b"last").unwrap();
        drop(writer);
        tokio::time::timeout(std::time::Duration::from_secs(10), pumping)
            .await
            .expect("the pump ends with its pipe")
            .unwrap();
        logs.flush().await;
        drop(logs);
        thread.join().unwrap();
        assert_eq!(texts(&sink), ["line 1", "line 2", "line 3", "last"]);
    }
}
