//! One-shot tasks (`task:`): whether one is up to date, so that a run skips it — its sources
//! hashed as they were at its last successful run, the files it generates present, its status
//! commands passing — and the record of a successful run. [`Checks`] is the engine's part that
//! runs the checks the kernel asks for ([`crate::kernel::Effect::CheckTask`]), begins the first
//! ones early ([`Checks::begin_early`]) and keeps the hash to record once the run it allowed
//! succeeds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::task::AbortOnDropHandle;

use crate::build::context;
use crate::build::dockerignore::DockerIgnore;
use crate::config::ServiceName;
use crate::config::{Service, ServiceKind, Task};

/// A status command that takes longer than this counts as "not up to date".
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Skip the run; why, and how long the check took.
    UpToDate { reason: String, after_ms: u64 },
    /// Run it; on success, record this hash of its sources (when it has sources).
    Run { hash: Option<String> },
}

/// Where the hash of a task's last successful run is kept: `<state dir>/tasks/<service>`.
pub(crate) fn stamp_file(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("tasks").join(service)
}

/// The hash of everything that decides what the task does: its command, working folder, the
/// content of its sources (a folder with everything in it) and the list of what it generates.
fn sources_hash(svc: &Service, task: &Task) -> std::io::Result<String> {
    let mut h = Sha256::new();
    h.update(b"devstack-task-1\0");
    match &svc.kind {
        ServiceKind::Process {
            command,
            working_dir,
        } => {
            h.update(format!("{command:?}\0{}\0", working_dir.display()));
        }
        ServiceKind::Container { image, command, .. } => {
            h.update(format!("{image}\0{command:?}\0"));
        }
    }
    for p in &task.generates {
        h.update(format!("generates {}\0", p.display()));
    }
    hash_sources(&mut h, &task.sources)?;
    Ok(context::hex(&h.finalize()))
}

