//! The log mux: one thread owns the output and the recent lines of each service. Producers
//! send whole lines and typed events over a bounded channel, so a slow terminal slows them down
//! (back-pressure) instead of growing a buffer. It is the fan-out of the stack's one stream:
//! the terminal (or `--json`), the per-service files, and subscribers all get every item.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::fanout::Fanout;
use super::render::Renderer;
use super::screen::{Screen, ScreenCommand};

use super::{LogLine, Stream};
use crate::event::StackEvent;
use crate::redact::Redactor;

/// One item of the stream, as subscribers get it.
#[derive(Debug, Clone)]
pub enum Published {
    Line(LogLine),
    Event {
        at: std::time::SystemTime,
        event: StackEvent,
    },
}

/// Messages in flight between producers and the writer.
const CHANNEL: usize = 1024;

/// Bytes of lines in flight in batches ([`LogHandle::lines`]): the channel counts messages, and
/// a batch may hold a whole chunk of output, so without this bound a flood could queue
/// `CHANNEL` chunks (tens of MiB) instead of `CHANNEL` lines. A batch takes its size from this
/// budget before it is sent and gives it back once the writer is done with it. 16 chunks of a
/// pipe read: enough to keep the writer busy (a larger budget is no faster), small beside the
/// rest of the process.
const IN_FLIGHT_BYTES: usize = 256 * 1024;

/// What one line in a batch costs of [`IN_FLIGHT_BYTES`]: its text and the struct (its source
/// is shared by every line of the service).
fn cost(line: &LogLine) -> usize {
    std::mem::size_of::<LogLine>() + line.text.capacity()
}

enum LogMsg {
    Line(LogLine),
    /// The lines of one chunk of output: one message for many lines, and their share of the
    /// in-flight budget, released once they are written.
    Lines(Vec<LogLine>, OwnedSemaphorePermit),
    /// The terminal view's status line, filter and highlight.
    Screen(ScreenCommand),
    Event(std::time::SystemTime, StackEvent),
    Tail {
        source: String,
        reply: oneshot::Sender<Vec<String>>,
    },
    Flush(oneshot::Sender<()>),
}

/// A cheap handle to the mux.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<LogMsg>,
    subscribers: Fanout,
    redact: Redactor,
    /// [`IN_FLIGHT_BYTES`], shared by every producer.
    budget: Arc<Semaphore>,
}

impl LogHandle {
    /// Sends one line, waiting while the writer is behind. A closed mux (shutting down) drops it.
    pub async fn line(&self, line: LogLine) {
        // The mux only closes at exit, when nobody reads lines any more.
        let _ = self.tx.send(LogMsg::Line(line)).await;
    }

    /// Sends the lines of one chunk of one source at once (one channel message, however many
    /// lines; the writer keeps only the last of them as that source's tail), waiting
    /// while more than [`IN_FLIGHT_BYTES`] of lines are queued.
    pub async fn lines(&self, lines: Vec<LogLine>) {
        if lines.is_empty() {
            return;
        }
        // A batch larger than the whole budget waits for all of it.
        let bytes = lines.iter().map(cost).sum::<usize>().min(IN_FLIGHT_BYTES);
        // The budget is never closed.
        let Ok(permit) = self.budget.clone().acquire_many_owned(bytes as u32).await else {
            return;
        };
        let _ = self.tx.send(LogMsg::Lines(lines, permit)).await;
    }

