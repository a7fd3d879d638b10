//! One devstack per project: `up` holds an exclusive open-file-description lock (`F_OFD_SETLK`)
//! on `<state>/up.lock` for as long as it runs, with its pid written inside. The kernel drops the
//! lock when the process dies, however it dies, so a stale lock cannot exist. Asking who holds it
//! (`F_OFD_GETLK`) never takes it: a `flock` probe did, for an instant, and an `up` starting in
//! that instant took the probing client for another devstack.

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

fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value, filled in below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end, however long
    fl
}

fn try_lock(f: &File) -> bool {
    let fl = whole_file(libc::F_WRLCK);
    // SAFETY: fcntl on a file descriptor we own, with a valid `flock`.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) == 0 }
}

/// Whether someone holds the lock; asks without taking it.
fn is_locked(f: &File) -> bool {
    let mut fl = whole_file(libc::F_WRLCK);
    // SAFETY: fcntl on a file descriptor we own, with a valid `flock` it may write.
    let asked = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) == 0 };
    asked && fl.l_type != libc::F_UNLCK as libc::c_short
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
    if !is_locked(&f) {
        return None;
    }
    Some(read_pid(&mut f).unwrap_or(0))
}
