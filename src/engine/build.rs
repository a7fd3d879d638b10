//! Runs the builds a run needs, all at once: each decides from its input hash (and
//! `pull_policy`) whether to build, pull or use the image as it is, sends its context, shows
//! each step and every output line under its service's name, and on failure says where in the
//! Dockerfile and what the engine said.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::mpsc;

use super::UpError;
use crate::build::{self, context, dockerfile, dockerignore::DockerIgnore, BuildJob, PullPolicy};
use crate::config::ServiceName;
use crate::event::{human_bytes, BuildHow, StackEvent};
use crate::logs::{LogHandle, LogLine, Stream};
use crate::runtime::{labels, BuildOutput, BuildRequest, ContainerRuntime, RuntimeError};

/// Lines of build output shown with a failure.
const BUILD_TAIL: usize = 12;

/// How builds are asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BuildFlags {
    /// Build even when the image's build hash matches (`up --build`, `devstack build`).
    pub force: bool,
    /// Do not use the engine's layer cache.
    pub no_cache: bool,
    /// Pull newer base images.
    pub pull: bool,
}

/// A build that failed: where, and what the engine said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFailure {
    pub services: Vec<ServiceName>,
    pub image: String,
    /// The Dockerfile's path, or `dockerfile_inline`.
    pub dockerfile: String,
    /// 1-based line of the failing instruction, when known.
    pub line: Option<usize>,
    pub instruction: Option<String>,
    pub message: String,
    /// The last lines of build output.
    pub tail: Vec<String>,
}

/// A failure of `job` with `message`, not located in its Dockerfile.
fn unlocated(job: &BuildJob, message: String) -> BuildFailure {
    BuildFailure {
        services: job.services.clone(),
        image: job.tags[0].clone(),
        dockerfile: job
            .dockerfile_path()
            .map_or("dockerfile_inline".to_string(), |p| p.display().to_string()),
        line: None,
        instruction: None,
        message,
        tail: Vec::new(),
    }
}

fn failure(job: &BuildJob, message: String) -> UpError {
    UpError::Build(Box::new(unlocated(job, message)))
}

/// Where the content digests of a context's files are kept between runs:
/// `$XDG_CACHE_HOME/devstack/build-contexts/<hash of the context's path>.json` (default
/// `~/.cache`). `None` without a home.
fn digest_cache_file(context: &std::path::Path) -> Option<std::path::PathBuf> {
    use sha2::{Digest, Sha256};
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    let key = context::hex(&Sha256::digest(context.as_os_str().as_encoded_bytes()));
    Some(
        base.join("devstack/build-contexts")
            .join(format!("{}.json", &key[..16])),
    )
}

/// Scans with the digest cache of the context; a cache that cannot be read or written only
/// means the files are read.
pub(crate) fn scan_with_cache(
    dir: &std::path::Path,
    ignore: &DockerIgnore,
) -> std::io::Result<context::Context> {
    let file = digest_cache_file(dir);
    let mut cache: context::DigestCache = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let before = cache.clone();
    let ctx = context::scan_cached(dir, ignore, &mut cache)?;
    if let Some(f) = file.filter(|_| cache != before) {
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        let written = f
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(&cache).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, &f));
        if let Err(e) = written {
            tracing::debug!("cannot keep the build digest cache `{}`: {e}", f.display());
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(ctx)
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Ensures the image of every job; returns image name → id for every tag.
pub(crate) async fn ensure_all<R: ContainerRuntime>(
    rt: &R,
    jobs: &[BuildJob],
    flags: BuildFlags,
    logs: &LogHandle,
) -> Result<HashMap<String, String>, UpError> {
    let results =
        futures_util::future::join_all(jobs.iter().map(|j| ensure(rt, j, flags, logs))).await;
    let mut ids = HashMap::new();
    let mut first_err: Option<UpError> = None;
    for (job, r) in jobs.iter().zip(results) {
        match r {
            Ok(id) => {
                for t in &job.tags {
                    ids.insert(t.clone(), id.clone());
                }
            }
            // A failed build is the story to tell over an engine error elsewhere.
            Err(e) => match (&first_err, &e) {
                (None, _) | (Some(UpError::Runtime(_)), UpError::Build(_)) => first_err = Some(e),
                _ => {}
            },
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(ids),
    }
}

/// One job: skip, pull, use as found, or build.
pub(crate) async fn ensure<R: ContainerRuntime>(
    rt: &R,
    job: &BuildJob,
    flags: BuildFlags,
    logs: &LogHandle,
) -> Result<String, UpError> {
    let started = Instant::now();
    let text = read_dockerfile(job).await?;
    let (df_name, df_extra) = job.dockerfile_in_tar(&text);
    let scanned = scan_context(job, &df_name).await?;
    let hash = job.input_hash(&text, &scanned.hash);
    let told = Told { job, started, logs };
    if !flags.force {
        if let Some(id) = reuse_or_pull(rt, job, &hash, &told).await? {
            return Ok(id);
        }
    }
    let extra: Vec<(String, Vec<u8>)> =
        df_extra.map(|d| (df_name.clone(), d)).into_iter().collect();
    let tar = pack(job, &scanned, extra, logs).await?;
    let context_bytes = tar.len() as u64;
    let mut image_labels = job.labels.clone();
    image_labels.insert(labels::BUILD_HASH.to_string(), hash);
    let req = BuildRequest {
        tags: job.tags.clone(),
        context: tar,
        dockerfile: df_name,
        args: job.args.clone(),
        target: job.target.clone(),
        labels: image_labels,
        cache_from: job.cache_from.clone(),
        network: job.network.clone(),
        extra_hosts: job.extra_hosts.clone(),
        no_cache: flags.no_cache || job.no_cache,
        pull: flags.pull || job.pull,
    };
    let (result, shown) = run_build(rt, req, &job.services[0], logs).await;
    match result {
        Ok(id) => {
            logs.publish(told.built(&id, BuildHow::Built, Some(context_bytes)))
                .await;
            Ok(id)
        }
        Err(RuntimeError::BuildFailed(message)) => Err(located(job, &text, message, shown)),
        Err(e) => Err(e.into()),
    }
}

/// How a job's outcome is told: one `Built` event.
struct Told<'a> {
    job: &'a BuildJob,
    started: Instant,
    logs: &'a LogHandle,
}

impl Told<'_> {
    fn built(&self, id: &str, how: BuildHow, context_bytes: Option<u64>) -> StackEvent {
        StackEvent::Built {
            service: ServiceName::from(&self.job.services[0]),
            services: ServiceName::list(&self.job.services),
            image: self.job.tags[0].clone(),
            id: id.to_string(),
            how,
            context_bytes,
            after_ms: ms_since(self.started),
        }
    }
}

