//! One-shot tasks (`task:`) and the missing-program check, end to end on real processes (no
//! Docker): a task runs before what waits on it, is skipped while up to date, and runs again when
//! a source changes; a service whose program is not there stops `up` before anything starts
//! (exit 10), named with the task that would create it. Assertions read `up --json` events.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SECS_30: Duration = Duration::from_secs(30);

fn up_until_ready(dir: &Path, state: &Path, project: &str) -> (Vec<Value>, Option<i32>) {
    up_json_until_ready(dir, state, project, SECS_30)
}

fn has(events: &[Value], kind: &str, service: &str) -> bool {
    events
        .iter()
        .any(|v| v["event"]["type"] == kind && v["service"] == service)
}

fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

const TASK_STACK: &str = r#"
services:
  setup:
    command: ./setup.sh
    task: { sources: [input.txt, setup.sh], generates: [out/app] }
  app:
    command: out/app
    depends_on: { setup: completed }
    ready: { log: app up }
    watch: false
"#;

#[test]
fn a_task_runs_first_then_is_skipped_until_a_source_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let project = project("task");
    fs::write(dir.path().join("stack.yaml"), TASK_STACK).unwrap();
    fs::write(dir.path().join("input.txt"), "one\n").unwrap();
    // The task records each run, and creates the program `app` runs (not there before).
    write_exec(
        &dir.path().join("setup.sh"),
        "#!/bin/sh\necho run >> runs.txt\nmkdir -p out\nprintf '#!/bin/sh\\necho app up\\nexec sleep 600\\n' > out/app\nchmod +x out/app\n",
    );
    let runs = || {
        fs::read_to_string(dir.path().join("runs.txt"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // First run: the task runs, completes, then `app` (whose program it made) starts.
    let (events, code) = up_until_ready(dir.path(), state.path(), &project);
    assert_eq!(code, Some(130), "{events:#?}");
    assert_eq!(runs(), 1);
    assert!(!has(&events, "skipped", "setup"), "{events:#?}");
    let order: Vec<&Value> = events
        .iter()
        .filter(|v| {
            (v["event"]["type"] == "exited" && v["service"] == "setup")
                || (v["event"]["type"] == "started" && v["service"] == "app")
        })
        .collect();
    assert_eq!(order.len(), 2, "{events:#?}");
    assert_eq!(
        order[0]["service"], "setup",
        "the task ends before `app` starts"
    );
    assert_eq!(order[0]["event"]["code"], 0);

    // Second run: nothing changed, so the task is skipped, and `app` still starts.
    let (events, code) = up_until_ready(dir.path(), state.path(), &project);
    assert_eq!(code, Some(130), "{events:#?}");
    let skipped = events
        .iter()
        .find(|v| v["event"]["type"] == "skipped" && v["service"] == "setup")
        .unwrap_or_else(|| panic!("no skipped event: {events:#?}"));
    assert_eq!(skipped["event"]["reason"], "sources unchanged");
    assert!(has(&events, "ready", "app"), "{events:#?}");
    assert!(!has(&events, "started", "setup"), "{events:#?}");
    assert_eq!(runs(), 1, "a skipped task does not run");

    // A source changes: it runs again.
    fs::write(dir.path().join("input.txt"), "two\n").unwrap();
    let (events, _) = up_until_ready(dir.path(), state.path(), &project);
    assert!(!has(&events, "skipped", "setup"), "{events:#?}");
    assert!(has(&events, "ready", "app"), "{events:#?}");
    assert_eq!(runs(), 2);

    // What it generates is removed: it runs again too.
    fs::remove_file(dir.path().join("out/app")).unwrap();
    let (events, _) = up_until_ready(dir.path(), state.path(), &project);
    assert!(has(&events, "ready", "app"), "{events:#?}");
    assert_eq!(runs(), 3);
}

#[test]
fn a_missing_program_stops_up_before_anything_starts_and_names_what_provides_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let marker = format!("devstack-missing-{}", std::process::id());
    fs::write(
        dir.path().join("stack.yaml"),
        format!(
            r#"
services:
  web:
    command: python3 -c "import time; print('{marker}', flush=True); time.sleep(600)"
    watch: false
  build-api:
    command: ./make-api.sh
    task: {{ generates: [bin/api-server] }}
  api:
    command: bin/api-server --port 1
    watch: false
  tool:
    command: no-such-program-devstack-test --flag
    watch: false
"#
        ),
    )
    .unwrap();
    write_exec(&dir.path().join("make-api.sh"), "#!/bin/sh\nexit 0\n");
    let out = devstack_env(
        dir.path(),
        &["-p", &project("missing"), "up", "--no-dashboard"],
        &[("XDG_STATE_HOME", &state.path().display().to_string())],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(10), "{err}");
    // Each missing program, where it was looked for, and what provides it.
    assert!(
        err.contains("`api` runs `bin/api-server`, which is not there"),
        "{err}"
    );
    assert!(
        err.contains("task `build-api` creates it: add `depends_on: { build-api: { condition: completed } }` to `api`"),
        "{err}"
    );
    assert!(
        err.contains("`tool` runs `no-such-program-devstack-test`, which is not there (on PATH)"),
        "{err}"
    );
    assert!(
        err.contains("install `no-such-program-devstack-test`"),
        "{err}"
    );
    assert!(err.contains("nothing was started"), "{err}");
    // Nothing started: `web`, whose program is there, never printed its marker.
    assert!(!stdout(&out).contains(&marker), "{}", stdout(&out));
}

#[test]
fn a_task_that_does_not_create_the_program_fails_its_service_at_once_without_a_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        r#"
services:
  setup:
    command: "true"
    task: { generates: [bin/app] }
  app:
    command: bin/app
    depends_on: { setup: completed }
    restart: on-failure
    watch: false
"#,
    )
    .unwrap();
    let started = Instant::now();
    let (events, code) = up_until_ready(dir.path(), state.path(), &project("nocreate"));
    assert_eq!(code, Some(5), "{events:#?}");
    let failed = events
        .iter()
        .find(|v| {
            v["service"] == "app"
                && v["event"]["type"] == "state"
                && v["event"]["state"]["state"] == "failed"
        })
        .unwrap_or_else(|| panic!("no failed state for app: {events:#?}"));
    let reason = failed["event"]["state"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("`bin/app` is not there (task `setup` was to create it)"),
        "{reason}"
    );
    // Never an exit 127 and a restart backoff: the start itself fails.
    assert!(!has(&events, "backoff", "app"), "{events:#?}");
    assert!(!has(&events, "started", "app"), "{events:#?}");
    assert!(started.elapsed() < SECS_30);
}

#[test]
fn a_task_that_would_run_forever_or_names_a_pattern_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  setup:\n    command: ./setup.sh\n    restart: always\n    task: { sources: [\"src/*.py\"] }\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "`setup` is a task (it runs once), but `restart` would start it again forever"
        ),
        "{err}"
    );
    assert!(
        err.contains("`task.sources` of `setup` holds `src/*.py`, which is not a path"),
        "{err}"
    );
    assert!(
        err.contains("2 problems"),
        "both are reported at once: {err}"
    );
}
