//! `devstack mcp` driven by the official MCP Python SDK client (PyPI `mcp`, installed by
//! scripts/prepare-test-env.sh) against the running example stack: the tools are listed, `ps`,
//! `restart`, `logs`, `wait` and `config` answer, `--read-only` offers nothing that changes
//! anything, and no answer carries the secret given to the stack.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

fn mcp_python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let py = cache.join("devstack/mcp-client/bin/python");
    assert!(
        py.exists(),
        "the MCP client SDK is missing: run scripts/prepare-test-env.sh (it installs PyPI `mcp` into {})",
        py.display()
    );
    py
}

#[test]
fn an_mcp_client_drives_the_example_stack_without_seeing_secrets() {
    if !docker_or_skip(&["postgres:15", "redis:7-alpine"]) {
        return;
    }
    let python = mcp_python();
    let venv = root().join("examples/ensurestudy/.venv/bin/python");
    assert!(
        venv.exists(),
        "the example app's virtualenv is missing: run scripts/setup-example.sh"
    );
    let project = project("mcp");
    let state = tempfile::tempdir().unwrap();
    let secret = "mcp-test-secret-3f9a7c";
    let env = [
        ("XDG_STATE_HOME", state.path().to_str().unwrap()),
        ("JWT_SECRET_KEY", secret),
    ];
    let _down = Teardown {
        dir: root(),
        project: project.clone(),
        files: vec![],
    };
    let (mut up, _lines) = spawn_up(
        &root(),
        &[
            "-p",
            &project,
            "up",
            "--free-ports",
            "--no-watch",
            "core-service",
        ],
        &env,
    );
    let ready = devstack_env(
        &root(),
        &["-p", &project, "wait", "--timeout", "120s"],
        &env,
    );
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));

    for mode in [None, Some("--read-only")] {
        let mut cmd = Command::new(&python);
        cmd.arg(root().join("tests/mcp/client.py"))
            .args([env!("CARGO_BIN_EXE_devstack"), project.as_str(), secret])
            .args(mode)
            .current_dir(root())
            .env(common::MAIN_INSTANCE.0, common::MAIN_INSTANCE.1)
            .envs(env);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{mode:?}\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        );
        let seen: serde_json::Value = serde_json::from_str(stdout(&out).trim())
            .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
        assert!(seen["answers"].as_u64().unwrap() >= 2, "{seen}");
    }

    interrupt(&up);
    assert_eq!(exit_within(&mut up, Duration::from_secs(60)), Some(130));
}