/// The Dockerfile's text, inline or read from its file.
async fn read_dockerfile(job: &BuildJob) -> Result<String, UpError> {
    match &job.dockerfile {
        build::DockerfileSource::Inline(t) => Ok(t.clone()),
        build::DockerfileSource::Path(p) => {
            let path = p.clone();
            tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
                .await
                .map_err(|e| failure(job, format!("reading the Dockerfile stopped: {e}")))?
                .map_err(|e| failure(job, format!("cannot read `{}`: {e}", p.display())))
        }
    }
}

/// The context as the engine will get it: `.dockerignore` applied (the Dockerfile and the
/// `.dockerignore` itself always kept, as the Docker CLI does), each file's digest.
async fn scan_context(job: &BuildJob, dockerfile: &str) -> Result<context::Context, UpError> {
    let ctx_dir = job.context.clone();
    let keep = dockerfile.to_string();
    tokio::task::spawn_blocking(move || {
        let mut ignore = match std::fs::read_to_string(ctx_dir.join(".dockerignore")) {
            Ok(t) => DockerIgnore::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
            Err(e) => return Err(e),
        };
        ignore.keep(&keep);
        ignore.keep(".dockerignore");
        scan_with_cache(&ctx_dir, &ignore)
    })
    .await
    .map_err(|e| failure(job, format!("the context scan stopped: {e}")))?
    .map_err(|e| {
        let dir = job.context.display();
        failure(job, format!("cannot read the build context `{dir}`: {e}"))
    })
}

