//! `up --wait` with native processes: devstack must stay alive to supervise them, so it starts a
//! copy of itself in the background (its own session, so the terminal's Ctrl-C and hang-up do
//! not reach it), follows its progress through the control socket until the stack is ready,
//! then returns and leaves it running. `down` asks it to stop through the same socket.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Env;
use crate::config::Stack;
use crate::control::client::{self, Connection};
use crate::control::protocol::{Reply, Request};
use crate::engine::ServiceStatus;
use crate::error::Error;
use crate::logs::render::Renderer;

/// Set in the background copy's environment.
pub(super) const DETACHED_ENV: &str = "DEVSTACK_DETACHED";

/// How long a devstack that was asked to stop gets to let go of the project.
const STOP_PATIENCE: Duration = Duration::from_secs(120);

/// Relays the answers to a request until `done` (`Ok` with the services it names), an error
/// (`Err`), or the end of the connection (`Ok(None)`).
fn relay(
    conn: &mut Connection,
    renderer: &Renderer,
    env: &mut Env<'_>,
) -> Result<Option<Vec<ServiceStatus>>, Error> {
    loop {
        match conn.answer()? {
            Some(Reply::Record { record }) => {
                if !record.text.is_empty() {
                    writeln!(env.err, "{}", renderer.render(&record.to_line()))?;
                }
            }
            Some(Reply::Done { services }) => return Ok(Some(services)),
            Some(Reply::Error {
                message, not_ready, ..
            }) => {
                return Err(match not_ready {
                    Some(r) => Error::NotReadyLive(Box::new(r)),
                    None => Error::Engine(message),
                })
            }
            Some(_) => {}
            None => return Ok(None),
        }
    }
}

/// Starts the background copy with the same arguments minus `--wait` and follows it until
/// every service is ready (exit 0, copy left running) or it ends (its exit code and error). If
/// the project already runs, waits for that devstack instead.
pub(super) fn up_detached(
    project: &str,
    state_dir: &Path,
    renderer: Renderer,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    if let Some(pid) = crate::project::lock::holder(state_dir) {
        writeln!(
            env.err,
            "already up: devstack pid {pid} runs project `{project}`; waiting until it is ready"
        )?;
        let mut conn = client::connect(state_dir, project)?;
        conn.send(Request::Wait {
            services: Vec::new(),
            timeout_ms: None,
        })?;
        return match relay(&mut conn, &renderer, env)? {
            Some(_) => Ok(()),
            None => Err(Error::Engine(format!(
                "the devstack of project `{project}` stopped"
            ))),
        };
    }
    std::fs::create_dir_all(state_dir)?;
    let err_path = state_dir.join("devstack.stderr");
    let err_file = std::fs::File::create(&err_path)?;
    let mut child = spawn_copy(err_file)?;
    let ended = |child: &mut std::process::Child, env: &mut Env<'_>| -> Result<(), Error> {
        // It ended before the stack was ready: its own error message is in its stderr.
        let status = child.wait()?;
        let text = std::fs::read_to_string(&err_path).unwrap_or_default();
        env.err.write_all(text.as_bytes())?;
        match status.code() {
            Some(0) | None => Err(Error::Engine(
                "the background devstack ended before the stack was ready".into(),
            )),
            Some(code) => Err(Error::Exit(code)),
        }
    };
    // Its socket answers once it holds the project and has reached the engine.
    let mut conn = loop {
        if child.try_wait()?.is_some() {
            return ended(&mut child, env);
        }
        match client::connect(state_dir, project) {
            Ok(c) if c.pid == child.id() => break c,
            // Not serving yet, or (`Output`) a copy that is ending reset the connection during
            // the greeting: the loop's next turn sees it end, and its exit code tells why.
            Ok(_) | Err(Error::NotRunning { .. } | Error::Engine(_) | Error::Output(_)) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    };
    // A copy that ends right after it answered the connection resets it: like any failed
    // answer, its own exit code and message tell what happened. A wait answered about no service
    // at all is no stack that is ready: the copy ended (or is ending) before it started anything.
    let wait = Request::Wait {
        services: Vec::new(),
        timeout_ms: None,
    };
    let answer = conn
        .send(wait)
        .and_then(|()| relay(&mut conn, &renderer, env))
        .and_then(|done| match done {
            Some(services) if services.is_empty() => Err(Error::Engine(
                "the background devstack answered before it knew any service".into(),
            )),
            done => Ok(done),
        });
    match answer {
        Ok(Some(_)) => {
            writeln!(env.err, "ready; devstack keeps running in the background (pid {}); `devstack down` stops it, `devstack logs -f` follows the log", child.id())?;
            Ok(())
        }
        // During start-up a failure ends the run: the copy stops what it started and exits
        // with the diagnostics.
        Ok(None) => ended(&mut child, env),
        Err(e) => {
            let deadline = Instant::now() + STOP_PATIENCE;
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return ended(&mut child, env);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e)
        }
    }
}

/// Asks the devstack that runs the project to stop (dependents first, as on Ctrl-C), shows its
/// progress, and waits until it has let go of the project. Its pid, if one ran.
pub(super) fn stop_running(
    stack: &Stack,
    state_dir: &Path,
    env: &mut Env<'_>,
) -> Result<Option<u32>, Error> {
    let mut conn = match client::connect(state_dir, &stack.name) {
        Ok(c) => c,
        Err(Error::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let pid = conn.pid;
    conn.send(Request::Shutdown)?;
    let names: Vec<String> = stack.services.keys().cloned().collect();
    let renderer = Renderer {
        width: super::output::log_width(&names),
        color: super::output::color_for(false, env),
        utc_offset: crate::logs::render::local_utc_offset(),
    };
    relay(&mut conn, &renderer, env)?;
    let deadline = Instant::now() + STOP_PATIENCE;
    while crate::project::lock::holder(state_dir).is_some() {
        if Instant::now() >= deadline {
            return Err(Error::Engine(format!(
                "devstack pid {pid} was asked to stop but still runs project `{}` after {}s",
                stack.name,
                STOP_PATIENCE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(pid))
}

/// Starts this devstack again with the same arguments minus `--wait`, in a session of its own,
/// its stderr to `err_file`.
fn spawn_copy(err_file: std::fs::File) -> std::io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--wait").collect();
    let mut cmd = Command::new(exe);
    // Its log goes to the per-service files; `devstack logs` and the socket serve it.
    cmd.args(&args)
        .env(DETACHED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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
    cmd.spawn()
}
