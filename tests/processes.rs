//! Native processes through the built binary: hot reload, restarts, stops, crash loops, the last
//! line, bounded memory under a flood, and recovery after devstack itself is SIGKILLed. No Docker
//! engine is needed: these stacks have no containers.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

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

    fn up(&self) -> (Running, std::sync::mpsc::Receiver<String>) {
        let state = self.state.path().display().to_string();
        spawn_up(
            self.path(),
            &["-p", &self.project, "up"],
            &[("XDG_STATE_HOME", &state)],
        )
    }
}

fn pid_alive(pid: u32) -> bool {
    // A zombie has exited; only a live process counts.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
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

/// Lines that arrive within `window` (a bounded wait used to show that something did NOT happen).
fn lines_within(rx: &std::sync::mpsc::Receiver<String>, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Ok(l) = rx.recv_timeout(left) {
            out.push(l);
        }
    }
    out
}

const APP: &str = "import time\nprint('app started', flush=True)\nwhile True:\n    time.sleep(1)\n";

#[test]
fn an_edit_restarts_the_service_and_an_ignored_file_does_not() {
    let env = Env::new(
        "reload",
        "services:\n  app:\n    command: python3 app.py\n    watch: { ignore: [\"*.log\"], debounce: 100ms }\n    ready: { log: \"app started\" }\n",
    );
    fs::write(env.path().join("app.py"), APP).unwrap();
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(30),
        &mut seen,
    );

    fs::write(env.path().join("app.py"), format!("{APP}# edited\n")).unwrap();
    wait_for(
        &rx,
        "app      ▸ restarting: app.py changed",
        Duration::from_secs(10),
        &mut seen,
    );
    wait_for(
        &rx,
        "app      ▸ ready in",
        Duration::from_secs(10),
        &mut seen,
    );

    fs::write(env.path().join("debug.log"), "noise\n").unwrap();
    fs::create_dir_all(env.path().join("__pycache__")).unwrap();
    fs::write(env.path().join("__pycache__/app.cpython-311.pyc"), "x").unwrap();
    let later = lines_within(&rx, Duration::from_millis(1500));
    assert!(
        !later.iter().any(|l| l.contains("restarting")),
        "ignored files restarted it:\n{}",
        later.join("\n")
    );

    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

#[test]
fn a_burst_of_a_thousand_changes_gives_one_restart() {
    let env = Env::new(
        "burst",
        "services:\n  app:\n    command: python3 app.py\n    watch: { debounce: 200ms }\n    ready: { log: \"app started\" }\n",
    );
    fs::write(env.path().join("app.py"), APP).unwrap();
    fs::create_dir_all(env.path().join("gen")).unwrap();
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(30),
        &mut seen,
    );
    for i in 0..1000 {
        fs::write(env.path().join(format!("gen/f{i}.txt")), format!("{i}")).unwrap();
    }
    wait_for(
        &rx,
        "app      ▸ restarting:",
        Duration::from_secs(10),
        &mut seen,
    );
    wait_for(
        &rx,
        "app      ▸ ready in",
        Duration::from_secs(10),
        &mut seen,
    );
    let later = lines_within(&rx, Duration::from_millis(1500));
    let restarts = seen
        .iter()
        .chain(&later)
        .filter(|l| l.contains("▸ restarting"))
        .count();
    assert_eq!(restarts, 1, "{}\n{}", seen.join("\n"), later.join("\n"));
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let env = Env::new(
        "stubborn",
        "services:\n  stubborn:\n    command: [python3, -c, \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)\"]\n    stop_grace_period: 1s\n    watch: false\n    ready: { log: up }\n",
    );
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(30),
        &mut seen,
    );
    let started = Instant::now();
    interrupt(&child);
    wait_for(
        &rx,
        "stubborn ▸ killed after the 1s grace period",
        Duration::from_secs(10),
        &mut seen,
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the grace period"
    );
    assert_eq!(exit_within(&mut child, Duration::from_secs(10)), Some(130));
}

