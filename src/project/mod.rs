//! A project's places on this machine: its state folder (per-service log files, the record of
//! the processes it started, task stamps), and in it the project's lock (`lock`) and control
//! socket. Every other module asks here for those paths. Which copy of a project a command
//! acts on (the main one, or an instance per worktree) is `instance`; an instance's recorded
//! host ports are `ports`.
//!
//! The state folder is `$XDG_STATE_HOME/devstack/<project>` (`~/.local/state/…`). When that
//! cannot be written (a read-only file system, a folder this user may not write in), a run keeps
//! working from a folder of this user's alone in `$XDG_RUNTIME_DIR` (or the temporary folder)
//! instead, and `up` says so once ([`fallback_note`]): the system may clear that folder, so log
//! files and the crash-recovery record do not outlive a reboot there. (A disk that fills during
//! a run pauses the log files instead: `logs::files`.)

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub mod instance;
pub mod lock;
pub mod ports;
pub mod thin;

/// The preferred state folder of `project`, whether or not it can be written.
pub fn preferred_state_dir(project: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("devstack").join(project)
}

/// The folder of this user's that takes over when the preferred one cannot be written; none
/// when it is not safely this user's alone.
fn fallback_state_dir(project: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("devstack"))
        .filter(|d| usable(d))
        .unwrap_or_else(|| {
            // SAFETY: getuid cannot fail.
            let own = std::env::temp_dir().join(format!("devstack-{}", unsafe { libc::getuid() }));
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&own);
            own
        });
    let dir = base.join(project);
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    (only_mine(&base) && only_mine(&dir)).then_some(dir)
}

/// Whether `dir` is a real folder (not a symlink) of this user that no one else may enter; a
/// folder of ours that others may enter is made owner-only first. In a folder every user shares
/// (`/tmp`), another user could otherwise have made it, or a link in its place.
fn only_mine(dir: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    // SAFETY: getuid cannot fail.
    if !m.is_dir() || m.uid() != unsafe { libc::getuid() } {
        return false;
    }
    m.mode() & 0o077 == 0
        || std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_ok()
}

/// Whether `dir` exists (made if missing) and this user may write in it. (The control server
/// makes the project's own folder owner-only.)
fn usable(dir: &Path) -> bool {
    let made = std::fs::create_dir_all(dir).is_ok();
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access on a NUL-terminated path; it only reads. W_OK also fails on a read-only
    // file system (EROFS).
    made && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
}

/// Whether `dir` exists and belongs to another user.
fn owned_by_another_user(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail.
    std::fs::metadata(dir).is_ok_and(|m| m.uid() != unsafe { libc::getuid() })
}

/// Where devstack keeps what must outlive one run of a project: the native processes it started
/// (so a later run can end what a killed one left), the per-service log files, the project's
/// lock and control socket. The preferred folder, or the fallback when that cannot be written;
/// every command of the same user finds the same one.
pub fn state_dir(project: &str) -> PathBuf {
    let preferred = preferred_state_dir(project);
    // Another user's folder is theirs: the commands that use it say so ("another user").
    if usable(&preferred) || owned_by_another_user(&preferred) {
        return preferred;
    }
    match fallback_state_dir(project) {
        Some(fallback) if usable(&fallback) => fallback,
        _ => preferred,
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, so a reader never sees half.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The thin instances that use `main`'s services now (a devstack holds their lock), each with
/// the services it shares, by project name.
pub fn thin_users(main: &str) -> Vec<(String, Vec<String>)> {
    known_state_dirs()
        .into_iter()
        .filter(|(p, _)| p != main)
        .filter_map(|(p, dir)| {
            let record = thin::load_record(&dir).filter(|r| r.main == main)?;
            lock::holder(&dir)?;
            Some((p, record.shares.into_iter().map(|s| s.service).collect()))
        })
        .collect()
}

/// Which of `services` running thin instances share: "`service` (by `instance`, …)" for each.
pub fn shared_by_thin(main: &str, services: &[String]) -> Vec<String> {
    let users = thin_users(main);
    services
        .iter()
        .filter_map(|svc| {
            let by: Vec<&str> = users
                .iter()
                .filter(|(_, shared)| shared.contains(svc))
                .map(|(p, _)| p.as_str())
                .collect();
            (!by.is_empty()).then(|| format!("`{svc}` (by {})", by.join(", ")))
        })
        .collect()
}

/// The state folders of every project this user ran on this machine (preferred and fallback
/// places; the preferred one first when both exist), each once, by project name.
pub fn known_state_dirs() -> Vec<(String, PathBuf)> {
    let preferred = preferred_state_dir("x");
    let mut bases: Vec<PathBuf> = preferred
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        bases.push(PathBuf::from(d).join("devstack"));
    }
    // SAFETY: getuid cannot fail.
    bases.push(std::env::temp_dir().join(format!("devstack-{}", unsafe { libc::getuid() })));
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for base in bases {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !out.iter().any(|(n, _)| *n == name) {
                out.push((name, e.path()));
            }
        }
    }
    out.sort();
    out
}

/// The control socket of the project whose state folder is `state_dir` (the running devstack
/// serves it; the CLI verbs, `logs -f` and the MCP server connect to it).
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// One warning for `up` when the state folder is not the preferred one: which folder, why, and
/// what follows.
pub fn fallback_note(project: &str) -> Option<String> {
    let preferred = preferred_state_dir(project);
    let used = state_dir(project);
    if used == preferred {
        if usable(&used) || owned_by_another_user(&used) {
            return None;
        }
        return Some(format!(
            "cannot write the state folder `{}` nor a temporary one: this run keeps no log files, no crash-recovery record and no control socket (`devstack ps`, `logs`, `down` from another terminal will not reach it); make the folder writable or set XDG_STATE_HOME",
            preferred.display()
        ));
    }
    Some(format!(
        "cannot write the state folder `{}`: this run keeps its log files, crash-recovery record and control socket in `{}`, which the system may clear (they do not outlive a reboot); make the folder writable or set XDG_STATE_HOME",
        preferred.display(),
        used.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_made_and_usable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        assert!(usable(&dir));
        assert!(dir.is_dir());
    }

    #[test]
    fn a_path_under_a_file_is_not_usable() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(!usable(&file.join("sub")));
    }
}
