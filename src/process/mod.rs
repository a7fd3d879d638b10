//! Native processes: each service runs as its own process group; stop = signal the group, grace,
//! SIGKILL, wait until the group is gone. This layer knows nothing of services, restart policy or
//! log lines: it spawns, hands out the pipes, waits, and stops.
//!
//! A group, not a pid, is what is signalled and waited for: `sh -c`, npm, gunicorn and Celery all
//! fork, and a worker left behind keeps the port that the next instance needs.
//!
//! Dropping a [`Child`] whose group may still run SIGKILLs the group at once (no grace) and lets
//! tokio reap the leader in the background; call [`stop`] first for a graceful end. Nothing runs
//! when devstack itself is SIGKILLed or leaves through `std::process::exit`: that is what the
//! [`state`] file is for.

pub mod state;
mod unix;

pub(crate) use unix::Pipe;

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::Instant;

use crate::config::Command;

/// How long [`stop`] and [`kill`] wait for a SIGKILLed group before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What to run and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    pub command: Command,
    pub cwd: PathBuf,
    /// Added on top of devstack's own environment.
    pub env: Vec<(String, String)>,
}

/// A spawned process group. Its leader is the process devstack started; `pid` is also the pgid.
#[derive(Debug)]
pub struct Child {
    /// The leader's pid, which is also the group id.
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: with `pid`, names this process across devstack runs.
    pub start_time: u64,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    inner: tokio::process::Child,
    /// The leader's exit code once it has been reaped.
    status: Option<i64>,
    /// Set once the whole group has been seen gone: from then on the pgid may name someone
    /// else's group and must never be signalled again.
    gone: bool,
}

/// `exec LINE` when `LINE` is one simple command the shell can replace itself with: no list,
/// pipeline, background job, subshell, group or substitution (`; & | ( ) { } ` and newlines
/// are left to the shell), no leading `NAME=value`, and not a keyword or a builtin that `exec`
/// cannot run. Otherwise `LINE` as it is. Redirections and quoting stay the shell's.
pub(crate) fn exec_line(line: &str) -> std::borrow::Cow<'_, str> {
    // Keywords, and builtins `exec` cannot run or whose twin on PATH behaves differently
    // (dash's `echo` reads escapes, `/bin/echo` takes `-e`; `[ a == a ]`; a logical `pwd`).
    const SHELL_ONLY: &[&str] = &[
        "!", "[", "[[", "{", "}", ".", ":", "alias", "bg", "break", "builtin", "case", "cd",
        "command", "continue", "declare", "do", "done", "echo", "elif", "else", "esac", "eval",
        "exec", "exit", "export", "false", "fc", "fg", "fi", "for", "function", "getopts", "hash",
        "if", "jobs", "kill", "let", "local", "popd", "printf", "pushd", "pwd", "read", "readonly",
        "return", "select", "set", "shift", "source", "test", "then", "time", "times", "trap",
        "true", "type", "typeset", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
    ];
    let trimmed = line.trim_matches([' ', '\t']);
    let first = trimmed.split([' ', '\t']).next().unwrap_or("");
    let simple = !first.is_empty()
        && !trimmed.contains([';', '&', '|', '(', ')', '{', '}', '`'])
        // sh splits words on spaces and tabs only; anything else stays the shell's to read.
        && !trimmed.chars().any(|c| c.is_whitespace() && c != ' ' && c != '\t')
        // `NAME=value cmd`, `>log cmd`, `-x`: not a program name.
        && !first.contains(['=', '<', '>'])
        && !first.starts_with('-')
        && !SHELL_ONLY.contains(&first);
    if simple {
        format!("exec {trimmed}").into()
    } else {
        line.into()
    }
}

