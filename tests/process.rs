//! The native-process layer against real processes: group stop with grace and SIGKILL, children
//! that misbehave (tests/fixtures/bin/), output pipes, environment, and the state file that ends
//! what a killed devstack left behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devstack::config::Command;
use devstack::process::state::{self, Entry, StateFile};
use devstack::process::{self, Child, SpawnSpec, Stopped};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::{timeout, Instant};

/// Generous: 2 cores, tests in parallel.
const PATIENCE: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bin")
        .join(name);
    path.to_str().expect("fixture path is UTF-8").to_string()
}

fn spec(command: Command) -> SpawnSpec {
    SpawnSpec {
        command,
        cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        env: Vec::new(),
    }
}

fn argv(words: &[&str]) -> Command {
    Command::Argv(words.iter().map(|w| w.to_string()).collect())
}

/// Fields of `/proc/PID/stat` after the command name; field N is `[N - 3]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` is a live process. A zombie has exited: on this machine PID 1 does not reap
/// orphans, so an orphan's zombie keeps its `/proc` entry for good.
fn running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| !matches!(f[0].as_str(), "Z" | "X"))
}

fn start_time(pid: u32) -> u64 {
    stat_fields(pid).expect("process exists")[19]
        .parse()
        .expect("start time is a number")
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A spawned fixture with its output pipes.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// Kept open: dash writes `Terminated` there when a signal ends its foreground `sleep`, and
    /// a closed pipe would kill it with SIGPIPE instead of letting it finish its trap.
    _stderr: ChildStderr,
}

/// Spawns a fixture and waits until it has printed `ready` (its traps are set).
async fn spawn_ready(command: Command) -> Running {
    let mut child = process::spawn(&spec(command)).expect("spawn");
    let (stdout, stderr) = child.take_output();
    let mut stdout = BufReader::new(stdout.expect("stdout is piped"));
    let mut line = String::new();
    let read = timeout(PATIENCE, stdout.read_line(&mut line))
        .await
        .expect("fixture printed `ready` in time")
        .expect("read stdout");
    assert!(read > 0, "fixture exited before it was ready");
    assert_eq!(line, "ready\n");
    Running {
        child,
        stdout,
        _stderr: stderr.expect("stderr is piped"),
    }
}

async fn read_rest(mut stdout: BufReader<ChildStdout>) -> String {
    let mut rest = String::new();
    timeout(PATIENCE, stdout.read_to_string(&mut rest))
        .await
        .expect("stdout reached EOF in time")
        .expect("read stdout");
    rest
}

async fn read_pid_file(path: &Path) -> u32 {
    eventually("the pid file exists", || path.exists()).await;
    std::fs::read_to_string(path)
        .expect("read pid file")
        .trim()
        .parse()
        .expect("pid file holds a pid")
}

#[tokio::test]
async fn stop_kills_a_child_that_ignores_sigterm_after_the_grace() {
    let mut fx = spawn_ready(argv(&[&fixture("ignores-term")])).await;
    let started = Instant::now();
    let stopped = process::stop(&mut fx.child, libc::SIGTERM, Duration::from_millis(500)).await;
    let took = started.elapsed();
    assert_eq!(stopped, Stopped::Killed);
    assert!(
        took >= Duration::from_millis(500),
        "killed before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(!process::group_alive(fx.child.pid));
    assert!(!running(fx.child.pid));
}

#[tokio::test]
async fn stop_ends_the_grandchild_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let mut fx = spawn_ready(argv(&[
        &fixture("forks-grandchild"),
        pid_file.to_str().expect("UTF-8"),
    ]))
    .await;
    let grandchild = read_pid_file(&pid_file).await;
    assert!(running(grandchild), "the grandchild runs before the stop");

    let stopped = process::stop(&mut fx.child, libc::SIGTERM, PATIENCE).await;
    assert_eq!(stopped, Stopped::Exited(128 + libc::SIGTERM as i64));
    assert!(!running(fx.child.pid), "the leader is gone");
    assert!(!running(grandchild), "the grandchild is gone");
    assert!(!process::group_alive(fx.child.pid));
}

