//! The dashboard's HTTP guard and actions, without a browser (the browser tests are in
//! tests/dashboard/): `devstack up --json` on a small stack of native processes, the URL from
//! its typed `note` event, plain HTTP requests over TCP, effects checked on the typed events.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;

const STACK: &str = "name: dashhttp
services:
  db:
    command: sh -c 'echo db ready; while :; do sleep 1; done'
    ready: { log: ready }
    watch: false
    stop_grace_period: 1s
  api:
    command: sh -c 'echo api ready; echo api sees $$API_TOKEN; while :; do sleep 1; done'
    environment: { API_TOKEN: s3cr3t-value }
    depends_on: [db]
    ready: { log: ready }
    watch: false
    stop_grace_period: 1s
";

/// One request; the status code and the whole answer (headers and body).
fn request(port: u16, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn event(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("event")
        .cloned()
}

/// Lines until one's typed event satisfies `pred` (all of them kept in `seen`).
fn wait_event(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    seen: &mut Vec<String>,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let hit = event(&line).filter(|e| pred(e));
            seen.push(line);
            if let Some(e) = hit {
                return e;
            }
        }
    }
    panic!("{what}: not within 30s; got:\n{}", seen.join("\n"));
}

#[test]
fn the_guard_refuses_strangers_and_actions_reach_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stack.yaml"), STACK).unwrap();
    let state = dir.path().join("state");
    let (mut up, rx) = common::spawn_up(
        dir.path(),
        // Its own project: services carry `DEVSTACK_MARK=<project>/<service>`, and an `up`
        // ends what carries its marks, so two tests must never share a project name.
        &["-p", &common::project("dash"), "up", "--json"],
        &[("XDG_STATE_HOME", state.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    let note = wait_event(&rx, "the dashboard URL", &mut seen, |e| {
        e["type"] == "note"
            && e["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("dashboard: "))
    });
    let url = note["text"].as_str().unwrap()["dashboard: ".len()..].to_string();
    let rest = url.strip_prefix("http://127.0.0.1:").expect(&url);
    let (port, token) = rest.split_once("/?token=").expect(&url);
    let port: u16 = port.parse().unwrap();
    assert_eq!(token.len(), 32);
    wait_event(&rx, "every service ready", &mut seen, |e| {
        e["type"] == "all_ready"
    });
    let host = format!("Host: 127.0.0.1:{port}");

    // Strangers: no token, a wrong one, a foreign Host (DNS rebinding), a foreign Origin.
    for head in [
        format!("GET / HTTP/1.1\r\n{host}"),
        format!("GET /api/stack HTTP/1.1\r\n{host}"),
        format!("GET /?token={} HTTP/1.1\r\n{host}", "0".repeat(32)),
        format!("POST /api/services/db/restart HTTP/1.1\r\n{host}\r\nContent-Length: 0"),
        format!("GET /?token={token} HTTP/1.1\r\nHost: rebound.example:{port}"),
        format!(
            "POST /api/services/db/restart HTTP/1.1\r\n{host}\r\nCookie: devstack_token_{port}={token}\r\nOrigin: http://evil.example\r\nContent-Length: 0"
        ),
    ] {
        let (code, body) = request(port, &head);
        assert_eq!(code, 403, "{head}\n{body}");
    }

    // No Host at all: refused too (hyper may answer 400 before the guard sees it).
    let (code, body) = request(port, &format!("GET /?token={token} HTTP/1.1"));
    assert!(matches!(code, 400 | 403), "{body}");

    // The printed URL: the page, and a cookie that keeps the token.
    let (code, page) = request(port, &format!("GET /?token={token} HTTP/1.1\r\n{host}"));
    assert_eq!(code, 200, "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "set-cookie: devstack_token_{port}={token}; path=/; httponly; samesite=strict"
        )),
        "{page}"
    );
    assert!(lower.contains("referrer-policy: no-referrer"), "{page}");
    assert!(lower.contains("content-security-policy: default-src 'self'"));
    let cookie = format!("Cookie: devstack_token_{port}={token}");
    let (code, info) = request(
        port,
        &format!("GET /api/stack HTTP/1.1\r\nHost: localhost:{port}\r\n{cookie}"),
    );
    assert_eq!(code, 200, "{info}");
    assert!(info.contains(r#""depends_on":["db"]"#), "{info}");
    assert!(!info.contains("s3cr3t-value"), "{info}");

    // The event stream starts with everything up to now, secrets masked.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /api/events HTTP/1.1\r\n{host}\r\n{cookie}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 65536];
    // The service's own line (its command line, in the `started` event, says "api sees" too).
    while !got.contains("\"x\":\"api sees") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("event: init"), "{got}");
    assert!(got.contains("api sees ****"), "{got}");
    assert!(!got.contains("s3cr3t-value"), "{got}");
    drop(s);

    // An action with the token reaches the engine.
    let (code, body) = request(
        port,
        &format!(
            "POST /api/services/db/restart HTTP/1.1\r\n{host}\r\nX-Devstack-Token: {token}\r\nContent-Length: 0"
        ),
    );
    assert_eq!(code, 202, "{body}");
    wait_event(&rx, "db restarting", &mut seen, |e| {
        e["type"] == "restarting" && e["service"] == "db"
    });
    let (code, _) = request(
        port,
        &format!(
            "POST /api/services/nosuch/restart HTTP/1.1\r\n{host}\r\nX-Devstack-Token: {token}\r\nContent-Length: 0"
        ),
    );
    assert_eq!(code, 404);

    common::interrupt(&up.0);
    assert_eq!(
        common::exit_within(&mut up.0, Duration::from_secs(30)),
        Some(130)
    );
}

#[test]
fn a_taken_dashboard_port_is_refused_before_anything_starts_and_no_dashboard_means_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stack.yaml"), STACK).unwrap();
    let state = dir.path().join("state");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = common::devstack_env(
        dir.path(),
        &[
            "-p",
            &common::project("dash"),
            "up",
            "--json",
            "--dashboard",
            &port,
        ],
        &[("XDG_STATE_HOME", state.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains(&format!("cannot serve the dashboard on 127.0.0.1:{port}")),
        "{}",
        common::stderr(&out)
    );
    assert!(
        !common::stdout(&out).contains("\"started\""),
        "nothing started: {}",
        common::stdout(&out)
    );

    let (mut up, rx) = common::spawn_up(
        dir.path(),
        &[
            "-p",
            &common::project("dash"),
            "up",
            "--json",
            "--no-dashboard",
        ],
        &[("XDG_STATE_HOME", state.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    wait_event(&rx, "every service ready", &mut seen, |e| {
        e["type"] == "all_ready"
    });
    assert!(
        !seen.iter().any(|l| l.contains("dashboard: ")),
        "{}",
        seen.join("\n")
    );
    common::interrupt(&up.0);
    assert_eq!(
        common::exit_within(&mut up.0, Duration::from_secs(30)),
        Some(130)
    );
}
