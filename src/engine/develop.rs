//! Compose's `develop.watch` for container services: what a burst of changed files means for a
//! container — rebuild its image, copy files into it, restart it. [`plan`] is pure: rules and
//! paths in, a plan out. [`Develop`] is the engine's part that carries a plan out: a rebuild
//! and a sync each run as a tracked job, and what they mean for the service's lifecycle goes
//! back to the kernel as an input.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::ServiceName;
use crate::config::{Stack, WatchAction, WatchRule};
use crate::event::StackEvent;
use crate::kernel::Input;
use crate::logs::LogHandle;
use crate::runtime::ContainerRuntime;

/// A rebuild's result: the service, and its new image id (or why not).
pub(crate) type Rebuilt = (String, Result<String, super::UpError>);

/// The engine's `develop.watch` part.
pub(crate) struct Develop {
    rebuilt: mpsc::UnboundedSender<Rebuilt>,
}

impl Develop {
    /// The part, and where its rebuilds' results arrive.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Rebuilt>) {
        let (rebuilt, rx) = mpsc::unbounded_channel();
        (Self { rebuilt }, rx)
    }

    /// Carries out what a burst of changes of `service` (a container with rules) means. The
    /// kernel's input when it is a restart right away; a rebuild or a sync answers later.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the engine's parts it needs"
    )]
    pub(crate) async fn on_change<R: ContainerRuntime>(
        &self,
        rt: &R,
        stack: &Stack,
        service: &str,
        changed: &[PathBuf],
        container: Option<String>,
        logs: &LogHandle,
        inputs: &mpsc::UnboundedSender<Input>,
        jobs: &mut JoinSet<()>,
    ) -> Option<Input> {
        let svc = &stack.services[service];
        let plan = plan(&svc.options.develop, changed, &stack.root, &|p| p.exists());
        if plan.is_empty() {
            return None;
        }
        let service = service.to_string();
        if plan.rebuild {
            let paths = plan.paths.join(", ");
            logs.event(&service, format!("files changed: {paths}; rebuilding"))
                .await;
            self.rebuild(rt, stack, service, logs, jobs);
            return None;
        }
        if plan.copy.is_empty() && plan.delete.is_empty() {
            return Some(Input::FilesChanged {
                service: ServiceName::from(service),
                paths: plan.paths,
            });
        }
        let id = container?;
        let (rt, logs, tx) = (rt.clone(), logs.clone(), inputs.clone());
        jobs.spawn(sync(rt, id, service, plan, logs, tx));
        None
    }

    /// Builds the service's image again; the result arrives as a [`Rebuilt`].
    fn rebuild<R: ContainerRuntime>(
        &self,
        rt: &R,
        stack: &Stack,
        service: String,
        logs: &LogHandle,
        jobs: &mut JoinSet<()>,
    ) {
        let jobs_of = crate::build::jobs(stack, std::slice::from_ref(&service));
        let Some(job) = jobs_of.unwrap_or_default().into_iter().next() else {
            return;
        };
        let (rt, logs, tx) = (rt.clone(), logs.clone(), self.rebuilt.clone());
        jobs.spawn(async move {
            let r = super::build::ensure(&rt, &job, super::BuildFlags::default(), &logs).await;
            let _ = tx.send((service, r));
        });
    }
}

/// What a failed rebuild is told as: the container keeps its previous image.
pub(crate) fn rebuild_failed(e: &super::UpError) -> String {
    match e {
        super::UpError::Build(f) => format!(
            "the rebuild of `{}` failed: {} ({}{}); the container keeps running the previous image",
            f.image,
            f.message,
            f.dockerfile,
            f.line.map(|l| format!(":{l}")).unwrap_or_default()
        ),
        super::UpError::Runtime(r) => format!("the rebuild failed: {r}"),
        _ => "the rebuild failed".to_string(),
    }
}

/// Copies the plan's files into the running container and removes its deleted ones; then the
/// restart it asks for goes to the kernel.
async fn sync<R: ContainerRuntime>(
    rt: R,
    id: String,
    service: String,
    plan: DevelopPlan,
    logs: LogHandle,
    inputs: mpsc::UnboundedSender<Input>,
) {
    let copy = plan.copy.clone();
    let tar = tokio::task::spawn_blocking(move || crate::build::context::files_tar(&copy)).await;
    let mut problems = Vec::new();
    match tar {
        Ok(Ok(t)) if !plan.copy.is_empty() => {
            if let Err(e) = rt.copy_into(&id, t).await {
                problems.push(e.to_string());
            }
        }
        Ok(Err(e)) => problems.push(e.to_string()),
        _ => {}
    }
    if !plan.delete.is_empty() {
        let mut argv = vec!["rm".to_string(), "-rf".to_string(), "--".to_string()];
        argv.extend(plan.delete.iter().cloned());
        if let Err(e) = rt.exec(&id, &argv).await {
            problems.push(e.to_string());
        }
    }
    let removed = if plan.delete.is_empty() {
        String::new()
    } else {
        format!(", removed {}", plan.delete.len())
    };
    let what = format!(
        "synced {} file(s){removed} into the container: {}",
        plan.copy.len(),
        plan.paths.join(", ")
    );
    if problems.is_empty() {
        logs.event(&service, what).await;
    } else {
        let text = format!("sync failed: {}", problems.join("; "));
        logs.publish(StackEvent::warning(Some(&service), text))
            .await;
    }
    if plan.restart {
        let _ = inputs.send(Input::FilesChanged {
            service: ServiceName::from(service),
            paths: plan.paths,
        });
    }
}

