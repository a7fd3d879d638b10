//! Which copy of a project a command acts on: the main one (the plain project name, the written
//! ports) or a named instance (`<project>-<instance>`, ports recorded once). A linked git
//! worktree is an instance of its own by default, named after the worktree; `--instance` and
//! `DEVSTACK_INSTANCE` name one explicitly. Reads a file or two; never runs git.
//!
//! The record of an instance (`instance.json` in its state folder) says where it was started
//! from, so that `devstack ls` can show it and a second checkout whose name comes out the same
//! is refused instead of taking over the first one's containers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::validate::normalize_project;
use crate::config::Stack;

/// A linked git worktree (`git worktree add`): its name in the repository's
/// `.git/worktrees/NAME` and the folder it is checked out in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    pub name: String,
    pub root: PathBuf,
}

/// The `gitdir:` a `.git` file points at, made absolute against the folder the file is in.
/// Pure.
pub fn parse_gitdir(text: &str, dir: &Path) -> Option<PathBuf> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("gitdir:"))?;
    let path = Path::new(line.trim());
    if line.trim().is_empty() {
        return None;
    }
    Some(if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    })
}

/// The worktree's name when `gitdir` is a linked worktree's (`…/worktrees/NAME`); a
/// submodule's (`…/modules/NAME`) is none. Pure.
pub fn worktree_name(gitdir: &Path) -> Option<String> {
    let mut parts = gitdir.components().rev().filter_map(|c| match c {
        std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    });
    let name = parts.next()?;
    (parts.next()? == "worktrees").then_some(name)
}

/// The linked worktree `dir` is in, if it is in one: the nearest `.git` above it is a file
/// pointing into `…/worktrees/NAME`. The main checkout (a `.git` folder) and folders outside
/// git are none.
pub fn linked_worktree(dir: &Path) -> Option<Worktree> {
    for d in dir.ancestors() {
        let dot_git = d.join(".git");
        let Ok(meta) = std::fs::metadata(&dot_git) else {
            continue;
        };
        if !meta.is_file() {
            return None;
        }
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let gitdir = parse_gitdir(&text, d)?;
        return Some(Worktree {
            name: worktree_name(&gitdir)?,
            root: d.to_path_buf(),
        });
    }
    None
}

/// Where the instance's name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--instance NAME`.
    Flag,
    /// `DEVSTACK_INSTANCE`.
    Env,
    /// The linked worktree the stack file is in.
    Worktree(PathBuf),
}

/// The project a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The project name without instance (`-p`, `name:`, the folder).
    pub base: String,
    /// The instance's own name, normalised; none for the main instance.
    pub instance: Option<String>,
    pub source: Option<Source>,
}

impl Identity {
    pub fn main(base: &str) -> Identity {
        Identity {
            base: base.to_string(),
            instance: None,
            source: None,
        }
    }

    /// The name everything derives from: containers, volumes, network, labels, state folder.
    pub fn project(&self) -> String {
        match &self.instance {
            Some(i) => format!("{}-{i}", self.base),
            None => self.base.clone(),
        }
    }

    /// Not the main instance: its ports are recorded, not as written.
    pub fn is_instance(&self) -> bool {
        self.instance.is_some()
    }
}

/// Decides the instance: `--instance` first, then `DEVSTACK_INSTANCE`, then the linked worktree
/// the stack is in. An empty name given explicitly means the main instance. `Err` is a name
/// with nothing left after normalising. Pure.
pub fn resolve(
    base: &str,
    flag: Option<&str>,
    env: Option<&str>,
    worktree: Option<&Worktree>,
) -> Result<Identity, String> {
    let (raw, source) = match (flag, env, worktree) {
        (Some(f), _, _) => (f.to_string(), Source::Flag),
        (None, Some(e), _) => (e.to_string(), Source::Env),
        (None, None, Some(w)) => (w.name.clone(), Source::Worktree(w.root.clone())),
        (None, None, None) => return Ok(Identity::main(base)),
    };
    if raw.is_empty() {
        return Ok(Identity::main(base));
    }
    let name = normalize_project(&raw);
    let name = name.trim_end_matches(['-', '_']).to_string();
    if name.is_empty() {
        return Err(raw);
    }
    Ok(Identity {
        base: base.to_string(),
        instance: Some(name),
        source: Some(source),
    })
}

