//! The live engine end to end, on real processes (no Docker): each repro of the engine issue as
//! a test. Assertions read `up --json` events (typed), never padded terminal text.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    project: String,
}

impl Env {
    fn new(tag: &str, stack: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stack.yaml"), stack).unwrap();
        Env {
            dir,
            state: tempfile::tempdir().unwrap(),
            project: project(tag),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state_var(&self) -> String {
        self.state.path().display().to_string()
    }

    /// `devstack -p P up --json ARGS` in the background; JSON events on the receiver.
    fn up(&self, args: &[&str]) -> (Running, Events) {
        let state = self.state_var();
        let mut all = vec!["-p", &self.project, "up", "--json"];
        all.extend_from_slice(args);
        let (child, rx) = spawn_up(self.path(), &all, &[("XDG_STATE_HOME", &state)]);
        (
            child,
            Events {
                rx,
                seen: Vec::new(),
                raw: Vec::new(),
            },
        )
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let state = self.state_var();
        let mut all = vec!["-p", self.project.as_str()];
        all.extend_from_slice(args);
        devstack_env(self.path(), &all, &[("XDG_STATE_HOME", &state)])
    }
}

/// The JSON lines of a running devstack, parsed; other lines are kept as raw text.
struct Events {
    rx: Receiver<String>,
    seen: Vec<Value>,
    raw: Vec<String>,
}

impl Events {
    fn next_until(&mut self, deadline: Instant) -> Option<Value> {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.rx.recv_timeout(left.min(Duration::from_millis(100))) else {
                continue;
            };
            self.raw.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                self.seen.push(v.clone());
                return Some(v);
            }
        }
        None
    }

    /// The first event (from now on) for which `pred` holds.
    fn wait(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        while let Some(v) = self.next_until(deadline) {
            if pred(&v) {
                return v;
            }
        }
        panic!("no {what} within {within:?}; got:\n{}", self.raw.join("\n"));
    }

    /// An event of `kind` about `service` (`None`: about the stack).
    fn wait_event(&mut self, kind: &str, service: Option<&str>, within: Duration) -> Value {
        self.wait(&format!("`{kind}` event of {service:?}"), within, |v| {
            is(v, kind, service)
        })
    }

    /// Everything that arrives within `window` (to show that something did NOT happen).
    fn during(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(v) = self.next_until(deadline) {
            out.push(v);
        }
        out
    }
}

fn is(v: &Value, kind: &str, service: Option<&str>) -> bool {
    v["event"]["type"] == kind && service.is_none_or(|s| v["service"] == s)
}

fn pid_of(started: &Value) -> u32 {
    started["event"]["pid"].as_u64().expect("a pid") as u32
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Live (non-zombie) processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
                && alive(*pid)
        })
        .collect()
}

fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {within:?}");
}

const SECS_30: Duration = Duration::from_secs(30);

#[test]
fn a_reload_that_breaks_readiness_fails_only_that_service_and_the_next_change_retries() {
    let port = free_port();
    let env = Env::new(
        "reload-fail",
        &format!(
            "services:\n  web:\n    command: python3 web.py\n    ports: [\"{port}\"]\n    ready: {{ http: \"http://127.0.0.1:{port}/\", timeout: 3s }}\n    watch: {{ paths: [web.py], debounce: 100ms }}\n  other:\n    command: python3 -c \"import time; print('other up', flush=True); time.sleep(600)\"\n    watch: false\n    ready: {{ log: other up }}\n"
        ),
    );
    let serving = format!("import http.server as h\nh.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()\n");
    fs::write(env.path().join("web.py"), &serving).unwrap();
    let (mut child, mut ev) = env.up(&[]);
    ev.wait_event("all_ready", None, SECS_30);
    let other = ev
        .seen
        .iter()
        .find(|v| is(v, "started", Some("other")))
        .map(pid_of)
        .unwrap();

    // Starts but never answers.
    fs::write(env.path().join("web.py"), "import time\ntime.sleep(600)\n").unwrap();
    ev.wait_event("restarting", Some("web"), Duration::from_secs(10));
    let not_ready = ev.wait_event("not_ready", Some("web"), Duration::from_secs(15));
    assert!(
        not_ready["event"]["reason"]
            .as_str()
            .unwrap()
            .contains("not ready after 3s"),
        "{not_ready}"
    );
    // The stack keeps running: no teardown follows, `other` keeps its process.
    let after = ev.during(Duration::from_millis(1500));
    assert!(
        !after
            .iter()
            .any(|v| is(v, "stopped", Some("other")) || is(v, "stopped", Some("web"))),
        "{after:?}"
    );
    assert!(child.try_wait().unwrap().is_none(), "devstack still runs");
    assert!(alive(other));

    // Fixing the file retries it: ready again (the positive control).
    fs::write(env.path().join("web.py"), &serving).unwrap();
    ev.wait_event("ready", Some("web"), SECS_30);
    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_30), Some(130));
    assert!(!alive(other));
}