/// The image as it is when its build hash is unchanged (or it was given and is local under
/// `pull_policy: missing|never`), else pulled when the policy says so; `None`: build it.
async fn reuse_or_pull<R: ContainerRuntime>(
    rt: &R,
    job: &BuildJob,
    hash: &str,
    told: &Told<'_>,
) -> Result<Option<String>, UpError> {
    let (service, tag, logs) = (&job.services[0], &job.tags[0], told.logs);
    let local = rt.image_labels(tag).await?;
    let mut others_present = true;
    for t in job.tags.iter().skip(1) {
        others_present &= rt.image_id(t).await?.is_some();
    }
    match &local {
        Some((id, l))
            if others_present && l.get(labels::BUILD_HASH).map(String::as_str) == Some(hash) =>
        {
            logs.publish(told.built(id, BuildHow::UpToDate, None)).await;
            return Ok(Some(id.clone()));
        }
        Some((id, l))
            if others_present
                && !l.contains_key(labels::BUILD_HASH)
                && job.image_given
                && matches!(job.pull_policy, PullPolicy::Missing | PullPolicy::Never) =>
        {
            logs.publish(told.built(id, BuildHow::Local, None)).await;
            return Ok(Some(id.clone()));
        }
        Some(_) if others_present => {
            let text = format!("the build inputs of `{tag}` changed: rebuilding");
            logs.event(service, text).await;
        }
        _ => {}
    }
    let try_pull = job.image_given
        && match job.pull_policy {
            PullPolicy::Always => true,
            PullPolicy::Missing => local.is_none(),
            PullPolicy::Never | PullPolicy::Build => false,
        };
    if !try_pull {
        return Ok(None);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Pull progress is noise next to a build; only the outcome is told.
    let drain = async { while rx.recv().await.is_some() {} };
    let (pulled, ()) = tokio::join!(rt.pull(tag, tx), drain);
    match pulled {
        Ok(()) => {
            let id = rt.image_id(tag).await?;
            if let Some(id) = &id {
                logs.publish(told.built(id, BuildHow::Pulled, None)).await;
            }
            Ok(id)
        }
        Err(RuntimeError::Unavailable(m)) => Err(RuntimeError::Unavailable(m).into()),
        Err(e) => {
            let text = format!("cannot pull `{tag}` ({e}): building it");
            logs.event(service, text).await;
            Ok(None)
        }
    }
}

/// The context as a tar, announced with its size.
async fn pack(
    job: &BuildJob,
    scanned: &context::Context,
    extra: Vec<(String, Vec<u8>)>,
    logs: &LogHandle,
) -> Result<Vec<u8>, UpError> {
    let for_tar = scanned.clone();
    let tar = tokio::task::spawn_blocking(move || context::tar(&for_tar, &extra))
        .await
        .map_err(|e| failure(job, format!("packing the context stopped: {e}")))?
        .map_err(|e| failure(job, format!("cannot pack the build context: {e}")))?;
    let shared = if job.services.len() > 1 {
        format!(" (for {})", job.who())
    } else {
        String::new()
    };
    let files = scanned
        .entries
        .iter()
        .filter(|e| matches!(e.kind, context::EntryKind::File { .. }))
        .count();
    let text = format!(
        "building `{}`{shared}: {files} files, {} context after .dockerignore",
        job.tags[0],
        human_bytes(tar.len() as u64)
    );
    logs.event(&job.services[0], text).await;
    Ok(tar)
}

/// What a build showed: its last lines, and the step that ran last.
#[derive(Default)]
struct Shown {
    tail: VecDeque<String>,
    step: Option<(usize, String)>,
}

/// Runs the build, each step and output line shown under the service's name.
async fn run_build<R: ContainerRuntime>(
    rt: &R,
    req: BuildRequest,
    service: &str,
    logs: &LogHandle,
) -> (Result<String, RuntimeError>, Shown) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut shown = Shown::default();
    let show = async {
        while let Some(out) = rx.recv().await {
            match out {
                BuildOutput::Step { n, of, instruction } => {
                    let step = StackEvent::BuildStep {
                        service: service.into(),
                        step: n,
                        of,
                        instruction: instruction.clone(),
                    };
                    logs.publish(step).await;
                    shown
                        .tail
                        .push_back(format!("Step {n}/{of} : {instruction}"));
                    shown.step = Some((n, instruction));
                }
                BuildOutput::Line(text) if text.trim().is_empty() => {}
                BuildOutput::Line(text) => {
                    shown.tail.push_back(text.clone());
                    let at = std::time::SystemTime::now();
                    let source = service.to_string();
                    let stream = Stream::Stdout;
                    logs.line(LogLine::output(at, source.as_str(), stream, text))
                        .await;
                }
            }
            while shown.tail.len() > BUILD_TAIL {
                shown.tail.pop_front();
            }
        }
    };
    let (result, ()) = tokio::join!(rt.build(req, tx), show);
    (result, shown)
}

/// A failed build, located: the engine's own location (a parse error) wins; else the step that
/// was running, as written in the Dockerfile (continuations joined), else as printed.
fn located(job: &BuildJob, text: &str, message: String, shown: Shown) -> UpError {
    let written = |l: usize| {
        dockerfile::instructions(text)
            .into_iter()
            .find(|i| i.line == l)
            .map(|i| i.text)
    };
    let (line, instruction) = match dockerfile::line_in_message(&message) {
        Some(l) if message.to_ascii_lowercase().contains("dockerfile") => {
            let ins = written(l).or_else(|| text.lines().nth(l - 1).map(|s| s.trim().to_string()));
            (Some(l), ins)
        }
        _ => match &shown.step {
            Some((n, ins)) => {
                let line = dockerfile::step_line(text, *n, ins);
                (line, line.and_then(written).or_else(|| Some(ins.clone())))
            }
            None => (None, None),
        },
    };
    let mut tail: Vec<String> = shown.tail.into_iter().collect();
    // The message is shown on its own.
    if tail.last().is_some_and(|l| l.trim() == message.trim()) {
        tail.pop();
    }
    UpError::Build(Box::new(BuildFailure {
        line,
        instruction,
        tail,
        ..unlocated(job, message)
    }))
}
