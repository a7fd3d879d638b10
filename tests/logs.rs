//! Logs as data through the built binary: a process printing JSON, logfmt and plain lines, then
//! `devstack logs --level warn --json`, `--field`, and `--run -1` after a second run. No Docker.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// Prints a line per logger style, then the run's marker, then sleeps.
const STACK: &str = r#"services:
  app:
    command: [python3, -u, app.py]
    watch: false
    ready: { log: all printed }
"#;

const APP: &str = r#"import json, os, sys, time
run = open("run.txt").read().strip()
print(json.dumps({"level": "info", "msg": "starting", "run": run}))
print(json.dumps({"level": 40, "msg": "slow disk", "disk": "sda", "run": run}))
print(json.dumps({"level": "error", "msg": "db down", "attempt": 3, "run": run}))
print("level=warn msg=\"cache miss\" key=abc run=" + run)
print("error_count=0 plain text run " + run)
print("ERROR:root:plain python error run " + run)
print("INFO:     uvicorn info run " + run)
sys.stderr.write("[2024-01-01 12:00:00,000: WARNING/MainProcess] celery warning run " + run + "\n")
sys.stderr.flush()
print("all printed " + run)
time.sleep(3600)
"#;

fn records(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn levels_fields_and_runs_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("stack.yaml"), STACK).unwrap();
    fs::write(dir.path().join("app.py"), APP).unwrap();
    let project = project("logsdata");
    let state_s = state.path().display().to_string();
    let env = [("XDG_STATE_HOME", state_s.as_str())];
    let dev = |args: &[&str]| {
        let mut all = vec!["-p", project.as_str()];
        all.extend_from_slice(args);
        devstack_env(dir.path(), &all, &env)
    };

    for run in ["first", "second"] {
        fs::write(dir.path().join("run.txt"), run).unwrap();
        let (mut child, rx) = spawn_up(dir.path(), &["-p", &project, "up", "--json"], &env);
        let mut seen = Vec::new();
        wait_for(
            &rx,
            "\"type\":\"all_ready\"",
            Duration::from_secs(30),
            &mut seen,
        );
        // The lines are in the files once `logs` shows the marker (polled under a deadline).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = dev(&["logs", "app", "--grep", "all printed"]);
            if stdout(&out).contains(&format!("all printed {run}")) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the marker never reached the files: {}",
                stdout(&out)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        interrupt(&child);
        assert_eq!(exit_within(&mut child, Duration::from_secs(20)), Some(130));
    }

    // The current run (the default): warnings and above, each with its level and fields.
    let warn = records(&dev(&["logs", "app", "--level", "warn", "--json"]));
    let texts: Vec<&str> = warn.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(warn.len(), 5, "{texts:#?}");
    assert!(texts.iter().all(|t| t.contains("second")), "{texts:#?}");
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("error_count") || t.contains("uvicorn")),
        "{texts:#?}"
    );
    let by_text = |needle: &str| {
        warn.iter()
            .find(|r| r["text"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {texts:#?}"))
    };
    assert_eq!(by_text("slow disk")["level"], "warn");
    assert_eq!(by_text("slow disk")["fields"]["disk"], "sda");
    assert_eq!(by_text("db down")["level"], "error");
    assert_eq!(by_text("db down")["fields"]["attempt"], 3);
    assert_eq!(by_text("cache miss")["fields"]["key"], "abc");
    assert_eq!(by_text("plain python error")["level"], "error");
    assert_eq!(by_text("celery warning")["stream"], "stderr");
    // The keys `logs --json` had before stay.
    for key in ["t", "service", "stream", "text"] {
        assert!(warn[0].get(key).is_some(), "{key} in {}", warn[0]);
    }

    // Errors only, in text.
    let err = dev(&["logs", "app", "--level", "error"]);
    assert_eq!(stdout(&err).lines().count(), 2, "{}", stdout(&err));

    // Fields, JSON and logfmt alike.
    let sda = records(&dev(&["logs", "app", "--field", "disk=sda", "--json"]));
    assert_eq!(sda.len(), 1);
    let both = records(&dev(&["logs", "app", "--field", "run=second", "--json"]));
    assert_eq!(
        both.len(),
        4,
        "three JSON lines and one logfmt line: {both:#?}"
    );

    // The previous run, and every run.
    let previous = records(&dev(&[
        "logs", "app", "--run", "-1", "--level", "warn", "--json",
    ]));
    assert_eq!(previous.len(), 5);
    assert!(previous
        .iter()
        .all(|r| r["text"].as_str().unwrap().contains("first")));
    let all = records(&dev(&[
        "logs",
        "app",
        "--run",
        "all",
        "--grep",
        "all printed",
        "--json",
    ]));
    assert_eq!(all.len(), 2);
    let missing = dev(&["logs", "app", "--run", "-5"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("no run -5"),
        "{}",
        stderr(&missing)
    );
}
