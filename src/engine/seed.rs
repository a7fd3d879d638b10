//! Seeds (`seed:`): whether a service's seed is done for the data it has now, running it when it
//! is not, and the record of a success.
//!
//! The record (`<state dir>/seeds/<service>`) holds a hash of the seed as written (ports
//! unresolved, so a port chosen again does not seed again) with its sources' content, and what
//! names the data it went into: the creation token devstack labels each named volume with
//! (volumes made again by `down -v` are new data), else the container's id (a new container without volumes starts
//! empty). A native process's data has no name: the seed and its sources alone decide. `reset`
//! forgets the record ([`forget`]); a restore from a snapshot writes it for the data restored
//! ([`mark_done`]): a snapshot's data is what was asked for, not something to seed over.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::build::context;
use crate::config::{Command, Seed, Service, ServiceKind, ServiceName, Volume};
use crate::kernel::{Input, SeedDone};
use crate::logs::{LogHandle, LogLine, Stream};
use crate::plan::HostPorts;
use crate::runtime::{ContainerRuntime, HookExec};

/// Lines of a failed seed's output kept for its reason.
const TAIL_LINES: usize = 12;

/// `<state dir>/seeds/<service>`.
pub(crate) fn stamp_file(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("seeds").join(service)
}

/// The hash of the seed as written and of its sources' content.
fn seed_hash(seed: &Seed) -> std::io::Result<String> {
    let mut h = Sha256::new();
    h.update(b"devstack-seed-1\0");
    h.update(format!(
        "{:?}\0{:?}\0{:?}\0{:?}\0",
        seed.command, seed.user, seed.working_dir, seed.environment
    ));
    super::task::hash_sources(&mut h, &seed.sources)?;
    Ok(context::hex(&h.finalize()))
}

/// What names the data the seed goes into (see the module's notes); an error when a volume the
/// service mounts is not there (the seed cannot be recorded against it).
async fn data_identity<R: ContainerRuntime>(
    rt: &R,
    project: &str,
    svc: &Service,
    container: Option<&str>,
) -> Result<String, String> {
    let ServiceKind::Container { volumes, .. } = &svc.kind else {
        return Ok(String::new());
    };
    let mut names = Vec::new();
    for v in volumes {
        if let Volume::Named { name, .. } = v {
            let engine_name = crate::plan::volume_name(project, name);
            match rt.volume_id(&engine_name).await {
                Ok(Some(id)) => names.push(format!("{engine_name}@{id}")),
                Ok(None) => return Err(format!("volume `{engine_name}` is not there")),
                Err(e) => return Err(format!("cannot inspect volume `{engine_name}`: {e}")),
            }
        }
    }
    if names.is_empty() {
        return Ok(format!("container {}", container.unwrap_or("")));
    }
    Ok(names.join(" "))
}

/// The record a success leaves for this seed and this data.
async fn stamp<R: ContainerRuntime>(
    rt: &R,
    project: &str,
    svc: &Service,
    seed: &Seed,
    container: Option<&str>,
) -> Result<String, String> {
    let seed2 = seed.clone();
    let hash = tokio::task::spawn_blocking(move || seed_hash(&seed2))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read the seed's sources: {e}"))?;
    let data = data_identity(rt, project, svc, container).await?;
    Ok(format!("{hash} {data}"))
}

fn record(state_dir: &Path, service: &str, stamp: &str) -> std::io::Result<()> {
    let f = stamp_file(state_dir, service);
    crate::project::write_whole(&f, format!("{stamp}\n").as_bytes())
}

/// Forgets that `service` was seeded: its next ready runs the seed (`reset`).
pub(crate) fn forget(state_dir: &Path, service: &str) -> std::io::Result<()> {
    match std::fs::remove_file(stamp_file(state_dir, service)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Records the seed of `svc` as done for the data it has now (a restored snapshot). A service
/// without a seed has nothing to record.
pub(crate) async fn mark_done<R: ContainerRuntime>(
    rt: &R,
    project: &str,
    svc: &Service,
    state_dir: &Path,
) -> Result<(), String> {
    let Some(seed) = &svc.seed else {
        return Ok(());
    };
    let stamp = stamp(rt, project, svc, seed, None).await?;
    record(state_dir, &svc.name, &stamp).map_err(|e| format!("cannot record the seed: {e}"))
}

/// What one seed needs to run.
pub(crate) struct SeedRun<R> {
    pub rt: R,
    pub project: String,
    pub svc: Service,
    pub epoch: u64,
    pub container: Option<String>,
    pub ports: HostPorts,
    pub state_dir: Option<PathBuf>,
    /// Where "seeding" is said; none outside a running devstack.
    pub logs: Option<LogHandle>,
}

/// Runs the seed of one start unless it is done for the data; answers with [`Input::Seeded`]
/// on `tx`. Aborting the task (a stop) ends a native seed's process group.
pub(crate) fn spawn<R: ContainerRuntime>(
    run: SeedRun<R>,
    tx: mpsc::UnboundedSender<Input>,
) -> Option<AbortHandle> {
    let seed = run.svc.seed.clone()?;
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let result = within_timeout(&run, &seed)
            .await
            .map(|(ran, reason)| SeedDone {
                ran,
                reason,
                after_ms: started.elapsed().as_millis() as u64,
            });
        // The engine outlives its seeds.
        let _ = tx.send(Input::Seeded {
            service: ServiceName::from(run.svc.name.clone()),
            epoch: run.epoch,
            result,
        });
    });
    Some(task.abort_handle())
}