/// The words of `line` when a shell would only split it on blanks and look the first word up
/// on `PATH`: a simple command ([`exec_line`]) with no quoting, expansion, globbing, comment or
/// redirection character in it.
fn plain_words(line: &str) -> Option<Vec<&str>> {
    const SHELL_CHARS: &[char] = &[
        '$', '*', '?', '[', ']', '~', '<', '>', '#', '\\', '\'', '"', '!', '%',
    ];
    let simple = matches!(exec_line(line), std::borrow::Cow::Owned(_));
    (simple && !line.contains(SHELL_CHARS))
        .then(|| line.split([' ', '\t']).filter(|w| !w.is_empty()).collect())
}

/// How [`stop`] or [`kill`] ended a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The whole group ended within the grace; the leader's exit code (128 + signal if a signal
    /// ended it, -1 if its status could not be read).
    Exited(i64),
    /// The group needed SIGKILL.
    Killed,
}

/// Starts `spec` as the leader of a new process group.
///
/// A shell string runs as `/bin/sh -c <string>`; a simple command (see [`exec_line`]) as `exec`
/// of it, so the program itself is the leader, its pid the one shown, and no shell waits beside
/// it (Debian's dash forks even the last command of `-c`). Argv runs directly. `PYTHONUNBUFFERED=1` is set unless `spec.env` sets it, so Python
/// services' lines arrive as they are printed. stdin is `/dev/null`; stdout and stderr are piped.
/// Every signal starts at its default disposition, whatever devstack inherited as ignored.
pub fn spawn(spec: &SpawnSpec) -> io::Result<Child> {
    let mut cmd = match &spec.command {
        Command::Shell(line) => match plain_words(line) {
            // Nothing for a shell to do: run it as the shell would, without the shell.
            Some(words) => {
                let mut cmd = tokio::process::Command::new(words[0]);
                cmd.args(&words[1..]);
                // As the shell would have set it (set first: `spec.env` may say otherwise).
                if spec.cwd.is_absolute() {
                    cmd.env("PWD", &spec.cwd);
                }
                cmd
            }
            None => {
                let mut cmd = tokio::process::Command::new("/bin/sh");
                cmd.arg("-c").arg(exec_line(line).as_ref());
                cmd
            }
        },
        Command::Argv(argv) => {
            let (program, args) = argv.split_first().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "the command is empty")
            })?;
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args);
            cmd
        }
    };
    cmd.current_dir(&spec.cwd)
        // Set first so that a value in `spec.env` replaces it.
        .env("PYTHONUNBUFFERED", "1")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Our own Drop kills the whole group; tokio's would only kill the leader.
        .kill_on_drop(false);
    // Every signal at its default in the service. Only when devstack ignores one (`nohup`, a
    // background job of a script) does that need a step after a fork; otherwise the spawn
    // takes `posix_spawn`, with no copy of devstack's address space before the exec.
    if unix::ignores_signals() {
        unix::default_signals_in_child(&mut cmd);
    }
    let mut inner = cmd.spawn()?;
    let pid = inner
        .id()
        .expect("a child that has not been waited for has a pid");
    let start_time = match unix::start_time(pid) {
        Ok(t) => t,
        Err(e) => {
            // Not reaped yet, so `pid` is still this group's: safe to signal.
            if let Err(kill_err) = unix::signal_group(pid, libc::SIGKILL) {
                tracing::warn!(pid, error = %kill_err, "failed to kill a process whose start time could not be read");
            }
            return Err(e);
        }
    };
    // The command itself is not logged: interpolated values may be secrets.
    tracing::debug!(pid, cwd = %spec.cwd.display(), "spawned process group");
    Ok(Child {
        pid,
        start_time,
        stdout: inner.stdout.take(),
        stderr: inner.stderr.take(),
        inner,
        status: None,
        gone: false,
    })
}

impl Child {
    /// The output pipes, once; later calls return `None`s.
    pub fn take_output(&mut self) -> (Option<ChildStdout>, Option<ChildStderr>) {
        (self.stdout.take(), self.stderr.take())
    }

