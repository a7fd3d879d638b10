//! `devstack doctor` names what blocks `up`, with what to do, and exits 1 for blockers.

mod common;

use std::fs;

use common::*;

#[test]
fn doctor_finds_a_taken_port_and_a_missing_tool() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    fs::write(
        dir.path().join("stack.yaml"),
        format!("services:\n  web:\n    command: python3 -m http.server {port}\n    ports: [\"{port}\"]\n  tool:\n    command: no-such-tool-devstack --serve\n"),
    )
    .unwrap();
    let out = devstack(dir.path(), &["doctor"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "BLOCKER port {port} for `web` is taken by pid {}",
            std::process::id()
        )),
        "{text}"
    );
    assert!(
        text.contains("BLOCKER `tool` needs `no-such-tool-devstack`, which is not found"),
        "{text}"
    );
    assert!(
        text.contains("→ install `no-such-tool-devstack` or put it on PATH"),
        "{text}"
    );
    assert!(
        text.contains("ok      `web`: python3 with module `http.server`"),
        "{text}"
    );
    assert!(text.contains("2 blocker(s)"), "{text}");
    drop(held);

    // Fixed: no blockers, exit 0.
    fs::write(dir.path().join("stack.yaml"), format!("services:\n  web:\n    command: python3 -m http.server {port}\n    ports: [\"{port}\"]\n")).unwrap();
    let out = devstack(dir.path(), &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|f| f["level"] != "blocker"),
        "{v}"
    );
}

#[test]
fn doctor_flags_a_world_readable_env_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("stack.yaml"), "env_file: .env\nservices:\n  web:\n    command: python3 -m http.server\n    watch: false\n").unwrap();
    fs::write(dir.path().join(".env"), "JWT_SECRET_KEY=x\n").unwrap();
    fs::set_permissions(dir.path().join(".env"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = devstack(dir.path(), &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("→ chmod 600 .env"),
        "{}",
        stdout(&out)
    );
    fs::set_permissions(dir.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = devstack(dir.path(), &["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// An instance's recorded port that another program took since is chosen again by `up`: doctor
/// warns about it instead of blocking; the same port written in the main instance's file blocks.
#[test]
fn doctor_warns_about_a_taken_recorded_port_of_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let written = free_port();
    fs::write(
        dir.path().join("stack.yaml"),
        format!("services:\n  web:\n    command: python3 -m http.server ${{port:web:{written}}} --bind 127.0.0.1\n    ports: [\"{written}\"]\n    ready: {{ http: \"http://127.0.0.1:${{port:web:{written}}}/\" }}\n"),
    )
    .unwrap();
    let project = project("docinst");
    let dev = |args: &[&str]| {
        let mut all = vec!["-p", project.as_str()];
        all.extend_from_slice(args);
        devstack_env(dir.path(), &all, &[("XDG_STATE_HOME", st)])
    };
    // The written port is taken from the start: the instance records another one.
    let _held_written = std::net::TcpListener::bind(("127.0.0.1", written)).unwrap();
    let up = dev(&["--instance", "agent-1", "up", "--wait"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let down = dev(&["--instance", "agent-1", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    let ports = dev(&["--instance", "agent-1", "ports", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&ports.stdout).unwrap();
    let recorded = rows[0]["host_port"].as_u64().expect("a recorded port") as u16;
    assert_ne!(recorded, written);
    let _held = std::net::TcpListener::bind(("127.0.0.1", recorded)).unwrap();

    let findings = |out: &std::process::Output| -> Vec<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let out = dev(&["--instance", "agent-1", "doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let f = findings(&out);
    assert!(
        f.iter().any(|f| f["level"] == "warn"
            && f["what"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("recorded port {recorded} for `web` is taken"))),
        "{f:?}"
    );
    assert!(f.iter().all(|f| f["level"] != "blocker"), "{f:?}");
    // Positive control: the main instance's written port, held, blocks.
    let out = dev(&["--instance", "", "doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        findings(&out).iter().any(|f| f["level"] == "blocker"),
        "{}",
        stdout(&out)
    );
}
