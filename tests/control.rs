//! Control of a running stack from another process, end to end with real processes: the CLI
//! verbs (`restart`, `stop`, `start`, `wait`, `logs -f`, `exec`) talk to a foreground `up`
//! through its control socket; the live `ps --json`; a stale socket after `kill -9`; a peer of
//! another uid refused. Assertions read `ps --json` and exit codes.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A stack of three processes in `dir` with its own state folder; `gate` gets ready only once
/// the file `go` exists, `crashy` crashes once the file `crash` exists.
fn write_stack(dir: &Path, port: u16) {
    std::fs::write(
        dir.join("stack.yaml"),
        format!(
            r#"services:
  base:
    command: python3 -m http.server {port} --bind 127.0.0.1
    ports: ["{port}"]
    ready: {{ http: "http://127.0.0.1:{port}/" }}
  app:
    command: sh -c 'echo "app up $$(date +%s%N)"; exec sleep 600'
    depends_on: [base]
    ready: {{ log: "app up" }}
  gate:
    command: sh -c 'while [ ! -f go ]; do sleep 0.05; done; echo gate open; exec sleep 600'
    ready: {{ log: "gate open", timeout: 120s }}
  crashy:
    command: sh -c 'if [ -f crash ]; then echo boom; exit 1; fi; echo fine; exec sleep 600'
    ready: {{ log: fine }}
    restart: on-failure
"#
        ),
    )
    .unwrap();
}

struct Stack {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    project: String,
}

impl Stack {
    fn new(tag: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        write_stack(dir.path(), free_port());
        Stack {
            dir,
            state: tempfile::tempdir().unwrap(),
            project: project(tag),
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![("XDG_STATE_HOME", self.state.path().to_str().unwrap())]
    }

    fn dev(&self, args: &[&str]) -> Output {
        let mut all = vec!["-p", &self.project];
        all.extend_from_slice(args);
        devstack_env(self.dir.path(), &all, &self.env())
    }

    fn up(&self) -> (Running, std::sync::mpsc::Receiver<String>) {
        spawn_up(
            self.dir.path(),
            &["-p", &self.project, "up", "--no-watch"],
            &self.env(),
        )
    }

    fn ps(&self) -> Vec<Value> {
        let out = self.dev(&["ps", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
            .as_array()
            .unwrap()
            .clone()
    }

    fn row(&self, service: &str) -> Value {
        self.ps()
            .into_iter()
            .find(|r| r["service"] == service)
            .unwrap_or_else(|| panic!("no `{service}` in ps"))
    }

    fn socket(&self) -> std::path::PathBuf {
        self.state
            .path()
            .join("devstack")
            .join(&self.project)
            .join("control.sock")
    }
}

/// Waits (polling `ps --json`, with a deadline) until `service` is in `state`.
fn until_state(s: &Stack, service: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let row = s.row(service);
        if row["state"] == state {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "`{service}` not {state} within {within:?}: {row}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn verbs_drive_a_running_stack_from_another_process() {
    let s = Stack::new("verbs");
    let (mut up, _lines) = s.up();

    // `wait` times out while `gate` waits for its file (exit 5, with what it waited for), and
    // succeeds once the file is there.
    // First the devstack itself (it may take a moment to serve under load), then the gate.
    let base = s.dev(&["wait", "base", "--timeout", "60s"]);
    assert_eq!(base.status.code(), Some(0), "{}", stderr(&base));
    let late = s.dev(&["wait", "gate", "--timeout", "1s"]);
    assert_eq!(late.status.code(), Some(5), "{}", stderr(&late));
    assert!(
        stderr(&late).contains("did not become ready")
            && stderr(&late).contains("not ready within 1s"),
        "{}",
        stderr(&late)
    );
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let all = s.dev(&["wait", "--timeout", "60s"]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));

    // The live ps: the kernel's states, pids, the real host port, memory of the group.
    let rows = s.ps();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows {
        assert_eq!(r["state"], "ready", "{r}");
        assert!(r["pid"].as_u64().is_some(), "{r}");
    }
    let base = s.row("base");
    assert!(base["rss_bytes"].as_u64().unwrap() > 1_000_000, "{base}");
    assert_eq!(base["ports"][0]["host_ip"], "127.0.0.1", "{base}");

    // `logs -f --grep` from now on (`-n 0`): a restart's new line shows within a second.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args([
            "-p", &s.project, "logs", "-f", "-n", "0", "app", "--grep", "^app up", "--json",
        ])
        .current_dir(s.dir.path())
        .env("NO_COLOR", "1")
        .envs(s.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let follow_out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(follow_out).lines().map_while(Result::ok) {
            let _ = line_tx.send(l);
        }
    });