#[tokio::test]
async fn stop_waits_for_the_group_not_just_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let mut fx = spawn_ready(argv(&[
        &fixture("forks-grandchild"),
        pid_file.to_str().expect("UTF-8"),
        "--grandchild-ignores-term",
    ]))
    .await;
    let grandchild = read_pid_file(&pid_file).await;

    // The leader exits 0 on SIGTERM at once; its grandchild ignores SIGTERM and keeps the group.
    let started = Instant::now();
    let stopped = process::stop(&mut fx.child, libc::SIGTERM, Duration::from_millis(500)).await;
    let took = started.elapsed();
    assert_eq!(stopped, Stopped::Killed);
    assert!(took >= Duration::from_millis(500), "took {took:?}");
    assert_eq!(
        fx.child.wait().await,
        0,
        "the leader itself exited on SIGTERM"
    );
    assert!(!running(grandchild), "the grandchild is gone");
    assert!(!process::group_alive(fx.child.pid));
}

#[tokio::test]
async fn stop_after_the_leader_exited_still_ends_the_rest_of_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let mut fx = spawn_ready(argv(&[
        &fixture("forks-grandchild"),
        pid_file.to_str().expect("UTF-8"),
        "--leader-exits",
    ]))
    .await;
    let grandchild = read_pid_file(&pid_file).await;
    assert_eq!(
        timeout(PATIENCE, fx.child.wait())
            .await
            .expect("leader exits"),
        0
    );
    assert!(
        process::group_alive(fx.child.pid),
        "the grandchild keeps the group"
    );

    let stopped = process::stop(&mut fx.child, libc::SIGTERM, PATIENCE).await;
    assert_eq!(stopped, Stopped::Exited(0), "the leader's own exit code");
    assert!(!running(grandchild), "the grandchild is gone");
    assert!(!process::group_alive(fx.child.pid));
}

#[tokio::test]
async fn dropping_a_child_kills_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let fx = spawn_ready(argv(&[
        &fixture("forks-grandchild"),
        pid_file.to_str().expect("UTF-8"),
    ]))
    .await;
    let grandchild = read_pid_file(&pid_file).await;
    let leader = fx.child.pid;
    drop(fx.child);
    eventually("the leader is gone", || !running(leader)).await;
    eventually("the grandchild is gone", || !running(grandchild)).await;
    assert!(!process::group_alive(leader));
}

#[tokio::test]
async fn stop_ends_a_graceful_child_quickly() {
    for command in [argv(&["sleep", "300"]), Command::Shell("sleep 300".into())] {
        let mut child = process::spawn(&spec(command.clone())).expect("spawn");
        let started = Instant::now();
        let stopped = process::stop(&mut child, libc::SIGTERM, PATIENCE).await;
        let took = started.elapsed();
        assert_eq!(stopped, Stopped::Exited(143), "{command:?}");
        assert!(took < Duration::from_secs(2), "{command:?} took {took:?}");
        assert!(!process::group_alive(child.pid));
    }
}

#[tokio::test]
async fn stop_sends_the_configured_signal() {
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGHUP, "SIGHUP")] {
        let mut fx = spawn_ready(argv(&[&fixture("reports-signal")])).await;
        let stopped = process::stop(&mut fx.child, signal, PATIENCE).await;
        assert_eq!(stopped, Stopped::Exited(0), "{name}");
        assert_eq!(read_rest(fx.stdout).await, format!("got {name}\n"));
    }
}