    /// A command for the terminal view's part of the output (status line, filter, highlight).
    pub async fn screen(&self, cmd: ScreenCommand) {
        let _ = self.tx.send(LogMsg::Screen(cmd)).await;
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
    pub fn fanout(&self) -> Fanout {
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
pub(crate) enum Format {
    Text(Renderer),
    /// One JSON object per line, for tools.
    Json,
}

/// Rendered output is written once it reaches this size, or at the end of a burst: one write
/// per burst, not per line (stdout is line-buffered, so a write per line is a syscall per line).
const WRITE_AT: usize = 64 * 1024;

/// What the writer thread owns.
struct Sink {
    out: Box<dyn Write + Send>,
    format: Format,
    tail_len: usize,
    tails: HashMap<String, VecDeque<String>>,
    files: Option<super::files::LogFiles>,
    fanout: Fanout,
    /// Rendered text not written yet.
    pending: String,
    /// The output is gone (stdout piped into `head`): the stack keeps running regardless.
    broken: bool,
    /// The terminal view's pinned status line, filter and highlight.
    screen: Screen,
}

impl Sink {
    /// Writes what is pending, the status line taken away meanwhile.
    fn write_out(&mut self) {
        if !self.pending.is_empty() && !self.broken {
            self.broken = self.screen.lift(&mut self.out).is_err()
                || self.out.write_all(self.pending.as_bytes()).is_err();
        }
        self.pending.clear();
    }

    /// The end of a burst: everything written, the status line drawn again.
    fn settle(&mut self) {
        self.write_out();
        if !self.broken {
            self.broken = self.screen.settle(&mut self.out).is_err() || self.out.flush().is_err();
        }
    }
}

/// One line to the tail (with `keep_tail`), the file, the output and the subscribers.
fn on_line(line: LogLine, sink: &mut Sink, keep_tail: bool) {
    if keep_tail && line.stream != Stream::Event {
        let t = match sink.tails.get_mut(&*line.source) {
            Some(t) => t,
            None => sink.tails.entry(line.source.to_string()).or_default(),
        };
        if t.len() == sink.tail_len {
            t.pop_front();
        }
        t.push_back(line.text.clone());
    }
    if let Some(notice) = sink.files.as_mut().and_then(|f| f.write(&line)) {
        tell(notice, sink);
    }
    if !sink.broken && sink.screen.shows(Some(&line.source)) {
        match &sink.format {
            Format::Text(r) => match sink.screen.highlight() {
                None => r.render_into(&line, &mut sink.pending),
                Some(h) => sink.pending.push_str(&r.render_with(&line, Some(h))),
            },
            Format::Json => sink.pending.push_str(
                &serde_json::to_string(&super::files::Record::of(&line)).unwrap_or_default(),
            ),
        }
        sink.pending.push('\n');
    }
    sink.fanout.send(Published::Line(line));
}

/// One event to the files (not a bare state change), the output and the subscribers.
fn on_event(at: std::time::SystemTime, event: StackEvent, sink: &mut Sink) {
    let stateful = matches!(event, StackEvent::State { .. });
    if let Some(f) = sink.files.as_mut().filter(|_| !stateful) {
        // Every record written (or counted as dropped); the first notice told.
        let notice = super::files::event_records(at, &event)
            .iter()
            .map(|rec| f.write_record(rec))
            .fold(None, |first, n| first.or(n));
        if let Some(notice) = notice {
            tell(notice, sink);
        }
    }
    if !sink.broken && sink.screen.shows(event.service()) {
        let text = &mut sink.pending;
        match &sink.format {
            Format::Text(r) => {
                let source = event.service().unwrap_or("devstack");
                for l in event.text_lines() {
                    text.push_str(&r.render_with(
                        &LogLine {
                            at,
                            source: source.into(),
                            stream: Stream::Event,
                            text: l,
                            level: None,
                        },
                        sink.screen.highlight(),
                    ));
                    text.push('\n');
                }
            }
            Format::Json => {
                for rec in super::files::event_records(at, &event).into_iter().take(1) {
                    text.push_str(&serde_json::to_string(&rec).unwrap_or_default());
                    text.push('\n');
                }
            }
        }
    }
    sink.fanout.send(Published::Event { at, event });
}

/// Says a pause or resume of the log files once, as devstack's own warning or note. A notice
/// that telling it causes (its own write failing) is not told again.
fn tell(notice: super::files::Notice, sink: &mut Sink) {
    let event = match notice {
        super::files::Notice::Paused { .. } => StackEvent::warning(None, notice.text()),
        super::files::Notice::Resumed { .. } => StackEvent::note(None, notice.text()),
    };
    on_event(std::time::SystemTime::now(), event, sink);
}

/// Writes the files' buffers; a pause that causes is told.
fn flush_files(sink: &mut Sink) {
    if let Some(notice) = sink.files.as_mut().and_then(super::files::LogFiles::flush) {
        tell(notice, sink);
    }
}

/// Starts the writer thread. It ends when every handle is dropped. With `files`, this is a run:
/// every line also goes to its service's log file in that folder.
pub(crate) fn spawn(
    out: Box<dyn Write + Send>,
    format: Format,
    tail_len: usize,
    files: Option<super::files::FileSetup>,
) -> (LogHandle, std::thread::JoinHandle<()>) {
    spawn_with(out, format, tail_len, files, Redactor::default())
}

/// [`spawn`], masking the secret values `redact` knows in every event.
pub(crate) fn spawn_with(
    out: Box<dyn Write + Send>,
    format: Format,
    tail_len: usize,
    files: Option<super::files::FileSetup>,
    redact: Redactor,
) -> (LogHandle, std::thread::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<LogMsg>(CHANNEL);
    let subscribers = Fanout::new();
    let fanout = subscribers.clone();
    let thread = std::thread::Builder::new()
        .name("devstack-logs".into())
        .spawn(move || {
            let files = files.and_then(|setup| {
                let dir = setup.dir.clone();
                match super::files::LogFiles::for_run(setup, crate::clock::unix_ms()) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::warn!("cannot write log files in `{}`: {e}", dir.display());
                        None
                    }
                }
            });
            let mut sink = Sink {
                out,
                format,
                tail_len,
                tails: HashMap::new(),
                files,
                fanout,
                pending: String::new(),
                broken: false,
                screen: Screen::default(),
            };
            while let Some(msg) = rx.blocking_recv() {
                let mut next = Some(msg);
                // Drain what is queued before flushing: one write per burst, not per line.
                while let Some(msg) = next.take() {
                    match msg {
                        LogMsg::Event(at, event) => on_event(at, event, &mut sink),
                        LogMsg::Line(line) => on_line(line, &mut sink, true),
                        LogMsg::Lines(lines, permit) => {
                            // One chunk of one service: only its last lines can stay in the
                            // tail, the others are not copied there to be dropped at once.
                            let first_kept = lines.len().saturating_sub(sink.tail_len);
                            for (i, line) in lines.into_iter().enumerate() {
                                on_line(line, &mut sink, i >= first_kept);
                            }
                            drop(permit);
                        }
                        LogMsg::Tail { source, reply } => {
                            let lines = sink
                                .tails
                                .get(&source)
                                .map(|t| t.iter().cloned().collect())
                                .unwrap_or_default();
                            let _ = reply.send(lines);
                        }
                        LogMsg::Screen(cmd) => {
                            // In order: what was printed before the command goes first.
                            sink.write_out();
                            if !sink.broken {
                                sink.broken = sink.screen.apply(cmd, &mut sink.out).is_err();
                            }
                        }
                        LogMsg::Flush(reply) => {
                            flush_files(&mut sink);
                            sink.settle();
                            let _ = reply.send(());
                        }
                    }
                    if sink.pending.len() >= WRITE_AT {
                        sink.write_out();
                    }
                    next = rx.try_recv().ok();
                }
                flush_files(&mut sink);
                sink.settle();
            }
            sink.write_out();
            // The run is over: no status line stays behind.
            let _ = sink.screen.lift(&mut sink.out);
            let _ = sink.out.flush();
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    (
        LogHandle {
            tx,
            subscribers,
            redact,
            budget: Arc::new(Semaphore::new(IN_FLIGHT_BYTES)),
        },
        thread,
    )
}

/// An output that keeps what the writer wrote, for tests.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Captured as Sink;
    use super::*;
    use std::sync::{Arc, Mutex};

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
                level: None,
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

    /// A terminal that takes nothing until it is opened; counts the lines it got.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>, Arc<Mutex<usize>>);
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.0;
            let _unused = cv.wait_while(open.lock().unwrap(), |o| !*o).unwrap();
            *self.1.lock().unwrap() += newlines(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn newlines(b: &[u8]) -> usize {
        b.iter().filter(|c| **c == b'\n').count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_writer_stops_batches_at_the_byte_budget() {
        let gate = Gate::default();
        let (h, thread) = spawn(Box::new(gate.clone()), Format::Json, 2, None);
        // 100 batches of 100 lines of 1 KB: 10 MB, ten times the budget.
        let batch = || -> Vec<LogLine> {
            (0..100)
                .map(|_| LogLine {
                    at: std::time::UNIX_EPOCH,
                    source: "flood".into(),
                    stream: Stream::Stdout,
                    text: "x".repeat(1000),
                    level: None,
                })
                .collect()
        };
        let per_batch: usize = batch().iter().map(cost).sum();
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let producer = {
            let (h, sent) = (h.clone(), sent.clone());
            tokio::spawn(async move {
                for _ in 0..100 {
                    h.lines(batch()).await;
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Queued: the budget; taken by the stalled writer: what fits before its first write.
        let queued = sent.load(std::sync::atomic::Ordering::SeqCst) * per_batch;
        assert!(
            queued <= IN_FLIGHT_BYTES + WRITE_AT + 2 * per_batch,
            "{queued} bytes sent to a writer that takes none"
        );
        let (open, cv) = &*gate.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
        producer.await.unwrap();
        h.flush().await;
        drop(h);
        thread.join().unwrap();
        assert_eq!(*gate.1.lock().unwrap(), 100 * 100, "every line is written");
    }
}