#[test]
fn an_exit_without_the_log_line_is_never_ready() {
    let env = Env::new(
        "log-eof",
        "services:\n  quiet:\n    command: \"true\"\n    ready: { log: never printed }\n    watch: false\n",
    );
    let (mut child, mut ev) = env.up(&[]);
    let code = exit_within(&mut child, SECS_30);
    ev.during(Duration::from_millis(300));
    assert_eq!(code, Some(5), "{}", ev.raw.join("\n"));
    assert!(ev.seen.iter().any(|v| is(v, "exited", Some("quiet"))));
    assert!(!ev.seen.iter().any(|v| is(v, "ready", Some("quiet"))));
}

#[test]
fn a_detached_setsid_child_neither_jams_a_restart_nor_outlives_a_stop() {
    let env = Env::new(
        "setsid",
        "services:\n  jam:\n    command: \"setsid sleep 3001 & exec sleep 3002\"\n    stop_grace_period: 2s\n    watch: { debounce: 100ms }\n",
    );
    let (mut child, mut ev) = env.up(&[]);
    let first = pid_of(&ev.wait_event("started", Some("jam"), SECS_30));
    ev.wait_event("all_ready", None, SECS_30);
    wait_until("the setsid child runs", Duration::from_secs(5), || {
        processes_with("sleep 3001").len() == 1
    });

    fs::write(env.path().join("touch.txt"), "x").unwrap();
    ev.wait_event("restarting", Some("jam"), Duration::from_secs(10));
    let second = pid_of(&ev.wait_event("started", Some("jam"), Duration::from_secs(10)));
    assert_ne!(first, second);
    assert!(!alive(first));
    wait_until(
        "one copy of the setsid child",
        Duration::from_secs(5),
        || processes_with("sleep 3001").len() == 1,
    );

    let t = Instant::now();
    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_30), Some(130));
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "one Ctrl-C is enough: {:?}",
        t.elapsed()
    );
    ev.during(Duration::from_millis(200));
    assert!(
        ev.seen.iter().any(|v| is(v, "stopped", Some("jam"))),
        "{}",
        ev.raw.join("\n")
    );
    assert!(
        processes_with("sleep 3001").is_empty(),
        "the setsid child is gone"
    );
    assert!(processes_with("sleep 3002").is_empty());
}

