//! Shell habits: `completions` prints a registration script for each shell, the completions
//! it asks for name the services of the stack file found from the current folder, and `man`
//! prints a manual page.

mod common;

use common::*;

#[test]
fn completions_register_and_complete_service_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  web:\n    command: sleep 1\n  worker:\n    command: sleep 1\n  db:\n    image: postgres:15\n",
    )
    .unwrap();
    for (shell, marker) in [
        ("bash", "complete -o nospace"),
        ("zsh", "#compdef devstack"),
        (
            "fish",
            "complete --keep-order --exclusive --command devstack",
        ),
    ] {
        let out = devstack(dir.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains(marker), "{shell}: {}", stdout(&out));
    }
    let bad = devstack(dir.path(), &["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    // What bash's registered function asks: the words so far and the index of the current one.
    let complete = |words: &[&str], index: &str| -> Vec<String> {
        let mut args = vec!["--", "devstack"];
        args.extend_from_slice(words);
        let out = devstack_env(
            dir.path(),
            &args,
            &[
                ("COMPLETE", "bash"),
                ("_CLAP_IFS", "\n"),
                ("_CLAP_COMPLETE_INDEX", index),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut got: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        got.sort();
        got
    };
    assert_eq!(complete(&["restart", "w"], "2"), ["web", "worker"]);
    assert_eq!(complete(&["logs", "d"], "2"), ["db"]);
    assert!(complete(&["res"], "1").contains(&"restart".to_string()));
}

#[test]
fn man_prints_a_manual_page_without_a_stack_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = devstack(dir.path(), &["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH devstack 1"), "{page}");
    assert!(page.contains("restart"), "the verbs are listed");
}
