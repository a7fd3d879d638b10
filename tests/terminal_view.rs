//! The interactive terminal view in a real pseudo-terminal: `devstack up` runs in a tmux pane
//! (its own tmux server), keys go in with `send-keys`, the screen comes out with
//! `capture-pane`. Events (pids) are read from the per-service log files, not from the screen;
//! the screen is asserted only for what the terminal itself shows (the status line, what the
//! filter lets through). Uses tests/fixtures/dashboard/stack.yaml (native processes only).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

const DEADLINE: Duration = Duration::from_secs(30);

struct Pane {
    socket: String,
    dir: tempfile::TempDir,
    project: String,
}

impl Pane {
    fn new(name: &str) -> Self {
        let pane = Self {
            socket: format!("devstack-tv-{}-{name}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
            project: format!("tv{}-{name}", std::process::id()),
        };
        let out = pane
            .tmux(&[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "200",
                "-y",
                "50",
                "bash --norc --noprofile",
            ])
            .output()
            .expect("tmux runs (apt-get install tmux)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        pane
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).args(args);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status().unwrap().success());
    }

    /// Types `text` as it is (no key names).
    fn text(&self, text: &str) {
        assert!(self
            .tmux(&["send-keys", "-t", "t", "-l", text])
            .status()
            .unwrap()
            .success());
    }