/// With no devstack running (`reset` straight on the engine): the seed of `svc` in its running
/// container `cid`, unless it is done for the data. Whether it ran, and why.
pub(crate) async fn run_direct<R: ContainerRuntime>(
    rt: R,
    project: &str,
    svc: &Service,
    cid: &str,
    state_dir: &Path,
) -> Result<Option<(bool, String)>, String> {
    let Some(seed) = svc.seed.clone() else {
        return Ok(None);
    };
    let run = SeedRun {
        rt,
        project: project.to_string(),
        svc: svc.clone(),
        epoch: 0,
        container: Some(cid.to_string()),
        ports: HostPorts::default(),
        state_dir: Some(state_dir.to_path_buf()),
        logs: None,
    };
    within_timeout(&run, &seed).await.map(Some)
}

async fn within_timeout<R: ContainerRuntime>(
    run: &SeedRun<R>,
    seed: &Seed,
) -> Result<(bool, String), String> {
    match tokio::time::timeout(seed.timeout, seed_once(run, seed)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "its seed did not finish within {} (`seed.timeout`)",
            humantime::format_duration(seed.timeout)
        )),
    }
}

/// The seed run or found done: whether it ran, and why.
async fn seed_once<R: ContainerRuntime>(
    run: &SeedRun<R>,
    seed: &Seed,
) -> Result<(bool, String), String> {
    let container = run.container.as_deref();
    let stamp = stamp(&run.rt, &run.project, &run.svc, seed, container).await?;
    let file = run
        .state_dir
        .as_deref()
        .map(|d| stamp_file(d, &run.svc.name));
    let recorded = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok());
    let reason = match recorded.as_deref().map(str::trim) {
        Some(r) if r == stamp => {
            return Ok((false, "done for this data, sources unchanged".into()));
        }
        Some(r) if r.split(' ').next() == stamp.split(' ').next() => "new data",
        Some(_) => "the seed or its sources changed",
        None => "first ready",
    };
    if let Some(logs) = &run.logs {
        let shown = command_text(&seed.command);
        let text = format!("seeding ({reason}): `{shown}`");
        logs.event(&run.svc.name, text).await;
    }
    match container {
        Some(cid) if run.svc.is_container() => in_container(run, cid, seed).await,
        _ => on_host(run, seed).await,
    }?;
    if let Some(dir) = &run.state_dir {
        if let Err(e) = record(dir, &run.svc.name, &stamp) {
            tracing::warn!("cannot record the seed of `{}`: {e}", run.svc.name);
        }
    }
    Ok((true, reason.to_string()))
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Argv(v) => v.join(" "),
    }
}

/// In the container, as `docker exec` runs it: a string through `sh -c`, a list as it is. Its
/// output goes to the log as the service's once it ends.
async fn in_container<R: ContainerRuntime>(
    run: &SeedRun<R>,
    cid: &str,
    seed: &Seed,
) -> Result<(), String> {
    let ports = &run.ports;
    let argv = match &seed.command {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), ports.resolve(s)],
        Command::Argv(v) => v.iter().map(|a| ports.resolve(a)).collect(),
    };
    let exec = HookExec {
        argv,
        user: seed.user.clone(),
        privileged: false,
        working_dir: seed.working_dir.clone(),
        env: seed
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", ports.resolve(v)))
            .collect(),
    };
    match run.rt.exec_hook(cid, &exec).await {
        Ok((code, out)) => {
            if let Some(logs) = &run.logs {
                let at = std::time::SystemTime::now();
                let lines = out
                    .lines()
                    .map(|l| {
                        LogLine::output(at, run.svc.name.as_str(), Stream::Stdout, l.to_string())
                    })
                    .collect();
                logs.lines(lines).await;
            }
            match code {
                0 => Ok(()),
                _ => Err(failed(code, &out)),
            }
        }
        Err(e) => Err(format!("its seed could not run: {e}")),
    }
}