/// What to do about one burst of changes of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DevelopPlan {
    /// Rebuild the image and recreate the container (wins over everything else).
    pub rebuild: bool,
    /// Host file → absolute path in the container, to copy.
    pub copy: Vec<(PathBuf, String)>,
    /// Absolute paths in the container to remove (their host file is gone).
    pub delete: Vec<String>,
    /// Restart the container (after copying).
    pub restart: bool,
    /// The changed paths the plan is about (relative to the stack folder when inside it).
    pub paths: Vec<String>,
}

impl DevelopPlan {
    pub(crate) fn is_empty(&self) -> bool {
        !self.rebuild && self.copy.is_empty() && self.delete.is_empty() && !self.restart
    }
}

fn ignored(rule: &WatchRule, rel: &Path) -> bool {
    if rule.ignore.is_empty() {
        return false;
    }
    let mut b = ignore::gitignore::GitignoreBuilder::new(&rule.path);
    for pat in &rule.ignore {
        // A pattern that is not a valid glob ignores nothing.
        let _ = b.add_line(None, pat);
    }
    b.build().is_ok_and(|gi| {
        gi.matched_path_or_any_parents(rule.path.join(rel), false)
            .is_ignore()
    })
}

/// The plan for `changed` (absolute host paths) under `rules`; `exists` says whether a host path
/// is still there (a file that is gone is deleted in the container).
pub(crate) fn plan(
    rules: &[WatchRule],
    changed: &[PathBuf],
    root: &Path,
    exists: &dyn Fn(&Path) -> bool,
) -> DevelopPlan {
    let mut p = DevelopPlan::default();
    for path in changed {
        let mut hit = false;
        for rule in rules {
            let Ok(rel) = path.strip_prefix(&rule.path) else {
                continue;
            };
            if ignored(rule, rel) {
                continue;
            }
            hit = true;
            match rule.action {
                WatchAction::Rebuild => p.rebuild = true,
                WatchAction::Restart => p.restart = true,
                WatchAction::Sync | WatchAction::SyncRestart => {
                    if rule.action == WatchAction::SyncRestart {
                        p.restart = true;
                    }
                    let target = rule.target.as_deref().unwrap_or("");
                    let rel = rel.to_string_lossy();
                    let dest = if rel.is_empty() {
                        target.to_string()
                    } else {
                        format!("{target}/{rel}")
                    };
                    if exists(path) {
                        p.copy.push((path.clone(), dest));
                    } else {
                        p.delete.push(dest);
                    }
                }
            }
        }
        if hit {
            p.paths.push(
                path.strip_prefix(root)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            );
        }
    }
    if p.rebuild {
        // A rebuild carries every change in the new image.
        p.copy.clear();
        p.delete.clear();
        p.restart = false;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, action: WatchAction, target: Option<&str>, ignore: &[&str]) -> WatchRule {
        WatchRule {
            path: PathBuf::from(path),
            action,
            target: target.map(str::to_string),
            ignore: ignore.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn actions() {
        let rules = [
            rule(
                "/s/app/src",
                WatchAction::Sync,
                Some("/app/src"),
                &["*.tmp"],
            ),
            rule(
                "/s/app/conf",
                WatchAction::SyncRestart,
                Some("/etc/app"),
                &[],
            ),
            rule("/s/app/package.json", WatchAction::Rebuild, None, &[]),
        ];
        let root = Path::new("/s");
        let exists = |p: &Path| !p.ends_with("gone.py");
        let run = |paths: &[&str]| {
            let changed: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            plan(&rules, &changed, root, &exists)
        };

        let p = run(&[
            "/s/app/src/a/main.py",
            "/s/app/src/gone.py",
            "/s/app/src/x.tmp",
        ]);
        assert_eq!(
            p.copy,
            [(
                PathBuf::from("/s/app/src/a/main.py"),
                "/app/src/a/main.py".to_string()
            )]
        );
        assert_eq!(p.delete, ["/app/src/gone.py"]);
        assert!(!p.restart && !p.rebuild);
        assert_eq!(p.paths, ["app/src/a/main.py", "app/src/gone.py"]);

        let p = run(&["/s/app/conf/app.ini"]);
        assert!(p.restart);
        assert_eq!(p.copy[0].1, "/etc/app/app.ini");

        let p = run(&["/s/app/package.json", "/s/app/src/a/main.py"]);
        assert!(p.rebuild && p.copy.is_empty() && !p.restart);

        assert!(run(&["/s/elsewhere.txt", "/s/app/src/x.tmp"]).is_empty());
    }
}