/// Makes `stack` the stack of `identity`'s instance: its name (every container, volume, network,
/// label and state folder derives from it), and the names a file gives outright
/// (`container_name:`) suffixed, so no two instances share one by accident.
pub fn rename(stack: &mut Stack, identity: &Identity) {
    let Some(instance) = &identity.instance else {
        return;
    };
    let project = identity.project();
    for (key, v) in stack.volumes.iter_mut() {
        if !v.external && v.name == format!("{}_{key}", identity.base) {
            v.name = format!("{project}_{key}");
        }
    }
    for svc in stack.services.values_mut() {
        if let Some(name) = &mut svc.options.container_name {
            *name = format!("{name}-{instance}");
        }
    }
    stack.name = project;
}

/// An instance's stack as its commands see it: every host port as recorded for the instance,
/// none where nothing is recorded yet (the written ones are the main instance's). `config`
/// shows them, and a port a live edit adds or changes gets a free one, never the main
/// instance's.
pub fn with_recorded_ports(stack: &mut Stack, recorded: &super::ports::RecordedPorts) {
    for (name, svc) in stack.services.iter_mut() {
        for p in &mut svc.ports {
            p.host_port = recorded.get(name, p.container_port, p.protocol);
        }
    }
}

/// Makes a loaded stack the stack of `identity`'s instance: its name and outright names
/// ([`rename`]) and, for an instance beside the main one, its host ports as recorded
/// ([`with_recorded_ports`]). The one place a stack becomes an instance's.
pub fn apply(stack: &mut Stack, identity: &Identity, recorded: &super::ports::RecordedPorts) {
    rename(stack, identity);
    if identity.is_instance() {
        with_recorded_ports(stack, recorded);
    }
}

/// What `up` records about an instance in its state folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub project: String,
    pub base: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The folder of the stack file it was started from (in its worktree).
    pub path: PathBuf,
    /// The checkout it was started from (the folder with its `.git`), when in one: another
    /// stack file of the same checkout is the same instance, not a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<PathBuf>,
    /// The dashboard of the last run, with its access token (the folder is the user's alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
}

const RECORD_FILE: &str = "instance.json";

