//! `up`, `down` and `ps` against the real Docker engine with the locally built images
//! (scripts/offline-images.sh). Every test has its own project and free host ports.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const INFRA: &[&str] = &[
    "postgres:15",
    "redis:7-alpine",
    "qdrant/qdrant:latest",
    "confluentinc/cp-zookeeper:latest",
    "confluentinc/cp-kafka:latest",
];

fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().expect("client runs");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The reference stack's infrastructure moved to free host ports by an overlay.
fn infra_overlay(dir: &Path) -> [u16; 5] {
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    fs::write(
        dir.join("ports.yaml"),
        format!(
            "services:\n  postgres: {{ ports: !override [\"{}:5432\"] }}\n  redis: {{ ports: !override [\"{}:6379\"] }}\n  qdrant: {{ ports: !override [\"{}:6333\"] }}\n  zookeeper: {{ ports: !override [\"{}:2181\"] }}\n  kafka: {{ ports: !override [\"{}:9092\"] }}\n",
            ports[0], ports[1], ports[2], ports[3], ports[4]
        ),
    )
    .unwrap();
    ports
}

fn ps(dir: &Path, files: &[&str], project: &str) -> Value {
    let mut args: Vec<&str> = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.extend(["-p", project, "ps", "--json"]);
    let out = devstack(dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn id_of(ps: &Value, service: &str) -> String {
    ps.as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == service)
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn infra_comes_up_in_order_and_real_clients_use_it() {
    if !docker_or_skip(INFRA) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [pg, redis, qdrant, _zk, kafka] = infra_overlay(dir.path());
    let stack = root().join("stack.yaml").display().to_string();
    let project = project("infra");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![stack.clone(), "ports.yaml".into()],
    };
    let args = [
        "-f",
        &stack,
        "-f",
        "ports.yaml",
        "-p",
        &project,
        "up",
        "--wait",
        "zookeeper",
        "kafka",
        "postgres",
        "redis",
        "qdrant",
    ];

    let out = devstack(dir.path(), &args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        stdout(&out).is_empty(),
        "`up --wait` keeps stdout clean for scripts"
    );

    // Dependency order: kafka is created only once zookeeper is ready.
    // Lines with their padding collapsed: the name column's width depends on the stack.
    let pos = |needle: &str| {
        err.lines()
            .position(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .contains(needle)
            })
            .unwrap_or_else(|| panic!("`{needle}` in\n{err}"))
    };
    assert!(
        pos("zookeeper ▸ ready in") < pos("kafka ▸ container"),
        "{err}"
    );
    // Independent services do not wait for each other: all four first-level services start
    // before the slowest of them is ready (the started event follows the engine's create and
    // start, so a fast one may already be ready).
    let first_ready = ["zookeeper", "postgres", "qdrant", "redis"]
        .iter()
        .map(|s| pos(&format!("{s} ▸ ready in")))
        .max()
        .unwrap();
    for s in ["zookeeper", "postgres", "qdrant", "redis"] {
        assert!(
            pos(&format!("{s} ▸ container")) < first_ready,
            "{s} started late:\n{err}"
        );
    }

    // PostgreSQL: a real login with psql, a write and a read.
    let (ok, text) = run(Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &pg.to_string(), "-U", "user", "-d", "ensurestudy", "-tAc", "CREATE TABLE IF NOT EXISTS t (v int); INSERT INTO t VALUES (42); SELECT sum(v) FROM t;"])
        .env("PGPASSWORD", "pass"));
    assert!(ok && text.trim().ends_with("42"), "psql: {text}");

    // Redis: redis-cli SET/GET.
    let (ok, text) =
        run(Command::new("redis-cli").args(["-p", &redis.to_string(), "SET", "k", "v"]));
    assert!(ok && text.contains("OK"), "redis-cli: {text}");
    let (ok, text) = run(Command::new("redis-cli").args(["-p", &redis.to_string(), "GET", "k"]));
    assert!(ok && text.trim() == "v", "redis-cli: {text}");

    // Qdrant: create a collection, upsert, search over HTTP.
    let base = format!("http://127.0.0.1:{qdrant}");
    let (ok, text) = run(Command::new("curl").args([
        "-sf",
        "-X",
        "PUT",
        &format!("{base}/collections/t"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"vectors":{"size":2,"distance":"Dot"}}"#,
    ]));
    assert!(ok, "qdrant create: {text}");
    let (ok, text) = run(Command::new("curl").args(["-sf", "-X", "PUT", &format!("{base}/collections/t/points?wait=true"), "-H", "content-type: application/json", "-d", r#"{"points":[{"id":1,"vector":[1.0,0.0],"payload":{"n":"a"}},{"id":2,"vector":[0.0,1.0]}]}"#]));
    assert!(ok, "qdrant upsert: {text}");
    let (ok, text) = run(Command::new("curl").args([
        "-sf",
        "-X",
        "POST",
        &format!("{base}/collections/t/points/search"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"vector":[1.0,0.1],"limit":1,"with_payload":true}"#,
    ]));
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(ok && v["result"][0]["id"] == 1, "qdrant search: {text}");

    // Kafka: kafka-python produces and consumes through the advertised host port.
    let python = root().join("examples/ensurestudy/.venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup-example.sh first (it installs kafka-python)"
    );
    let script = r#"
import sys
from kafka import KafkaProducer, KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
bs = sys.argv[1]
KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=20000).create_topics([NewTopic("devstack-test", 1, 1)])
p = KafkaProducer(bootstrap_servers=bs, request_timeout_ms=20000, max_block_ms=30000)
p.send("devstack-test", b"hello from devstack").get(timeout=30)
p.flush()
c = KafkaConsumer("devstack-test", bootstrap_servers=bs, auto_offset_reset="earliest", consumer_timeout_ms=20000, group_id=None)
for m in c:
    print(m.value.decode()); break
"#;
    let (ok, text) = run(Command::new(&python).args(["-c", script, &format!("127.0.0.1:{kafka}")]));
    assert!(
        ok && text.contains("hello from devstack"),
        "kafka-python: {text}"
    );

    // ps shows them running with their ports.
    let v = ps(dir.path(), &[&stack, "ports.yaml"], &project);
    for row in v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "container")
    {
        assert_eq!(row["state"], "running", "{row}");
    }
    // The app processes were not selected: they are not running.
    let core = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "core-service")
        .unwrap();
    assert_eq!(core["state"], "not running");
    let pg_row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "postgres")
        .unwrap();
    assert_eq!(pg_row["ports"][0], format!("127.0.0.1:{pg}->5432"));
}

