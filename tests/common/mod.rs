//! Helpers shared by the integration tests: run the built binary with a clean environment.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// The tests act on the main instance of their projects: the repository they run in may be a
/// linked git worktree (which would make every fixture of it an instance of its own).
pub const MAIN_INSTANCE: (&str, &str) = ("DEVSTACK_INSTANCE", "");

/// `devstack ARGS` in `cwd`, with only PATH and HOME from the outside, no colours, the main
/// instance.
pub fn devstack(cwd: &Path, args: &[&str]) -> Output {
    devstack_env(cwd, args, &[])
}

pub fn devstack_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devstack"));
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("NO_COLOR", "1")
        .env(MAIN_INSTANCE.0, MAIN_INSTANCE.1);
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the devstack binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Docker tests need the engine and the locally built images. Without them they fail with
/// what to do, unless the person running them set `DEVSTACK_SKIP_DOCKER=1` (CI never does).
pub fn docker_or_skip(images: &[&str]) -> bool {
    if std::env::var("DEVSTACK_SKIP_DOCKER").is_ok_and(|v| v == "1") {
        eprintln!("DEVSTACK_SKIP_DOCKER=1: skipping a test that needs the Docker engine");
        return false;
    }
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "this test needs a running Docker engine (start dockerd, or set DEVSTACK_SKIP_DOCKER=1 to skip Docker tests)"
        ),
    }
    for image in images {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "image `{image}` is missing: build the local images with `scripts/offline-images.sh`"
        );
    }
    true
}

/// A free TCP port on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique project name for one test, so parallel tests never share containers.
pub fn project(tag: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "dstest-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// Runs `devstack -p PROJECT down -v --remove-orphans` in `dir` when dropped, whatever the test did.
pub struct Teardown {
    pub dir: PathBuf,
    pub project: String,
    pub files: Vec<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let mut args: Vec<&str> = Vec::new();
        for f in &self.files {
            args.extend(["-f", f]);
        }
        args.extend(["-p", &self.project, "down", "-v", "--remove-orphans"]);
        let _ = devstack(&self.dir, &args);
    }
}

/// `docker ps -a` names and `docker volume ls` names carrying this project's label.
pub fn leftovers(project: &str) -> (Vec<String>, Vec<String>) {
    let filter = format!("label=org.devstack.project={project}");
    let names = |args: &[&str]| -> Vec<String> {
        let o = Command::new("docker")
            .args(args)
            .output()
            .expect("docker runs");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    };
    (
        names(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]),
        names(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]),
    )
}

/// Starts `devstack ARGS` in the background; its stdout and stderr lines arrive on the receiver.
pub fn spawn_up(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Running, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env(MAIN_INSTANCE.0, MAIN_INSTANCE.1)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (Running(child), rx)
}

/// Lines until one contains `needle` (all of them returned), under a deadline.
pub fn wait_for(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    within: Duration,
    seen: &mut Vec<String>,
) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return;
            }
        }
    }
    panic!(
        "no line with `{needle}` within {within:?}; got:\n{}",
        seen.join("\n")
    );
}

pub fn interrupt(child: &Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

pub fn exit_within(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("devstack did not exit within {within:?}");
}

/// A devstack started by a test; stopped if the test ends (or fails) without stopping it, so a
/// failing test never leaves a supervisor behind.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM first: devstack then stops what it started.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `devstack -p PROJECT up --json` in `dir` (state folder `state`) until every service is ready
/// (or devstack ends by itself), then Ctrl-C: every JSON event, and the exit code.
pub fn up_json_until_ready(
    dir: &Path,
    state: &Path,
    project: &str,
    within: Duration,
) -> (Vec<serde_json::Value>, Option<i32>) {
    let state = state.display().to_string();
    let (mut child, rx) = spawn_up(
        dir,
        &["-p", project, "up", "--json", "--no-dashboard"],
        &[("XDG_STATE_HOME", &state)],
    );
    let mut events = Vec::new();
    let mut raw = Vec::new();
    let deadline = Instant::now() + within;
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            continue;
        };
        raw.push(line.clone());
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            ready = v["event"]["type"] == "all_ready";
            events.push(v);
        }
    }
    if ready {
        interrupt(&child.0);
    }
    let code = exit_within(&mut child.0, within);
    // What came after the interrupt, for the assertions on stops.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            events.push(v);
        }
    }
    assert!(
        ready || code.is_some(),
        "devstack neither got ready nor ended within {within:?}:\n{}",
        raw.join("\n")
    );
    (events, code)
}

/// One HTTP/1.0 request to 127.0.0.1:`port`; the status line and the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    write!(
        c,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The Python of the official MCP client SDK (PyPI `mcp`, installed by
/// scripts/prepare-test-env.sh).
pub fn mcp_python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let py = cache.join("devstack/mcp-client/bin/python");
    assert!(
        py.exists(),
        "the MCP client SDK is missing: run scripts/prepare-test-env.sh (it installs PyPI `mcp` into {})",
        py.display()
    );
    py
}