#[test]
fn grandchildren_are_gone_after_a_restart_and_after_a_stop() {
    let env = Env::new(
        "grandchild",
        "services:\n  app:\n    command: sh -c 'sleep 300 & echo $! > gc.pid; echo forked; wait'\n    watch: { paths: [src], debounce: 100ms }\n    ready: { log: forked }\n",
    );
    fs::create_dir_all(env.path().join("src")).unwrap();
    let read_pid = || {
        fs::read_to_string(env.path().join("gc.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(30),
        &mut seen,
    );
    let first = read_pid().expect("the grandchild wrote its pid");
    assert!(pid_alive(first));

    fs::write(env.path().join("src/x.txt"), "change").unwrap();
    wait_for(
        &rx,
        "app      ▸ ready in",
        Duration::from_secs(10),
        &mut seen,
    );
    assert!(
        !pid_alive(first),
        "the old grandchild is gone after a restart"
    );
    let second = read_pid().unwrap();
    assert_ne!(first, second);

    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
    assert!(!pid_alive(second), "the grandchild is gone after a stop");
}

#[test]
fn a_crash_loop_backs_off_while_the_other_services_keep_running() {
    let env = Env::new(
        "crash",
        // `crashy` starts once `steady` is ready, so its crashes come after start-up (during
        // start-up a crash loop ends the run; a slow `steady` under load made that a race).
        "services:\n  crashy:\n    command: sh -c 'echo about to crash; exit 7'\n    restart: on-failure\n    watch: false\n    depends_on: [steady]\n  steady:\n    command: python3 -c \"import time; print('steady up', flush=True); time.sleep(600)\"\n    watch: false\n    ready: { log: steady up }\n",
    );
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "steady   ▸ ready in",
        Duration::from_secs(30),
        &mut seen,
    );
    wait_for(
        &rx,
        "crashy   ▸ crash loop: exited",
        Duration::from_secs(20),
        &mut seen,
    );
    wait_for(
        &rx,
        "crashy   ▸   about to crash",
        Duration::from_secs(5),
        &mut seen,
    );
    // Backoff: the gaps between starts grow.
    let starts: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("crashy   ▸ restarting in"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        seen.iter().any(|l| l.contains("restarting in 100ms"))
            && seen.iter().any(|l| l.contains("restarting in 200ms")),
        "{}",
        seen.join("\n")
    );
    assert!(!starts.is_empty());
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("steady   ▸ exited") || l.contains("steady   ▸ stopped")),
        "steady kept running"
    );
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

#[test]
fn the_last_line_before_exit_is_kept() {
    let env = Env::new(
        "lastline",
        "services:\n  once:\n    command: [sh, -c, \"printf 'first\\nlast words without newline'; exit 3\"]\n    watch: false\n",
    );
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "once     ▸ exited with code 3",
        Duration::from_secs(20),
        &mut seen,
    );
    let last = seen
        .iter()
        .position(|l| l.ends_with("once     | last words without newline"))
        .expect("last line present");
    let exit = seen
        .iter()
        .position(|l| l.contains("exited with code 3"))
        .unwrap();
    assert!(
        last < exit,
        "the output comes before the exit event:\n{}",
        seen.join("\n")
    );
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_flood_of_100_mb_keeps_memory_bounded() {
    // 100 MiB in 1 KiB lines, as fast as Python can write them.
    let env = Env::new(
        "flood",
        "services:\n  flood:\n    command: [python3, -c, \"import sys\\nline = 'x' * 1023 + '\\\\n'\\nw = sys.stdout.write\\nfor _ in range(102400): w(line)\\nsys.stdout.flush()\\nprint('flood done', flush=True)\"]\n    watch: false\n",
    );
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    // Each line is read as it comes; the receiver only keeps what wait_for collects.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    let mut count = 0usize;
    loop {
        assert!(
            Instant::now() < deadline,
            "flood did not finish; {count} lines"
        );
        peak = peak.max(peak_rss_kib(child.id()));
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("flood    ▸ exited with code 0") => break,
            Ok(l) => {
                count += 1;
                if l.contains("flood done") {
                    seen.push(l);
                }
            }
            Err(_) => {}
        }
    }
    peak = peak.max(peak_rss_kib(child.id()));
    assert!(count >= 102_400, "every line arrived: {count}");
    assert!(!seen.is_empty(), "the last line arrived");
    assert!(
        peak < 64 * 1024,
        "devstack's peak RSS was {peak} KiB for 100 MiB of output"
    );
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

