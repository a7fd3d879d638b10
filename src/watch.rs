//! Watches each service's paths and reports debounced changes: the only module that imports notify.
//!
//! It owns what gets watched (heavy folders, `.gitignore`d paths and the spec's `ignore` globs are
//! left out before any watch is added) and the debounce; it must not decide what a change means
//! (the engine and its `develop` part turn it into a kernel input).
//!
//! Two actors: a thread owns the notify backend and does the blocking filesystem work (walking,
//! adding watches, reading `.gitignore` files, filtering events); a tokio task owns the debounce
//! clock. The debounce itself is the pure [`Debouncer`], which takes time as an argument.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::ServiceName;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::event::{EventKind, MetadataKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How often the polling fallback rescans the watched directories.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Set to anything but `0` to poll instead of using inotify (network filesystems, some container
/// mounts and WSL shares deliver no inotify events).
pub const POLL_ENV: &str = "DEVSTACK_WATCH_POLL";

/// How many distinct paths a [`FilesChanged`] keeps; the rest of a burst is only counted.
pub const MAX_PATHS: usize = 20;

/// Folders that are never worth watching: dependency trees, VCS data, caches, build output.
/// A `node_modules` alone can hold 100k directories, more than the default inotify limit.
const HEAVY_DIRS: &[&str] = &[
    "node_modules",
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".next",
    "target",
    ".pytest_cache",
    ".mypy_cache",
];

/// Files editors write while saving (vim swap files and its `4913` write probe, backup files,
/// Emacs lock files): a save must restart a service once, for the real file only.
const EDITOR_TEMP_FILES: &[&str] = &["*.swp", "*.swo", "*.swx", "*~", ".#*", "4913"];

/// Room for bursts of several services while the consumer is busy restarting one.
const OUT_CAPACITY: usize = 64;

/// What one service wants watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub service: ServiceName,
    /// Absolute directories or files.
    pub paths: Vec<PathBuf>,
    /// Gitignore-style globs relative to each watched path, e.g. `*.log`, `build/`.
    pub ignore: Vec<String>,
    pub debounce: Duration,
}

/// One debounced burst of changes of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesChanged {
    pub service: ServiceName,
    /// the changed paths of the burst, deduplicated, at most 20 kept
    pub paths: Vec<PathBuf>,
    /// how many change events the burst had
    pub events: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch path `{}` of service `{service}` does not exist", path.display())]
    PathNotFound { service: String, path: PathBuf },
    #[error("cannot read watch path `{}` of service `{service}`: {source}", path.display())]
    Unreadable {
        service: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid ignore pattern `{pattern}` of service `{service}`: {reason}")]
    BadIgnore {
        service: String,
        pattern: String,
        reason: String,
    },
    #[error("the file watcher must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot start the file watcher: {reason}")]
    Backend { reason: String },
}

/// Watches the specs' paths until dropped; dropping it ends its thread and task.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    fs_tx: std_mpsc::Sender<FsMsg>,
    fs_thread: Option<thread::JoinHandle<()>>,
    debounce_task: tokio::task::JoinHandle<()>,
    status: tokio::sync::watch::Receiver<Status>,
}

impl Watcher {
    /// Starts watching; changes arrive on the returned receiver. Must be called inside a tokio runtime.
    ///
    /// It walks the watched trees before returning, so a bad path fails here and
    /// `watched_dirs()` is complete; that walk blocks the caller (milliseconds for a source tree,
    /// since ignored folders are never entered). Polls instead of using inotify when [`POLL_ENV`]
    /// is set.
    pub fn start(
        specs: Vec<WatchSpec>,
    ) -> Result<(Watcher, mpsc::Receiver<FilesChanged>), WatchError> {
        let forced = std::env::var_os(POLL_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        if forced {
            tracing::info!(
                "`{POLL_ENV}` is set: polling for file changes every {} ms",
                POLL_INTERVAL.as_millis()
            );
        }
        Self::start_with(specs, forced)
    }

    /// Like [`Watcher::start`], but polls from the beginning, as after hitting the inotify limit.
    pub fn start_polling(
        specs: Vec<WatchSpec>,
    ) -> Result<(Watcher, mpsc::Receiver<FilesChanged>), WatchError> {
        Self::start_with(specs, true)
    }

    /// Whether it fell back to polling (inotify limit hit).
    pub fn polling(&self) -> bool {
        self.status.borrow().polling
    }

    /// The directories currently watched (each one non-recursively), sorted.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        self.status.borrow().dirs.iter().cloned().collect()
    }