const DAEMON: &str = r#"
import os, socket, sys, time
port, pidfile = int(sys.argv[1]), sys.argv[2]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fd = os.open(os.devnull, os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            os._exit(1)
        s.listen(16)
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
        conns = []
        while True:
            c, _ = s.accept()
            conns.append(c)
    os._exit(0)
print("launched daemon", flush=True)
time.sleep(600)
"#;

#[test]
fn a_double_forked_daemon_is_ended_on_restart_and_on_stop() {
    let port = free_port();
    let env = Env::new(
        "daemon",
        &format!(
            "services:\n  d:\n    command: python3 daemon.py {port} pids.txt\n    ports: [\"{port}\"]\n    ready: {{ tcp: {port} }}\n    watch: {{ paths: [daemon.py], debounce: 100ms }}\n"
        ),
    );
    fs::write(env.path().join("daemon.py"), DAEMON).unwrap();
    let pids = |env: &Env| -> Vec<u32> {
        fs::read_to_string(env.path().join("pids.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    let (mut child, mut ev) = env.up(&[]);
    ev.wait_event("all_ready", None, SECS_30);
    wait_until("the daemon wrote its pid", Duration::from_secs(5), || {
        pids(&env).len() == 1
    });
    let old = pids(&env)[0];
    assert!(alive(old));

    fs::write(
        env.path().join("daemon.py"),
        format!("{DAEMON}\n# edited\n"),
    )
    .unwrap();
    ev.wait_event("restarting", Some("d"), Duration::from_secs(10));
    ev.wait_event("ready", Some("d"), SECS_30);
    assert!(!alive(old), "the old daemon is gone after the restart");
    wait_until(
        "the new daemon bound the port",
        Duration::from_secs(5),
        || pids(&env).len() == 2,
    );
    let new = pids(&env)[1];
    assert!(alive(new), "the new instance's daemon holds the port");

    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_30), Some(130));
    assert!(!alive(new), "the daemon is gone after Ctrl-C");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "its port is free"
    );
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let env = Env::new(
        "second-ctrl-c",
        &format!(
            "services:\n  stuck:\n    command: {}\n    stop_grace_period: 20s\n    watch: false\n    ready: {{ log: ready }}\n",
            fixtures().join("bin/ignores-term").display()
        ),
    );
    let (mut child, mut ev) = env.up(&[]);
    ev.wait_event("all_ready", None, SECS_30);
    interrupt(&child);
    ev.wait("the stopping note", Duration::from_secs(5), |v| {
        is(v, "note", None) && v["text"].as_str().unwrap_or("").starts_with("stopping")
    });
    let t = Instant::now();
    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_30), Some(130));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "killed at once: {:?}",
        t.elapsed()
    );
    ev.during(Duration::from_millis(200));
    let stopped = ev
        .seen
        .iter()
        .find(|v| is(v, "stopped", Some("stuck")))
        .expect("stopped");
    assert_eq!(stopped["event"]["how"], "killed");
}

#[test]
fn after_kill_9_the_next_up_ends_the_leftover_that_holds_its_port() {
    let port = free_port();
    let env = Env::new(
        "kill9-port",
        &format!(
            "services:\n  web:\n    command: python3 -m http.server {port} --bind 127.0.0.1\n    ports: [\"{port}\"]\n    ready: {{ http: \"http://127.0.0.1:{port}/\" }}\n    watch: false\n"
        ),
    );
    let (mut first, mut ev) = env.up(&[]);
    let leftover = pid_of(&ev.wait_event("started", Some("web"), SECS_30));
    ev.wait_event("all_ready", None, SECS_30);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        alive(leftover),
        "SIGKILL of devstack leaves its service behind"
    );

    let (mut second, mut ev) = env.up(&[]);
    ev.wait_event("all_ready", None, SECS_30);
    assert!(
        ev.seen.iter().any(|v| is(v, "note", Some("web"))
            && v["text"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("ended pid {leftover}"))),
        "{}",
        ev.raw.join("\n")
    );
    assert!(!alive(leftover));
    interrupt(&second);
    assert_eq!(exit_within(&mut second, SECS_30), Some(130));
}

