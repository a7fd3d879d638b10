//! The program a native service runs, found as a shell would find it — and, when it is not
//! there, whether a task of the stack creates it. `up` checks this before anything starts, so a
//! missing program is named with the setup that provides it instead of ending in an exit 127;
//! `doctor` reports the same findings.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::validate::normalize_path;
use crate::config::{Command, ServiceKind, Stack};
use crate::plan::shell_words;

/// Words a shell runs itself, or that start something other than a program: every POSIX
/// special built-in (XCU 2.14), the utilities POSIX requires built in (`cd`, `read`, `wait`,
/// …), the reserved words (XCU 2.4), and the common built-ins of sh, dash and bash.
const NOT_A_PROGRAM: &[&str] = &[
    // special built-ins
    "break", ":", "continue", ".", "eval", "exec", "exit", "export", "readonly", "return", "set",
    "shift", "times", "trap", "unset", // intrinsic utilities
    "alias", "bg", "cd", "command", "false", "fc", "fg", "getopts", "hash", "jobs", "kill",
    "newgrp", "pwd", "read", "true", "type", "ulimit", "umask", "unalias", "wait",
    // reserved words
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then",
    "until", "while", "(", // common built-ins
    "source", "test", "[", "echo", "printf", "builtin", "local", "let", "declare", "typeset",
];

/// Finds `program` as a shell would: a path (relative to `cwd`) or a name on PATH.
pub(crate) fn find(program: &str, cwd: &Path, path_var: Option<&str>) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        p.is_file()
            && p.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = cwd.join(program);
        return is_exec(&p).then_some(p);
    }
    path_var?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| is_exec(p))
}

pub(crate) fn argv_of(c: &Command) -> Vec<String> {
    match c {
        Command::Shell(s) => shell_words(s),
        Command::Argv(v) => v.clone(),
    }
}

/// The program a command starts, when a plain word says it: not a shell builtin, a variable
/// assignment or a word with shell syntax in it.
pub(crate) fn program_of(c: &Command) -> Option<String> {
    let first = argv_of(c).into_iter().next()?;
    // A list is executed as it is: no shell runs its first word.
    if matches!(c, Command::Argv(_)) {
        return Some(first);
    }
    let shell_syntax = first.contains([
        '$', '`', '=', '*', '?', '(', ')', '{', '}', ';', '&', '|', '<', '>',
    ]);
    (!shell_syntax && !NOT_A_PROGRAM.contains(&first.as_str())).then_some(first)
}

/// A native service whose program is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingProgram {
    pub service: String,
    /// As written in the command.
    pub program: String,
    /// Where it was looked for: the path it resolves to, or `None` for a name on PATH.
    pub path: Option<PathBuf>,
    /// The task whose `generates` lists it, if one does (the service then does not depend on it).
    pub task: Option<String>,
}

impl MissingProgram {
    /// What to do about it, in one line.
    pub fn help(&self) -> String {
        match (&self.task, &self.path) {
            (Some(t), _) => format!(
                "task `{t}` creates it: add `depends_on: {{ {t}: {{ condition: completed }} }}` to `{}` so that it runs first",
                self.service
            ),
            (None, Some(p)) => format!(
                "create it (a setup step of the project?), or declare that step as a task with `task: {{ generates: [{}] }}` and make `{}` depend on it with `condition: completed`",
                p.display(),
                self.service
            ),
            (None, None) => format!(
                "install `{}` or put it on PATH (PATH is searched as `devstack` sees it)",
                self.program
            ),
        }
    }
}

/// Every service in `selected` whose program is missing. With `before_tasks`, a program that a
/// selected task the service depends on creates is not counted: that task runs first.
pub(crate) fn missing(
    stack: &Stack,
    selected: &[String],
    path_var: Option<&str>,
    before_tasks: bool,
) -> Vec<MissingProgram> {
    let mut out = Vec::new();
    for name in selected {
        let Some(svc) = stack.services.get(name) else {
            continue;
        };
        let ServiceKind::Process {
            command,
            working_dir,
        } = &svc.kind
        else {
            continue;
        };
        let Some(program) = program_of(command) else {
            continue;
        };
        if find(&program, working_dir, path_var).is_some() {
            continue;
        }
        let path = program
            .contains('/')
            .then(|| normalize_path(&working_dir.join(&program)));
        let task = path.as_ref().and_then(|p| {
            stack
                .services
                .iter()
                .find(|(_, s)| s.task.as_ref().is_some_and(|t| t.generates.contains(p)))
                .map(|(n, _)| n.clone())
        });
        if let Some(t) = &task {
            if before_tasks && selected.contains(t) && depends_on(stack, name, t) {
                continue;
            }
        }
        out.push(MissingProgram {
            service: name.clone(),
            program,
            path,
            task,
        });
    }
    out
}