/// On the host, in the process's working folder with its environment and the seed's.
async fn on_host<R>(run: &SeedRun<R>, seed: &Seed) -> Result<(), String> {
    let Some(mut spec) = crate::unit::process::spawn_spec(&run.project, &run.svc, &run.ports)
    else {
        return Err("its seed has no container to run in".into());
    };
    // Not marked as the service's: a seed is not one of its escaped processes.
    spec.env.retain(|(k, _)| k != crate::process::MARK_VAR);
    spec.env.extend(
        seed.environment
            .iter()
            .map(|(k, v)| (k.clone(), run.ports.resolve(v))),
    );
    spec.command = match &seed.command {
        Command::Shell(s) => Command::Shell(run.ports.resolve(s)),
        Command::Argv(v) => Command::Argv(v.iter().map(|a| run.ports.resolve(a)).collect()),
    };
    let mut child =
        crate::process::spawn(&spec).map_err(|e| format!("its seed could not start: {e}"))?;
    let (out, err) = child.take_output();
    let (out, err) = tokio::join!(
        pass_on(out, run, Stream::Stdout),
        pass_on(err, run, Stream::Stderr)
    );
    let code = child.wait().await;
    if code == 0 {
        return Ok(());
    }
    Err(failed(code, &format!("{out}{err}")))
}

/// A native seed's output, line by line as it comes, to the log as the service's; its last
/// lines, for a failure's reason.
async fn pass_on<T: tokio::io::AsyncRead + Unpin, R>(
    pipe: Option<T>,
    run: &SeedRun<R>,
    stream: Stream,
) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    let mut buf = Vec::new();
    // Not `lines()`: a line that is not UTF-8 must not stop the reading (the seed would block
    // on a full pipe).
    while matches!(reader.read_until(b'\n', &mut buf).await, Ok(n) if n > 0) {
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        buf.clear();
        if let Some(logs) = &run.logs {
            let at = std::time::SystemTime::now();
            logs.line(LogLine::output(
                at,
                run.svc.name.as_str(),
                stream,
                line.clone(),
            ))
            .await;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into_iter().map(|l| l + "\n").collect()
}

/// A failed seed's reason: its exit code and last lines.
fn failed(code: i64, output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.is_empty() {
        format!("its seed exited with code {code}")
    } else {
        format!("its seed exited with code {code}:\n{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_stack_in as load;

    #[test]
    fn the_hash_follows_the_seed_and_its_sources_not_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seed.sql"), "insert 1;\n").unwrap();
        let stack = load(
            dir.path(),
            "services:\n  db:\n    image: postgres:16\n    seed: { command: \"psql -p ${port:db:5432} -f /s/seed.sql\", sources: [seed.sql] }\n",
        );
        let seed = stack.services["db"].seed.clone().unwrap();
        let h1 = seed_hash(&seed).unwrap();
        assert_eq!(
            seed_hash(&seed).unwrap(),
            h1,
            "the same seed hashes the same"
        );
        std::fs::write(dir.path().join("seed.sql"), "insert 2;\n").unwrap();
        let h2 = seed_hash(&seed).unwrap();
        assert_ne!(h2, h1, "a changed source changes the hash");
        let mut other = seed.clone();
        other.user = Some("postgres".into());
        assert_ne!(
            seed_hash(&other).unwrap(),
            h2,
            "a changed setting changes it"
        );
    }

    #[test]
    fn a_failure_says_its_code_and_last_lines() {
        let out = (1..=20).map(|i| format!("line {i}\n")).collect::<String>();
        let reason = failed(3, &out);
        assert!(reason.starts_with("its seed exited with code 3:\n"));
        assert!(reason.ends_with("line 20"));
        assert!(!reason.contains("line 8\n"), "{reason}");
        assert_eq!(failed(1, "\n"), "its seed exited with code 1");
    }

    #[test]
    fn forgetting_a_seed_never_recorded_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        forget(dir.path(), "db").unwrap();
        record(dir.path(), "db", "h v").unwrap();
        assert!(stamp_file(dir.path(), "db").exists());
        forget(dir.path(), "db").unwrap();
        assert!(!stamp_file(dir.path(), "db").exists());
    }
}