    fn start_with(
        specs: Vec<WatchSpec>,
        force_poll: bool,
    ) -> Result<(Watcher, mpsc::Receiver<FilesChanged>), WatchError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
        let roots = prepare_roots(&specs)?;

        let (fs_tx, fs_rx) = std_mpsc::channel();
        let (status_tx, status) = tokio::sync::watch::channel(Status::default());
        let (change_tx, change_rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let fs_side = FsSide::start(
            roots,
            force_poll,
            fs_tx.clone(),
            status_tx,
            change_tx,
            stop.clone(),
        )?;
        let fs_thread = thread::Builder::new()
            .name("devstack-watch".to_owned())
            .spawn(move || fs_side.run(fs_rx))
            .map_err(|e| WatchError::Backend {
                reason: format!("cannot spawn the watch thread: {e}"),
            })?;

        let (out_tx, out_rx) = mpsc::channel(OUT_CAPACITY);
        let debouncer = Debouncer::new(
            specs
                .into_iter()
                .map(|s| (s.service.into_string(), s.debounce)),
        );
        let debounce_task = runtime.spawn(debounce_loop(debouncer, change_rx, out_tx));
        let watcher = Watcher {
            stop,
            fs_tx,
            fs_thread: Some(fs_thread),
            debounce_task,
            status,
        };
        Ok((watcher, out_rx))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The flag cuts a long walk short; the message wakes the thread if it is idle.
        self.stop.store(true, Ordering::Relaxed);
        // Fails only if the thread already ended, which is what we want anyway.
        let _ = self.fs_tx.send(FsMsg::Shutdown);
        self.debounce_task.abort();
        if let Some(thread) = self.fs_thread.take() {
            // The thread never blocks on a full channel, so this join is short; a panic in it
            // has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// What the watch thread publishes for `polling()` and `watched_dirs()`.
#[derive(Debug, Default)]
struct Status {
    polling: bool,
    dirs: BTreeSet<PathBuf>,
}

enum FsMsg {
    Fs(notify::Result<notify::Event>),
    Shutdown,
}

/// One accepted change event, from the watch thread to the debounce task.
#[derive(Debug)]
struct Change {
    service: usize,
    paths: Vec<PathBuf>,
    events: usize,
}

// ---------------------------------------------------------------------------------------------
// Debounce: pure.

/// Per-service debounce: a change opens a burst, each further change within `debounce` of the
/// last one extends it, and a burst quiet for `debounce` becomes one [`FilesChanged`].
#[derive(Debug)]
struct Debouncer {
    services: Vec<(String, Duration)>,
    bursts: Vec<Option<Burst>>,
}

#[derive(Debug)]
struct Burst {
    paths: Vec<PathBuf>,
    events: usize,
    quiet_at: Instant,
}

impl Debouncer {
    fn new(services: impl IntoIterator<Item = (String, Duration)>) -> Self {
        let services: Vec<(String, Duration)> = services.into_iter().collect();
        let bursts = services.iter().map(|_| None).collect();
        Debouncer { services, bursts }
    }

    fn record(&mut self, service: usize, paths: Vec<PathBuf>, events: usize, now: Instant) {
        let (Some((_, window)), Some(slot)) =
            (self.services.get(service), self.bursts.get_mut(service))
        else {
            return;
        };
        let burst = slot.get_or_insert_with(|| Burst {
            paths: Vec::new(),
            events: 0,
            quiet_at: now,
        });
        burst.events += events;
        burst.quiet_at = now + *window;
        for path in paths {
            // A linear scan is fine: the list never holds more than MAX_PATHS entries.
            if burst.paths.len() < MAX_PATHS && !burst.paths.contains(&path) {
                burst.paths.push(path);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.bursts.iter().flatten().map(|b| b.quiet_at).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<FilesChanged> {
        let mut due = Vec::new();
        for (slot, (service, _)) in self.bursts.iter_mut().zip(&self.services) {
            if slot.as_ref().is_some_and(|b| b.quiet_at <= now) {
                if let Some(burst) = slot.take() {
                    due.push(FilesChanged {
                        service: ServiceName::from(service.clone()),
                        paths: burst.paths,
                        events: burst.events,
                    });
                }
            }
        }
        due
    }
}

async fn debounce_loop(
    mut debouncer: Debouncer,
    mut change_rx: mpsc::UnboundedReceiver<Change>,
    out_tx: mpsc::Sender<FilesChanged>,
) {
    loop {
        let deadline = debouncer.next_deadline();
        let quiet = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = change_rx.recv() => {
                // The watch thread is gone (the watcher is being dropped): nothing more can change.
                let Some(first) = change else { return };
                let now = tokio::time::Instant::now().into_std();
                debouncer.record(first.service, first.paths, first.events, now);
                // A burst arrives as thousands of messages; take what is queued in one go.
                while let Ok(c) = change_rx.try_recv() {
                    debouncer.record(c.service, c.paths, c.events, now);
                }
            }
            () = quiet => {
                for changed in debouncer.take_due(tokio::time::Instant::now().into_std()) {
                    if out_tx.send(changed).await.is_err() {
                        return; // nobody listens any more
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event classification and the inotify limit: pure.

/// Whether an event is a change worth a restart: create, remove, a data or name change, or a new
/// write time (how the polling backend reports edits). Opens, reads, closes and permission or
/// ownership changes are not.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        // inotify reports a rename as From, To and then Both for the pair: Both would count it twice.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => false,
        EventKind::Modify(ModifyKind::Metadata(meta)) => *meta == MetadataKind::WriteTime,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// Which inotify limit an error means, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// `inotify_add_watch` failed with ENOSPC: `fs.inotify.max_user_watches`.
    Watches,
    /// `inotify_init` failed with EMFILE: `fs.inotify.max_user_instances` (or the fd limit).
    Instances,
}

fn limit_of(err: &notify::Error) -> Option<Limit> {
    match &err.kind {
        notify::ErrorKind::MaxFilesWatch => Some(Limit::Watches),
        notify::ErrorKind::Io(e) => match e.raw_os_error() {
            Some(libc::ENOSPC) => Some(Limit::Watches),
            Some(libc::EMFILE) => Some(Limit::Instances),
            _ => None,
        },
        _ => None,
    }
}

fn limit_warning(limit: Limit, current: &str) -> String {
    let interval = POLL_INTERVAL.as_millis();
    match limit {
        Limit::Watches => format!(
            "inotify watch limit reached (fs.inotify.max_user_watches = {current}): falling back \
             to polling every {interval} ms; raise it with \
             `sudo sysctl fs.inotify.max_user_watches=524288`"
        ),
        Limit::Instances => format!(
            "inotify instance limit reached (fs.inotify.max_user_instances = {current}): falling \
             back to polling every {interval} ms; raise it with \
             `sudo sysctl fs.inotify.max_user_instances=1024`"
        ),
    }
}

fn warn_limit(limit: Limit) {
    let sysctl = match limit {
        Limit::Watches => "/proc/sys/fs/inotify/max_user_watches",
        Limit::Instances => "/proc/sys/fs/inotify/max_user_instances",
    };
    let current = std::fs::read_to_string(sysctl)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    tracing::warn!("{}", limit_warning(limit, &current));
}

// ---------------------------------------------------------------------------------------------
// What is watched.

/// One watched path of one service.
struct Root {
    service: usize,
    path: PathBuf,
    kind: RootKind,
}

enum RootKind {
    /// Every directory below that is not ignored gets its own non-recursive watch.
    Dir {
        /// Heavy folders, editor files and the spec's globs, rooted at the watched path.
        rules: Arc<Gitignore>,
        /// The directories this root admitted; an event counts for this root only if its
        /// parent is one of them, which keeps services with different `ignore` lists apart
        /// when they watch the same tree.
        dirs: BTreeSet<PathBuf>,
    },
    /// A single file: its parent is watched and events are filtered to the file.
    File,
}

fn prepare_roots(specs: &[WatchSpec]) -> Result<Vec<Root>, WatchError> {
    let mut roots = Vec::new();
    for (service, spec) in specs.iter().enumerate() {
        for path in &spec.paths {
            let unreadable = |source| WatchError::Unreadable {
                service: spec.service.to_string(),
                path: path.clone(),
                source,
            };
            let path = std::path::absolute(path).map_err(unreadable)?;
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(WatchError::PathNotFound {
                        service: spec.service.to_string(),
                        path,
                    })
                }
                Err(e) => return Err(unreadable(e)),
            };
            let kind = if meta.is_dir() {
                RootKind::Dir {
                    rules: Arc::new(root_rules(&path, spec)?),
                    dirs: BTreeSet::new(),
                }
            } else {
                RootKind::File
            };
            roots.push(Root {
                service,
                path,
                kind,
            });
        }
    }
    Ok(roots)
}

fn root_rules(root: &Path, spec: &WatchSpec) -> Result<Gitignore, WatchError> {
    let bad = |pattern: &str, reason: String| WatchError::BadIgnore {
        service: spec.service.to_string(),
        pattern: pattern.to_owned(),
        reason,
    };
    let mut builder = GitignoreBuilder::new(root);
    let builtin = HEAVY_DIRS.iter().chain(EDITOR_TEMP_FILES).copied();
    for pattern in builtin.chain(spec.ignore.iter().map(String::as_str)) {
        builder
            .add_line(None, pattern)
            .map_err(|e| bad(pattern, e.to_string()))?;
    }
    builder
        .build()
        .map_err(|e| bad(&spec.ignore.join(", "), e.to_string()))
}

/// A walk below `start` that skips what `rules` ignore and, like git, what `.gitignore` files
/// (in the tree and its parents up to the repository root) and `.git/info/exclude` ignore.
fn walk(start: &Path, rules: Arc<Gitignore>) -> ignore::Walk {
    ignore::WalkBuilder::new(start)
        .standard_filters(false)
        .git_ignore(true)
        .git_exclude(true)
        .parents(true)
        // Outside a repository git ignores `.gitignore`, and so do we: a stray ~/.gitignore
        // holding `*` (a dotfiles repo) must not hide a project from the watcher.
        .require_git(true)
        .follow_links(false)
        .filter_entry(move |entry| {
            let path = entry.path();
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            // The matcher panics on a path outside its root; the walk never yields one.
            !(path.starts_with(rules.path())
                && rules.matched_path_or_any_parents(path, is_dir).is_ignore())
        })
        .build()
}

/// `.gitignore` matching for event paths, consistent with the walk's: each directory's
/// `.gitignore` from the path's parent up to the repository root (the nearest one wins), then
/// the repository's `.git/info/exclude`; nothing applies outside a repository.
#[derive(Default)]
struct GitignoreCache {
    dirs: HashMap<PathBuf, DirIgnore>,
}

struct DirIgnore {
    gitignore: Gitignore,
    repo_root: bool,
    exclude: Gitignore,
}

impl DirIgnore {
    fn load(dir: &Path) -> Self {
        let git = dir.join(".git");
        let exclude = if git.is_dir() {
            load_ignore_file(dir, &git.join("info").join("exclude"))
        } else {
            Gitignore::empty()
        };
        DirIgnore {
            gitignore: load_ignore_file(dir, &dir.join(".gitignore")),
            // A worktree or submodule has a `.git` file; it is a repository root all the same.
            repo_root: git.exists(),
            exclude,
        }
    }
}

fn load_ignore_file(root: &Path, file: &Path) -> Gitignore {
    if !file.is_file() {
        return Gitignore::empty();
    }
    let mut builder = GitignoreBuilder::new(root);
    // A bad line is skipped, as git does; the rest of the file still applies.
    if let Some(err) = builder.add(file) {
        tracing::debug!("in `{}`: {err}", file.display());
    }
    builder.build().unwrap_or_else(|err| {
        tracing::debug!("ignoring `{}`: {err}", file.display());
        Gitignore::empty()
    })
}

impl GitignoreCache {
    fn dir(&mut self, dir: &Path) -> &DirIgnore {
        self.dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| DirIgnore::load(dir))
    }

    fn ignored(&mut self, path: &Path, is_dir: bool) -> bool {
        let ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        let Some(repo) = ancestors.iter().position(|dir| self.dir(dir).repo_root) else {
            return false;
        };
        for dir in &ancestors[..=repo] {
            let verdict = self.dir(dir).gitignore.matched(path, is_dir);
            if verdict.is_ignore() {
                return true;
            }
            if verdict.is_whitelist() {
                return false;
            }
        }
        self.dir(ancestors[repo])
            .exclude
            .matched(path, is_dir)
            .is_ignore()
    }

    fn forget(&mut self, dir: &Path) {
        self.dirs.remove(dir);
    }

    fn clear(&mut self) {
        self.dirs.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The watch thread.

enum Backend {
    Native(notify::RecommendedWatcher),
    Poll(notify::PollWatcher),
}

impl Backend {
    fn native(fs_tx: std_mpsc::Sender<FsMsg>) -> notify::Result<Backend> {
        notify::recommended_watcher(forward_to(fs_tx)).map(Backend::Native)
    }

    fn poll(fs_tx: std_mpsc::Sender<FsMsg>) -> notify::Result<Backend> {
        let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
        notify::PollWatcher::new(forward_to(fs_tx), config).map(Backend::Poll)
    }

    fn watch(&mut self, dir: &Path) -> notify::Result<()> {
        match self {
            Backend::Native(w) => w.watch(dir, RecursiveMode::NonRecursive),
            Backend::Poll(w) => w.watch(dir, RecursiveMode::NonRecursive),
        }
    }

    fn unwatch(&mut self, dir: &Path) -> notify::Result<()> {
        match self {
            Backend::Native(w) => w.unwatch(dir),
            Backend::Poll(w) => w.unwatch(dir),
        }
    }
}

fn forward_to(
    fs_tx: std_mpsc::Sender<FsMsg>,
) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
    move |res| {
        // Fails only once the watch thread has ended, when events no longer matter.
        let _ = fs_tx.send(FsMsg::Fs(res));
    }
}

struct FsSide {
    roots: Vec<Root>,
    backend: Backend,
    /// Exactly the directories the backend watches.
    watched: BTreeSet<PathBuf>,
    gitignores: GitignoreCache,
    fs_tx: std_mpsc::Sender<FsMsg>,
    status_tx: tokio::sync::watch::Sender<Status>,
    change_tx: mpsc::UnboundedSender<Change>,
    stop: Arc<AtomicBool>,
}

impl FsSide {
    /// Picks the backend, walks every root and adds the initial watches.
    fn start(
        roots: Vec<Root>,
        force_poll: bool,
        fs_tx: std_mpsc::Sender<FsMsg>,
        status_tx: tokio::sync::watch::Sender<Status>,
        change_tx: mpsc::UnboundedSender<Change>,
        stop: Arc<AtomicBool>,
    ) -> Result<FsSide, WatchError> {
        let backend_error = |e: notify::Error| WatchError::Backend {
            reason: e.to_string(),
        };
        let backend = if force_poll {
            Backend::poll(fs_tx.clone()).map_err(backend_error)?
        } else {
            match Backend::native(fs_tx.clone()) {
                Ok(backend) => backend,
                Err(e) => match limit_of(&e) {
                    Some(limit) => {
                        warn_limit(limit);
                        Backend::poll(fs_tx.clone()).map_err(backend_error)?
                    }
                    None => return Err(backend_error(e)),
                },
            }
        };
        let polling = matches!(backend, Backend::Poll(_));
        status_tx.send_modify(|s| s.polling = polling);
        let mut side = FsSide {
            roots,
            backend,
            watched: BTreeSet::new(),
            gitignores: GitignoreCache::default(),
            fs_tx,
            status_tx,
            change_tx,
            stop,
        };
        side.sync_watches();
        Ok(side)
    }

    fn run(mut self, fs_rx: std_mpsc::Receiver<FsMsg>) {
        while let Ok(msg) = fs_rx.recv() {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match msg {
                FsMsg::Shutdown => break,
                FsMsg::Fs(Ok(event)) => self.on_event(event),
                FsMsg::Fs(Err(err)) => self.on_error(err),
            }
        }
    }

    /// Walks every root afresh and makes the watch set match: at start, after the kernel queue
    /// overflowed (events were lost) and after a `.gitignore` changed.
    fn sync_watches(&mut self) {
        let mut wanted = BTreeSet::new();
        for i in 0..self.roots.len() {
            let root = &self.roots[i];
            let rules = match &root.kind {
                RootKind::File => {
                    if let Some(parent) = root.path.parent() {
                        wanted.insert(parent.to_path_buf());
                    }
                    continue;
                }
                RootKind::Dir { rules, .. } => rules.clone(),
            };
            let start = root.path.clone();
            let mut dirs = BTreeSet::new();
            for entry in walk(&start, rules) {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                match entry {
                    Ok(entry) if entry.file_type().is_some_and(|t| t.is_dir()) => {
                        dirs.insert(entry.into_path());
                    }
                    Ok(_) => {}
                    Err(err) => tracing::debug!("while walking `{}`: {err}", start.display()),
                }
            }
            wanted.extend(dirs.iter().cloned());
            if let RootKind::Dir { dirs: admitted, .. } = &mut self.roots[i].kind {
                *admitted = dirs;
            }
        }
        let stale: Vec<PathBuf> = self.watched.difference(&wanted).cloned().collect();
        for dir in stale {
            self.unwatch(&dir);
        }
        for dir in &wanted {
            self.add_watch(dir);
        }
    }

    fn add_watch(&mut self, dir: &Path) {
        if self.watched.contains(dir) {
            return;
        }
        if let Err(err) = self.backend.watch(dir) {
            match limit_of(&err) {
                Some(limit) if matches!(self.backend, Backend::Native(_)) => {
                    self.fall_back_to_polling(limit);
                    // The poll backend's watch cannot fail: it reports unreadable paths as events.
                    let _ = self.backend.watch(dir);
                }
                _ if matches!(err.kind, notify::ErrorKind::PathNotFound) => {
                    // Gone between the walk and the watch; its parent reports the removal.
                    return;
                }
                _ => {
                    tracing::warn!("cannot watch `{}`: {err}", dir.display());
                    return;
                }
            }
        }
        self.watched.insert(dir.to_path_buf());
        self.status_tx.send_modify(|s| {
            s.dirs.insert(dir.to_path_buf());
        });
    }

    fn unwatch(&mut self, dir: &Path) {
        // inotify drops the watch of a deleted directory by itself and notify forgets a renamed
        // one, so "not watched" is the expected answer here, not a problem.
        let _ = self.backend.unwatch(dir);
        self.watched.remove(dir);
        self.gitignores.forget(dir);
        self.status_tx.send_modify(|s| {
            s.dirs.remove(dir);
        });
    }

    fn fall_back_to_polling(&mut self, limit: Limit) {
        warn_limit(limit);
        let poll = match Backend::poll(self.fs_tx.clone()) {
            Ok(poll) => poll,
            Err(err) => {
                tracing::error!("cannot start polling for file changes: {err}");
                return;
            }
        };
        // Dropping the inotify backend releases all its watches.
        self.backend = poll;
        for dir in &self.watched {
            let _ = self.backend.watch(dir); // cannot fail, see add_watch
        }
        self.status_tx.send_modify(|s| s.polling = true);
    }

    fn on_error(&mut self, err: notify::Error) {
        match limit_of(&err) {
            Some(limit) if matches!(self.backend, Backend::Native(_)) => {
                self.fall_back_to_polling(limit);
            }
            // Typically a file that vanished or cannot be read during a poll: nothing to act on.
            _ => tracing::debug!("file watcher: {err}"),
        }
    }

    fn on_event(&mut self, event: notify::Event) {
        if event.need_rescan() {
            // The kernel queue overflowed: changes (and new directories) were lost.
            self.gitignores.clear();
            self.sync_watches();
            let mut all: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
            for root in &self.roots {
                all.entry(root.service).or_default().push(root.path.clone());
            }
            self.send(all);
            return;
        }
        if !is_change(&event.kind) {
            return;
        }
        let mut changed: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
        let mut gitignore_changed = false;
        for path in &event.paths {
            let is_dir = match event.kind {
                EventKind::Create(notify::event::CreateKind::Folder)
                | EventKind::Remove(notify::event::RemoveKind::Folder) => true,
                EventKind::Create(notify::event::CreateKind::File)
                | EventKind::Remove(notify::event::RemoveKind::File) => false,
                _ => {
                    self.watched.contains(path)
                        || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
                }
            };
            let gone = matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
            );
            if gone {
                self.forget_dirs_under(path);
            }
            // A directory's own write time changes with its entries, which report themselves.
            let content_only =
                matches!(event.kind, EventKind::Modify(ref m) if !matches!(m, ModifyKind::Name(_)));
            if is_dir && content_only {
                continue;
            }
            let appeared = is_dir && !gone && !self.watched.contains(path);
            gitignore_changed |= path.file_name().is_some_and(|n| n == ".gitignore");
            self.attribute(path, is_dir, appeared, &mut changed);
        }
        if gitignore_changed {
            self.gitignores.clear();
            self.sync_watches();
        }
        self.send(changed);
    }

    /// Adds `path` to the changes of every service that watches it and does not ignore it; a new
    /// directory is walked and watched, and the files already in it count as created (they may
    /// have been written before its watch existed).
    fn attribute(
        &mut self,
        path: &Path,
        is_dir: bool,
        appeared: bool,
        changed: &mut BTreeMap<usize, Vec<PathBuf>>,
    ) {
        let mut git_ignored = None;
        let mut walks = Vec::new();
        for (i, root) in self.roots.iter().enumerate() {
            let accepted = match &root.kind {
                RootKind::File => path == root.path,
                RootKind::Dir { rules, dirs } => {
                    path == root.path
                        || (path.parent().is_some_and(|parent| dirs.contains(parent))
                            && !rules.matched(path, is_dir).is_ignore()
                            && !*git_ignored
                                .get_or_insert_with(|| self.gitignores.ignored(path, is_dir)))
                }
            };
            if !accepted {
                continue;
            }
            changed
                .entry(root.service)
                .or_default()
                .push(path.to_path_buf());
            if appeared && matches!(root.kind, RootKind::Dir { .. }) && path != root.path {
                walks.push(i);
            }
        }
        for i in walks {
            let files = self.walk_new_dir(i, path);
            changed
                .entry(self.roots[i].service)
                .or_default()
                .extend(files);
        }
    }

    /// Watches a directory that appeared under root `i`; returns the files found in it.
    fn walk_new_dir(&mut self, i: usize, dir: &Path) -> Vec<PathBuf> {
        let RootKind::Dir { rules, .. } = &self.roots[i].kind else {
            return Vec::new();
        };
        let mut files = Vec::new();
        for entry in walk(dir, rules.clone()) {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    tracing::debug!("while walking `{}`: {err}", dir.display());
                    continue;
                }
            };
            if entry.file_type().is_some_and(|t| t.is_dir()) {
                let path = entry.into_path();
                // Watch before the walk reads its entries, so a file written meanwhile is seen
                // by one or the other (or both; paths are deduplicated).
                self.add_watch(&path);
                if let RootKind::Dir { dirs, .. } = &mut self.roots[i].kind {
                    dirs.insert(path);
                }
            } else {
                files.push(entry.into_path());
            }
        }
        files
    }

    /// Stops watching `path` and every watched directory below it: it was deleted or renamed.
    fn forget_dirs_under(&mut self, path: &Path) {
        // Path ordering is by components, so a directory's descendants sort right after it.
        let gone: Vec<PathBuf> = self
            .watched
            .range(path.to_path_buf()..)
            .take_while(|dir| dir.starts_with(path))
            .cloned()
            .collect();
        for dir in &gone {
            self.unwatch(dir);
        }
        for root in &mut self.roots {
            if root.path == path {
                tracing::warn!(
                    "watched path `{}` was removed or renamed: its changes are no longer seen",
                    root.path.display()
                );
            }
            if let RootKind::Dir { dirs, .. } = &mut root.kind {
                let below: Vec<PathBuf> = dirs
                    .range(path.to_path_buf()..)
                    .take_while(|dir| dir.starts_with(path))
                    .cloned()
                    .collect();
                for dir in below {
                    dirs.remove(&dir);
                }
            }
        }
    }

    fn send(&self, changed: BTreeMap<usize, Vec<PathBuf>>) {
        for (service, paths) in changed {
            let change = Change {
                service,
                paths,
                events: 1,
            };
            // Fails only while the watcher is being dropped.
            let _ = self.change_tx.send(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn debounce_bursts() {
        let t0 = Instant::now();
        // (service, path, at ms) recorded in order; then what is due at which time.
        struct Case {
            name: &'static str,
            records: Vec<(usize, &'static str, u64)>,
            check_at: u64,
            due: Vec<(&'static str, Vec<&'static str>, usize)>,
        }
        let cases = vec![
            Case {
                name: "nothing recorded, nothing due",
                records: vec![],
                check_at: 1000,
                due: vec![],
            },
            Case {
                name: "one change is due after the window",
                records: vec![(0, "/a/x", 0)],
                check_at: 100,
                due: vec![("a", vec!["/a/x"], 1)],
            },
            Case {
                name: "not before the window ends",
                records: vec![(0, "/a/x", 0)],
                check_at: 99,
                due: vec![],
            },
            Case {
                name: "each change extends the window",
                records: vec![(0, "/a/x", 0), (0, "/a/y", 90), (0, "/a/x", 180)],
                check_at: 270,
                due: vec![],
            },
            Case {
                name: "a burst is one change, paths deduplicated",
                records: vec![(0, "/a/x", 0), (0, "/a/y", 90), (0, "/a/x", 180)],
                check_at: 280,
                due: vec![("a", vec!["/a/x", "/a/y"], 3)],
            },
            Case {
                name: "services have their own windows",
                records: vec![(0, "/a/x", 0), (1, "/b/x", 50)],
                check_at: 120,
                due: vec![("a", vec!["/a/x"], 1)],
            },
            Case {
                name: "both due together",
                records: vec![(0, "/a/x", 0), (1, "/b/x", 50)],
                check_at: 1000,
                due: vec![("a", vec!["/a/x"], 1), ("b", vec!["/b/x"], 1)],
            },
            Case {
                name: "unknown service index is ignored",
                records: vec![(7, "/z", 0)],
                check_at: 1000,
                due: vec![],
            },
        ];
        for case in cases {
            let mut d = Debouncer::new([("a".to_owned(), ms(100)), ("b".to_owned(), ms(300))]);
            for (service, path, at) in &case.records {
                d.record(*service, vec![p(path)], 1, t0 + ms(*at));
            }
            let got = d.take_due(t0 + ms(case.check_at));
            let want: Vec<FilesChanged> = case
                .due
                .iter()
                .map(|(service, paths, events)| FilesChanged {
                    service: ServiceName::from(service.to_string()),
                    paths: paths.iter().map(|s| p(s)).collect(),
                    events: *events,
                })
                .collect();
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn debounce_keeps_twenty_paths_and_counts_all_events() {
        let t0 = Instant::now();
        let mut d = Debouncer::new([("a".to_owned(), ms(100))]);
        for i in 0..1000 {
            d.record(0, vec![p(&format!("/a/{i}"))], 1, t0);
        }
        assert_eq!(d.next_deadline(), Some(t0 + ms(100)));
        let got = d.take_due(t0 + ms(100));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].events, 1000);
        assert_eq!(got[0].paths.len(), MAX_PATHS);
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn which_events_are_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, RemoveKind};
        let cases = [
            (EventKind::Create(CreateKind::File), true),
            (EventKind::Remove(RemoveKind::Folder), true),
            (EventKind::Modify(ModifyKind::Data(DataChange::Any)), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::From)), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), false),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)),
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                false,
            ),
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                false,
            ),
            (EventKind::Other, false),
        ];
        for (kind, want) in cases {
            assert_eq!(is_change(&kind), want, "{kind:?}");
        }
    }

    #[test]
    fn inotify_limits_are_recognised() {
        let io_err = |code| notify::Error::io(io::Error::from_raw_os_error(code));
        let cases = [
            (
                notify::Error::new(notify::ErrorKind::MaxFilesWatch),
                Some(Limit::Watches),
            ),
            (io_err(libc::ENOSPC), Some(Limit::Watches)),
            (io_err(libc::EMFILE), Some(Limit::Instances)),
            (io_err(libc::EACCES), None),
            (notify::Error::path_not_found(), None),
        ];
        for (err, want) in cases {
            assert_eq!(limit_of(&err), want, "{err:?}");
        }
    }

    /// Captures what tracing prints, to count warnings.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hitting_the_limit_switches_to_polling_with_one_warning() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical");
        let file = root.join("src").join("app.py");
        std::fs::create_dir(root.join("src")).expect("mkdir");
        std::fs::write(&file, "x = 1\n").expect("write");
        // The poller compares whole seconds; an old mtime makes the edit below visible.
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)))
            .expect("backdate");
        let spec = WatchSpec {
            service: "core".into(),
            paths: vec![root.clone()],
            ignore: vec![],
            debounce: ms(50),
        };
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();

        tracing::subscriber::with_default(subscriber, || {
            let roots = prepare_roots(&[spec]).expect("roots");
            let (fs_tx, fs_rx) = std_mpsc::channel();
            let (status_tx, status_rx) = tokio::sync::watch::channel(Status::default());
            let (change_tx, mut change_rx) = mpsc::unbounded_channel();
            let stop = Arc::new(AtomicBool::new(false));
            let mut side =
                FsSide::start(roots, false, fs_tx, status_tx, change_tx, stop).expect("start");
            assert!(!status_rx.borrow().polling);
            let dirs = status_rx.borrow().dirs.clone();

            // As notify reports it when a new directory cannot be watched; then once more.
            side.on_error(notify::Error::new(notify::ErrorKind::MaxFilesWatch));
            side.on_error(notify::Error::new(notify::ErrorKind::MaxFilesWatch));
            assert!(status_rx.borrow().polling);
            assert_eq!(status_rx.borrow().dirs, dirs);

            std::fs::write(&file, "x = 2\n").expect("edit");
            let deadline = Instant::now() + Duration::from_secs(5);
            let change = loop {
                if let Ok(change) = change_rx.try_recv() {
                    break change;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match fs_rx.recv_timeout(left) {
                    // Only what the poller reports counts: the dropped inotify backend shuts
                    // down asynchronously and may still deliver the edit itself.
                    Ok(FsMsg::Fs(Ok(event)))
                        if event.kind
                            == EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)) =>
                    {
                        side.on_event(event)
                    }
                    Ok(_) => {}
                    Err(_) => panic!("the poller reported no edit within 5 s"),
                }
            };
            assert_eq!(change.paths, vec![file.clone()]);
        });

        let logs = String::from_utf8_lossy(&captured.0.lock().expect("not poisoned")).into_owned();
        let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{logs}");
        assert!(
            warnings[0].contains("inotify watch limit reached (fs.inotify.max_user_watches = "),
            "{logs}"
        );
        assert!(warnings[0].contains("`sudo sysctl fs.inotify.max_user_watches=524288`"));
    }

    #[test]
    fn limit_warning_names_the_sysctl() {
        assert_eq!(
            limit_warning(Limit::Watches, "8192"),
            "inotify watch limit reached (fs.inotify.max_user_watches = 8192): falling back to \
             polling every 500 ms; raise it with `sudo sysctl fs.inotify.max_user_watches=524288`"
        );
        assert!(limit_warning(Limit::Instances, "128")
            .contains("`sudo sysctl fs.inotify.max_user_instances=1024`"));
    }
}
