//! Per-service log files: one JSON line per log line, `<dir>/<service>.log`, rotated at a size
//! cap so a chatty service cannot fill the disk. Written only by the mux thread.
//!
//! A write that fails (a full disk, a folder gone read-only) pauses the files, never the stack:
//! the lines of the pause are counted and dropped from the files only (the live view and the
//! subscribers get every one), and writing is tried again every [`RETRY_EVERY`] until it works.
//! The mux says each pause and each resume once ([`Notice`]).
//!
//! Runs: each `up` is a run with an id (1, 2, …) and a start time, listed in `<dir>/runs`; every
//! file opened during a run starts with that run's boundary record (`{"run":7,…}`), again after
//! a rotation or a pause, so each file says which run each of its lines belongs to. At the start
//! of a run, the lines of runs beyond `keep_runs` are removed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{Level, LogLine, Stream};

/// A file is moved to `<service>.log.1` (replacing the previous one) beyond this size.
pub(crate) const ROTATE_AT: u64 = 20 * 1024 * 1024;

/// Each open file's buffer: a burst of output is written in few calls (the mux flushes at the
/// end of every burst anyway).
const FILE_BUFFER: usize = 32 * 1024;

/// One line as stored, and as `devstack logs --json` and `up --json` print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// A run boundary: the lines after it (in this file) belong to this run. First, so a
    /// reader knows one by the line's first bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    pub service: String,
    /// `stdout`, `stderr`, `event` (devstack's own) or `run` (a boundary).
    pub stream: String,
    /// The level the line's text says (stored); before the text so a query finds it early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    pub text: String,
    /// The line's fields (JSON keys or logfmt pairs), for `logs --json`; never stored, they
    /// are read from the text when shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// devstack's own events carry the typed event too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::event::StackEvent>,
}

/// The records of one event: its first text line carries the typed event, further lines (a
/// crash loop's last lines) follow as plain event lines. A bare state change has no text and is
/// one record with an empty text.
pub(crate) fn event_records(
    at: std::time::SystemTime,
    event: &crate::event::StackEvent,
) -> Vec<Record> {
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
            run: None,
            t,
            service: service.clone(),
            stream: "event".to_string(),
            level: event.level(),
            text,
            fields: None,
            event: (i == 0).then(|| event.clone()),
        })
        .collect()
}

/// `s` as a JSON string: as it is between quotes when nothing in it needs escaping (the
/// check is one pass the compiler vectorises), else through serde_json.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let escapes = b
        .iter()
        .fold(false, |a, &c| a | (c < 0x20) | (c == b'"') | (c == b'\\'));
    if escapes {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }
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
            run: None,
            t: line
                .at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            service: line.source.to_string(),
            stream: stream_name(line.stream).to_string(),
            level: line.level,
            text: line.text.clone(),
            fields: None,
            event: None,
        }
    }

    /// A run's boundary record in `service`'s file.
    pub fn boundary(run: Run, service: &str) -> Self {
        Record {
            run: Some(run.id),
            t: run.start_ms,
            service: service.to_string(),
            stream: "run".to_string(),
            level: None,
            text: format!("run {}", run.id),
            fields: None,
            event: None,
        }
    }

    /// Whether this is a run boundary, not a line.
    pub fn is_boundary(&self) -> bool {
        self.run.is_some()
    }

    /// The record with its text's fields (JSON or logfmt) filled in, for `--json`.
    pub fn with_fields(mut self) -> Self {
        if self.stream != "event" && self.fields.is_none() {
            let p = super::level::parse(&self.text);
            if !p.fields.is_empty() {
                self.fields = Some(p.fields);
            }
            self.level = self.level.or(p.level);
        }
        self
    }

    pub fn to_line(&self) -> LogLine {
        LogLine {
            at: UNIX_EPOCH + std::time::Duration::from_millis(self.t),
            source: self.service.as_str().into(),
            stream: match self.stream.as_str() {
                "stderr" => Stream::Stderr,
                "event" => Stream::Event,
                _ => Stream::Stdout,
            },
            text: self.text.clone(),
            level: self.level,
        }
    }
}

/// One `up`: its id (1, 2, … per project) and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    #[serde(rename = "run")]
    pub id: u64,
    #[serde(rename = "t")]
    pub start_ms: u64,
}

/// The list of runs, oldest first, in the logs folder.
fn runs_path(dir: &Path) -> PathBuf {
    dir.join("runs")
}

