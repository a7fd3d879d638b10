//! Random mutations of real stack files fed to the loader: every input gives a clean error or a
//! valid stack, never a panic; the binary exits 0 or 2 on each.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::*;

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    ":", "-", "- ", "{", "}", "[", "]", "\"", "'", "\t", "&a ", "*a", "<<: *a", "$", "${", "${X:?need x}", "${port:",
    "${port:postgres:5432}", "${port:nope:1}", "#", "!", "!!binary ", "|", ">", "%", "@", "\n", "  ", "? ", ",", "~",
    "null", "{}", "[]", "70000", "-1", "0", "yes", "1e400", "0x1F", "é", "\u{feff}", "\0", "services:", "image:",
    "command:", "depends_on: [", "ready:", "ports:", "restart: always", "completed", "---\n", "...",
];

fn mutate(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    let mut doc = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let text = String::from_utf8_lossy(&doc).into_owned();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let li = rng.usize(..lines.len());
        match rng.u8(0..11) {
            0 => {
                lines.remove(li);
            }
            1 => {
                let l = lines[li].clone();
                lines.insert(li, l);
            }
            2 => {
                let lj = rng.usize(..lines.len());
                lines.swap(li, lj);
            }
            3 => {
                let l = &mut lines[li];
                let at = (0..=l.len())
                    .filter(|i| l.is_char_boundary(*i))
                    .nth(rng.usize(..=l.chars().count()))
                    .unwrap_or(0);
                l.insert_str(at, TOKENS[rng.usize(..TOKENS.len())]);
            }
            4 => {
                if rng.bool() {
                    lines[li].insert(0, ' ');
                } else if lines[li].starts_with(' ') {
                    lines[li].remove(0);
                }
            }
            5 => {
                // Replace the value after a `key:` with a token.
                if let Some(colon) = lines[li].find(": ") {
                    lines[li].truncate(colon + 2);
                    lines[li].push_str(TOKENS[rng.usize(..TOKENS.len())]);
                }
            }
            6 => {
                let cut = rng.usize(..=lines.len());
                lines.truncate(cut);
            }
            7 => lines.insert(li, "\tx: 1".to_string()),
            8 => {
                let lj = rng.usize(..lines.len());
                let l = lines[lj].clone();
                lines[li] = l;
            }
            9 => lines.insert(li, "x: &a [*a, *a]".to_string()),
            _ => {}
        }
        doc = lines.join("\n").into_bytes();
        doc.push(b'\n');
        // Sometimes a raw byte, possibly not UTF-8.
        if rng.u8(0..8) == 0 && !doc.is_empty() {
            let at = rng.usize(..doc.len());
            doc[at] = rng.u8(..);
        }
    }
    doc
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = vec![std::fs::read(root().join("stack.yaml")).unwrap()];
    for f in ["valid/base.yaml", "valid/override.yaml"] {
        out.push(std::fs::read(fixtures().join(f)).unwrap());
    }
    out
}

fn load_in(dir: &Path) -> Result<(), String> {
    let opts = devstack::config::LoadOptions {
        files: vec!["stack.yaml".into()],
        cwd: dir.to_path_buf(),
        ..Default::default()
    };
    match devstack::config::load(&opts, &|k| (k == "HOME").then(|| "/home/x".to_string())) {
        Ok(_) => Ok(()),
        Err(e) => {
            assert!(
                !e.diagnostics.is_empty(),
                "an error names at least one problem"
            );
            let text = e.render(false);
            assert!(!text.trim().is_empty());
            Err(text)
        }
    }
}

#[test]
fn loader_never_panics_on_mutated_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yaml");
    let mut rng = fastrand::Rng::with_seed(0x5eed_0001);
    let seeds = seeds();
    let (mut ok, mut err) = (0, 0);
    for i in 0..3000 {
        let seed = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed);
        std::fs::write(&file, &input).unwrap();
        match catch_unwind(AssertUnwindSafe(|| load_in(dir.path()))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => {
                let keep = std::env::temp_dir().join(format!("devstack-fuzz-panic-{i}.yaml"));
                std::fs::write(&keep, &input).unwrap();
                panic!(
                    "the loader panicked on mutation {i}; input saved to {}",
                    keep.display()
                );
            }
        }
    }
    // Both outcomes must be exercised, or the mutations are too weak or too strong to mean much.
    assert!(ok > 100 && err > 100, "ok {ok}, errors {err}");
}

#[test]
fn binary_exits_0_or_2_on_mutated_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    let seeds = seeds();
    for i in 0..150 {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        std::fs::write(dir.path().join("stack.yaml"), &input).unwrap();
        let out = devstack(dir.path(), &["validate"]);
        let err = stderr(&out);
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)) && !err.contains("panicked"),
            "mutation {i} gave exit {:?}:\n{err}\ninput:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&input)
        );
    }
}
