//! The state file: which process groups devstack started, so that a run after devstack was
//! SIGKILLed can end what it left. It must never signal a process it cannot prove is the one it
//! recorded: a pid counts as ours only while its `/proc` start time matches the recorded one.
//!
//! The file is read, changed and rewritten whole, so one task owns it; two writers in the same
//! moment could lose an entry.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{poll_until, unix};

/// How long leftovers get after SIGTERM before SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for SIGKILLed leftovers to be gone.
const LEFTOVER_KILL_WAIT: Duration = Duration::from_secs(5);

/// One process group that devstack started.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    pub pid: u32,
    pub pgid: u32,
    /// Field 22 of `/proc/PID/stat` when it was recorded.
    pub start_time: u64,
    /// For people reading the file and for messages.
    pub command: String,
}

/// A JSON array of [`Entry`], rewritten atomically (a temporary file renamed over it), readable
/// only by its owner since commands may hold secrets.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    /// Every supervisor records and forgets its own process through a clone of this handle; the
    /// read-change-write of the file must not interleave, or one supervisor's entry is lost.
    write_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile {
            path: path.into(),
            write_lock: Default::default(),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no partial state: the file is replaced whole.
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded entries. A missing file is empty (the usual first run); an unreadable or
    /// corrupt one is empty too, with a warning, since it can only describe a past run.
    pub fn load(&self) -> Vec<Entry> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "failed to read the state file, ignoring it");
                return Vec::new();
            }
        };
        match serde_json::from_str(&text) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "the state file is corrupt, ignoring it");
                Vec::new()
            }
        }
    }

    /// Adds `entry`, replacing any entry with the same pid.
    pub fn record(&self, entry: Entry) -> io::Result<()> {
        let _guard = self.locked();
        let mut entries = self.load();
        entries.retain(|e| e.pid != entry.pid);
        entries.push(entry);
        self.write(&entries)
    }

    /// Removes the entry of `pid`, if any.
    pub fn forget(&self, pid: u32) -> io::Result<()> {
        let _guard = self.locked();
        let mut entries = self.load();
        let before = entries.len();
        entries.retain(|e| e.pid != pid);
        if entries.len() == before {
            return Ok(());
        }
        self.write(&entries)
    }

    /// Removes the file.
    pub fn clear(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn write(&self, entries: &[Entry]) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir)?;
        let name = self
            .path
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("state file path `{}` has no file name", self.path.display()),
                )
            })?
            .to_string_lossy();
        // Same folder, so the rename is atomic; the pid keeps two devstacks from sharing it.
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(entries).map_err(io::Error::other)?;
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&json)?;
            // No fsync: it would sit on every start's and stop's path (milliseconds each), and
            // buys nothing. The file serves a devstack that was killed, whose processes live on:
            // the page cache has it then. After a crash of the machine, no process it names
            // runs any more, and a file left empty or stale reads as empty (with a warning).
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            // Best effort: the error that matters is the one being returned.
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// Ends what a previous run left. For each entry whose pid still exists and whose `/proc` start
/// time equals the recorded one (so a pid reused by an unrelated process is never signalled):
/// SIGTERM the group, wait up to 3 s for it to be gone, then SIGKILL it and wait up to 5 s more.
/// All groups are handled together, so many leftovers take no longer than one. Entries whose
/// process is gone or reused are dropped. Then clears the file and returns the entries it ended.
///
/// A group whose leader has exited *and been reaped* cannot be proven ours and is left alone.
pub async fn reap_leftovers(state: &StateFile) -> Vec<Entry> {
    let mut ended = Vec::new();
    for entry in state.load() {
        if is_ours(&entry) && unix::group_alive(entry.pgid) {
            match unix::signal_group(entry.pgid, libc::SIGTERM) {
                Ok(()) => ended.push(entry),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(service = %entry.service, pgid = entry.pgid, error = %e, "failed to stop a process group left by a previous run");
                }
            }
        } else {
            tracing::debug!(service = %entry.service, pid = entry.pid, "leftover process is gone or its pid was reused");
        }
    }
    if !ended.is_empty() {
        let pgids: Vec<u32> = ended.iter().map(|e| e.pgid).collect();
        let all_gone = move || pgids.iter().all(|g| !unix::group_alive(*g));
        if !poll_until(Instant::now() + LEFTOVER_GRACE, all_gone.clone()).await {
            for entry in &ended {
                // Still ours: the recorded leader's pid stays taken (at worst by its zombie)
                // while the check passes, so the pgid cannot have been reused.
                if is_ours(entry) && unix::group_alive(entry.pgid) {
                    tracing::debug!(service = %entry.service, pgid = entry.pgid, "leftover outlived SIGTERM, killing it");
                    if let Err(e) = unix::signal_group(entry.pgid, libc::SIGKILL) {
                        tracing::debug!(pgid = entry.pgid, error = %e, "failed to SIGKILL leftover group");
                    }
                }
            }
            if !poll_until(Instant::now() + LEFTOVER_KILL_WAIT, all_gone).await {
                tracing::warn!("processes left by a previous run still run {LEFTOVER_KILL_WAIT:?} after SIGKILL");
            }
        }
        for entry in &ended {
            tracing::info!(service = %entry.service, pid = entry.pid, "ended a process left by a previous run");
        }
    }
    if let Err(e) = state.clear() {
        tracing::warn!(path = %state.path().display(), error = %e, "failed to clear the state file");
    }
    ended
}

/// Whether `entry` provably names a group devstack started: its leader's pid is still taken (a
/// zombie is enough: it keeps the pid, and so the pgid, from being reused) by the process with
/// the recorded start time, and it led its own group, as `spawn` makes every service do.
fn is_ours(entry: &Entry) -> bool {
    entry.pid == entry.pgid
        && unix::proc_stat(entry.pid).is_some_and(|stat| stat.start_time == entry.start_time)
}