#[test]
fn one_devstack_per_project_and_down_asks_the_running_one_to_stop() {
    let port = free_port();
    let env = Env::new(
        "one-per-project",
        &format!(
            "services:\n  web:\n    command: python3 -m http.server {port} --bind 127.0.0.1\n    ports: [\"{port}\"]\n    ready: {{ http: \"http://127.0.0.1:{port}/\" }}\n    watch: false\n  worker:\n    command: python3 -c \"import time; print('working', flush=True); time.sleep(600)\"\n    depends_on: [web]\n    restart: on-failure\n    watch: false\n"
        ),
    );
    let (mut first, mut ev) = env.up(&[]);
    ev.wait_event("all_ready", None, SECS_30);
    let web = ev
        .seen
        .iter()
        .find(|v| is(v, "started", Some("web")))
        .map(pid_of)
        .unwrap();
    let worker = ev
        .seen
        .iter()
        .find(|v| is(v, "started", Some("worker")))
        .map(pid_of)
        .unwrap();

    let second = env.run(&["up"]);
    assert_eq!(second.status.code(), Some(7), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!("is already up (devstack pid {})", first.id())),
        "{}",
        stderr(&second)
    );
    assert!(
        alive(web) && alive(worker),
        "the refused `up` touched nothing"
    );

    let down = env.run(&["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert!(stderr(&down).contains(&format!(
        "stopped the running devstack (pid {})",
        first.id()
    )));
    assert_eq!(exit_within(&mut first, SECS_30), Some(130));
    ev.during(Duration::from_millis(200));
    // Dependents first, then the dependency; nothing restarted behind anyone's back.
    let order: Vec<&str> = ev
        .seen
        .iter()
        .filter(|v| is(v, "stopped", None))
        .filter_map(|v| v["service"].as_str())
        .collect();
    assert_eq!(order, ["worker", "web"], "{}", ev.raw.join("\n"));
    assert!(!ev.seen.iter().any(|v| is(v, "backoff", None)));
    assert!(!alive(web) && !alive(worker));
}

#[test]
fn secret_values_never_show_in_devstacks_own_output() {
    let secret = "tok-3f9a7c1e55";
    let env = Env::new(
        "secrets",
        "env_file: .env\nservices:\n  app:\n    command: python3 -c \"import time; print('app up', flush=True); time.sleep(600)\" --token ${API_TOKEN}\n    ready: { log: app up }\n    watch: false\n  probe:\n    command: python3 -c \"import time; time.sleep(600)\"\n    ports: [\"9\"]\n    ready: { http: \"http://127.0.0.1:9/health?token=${API_TOKEN}\", timeout: 1s }\n    watch: false\n",
    );
    fs::write(env.path().join(".env"), format!("API_TOKEN={secret}\n")).unwrap();

    let config = env.run(&["config"]);
    assert_eq!(config.status.code(), Some(0), "{}", stderr(&config));
    assert!(!stdout(&config).contains(secret), "{}", stdout(&config));
    assert!(
        stdout(&config).contains("--token ****"),
        "{}",
        stdout(&config)
    );

    let (mut child, mut ev) = env.up(&[]);
    assert_eq!(exit_within(&mut child, SECS_30), Some(5));
    ev.during(Duration::from_millis(300));
    let all = ev.raw.join("\n");
    let started = ev
        .seen
        .iter()
        .find(|v| is(v, "started", Some("app")))
        .expect(&all);
    assert!(
        started["event"]["detail"]
            .as_str()
            .unwrap()
            .contains("--token ****"),
        "{started}"
    );
    assert!(
        all.contains("token=****"),
        "the not-ready diagnostics say which probe: {all}"
    );
    assert!(!all.contains(secret), "{all}");
    for entry in fs::read_dir(
        env.state
            .path()
            .join("devstack")
            .join(&env.project)
            .join("logs"),
    )
    .unwrap()
    {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn a_missing_program_fails_the_wait_at_once_without_retrying() {
    let env = Env::new(
        "missing-program",
        // `exec` hides the program from the check before start (tests/tasks.rs has that one):
        // this is the exit 127 of a command the shell cannot find.
        "services:\n  app:\n    command: exec ../../.venv/bin/python app.py\n    restart: on-failure\n    ready: { log: never }\n    watch: false\n",
    );
    let t = Instant::now();
    let (mut child, mut ev) = env.up(&[]);
    assert_eq!(exit_within(&mut child, SECS_30), Some(5));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    ev.during(Duration::from_millis(200));
    let all = ev.raw.join("\n");
    assert!(
        all.contains("exited with code 127: its command was not found"),
        "{all}"
    );
    assert!(
        !ev.seen.iter().any(|v| is(v, "backoff", None)),
        "no restart: {all}"
    );
}

#[test]
fn a_crash_loop_during_startup_fails_the_wait() {
    let env = Env::new(
        "startup-crash-loop",
        "services:\n  flaky:\n    command: sh -c 'echo trying; exit 1'\n    restart: on-failure\n    ready: { log: never, timeout: 60s }\n    watch: false\n",
    );
    let t = Instant::now();
    let (mut child, mut ev) = env.up(&[]);
    assert_eq!(exit_within(&mut child, SECS_30), Some(5));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    ev.during(Duration::from_millis(200));
    assert!(
        ev.raw
            .iter()
            .any(|l| l.contains("crash loop: exited 3 times")),
        "{}",
        ev.raw.join("\n")
    );
    assert_eq!(
        ev.seen
            .iter()
            .filter(|v| is(v, "backoff", Some("flaky")))
            .count(),
        2
    );
}

#[test]
fn a_dependency_restart_restarts_dependents_with_restart_true() {
    let env = Env::new(
        "restart-true",
        "services:\n  db:\n    command: python3 db.py\n    ready: { log: db up }\n    watch: { paths: [db.py], debounce: 100ms }\n  api:\n    command: python3 -c \"import time; print('api up', flush=True); time.sleep(600)\"\n    depends_on: { db: { condition: ready, restart: true } }\n    ready: { log: api up }\n    watch: false\n  plain:\n    command: python3 -c \"import time; print('plain up', flush=True); time.sleep(600)\"\n    depends_on: [db]\n    ready: { log: plain up }\n    watch: false\n",
    );
    let db = "import time\nprint('db up', flush=True)\ntime.sleep(600)\n";
    fs::write(env.path().join("db.py"), db).unwrap();
    let (mut child, mut ev) = env.up(&[]);
    ev.wait_event("all_ready", None, SECS_30);
    fs::write(env.path().join("db.py"), format!("{db}# edited\n")).unwrap();
    ev.wait_event("ready", Some("db"), SECS_30);
    let r = ev.wait_event("restarting", Some("api"), Duration::from_secs(10));
    assert_eq!(r["event"]["reason"], "`db` restarted");
    ev.wait_event("ready", Some("api"), SECS_30);
    assert!(!ev.seen.iter().any(|v| is(v, "restarting", Some("plain"))));
    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_30), Some(130));
}

