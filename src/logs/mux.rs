//! The log mux: one thread owns the output and the recent lines of each service. Producers
//! send whole lines and typed events over a bounded channel, so a slow terminal slows them down
//! (back-pressure) instead of growing a buffer. It is the fan-out of the stack's one stream:
//! the terminal (or `--json`), the per-service files, and subscribers all get every item.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::render::Renderer;
use super::screen::{Screen, ScreenCommand};

use super::{LogLine, Stream};
use crate::event::StackEvent;
use crate::redact::Redactor;

/// How many items a slow subscriber may fall behind before it misses some.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// One item of the stream, as subscribers get it.
#[derive(Debug, Clone)]
pub enum Published {
    Line(LogLine),
    Event {
        at: std::time::SystemTime,
        event: StackEvent,
    },
}

/// Lines in flight between producers and the writer.
const CHANNEL: usize = 1024;

enum LogMsg {
    Line(LogLine),
    Event(std::time::SystemTime, StackEvent),
    Tail {
        source: String,
        reply: oneshot::Sender<Vec<String>>,
    },
    Flush(oneshot::Sender<()>),
    Screen(ScreenCommand),
}

/// A cheap handle to the mux.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<LogMsg>,
    subscribers: broadcast::Sender<Published>,
    redact: Redactor,
}

impl LogHandle {
    /// Sends one line, waiting while the writer is behind. A closed mux (shutting down) drops it.
    pub async fn line(&self, line: LogLine) {
        // The mux only closes at exit, when nobody reads lines any more.
        let _ = self.tx.send(LogMsg::Line(line)).await;
    }

    /// devstack's own note about `source` (`devstack` for the whole stack).
    pub async fn event(&self, source: &str, text: impl Into<String>) {
        let service = (source != "devstack").then_some(source);
        self.publish(StackEvent::note(service, text)).await;
    }

    /// A typed event, secrets masked.
    pub async fn publish(&self, mut event: StackEvent) {
        event.redact(&self.redact);
        let _ = self
            .tx
            .send(LogMsg::Event(std::time::SystemTime::now(), event))
            .await;
    }

    /// Every line and event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.subscribers.subscribe()
    }

    /// The fan-out itself, for handles that must not keep the mux alive.
    pub fn fanout(&self) -> broadcast::Sender<Published> {
        self.subscribers.clone()
    }

    /// The most recent output lines of `source` (its own output, not devstack's events).
    pub async fn tail(&self, source: &str) -> Vec<String> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(LogMsg::Tail {
                source: source.to_string(),
                reply,
            })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Tells the terminal writer about the interactive view's status line, filter, highlight.
    pub async fn screen(&self, cmd: ScreenCommand) {
        // A closed mux is exiting: nothing is drawn any more.
        let _ = self.tx.send(LogMsg::Screen(cmd)).await;
    }

    /// Waits until everything sent before is written.
    pub async fn flush(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(LogMsg::Flush(reply)).await.is_ok() {
            // An error means the writer is gone; then there is nothing left to wait for.
            let _ = rx.await;
        }
    }
}

/// How lines are shown.
#[derive(Debug, Clone)]
pub enum Format {
    Text(Renderer),
    /// One JSON object per line, for tools.
    Json,
}

/// Starts the writer thread. It ends when every handle is dropped. With `files`, every line also
/// goes to its service's log file in that folder.
pub fn spawn(
    out: Box<dyn Write + Send>,
    format: Format,
    tail_len: usize,
    files: Option<std::path::PathBuf>,
) -> (LogHandle, std::thread::JoinHandle<()>) {
    spawn_with(out, format, tail_len, files, Redactor::default())
}