    /// The output pipes as plain descriptors, out of the runtime's I/O driver, once; later
    /// calls return `None`s. They come in blocking mode: a reader on a runtime thread makes them a
    /// [`Pipe`] first (the service pumps watch a pipe only while they wait for it).
    /// Where one cannot be taken out (never seen), it is closed, and the service's next write
    /// to it fails.
    pub fn take_output_fds(&mut self) -> (Option<OwnedFd>, Option<OwnedFd>) {
        let (out, err) = self.take_output();
        let plain = |fd: io::Result<OwnedFd>| {
            fd.inspect_err(|e| tracing::warn!(pid = self.pid, error = %e, "cannot read an output pipe of the process"))
                .ok()
        };
        (
            out.and_then(|p| plain(p.into_owned_fd())),
            err.and_then(|p| plain(p.into_owned_fd())),
        )
    }

    /// Waits for the group leader (only the leader: the rest of the group may outlive it) and
    /// returns its exit code, or 128 + signal when a signal ended it, or -1 if its status could
    /// not be read. Cancel safe; after the first return, returns the same code at once.
    pub async fn wait(&mut self) -> i64 {
        if let Some(code) = self.status {
            return code;
        }
        let code = match self.inner.wait().await {
            Ok(status) => exit_code(status),
            Err(e) => {
                tracing::warn!(pid = self.pid, error = %e, "failed to wait for process");
                -1
            }
        };
        self.status = Some(code);
        code
    }

    /// Whether the group may still run. Once the leader is reaped the pid may be reused as soon
    /// as the rest of the group is gone, so the group is checked before every signal after that.
    fn may_run(&self) -> bool {
        !self.gone && (self.status.is_none() || unix::own_group_alive(self.pid))
    }

    fn signal(&self, signal: i32) {
        if !self.may_run() {
            return;
        }
        match unix::signal_group(self.pid, signal) {
            Ok(()) => {}
            // Ended on its own meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pgid = self.pid, signal, error = %e, "failed to signal process group")
            }
        }
    }

    /// Reaps the leader, then waits until no process of the group runs, both by `deadline`.
    async fn wait_gone(&mut self, deadline: Instant) -> bool {
        if self.gone {
            return true;
        }
        if self.status.is_none()
            && tokio::time::timeout_at(deadline, self.wait())
                .await
                .is_err()
        {
            return false;
        }
        let pgid = self.pid;
        self.gone = poll_until(deadline, move || !unix::own_group_alive(pgid)).await;
        self.gone
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.may_run() {
            return;
        }
        tracing::debug!(
            pgid = self.pid,
            "killing the process group of a dropped child"
        );
        // An unreaped leader is reaped by tokio's orphan queue, since kill_on_drop is off.
        self.signal(libc::SIGKILL);
    }
}

/// Sends `signal` to the whole group, waits up to `grace` for every process of it to be gone
/// (leader reaped and no other member running), then SIGKILLs the group and waits again, up to
/// 5 s more (after which it returns `Killed` with a warning). Returns only when the group is
/// gone, so a restart never overlaps the old instance.
///
/// Not cancel safe in effect: dropping the future midway leaves the group signalled but perhaps
/// running until the [`Child`] itself is dropped.
pub async fn stop(child: &mut Child, signal: i32, grace: Duration) -> Stopped {
    child.signal(signal);
    if child.wait_gone(Instant::now() + grace).await {
        return Stopped::Exited(child.status.unwrap_or(-1));
    }
    tracing::debug!(
        pgid = child.pid,
        ?grace,
        "process group outlived its grace, killing it"
    );
    kill_and_wait(child).await;
    Stopped::Killed
}

/// SIGKILLs the group now and waits until it is gone (up to 5 s, then a warning). `Exited` if
/// the group had already ended on its own.
pub async fn kill(child: &mut Child) -> Stopped {
    if !child.may_run() && child.wait_gone(Instant::now()).await {
        return Stopped::Exited(child.status.unwrap_or(-1));
    }
    kill_and_wait(child).await;
    Stopped::Killed
}

