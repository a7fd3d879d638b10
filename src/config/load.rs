//! Reads stack files: finds them, parses YAML, merges several `-f` files, interpolates
//! variables, and hands the result to `validate`. The only module that knows the YAML crates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::Value;

use super::diagnostic::{did_you_mean, Diagnostic};
use super::interpolate::{interpolate, InterpolateError, Notes};
use super::keypath::KeyPath;
use super::locate::{self, Finding, SpanIndex};
use super::model::Stack;
use super::raw::{RawService, RawStack};
use super::validate::{self, PROBE_KINDS};

/// The file devstack looks for, from the current folder upward, when no `-f` is given.
pub const DEFAULT_FILE: &str = "stack.yaml";

/// How to find and read the stack.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty means search for `stack.yaml`.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// Where relative `-f` paths and the upward search start.
    pub cwd: PathBuf,
}

/// A loaded stack and the warnings to show (unset variables).
#[derive(Debug)]
pub struct Loaded {
    pub stack: Stack,
    pub warnings: Vec<String>,
}

/// Everything wrong with the stack files, with the texts needed to draw snippets.
#[derive(Debug)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
    sources: HashMap<PathBuf, String>,
}

impl ConfigError {
    fn one(d: Diagnostic) -> Self {
        Self {
            diagnostics: vec![d],
            sources: HashMap::new(),
        }
    }

    /// All diagnostics drawn for a terminal (or plain, without `color`).
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let src = d
                .file
                .as_ref()
                .and_then(|f| self.sources.get(f))
                .map(String::as_str);
            out.push_str(&super::diagnostic::render(d, src, color));
        }
        if self.diagnostics.len() > 1 {
            out.push_str(&format!(
                "{} problems in the stack file\n",
                self.diagnostics.len()
            ));
        }
        out
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// Problems found after loading (by `render`), located in the stack files by key path as
    /// the loader locates its own. A file that cannot be read again is named without a snippet.
    pub fn located(diagnostics: Vec<Diagnostic>, paths: &[PathBuf], cwd: &Path) -> Self {
        let files: Vec<SourceFile> = paths
            .iter()
            .filter_map(|p| read_one(p, &shown_path(p, cwd)).ok())
            .collect();
        let sources = files
            .iter()
            .map(|f| (f.shown.clone(), f.text.clone()))
            .collect();
        ConfigError {
            diagnostics: diagnostics
                .into_iter()
                .map(|d| locate_in(d, &files))
                .collect(),
            sources,
        }
    }
}

struct SourceFile {
    /// As shown to the user: relative to the current folder when below it.
    shown: PathBuf,
    dir: PathBuf,
    text: String,
    index: SpanIndex,
    value: Value,
}

/// Finds `stack.yaml` in `start` or the nearest parent folder that has one, as git finds `.git`.
pub fn find_stack_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(DEFAULT_FILE))
        .find(|p| p.is_file())
}

