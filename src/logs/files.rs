//! Per-service log files: one JSON line per log line, `<dir>/<service>.log`, rotated at a size
//! cap so a chatty service cannot fill the disk. Written only by the mux thread.
//!
//! A write that fails (a full disk, a folder gone read-only) pauses the files, never the stack:
//! the lines of the pause are counted and dropped from the files only (the live view and the
//! subscribers get every one), and writing is tried again every [`RETRY_EVERY`] until it works.
//! The mux says each pause and each resume once ([`Notice`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{LogLine, Stream};

/// A file is moved to `<service>.log.1` (replacing the previous one) beyond this size.
pub const ROTATE_AT: u64 = 20 * 1024 * 1024;

/// One line as stored, and as `devstack logs --json` and `up --json` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    pub service: String,
    /// `stdout`, `stderr` or `event` (devstack's own).
    pub stream: String,
    pub text: String,
    /// devstack's own events carry the typed event too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::event::StackEvent>,
}

/// The records of one event: its first text line carries the typed event, further lines (a
/// crash loop's last lines) follow as plain event lines. A bare state change has no text and is
/// one record with an empty text.
pub fn event_records(at: std::time::SystemTime, event: &crate::event::StackEvent) -> Vec<Record> {
    let t = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let service = event.service().unwrap_or("devstack").to_string();
    let mut lines = event.text_lines();
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, text)| Record {
            t,
            service: service.clone(),
            stream: "event".to_string(),
            text,
            event: (i == 0).then(|| event.clone()),
        })
        .collect()
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
        Stream::Event => "event",
    }
}

impl Record {
    pub fn of(line: &LogLine) -> Self {
        Record {
            t: line
                .at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            service: line.source.clone(),
            stream: stream_name(line.stream).to_string(),
            text: line.text.clone(),
            event: None,
        }
    }

    pub fn to_line(&self) -> LogLine {
        LogLine {
            at: UNIX_EPOCH + std::time::Duration::from_millis(self.t),
            source: self.service.clone(),
            stream: match self.stream.as_str() {
                "stderr" => Stream::Stderr,
                "event" => Stream::Event,
                _ => Stream::Stdout,
            },
            text: self.text.clone(),
        }
    }
}

/// How often writing is tried again while paused.
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

struct Open {
    file: BufWriter<File>,
    size: u64,
    /// Lines written into the buffer since the last flush that worked.
    unflushed: u64,
}

/// Writing failed at `since`; `dropped` lines were not written since.
struct Paused {
    retry_at: std::time::Instant,
    dropped: u64,
}

/// A change of the files' state, for the mux to tell once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Writing failed: files paused.
    Paused { dir: PathBuf, error: String },
    /// Writing works again; this many lines were not written meanwhile.
    Resumed { dir: PathBuf, dropped: u64 },
}

impl Notice {
    /// The sentence for the log.
    pub fn text(&self) -> String {
        match self {
            Notice::Paused { dir, error } => format!(
                "cannot write the log files in `{}`: {error}; log files are paused (the live log and `devstack logs -f` keep every line; the services keep running) and resume when writing works again",
                dir.display()
            ),
            Notice::Resumed { dir, dropped } => format!(
                "log files in `{}` resumed; up to {dropped} line(s) of the pause are not in them",
                dir.display()
            ),
        }
    }
}

pub struct LogFiles {
    dir: PathBuf,
    open: HashMap<String, Open>,
    paused: Option<Paused>,
}

/// The file of one service (service names are validated: no slashes).
pub fn path_of(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.log"))
}

