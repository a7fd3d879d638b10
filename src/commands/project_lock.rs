//! One devstack per project: `up` holds an exclusive `flock` on `<state>/up.lock` for as long
//! as it runs, with its pid written inside. The kernel drops the lock when the process dies,
//! however it dies, so a stale lock cannot exist.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub struct ProjectLock {
    _file: File,
}

fn open(dir: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("up.lock"))
}

fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a file descriptor we own; no memory is touched.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Takes the project's lock, or says which devstack holds it.
pub fn acquire(dir: &Path) -> std::io::Result<Result<ProjectLock, u32>> {
    let mut f = open(dir)?;
    if !try_lock(&f) {
        return Ok(Err(read_pid(&mut f).unwrap_or(0)));
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    f.flush()?;
    Ok(Ok(ProjectLock { _file: f }))
}

fn read_pid(f: &mut File) -> Option<u32> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// The pid of the devstack that runs this project, if one does.
pub fn holder(dir: &Path) -> Option<u32> {
    let mut f = open(dir).ok()?;
    if try_lock(&f) {
        // Nobody holds it; ours drops with `f`.
        return None;
    }
    Some(read_pid(&mut f).unwrap_or(0))
}