/// Whether `service` depends on `on`, directly or through others.
fn depends_on(stack: &Stack, service: &str, on: &str) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut todo: Vec<&str> = vec![service];
    while let Some(s) = todo.pop() {
        let Some(svc) = stack.services.get(s) else {
            continue;
        };
        for d in svc.depends_on.keys() {
            if d == on {
                return true;
            }
            if !seen.contains(&d.as_str()) {
                seen.push(d);
                todo.push(d);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(yaml: &str, root: &Path) -> Stack {
        std::fs::write(root.join(crate::config::DEFAULT_FILE), yaml).unwrap();
        let opts = crate::config::LoadOptions {
            cwd: root.to_path_buf(),
            ..Default::default()
        };
        crate::config::load(&opts, &|_| None).unwrap().stack
    }

    #[test]
    fn the_program_of_a_command() {
        let p = |s: &str| program_of(&Command::Shell(s.to_string()));
        assert_eq!(
            p("../../.venv/bin/python -m flask run").as_deref(),
            Some("../../.venv/bin/python")
        );
        assert_eq!(p("npm run dev").as_deref(), Some("npm"));
        assert_eq!(p("exec npm run dev"), None);
        assert_eq!(p("FOO=1 npm run dev"), None);
        assert_eq!(p("$HOME/bin/x"), None);
        // Every POSIX special built-in is the shell's own, never a program on PATH.
        for builtin in [
            "break", ":", "continue", ".", "eval", "exec", "exit", "export", "readonly", "return",
            "set", "shift", "times", "trap", "unset",
        ] {
            assert_eq!(p(&format!("{builtin} 1")), None, "{builtin}");
        }
        assert_eq!(p("exit 1"), None);
        assert_eq!(p("sleep 1; exit 1").as_deref(), Some("sleep"));
        // A list runs without a shell: its first word is a program, even one named `exit`.
        let argv =
            |v: &[&str]| program_of(&Command::Argv(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(argv(&["exit", "1"]).as_deref(), Some("exit"));
        assert_eq!(argv(&["sleep", "1"]).as_deref(), Some("sleep"));
    }

    #[test]
    fn a_missing_program_is_named_with_the_task_that_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = r#"
services:
  venv:
    command: "true"
    task: { generates: [.venv/bin/python] }
  api:
    command: .venv/bin/python -m http.server
    depends_on: { venv: completed }
  worker:
    command: .venv/bin/python -m worker
  tool:
    command: no-such-program-devstack --flag
"#;
        let s = stack(yaml, dir.path());
        let all: Vec<String> = s.services.keys().cloned().collect();
        let m = missing(&s, &all, Some("/usr/bin:/bin"), true);
        // `api` depends on the task that creates its program: not missing.
        let names: Vec<&str> = m.iter().map(|m| m.service.as_str()).collect();
        assert_eq!(names, ["worker", "tool"]);
        assert_eq!(m[0].task.as_deref(), Some("venv"));
        assert!(
            m[0].help()
                .contains("depends_on: { venv: { condition: completed } }"),
            "{}",
            m[0].help()
        );
        assert_eq!(m[1].path, None);
        assert!(m[1].help().contains("install `no-such-program-devstack`"));
        // Once the tasks have run, a program still not there is missing, with its task named.
        let m = missing(
            &s,
            &["venv".to_string(), "api".to_string()],
            Some("/usr/bin:/bin"),
            false,
        );
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].service.as_str(), m[0].task.as_deref()),
            ("api", Some("venv"))
        );
        // Without the task selected, `api`'s program is missing too.
        let m = missing(&s, &["api".to_string()], Some("/usr/bin:/bin"), true);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].task.as_deref(), Some("venv"));
        // Once it exists, nothing is missing.
        std::fs::create_dir_all(dir.path().join(".venv/bin")).unwrap();
        std::fs::write(dir.path().join(".venv/bin/python"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join(".venv/bin/python"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            missing(&s, &["worker".to_string()], Some("/usr/bin:/bin"), true),
            vec![]
        );
    }
}