async fn kill_and_wait(child: &mut Child) {
    child.signal(libc::SIGKILL);
    if !child.wait_gone(Instant::now() + KILL_WAIT).await {
        tracing::warn!(
            pgid = child.pid,
            "process group still has processes {KILL_WAIT:?} after SIGKILL (stuck in the kernel?)"
        );
    }
}

/// The environment variable that marks every process of a service, whatever it does with its
/// group or session: `<project>/<service>`.
pub const MARK_VAR: &str = "DEVSTACK_MARK";

pub fn mark(project: &str, service: &str) -> String {
    format!("{project}/{service}")
}

/// Makes devstack the subreaper of its descendants (Linux); a warning where it cannot.
pub fn become_subreaper() {
    if let Err(e) = unix::set_child_subreaper() {
        tracing::warn!("cannot become the subreaper of services' processes: {e}");
    }
}

/// The regular files devstack's own standard output and error are redirected to.
pub fn own_output_files() -> Vec<std::path::PathBuf> {
    unix::own_output_files()
}

/// Reaps zombies of orphaned descendants (see [`become_subreaper`]). Blocking (`/proc`).
pub fn reap_orphans() -> usize {
    unix::reap_orphans()
}

/// Running processes marked with a mark that `matches`, with their marks. Blocking (`/proc`).
pub fn marked(matches: &dyn Fn(&str) -> bool) -> Vec<(u32, String)> {
    unix::marked(MARK_VAR, matches)
}

/// Ends every running process marked `mark` except `except`: `signal`, up to `grace`, then
/// SIGKILL. These are what a killed devstack left (any process on the machine may be one).
/// Returns how many there were. Blocking: run it off the async workers.
pub fn end_marked(mark: &str, signal: i32, grace: Duration, except: &[u32]) -> usize {
    end_found(mark, signal, grace, except, &|| unix::pids())
}

/// [`end_marked`] for what escaped a service's group stop (`setsid`, double-forked daemons)
/// while this devstack runs it. As their subreaper, devstack has them among its descendants:
/// only those are read, not every process on the machine (this runs on every stop, before the
/// next start). Without the subreaper, every process.
pub fn end_escaped(mark: &str, signal: i32, grace: Duration, except: &[u32]) -> usize {
    let candidates = || {
        unix::is_subreaper()
            .then(unix::descendants)
            .flatten()
            .unwrap_or_else(unix::pids)
    };
    end_found(mark, signal, grace, except, &candidates)
}

fn end_found(
    mark: &str,
    signal: i32,
    grace: Duration,
    except: &[u32],
    candidates: &dyn Fn() -> Vec<u32>,
) -> usize {
    let find = || -> Vec<u32> {
        unix::marked_among(candidates(), MARK_VAR, &|v| v == mark)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !except.contains(p))
            .collect()
    };
    let found = find();
    if found.is_empty() {
        return 0;
    }
    for pid in &found {
        unix::signal_pid(*pid, signal);
    }
    let deadline = std::time::Instant::now() + grace;
    let mut left = find();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        unix::reap_orphans();
        left = find();
    }
    for pid in &left {
        unix::signal_pid(*pid, libc::SIGKILL);
    }
    let deadline = std::time::Instant::now() + KILL_WAIT;
    while !find().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        unix::reap_orphans();
    }
    unix::reap_orphans();
    found.len()
}

/// CPU ticks and resident bytes of each of these process groups (one pass over `/proc`;
/// blocking: call it off the async workers), and the clock ticks per second.
pub fn group_usage(pgids: &[u32]) -> (std::collections::HashMap<u32, (u64, u64)>, u64) {
    (unix::group_usage(pgids), unix::ticks_per_second())
}

/// Whether process group `pgid` still has a running (non-zombie) process.
pub fn group_alive(pgid: u32) -> bool {
    unix::group_alive(pgid)
}

fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => -1,
    }
}

