//! Foreground `up`: logs stream until Ctrl-C, then containers stop in reverse dependency order;
//! a second Ctrl-C kills at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn ctrl_c_stops_dependents_first_and_leaves_no_running_container() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("stack.yaml"),
        format!("services:\n  base:\n    image: redis:7-alpine\n    ports: [\"{p1}:6379\"]\n    ready: {{ redis: {{}} }}\n  top:\n    image: redis:7-alpine\n    ports: [\"{p2}:6379\"]\n    depends_on: [base]\n    ready: {{ redis: {{}} }}\n"),
    )
    .unwrap();
    let project = project("fg");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let (mut child, rx) = spawn_up(dir.path(), &["-p", &project, "up"], &[]);
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(60),
        &mut seen,
    );
    // The merged view carries each container's own output.
    assert!(
        seen.iter()
            .any(|l| l.contains("top      | ") && l.contains("Ready to accept connections")),
        "{}",
        seen.join("\n")
    );

    interrupt(&child);
    let code = exit_within(&mut child, Duration::from_secs(30));
    seen.extend(rx.try_iter());
    assert_eq!(code, Some(130), "{}", seen.join("\n"));
    let pos = |needle: &str| {
        seen.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` in\n{}", seen.join("\n")))
    };
    assert!(
        pos("top      ▸ stopped") < pos("base     ▸ stopped"),
        "dependents stop first:\n{}",
        seen.join("\n")
    );
    let out = devstack(dir.path(), &["-p", &project, "ps", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in v.as_array().unwrap() {
        assert_ne!(row["state"], "running", "{row}");
    }
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", p1)).is_ok(),
        "no port stays held"
    );
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    if !docker_or_skip(&["devstack/debian-base:bookworm"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `sleep` as PID 1 ignores SIGTERM, so a graceful stop would take the whole 60 s grace.
    std::fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  stubborn:\n    image: devstack/debian-base:bookworm\n    command: [sleep, \"600\"]\n    stop_grace_period: 60s\n",
    )
    .unwrap();
    let project = project("kill");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let (mut child, rx) = spawn_up(dir.path(), &["-p", &project, "up"], &[]);
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C to stop",
        Duration::from_secs(60),
        &mut seen,
    );
    let started = Instant::now();
    interrupt(&child);
    wait_for(
        &rx,
        "stopping (Ctrl-C again kills at once)",
        Duration::from_secs(10),
        &mut seen,
    );
    interrupt(&child);
    let code = exit_within(&mut child, Duration::from_secs(20));
    seen.extend(rx.try_iter());
    assert_eq!(code, Some(130), "{}", seen.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "killed, not waited out: {:?}",
        started.elapsed()
    );
    assert!(
        seen.iter().any(|l| l.contains("killing everything now")),
        "{}",
        seen.join("\n")
    );
}
