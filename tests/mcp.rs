//! `devstack mcp` driven by the official MCP Python SDK client (PyPI `mcp`, installed by
//! scripts/prepare-test-env.sh) against the running example stack: the tools are listed, `ps`,
//! `restart`, `logs`, `wait` and `config` answer, `--read-only` offers nothing that changes
//! anything, and no answer carries the secret given to the stack.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

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

/// One MCP server answers for a sibling instance when a tool names it (`instance`), and for its
/// own otherwise: two instances of one stack of processes, each its own devstack.
#[test]
fn a_tool_with_an_instance_acts_on_that_instance() {
    let python = mcp_python();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  app:\n    command: [sleep, \"600\"]\n    watch: false\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let project = project("mcpinst");
    let run = |instance: &str, args: &[&str]| {
        let mut all = vec!["-p", project.as_str(), "--instance", instance];
        all.extend_from_slice(args);
        devstack_env(dir.path(), &all, &[("XDG_STATE_HOME", st)])
    };
    struct Down<'a>(&'a dyn Fn(&str, &[&str]) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)("", &["down"]);
            (self.0)("agent-1", &["down"]);
        }
    }
    let _down = Down(&run);
    for instance in ["", "agent-1"] {
        let up = run(instance, &["up", "--wait"]);
        assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    }
    let pid_of = |rows: &serde_json::Value| rows[0]["pid"].as_u64().expect("a pid");
    let ps = |instance: &str| -> serde_json::Value {
        let out = run(instance, &["ps", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (main_pid, agent_pid) = (pid_of(&ps("")), pid_of(&ps("agent-1")));
    assert_ne!(main_pid, agent_pid);

    let out = Command::new(&python)
        .arg(root().join("tests/mcp/instance.py"))
        .args([env!("CARGO_BIN_EXE_devstack"), project.as_str(), "agent-1"])
        .current_dir(dir.path())
        .env(common::MAIN_INSTANCE.0, common::MAIN_INSTANCE.1)
        .env("XDG_STATE_HOME", st)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(pid_of(&seen["own"]), main_pid, "{seen}");
    assert_eq!(pid_of(&seen["other"]), agent_pid, "{seen}");
    // The stop reached the other instance, and only it.
    assert_eq!(seen["stopped"][0]["state"], "stopped", "{seen}");
    assert_eq!(ps("agent-1")[0]["state"], "stopped");
    assert_eq!(ps("")[0]["state"], "ready");
    assert_eq!(pid_of(&ps("")), main_pid);
}
