//! Every malformed stack file in tests/fixtures/invalid exits 2 with its expected message, and
//! the full rendering of each is pinned by a snapshot.

mod common;

use std::fs;

use common::*;

fn invalid_fixtures() -> Vec<(String, String)> {
    let dir = fixtures().join("invalid");
    let mut out: Vec<(String, String)> = fs::read_dir(&dir)
        .expect("fixtures/invalid exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "yaml").then(|| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let expect = fs::read_to_string(p.with_extension("expect"))
                    .unwrap_or_else(|_| panic!("{name} has a .expect file"));
                (name, expect.trim().to_string())
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn there_are_at_least_25_malformed_fixtures() {
    let n = invalid_fixtures().len();
    assert!(n >= 25, "only {n} fixtures");
}

#[test]
fn every_malformed_fixture_exits_2_with_its_message() {
    let dir = fixtures().join("invalid");
    let mut failures = Vec::new();
    for (name, expect) in invalid_fixtures() {
        let out = devstack(&dir, &["-f", &name, "validate"]);
        let err = stderr(&out);
        if out.status.code() != Some(2) || !err.contains(&expect) || err.contains("panicked") {
            failures.push(format!(
                "{name}: exit {:?}, expected message `{expect}`, got:\n{err}",
                out.status.code()
            ));
        }
        assert!(
            stdout(&out).is_empty(),
            "{name}: nothing on stdout on error"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_messages_snapshots() {
    let dir = fixtures().join("invalid");
    insta::glob!("fixtures/invalid/*.yaml", |path| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let opts = devstack::config::LoadOptions {
            files: vec![name.clone().into()],
            cwd: dir.clone(),
            ..Default::default()
        };
        let err = devstack::config::load(&opts, &|_| None).expect_err("fixture is invalid");
        insta::assert_snapshot!(err.render(false));
    });
}

#[test]
fn unknown_service_on_the_command_line_is_a_usage_error() {
    let out = devstack(&root(), &["graph", "core"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no service `core` in the stack"), "{err}");
    assert!(err.contains("did you mean `core-service`?"), "{err}");
}

#[test]
fn missing_stack_file_names_the_folder_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no `stack.yaml` (or `compose.yaml`, `docker-compose.yml`) in"),
        "{err}"
    );
    assert!(err.contains("-f FILE"), "{err}");

    let out = devstack(dir.path(), &["-f", "nope.yaml", "validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read `nope.yaml`: no such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn several_problems_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  a:\n    command: x\n    restart: sometimes\n  b:\n    imag: y\n  c:\n    command: z\n    depends_on: [d]\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown restart policy `sometimes`"), "{err}");
    assert!(err.contains("unknown service key `imag`"), "{err}");
    // A service with a bad key no longer hides the problems of the others.
    assert!(
        err.contains("service `c` depends on unknown service `d`"),
        "{err}"
    );
    assert!(err.contains("3 problems"), "{err}");
}