/// The runs whose lines the files keep, oldest first (none before the first run with runs).
pub(crate) fn runs(dir: &Path) -> Vec<Run> {
    fs::read_to_string(runs_path(dir))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a new run: lists it (keeping the last `keep_runs`) and returns it.
fn begin_run(dir: &Path, start_ms: u64, keep_runs: usize) -> std::io::Result<Run> {
    let mut all = runs(dir);
    let run = Run {
        id: all.last().map_or(1, |r| r.id + 1),
        start_ms,
    };
    all.push(run);
    all.drain(..all.len().saturating_sub(keep_runs.max(1)));
    let mut text = String::new();
    for r in &all {
        text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    let tmp = dir.join("runs.tmp");
    fs::write(&tmp, text)?;
    fs::rename(tmp, runs_path(dir))?;
    Ok(run)
}

/// The run id of a stored line that is a boundary, by its first bytes (no parse of the rest).
pub(crate) fn boundary_id(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"run\":")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Removes from one file the lines of runs before `first_kept`. Lines before any boundary
/// (written before runs existed) count as older than every run. Reads only the first line
/// when nothing is to go.
fn prune_file(path: &Path, first_kept: u64) -> std::io::Result<()> {
    use std::io::BufRead;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut first = String::new();
    std::io::BufReader::new(&file).read_line(&mut first)?;
    if first.is_empty() || boundary_id(&first).is_some_and(|id| id >= first_kept) {
        return Ok(());
    }
    let text = fs::read_to_string(path)?;
    let mut at = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if boundary_id(line).is_some_and(|id| id >= first_kept) {
            at = Some(offset);
            break;
        }
        offset += line.len();
    }
    match at {
        None => fs::remove_file(path),
        Some(at) => {
            let tmp = path.with_extension("prune");
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text.as_bytes()[at..])?;
            drop(f);
            fs::rename(tmp, path)
        }
    }
}

/// Prunes every log file in `dir` to the runs from `first_kept` on.
fn prune(dir: &Path, first_kept: u64) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".log") || name.ends_with(".log.1") {
            prune_file(&path, first_kept)?;
        }
    }
    Ok(())
}

/// The files of one run: where, and how many runs to keep.
#[derive(Debug, Clone)]
pub(crate) struct FileSetup {
    pub dir: PathBuf,
    /// Lines of older runs are removed when a run starts.
    pub keep_runs: usize,
}

/// Runs kept when the stack file does not say (`logs: { keep_runs: N }`).
pub(crate) const KEEP_RUNS: usize = 10;

/// How often writing is tried again while paused.
pub(crate) const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

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
pub(crate) enum Notice {
    /// Writing failed: files paused.
    Paused { dir: PathBuf, error: String },
    /// Writing works again; this many lines were not written meanwhile.
    Resumed { dir: PathBuf, dropped: u64 },
}

impl Notice {
    /// The sentence for the log.
    pub(crate) fn text(&self) -> String {
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

pub(crate) struct LogFiles {
    dir: PathBuf,
    open: HashMap<String, Open>,
    paused: Option<Paused>,
    /// The run whose boundary opens every file opened; none writes no boundaries.
    run: Option<Run>,
    /// One record as it is written, kept between lines: no allocation per line.
    record: Vec<u8>,
}

/// The file of one service (service names are validated: no slashes).
pub(crate) fn path_of(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.log"))
}

impl LogFiles {
    pub(crate) fn new(dir: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            open: HashMap::new(),
            paused: None,
            run: None,
            record: Vec::new(),
        })
    }

    /// The files of a new run: listed, its boundary at the start of each file it opens, the
    /// lines of runs beyond `keep_runs` removed.
    pub(crate) fn for_run(setup: FileSetup, start_ms: u64) -> std::io::Result<Self> {
        let mut files = Self::new(setup.dir)?;
        let run = begin_run(&files.dir, start_ms, setup.keep_runs)?;
        let first_kept = (run.id + 1).saturating_sub(setup.keep_runs.max(1) as u64);
        if let Err(e) = prune(&files.dir, first_kept) {
            // The run goes on; old lines stay until a later start can remove them.
            tracing::warn!("cannot remove old runs from `{}`: {e}", files.dir.display());
        }
        files.run = Some(run);
        Ok(files)
    }

    #[cfg(test)]
    /// The run these files belong to (none for files opened outside a run).
    pub(crate) fn run(&self) -> Option<Run> {
        self.run
    }

    /// Writes one line (if not paused); a pause or resume it caused.
    pub(crate) fn write(&mut self, line: &LogLine) -> Option<Notice> {
        self.guarded(|f| f.write_line(line))
    }

