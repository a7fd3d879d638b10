//! `seed:` end to end against the real Docker engine (the locally built postgres:15 image) and a
//! real native dependent: the seed runs once the probe passes and before what depends on the
//! service starts; it is skipped while the data and its sources are the same, runs again when a
//! source changes, after `reset` and on new volumes, is not run over a restored snapshot, and a
//! failing seed fails `up` with its last lines. Every count is read with the real `psql`;
//! assertions read `up --json` events.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

const IMAGES: &[&str] = &["postgres:15"];
const WITHIN: Duration = Duration::from_secs(120);

/// Each run of the seed adds one row: the count says how many times it ran on this data.
const SEED_SQL: &str =
    "CREATE TABLE IF NOT EXISTS seeded (v int); INSERT INTO seeded VALUES (1);\n";

/// Fields drop in order: the teardown runs while the folders are still there.
struct Seeded {
    _down: Teardown,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    project: String,
    pg: u16,
}

fn seeded_stack() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let pg = free_port();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    std::fs::write(dir.path().join("db/seed.sql"), SEED_SQL).unwrap();
    std::fs::write(
        dir.path().join("stack.yaml"),
        format!(
            r#"services:
  db:
    image: postgres:15
    environment: {{ POSTGRES_USER: user, POSTGRES_PASSWORD: pass, POSTGRES_DB: app }}
    ports: ["{pg}:5432"]
    volumes: ["pgdata:/var/lib/postgresql/data", "./db:/seed:ro"]
    ready: {{ postgres: {{ user: user, password: pass, database: app }}, timeout: 90s }}
    seed:
      command: psql -v ON_ERROR_STOP=1 -U user -d app -f /seed/seed.sql
      sources: [db/seed.sql]
  app:
    command: n=$(psql -h 127.0.0.1 -p {pg} -U user -d app -tAc "SELECT count(*) FROM seeded") && echo "$$n" > seen.txt && echo "seen $$n" && exec sleep 100000
    environment: {{ PGPASSWORD: pass }}
    ready: {{ log: seen }}
    depends_on: [db]
    watch: false
volumes: {{ pgdata: {{}} }}
"#
        ),
    )
    .unwrap();
    let project = project("seed");
    Seeded {
        _down: Teardown {
            dir: dir.path().into(),
            project: project.clone(),
            files: Vec::new(),
        },
        dir,
        state: tempfile::tempdir().unwrap(),
        project,
        pg,
    }
}

impl Seeded {
    /// `up --json` until everything is ready, then Ctrl-C; must have got ready.
    fn up(&self) -> Vec<Value> {
        let (events, code) =
            up_json_until_ready(self.dir.path(), self.state.path(), &self.project, WITHIN);
        assert!(
            events.iter().any(|e| e["event"]["type"] == "all_ready"),
            "not ready (exit {code:?}): {events:#?}"
        );
        events
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["-p", &self.project];
        all.extend_from_slice(args);
        let state = self.state.path().display().to_string();
        devstack_env(self.dir.path(), &all, &[("XDG_STATE_HOME", &state)])
    }

