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