/// Adds the content of each source to `h`: a file's bytes, a folder with everything in it (as
/// a build context is hashed), a missing one as missing.
pub(crate) fn hash_sources(h: &mut Sha256, sources: &[PathBuf]) -> std::io::Result<()> {
    for p in sources {
        h.update(format!("source {}\0", p.display()));
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let ctx = super::build::scan_with_cache(p, &DockerIgnore::default())?;
                h.update(format!("dir {}\0", ctx.hash));
            }
            Ok(_) => {
                let bytes = std::fs::read(p)?;
                h.update(format!("file {}\0", context::hex(&Sha256::digest(&bytes))));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => h.update(b"missing\0"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `svc` (a task) is up to date. Never fails: what cannot be checked means "run it".
pub(crate) async fn check(svc: &Service, state_dir: Option<&Path>) -> Check {
    let Some(task) = svc.task.clone() else {
        return Check::Run { hash: None };
    };
    let started = Instant::now();
    let mut reasons = Vec::new();
    let mut hash = None;
    if !task.sources.is_empty() {
        let (svc2, task2) = (svc.clone(), task.clone());
        let computed = tokio::task::spawn_blocking(move || sources_hash(&svc2, &task2))
            .await
            .ok()
            .and_then(Result::ok);
        let Some(computed) = computed else {
            return Check::Run { hash: None };
        };
        let recorded = state_dir
            .map(|d| stamp_file(d, &svc.name))
            .and_then(|f| std::fs::read_to_string(f).ok());
        let generated = task.generates.iter().all(|p| p.exists());
        let fresh = recorded.as_deref().map(str::trim) == Some(computed.as_str()) && generated;
        hash = Some(computed);
        if !fresh {
            return Check::Run { hash };
        }
        reasons.push("sources unchanged");
    } else if !task.generates.is_empty() && !task.generates.iter().all(|p| p.exists()) {
        return Check::Run { hash: None };
    }
    if !task.status.is_empty() {
        let cwd = match &svc.kind {
            ServiceKind::Process { working_dir, .. } => working_dir.clone(),
            ServiceKind::Container { .. } => std::env::current_dir().unwrap_or_default(),
        };
        for cmd in &task.status {
            let run = tokio::process::Command::new("sh")
                .args(["-c", cmd])
                .current_dir(&cwd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status();
            match tokio::time::timeout(STATUS_TIMEOUT, run).await {
                Ok(Ok(s)) if s.success() => {}
                _ => return Check::Run { hash },
            }
        }
        reasons.push("status commands passed");
    }
    if reasons.is_empty() {
        return Check::Run { hash };
    }
    Check::UpToDate {
        reason: reasons.join(", "),
        after_ms: started.elapsed().as_millis() as u64,
    }
}

/// The engine's task checks: each runs as a tracked job, its answer comes back on the channel
/// [`Checks::new`] returns, to be turned into the kernel's input by [`Checks::answer`].
pub(crate) struct Checks {
    state_dir: Option<PathBuf>,
    answers: tokio::sync::mpsc::UnboundedSender<(String, u64, Check)>,
    /// The sources' hash of each start a check let run, recorded when that run exits 0.
    hashes: std::collections::HashMap<String, (u64, String)>,
    /// Checks begun before the kernel asked for them ([`Checks::begin_early`]), by service.
    /// Dropped, wherever it is (here, or in the job of the ask that took it), an early check
    /// stops, and its status command with it.
    early: std::collections::HashMap<String, AbortOnDropHandle<Check>>,
}

/// A check's answer: service, epoch, what it found.
pub(crate) type Answer = (String, u64, Check);

impl Checks {
    pub(crate) fn new(
        state_dir: Option<PathBuf>,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<Answer>) {
        let (answers, rx) = tokio::sync::mpsc::unbounded_channel();
        let checks = Self {
            state_dir,
            answers,
            hashes: Default::default(),
            early: Default::default(),
        };
        (checks, rx)
    }

    /// Begins now, while the engine prepares (ports, network, volumes, images), the check of
    /// each native task among `selected` that the kernel asks for at once and that only status
    /// commands decide: their answer is then there or on its way when asked, instead of
    /// starting only then (a status command is a process or more: the reference stack's takes
    /// 25-35 ms, before anything that waits for the task can start). Called after the host's
    /// preflight, which ends what a killed run left (a status command must not see a leftover
    /// that is about to go). Not checked early: a task with `sources` (hashed when asked, with
    /// the watcher running, so an edit meanwhile counts), a container's (the kernel asks once
    /// its image is there), one that waits for another among `selected`.
    pub(crate) fn begin_early(&mut self, stack: &crate::config::Stack, selected: &[String]) {
        for name in selected {
            let Some(svc) = stack.services.get(name) else {
                continue;
            };
            let status_only = svc
                .task
                .as_ref()
                .is_some_and(|t| t.sources.is_empty() && !t.status.is_empty());
            // As the kernel plans it (`kernel::plan::Spec::of`): dependencies outside
            // `selected` are not waited for.
            let first = svc.depends_on.keys().all(|d| !selected.contains(d));
            if !status_only || !first || svc.is_container() {
                continue;
            }
            let (svc, dir) = (svc.clone(), self.state_dir.clone());
            let job = tokio::spawn(async move { check(&svc, dir.as_deref()).await });
            self.early.insert(name.clone(), AbortOnDropHandle::new(job));
        }
    }

    /// Early checks not taken yet are dropped: the stack they were made from changed.
    pub(crate) fn forget_early(&mut self) {
        self.early.clear();
    }

    /// Starts the check of one start of `svc`; the first ask of a service takes its early
    /// check, if it has one.
    pub(crate) fn ask(&mut self, svc: &Service, epoch: u64, jobs: &mut tokio::task::JoinSet<()>) {
        let early = self.early.remove(&svc.name);
        let (svc, dir, tx) = (svc.clone(), self.state_dir.clone(), self.answers.clone());
        jobs.spawn(async move {
            let c = match early {
                Some(job) => match job.await {
                    Ok(c) => c,
                    Err(_) => check(&svc, dir.as_deref()).await,
                },
                None => check(&svc, dir.as_deref()).await,
            };
            // The engine may have ended meanwhile; then nobody needs the answer.
            let _ = tx.send((svc.name.clone(), epoch, c));
        });
    }

    /// The kernel's input for an answer; the hash is kept for the run it lets go ahead.
    pub(crate) fn answer(&mut self, (service, epoch, check): Answer) -> crate::kernel::Input {
        let verdict = match check {
            Check::UpToDate { reason, after_ms } => {
                crate::kernel::TaskVerdict::UpToDate { reason, after_ms }
            }
            Check::Run { hash } => {
                // An older start's late answer never replaces a newer one's.
                let newer = self.hashes.get(&service).is_some_and(|(e, _)| *e > epoch);
                if let (Some(h), false) = (hash, newer) {
                    self.hashes.insert(service.clone(), (epoch, h));
                }
                crate::kernel::TaskVerdict::Run
            }
        };
        crate::kernel::Input::TaskChecked {
            service: ServiceName::from(service),
            epoch,
            verdict,
        }
    }

    /// A run ended: a clean exit 0 of the start a check allowed records its hash.
    pub(crate) fn exited(&mut self, service: &str, epoch: u64, clean: bool) {
        let Some((e, hash)) = self.hashes.remove(service) else {
            return;
        };
        if let (true, true, Some(dir)) = (e == epoch, clean, &self.state_dir) {
            if let Err(err) = record(dir, service, &hash) {
                tracing::debug!("cannot record the run of task `{service}`: {err}");
            }
        }
    }
}

/// Keeps the hash of a successful run.
pub(crate) fn record(state_dir: &Path, service: &str, hash: &str) -> std::io::Result<()> {
    let f = stamp_file(state_dir, service);
    crate::project::write_whole(&f, format!("{hash}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_stack_in as load;

    #[tokio::test]
    async fn a_task_runs_until_a_success_is_recorded_then_skips_until_a_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(dir.path().join("requirements.txt"), "flask==3\n").unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.py"), "x = 1\n").unwrap();
        let stack = load(
            dir.path(),
            "services:\n  setup:\n    command: ./setup.sh\n    task: { sources: [requirements.txt, src], generates: [out/done] }\n",
        );
        let svc = &stack.services["setup"];
        // Never run: run it.
        let Check::Run { hash: Some(h) } = check(svc, Some(&state)).await else {
            panic!("a task never run must run with a hash to record");
        };
        // A success recorded, but what it generates is not there: run it.
        record(&state, "setup", &h).unwrap();
        assert!(matches!(check(svc, Some(&state)).await, Check::Run { .. }));
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/done"), "").unwrap();
        match check(svc, Some(&state)).await {
            Check::UpToDate { reason, .. } => assert_eq!(reason, "sources unchanged"),
            other => panic!("expected up to date, got {other:?}"),
        }
        // A file inside a source folder changes: run it, with a new hash.
        std::fs::write(dir.path().join("src/a.py"), "x = 2\n").unwrap();
        match check(svc, Some(&state)).await {
            Check::Run { hash: Some(h2) } => assert_ne!(h2, h),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    /// The lines the status commands of a test wrote to `checks.log` in `dir`, in order.
    fn logged(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("checks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (10 s at most) until `checks.log` in `dir` has `n` lines.
    async fn until_logged(dir: &Path, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while logged(dir).len() < n {
            assert!(Instant::now() < deadline, "only {:?}", logged(dir));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A status-only task that waits for nothing is checked before the kernel asks; the first
    /// ask takes that check, later asks check anew, and a task that waits for another is
    /// checked only when asked.
    #[tokio::test]
    async fn a_task_without_dependencies_is_checked_early_and_its_first_ask_takes_that_check() {
        let dir = tempfile::tempdir().unwrap();
        let stack = load(
            dir.path(),
            "services:\n  setup:\n    command: ./setup.sh\n    task: { status: [\"echo setup >> checks.log\"] }\n  after:\n    command: ./after.sh\n    depends_on: { setup: completed }\n    task: { status: [\"echo after >> checks.log\"] }\n",
        );
        let (mut checks, mut answers) = Checks::new(Some(dir.path().join("state")));
        checks.begin_early(&stack, &["setup".to_string(), "after".to_string()]);
        until_logged(dir.path(), 1).await;
        let mut jobs = tokio::task::JoinSet::new();
        checks.ask(&stack.services["setup"], 1, &mut jobs);
        let input = checks.answer(answers.recv().await.unwrap());
        assert!(matches!(
            input,
            crate::kernel::Input::TaskChecked {
                epoch: 1,
                verdict: crate::kernel::TaskVerdict::UpToDate { .. },
                ..
            }
        ));
        // The next ask checks anew; only then is the dependent task checked, when asked: the
        // log shows each status command's runs in order, the early one once.
        checks.ask(&stack.services["setup"], 2, &mut jobs);
        checks.answer(answers.recv().await.unwrap());
        checks.ask(&stack.services["after"], 1, &mut jobs);
        checks.answer(answers.recv().await.unwrap());
        assert_eq!(logged(dir.path()), ["setup", "setup", "after"]);
    }

    /// An early check that is dropped (the stack changed, the run ended) stops, and its status
    /// command with it: the command of a dropped check never finishes, while a check made
    /// afterwards runs to its end.
    #[tokio::test]
    async fn a_dropped_early_check_ends_its_status_command() {
        let dir = tempfile::tempdir().unwrap();
        let stack = load(
            dir.path(),
            "services:\n  setup:\n    command: ./setup.sh\n    task: { status: [\"echo started >> checks.log; sleep 1; echo finished >> checks.log\"] }\n",
        );
        let (mut checks, mut answers) = Checks::new(Some(dir.path().join("state")));
        checks.begin_early(&stack, &["setup".to_string()]);
        until_logged(dir.path(), 1).await;
        checks.forget_early();
        let mut jobs = tokio::task::JoinSet::new();
        checks.ask(&stack.services["setup"], 1, &mut jobs);
        checks.answer(answers.recv().await.unwrap());
        // Had the first command lived on, its `finished` would be there before this one's.
        assert_eq!(logged(dir.path()), ["started", "started", "finished"]);
    }

    /// The engine's part: a check asked for one start answers as that start's verdict, and its
    /// hash is recorded only when that start's run exits cleanly (not a stale or failed one).
    #[tokio::test(start_paused = true)]
    async fn checks_answer_for_their_start_and_record_only_its_clean_run() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(dir.path().join("in.txt"), "1\n").unwrap();
        let stack = load(
            dir.path(),
            "services:\n  setup:\n    command: ./setup.sh\n    task: { sources: [in.txt] }\n",
        );
        let svc = &stack.services["setup"];
        let (mut checks, mut answers) = Checks::new(Some(state.clone()));
        let mut jobs = tokio::task::JoinSet::new();
        checks.ask(svc, 7, &mut jobs);
        let answer = answers.recv().await.expect("an answer");
        assert_eq!((answer.0.as_str(), answer.1), ("setup", 7));
        let input = checks.answer(answer);
        assert!(matches!(
            input,
            crate::kernel::Input::TaskChecked {
                epoch: 7,
                verdict: crate::kernel::TaskVerdict::Run,
                ..
            }
        ));
        // A failed run, then the exit of another start: nothing recorded.
        checks.exited("setup", 7, false);
        checks.ask(svc, 8, &mut jobs);
        let input = checks.answer(answers.recv().await.unwrap());
        assert!(matches!(
            input,
            crate::kernel::Input::TaskChecked { epoch: 8, .. }
        ));
        checks.exited("setup", 7, true);
        assert!(!stamp_file(&state, "setup").exists());
        // The clean run of the start that was checked: recorded, and the next check skips.
        checks.ask(svc, 9, &mut jobs);
        checks.answer(answers.recv().await.unwrap());
        checks.exited("setup", 9, true);
        assert!(stamp_file(&state, "setup").exists());
        checks.ask(svc, 10, &mut jobs);
        let input = checks.answer(answers.recv().await.unwrap());
        assert!(matches!(
            input,
            crate::kernel::Input::TaskChecked {
                verdict: crate::kernel::TaskVerdict::UpToDate { .. },
                ..
            }
        ));
        // An older start's late answer does not replace the newer start's hash.
        let run = |h: &str| Check::Run {
            hash: Some(h.to_string()),
        };
        checks.answer(("setup".into(), 12, run("h12")));
        checks.answer(("setup".into(), 11, run("h11")));
        checks.exited("setup", 12, true);
        let stamp = std::fs::read_to_string(stamp_file(&state, "setup")).unwrap();
        assert_eq!(stamp.trim(), "h12");
    }

    #[tokio::test]
    async fn status_commands_decide_when_there_are_no_sources() {
        let dir = tempfile::tempdir().unwrap();
        let stack = load(
            dir.path(),
            "services:\n  a:\n    command: ./a.sh\n    task: { status: [\"test -f marker\"] }\n  b:\n    command: ./b.sh\n    task: true\n",
        );
        assert!(matches!(
            check(&stack.services["a"], None).await,
            Check::Run { hash: None }
        ));
        std::fs::write(dir.path().join("marker"), "").unwrap();
        match check(&stack.services["a"], None).await {
            Check::UpToDate { reason, .. } => assert_eq!(reason, "status commands passed"),
            other => panic!("expected up to date, got {other:?}"),
        }
        // `task: true` always runs.
        assert!(matches!(
            check(&stack.services["b"], None).await,
            Check::Run { hash: None }
        ));
    }
}