#[test]
/// A service that writes into its own watched folder at every start (its output redirected
/// there): a restart loop, named, then ignored. (devstack's own output, `up > up.log`, is
/// ignored from the start: tests/processes.rs.)
fn a_file_written_at_every_start_is_detected_as_a_restart_loop() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  app:\n    command: python3 app.py\n    ready: { log: app up }\n    watch: { debounce: 100ms }\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("app.py"),
        "import time\nopen('run.log', 'a').write('started\\n')\nprint('app up', flush=True)\ntime.sleep(600)\n",
    )
    .unwrap();
    let log = state.path().join("up.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["-p", &project("redirect-loop"), "up"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", state.path())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = || fs::read_to_string(&log).unwrap_or_default();
    let restarts = |t: &str| t.lines().filter(|l| l.contains("restarting:")).count();
    wait_until("the loop is named", Duration::from_secs(60), || {
        read().contains("restart loop: `run.log` changed before each of the last")
    });
    let text = read();
    assert!(
        text.contains("add `run.log` to `watch.ignore` of `app`"),
        "{text}"
    );
    // It stops looping ...
    std::thread::sleep(Duration::from_secs(2));
    let settled = restarts(&read());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(restarts(&read()), settled, "no more restarts:\n{}", read());
    // ... and a real edit still restarts it (the positive control).
    fs::write(
        dir.path().join("app.py"),
        "import time\nopen('run.log', 'a').write('started\\n')\nprint('app up', flush=True)\ntime.sleep(601)\n",
    )
    .unwrap();
    wait_until("an edit restarts it", Duration::from_secs(10), || {
        read().contains("restarting: app.py changed")
    });
    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_30), Some(130));
}