    /// The whole pane, history included, wrapped lines joined.
    fn screen(&self) -> String {
        let out = self
            .tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > DEADLINE {
                panic!("{what}: not within {DEADLINE:?}; the pane:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `devstack up` in the pane, recording the terminal modes before and after it.
    fn up(&self, overlays: &[&str]) {
        self.up_with(overlays, "")
    }

    fn up_with(&self, overlays: &[&str], flags: &str) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let line = format!(
            "PS1='$ '; cd {root}; stty -a > {before}; env -u CI DEVSTACK_INSTANCE= XDG_STATE_HOME={state} DASH_WEB_PORT={port} {bin} -f {fixture}{more} -p {project} up{flags}; echo EXIT\"\"-$?; stty -a > {after}; echo MODES\"\"-SAVED",
            root = common::root().display(),
            before = self.path("stty-before").display(),
            after = self.path("stty-after").display(),
            state = self.path("state").display(),
            bin = env!("CARGO_BIN_EXE_devstack"),
            fixture = common::fixtures().join("dashboard/stack.yaml").display(),
            project = self.project,
            more = overlays
                .iter()
                .map(|o| format!(" -f {}", common::fixtures().join("dashboard").join(o).display()))
                .collect::<String>(),
        );
        self.text(&line);
        self.keys(&["Enter"]);
    }

    /// The pinned status line: the last line of the screen while devstack runs.
    fn status(screen: &str) -> &str {
        screen
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    fn wait_status(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_screen(what, |s| pred(Self::status(s)))
    }

    fn events(&self, service: &str) -> Vec<serde_json::Value> {
        let p = self
            .path("state")
            .join("devstack")
            .join(&self.project)
            .join("logs")
            .join(format!("{service}.log"));
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|r| r.get("event").cloned())
            .collect()
    }

    fn started_pids(&self, service: &str) -> Vec<u64> {
        self.events(service)
            .iter()
            .filter(|e| e["type"] == "started")
            .filter_map(|e| e["pid"].as_u64())
            .collect()
    }

    fn modes_restored(&self) {
        self.wait_screen("devstack exited and the modes were saved", |s| {
            s.lines().any(|l| l == "MODES-SAVED")
        });
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let (before, after) = (
            read(&self.path("stty-before")),
            read(&self.path("stty-after")),
        );
        assert!(
            before.contains(" icanon") && before.contains(" echo "),
            "{before}"
        );
        assert_eq!(before, after, "terminal modes differ after devstack");
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        // Ends the pane's shell and whatever still runs in it.
        let _ = self.tmux(&["kill-server"]).status();
    }
}

fn exited(screen: &str) -> bool {
    screen.lines().any(|l| l.starts_with("EXIT-"))
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_line_keys_and_q_leave_the_terminal_as_it_was() {
    let pane = Pane::new("keys");
    pane.up(&[]);
    let all_ready = |l: &str| l.starts_with("●●●●●●●●● 9/9 ready · r restart");
    pane.wait_status("the status line with 9/9 ready", all_ready);

    // `r` + a name restarts it: a new pid, ready again.
    let old = pane.started_pids("core-service");
    assert_eq!(old.len(), 1, "{old:?}");
    pane.keys(&["r"]);
    pane.text("core");
    pane.wait_status("the restart picker", |l| {
        l.starts_with("restart ▸ core▏") && l.contains("core-service")
    });
    pane.keys(&["Enter"]);
    let new = wait_until("core-service started again", || {
        pane.started_pids("core-service")
            .into_iter()
            .find(|p| !old.contains(p))
    });
    wait_until("core-service ready after its restart", || {
        let ev = pane.events("core-service");
        let started = ev
            .iter()
            .position(|e| e["type"] == "started" && e["pid"] == new)?;
        ev[started..]
            .iter()
            .any(|e| e["type"] == "ready")
            .then_some(())
    });
    pane.wait_status("9/9 ready again", all_ready);

    // `s` stops a running service (the count goes down), and starts it again.
    pane.keys(&["s"]);
    pane.text("celery");
    pane.keys(&["Enter"]);
    pane.wait_status("8/9 ready with celery-worker stopped", |l| {
        l.contains(" 8/9 ready") && l.chars().filter(|c| *c == '○').count() == 1
    });
    pane.keys(&["s"]);
    pane.text("celery-worker");
    pane.keys(&["Enter"]);
    pane.wait_status("9/9 ready after the start", all_ready);

    // `f` filters what is printed from then on; the status line says so.
    pane.keys(&["f"]);
    pane.text("redis");
    pane.keys(&["Enter"]);
    let at_filter = pane.wait_status("the filter in the status line", |l| {
        l.contains("9/9 ready · filter: redis ·")
    });
    let before = at_filter.lines().count() - 1; // lines above the status line
    let after = pane.wait_screen("three more redis lines", |s| {
        s.lines()
            .skip(before)
            .filter(|l| l.contains("redis         | redis tick"))
            .count()
            >= 3
    });
    let printed: Vec<&str> = after
        .lines()
        .skip(before)
        .filter(|l| l.contains(" | ") || l.contains(" ▸ "))
        .collect();
    for l in &printed {
        let service = l.split_whitespace().nth(1).unwrap_or("");
        assert!(
            service == "redis" || service == "devstack",
            "a line of another service after `f redis`: {l}\n{printed:#?}"
        );
    }

    // `q` stops everything as Ctrl-C does; the terminal is as it was.
    pane.keys(&["q"]);
    let end = pane.wait_screen("devstack's exit", exited);
    assert!(end.lines().any(|l| l == "EXIT-130"), "{end}");
    pane.modes_restored();
    assert!(
        pane.events("redis").iter().any(|e| e["type"] == "stopped"),
        "redis was stopped"
    );
}

#[test]
fn e_shows_a_crash_and_a_second_ctrl_c_kills_at_once_leaving_the_terminal_as_it_was() {
    let pane = Pane::new("ctrlc");
    // slowpoke ignores SIGTERM: after the first Ctrl-C, devstack waits for it (30 s grace).
    // crasher exits 3 a few seconds after start-up: `e` shows it again.
    pane.up(&["slow-stop.yaml", "crasher.yaml"]);
    pane.wait_status("crasher crashed", |l| {
        l.contains(" 10/11 ready") && l.chars().filter(|c| *c == '✗').count() == 1
    });
    pane.keys(&["e"]);
    pane.wait_screen("crasher's last error and lines", |s| {
        s.lines().any(|l| l == "crasher: exited with code 3")
            && s.lines().any(|l| l == "  crasher is about to fail")
    });
    pane.keys(&["C-c"]);
    pane.wait_screen("the first Ctrl-C", |s| {
        s.contains("stopping (Ctrl-C again kills at once)")
    });
    let waiting = pane.screen();
    assert!(!exited(&waiting), "devstack waits for slowpoke");
    let second = Instant::now();
    pane.keys(&["C-c"]);
    let end = pane.wait_screen("devstack's exit", exited);
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "the second Ctrl-C did not kill at once"
    );
    assert!(end.lines().any(|l| l == "EXIT-130"), "{end}");
    pane.modes_restored();
}

#[test]
fn no_tty_turns_the_view_off() {
    let pane = Pane::new("notty");
    pane.up_with(&[], " --no-tty");
    let s = pane.wait_screen("every service ready", |s| {
        s.contains("press Ctrl-C to stop")
    });
    assert!(!s.contains(" ready · r restart"), "a status line: {s}");
    pane.keys(&["C-c"]);
    let end = pane.wait_screen("devstack's exit", exited);
    assert!(end.lines().any(|l| l == "EXIT-130"), "{end}");
    assert!(!end.contains(" ready · r restart"), "a status line: {end}");
    pane.modes_restored();
}
