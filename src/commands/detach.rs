//! `up --wait` with native processes: devstack must stay alive to supervise them, so it starts a
//! copy of itself in the background (its own session, so the terminal's Ctrl-C and hang-up do
//! not reach it), shows its progress until the stack is ready, then returns and leaves it
//! running. `down` (or Ctrl-C-free `kill`) stops that copy, which stops what it runs.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Env;
use crate::error::Error;
use crate::logs::files::Record;
use crate::logs::render::Renderer;
use crate::process::state::{Entry, StateFile};

/// Set in the background copy's environment.
pub const DETACHED_ENV: &str = "DEVSTACK_DETACHED";

fn daemon_file(state_dir: &Path) -> StateFile {
    StateFile::new(state_dir.join("daemon.json"))
}

/// The background devstack of a project, if one runs (pid and start time both match).
pub fn running_daemon(state_dir: &Path) -> Option<Entry> {
    daemon_file(state_dir)
        .load()
        .into_iter()
        .find(|e| crate::process::start_time_of(e.pid) == Some(e.start_time))
}

/// Records this process as the project's background devstack (called by the copy itself).
pub fn record_self(state_dir: &Path) {
    let pid = std::process::id();
    let Some(start_time) = crate::process::start_time_of(pid) else {
        return;
    };
    let file = daemon_file(state_dir);
    let _ = file.clear();
    if let Err(e) = file.record(Entry {
        service: "devstack".into(),
        pid,
        pgid: pid,
        start_time,
        command: "devstack up (detached)".into(),
    }) {
        tracing::warn!("cannot record the background devstack: {e}");
    }
}

/// Stops the project's background devstack, if any: SIGTERM, then wait (it stops its processes
/// and containers in order) up to `patience`, then SIGKILL. Returns its pid if there was one.
pub fn stop_daemon(state_dir: &Path, patience: Duration) -> Option<u32> {
    let e = running_daemon(state_dir)?;
    // SAFETY: the pid and its start time were just matched: this is our background devstack.
    unsafe { libc::kill(e.pid as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + patience;
    while std::time::Instant::now() < deadline {
        if crate::process::start_time_of(e.pid) != Some(e.start_time) {
            let _ = daemon_file(state_dir).clear();
            return Some(e.pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; it ignored SIGTERM for too long.
    unsafe { libc::kill(e.pid as i32, libc::SIGKILL) };
    let _ = daemon_file(state_dir).clear();
    Some(e.pid)
}

/// Starts the background copy with the same arguments minus `--wait` and relays its log until
/// every service is ready (exit 0, copy left running) or it ends (its exit code and error).
pub fn up_detached(state_dir: &Path, renderer: Renderer, env: &mut Env<'_>) -> Result<(), Error> {
    if let Some(e) = running_daemon(state_dir) {
        writeln!(env.err, "already up: a background devstack runs this project (pid {}); `devstack down` stops it", e.pid)?;
        return Ok(());
    }
    if let Some(pid) = super::project_lock::holder(state_dir) {
        return Err(Error::AlreadyUp {
            project: state_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pid,
        });
    }
    std::fs::create_dir_all(state_dir)?;
    let err_path = state_dir.join("devstack.stderr");
    let err_file = std::fs::File::create(&err_path)?;
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--wait")
        .chain(["--json".to_string()])
        .collect();
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .env(DETACHED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_file);
    // SAFETY: setsid is async-signal-safe; it makes the copy a session leader, away from the
    // terminal's signals.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("stdout was piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(r) = serde_json::from_str::<Record>(&line) else {
            continue;
        };
        if !r.text.is_empty() {
            writeln!(env.err, "{}", renderer.render(&r.to_line()))?;
        }
        // The typed event says the stack is ready, not the text.
        if matches!(r.event, Some(crate::event::StackEvent::AllReady { .. })) {
            writeln!(env.err, "ready; devstack keeps running in the background (pid {}); `devstack down` stops it, `devstack logs -f` follows the log", child.id())?;
            return Ok(());
        }
    }
    // It ended before the stack was ready: its error message is in its stderr.
    let status = child.wait()?;
    let text = std::fs::read_to_string(&err_path).unwrap_or_default();
    env.err.write_all(text.as_bytes())?;
    match status.code() {
        Some(0) | None => Err(Error::Engine(
            "the background devstack ended before the stack was ready".into(),
        )),
        Some(code) => Err(Error::Exit(code)),
    }
}
