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

/// A member of the group that outlives its leader (a grandchild that ignores SIGTERM, orphaned
/// to devstack when the shell dies) keeps the old instance alive: the restart waits the grace
/// period and SIGKILLs the group, as the stop event says, before the new instance starts.
/// (devstack looks for the group's members among its own descendants only.)
#[test]
fn a_grandchild_that_outlives_its_leader_is_waited_for_then_killed() {
    let env = Env::new(
        "orphan",
        "services:\n  app:\n    command: sh -c '(trap \"\" TERM; exec sleep 300) & echo $! > gc.pid; echo forked; wait'\n    stop_grace_period: 1s\n    watch: false\n    ready: { log: forked }\n",
    );
    let state = env.state.path().display().to_string();
    let (mut child, rx) = spawn_up(
        env.path(),
        &["-p", &env.project, "up", "--json"],
        &[("XDG_STATE_HOME", &state)],
    );
    let event = |want: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the event within 30 s");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if want(&v) {
                    return v;
                }
            }
        }
    };
    event(&|v| v["event"]["type"] == "all_ready");
    let first: u32 = fs::read_to_string(env.path().join("gc.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let restarted = Instant::now();
    let out = devstack_env(
        env.path(),
        &["-p", &env.project, "restart", "app"],
        &[("XDG_STATE_HOME", &state)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stopped = event(&|v| v["event"]["type"] == "stopped" && v["service"] == "app");
    assert!(
        stopped["event"]["how"]
            .as_str()
            .is_some_and(|h| h.contains("killed after the 1s grace period")),
        "{stopped}"
    );
    assert!(
        restarted.elapsed() >= Duration::from_secs(1),
        "waited the grace period"
    );
    assert!(!pid_alive(first), "the orphaned grandchild is gone");
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

/// A simple shell command runs as the program itself (the shell `exec`s it): the pid `ps`
/// gives is the program's. A list stays under its shell.
#[test]
fn a_simple_command_is_its_own_process_a_list_keeps_its_shell() {
    let env = Env::new(
        "execed",
        "services:\n  plain:\n    command: sleep 300\n    watch: false\n  quoted:\n    command: sleep '302'\n    watch: false\n  list:\n    command: sleep 301; true\n    watch: false\n",
    );
    let state = env.state.path().display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["-p", env.project.as_str()];
        all.extend_from_slice(args);
        devstack_env(env.path(), &all, &[("XDG_STATE_HOME", &state)])
    };
    let up = run(&["up", "--wait"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let ps: serde_json::Value = serde_json::from_slice(&run(&["ps", "--json"]).stdout).unwrap();
    let comm = |service: &str| {
        let row = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == service);
        let pid = row.and_then(|r| r["pid"].as_u64());
        let pid = pid.unwrap_or_else(|| panic!("a pid for {service}: {ps}"));
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim()
            .to_string()
    };
    // Plain words run without a shell; quoted ones through `sh -c 'exec …'`; a list under sh.
    let (plain, quoted, list) = (comm("plain"), comm("quoted"), comm("list"));
    let down = run(&["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(plain, "sleep");
    assert_eq!(quoted, "sleep");
    assert_eq!(list, "sh");
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
    // The shell creates the file (`>>`) before `echo` writes the pid into it.
    let first_pid = || {
        fs::read_to_string(&pids)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
    };
    wait_until(
        "the first instance started",
        Duration::from_secs(30),
        || first_pid().is_some(),
    );
    let old: u32 = first_pid().unwrap();
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

/// `up --wait` with only processes, one of whose ports another program holds: exit 4 with the
/// holder named, every time (it used to race with the background copy's refusal and say
/// "ready"). Five runs, since the fault was a race.
#[test]
fn up_wait_with_a_held_port_fails_every_time() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let env = Env::new(
        "heldproc",
        &format!(
            "services:\n  app: {{ command: [sleep, \"1000\"], ports: [\"{port}\"], watch: false }}\n"
        ),
    );
    let state = env.state.path().display().to_string();
    for run in 0..5 {
        let out = devstack_env(
            env.path(),
            &["-p", &env.project, "up", "--wait"],
            &[("XDG_STATE_HOME", &state)],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "run {run}: {err}");
        assert!(
            err.contains(&format!(
                "host port 127.0.0.1:{port} for `app` is taken by pid {}",
                std::process::id()
            )),
            "run {run}: {err}"
        );
        assert!(!err.contains("ready;"), "run {run}: {err}");
    }
    // The positive control: with the port free, the same stack gets ready.
    drop(held);
    let out = devstack_env(
        env.path(),
        &["-p", &env.project, "up", "--wait"],
        &[("XDG_STATE_HOME", &state)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let down = devstack_env(
        env.path(),
        &["-p", &env.project, "down"],
        &[("XDG_STATE_HOME", &state)],
    );
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
}

/// `/proc/PID/stat`'s state and parent, if the process exists.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Zombies whose parent is `parent`.
fn zombies_of(parent: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| state_and_parent(*p) == Some(('Z', parent)))
        .collect()
}

/// devstack reaps each orphan as it exits: a double-forking service, a crash-looping one and one
/// that never reaps its own children run side by side, and every zombie whose parent is devstack
/// is gone within moments (it used to wait for a sweep every 2 s). The hoarder's own zombies
/// (their parent is the hoarder) are the positive control that zombies are seen at all.
#[test]
fn devstack_never_holds_a_zombie() {
    let env = Env::new(
        "zombie",
        r#"services:
  forker:
    command: [python3, -c, "import os,time\nwhile True:\n    pid = os.fork()\n    if pid == 0:\n        if os.fork() == 0:\n            time.sleep(0.05)\n            open('grandchildren', 'a').write('x')\n            os._exit(0)\n        os._exit(0)\n    os.waitpid(pid, 0)\n    time.sleep(0.05)\n"]
    watch: false
  flaky:
    command: "sleep 0.2; exit 1"
    restart: always
    watch: false
  hoarder:
    command: [python3, -c, "import os,time\nfor _ in range(20):\n    if os.fork() == 0:\n        os._exit(0)\nprint('hoarded', os.getpid(), flush=True)\ntime.sleep(600)\n"]
    watch: false
"#,
    );
    let state = env.state.path().display().to_string();
    let (mut child, rx) = spawn_up(
        env.path(),
        &["-p", &env.project, "up", "--json"],
        &[("XDG_STATE_HOME", &state)],
    );
    let devstack_pid = child.id();
    let mut hoarder: Option<u32> = None;
    let mut flaky_starts = 0;
    // Each zombie of devstack's, with when it was first seen.
    let mut seen: std::collections::HashMap<u32, Instant> = std::collections::HashMap::new();
    let mut lingering: Vec<(u32, Duration)> = Vec::new();
    let grandchildren = || fs::read(env.path().join("grandchildren")).map_or(0, |b| b.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    while flaky_starts < 6 || grandchildren() < 40 {
        assert!(
            Instant::now() < deadline,
            "the workers did not run: {flaky_starts} starts of flaky, {} grandchildren",
            grandchildren()
        );
        while let Ok(line) = rx.try_recv() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let event = &v["event"];
            if event["type"] == "started" && event["service"] == "flaky" {
                flaky_starts += 1;
            }
            if let Some(pid) = v["text"].as_str().and_then(|t| t.strip_prefix("hoarded ")) {
                hoarder = pid.trim().parse().ok();
            }
        }
        let now = Instant::now();
        let zombies = zombies_of(devstack_pid);
        for z in &zombies {
            seen.entry(*z).or_insert(now);
        }
        // A zombie no longer seen was reaped; one seen for long was not.
        seen.retain(|z, since| {
            let age = now - *since;
            if zombies.contains(z) && age > Duration::from_millis(500) {
                lingering.push((*z, age));
                return false;
            }
            zombies.contains(z)
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        lingering.is_empty(),
        "zombies of devstack (pid {devstack_pid}) left unreaped: {lingering:?}"
    );
    let hoarder = hoarder.expect("the hoarder said its pid");
    assert_eq!(
        zombies_of(hoarder).len(),
        20,
        "the hoarder's own children are zombies, and are seen as such"
    );
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}

/// A file system mounted for one test (root only), unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    /// A tmpfs at `at` with these mount options, or `None` when this user cannot mount.
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        fs::create_dir_all(at).unwrap();
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            return None;
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// With the state folder on a read-only file system, `up` still starts and runs the stack: one
/// warning names the folder and where its files went instead, and `ps`, `logs` and `down` from
/// another command reach the run.
#[test]
fn a_read_only_state_folder_does_not_stop_the_stack() {
    let env = Env::new(
        "rostate",
        "services:\n  app:\n    command: [python3, -c, \"import time\\nprint('app up', flush=True)\\ntime.sleep(600)\"]\n    watch: false\n    ready: { log: app up }\n",
    );
    let ro = env.state.path().join("ro");
    let runtime = tempfile::tempdir().unwrap();
    let _mount = match Mount::tmpfs(&ro, "ro,size=1m") {
        Some(m) => Some(m),
        None => {
            // Not root: a folder this user may not write in.
            fs::create_dir_all(&ro).unwrap();
            fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
            None
        }
    };
    assert!(
        fs::write(ro.join("probe"), "x").is_err(),
        "the state folder is not writable"
    );
    let vars = [
        ("XDG_STATE_HOME", ro.to_str().unwrap()),
        ("XDG_RUNTIME_DIR", runtime.path().to_str().unwrap()),
    ];
    let (mut child, rx) = spawn_up(env.path(), &["-p", &env.project, "up", "--json"], &vars);
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "\"type\":\"all_ready\"",
        Duration::from_secs(30),
        &mut seen,
    );
    let warnings: Vec<&String> = seen
        .iter()
        .filter(|l| {
            l.contains("\"type\":\"warning\"") && l.contains("cannot write the state folder")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {seen:#?}");
    assert!(
        warnings[0].contains(&ro.display().to_string())
            && warnings[0].contains(&runtime.path().display().to_string())
            && warnings[0].contains("log files"),
        "names the folder, where the files went and what: {}",
        warnings[0]
    );
    let ps = devstack_env(env.path(), &["-p", &env.project, "ps", "--json"], &vars);
    assert_eq!(ps.status.code(), Some(0), "{}", stderr(&ps));
    let rows: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(rows[0]["service"], "app", "{rows}");
    assert_eq!(rows[0]["state"], "ready", "the live ps of the run: {rows}");
    let logs = devstack_env(env.path(), &["-p", &env.project, "logs", "app"], &vars);
    assert!(stdout(&logs).contains("app up"), "{}", stdout(&logs));
    let down = devstack_env(env.path(), &["-p", &env.project, "down"], &vars);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert!(exit_within(&mut child, Duration::from_secs(20)).is_some());
}

/// The disk of the state folder fills during a run: the log files pause with one warning and
/// resume with one note when space returns; the service is never stopped and the live view
/// loses no line.
#[test]
fn a_full_disk_pauses_the_log_files_and_nothing_else() {
    let env = Env::new(
        "fulldisk",
        "services:\n  app:\n    command: [python3, -u, -c, \"import itertools,time\\nfor i in itertools.count():\\n    print('line', i, 'x' * 100)\\n    time.sleep(0.005)\"]\n    watch: false\n",
    );
    let small = env.state.path().join("small");
    let Some(_mount) = Mount::tmpfs(&small, "size=2m") else {
        eprintln!("not root: cannot mount a small file system; skipping");
        return;
    };
    let vars = [("XDG_STATE_HOME", small.to_str().unwrap())];
    let (mut child, rx) = spawn_up(env.path(), &["-p", &env.project, "up", "--json"], &vars);
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "\"type\":\"all_ready\"",
        Duration::from_secs(30),
        &mut seen,
    );
    // Fill the disk to the last byte.
    let filler = small.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    wait_for(
        &rx,
        "log files are paused",
        Duration::from_secs(30),
        &mut seen,
    );
    fs::remove_file(&filler).unwrap();
    wait_for(&rx, "resumed", Duration::from_secs(30), &mut seen);
    // Lines after the resume: the next numbers the service prints.
    let resumed_at = seen.len();
    wait_for(
        &rx,
        "\"stream\":\"stdout\"",
        Duration::from_secs(10),
        &mut seen,
    );
    let last_live: u64 = seen[resumed_at..]
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str()?.split(' ').nth(1)?.parse().ok())
        .next_back()
        .expect("a line after the resume");
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
    while let Ok(l) = rx.try_recv() {
        seen.push(l);
    }
    let values: Vec<serde_json::Value> = seen
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pauses = values
        .iter()
        .filter(|v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.contains("log files are paused"))
        })
        .count();
    assert_eq!(pauses, 1, "one warning for the pause");
    // Every line reached the live view, in order, with no gap.
    let numbers: Vec<u64> = values
        .iter()
        .filter(|v| v["stream"] == "stdout")
        .filter_map(|v| v["text"].as_str()?.split(' ').nth(1)?.parse().ok())
        .collect();
    assert!(numbers.len() as u64 > last_live, "{} lines", numbers.len());
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u64),
        "the live view lost no line"
    );
    // Never stopped or restarted before the interrupt: one start.
    let starts = values
        .iter()
        .filter(|v| v["event"]["type"] == "started")
        .count();
    assert_eq!(starts, 1, "started once");
    // The files have lines again after the resume.
    let logs = devstack_env(
        env.path(),
        &["-p", &env.project, "logs", "app", "--json"],
        &vars,
    );
    let stored: Vec<u64> = stdout(&logs)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str()?.split(' ').nth(1)?.parse().ok())
        .collect();
    assert!(
        stored.iter().any(|n| *n >= last_live.saturating_sub(50)),
        "lines written after the resume: last stored {:?}, live {last_live}",
        stored.last()
    );
}

/// `devstack up > up.log` in the stack's own (watched) folder: the file is devstack's own
/// output, ignored from the start with one note, and 0 restarts; an edit of the service's code
/// still restarts it once (the positive control).
#[test]
fn output_redirected_into_the_watched_folder_restarts_nothing() {
    let env = Env::new(
        "outfile",
        "services:\n  app:\n    command: python3 -u app.py\n    watch: { debounce: 100ms }\n    ready: { log: \"app started\" }\n",
    );
    fs::write(
        env.path().join("app.py"),
        "import time\nprint('app started')\nwhile True:\n    print('tick')\n    time.sleep(0.05)\n",
    )
    .unwrap();
    let log = env.path().join("up.log");
    let out = fs::File::create(&log).unwrap();
    let state = env.state.path().display().to_string();
    let mut child = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_devstack"))
            .args(["-p", &env.project, "up", "--json"])
            .current_dir(env.path())
            .env("XDG_STATE_HOME", &state)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let records = || -> Vec<serde_json::Value> {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let count = |rs: &[serde_json::Value], what: &dyn Fn(&serde_json::Value) -> bool| {
        rs.iter().filter(|r| what(r)).count()
    };
    let ticks = |r: &serde_json::Value| r["text"] == "tick";
    let restarts = |r: &serde_json::Value| r["event"]["type"] == "restarting";
    // Forty ticks written into the watched folder: each was a change of up.log.
    wait_until("40 ticks in up.log", Duration::from_secs(30), || {
        count(&records(), &ticks) >= 40
    });
    let rs = records();
    let notes: Vec<&serde_json::Value> = rs
        .iter()
        .filter(|r| {
            r["text"]
                .as_str()
                .is_some_and(|t| t.contains("devstack's output goes to"))
        })
        .collect();
    assert_eq!(notes.len(), 1, "one note: {notes:?}");
    assert!(notes[0]["text"].as_str().unwrap().contains("up.log"));
    assert_eq!(count(&rs, &restarts), 0, "up.log restarted the service");
    // The positive control: the service's own code still reloads it.
    fs::write(
        env.path().join("app.py"),
        "import time\nprint('app started')\nwhile True:\n    print('tick')\n    time.sleep(0.05)\n# edited\n",
    )
    .unwrap();
    wait_until("a restart for app.py", Duration::from_secs(20), || {
        count(&records(), &restarts) >= 1
    });
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
    let rs = records();
    let causes: Vec<&serde_json::Value> = rs.iter().filter(|r| restarts(r)).collect();
    assert_eq!(causes.len(), 1, "one restart, for app.py: {causes:?}");
    assert!(causes[0].to_string().contains("app.py"), "{}", causes[0]);
}

/// A service that floods its output and crashes until it is a crash loop: the report `wait`
/// answers with the moment it becomes one ends with the run's own last line. It is built from
/// the log's queue, after everything the run printed, not from its log file (which may still be
/// being written then). Asked over the control protocol, typed.
#[test]
fn a_crash_report_ends_with_the_runs_last_line() {
    use devstack::control::protocol::{Reply, Request};
    let env = Env::new(
        "lastwords",
        "services:\n  crashy:\n    command: [python3, -u, crashy.py]\n    ready: { log: ready }\n    restart: on-failure\n    watch: false\n",
    );
    fs::write(
        env.path().join("crashy.py"),
        "import os, sys, time\nn = int(open('n').read()) + 1 if os.path.exists('n') else 1\nopen('n', 'w').write(str(n))\nif n == 1:\n    print('ready')\n    while not os.path.exists('go'):\n        time.sleep(0.02)\n    sys.exit(1)\nfor i in range(20000):\n    print(f'output {i} of run {n}')\nprint(f'FINAL LINE OF RUN {n}')\nsys.exit(1)\n",
    )
    .unwrap();
    let (mut child, rx) = env.up();
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(30),
        &mut seen,
    );
    // The first crash (after start-up: it belongs to the service) ...
    fs::write(env.path().join("go"), "").unwrap();
    wait_for(
        &rx,
        "crashy   ▸ restarting in",
        Duration::from_secs(30),
        &mut seen,
    );
    // ... then a wait, answered the moment the crashes become a crash loop.
    let state = env.state.path().join("devstack").join(&env.project);
    let mut conn = devstack::control::client::connect(&state, &env.project).unwrap();
    conn.send(Request::Wait {
        services: vec!["crashy".into()],
        timeout_ms: Some(60_000),
    })
    .unwrap();
    let report = loop {
        match conn.answer().unwrap() {
            Some(Reply::Error { not_ready, .. }) => break not_ready.expect("a report"),
            Some(Reply::Done { .. }) => panic!("crashy never gets ready again"),
            Some(_) => {}
            None => panic!("the connection ended without an answer"),
        }
    };
    assert!(report.reason.contains("crash loop"), "{}", report.reason);
    let last = report.tail.last().expect("the report has lines");
    let run = last
        .strip_prefix("FINAL LINE OF RUN ")
        .unwrap_or_else(|| panic!("the run's final line ends the report: {:?}", report.tail));
    assert_eq!(
        report.tail.iter().rev().nth(1),
        Some(&format!("output 19999 of run {run}")),
        "the lines before it are of the same run"
    );
    interrupt(&child);
    assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
}