#[tokio::test]
async fn stop_signals_reach_a_child_even_when_devstack_ignores_them() {
    // Under `nohup` SIGHUP is ignored, and a background job of a script ignores SIGINT and
    // SIGQUIT; an ignored signal stays ignored across exec, and a shell cannot trap it. The
    // stop-signal test reruns in a child that ignores all three, as devstack would then.
    let mut rerun = std::process::Command::new(std::env::current_exe().expect("test binary"));
    rerun.args(["--exact", "stop_sends_the_configured_signal"]);
    // SAFETY: runs in the forked child before exec and only calls `signal`, which is
    // async-signal-safe.
    unsafe {
        rerun.pre_exec(|| {
            for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
                libc::signal(signal, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    let out = tokio::task::spawn_blocking(move || rerun.output())
        .await
        .expect("the rerun's thread")
        .expect("rerun the test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the rerun failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn kill_ends_the_group_at_once() {
    let mut fx = spawn_ready(argv(&[&fixture("ignores-term")])).await;
    let started = Instant::now();
    assert_eq!(process::kill(&mut fx.child).await, Stopped::Killed);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!process::group_alive(fx.child.pid));
    assert_eq!(fx.child.wait().await, 128 + libc::SIGKILL as i64);
    // A second kill finds the group gone and signals nothing.
    assert_eq!(process::kill(&mut fx.child).await, Stopped::Exited(137));
}

#[tokio::test]
async fn the_last_line_without_a_newline_is_not_lost() {
    let mut fx = spawn_ready(argv(&[&fixture("exits-mid-line")])).await;
    let stopped = process::stop(&mut fx.child, libc::SIGTERM, PATIENCE).await;
    assert_eq!(stopped, Stopped::Exited(3));
    assert_eq!(read_rest(fx.stdout).await, "last words, no newline");
}

#[tokio::test]
async fn wait_reports_exit_codes_and_signals() {
    let cases = [
        (Command::Shell("exit 7".into()), 7),
        (argv(&["sh", "-c", "kill -KILL $$"]), 128 + 9),
        // stdin is /dev/null: `cat` sees EOF at once instead of waiting for a terminal.
        (Command::Shell("cat".into()), 0),
    ];
    for (command, want) in cases {
        let mut child = process::spawn(&spec(command.clone())).expect("spawn");
        let got = timeout(PATIENCE, child.wait()).await.expect("exits");
        assert_eq!(got, want, "{command:?}");
        assert_eq!(
            child.wait().await,
            want,
            "a second wait gives the same code"
        );
    }
}

/// Set in the rerun of `environment_and_working_directory`.
const RERUN_VAR: &str = "DEVSTACK_PROCESS_TEST_RERUN";

#[tokio::test]
async fn environment_and_working_directory() {
    // The default has to be seen from a devstack that lacks PYTHONUNBUFFERED, and this machine's
    // environment already sets it: the test reruns itself in a child without it.
    if std::env::var_os(RERUN_VAR).is_none() {
        let out = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "environment_and_working_directory"])
            .env_remove("PYTHONUNBUFFERED")
            .env(RERUN_VAR, "1")
            .output()
            .await
            .expect("rerun the test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the rerun failed:\n{stdout}\n{stderr}"
        );
        return;
    }
    assert_eq!(std::env::var_os("PYTHONUNBUFFERED"), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let show =
        Command::Shell(r#"printf '%s|%s|%s' "$PYTHONUNBUFFERED" "$EXTRA" "$(pwd -P)""#.into());
    let cwd = dir.path().canonicalize().expect("canonical tempdir");
    let cases = [
        (vec![("EXTRA", "x")], "1|x"),
        (vec![("PYTHONUNBUFFERED", "0"), ("EXTRA", "")], "0|"),
    ];
    for (env, want) in cases {
        let spec = SpawnSpec {
            command: show.clone(),
            cwd: cwd.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut child = process::spawn(&spec).expect("spawn");
        let (stdout, stderr) = child.take_output();
        let (again_out, again_err) = child.take_output();
        assert!(stderr.is_some(), "stderr is piped");
        assert!(
            again_out.is_none() && again_err.is_none(),
            "the pipes are handed out once"
        );
        let out = read_rest(BufReader::new(stdout.expect("piped"))).await;
        assert_eq!(out, format!("{want}|{}", cwd.display()), "{env:?}");
        assert_eq!(child.wait().await, 0);
    }
}

#[tokio::test]
async fn spawn_errors() {
    let empty = process::spawn(&spec(Command::Argv(Vec::new()))).expect_err("empty argv");
    assert_eq!(empty.kind(), std::io::ErrorKind::InvalidInput);
    let missing = process::spawn(&spec(argv(&["/nonexistent/devstack-test-program"])))
        .expect_err("missing program");
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn spawn_records_the_start_time() {
    let mut child = process::spawn(&spec(argv(&["sleep", "300"]))).expect("spawn");
    assert_eq!(child.start_time, start_time(child.pid));
    assert_eq!(process::kill(&mut child).await, Stopped::Killed);
}

fn entry(service: &str, pid: u32, start_time: u64) -> Entry {
    Entry {
        service: service.to_string(),
        pid,
        pgid: pid,
        start_time,
        command: format!("{service} --serve"),
    }
}

/// A group of our own, as a devstack that was SIGKILLed would leave it (std, not tokio: nothing
/// here kills or waits for it on drop).
fn spawn_group(program: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(program)
        .args(args)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn group")
}

#[test]
fn state_file_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = StateFile::new(dir.path().join("run/state.json"));
    assert_eq!(file.load(), Vec::new(), "a missing file is empty");

    file.record(entry("core", 100, 1)).expect("record");
    file.record(entry("ai", 200, 2)).expect("record");
    file.record(entry("core", 100, 3)).expect("record again");
    assert_eq!(
        file.load(),
        vec![entry("ai", 200, 2), entry("core", 100, 3)]
    );

    file.forget(200).expect("forget");
    file.forget(999).expect("forget an unknown pid");
    assert_eq!(file.load(), vec![entry("core", 100, 3)]);

    let names: Vec<_> = std::fs::read_dir(dir.path().join("run"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["state.json"], "no temporary file is left");

    file.clear().expect("clear");
    file.clear().expect("clear a missing file");
    assert_eq!(file.load(), Vec::new());
}

#[test]
fn a_corrupt_state_file_loads_as_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    for junk in ["{not json", "", r#"[{"service": "core"}]"#, "\u{0}\u{1}"] {
        std::fs::write(&path, junk).expect("write");
        let file = StateFile::new(&path);
        assert_eq!(file.load(), Vec::new(), "{junk:?}");
        file.record(entry("core", 100, 1)).expect("record over it");
        assert_eq!(file.load(), vec![entry("core", 100, 1)]);
    }
}

#[tokio::test]
async fn reap_leftovers_ends_recorded_live_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let file = StateFile::new(dir.path().join("state.json"));

    let mut forks = spawn_group(
        &fixture("forks-grandchild"),
        &[pid_file.to_str().expect("UTF-8")],
    );
    let grandchild = read_pid_file(&pid_file).await;
    let mut stubborn = spawn_group(&fixture("ignores-term"), &[]);
    // Not waiting for its trap would let SIGTERM end it and skip the SIGKILL path.
    let stubborn_pid = stubborn.id();
    eventually("ignores-term has set its trap", || {
        sigterm_ignored(stubborn_pid)
    })
    .await;

    let recorded = vec![
        entry("worker", forks.id(), start_time(forks.id())),
        entry("stubborn", stubborn.id(), start_time(stubborn.id())),
    ];
    for e in &recorded {
        file.record(e.clone()).expect("record");
    }

    let started = Instant::now();
    let ended = state::reap_leftovers(&file).await;
    let took = started.elapsed();
    assert_eq!(ended, recorded);
    assert!(
        took >= Duration::from_secs(3),
        "SIGKILL only after the grace: {took:?}"
    );
    for pid in [forks.id(), grandchild, stubborn.id()] {
        assert!(!running(pid), "{pid} is gone");
    }
    assert!(!file.path().exists(), "the state file is cleared");
    forks.wait().expect("reap");
    stubborn.wait().expect("reap");
}

/// Whether the `SigIgn:` mask in /proc/PID/status has SIGTERM's bit.
fn sigterm_ignored(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

#[tokio::test]
async fn reap_leftovers_never_signals_a_process_it_cannot_prove_is_ours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = StateFile::new(dir.path().join("state.json"));
    let unrelated = spawn_group("sleep", &["300"]);
    let pid = unrelated.id();
    let other = spawn_group("sleep", &["300"]);
    let other_pid = other.id();

    // A pid whose process exited and was reaped.
    let mut gone = spawn_group("true", &[]);
    gone.wait().expect("reap");

    for e in [
        // The pid was reused by an unrelated process (different start time).
        entry("reused", pid, start_time(pid) + 1),
        // The right process, but not recorded as the leader of its own group.
        Entry {
            pgid: pid,
            ..entry("not-a-leader", other_pid, start_time(other_pid))
        },
        entry("gone", gone.id(), 1),
    ] {
        file.record(e).expect("record");
    }

    let ended = state::reap_leftovers(&file).await;
    assert_eq!(ended, Vec::new());
    assert!(
        running(pid),
        "the process that reused the pid was not signalled"
    );
    assert!(running(other_pid), "the unproven group was not signalled");
    assert_eq!(file.load(), Vec::new(), "the entries are dropped");

    for mut child in [unrelated, other] {
        child.kill().expect("kill");
        child.wait().expect("reap");
    }
}