    // restart: a new pid, ready again; its dependency untouched.
    let app_pid = s.row("app")["pid"].as_u64().unwrap();
    let base_pid = base["pid"].as_u64().unwrap();
    let restarted = s.dev(&["restart", "app"]);
    assert_eq!(restarted.status.code(), Some(0), "{}", stderr(&restarted));
    let done = Instant::now();
    let app = s.row("app");
    assert_eq!(app["state"], "ready", "{app}");
    assert_ne!(app["pid"].as_u64().unwrap(), app_pid, "a new instance");
    assert_eq!(app["restarts"], 1, "{app}");
    assert_eq!(s.row("base")["pid"].as_u64().unwrap(), base_pid);
    let line = line_rx
        .recv_timeout(Duration::from_secs(1))
        .expect("the new line within a second of the restart");
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["service"], "app", "{line}");
    assert!(
        record["text"].as_str().unwrap().starts_with("app up"),
        "{line}"
    );
    assert!(done.elapsed() < Duration::from_secs(1));
    let _ = follow.kill();
    let _ = follow.wait();

    // stop, then start.
    let stopped = s.dev(&["stop", "app"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    let app = s.row("app");
    assert_eq!(app["state"], "stopped", "{app}");
    assert_eq!(app["running"], false, "{app}");
    assert!(app.get("pid").is_none(), "{app}");
    let started = s.dev(&["start", "app", "--json"]);
    assert_eq!(started.status.code(), Some(0), "{}", stderr(&started));
    let states: Value = serde_json::from_slice(&started.stdout).unwrap();
    assert_eq!(states[0]["service"], "app");
    assert_eq!(states[0]["state"], "ready");

    // `start` of a service whose dependency is stopped starts the dependency first.
    assert_eq!(s.dev(&["stop", "app", "base"]).status.code(), Some(0));
    assert_eq!(s.row("base")["state"], "stopped");
    let both = s.dev(&["start", "app"]);
    assert_eq!(both.status.code(), Some(0), "{}", stderr(&both));
    assert_eq!(s.row("base")["state"], "ready");
    assert_eq!(s.row("app")["state"], "ready");

    // exec for a process: its working folder and environment.
    let exec = s.dev(&[
        "exec",
        "app",
        "--",
        "sh",
        "-c",
        "pwd; echo $PYTHONUNBUFFERED; exit 3",
    ]);
    assert_eq!(
        exec.status.code(),
        Some(3),
        "the command's exit code passes through"
    );
    let text = stdout(&exec);
    assert!(
        text.contains(s.dir.path().canonicalize().unwrap().to_str().unwrap()) && text.contains('1'),
        "{text}"
    );

    // A crash after start-up: `restart` says it did not get ready (exit 5, its last lines), ps
    // shows the crash loop, and the others keep running.
    std::fs::write(s.dir.path().join("crash"), "").unwrap();
    let failed = s.dev(&["restart", "crashy"]);
    assert_eq!(failed.status.code(), Some(5), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("boom"), "{}", stderr(&failed));
    let crashy = until_state(&s, "crashy", "backoff", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut crashy = crashy;
    while crashy["crash_loop"] != true {
        assert!(Instant::now() < deadline, "no crash loop: {crashy}");
        std::thread::sleep(Duration::from_millis(100));
        crashy = s.row("crashy");
    }
    let table = stdout(&s.dev(&["ps"]));
    assert!(table.contains("crash loop"), "{table}");
    assert_eq!(s.row("app")["state"], "ready", "the rest keeps running");

    // Unknown services are refused by the client, with a did-you-mean.
    let typo = s.dev(&["restart", "apq"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        stderr(&typo).contains("did you mean `app`"),
        "{}",
        stderr(&typo)
    );

    interrupt(&up);
    assert_eq!(exit_within(&mut up, Duration::from_secs(30)), Some(130));
    assert!(!s.socket().exists(), "the socket goes with the run");
    let after = s.dev(&["restart", "app"]);
    assert_eq!(after.status.code(), Some(9), "{}", stderr(&after));
}

#[test]
fn a_socket_left_by_a_killed_devstack_is_cleaned_up() {
    let s = Stack::new("stale");
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let (mut up, _lines) = s.up();
    let ready = s.dev(&["wait", "--timeout", "60s"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert!(s.socket().exists());
    up.kill().unwrap();
    up.wait().unwrap();
    assert!(s.socket().exists(), "kill -9 leaves the socket behind");

    let out = s.dev(&["restart", "app"]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "no devstack is running for project `{}`",
            s.project
        )),
        "{}",
        stderr(&out)
    );
    assert!(!s.socket().exists(), "the stale socket is removed");
    // `ps` still answers, from the state file: nothing of the killed run is running.
    let ps = s.dev(&["ps", "--json"]);
    assert_eq!(ps.status.code(), Some(0), "{}", stderr(&ps));
    // The next `up` ends what the killed run left, then serves a new socket.
    let (mut again, _l) = s.up();
    let ready = s.dev(&["wait", "--timeout", "60s"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    interrupt(&again);
    assert_eq!(exit_within(&mut again, Duration::from_secs(30)), Some(130));
}

#[test]
fn another_user_is_refused() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to run a client as `nobody`");
        return;
    }
    let s = Stack::new("uid");
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let (mut up, _lines) = s.up();
    let ready = s.dev(&["wait", "--timeout", "60s"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));

    // The binary where `nobody` can run it; the same state folder.
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("devstack");
    std::fs::copy(env!("CARGO_BIN_EXE_devstack"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [bin_dir.path(), s.dir.path(), s.state.path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(["-p", &s.project, "ps", "--json"])
            .current_dir(s.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", "/nonexistent")
            .env("XDG_STATE_HOME", s.state.path())
            .output()
            .unwrap()
    };
    // The project folder is 0700 and the socket 0600: not even reachable.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.socket()), 0o600);
    assert_eq!(mode(s.socket().parent().unwrap()), 0o700);
    let out = as_nobody();
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stderr(&out).contains("another user"), "{}", stderr(&out));

    // With the folder and socket opened up, the server itself refuses the peer (SO_PEERCRED).
    std::fs::set_permissions(
        s.socket().parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(s.socket(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = as_nobody();
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("uid 65534 may not control"),
        "{}",
        stderr(&out)
    );
    // Positive control: our own user still gets through.
    assert_eq!(s.row("app")["state"], "ready");
    interrupt(&up);
    assert_eq!(exit_within(&mut up, Duration::from_secs(30)), Some(130));
}