/// [`spawn`], masking the secret values `redact` knows in every event.
pub fn spawn_with(
    mut out: Box<dyn Write + Send>,
    format: Format,
    tail_len: usize,
    files: Option<std::path::PathBuf>,
    redact: Redactor,
) -> (LogHandle, std::thread::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<LogMsg>(CHANNEL);
    let (subscribers, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
    let fanout = subscribers.clone();
    let thread = std::thread::Builder::new()
        .name("devstack-logs".into())
        .spawn(move || {
            let mut tails: HashMap<String, VecDeque<String>> = HashMap::new();
            let mut broken = false;
            let mut screen = Screen::default();
            let mut files = files.and_then(|dir| match super::files::LogFiles::new(dir.clone()) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!("cannot write log files in `{}`: {e}", dir.display());
                    None
                }
            });
            while let Some(msg) = rx.blocking_recv() {
                let mut next = Some(msg);
                // Drain what is queued before flushing: one write per burst, not per line.
                while let Some(msg) = next.take() {
                    match msg {
                        LogMsg::Event(at, event) => {
                            let stateful = matches!(event, StackEvent::State { .. });
                            if let Some(f) = files.as_mut().filter(|_| !stateful) {
                                for rec in super::files::event_records(at, &event) {
                                    if let Err(e) = f.write_record(&rec) {
                                        tracing::warn!(
                                            "cannot write log file: {e}; log files are off"
                                        );
                                        files = None;
                                        break;
                                    }
                                }
                            }
                            if !broken && screen.shows(event.service()) {
                                let mut text = String::new();
                                match &format {
                                    Format::Text(r) => {
                                        let source = event.service().unwrap_or("devstack");
                                        for l in event.text_lines() {
                                            text.push_str(&r.render_with(
                                                &LogLine {
                                                    at,
                                                    source: source.to_string(),
                                                    stream: Stream::Event,
                                                    text: l,
                                                },
                                                screen.highlight(),
                                            ));
                                            text.push('\n');
                                        }
                                    }
                                    Format::Json => {
                                        for rec in super::files::event_records(at, &event)
                                            .into_iter()
                                            .take(1)
                                        {
                                            text = serde_json::to_string(&rec).unwrap_or_default();
                                            text.push('\n');
                                        }
                                    }
                                }
                                if !text.is_empty() {
                                    broken = screen.lift(&mut out).is_err()
                                        || out.write_all(text.as_bytes()).is_err();
                                }
                            }
                            if fanout.receiver_count() > 0 {
                                let _ = fanout.send(Published::Event { at, event });
                            }
                        }
                        LogMsg::Line(line) => {
                            if line.stream != Stream::Event {
                                let t = tails.entry(line.source.clone()).or_default();
                                if t.len() == tail_len {
                                    t.pop_front();
                                }
                                t.push_back(line.text.clone());
                            }
                            if let Some(f) = files.as_mut() {
                                if let Err(e) = f.write(&line) {
                                    tracing::warn!("cannot write log file: {e}; log files are off");
                                    files = None;
                                }
                            }
                            if !broken && screen.shows(Some(&line.source)) {
                                let mut text = match &format {
                                    Format::Text(r) => r.render_with(&line, screen.highlight()),
                                    Format::Json => {
                                        serde_json::to_string(&super::files::Record::of(&line))
                                            .unwrap_or_default()
                                    }
                                };
                                text.push('\n');
                                // A closed stdout (piped into `head`) must not stop the stack.
                                broken = screen.lift(&mut out).is_err()
                                    || out.write_all(text.as_bytes()).is_err();
                            }
                            if fanout.receiver_count() > 0 {
                                let _ = fanout.send(Published::Line(line));
                            }
                        }
                        LogMsg::Tail { source, reply } => {
                            let lines = tails
                                .get(&source)
                                .map(|t| t.iter().cloned().collect())
                                .unwrap_or_default();
                            let _ = reply.send(lines);
                        }
                        LogMsg::Screen(cmd) => {
                            if !broken {
                                broken = screen.apply(cmd, &mut out).is_err();
                            }
                        }
                        LogMsg::Flush(reply) => {
                            let _ = out.flush();
                            if let Some(f) = files.as_mut() {
                                f.flush();
                            }
                            let _ = reply.send(());
                        }
                    }
                    next = rx.try_recv().ok();
                }
                if !broken {
                    broken = screen.settle(&mut out).is_err() || out.flush().is_err();
                }
                if let Some(f) = files.as_mut() {
                    f.flush();
                }
            }
            // The shell's prompt comes next: leave no status line behind.
            let _ = screen.lift(&mut out);
            let _ = out.flush();
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    (
        LogHandle {
            tx,
            subscribers,
            redact,
        },
        thread,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[tokio::test]
    async fn lines_are_written_whole_and_tails_kept() {
        let sink = Sink::default();
        let renderer = Renderer {
            width: 3,
            color: false,
            utc_offset: 0,
        };
        let (h, thread) = spawn(Box::new(sink.clone()), Format::Text(renderer), 2, None);
        for i in 0..3 {
            h.line(LogLine {
                at: std::time::UNIX_EPOCH,
                source: "db".into(),
                stream: Stream::Stdout,
                text: format!("l{i}"),
            })
            .await;
        }
        h.event("db", "ready").await;
        assert_eq!(h.tail("db").await, vec!["l1", "l2"]);
        assert!(h.tail("other").await.is_empty());
        h.flush().await;
        drop(h);
        thread.join().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "00:00:00.000 db  | l0",
                "00:00:00.000 db  | l1",
                "00:00:00.000 db  | l2"
            ]
        );
        assert!(lines[3].ends_with(" db  ▸ ready"), "{}", lines[3]);
        assert_eq!(lines.len(), 4);
    }
}