fn small_stack(dir: &Path, body: &str) {
    fs::write(dir.join("stack.yaml"), body).unwrap();
}

#[test]
fn warm_up_reuses_and_changed_config_recreates() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    small_stack(dir.path(), &format!("services:\n  cache:\n    image: redis:7-alpine\n    ports: [\"{port}:6379\"]\n    ready: {{ redis: {{}} }}\n"));
    fs::write(
        dir.path().join("changed.yaml"),
        "services:\n  cache:\n    environment: { EXTRA: \"1\" }\n",
    )
    .unwrap();
    let project = project("warm");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };

    let up = |files: &[&str]| {
        let mut args: Vec<&str> = Vec::new();
        for f in files {
            args.extend(["-f", f]);
        }
        args.extend(["-p", &project, "up", "--wait"]);
        let out = devstack(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };
    up(&[]);
    let first = id_of(&ps(dir.path(), &[], &project), "cache");
    assert!(!first.is_empty());
    let err = up(&[]);
    assert!(err.contains("running already, config unchanged"), "{err}");
    assert_eq!(
        id_of(&ps(dir.path(), &[], &project), "cache"),
        first,
        "a warm up keeps the container"
    );

    let err = up(&["stack.yaml", "changed.yaml"]);
    assert!(err.contains("config changed: recreated"), "{err}");
    let second = id_of(
        &ps(dir.path(), &["stack.yaml", "changed.yaml"], &project),
        "cache",
    );
    assert_ne!(second, first, "a changed config recreates the container");
}