impl LogFiles {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            open: HashMap::new(),
            paused: None,
        })
    }

    /// Writes one line (if not paused); a pause or resume it caused.
    pub fn write(&mut self, line: &LogLine) -> Option<Notice> {
        self.guarded(|f| f.write_line(line))
    }

    /// Writes one record (if not paused); a pause or resume it caused.
    pub fn write_record(&mut self, rec: &Record) -> Option<Notice> {
        self.guarded(|f| f.put_record(rec))
    }

    /// Runs one write unless paused (then counts it dropped), pausing on failure and resuming
    /// on the first success after a retry time.
    fn guarded(&mut self, op: impl FnOnce(&mut Self) -> std::io::Result<()>) -> Option<Notice> {
        if let Some(p) = &mut self.paused {
            if std::time::Instant::now() < p.retry_at {
                p.dropped += 1;
                return None;
            }
        }
        match op(self) {
            Ok(()) if self.paused.is_none() => None,
            // A retry: resumed only once what it wrote has reached the disk, so a disk that is
            // still full does not say "resumed" and "paused" again every second.
            Ok(()) => match self.flush_open() {
                Err(e) => self.pause(e),
                Ok(()) => {
                    let p = self.paused.take()?;
                    Some(Notice::Resumed {
                        dir: self.dir.clone(),
                        dropped: p.dropped,
                    })
                }
            },
            Err(e) => self.pause(e),
        }
    }

    /// Drops the open files (what their buffers could not write is lost with them) and waits
    /// for the next retry. A notice only for the first failure of a pause.
    fn pause(&mut self, e: std::io::Error) -> Option<Notice> {
        let lost: u64 = self.open.values().map(|o| o.unflushed).sum();
        // Dropping a writer tries its buffer once more; what fails is lost with it.
        self.open.clear();
        let retry_at = std::time::Instant::now() + RETRY_EVERY;
        match &mut self.paused {
            Some(p) => {
                p.dropped += 1 + lost;
                p.retry_at = retry_at;
                None
            }
            None => {
                self.paused = Some(Paused {
                    retry_at,
                    dropped: 1 + lost,
                });
                Some(Notice::Paused {
                    dir: self.dir.clone(),
                    error: e.to_string(),
                })
            }
        }
    }

    fn write_line(&mut self, line: &LogLine) -> std::io::Result<()> {
        /// A [`Record`] of borrowed parts: no copy of the line to store it.
        #[derive(Serialize)]
        struct LineRecord<'a> {
            t: u64,
            service: &'a str,
            stream: &'a str,
            text: &'a str,
        }
        let mut text = serde_json::to_string(&LineRecord {
            t: line
                .at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            service: &line.source,
            stream: stream_name(line.stream),
            text: &line.text,
        })
        .map_err(std::io::Error::other)?;
        text.push('\n');
        self.append(&line.source, &text)
    }

    fn put_record(&mut self, rec: &Record) -> std::io::Result<()> {
        let mut text = serde_json::to_string(rec).map_err(std::io::Error::other)?;
        text.push('\n');
        self.append(&rec.service, &text)
    }

    fn append(&mut self, source: &str, text: &str) -> std::io::Result<()> {
        if !self.open.contains_key(source) {
            let path = path_of(&self.dir, source);
            // Owner only: the lines may hold what services print, and devstack's own log the
            // dashboard's token.
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut file = BufWriter::new(file);
            // A pause may have cut the last line short: the next one starts on a line of its own.
            let mut last = [0u8];
            if size > 0
                && std::os::unix::fs::FileExt::read_at(file.get_ref(), &mut last, size - 1)
                    .is_ok_and(|n| n == 1 && last[0] != b'\n')
            {
                file.write_all(b"\n")?;
            }
            self.open.insert(
                source.to_string(),
                Open {
                    file,
                    size,
                    unflushed: 0,
                },
            );
        }
        let Some(o) = self.open.get_mut(source) else {
            return Ok(());
        };
        if o.size + text.len() as u64 > ROTATE_AT {
            let path = path_of(&self.dir, source);
            o.file.flush()?;
            fs::rename(&path, path.with_extension("log.1"))?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            *o = Open {
                file: BufWriter::new(file),
                size: 0,
                unflushed: 0,
            };
        }
        o.file.write_all(text.as_bytes())?;
        o.size += text.len() as u64;
        o.unflushed += 1;
        Ok(())
    }

    /// Writes what is buffered; a failure pauses the files like a failed write.
    pub fn flush(&mut self) -> Option<Notice> {
        self.flush_open().err().and_then(|e| self.pause(e))
    }

    /// Writes every open file's buffer; the last failure, if one did.
    fn flush_open(&mut self) -> std::io::Result<()> {
        let mut failed = Ok(());
        for o in self.open.values_mut() {
            match o.file.flush() {
                Ok(()) => o.unflushed = 0,
                Err(e) => failed = Err(e),
            }
        }
        failed
    }
}