/// Polls `done` until it holds or `deadline` passes: fast at first, backing off to 50 ms. Each
/// check runs on tokio's blocking pool: the checks read `/proc`, which must not stall the async
/// workers.
pub(crate) async fn poll_until(
    deadline: Instant,
    done: impl Fn() -> bool + Send + Sync + 'static,
) -> bool {
    let done = std::sync::Arc::new(done);
    let mut interval = Duration::from_millis(2);
    loop {
        let check = std::sync::Arc::clone(&done);
        // A check that panicked has answered nothing: treat it as not done yet.
        if tokio::task::spawn_blocking(move || check())
            .await
            .unwrap_or(false)
        {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep_until((now + interval).min(deadline)).await;
        interval = (interval * 2).min(Duration::from_millis(50));
    }
}

/// The start time (field 22 of `/proc/PID/stat`) of a live process: with the pid, it names one
/// process for good, since pids are reused but never with the same start time.
pub fn start_time_of(pid: u32) -> Option<u64> {
    unix::start_time(pid).ok()
}

#[cfg(test)]
mod tests {
    use super::{exec_line, plain_words};

    #[test]
    fn a_simple_command_is_execed_and_the_rest_left_to_the_shell() {
        let cases: &[(&str, &str)] = &[
            ("python3 app.py", "exec python3 app.py"),
            (
                "  ../../.venv/bin/python -m flask run --port 5000 ",
                "exec ../../.venv/bin/python -m flask run --port 5000",
            ),
            ("npm run dev > out.log", "exec npm run dev > out.log"),
            ("cat \"$HOME\" 'a b'", "exec cat \"$HOME\" 'a b'"),
            // Lists, pipelines, jobs, subshells, groups, substitutions: the shell's.
            ("echo up && exec sleep 9", "echo up && exec sleep 9"),
            ("a; b", "a; b"),
            ("a | b", "a | b"),
            ("sleep 9 &", "sleep 9 &"),
            ("(cd x; make)", "(cd x; make)"),
            ("echo $(date)", "echo $(date)"),
            ("echo `date`", "echo `date`"),
            ("a\nb", "a\nb"),
            ("cmd 2>&1", "cmd 2>&1"),
            (">log FOO=1 cmd", ">log FOO=1 cmd"),
            ("-x cmd", "-x cmd"),
            ("echo a\\tb", "echo a\\tb"),
            ("command -v ls", "command -v ls"),
            ("[ a = a ]", "[ a = a ]"),
            ("pwd", "pwd"),
            ("cmd a\u{a0}b", "cmd a\u{a0}b"),
            ("cmd\ra", "cmd\ra"),
            // What `exec` cannot run.
            ("FOO=1 cmd", "FOO=1 cmd"),
            ("exec cmd", "exec cmd"),
            (": nothing", ": nothing"),
            ("cd src", "cd src"),
            ("if true", "if true"),
            ("", ""),
        ];
        for (line, want) in cases {
            assert_eq!(exec_line(line), *want, "{line:?}");
        }
    }

    #[test]
    fn plain_words_run_without_a_shell() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("python3 app.py", Some(&["python3", "app.py"])),
            (
                " ../../.venv/bin/python -m flask run  --port 5000",
                Some(&[
                    "../../.venv/bin/python",
                    "-m",
                    "flask",
                    "run",
                    "--port",
                    "5000",
                ]),
            ),
            ("npm run dev", Some(&["npm", "run", "dev"])),
            ("node\tserver.js", Some(&["node", "server.js"])),
            // Quoting, expansion, globbing, redirection, comments: the shell's.
            ("echo 'a b'", None),
            ("echo \"$HOME\"", None),
            ("echo $HOME", None),
            ("ls *.py", None),
            ("cat ~/x", None),
            ("npm run dev > out.log", None),
            ("serve # the api", None),
            ("echo a\\ b", None),
            ("a && b", None),
            ("FOO=1 cmd", None),
            ("cd src", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(plain_words(line).as_deref(), *want, "{line:?}");
        }
    }
}