    fn ok(&self, args: &[&str]) {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "devstack {args:?}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }

    fn rows(&self) -> String {
        let o = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.pg.to_string()])
            .args(["-U", "user", "-d", "app", "-tAc"])
            .arg("SELECT count(*) FROM seeded")
            .env("PGPASSWORD", "pass")
            .output()
            .expect("psql runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The count with the database up on its own (`up --wait db`: containers only, nothing
    /// left supervising), then stopped again.
    fn rows_at_rest(&self) -> String {
        self.ok(&["up", "--wait", "db"]);
        let n = self.rows();
        self.ok(&["down"]);
        n
    }

    fn seen_by_app(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("seen.txt"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// The `seeded` event of `db`: (ran, reason).
fn seed_of_db(events: &[Value]) -> (bool, String) {
    let e = events
        .iter()
        .find(|e| e["event"]["type"] == "seeded" && e["service"] == "db")
        .unwrap_or_else(|| panic!("no seeded event for db: {events:#?}"));
    (
        e["event"]["ran"].as_bool().unwrap(),
        e["event"]["reason"].as_str().unwrap().to_string(),
    )
}

/// Where `db`'s log has the line `text` (the seed's own output), if it has it.
fn db_said(events: &[Value], text: &str) -> Option<usize> {
    events
        .iter()
        .position(|e| e["service"] == "db" && e["text"] == text)
}

fn position(events: &[Value], kind: &str, service: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"]["type"] == kind && e["service"] == service)
        .unwrap_or_else(|| panic!("no {kind} event for {service}: {events:#?}"))
}

#[test]
fn a_seed_runs_once_per_data_again_when_asked_and_never_over_a_restore() {
    if !docker_or_skip(IMAGES) {
        return;
    }
    let s = seeded_stack();

    // First up: seeded before ready, and before the dependent started (it saw the row).
    let events = s.up();
    assert_eq!(seed_of_db(&events), (true, "first ready".to_string()));
    assert!(position(&events, "seeded", "db") < position(&events, "ready", "db"));
    assert!(position(&events, "seeded", "db") < position(&events, "started", "app"));
    assert_eq!(
        s.seen_by_app(),
        "1",
        "the dependent started on seeded data: {events:#?}"
    );
    // The seed's own output (psql's) is in the log as db's, before the seeded event.
    let said = db_said(&events, "INSERT 0 1");
    let said = said.unwrap_or_else(|| panic!("the seed's output: {events:#?}"));
    assert!(said < position(&events, "seeded", "db"));

    // Same data, same sources: skipped.
    let events = s.up();
    let (ran, reason) = seed_of_db(&events);
    assert!(!ran, "{reason}");
    assert_eq!(db_said(&events, "INSERT 0 1"), None, "nothing ran");
    assert_eq!(s.rows_at_rest(), "1");

    // A source changes: it runs again over the same data (positive control of the skip).
    std::fs::write(
        s.dir.path().join("db/seed.sql"),
        format!("-- v2\n{SEED_SQL}"),
    )
    .unwrap();
    let events = s.up();
    assert_eq!(
        seed_of_db(&events),
        (true, "the seed or its sources changed".to_string())
    );
    assert!(db_said(&events, "INSERT 0 1").is_some(), "{events:#?}");
    assert_eq!(s.rows_at_rest(), "2");

    // A snapshot of that; `reset` empties the data and seeds it again; the restore brings the
    // two rows back and is not seeded over.
    s.ok(&["snapshot", "save", "two"]);
    s.ok(&["reset", "--yes", "db"]);
    let events = s.up();
    assert_eq!(seed_of_db(&events), (true, "first ready".to_string()));
    assert_eq!(
        s.rows_at_rest(),
        "1",
        "reset emptied the data and seeded it again"
    );
    s.ok(&["snapshot", "restore", "two"]);
    let events = s.up();
    let (ran, reason) = seed_of_db(&events);
    assert!(!ran, "a restored snapshot is not seeded over: {reason}");
    assert_eq!(s.rows_at_rest(), "2");

    // New volumes: new data, seeded.
    s.ok(&["down", "-v"]);
    let events = s.up();
    assert_eq!(seed_of_db(&events), (true, "new data".to_string()));
    assert_eq!(s.rows_at_rest(), "1");
}

#[test]
fn a_failing_seed_fails_up_with_its_last_lines_and_records_nothing() {
    if !docker_or_skip(IMAGES) {
        return;
    }
    let s = seeded_stack();
    std::fs::write(
        s.dir.path().join("db/seed.sql"),
        "INSERT INTO no_such_table VALUES (1);\n",
    )
    .unwrap();
    let (events, code) = up_json_until_ready(s.dir.path(), s.state.path(), &s.project, WITHIN);
    assert_eq!(code, Some(5), "{events:#?}");
    let failed = events
        .iter()
        .find(|e| e["event"]["type"] == "not_ready" && e["service"] == "db")
        .unwrap_or_else(|| panic!("no not_ready for db: {events:#?}"));
    let reason = failed["event"]["reason"].as_str().unwrap();
    assert!(reason.contains("its seed exited with code 3"), "{reason}");
    assert!(reason.contains("no_such_table"), "{reason}");
    // Its output (psql's, not the server's) is in the log too, as db's.
    let said = events.iter().any(|e| {
        e["service"] == "db"
            && e["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("psql:") && t.contains("no_such_table"))
    });
    assert!(said, "the failed seed's output: {events:#?}");
    assert!(
        !events
            .iter()
            .any(|e| e["event"]["type"] == "started" && e["service"] == "app"),
        "the dependent must not start on unseeded data"
    );
    // Fixed: the next up seeds (nothing was recorded for the failure).
    std::fs::write(s.dir.path().join("db/seed.sql"), SEED_SQL).unwrap();
    let events = s.up();
    assert!(seed_of_db(&events).0);
    assert_eq!(s.seen_by_app(), "1");
}

/// A native process's seed runs on the host; its output reaches the log line by line, each on
/// its own stream, before the seeded event.
#[test]
fn a_native_seeds_output_is_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  app:\n    command: echo up && exec sleep 100000\n    ready: { log: up }\n    seed: echo seeded natively; echo to stderr >&2\n    watch: false\n",
    )
    .unwrap();
    let project = project("seednative");
    let (events, code) = up_json_until_ready(dir.path(), state.path(), &project, WITHIN);
    assert_eq!(code, Some(130), "{events:#?}");
    let at = |text: &str, stream: &str| {
        events
            .iter()
            .position(|e| e["service"] == "app" && e["text"] == text && e["stream"] == stream)
            .unwrap_or_else(|| panic!("no {stream} line `{text}`: {events:#?}"))
    };
    let seeded = position(&events, "seeded", "app");
    assert!(at("seeded natively", "stdout") < seeded);
    assert!(at("to stderr", "stderr") < seeded);
}