/// Every record of `service`'s file (and its rotated predecessor), oldest first; unreadable lines
/// are skipped.
pub fn read(dir: &Path, service: &str) -> Vec<Record> {
    let path = path_of(dir, service);
    let mut out = Vec::new();
    for p in [path.with_extension("log.1"), path] {
        let Ok(text) = fs::read_to_string(&p) else {
            continue;
        };
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

/// Which stored records `logs` (and the MCP `logs` tool) show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only records whose text matches.
    pub grep: Option<regex::Regex>,
    /// Only the last N of each service.
    pub tail: Option<usize>,
}

impl Filter {
    /// Whether a record passes the time and text conditions (not `tail`). Pure.
    pub fn matches(&self, r: &Record) -> bool {
        self.since_ms.is_none_or(|s| r.t >= s)
            && self.grep.as_ref().is_none_or(|g| g.is_match(&r.text))
    }
}

/// The records of `services` that pass `filter`, merged by time.
pub fn select(dir: &Path, services: &[String], filter: &Filter) -> Vec<Record> {
    let mut out = Vec::new();
    for s in services {
        let mut rs: Vec<Record> = read(dir, s)
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        if let Some(k) = filter.tail {
            rs.drain(..rs.len().saturating_sub(k));
        }
        out.extend(rs);
    }
    out.sort_by_key(|r| r.t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::new(dir.path().to_path_buf()).unwrap();
        let line = LogLine {
            at: UNIX_EPOCH + std::time::Duration::from_millis(1234),
            source: "web".into(),
            stream: Stream::Stderr,
            text: "oops \"quoted\"".into(),
        };
        assert_eq!(files.write(&line), None);
        assert_eq!(files.write(&LogLine::event("web", "ready")), None);
        assert_eq!(files.flush(), None);
        let got = read(dir.path(), "web");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to_line(), line);
        assert_eq!(got[1].stream, "event");
        assert!(read(dir.path(), "nope").is_empty());
    }

    #[test]
    fn select_filters_by_time_text_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::new(dir.path().to_path_buf()).unwrap();
        for (t, svc, text) in [
            (1, "a", "boot"),
            (2, "b", "error: x"),
            (3, "a", "error: y"),
            (4, "a", "error: z"),
        ] {
            let notice = files.write(&LogLine {
                at: UNIX_EPOCH + std::time::Duration::from_millis(t),
                source: svc.into(),
                stream: Stream::Stdout,
                text: text.into(),
            });
            assert_eq!(notice, None);
        }
        assert_eq!(files.flush(), None);
        let both = ["a".to_string(), "b".to_string()];
        let texts = |f: Filter| -> Vec<String> {
            select(dir.path(), &both, &f)
                .into_iter()
                .map(|r| r.text)
                .collect()
        };
        let grep = Some(regex::Regex::new("^error").unwrap());
        assert_eq!(
            texts(Filter {
                grep: grep.clone(),
                ..Filter::default()
            }),
            ["error: x", "error: y", "error: z"]
        );
        assert_eq!(
            texts(Filter {
                grep,
                tail: Some(1),
                since_ms: None
            }),
            ["error: x", "error: z"]
        );
        assert_eq!(
            texts(Filter {
                since_ms: Some(3),
                ..Filter::default()
            }),
            ["error: y", "error: z"]
        );
    }
}