    /// Writes one record (if not paused); a pause or resume it caused.
    pub(crate) fn write_record(&mut self, rec: &Record) -> Option<Notice> {
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

    /// A line's record, written by hand into [`LogFiles::record`] (this runs for every line;
    /// serde's general path costs more than the rest of the write): the same JSON a
    /// [`Record`] of the line gives.
    fn write_line(&mut self, line: &LogLine) -> std::io::Result<()> {
        let mut rec = std::mem::take(&mut self.record);
        rec.clear();
        let t = line
            .at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        rec.extend_from_slice(b"{\"t\":");
        rec.extend_from_slice(t.to_string().as_bytes());
        rec.extend_from_slice(b",\"service\":");
        push_json_str(&mut rec, &line.source);
        rec.extend_from_slice(b",\"stream\":\"");
        rec.extend_from_slice(stream_name(line.stream).as_bytes());
        rec.push(b'"');
        if let Some(level) = line.level {
            rec.extend_from_slice(b",\"level\":\"");
            rec.extend_from_slice(level.as_str().as_bytes());
            rec.push(b'"');
        }
        rec.extend_from_slice(b",\"text\":");
        push_json_str(&mut rec, &line.text);
        rec.extend_from_slice(b"}\n");
        let appended = self.append(&line.source, &rec);
        self.record = rec;
        appended
    }

    fn put_record(&mut self, rec: &Record) -> std::io::Result<()> {
        self.append_record(&rec.service, rec)
    }

    /// One JSON record and its newline, built in [`LogFiles::record`].
    fn append_record(&mut self, source: &str, rec: &impl Serialize) -> std::io::Result<()> {
        let mut text = std::mem::take(&mut self.record);
        text.clear();
        let written = serde_json::to_writer(&mut text, rec).map_err(std::io::Error::other);
        text.push(b'\n');
        let appended = written.and_then(|()| self.append(source, &text));
        self.record = text;
        appended
    }

    fn append(&mut self, source: &str, text: &[u8]) -> std::io::Result<()> {
        // The open file in one lookup: this runs for every line.
        if let Some(o) = self.open.get_mut(source) {
            if o.size + text.len() as u64 <= ROTATE_AT {
                o.file.write_all(text)?;
                o.size += text.len() as u64;
                o.unflushed += 1;
                return Ok(());
            }
        }
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
            let mut file = BufWriter::with_capacity(FILE_BUFFER, file);
            // A pause may have cut the last line short: the next one starts on a line of its own.
            let mut last = [0u8];
            if size > 0
                && std::os::unix::fs::FileExt::read_at(file.get_ref(), &mut last, size - 1)
                    .is_ok_and(|n| n == 1 && last[0] != b'\n')
            {
                file.write_all(b"\n")?;
            }
            let size = size + boundary_of(self.run, &mut file, source)?;
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
            let mut file = BufWriter::with_capacity(FILE_BUFFER, file);
            let size = boundary_of(self.run, &mut file, source)?;
            *o = Open {
                file,
                size,
                unflushed: 0,
            };
        }
        o.file.write_all(text)?;
        o.size += text.len() as u64;
        o.unflushed += 1;
        Ok(())
    }

    /// Writes what is buffered; a failure pauses the files like a failed write.
    pub(crate) fn flush(&mut self) -> Option<Notice> {
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

/// Writes `run`'s boundary record for `source`; its size in bytes (0 without a run).
fn boundary_of(run: Option<Run>, file: &mut BufWriter<File>, source: &str) -> std::io::Result<u64> {
    let Some(run) = run else {
        return Ok(0);
    };
    let mut text =
        serde_json::to_string(&Record::boundary(run, source)).map_err(std::io::Error::other)?;
    text.push('\n');
    file.write_all(text.as_bytes())?;
    Ok(text.len() as u64)
}

/// Every record of `service`'s file (and its rotated predecessor), oldest first; unreadable lines
/// are skipped.
pub(crate) fn read(dir: &Path, service: &str) -> Vec<Record> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The record a line is stored as, written by hand, is exactly serde's of its `Record`.
    #[test]
    fn a_line_is_stored_as_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::new(dir.path().to_path_buf()).unwrap();
        let texts = [
            "plain text",
            "quote \" and back\\slash",
            "tab\tand \u{1b}[31mcolour\u{7}",
            "ünïcödé ✓ 日本",
            "",
            "ERROR: with a level",
        ];
        for text in texts {
            let line = LogLine::output(
                UNIX_EPOCH + std::time::Duration::from_millis(1234),
                "web",
                Stream::Stderr,
                text.to_string(),
            );
            files.write_line(&line).unwrap();
        }
        files.flush_open().unwrap();
        let stored = std::fs::read_to_string(path_of(dir.path(), "web")).unwrap();
        let records: Vec<&str> = stored.lines().collect();
        assert_eq!(records.len(), texts.len());
        for (rec, text) in records.iter().zip(texts) {
            let line = LogLine::output(
                UNIX_EPOCH + std::time::Duration::from_millis(1234),
                "web",
                Stream::Stderr,
                text.to_string(),
            );
            assert_eq!(*rec, serde_json::to_string(&Record::of(&line)).unwrap());
        }
    }

    #[test]
    fn records_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::new(dir.path().to_path_buf()).unwrap();
        let line = LogLine {
            at: UNIX_EPOCH + std::time::Duration::from_millis(1234),
            source: "web".into(),
            stream: Stream::Stderr,
            text: "oops \"quoted\"".into(),
            level: None,
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
}