fn shown_path(path: &Path, cwd: &Path) -> PathBuf {
    path.strip_prefix(cwd)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Loads, merges, interpolates and validates the stack. `env` is devstack's own environment.
pub fn load(
    opts: &LoadOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let paths: Vec<PathBuf> = if opts.files.is_empty() {
        match find_stack_file(&opts.cwd) {
            Some(p) => vec![p],
            None => {
                return Err(ConfigError::one(
                    Diagnostic::new(format!(
                        "no `{DEFAULT_FILE}` in `{}` or any parent folder",
                        opts.cwd.display()
                    ))
                    .help(format!("run devstack inside a checkout that has a `{DEFAULT_FILE}`, or pass one with `-f FILE`")),
                ))
            }
        }
    } else {
        opts.files.iter().map(|f| opts.cwd.join(f)).collect()
    };

    let mut errors = Vec::new();
    let mut sources: HashMap<PathBuf, String> = HashMap::new();
    let mut files: Vec<SourceFile> = Vec::new();
    for path in &paths {
        let shown = shown_path(path, &opts.cwd);
        match read_one(path, &shown) {
            Ok(sf) => {
                sources.insert(sf.shown.clone(), sf.text.clone());
                files.push(sf);
            }
            Err((diags, text)) => {
                if let Some(t) = text {
                    sources.insert(shown.clone(), t);
                }
                errors.extend(diags);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError {
            diagnostics: errors,
            sources,
        });
    }

    let root = paths[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.cwd.clone());
    let fail = |diags: Vec<Diagnostic>, files: &[SourceFile], sources: HashMap<PathBuf, String>| {
        ConfigError {
            diagnostics: diags.into_iter().map(|d| locate_in(d, files)).collect(),
            sources,
        }
    };

    // The `.env` files named at the top level fill in variables the environment does not set.
    let mut dotenv: HashMap<String, String> = HashMap::new();
    for f in &files {
        let Some(list) = f.value.get("env_file") else {
            continue;
        };
        let names: Vec<&str> = match list {
            Value::String(s) => vec![s.as_str()],
            Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(), // a wrong type is reported by the typed pass
        };
        for name in names {
            let p = f.dir.join(name);
            // A checkout without `.env` still runs on the stack's defaults: a missing top-level
            // env_file is not an error (a service's own env_file is).
            if !p.exists() {
                continue;
            }
            match read_env_file(&p) {
                Ok(vars) => dotenv.extend(vars),
                Err(msg) => errors.push(
                    Diagnostic::new(msg)
                        .at_value(KeyPath::root().key("env_file"))
                        .help("lines are `KEY=value`; quote values with spaces or `#`"),
                ),
            }
        }
    }
    let lookup = |k: &str| env(k).or_else(|| dotenv.get(k).cloned());

    let mut merged = Value::Mapping(Default::default());
    for f in &files {
        merge(&mut merged, f.value.clone());
    }

    let mut warnings = Vec::new();
    interpolate_tree(
        &mut merged,
        &KeyPath::root(),
        &lookup,
        &mut errors,
        &mut warnings,
    );
    if !errors.is_empty() {
        return Err(fail(errors, &files, sources));
    }

    let mut raw = match typed(merged) {
        Ok(r) => r,
        Err(diags) => return Err(fail(diags, &files, sources)),
    };

    // A service's env_file adds variables its `environment` does not set.
    if let Some(services) = raw.services.as_mut() {
        for (name, svc) in services.iter_mut() {
            let Some(list) = svc.env_file.clone() else {
                continue;
            };
            for (i, f) in list.0.iter().enumerate() {
                let p = root.join(f);
                let path = KeyPath::root()
                    .key("services")
                    .key(name.clone())
                    .key("env_file");
                let path = if list.0.len() > 1 {
                    path.index(i)
                } else {
                    path
                };
                match read_env_file(&p) {
                    Ok(vars) => {
                        for (k, v) in vars {
                            svc.environment.0.entry(k).or_insert(Some(v));
                        }
                    }
                    Err(msg) => errors.push(
                        Diagnostic::new(msg.replace(&p.display().to_string(), f))
                            .at_value(path)
                            .help("create the file (paths are relative to the first stack file), or remove it from `env_file`"),
                    ),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(fail(errors, &files, sources));
    }

    let ctx = validate::Context {
        root: &root,
        project_override: opts.project_name.as_deref(),
        env: &lookup,
    };
    match validate::validate(&raw, &ctx) {
        Ok(mut stack) => {
            stack.files = paths;
            let texts: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
            stack.secrets = super::secrets::interpolated_secret_values(&texts, &lookup);
            Ok(Loaded { stack, warnings })
        }
        Err(diags) => Err(fail(diags, &files, sources)),
    }
}

/// The typed pass. Each service is read on its own so that one error per service is reported,
/// not just the first in the file.
fn typed(mut merged: Value) -> Result<RawStack, Vec<Diagnostic>> {
    let services = match merged.get("services") {
        Some(Value::Mapping(_)) => merged.as_mapping_mut().and_then(|m| m.remove("services")),
        _ => None,
    };
    let mut errors = Vec::new();
    let mut raw: RawStack = match serde_path_to_error::deserialize(merged) {
        Ok(r) => r,
        Err(e) => {
            errors.push(translate_serde_error(
                &e.inner().to_string(),
                KeyPath::from(e.path()),
            ));
            return Err(errors);
        }
    };
    if let Some(Value::Mapping(map)) = services {
        let mut out = IndexMap::new();
        for (k, v) in map {
            let name = key_name(&k);
            let base = KeyPath::root().key("services").key(name.clone());
            if !matches!(k, Value::String(_)) {
                errors.push(
                    Diagnostic::new(format!("service name `{name}` must be a string"))
                        .at(base.clone())
                        .help("quote it, e.g. `\"{name}\":`"),
                );
                continue;
            }
            // `web:` with nothing under it is a service with no settings.
            let v = if v.is_null() {
                Value::Mapping(Default::default())
            } else {
                v
            };
            match serde_path_to_error::deserialize::<_, RawService>(v) {
                Ok(svc) => {
                    out.insert(name, svc);
                }
                Err(e) => {
                    let mut path = base;
                    path.0.extend(KeyPath::from(e.path()).0);
                    errors.push(translate_serde_error(&e.inner().to_string(), path));
                }
            }
        }
        raw.services = Some(out);
    }
    if errors.is_empty() {
        Ok(raw)
    } else {
        Err(errors)
    }
}

fn read_env_file(p: &Path) -> Result<Vec<(String, String)>, String> {
    let iter = dotenvy::from_path_iter(p)
        .map_err(|e| format!("cannot read env file `{}`: {}", p.display(), env_error(&e)))?;
    let mut out = Vec::new();
    for item in iter {
        match item {
            Ok(kv) => out.push(kv),
            Err(e) => {
                return Err(format!(
                    "cannot parse env file `{}`: {}",
                    p.display(),
                    env_error(&e)
                ))
            }
        }
    }
    Ok(out)
}

fn env_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => io_error(io),
        other => other.to_string(),
    }
}

fn io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

type ReadFailure = (Vec<Diagnostic>, Option<String>);

fn read_one(path: &Path, shown: &Path) -> Result<SourceFile, ReadFailure> {
    let file_err = |msg: String, help: &str| {
        (
            vec![Diagnostic::new(msg).help(help).in_file(shown, None)],
            None,
        )
    };
    if path.is_dir() {
        return Err(file_err(
            format!("`{}` is a folder, not a stack file", shown.display()),
            "pass the YAML file itself with `-f`",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        file_err(
            format!("cannot read `{}`: {}", shown.display(), io_error(&e)),
            "check the path given with `-f`",
        )
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let valid = e.utf8_error().valid_up_to();
            let span =
                locate::span_of_offset(&String::from_utf8_lossy(&e.as_bytes()[..valid]), valid);
            return Err((
                vec![Diagnostic::new(format!(
                    "`{}` is not valid UTF-8 (bad byte at line {}, column {})",
                    shown.display(),
                    span.line,
                    span.col
                ))
                .help("save the file as UTF-8")
                .in_file(shown, None)],
                Some(lossy),
            ));
        }
    };
    if text
        .trim_start_matches('\u{feff}')
        .trim()
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err((
            vec![Diagnostic::new(format!("`{}` is empty", shown.display()))
                .help("a stack file needs at least a `services:` map")
                .in_file(shown, None)],
            Some(text),
        ));
    }

    let (index, findings) = locate::index(&text);
    let mut diags = Vec::new();
    for f in findings {
        diags.push(match f {
            Finding::Tab { span } => Diagnostic::new("tab character in indentation")
                .help("YAML indents with spaces only; replace the tab with spaces")
                .in_file(shown, Some(span)),
            Finding::DuplicateKey {
                path,
                first,
                second,
            } => {
                let key = path.last_key().unwrap_or("?").to_string();
                Diagnostic::new(format!(
                    "duplicate key `{key}` (first defined at line {})",
                    first.line
                ))
                .at(path)
                .help("remove one of the two; YAML keys must be unique within a map")
                .in_file(shown, Some(second))
            }
            Finding::Syntax { message, span } => {
                Diagnostic::new(format!("invalid YAML: {message}"))
                    .help("check the indentation and quoting around this spot")
                    .in_file(shown, Some(span))
            }
        });
    }
    if !diags.is_empty() {
        // One syntax error usually causes the rest; tabs explain a syntax error better.
        let has_tab = diags.iter().any(|d| d.message.starts_with("tab"));
        if has_tab {
            diags.retain(|d| !d.message.starts_with("invalid YAML"));
        }
        diags.truncate(5);
        return Err((diags, Some(text)));
    }

    let mut value: Value = match serde_yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let span = e
                .location()
                .map(|l| locate::span_of_offset(&text, l.index()));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            let (msg, help) = if msg.contains("more than one document") {
                (
                    "the file holds more than one YAML document (`---`)".to_string(),
                    "keep one document per file; to combine files, pass each with its own `-f`",
                )
            } else if msg.contains("repetition limit") || msg.contains("recursion limit") {
                (
                    "the YAML expands too far (aliases nested too deep or repeated too often)"
                        .to_string(),
                    "expand the anchors by hand; a stack file needs no deep alias nesting",
                )
            } else {
                (
                    format!("invalid YAML: {msg}"),
                    "check the indentation and quoting around this spot",
                )
            };
            return Err((
                vec![Diagnostic::new(msg).help(help).in_file(shown, span)],
                Some(text),
            ));
        }
    };
    if let Err(e) = value.apply_merge() {
        return Err((
            vec![Diagnostic::new(format!("invalid merge key `<<`: {e}"))
                .help("`<<` takes an alias to a map, or a list of them")
                .in_file(shown, None)],
            Some(text),
        ));
    }
    match &value {
        Value::Mapping(_) => {}
        Value::Null => {
            return Err((
                vec![Diagnostic::new(format!("`{}` is empty", shown.display()))
                    .help("a stack file needs at least a `services:` map")
                    .in_file(shown, None)],
                Some(text),
            ))
        }
        other => {
            return Err((
                vec![Diagnostic::new(format!(
                    "the top level of `{}` must be a map, not {}",
                    shown.display(),
                    describe(other)
                ))
                .help("start with `services:` at the left margin")
                .in_file(shown, Some(locate::span_of_offset(&text, 0)))],
                Some(text),
            ))
        }
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(SourceFile {
        shown: shown.to_path_buf(),
        dir,
        text,
        index,
        value,
    })
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Later files override earlier ones key by key; maps merge, everything else is replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_string(),
    }
}

fn interpolate_tree(
    v: &mut Value,
    path: &KeyPath,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<String>,
) {
    match v {
        Value::String(s) => {
            let mut notes = Notes::default();
            match interpolate(s, lookup, &mut notes) {
                Ok(out) => {
                    for var in notes.unset {
                        warnings.push(format!(
                            "variable `{var}` is not set; using an empty string (at `{path}`)"
                        ));
                    }
                    // `tcp: ${PORT}` must stay a number after substitution.
                    let whole =
                        s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                    if whole && out != *s {
                        if let Ok(n) = out.parse::<u64>() {
                            *v = Value::Number(n.into());
                            return;
                        }
                    }
                    *s = out;
                }
                Err(e) => {
                    let help = match &e {
                        InterpolateError::Required { .. } => "set it in the environment or in `.env` (see `.env.example`)",
                        InterpolateError::BadPortRef(_) => "e.g. `${port:postgres:5432}` is the host port of postgres's port 5432",
                        _ => "variables are `${NAME}`, `${NAME:-default}` or `${NAME:?message}`; write `$$` for a literal `$`",
                    };
                    errors.push(
                        Diagnostic::new(e.to_string())
                            .at_value(path.clone())
                            .help(help),
                    );
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &path.index(i), lookup, errors, warnings);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                interpolate_tree(item, &path.key(key_name(k)), lookup, errors, warnings);
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, path, lookup, errors, warnings),
        _ => {}
    }
}

/// The keys each map in the schema accepts, for "did you mean" and the list in help.
fn backquoted(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn context_noun(path: &KeyPath) -> &'static str {
    let segs = &path.0;
    let key = |i: usize| match segs.get(i) {
        Some(super::keypath::Seg::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    match (segs.len(), key(0), key(2)) {
        (0, _, _) => "top-level key",
        (2, Some("services"), _) => "service key",
        (3, Some("services"), Some("ready")) => "probe kind",
        (_, Some("services"), Some("depends_on")) => "dependency key",
        (_, Some("services"), Some("watch")) => "`watch` key",
        (_, Some("test"), _) => "`test` key",
        _ => "key",
    }
}

/// Turns a serde message into one a person can act on, with its key path.
pub fn translate_serde_error(msg: &str, path: KeyPath) -> Diagnostic {
    let msg = msg.split(" at line ").next().unwrap_or(msg).trim();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = backquoted(rest);
        let (field, expected) = names
            .split_first()
            .map(|(f, e)| (f.clone(), e.to_vec()))
            .unwrap_or_default();
        // serde_path_to_error already ends the path with the unknown key.
        let parent = if path.last_key() == Some(field.as_str()) {
            path.parent().unwrap_or_default()
        } else {
            path
        };
        let noun = context_noun(&parent);
        let place = if parent.is_root() {
            String::new()
        } else {
            format!(" in `{parent}`")
        };
        let mut expected = expected;
        if noun == "probe kind" {
            expected.retain(|e| PROBE_KINDS.contains(&e.as_str()));
        }
        let help = did_you_mean(&field, expected.iter().map(String::as_str)).unwrap_or_else(|| {
            format!(
                "valid keys here: {}",
                expected
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        return Diagnostic::new(format!("unknown {noun} `{field}`{place}"))
            .at(parent.key(field))
            .help(help);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let names = backquoted(rest);
        let (value, expected) = names
            .split_first()
            .map(|(f, e)| (f.clone(), e.to_vec()))
            .unwrap_or_default();
        let what = match path.last_key() {
            Some("restart") => "restart policy",
            _ if path.to_string().contains("depends_on") => "dependency condition",
            _ => "value",
        };
        let shown: Vec<&str> = expected
            .iter()
            .map(String::as_str)
            .filter(|e| !e.starts_with("service_") && *e != "unless-stopped")
            .collect();
        let help = did_you_mean(&value, shown.iter().copied()).unwrap_or_else(|| {
            format!(
                "use one of {}",
                shown
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        return Diagnostic::new(format!("unknown {what} `{value}`"))
            .at_value(path)
            .help(help);
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = match expected {
                "u16" => "a port number (1-65535)",
                e if e.starts_with("struct ") => "a map",
                e if e.starts_with("a sequence") => "a list",
                e => e,
            };
            let found = describe_found(found);
            let help = match path.last_key() {
                Some("ports") => "write a list: `ports: [\"5432:5432\"]`".to_string(),
                Some("services") => "`services` maps each service name to its settings".to_string(),
                Some("depends_on") => {
                    "write a list of names, or a map of name to `ready`, `started` or `completed`"
                        .to_string()
                }
                Some("volumes") => "write a list: `volumes: [\"data:/var/lib/data\"]`".to_string(),
                _ => format!("give {expected} here"),
            };
            let place = if path.is_root() {
                "the stack".to_string()
            } else {
                format!("`{path}`")
            };
            return Diagnostic::new(format!("{place} must be {expected}, not {found}"))
                .at_value(path)
                .help(help);
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return Diagnostic::new(format!("missing key {rest}"))
            .at(path)
            .help("add it");
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        return Diagnostic::new(format!("invalid value {rest}")).at_value(path);
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        return Diagnostic::new(format!("wrong number of items: {rest}")).at_value(path);
    }
    Diagnostic::new(msg.to_string()).at_value(path)
}

/// serde's "string \"x\"" / "integer `5`" / "sequence" in words.
fn describe_found(found: &str) -> String {
    if let Some(v) = found.strip_prefix("string ") {
        return format!("the string {v}");
    }
    for (prefix, noun) in [
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", ""),
    ] {
        if let Some(v) = found.strip_prefix(prefix) {
            return format!("{noun}{v}");
        }
    }
    match found {
        "sequence" => "a list".to_string(),
        "map" => "a map".to_string(),
        "unit value" => "empty".to_string(),
        other => other.to_string(),
    }
}

/// Attaches file and position to a diagnostic that has only a key path: the file that defines
/// the deepest part of the path wins, the later file on a tie (it overrides).
fn locate_in(mut d: Diagnostic, files: &[SourceFile]) -> Diagnostic {
    if d.file.is_some() {
        return d;
    }
    let Some(path) = d.path.clone() else {
        if let Some(f) = files.first() {
            d.file = Some(f.shown.clone());
        }
        return d;
    };
    let mut best: Option<(usize, &SourceFile)> = None;
    for f in files {
        let mut depth = path.0.len();
        let mut p = path.clone();
        while !f.index.contains(&p) {
            match p.parent() {
                Some(parent) => {
                    p = parent;
                    depth -= 1;
                }
                None => break,
            }
        }
        if best.is_none_or(|(bd, _)| depth >= bd) {
            best = Some((depth, f));
        }
    }
    if let Some((_, f)) = best {
        let span = if d.at_value {
            f.index.find_value(&path)
        } else {
            f.index.find(&path)
        };
        d.file = Some(f.shown.clone());
        d.span = span;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn merge_table() {
        let cases = [
            // maps merge key by key
            ("a: 1\nb: 2", "b: 3\nc: 4", "a: 1\nb: 3\nc: 4"),
            // nested maps merge too
            (
                "s: {x: {image: a, ports: [\"1:1\"]}}",
                "s: {x: {image: b}}",
                "s: {x: {image: b, ports: [\"1:1\"]}}",
            ),
            // lists are replaced, not appended
            ("p: [1, 2]", "p: [3]", "p: [3]"),
            // a scalar replaces a map and the other way round
            ("w: {paths: [.]}", "w: false", "w: false"),
            ("w: false", "w: {paths: [src]}", "w: {paths: [src]}"),
            // an empty overlay changes nothing
            ("a: 1", "{}", "a: 1"),
        ];
        for (base, over, want) in cases {
            let mut b = yaml(base);
            merge(&mut b, yaml(over));
            assert_eq!(b, yaml(want), "{base} + {over}");
        }
    }

    #[test]
    fn serde_messages_become_actionable() {
        let p = KeyPath::parse("services.web.restart");
        let d = translate_serde_error("unknown variant `sometimes`, expected one of `no`, `on-failure`, `always`, `unless-stopped`", p);
        assert_eq!(d.message, "unknown restart policy `sometimes`");
        assert_eq!(
            d.help.as_deref(),
            Some("use one of `no`, `on-failure`, `always`")
        );

        let p = KeyPath::parse("services.web.ready.htp");
        let d = translate_serde_error("unknown field `htp`, expected one of `tcp`, `http`, `exec`, `log`, `healthcheck`, `postgres`, `redis`, `kafka`, `zookeeper`, `qdrant`, `timeout`, `interval`", p);
        assert_eq!(
            d.message,
            "unknown probe kind `htp` in `services.web.ready`"
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `http`?"));
        assert_eq!(d.path.unwrap().to_string(), "services.web.ready.htp");

        let d = translate_serde_error(
            "invalid type: integer `5432`, expected a sequence",
            KeyPath::parse("services.db.ports"),
        );
        assert_eq!(
            d.message,
            "`services.db.ports` must be a list, not the number `5432`"
        );
    }
}
