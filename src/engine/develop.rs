//! Compose's `develop.watch` for container services: what a burst of changed files means for a
//! container — rebuild its image, copy files into it, restart it. Pure: rules and paths in, a
//! plan out; the engine carries it out.

use std::path::{Path, PathBuf};

use crate::config::{WatchAction, WatchRule};

/// What to do about one burst of changes of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevelopPlan {
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
    pub fn is_empty(&self) -> bool {
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
pub fn plan(
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
