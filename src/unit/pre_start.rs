//! Compose's `pre_start` steps for the container unit: init containers run one after the other
//! beside the service's created container (its volumes and binds, its network), before it
//! starts. A run that succeeded is recorded in the project's state folder under the service's
//! container and the steps' key (config hash and definitions), so the steps are not run again
//! for that container: not on a warm `up`, not on a restart. A new container (a changed
//! definition, a `down` and `up`) runs them again. Mechanism only: when to start is the kernel's.

use std::path::{Path, PathBuf};

use crate::logs::{LogHandle, LogLine, Stream};
use crate::runtime::{ContainerRuntime, ContainerSpec, RuntimeError};

/// Where the record of the service's last succeeded `pre_start` run is kept.
pub(crate) fn record_file(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("pre_start").join(service)
}

/// The record's text: the container, then the steps' key.
fn record_text(container: &str, key: &str) -> String {
    format!("{container} {key}\n")
}

/// Runs the `pre_start` steps of `spec`'s service for its created container `cid`, unless they
/// succeeded for it already; the first that fails ends the run, with why (its exit code and
/// the last lines of its output).
pub(crate) async fn run<R: ContainerRuntime>(
    rt: &R,
    spec: &ContainerSpec,
    cid: &str,
    state_dir: Option<&Path>,
    logs: &LogHandle,
) -> Result<(), String> {
    let steps = &spec.options.pre_start;
    let name = &spec.service;
    if steps.is_empty() {
        return Ok(());
    }
    let key = crate::plan::pre_start_key(spec);
    let record = state_dir.map(|d| record_file(d, name));
    let done = record
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .is_some_and(|t| t == record_text(cid, &key));
    if done {
        return Ok(());
    }
    for (n, step) in steps.iter().enumerate() {
        let init = crate::plan::init_spec(spec, step, n, cid);
        let shown = match &init.cmd {
            Some(argv) => format!("`{}`", argv.join(" ")),
            None => format!("`{}`", init.image),
        };
        logs.event(name, format!("pre_start step {} {shown}", n + 1))
            .await;
        let ran = match rt.run_init(&init).await {
            // A step's own image may not be here yet: one pull, as for a service's image.
            Err(RuntimeError::ImageUnavailable { .. }) if init.image != spec.image => {
                let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
                match rt.pull(&init.image, tx).await {
                    Ok(()) => rt.run_init(&init).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        if let Ok((_, out)) = &ran {
            // The step's output (its last lines) is the service's: in the log view, its log
            // file, and the lines a failed start is reported with.
            let at = std::time::SystemTime::now();
            let lines = out
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    LogLine::output(at, name.as_str(), Stream::Stdout, l.trim_end().to_string())
                })
                .collect();
            logs.lines(lines).await;
        }
        match ran {
            Ok((0, _)) => {}
            Ok((code, out)) => {
                return Err(format!(
                    "pre_start step {} {shown} exited with {code}: {}",
                    n + 1,
                    last_lines(&out, 5)
                ))
            }
            Err(e) => {
                return Err(format!(
                    "pre_start step {} {shown} could not run: {e}",
                    n + 1
                ))
            }
        }
    }
    if let Some(f) = record {
        if let Err(e) = crate::project::write_whole(&f, record_text(cid, &key).as_bytes()) {
            // The steps succeeded; without the record they run again next time, which is safe.
            logs.event(name, format!("could not record the pre_start run: {e}"))
                .await;
        }
    }
    Ok(())
}

/// The last `n` non-empty lines of `out` on one line, for a reason that reads as one line in
/// the log view and `ps` (the lines themselves are in the service's log too).
fn last_lines(out: &str, n: usize) -> String {
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 3, ""),
            ("a\nb\n\nc\n", 2, "b | c"),
            ("a\nb\n", 5, "a | b"),
            ("one  \n", 1, "one"),
        ];
        for (out, n, want) in cases {
            assert_eq!(last_lines(out, *n), *want, "{out:?}");
        }
    }
}
