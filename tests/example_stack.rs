//! End to end: the ensureStudy example stack (five containers, four native processes) comes up,
//! an edit to core-service restarts it until it is ready again, and Ctrl-C leaves no process and
//! no listener. Runs on a copy of the example app, on free ports, beside anything else.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const INFRA: &[&str] = &[
    "postgres:15",
    "redis:7-alpine",
    "qdrant/qdrant:latest",
    "confluentinc/cp-zookeeper:latest",
    "confluentinc/cp-kafka:latest",
];

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if [
            ".venv",
            "node_modules",
            "__pycache__",
            ".pytest_cache",
            "bin",
        ]
        .iter()
        .any(|n| name == *n)
        {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Processes whose working folder is inside `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cwd) = fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                out.push(format!("{pid} {cmd}"));
            }
        }
    }
    out
}

fn port_after(line: &str, flag: &str) -> Option<u16> {
    line.split(flag)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_example_stack_runs_reloads_and_stops_cleanly() {
    if !docker_or_skip(INFRA) {
        return;
    }
    let venv = root().join("examples/ensurestudy/.venv");
    assert!(
        venv.join("bin/python").exists(),
        "run scripts/setup-example.sh first"
    );
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("examples/ensurestudy");
    copy_tree(&root().join("examples/ensurestudy"), &app);
    std::os::unix::fs::symlink(&venv, app.join(".venv")).unwrap();
    fs::copy(root().join("stack.yaml"), tmp.path().join("stack.yaml")).unwrap();
    // What the stack's preparation tasks and image builds use (each is up to date here).
    copy_tree(&root().join("scripts"), &tmp.path().join("scripts"));
    copy_tree(&root().join("images"), &tmp.path().join("images"));
    let state = tempfile::tempdir().unwrap();
    let state_s = state.path().display().to_string();
    let project = project("example");
    let _down = Teardown {
        dir: tmp.path().into(),
        project: project.clone(),
        files: vec![],
    };

    let (mut child, rx) = spawn_up(
        tmp.path(),
        &["-p", &project, "up", "--free-ports"],
        &[("XDG_STATE_HOME", &state_s)],
    );
    let mut seen = Vec::new();
    wait_for(
        &rx,
        // Nine services and the three preparation tasks.
        "12 services ready in",
        Duration::from_secs(240),
        &mut seen,
    );
    let core_port = seen
        .iter()
        .find(|l| l.contains("core-service  ▸ started"))
        .and_then(|l| port_after(l, "--port "))
        .expect("core-service's port");
    let ai_port = seen
        .iter()
        .find(|l| l.contains("ai-service    ▸ started"))
        .and_then(|l| port_after(l, "--port "))
        .expect("ai-service's port");
    let ready = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{core_port}/ready")])
        .output()
        .unwrap();
    assert!(
        ready.status.success(),
        "core-service /ready: {}",
        String::from_utf8_lossy(&ready.stdout)
    );

    // An edit to core-service restarts it, and it gets ready again.
    let web = app.join("backend/core-service/app/web.py");
    let mut text = fs::read_to_string(&web).unwrap();
    text.push_str("\n# edited by devstack's end-to-end test\n");
    fs::write(&web, text).unwrap();
    wait_for(
        &rx,
        "core-service  ▸ restarting: examples/ensurestudy/backend/core-service/app/web.py changed",
        Duration::from_secs(20),
        &mut seen,
    );
    wait_for(
        &rx,
        "core-service  ▸ ready in",
        Duration::from_secs(60),
        &mut seen,
    );
    let ready = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{core_port}/ready")])
        .output()
        .unwrap();
    assert!(
        ready.status.success(),
        "core-service is ready again after the restart"
    );

    interrupt(&child);
    assert_eq!(
        exit_within(&mut child, Duration::from_secs(90)),
        Some(130),
        "{}",
        seen.join("\n")
    );
    let left = processes_in(tmp.path());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for port in [core_port, ai_port] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still held"
        );
    }
}
