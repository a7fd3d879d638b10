//! `devstack test`: a throwaway stack per run, the suite's exit code, teardown whatever happens,
//! and runs side by side.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

fn stack_dir(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("stack.yaml"), body).unwrap();
    dir
}

const REDIS: &str = "name: tm\nservices:\n  cache:\n    image: redis:7-alpine\n    ports: [\"6379:6379\"]\n    ready: { redis: {} }\ntest:\n  environment:\n    CACHE_URL: redis://127.0.0.1:${port:cache:6379}/0\n";

fn project_of(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("devstack test: project `"))
        .and_then(|r| r.split('`').next())
        .expect("the project is named")
        .to_string()
}

fn run_test(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    let out = devstack(dir, &all);
    (out.status.code(), stdout(&out), stderr(&out))
}

#[test]
fn the_suites_exit_code_passes_through_and_it_sees_the_connection_settings() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = stack_dir(REDIS);
    let (code, out, err) = run_test(dir.path(), &["--", "sh", "-c", "echo \"url=$CACHE_URL port=$DEVSTACK_CACHE_6379\"; redis-cli -u \"$CACHE_URL\" ping; exit 7"]);
    assert_eq!(code, Some(7), "{err}");
    let port: u16 = out
        .split("port=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect(&out);
    assert_ne!(port, 6379, "a free host port, not the written one");
    assert!(
        out.contains(&format!("url=redis://127.0.0.1:{port}/0")),
        "{out}"
    );
    assert!(
        out.contains("PONG"),
        "the suite reached the throwaway redis: {out}"
    );
    let (containers, volumes) = leftovers(&project_of(&err));
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "torn down after a failing suite: {containers:?} {volumes:?}"
    );
}

#[test]
fn sigterm_tears_down_and_stops_the_suite() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = stack_dir(REDIS);
    let marker = dir.path().join("suite-started");
    let script = format!("touch {}; exec sleep 300", marker.display());
    let (mut child, rx) = spawn_up(dir.path(), &["test", "--", "sh", "-c", &script], &[]);
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "devstack test: project",
        Duration::from_secs(10),
        &mut seen,
    );
    let project = project_of(&seen.join("\n"));
    wait_for(&rx, "services ready in", Duration::from_secs(60), &mut seen);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the suite never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(exit_within(&mut child, Duration::from_secs(60)), Some(130));
    let (containers, volumes) = leftovers(&project);
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "{containers:?} {volumes:?}"
    );
    assert!(
        !std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .is_ok_and(|c| c.contains(&marker.display().to_string()))
        }),
        "the suite was stopped with the stack"
    );
}

#[test]
fn two_runs_at_once_do_not_collide() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = stack_dir(REDIS);
    let suite = ["--", "sh", "-c", "redis-cli -u \"$CACHE_URL\" set k \"$DEVSTACK_CACHE_6379\" && sleep 1 && test \"$(redis-cli -u \"$CACHE_URL\" get k)\" = \"$DEVSTACK_CACHE_6379\""];
    let a = {
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || run_test(&d, &suite))
    };
    let b = run_test(dir.path(), &suite);
    let a = a.join().unwrap();
    assert_eq!(a.0, Some(0), "{}", a.2);
    assert_eq!(b.0, Some(0), "{}", b.2);
    assert_ne!(project_of(&a.2), project_of(&b.2));
}

#[test]
fn a_stack_that_never_gets_ready_exits_5_and_the_suite_does_not_run() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = stack_dir("name: tm\nservices:\n  cache:\n    image: redis:7-alpine\n    ports: [\"6379\"]\n    ready: { http: \"http://127.0.0.1:${port:cache:6379}/\", timeout: 2s }\n");
    let marker = dir.path().join("ran");
    let (code, _, err) = run_test(dir.path(), &["--", "touch", &marker.display().to_string()]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("service `cache` did not become ready"),
        "{err}"
    );
    assert!(
        !marker.exists(),
        "the suite must not run against a stack that is not ready"
    );
    let (containers, volumes) = leftovers(&project_of(&err));
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "{containers:?} {volumes:?}"
    );
}

#[test]
fn app_processes_are_included_when_named_and_need_no_engine() {
    let dir = stack_dir("name: tm\nservices:\n  web:\n    command: python3 -m http.server ${port:web:8000} --bind 127.0.0.1\n    ports: [\"8000\"]\n    ready: { http: \"http://127.0.0.1:${port:web:8000}/\" }\ntest:\n  environment:\n    WEB_URL: http://127.0.0.1:${port:web:8000}/\n");
    let (code, _, err) = run_test(
        dir.path(),
        &[
            "--services",
            "web",
            "--",
            "sh",
            "-c",
            "curl -sf \"$WEB_URL\" > /dev/null",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("web") && err.contains("ready in"), "{err}");
}