#[test]
fn data_survives_down_and_up_and_down_v_removes_volumes() {
    if !docker_or_skip(&["postgres:15"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    small_stack(
        dir.path(),
        &format!("services:\n  db:\n    image: postgres:15\n    environment: {{ POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: d }}\n    ports: [\"{port}:5432\"]\n    volumes: [\"data:/var/lib/postgresql/data\"]\n    ready: {{ postgres: {{}} }}\n"),
    );
    let project = project("vol");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let dev = |args: &[&str]| {
        let mut all = vec!["-p", project.as_str()];
        all.extend_from_slice(args);
        let out = devstack(dir.path(), &all);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };
    let psql = |sql: &str| {
        run(Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "u",
                "-d",
                "d",
                "-tAc",
                sql,
            ])
            .env("PGPASSWORD", "p"))
    };

    dev(&["up", "--wait"]);
    let (ok, text) = psql("CREATE TABLE keep (v text); INSERT INTO keep VALUES ('survives');");
    assert!(ok, "{text}");

    let err = dev(&["down"]);
    assert!(err.contains("kept volumes"), "{err}");
    let (containers, volumes) = leftovers(&project);
    assert!(
        containers.is_empty(),
        "down removes the containers: {containers:?}"
    );
    assert_eq!(
        volumes,
        vec![format!("{project}_data")],
        "down keeps named volumes"
    );

    dev(&["up", "--wait"]);
    let (ok, text) = psql("SELECT v FROM keep");
    assert!(
        ok && text.trim() == "survives",
        "data after down and up: {text}"
    );

    dev(&["down", "-v"]);
    let (containers, volumes) = leftovers(&project);
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "down -v leaves nothing: {containers:?} {volumes:?}"
    );
}

#[test]
fn a_port_held_by_a_foreign_listener_is_refused_before_anything_is_created() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let free = free_port();
    small_stack(
        dir.path(),
        &format!("services:\n  a:\n    image: redis:7-alpine\n    ports: [\"{free}:6379\"]\n  b:\n    image: redis:7-alpine\n    ports: [\"{port}:6379\"]\n"),
    );
    let project = project("port");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let out = devstack(dir.path(), &["-p", &project, "up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "host port 127.0.0.1:{port} for `b` is taken by pid {}",
            std::process::id()
        )),
        "{err}"
    );
    let (containers, volumes) = leftovers(&project);
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "nothing created: {containers:?} {volumes:?}"
    );
    drop(held);
}

#[test]
fn a_container_that_never_gets_ready_times_out_with_diagnostics() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Redis answers, but the probe asks for an HTTP page it never serves.
    small_stack(
        dir.path(),
        &format!("services:\n  slow:\n    image: redis:7-alpine\n    ports: [\"{port}:6379\"]\n    ready: {{ http: \"http://127.0.0.1:${{port:slow:6379}}/\", timeout: 3s, interval: 200ms }}\n"),
    );
    let project = project("timeout");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let started = Instant::now();
    let out = devstack(dir.path(), &["-p", &project, "up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up at its timeout"
    );
    assert!(
        err.contains("service `slow` did not become ready: not ready after 3s"),
        "{err}"
    );
    assert!(
        err.contains(&format!("probe: http GET http://127.0.0.1:{port}/")),
        "{err}"
    );
    assert!(
        err.contains("lines of `slow`:") && err.contains("Ready to accept connections"),
        "the service's own last lines: {err}"
    );
    // What was started has been stopped.
    let v = ps(dir.path(), &[], &project);
    assert_ne!(v[0]["state"], "running", "{v}");
}