/// The record in `state_dir`, if one was written.
pub fn load_record(state_dir: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(state_dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the record (replacing it whole, so a reader never sees half of one).
pub fn save_record(state_dir: &Path, record: &Record) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    super::write_whole(&state_dir.join(RECORD_FILE), text.as_bytes())
}

/// The git checkout (main or linked worktree) `dir` is in: the nearest folder above it with a
/// `.git`, if any.
pub fn checkout_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Another checkout that already uses the name: the record's checkout (else its folder) when it
/// is not `here`'s and still exists (a worktree removed since frees its name). Pure but for the
/// existence check.
pub fn claimed_elsewhere(record: Option<&Record>, here: &Path) -> Option<PathBuf> {
    let r = record?;
    let theirs = r.checkout.as_ref().unwrap_or(&r.path);
    let ours = checkout_of(here);
    let ours = if r.checkout.is_some() {
        ours.as_deref().unwrap_or(here)
    } else {
        here
    };
    (theirs != ours && theirs.exists()).then(|| theirs.clone())
}

/// Which known project `--instance NAME` names when no stack file is at hand: the project of
/// that name, else the one instance whose own name it is. Pure.
pub fn find_known<'a>(known: &'a [Record], name: &str) -> Result<&'a Record, Vec<String>> {
    if let Some(r) = known.iter().find(|r| r.project == name) {
        return Ok(r);
    }
    let wanted = normalize_project(name);
    let matches: Vec<&Record> = known
        .iter()
        .filter(|r| r.instance.as_deref() == Some(wanted.as_str()))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        _ => Err(matches.iter().map(|r| r.project.clone()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitdir_lines_table() {
        let dir = Path::new("/src/wt");
        let cases: &[(&str, Option<&str>)] = &[
            (
                "gitdir: /src/main/.git/worktrees/feature-x\n",
                Some("/src/main/.git/worktrees/feature-x"),
            ),
            (
                "gitdir: ../main/.git/worktrees/b",
                Some("/src/wt/../main/.git/worktrees/b"),
            ),
            ("gitdir:", None),
            ("nonsense", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_gitdir(text, dir), want.map(PathBuf::from), "{text:?}");
        }
    }

    #[test]
    fn worktree_names_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/r/.git/worktrees/feature-x", Some("feature-x")),
            ("/r/.git/worktrees/feature-x/", Some("feature-x")),
            ("/r/.git/modules/sub", None),
            ("/r/.git", None),
            ("x", None),
        ];
        for (gitdir, want) in cases {
            assert_eq!(
                worktree_name(Path::new(gitdir)).as_deref(),
                *want,
                "{gitdir}"
            );
        }
    }

    #[test]
    fn worktrees_are_found_from_files_and_the_main_checkout_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("main");
        std::fs::create_dir_all(main.join(".git/worktrees/feat")).unwrap();
        std::fs::create_dir_all(main.join("sub/deeper")).unwrap();
        let wt = tmp.path().join("feat");
        std::fs::create_dir_all(wt.join("app")).unwrap();
        std::fs::write(
            wt.join(".git"),
            format!("gitdir: {}\n", main.join(".git/worktrees/feat").display()),
        )
        .unwrap();
        assert_eq!(linked_worktree(&main.join("sub/deeper")), None);
        assert_eq!(
            linked_worktree(&wt.join("app")),
            Some(Worktree {
                name: "feat".into(),
                root: wt.clone()
            })
        );
        assert_eq!(linked_worktree(Path::new("/")), None);
    }

    #[test]
    fn instance_names_table() {
        let wt = Worktree {
            name: "Feature_X".into(),
            root: "/w".into(),
        };
        type Case<'a> = (Option<&'a str>, Option<&'a str>, bool, Result<&'a str, ()>);
        let cases: &[Case] = &[
            (None, None, false, Ok("shop")),
            (None, None, true, Ok("shop-feature_x")),
            (Some("agent-2"), None, true, Ok("shop-agent-2")),
            (None, Some("ci"), true, Ok("shop-ci")),
            (Some("a"), Some("b"), false, Ok("shop-a")),
            (Some(""), None, true, Ok("shop")),
            (None, Some(""), true, Ok("shop")),
            (Some("My Branch!"), None, false, Ok("shop-mybranch")),
            (Some("--x--"), None, false, Ok("shop-x")),
            (Some("!!"), None, false, Err(())),
        ];
        for (flag, env, in_worktree, want) in cases {
            let got = resolve("shop", *flag, *env, in_worktree.then_some(&wt));
            assert_eq!(
                got.as_ref().map(Identity::project).map_err(|_| ()),
                want.map(str::to_string),
                "{flag:?} {env:?} {in_worktree}"
            );
        }
        let from_wt = resolve("shop", None, None, Some(&wt)).unwrap();
        assert_eq!(from_wt.source, Some(Source::Worktree("/w".into())));
        assert!(from_wt.is_instance());
        assert!(!resolve("shop", None, None, None).unwrap().is_instance());
    }

    #[test]
    fn an_instance_shares_no_name_with_the_main_one() {
        let yaml = "name: shop\nservices:\n  db:\n    image: postgres:15\n    container_name: shop-db\n    volumes: [data:/var/lib/postgresql/data]\n  web:\n    command: sleep 1\nvolumes:\n  data: {}\n  shared: { external: true }\n";
        let main = crate::config::test_stack(yaml);
        let mut stack = main.clone();
        rename(&mut stack, &resolve("shop", Some("b"), None, None).unwrap());
        assert_eq!(stack.name, "shop-b");
        assert_eq!(stack.volumes["data"].name, "shop-b_data");
        assert_eq!(stack.volumes["shared"].name, main.volumes["shared"].name);
        assert_eq!(
            stack.services["db"].options.container_name.as_deref(),
            Some("shop-db-b")
        );
        // Everything the engine creates derives from the name.
        let ports = crate::plan::HostPorts::default();
        let a = crate::plan::container_spec(&main.name, &main.services["db"], &ports, "i").unwrap();
        let b =
            crate::plan::container_spec(&stack.name, &stack.services["db"], &ports, "i").unwrap();
        assert_ne!(a.name, b.name);
        assert_ne!(a.network, b.network);
        assert_ne!(a.mounts, b.mounts);
        assert_ne!(
            a.labels[crate::runtime::labels::PROJECT],
            b.labels[crate::runtime::labels::PROJECT]
        );
        assert_ne!(
            super::super::preferred_state_dir(&main.name),
            super::super::preferred_state_dir(&stack.name)
        );
        let mut recorded = crate::project::ports::RecordedPorts::default();
        recorded.0.insert(
            "db".into(),
            vec![crate::project::ports::RecordedPort {
                container_port: 5432,
                protocol: crate::config::Protocol::Tcp,
                host_port: 41234,
            }],
        );
        let mut pinned = crate::config::test_stack(
            "services:\n  db:\n    image: postgres:15\n    ports: [\"5432:5432\", \"9187:9187\"]\n",
        );
        with_recorded_ports(&mut pinned, &recorded);
        let hosts: Vec<Option<u16>> = pinned.services["db"]
            .ports
            .iter()
            .map(|p| p.host_port)
            .collect();
        assert_eq!(hosts, [Some(41234), None], "recorded, else chosen at start");

        let mut same = main.clone();
        rename(&mut same, &Identity::main("shop"));
        assert_eq!(same.name, main.name);
        assert_eq!(
            same.services["db"].options.container_name,
            main.services["db"].options.container_name
        );
    }

    #[test]
    fn a_name_is_claimed_by_another_existing_checkout_only() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = |p: &Path| Record {
            project: "shop-x".into(),
            base: "shop".into(),
            instance: Some("x".into()),
            path: p.to_path_buf(),
            checkout: None,
            dashboard: None,
        };
        let here = tmp.path().join("here");
        assert_eq!(claimed_elsewhere(None, &here), None);
        assert_eq!(claimed_elsewhere(Some(&rec(&here)), &here), None);
        assert_eq!(
            claimed_elsewhere(Some(&rec(tmp.path())), &here),
            Some(tmp.path().to_path_buf())
        );
        assert_eq!(
            claimed_elsewhere(Some(&rec(&tmp.path().join("gone"))), &here),
            None,
            "a removed worktree frees its name"
        );
        // Another stack file of the same checkout is the same instance.
        let wt = tmp.path().join("wt");
        std::fs::create_dir_all(wt.join("sub")).unwrap();
        std::fs::write(wt.join(".git"), "gitdir: /x/.git/worktrees/wt\n").unwrap();
        let started = Record {
            checkout: checkout_of(&wt),
            ..rec(&wt)
        };
        assert_eq!(claimed_elsewhere(Some(&started), &wt.join("sub")), None);
        assert_eq!(
            claimed_elsewhere(Some(&started), &here),
            Some(wt.clone()),
            "a folder of another checkout"
        );
    }

    #[test]
    fn known_instances_are_found_by_project_or_instance_name() {
        let rec = |project: &str, instance: Option<&str>| Record {
            project: project.into(),
            base: "b".into(),
            instance: instance.map(str::to_string),
            path: "/".into(),
            checkout: None,
            dashboard: None,
        };
        let known = vec![
            rec("shop", None),
            rec("shop-x", Some("x")),
            rec("blog-x", Some("x")),
            rec("shop-y", Some("y")),
        ];
        assert_eq!(find_known(&known, "shop-x").unwrap().project, "shop-x");
        assert_eq!(find_known(&known, "y").unwrap().project, "shop-y");
        assert_eq!(
            find_known(&known, "x").unwrap_err(),
            vec!["shop-x".to_string(), "blog-x".to_string()]
        );
        assert!(find_known(&known, "z").unwrap_err().is_empty());
    }
}