#[test]
fn after_kill_9_the_next_up_ends_what_the_first_left_and_nothing_is_doubled() {
    let env = Env::new(
        "kill9",
        "services:\n  app:\n    command: sh -c 'echo $$$$ >> pids; sleep 300 & wait'\n    watch: false\n    ready: { log: never-printed, timeout: 10m }\n",
    );
    let (mut first, rx) = env.up();
    let pids = env.path().join("pids");
    // "started" is logged once the process is recorded in the state file.
    wait_for(
        &rx,
        "app      ▸ started (pid",
        Duration::from_secs(30),
        &mut Vec::new(),
    );
    wait_until(
        "the first instance started",
        Duration::from_secs(30),
        || pids.exists(),
    );
    let old: u32 = fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    first.kill().unwrap(); // SIGKILL: devstack gets no chance to clean up
    let _ = first.wait();
    drop(rx);
    assert!(pid_alive(old), "the orphan outlives a SIGKILLed devstack");

    let (mut second, rx) = env.up();
    let mut seen = Vec::new();
    // The group leader is the `sh -c` devstack started; the pid written is a process of its group.
    wait_for(
        &rx,
        "left running by a previous run",
        Duration::from_secs(30),
        &mut seen,
    );
    wait_until(
        "the second instance started",
        Duration::from_secs(30),
        || fs::read_to_string(&pids).unwrap().lines().count() == 2,
    );
    assert!(!pid_alive(old), "nothing of the first run survives");
    let new: u32 = fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(new));
    interrupt(&second);
    assert_eq!(exit_within(&mut second, Duration::from_secs(20)), Some(130));
    assert!(!pid_alive(new));
}

#[test]
fn logs_shows_what_up_showed_from_the_per_service_files() {
    let env = Env::new(
        "logs",
        "services:\n  talker:\n    command: [sh, -c, \"for i in 1 2 3 4 5; do echo line $$i; done; sleep 300\"]\n    watch: false\n    ready: { log: line 5 }\n",
    );
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(30),
        &mut seen,
    );
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));

    let state = env.state.path().display().to_string();
    let out = devstack_env(
        env.path(),
        &["-p", &env.project, "logs", "talker", "-n", "2"],
        &[("XDG_STATE_HOME", &state)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.iter().all(|l| l.contains(" talker ")), "{text}");
    assert!(
        lines[1].contains("▸ stopped"),
        "the last line of the run is its stop: {text}"
    );
    let out = devstack_env(
        env.path(),
        &["-p", &env.project, "logs", "--json", "talker"],
        &[("XDG_STATE_HOME", &state)],
    );
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = records
        .iter()
        .filter(|r| r["stream"] == "stdout")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["line 1", "line 2", "line 3", "line 4", "line 5"]);
    assert!(records
        .iter()
        .any(|r| r["stream"] == "event" && r["text"].as_str().unwrap().starts_with("ready in")));
    assert!(
        records
            .windows(2)
            .all(|w| w[0]["t"].as_u64() <= w[1]["t"].as_u64()),
        "ordered by time"
    );
}

#[test]
fn up_wait_leaves_processes_running_under_a_background_devstack_until_down() {
    let env = Env::new(
        "detach",
        "services:\n  web:\n    command: python3 -m http.server ${port:web:8000} --bind 127.0.0.1\n    ports: [\"8000\"]\n    ready: { http: \"http://127.0.0.1:${port:web:8000}/\" }\n",
    );
    let state = env.state.path().display().to_string();
    let vars = [("XDG_STATE_HOME", state.as_str())];
    let dev = |args: &[&str]| {
        let mut all = vec!["-p", env.project.as_str()];
        all.extend_from_slice(args);
        devstack_env(env.path(), &all, &vars)
    };
    let out = dev(&["up", "--wait", "--free-ports"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("web      ▸ ready in"),
        "progress is shown: {err}"
    );
    let daemon: u32 = err
        .split("in the background (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect(&err);
    assert!(pid_alive(daemon));

    let ps: serde_json::Value = serde_json::from_slice(&dev(&["ps", "--json"]).stdout).unwrap();
    let pid = ps[0]["pid"].as_u64().expect("web runs") as u32;
    assert_eq!(ps[0]["state"], "ready", "the live ps: {ps}");

    let again = dev(&["up", "--wait"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "a second `up --wait` is fine: {}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("already up"));
    let fg = dev(&["up"]);
    assert_eq!(
        fg.status.code(),
        Some(7),
        "a second supervisor is refused: {}",
        stderr(&fg)
    );

    let down = dev(&["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert!(stderr(&down).contains(&format!("stopped the running devstack (pid {daemon})")));
    assert!(
        !pid_alive(daemon) && !pid_alive(pid),
        "nothing left running"
    );
}