#[test]
fn a_container_that_exits_fails_the_wait_at_once() {
    if !docker_or_skip(&["devstack/debian-base:bookworm"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The host port is devstack's pick at start (`"80"`): a port picked here could be taken by a
    // parallel test before the container binds it.
    small_stack(
        dir.path(),
        "services:\n  crash:\n    image: devstack/debian-base:bookworm\n    command: [sh, -c, \"echo about to fail; sleep 1; echo boom >&2; exit 3\"]\n    ports: [\"80\"]\n    ready: { tcp: 80, timeout: 60s }\n  after:\n    image: devstack/debian-base:bookworm\n    command: [sleep, \"600\"]\n    depends_on: [crash]\n",
    );
    let project = project("exit");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let started = Instant::now();
    let out = devstack(dir.path(), &["-p", &project, "up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed at once, not at the 60s timeout: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(
            "service `crash` did not become ready: exited with code 3 before it was ready"
        ),
        "{err}"
    );
    assert!(
        err.contains("| boom"),
        "the last line before exit is shown: {err}"
    );
    let v = ps(dir.path(), &[], &project);
    let after = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "after")
        .unwrap();
    assert_eq!(
        after["state"], "not created",
        "a dependent of a failed service never starts: {v}"
    );
}

#[test]
fn docker_unreachable_is_reported_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    small_stack(dir.path(), "services:\n  a:\n    image: redis:7-alpine\n");
    let started = Instant::now();
    let out = devstack_env(
        dir.path(),
        &["up", "--wait"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("unix:///nonexistent/docker.sock") && err.contains("DOCKER_HOST"),
        "{err}"
    );
    assert!(err.contains("help: start the engine"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // An address that accepts but never answers: the 1 s budget, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("tcp://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = devstack_env(dir.path(), &["up", "--wait"], &[("DOCKER_HOST", &host)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no answer within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_image_offline_is_named_and_nothing_is_created() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    small_stack(dir.path(), "services:\n  ok:\n    image: redis:7-alpine\n  missing:\n    image: devstack-test/does-not-exist:1\n");
    let project = project("image");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let out = devstack(dir.path(), &["-p", &project, "up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("image `devstack-test/does-not-exist:1` is not available"),
        "{err}"
    );
    assert!(err.contains("scripts/offline-images.sh"), "{err}");
    let (containers, volumes) = leftovers(&project);
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "{containers:?} {volumes:?}"
    );
}

/// `up --wait` with containers and a process, two of whose host ports another program holds:
/// the background copy refuses to start, and the waiting side says so (exit 4, both holders
/// named) instead of "ready" with nothing running.
#[test]
fn up_wait_with_processes_and_held_ports_fails_instead_of_saying_ready() {
    if !docker_or_skip(&["redis:7-alpine", "postgres:15"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Real foreign listeners: programs of their own, not this test's sockets.
    let hold = |port: u16| {
        let code = format!(
            "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen(1)\nprint('held',flush=True)\ntime.sleep(120)\n"
        );
        let mut child = Command::new("python3")
            .args(["-c", &code])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        KillOnDrop(child)
    };
    let (redis_port, pg_port, app_port) = (free_port(), free_port(), free_port());
    let redis_holder = hold(redis_port);
    let app_holder = hold(app_port);
    small_stack(
        dir.path(),
        &format!(
            r#"services:
  redis: {{ image: redis:7-alpine, ports: ["{redis_port}:6379"], ready: {{ redis: {{}}, timeout: 30s }} }}
  pg:
    image: postgres:15
    environment: {{ POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: d }}
    ports: ["{pg_port}:5432"]
    volumes: ["pgdata:/var/lib/postgresql/data"]
    ready: {{ postgres: {{}}, timeout: 60s }}
  app: {{ command: [sleep, "1000"], ports: ["{app_port}"], depends_on: [redis], watch: false }}
"#
        ),
    );
    let project = project("heldwait");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec![],
    };
    let st = state.path().display().to_string();
    let out = devstack_env(
        dir.path(),
        &["-p", &project, "up", "--wait"],
        &[("XDG_STATE_HOME", &st)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(!err.contains("ready;"), "never says ready: {err}");
    for (port, service, holder) in [
        (redis_port, "redis", &redis_holder),
        (app_port, "app", &app_holder),
    ] {
        assert!(
            err.contains(&format!(
                "host port 127.0.0.1:{port} for `{service}` is taken by pid {}",
                holder.0.id()
            )),
            "{err}"
        );
    }
    // Nothing was left running: no background devstack holds the project.
    let ps = devstack_env(
        dir.path(),
        &["-p", &project, "ps", "--json"],
        &[("XDG_STATE_HOME", &st)],
    );
    assert_eq!(ps.status.code(), Some(0), "{}", stderr(&ps));
    let rows: Value = serde_json::from_slice(&ps.stdout).unwrap();
    let rows = rows.as_array().expect("ps --json is a list");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|s| s["state"] != "running" && s["pid"].is_null()),
        "nothing runs: {rows:?}"
    );
    let (containers, _) = leftovers(&project);
    assert!(containers.is_empty(), "nothing created: {containers:?}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Compose's `links`, `pid`, `volumes_from` and `runtime` reach the engine: the linked
/// service answers by its alias, and the container shares the other's process namespace and
/// volumes (issue 24).
#[test]
fn compose_links_pid_volumes_from_and_runtime_reach_the_engine() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  db:\n    image: redis:7-alpine\n    volumes: [/shared]\n  web:\n    image: redis:7-alpine\n    links: [\"db:database\"]\n    pid: \"service:db\"\n    volumes_from: [\"db:ro\"]\n    runtime: runc\n",
    )
    .unwrap();
    let project = project("links");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec!["compose.yaml".into()],
    };
    let out = devstack(
        dir.path(),
        &["-f", "compose.yaml", "-p", &project, "up", "--wait"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let web = format!("{project}-web");
    let db = format!("{project}-db");
    let (ok, host) = run(Command::new("docker").args([
        "inspect",
        "-f",
        "{{.HostConfig.PidMode}} {{json .HostConfig.VolumesFrom}} {{.HostConfig.Runtime}}",
        &web,
    ]));
    assert!(ok, "{host}");
    // The engine keeps the other container's id for the pid namespace.
    let (ok, db_id) = run(Command::new("docker").args(["inspect", "-f", "{{.Id}}", &db]));
    assert!(ok, "{db_id}");
    assert_eq!(
        host.trim(),
        format!("container:{} [\"{db}:ro\"] runc", db_id.trim()),
        "{host}"
    );
    let (ok, pong) =
        run(Command::new("docker").args(["exec", &web, "redis-cli", "-h", "database", "ping"]));
    assert!(
        ok && pong.trim() == "PONG",
        "the link alias resolves: {pong}"
    );
    let (ok, mounts) = run(Command::new("docker").args(["exec", &web, "ls", "-d", "/shared"]));
    assert!(ok, "the volume of `db` is mounted in `web`: {mounts}");
}

/// Compose's `post_start` runs in the started container (as the user it names) and `pre_stop`
/// before it stops; a failing `post_start` fails the start with the hook's output.
#[test]
fn compose_lifecycle_hooks_run_in_the_container() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("out")).unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: redis:7-alpine\n    user: redis\n    volumes: [./out:/out]\n    post_start:\n      - command: sh -c \"id -un > /tmp/started\"\n        user: root\n    pre_stop:\n      - command: [sh, -c, \"echo $$GREETING > /out/stopped\"]\n        user: root\n        environment: {GREETING: bye}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("failing.yaml"),
        "services:\n  web:\n    post_start: !override\n      - command: sh -c \"echo no such thing >&2; exit 3\"\n",
    )
    .unwrap();
    let project = project("hooks");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec!["compose.yaml".into()],
    };
    let out = devstack(
        dir.path(),
        &["-f", "compose.yaml", "-p", &project, "up", "--wait"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let web = format!("{project}-web");
    let (ok, who) = run(Command::new("docker").args(["exec", &web, "cat", "/tmp/started"]));
    assert!(ok && who.trim() == "root", "post_start ran as root: {who}");
    let out = devstack(dir.path(), &["-f", "compose.yaml", "-p", &project, "down"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stopped = fs::read_to_string(dir.path().join("out/stopped")).unwrap_or_default();
    assert_eq!(stopped.trim(), "bye", "pre_stop ran before the stop");

    let out = devstack(
        dir.path(),
        &[
            "-f",
            "compose.yaml",
            "-f",
            "failing.yaml",
            "-p",
            &project,
            "up",
            "--wait",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("post_start hook")
            && err.contains("exited with 3")
            && err.contains("no such thing"),
        "{err}"
    );
}
