//! Top-level elements: the project name and the `secrets` definitions.

use super::*;

pub(super) fn project_name(c: &mut Checker<'_>, written: Option<&str>) -> String {
    // `-p ""` (or an empty `COMPOSE_PROJECT_NAME`) falls back as if not given, as in Compose.
    if let Some(p) = c.ctx.project_override.filter(|p| !p.is_empty()) {
        // A name given on purpose must already be normal; only the folder name is normalised.
        let n = normalize_project(p);
        if n != p {
            c.err(
                Diagnostic::new(format!("invalid project name `{p}`")).help(if n.is_empty() {
                    "use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                        .to_string()
                } else {
                    format!("use lowercase letters, digits, `-` and `_`, starting with a letter or digit: `{n}`")
                }),
            );
        }
        return n;
    }
    if let Some(w) = written {
        // A `name:` read from the file is normalised, as Compose does (`myProject` is
        // `myproject`); only a name that leaves nothing is refused.
        let n = normalize_project(w);
        if n.is_empty() {
            c.err(
                Diagnostic::new(format!("invalid project name `{w}`"))
                    .at_value(KeyPath::root().key("name"))
                    .help("use lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
            );
        }
        return n;
    }
    let dir = c
        .ctx
        .root
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = normalize_project(&dir);
    if n.is_empty() {
        "devstack".to_string()
    } else {
        n
    }
}

/// Lowercase, only `[a-z0-9_-]`, starting with a letter or digit (Compose's rule).
pub fn normalize_project(s: &str) -> String {
    let lowered: String = s
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    lowered
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

pub(super) fn secret_defs(c: &mut Checker<'_>, raw: &RawStack) -> IndexMap<String, SecretDef> {
    let mut out = IndexMap::new();
    for (key, d) in raw.secrets.iter().flatten() {
        let path = KeyPath::root().key("secrets").key(key.clone());
        let def = match (&d.file, &d.environment) {
            (Some(f), None) => {
                let Some(p) = host_path(c, f, f, &path.key("file"), c.ctx.root) else {
                    continue;
                };
                SecretDef::File(p)
            }
            (None, Some(e)) => SecretDef::Environment(e.clone()),
            _ => {
                c.err(
                    Diagnostic::new(format!(
                        "secret `{key}` needs exactly one of `file` and `environment`"
                    ))
                    .at(path)
                    .help("e.g. `file: ./db_password.txt` or `environment: DB_PASSWORD`"),
                );
                continue;
            }
        };
        out.insert(key.clone(), def);
    }
    out
}

/// A service's `secrets`: each declared at the top level, mounted at its target.
pub(super) fn service_secrets(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    top: &TopLevel<'_>,
) -> Vec<SecretMount> {
    let mut secrets = Vec::new();
    for (i, ServiceSecret(s)) in rs.secrets.iter().enumerate() {
        let spath = path.key("secrets").index(i);
        if !top.secrets.contains_key(&s.source) {
            let declared: Vec<&str> = top.secrets.keys().map(String::as_str).collect();
            c.err(
                Diagnostic::new(format!(
                    "service `{name}` uses undeclared secret `{}`",
                    s.source
                ))
                .at_value(spath)
                .help(
                    did_you_mean(&s.source, declared.iter().copied()).unwrap_or_else(|| {
                        format!(
                        "declare it at the top level:\n  secrets:\n    {}:\n      file: ./{}.txt",
                        s.source, s.source
                    )
                    }),
                ),
            );
            continue;
        }
        let target = match &s.target {
            Some(t) if t.starts_with('/') => t.clone(),
            Some(t) => format!("/run/secrets/{t}"),
            None => format!("/run/secrets/{}", s.source),
        };
        secrets.push(SecretMount {
            source: s.source.clone(),
            target,
            file: match top.secrets.get(&s.source) {
                Some(SecretDef::File(f)) => Some(f.clone()),
                _ => None,
            },
        });
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_normalized() {
        for (input, want) in [
            ("ensurestudy", "ensurestudy"),
            ("My_App", "my_app"),
            ("-x y", "xy"),
            ("__", ""),
            ("a.b", "ab"),
            ("www.my.project", "wwwmyproject"),
            ("-my_project", "my_project"),
        ] {
            assert_eq!(normalize_project(input), want, "{input}");
        }
    }
}

/// `logs:`, checked: at least one run is kept.
pub(super) fn log_settings(
    c: &mut Checker<'_>,
    raw: Option<&super::super::raw::RawLogs>,
) -> LogSettings {
    let mut s = LogSettings::default();
    if let Some(n) = raw.and_then(|r| r.keep_runs) {
        match usize::try_from(n) {
            Ok(n) if n >= 1 => s.keep_runs = n,
            _ => c.err(
                Diagnostic::new(format!("`logs.keep_runs` is {n}; at least one run is kept"))
                    .at_value(KeyPath::root().key("logs").key("keep_runs"))
                    .help("e.g. `logs: { keep_runs: 10 }` (the default); the current run counts"),
            ),
        }
    }
    s
}

#[cfg(test)]
mod log_settings_tests {
    use crate::config::{load, LoadOptions, DEFAULT_FILE};

    fn try_load(yaml: &str) -> Result<crate::config::Stack, String> {
        let dir = tempfile::tempdir().expect("a temp folder");
        std::fs::write(dir.path().join(DEFAULT_FILE), yaml).expect("writing the stack file");
        let opts = LoadOptions {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        load(&opts, &|_| None)
            .map(|l| l.stack)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn keep_runs_defaults_to_ten_and_must_keep_one() {
        let svc = "services:\n  a: { command: [sleep, '1'] }\n";
        assert_eq!(try_load(svc).expect("valid").logs.keep_runs, 10);
        let three = try_load(&format!("{svc}logs: {{ keep_runs: 3 }}\n")).expect("valid");
        assert_eq!(three.logs.keep_runs, 3);
        let zero = try_load(&format!("{svc}logs: {{ keep_runs: 0 }}\n")).unwrap_err();
        assert!(zero.contains("`logs.keep_runs` is 0"), "{zero}");
        let typo = try_load(&format!("{svc}logs: {{ keep_run: 3 }}\n")).unwrap_err();
        assert!(typo.contains("keep_run"), "{typo}");
    }
}
