//! Reads stack files: finds them (from the current folder upward, devstack's name before
//! Compose's), parses YAML, resolves `include:` and `extends:` (through `extends`), merges
//! several `-f` files, reads `.env` files, interpolates variables, checks keys and types the tree,
//! and hands the result to `validate`. Problems carry their file, line and column.
//!
//! One of the three readers of the YAML crates, all in `config/`: this one (serde_yaml: parse,
//! merge, type), `extends` (serde_yaml trees of other files) and `locate` (yaml_rust2 events,
//! for line and column). Outside `config/`, only `devstack config` touches serde_yaml, to write
//! its output (`commands/mod.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::Value;

use super::diagnostic::{did_you_mean, Diagnostic};
use super::dotenv;
use super::extends;
use super::interpolate::{interpolate, InterpolateError, Notes};
use super::keypath::{KeyPath, Seg};
use super::locate::{self, Finding, SpanIndex};
use super::model::Stack;
use super::raw::{RawEnvFile, RawService, RawStack};
use super::validate::{self, PROBE_KINDS};

/// The file devstack looks for first, from the current folder upward, when no `-f` is given.
pub const DEFAULT_FILE: &str = "stack.yaml";

/// The names looked for in each folder, in order: devstack's own, then Compose's.
pub const DEFAULT_FILES: &[&str] = &[
    DEFAULT_FILE,
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// How to find and read the stack.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty means `DEVSTACK_FILE` / `COMPOSE_FILE`, else search.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// Where relative `-f` paths and the upward search start.
    pub cwd: PathBuf,
    /// `--env-file`s, replacing the `.env` beside the first stack file.
    pub env_files: Vec<PathBuf>,
    /// `--profile`s; empty means `DEVSTACK_PROFILES` / `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// Services named on the command line (`up web`): as in Compose, a named service whose
    /// profiles are all off has them switched on.
    pub targets: Vec<String>,
    /// The instance this load is for (see `project::instance`): `${COMPOSE_PROJECT_NAME}` is
    /// then `<project>-<instance>`, the name its containers, volumes and network carry.
    pub instance: Option<String>,
}

/// Whether a file is read as a Compose file: `compose*.y*ml` or `docker-compose*.y*ml`.
pub fn is_compose_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    (name.starts_with("compose") || name.starts_with("docker-compose"))
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
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
            .enumerate()
            .filter_map(|(i, p)| read_one(p, &shown_path(p, cwd), i == 0).ok())
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

/// Finds the stack file in `start` or the nearest parent folder that has one, as git finds
/// `.git`: `stack.yaml` first, then Compose's names.
pub fn find_stack_file(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|d| {
        DEFAULT_FILES
            .iter()
            .map(|f| d.join(f))
            .find(|p| p.is_file())
    })
}

/// `COMPOSE_PATH_SEPARATOR`, else `:` (`;` on Windows), as Compose splits `COMPOSE_FILE`.
fn split_file_list(list: &str, sep: Option<String>) -> Vec<PathBuf> {
    let sep = sep.unwrap_or_else(|| if cfg!(windows) { ";" } else { ":" }.to_string());
    list.split(sep.as_str())
        .filter(|f| !f.trim().is_empty())
        .map(|f| PathBuf::from(f.trim()))
        .collect()
}

fn shown_path(path: &Path, cwd: &Path) -> PathBuf {
    path.strip_prefix(cwd)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Loads, merges, interpolates and validates the stack. `env` is devstack's own environment.
///
/// The steps, in order: discover the stack files, read them, resolve their `include` and
/// `extends`, read the project's env files, merge the files, interpolate, type the tree, add
/// each service's env files, and validate (which normalises).
pub fn load(
    opts: &LoadOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    // Compose reads its own variables from the `.env` of the working folder too (or from the
    // `--env-file`s instead); the shell wins. The file list is needed before any stack file.
    let mut r = Reading {
        opts,
        env,
        sources: HashMap::new(),
        inputs: Vec::new(),
        errors: Vec::new(),
    };
    let workdir = workdir_dotenv(opts, env, &mut r.sources);
    let compose_var = |k: &str| env(k).or_else(|| workdir.vars.get(k).cloned());
    let paths = discover(opts, &compose_var)?;
    let mut files = r.read_stack_files(&paths)?;
    let root = paths[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.cwd.clone());
    // The same file beside the stack file (or given with `--env-file`) is read again below,
    // and its problem reported there.
    if opts.env_files.is_empty() && !same_dir(&root, &opts.cwd) {
        r.errors.extend(workdir.problem);
    }
    let resolved = r.resolve_references(&mut files);
    for p in &workdir.paths {
        note_input(&mut r.inputs, p);
    }
    let dotenv = r.project_env(&root, &files);
    let lookup = |k: &str| env(k).or_else(|| dotenv.get(k).cloned());
    // The `.env` beside the stack file first, then the working folder's.
    let compose_lookup = |k: &str| lookup(k).or_else(|| workdir.vars.get(k).cloned());

    let mut merged = merge_files(&files);
    let mut warnings = Vec::new();
    r.interpolate(&mut merged, &root, &lookup, &compose_lookup, &mut warnings);
    // Files read for `include:` and `extends:` help to locate problems, after the named ones.
    files.extend(resolved.files);
    // An env file or a variable that cannot be read leaves text as it was: checking on would
    // only report what follows from it.
    let unreadable = !r.errors.is_empty();
    r.errors.extend(resolved.errors);
    if unreadable {
        return Err(located_error(r.errors, &files, r.sources));
    }
    let read = ReadFiles {
        paths,
        root,
        files,
        unresolved: resolved.unresolved,
    };
    r.check(read, merged, &lookup, &compose_lookup, warnings)
}

/// The stack files as read: the named ones (then those `include` and `extends` named), the
/// folder of the first, and the services whose `extends` failed.
struct ReadFiles {
    paths: Vec<PathBuf>,
    root: PathBuf,
    files: Vec<SourceFile>,
    unresolved: Vec<String>,
}

/// What one load collects as it reads: the texts of the files (for snippets), every file read
/// (`Stack::inputs`) and the problems found.
struct Reading<'a> {
    opts: &'a LoadOptions,
    env: &'a dyn Fn(&str) -> Option<String>,
    sources: HashMap<PathBuf, String>,
    inputs: Vec<PathBuf>,
    errors: Vec<Diagnostic>,
}

/// What resolving `include` and `extends` gave besides the files' own trees.
struct Resolved {
    /// The files they named, read as stack files.
    files: Vec<SourceFile>,
    /// Their problems, which do not stop the check.
    errors: Vec<Diagnostic>,
    /// Services whose `extends` failed: reported, and checked on as far as they are written.
    unresolved: Vec<String>,
}

/// Step 1, discover: the `-f` files, else `DEVSTACK_FILE` / `COMPOSE_FILE`, else the nearest
/// stack file from the working folder upward.
fn discover(
    opts: &LoadOptions,
    compose_var: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let from_env = compose_var("DEVSTACK_FILE")
        .or_else(|| compose_var("COMPOSE_FILE"))
        .filter(|v| !v.trim().is_empty())
        .map(|v| split_file_list(&v, compose_var("COMPOSE_PATH_SEPARATOR")));
    if !opts.files.is_empty() {
        return Ok(opts.files.iter().map(|f| opts.cwd.join(f)).collect());
    }
    if let Some(files) = from_env {
        return Ok(files.iter().map(|f| opts.cwd.join(f)).collect());
    }
    match find_stack_file(&opts.cwd) {
        Some(p) => Ok(vec![p]),
        None => Err(ConfigError::one(
            Diagnostic::new(format!(
                "no `{DEFAULT_FILE}` (or `compose.yaml`, `docker-compose.yml`) in `{}` or any parent folder",
                opts.cwd.display()
            ))
            .help(format!("run devstack inside a checkout that has a `{DEFAULT_FILE}` or a Compose file, or pass one with `-f FILE`")),
        )),
    }
}

impl Reading<'_> {
    fn shown(&self, p: &Path) -> PathBuf {
        shown_path(p, &self.opts.cwd)
    }

    /// Step 2, read: every stack file, all problems of all of them at once.
    fn read_stack_files(&mut self, paths: &[PathBuf]) -> Result<Vec<SourceFile>, ConfigError> {
        // Every file read, for `Stack::inputs`: the stack files first.
        for p in paths {
            note_input(&mut self.inputs, p);
        }
        let mut files = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let shown = self.shown(path);
            match read_one(path, &shown, i == 0) {
                Ok(sf) => {
                    self.sources.insert(sf.shown.clone(), sf.text.clone());
                    files.push(sf);
                }
                Err((diags, text)) => {
                    if let Some(t) = text {
                        self.sources.insert(shown.clone(), t);
                    }
                    self.errors.extend(diags);
                }
            }
        }
        if self.errors.is_empty() {
            Ok(files)
        } else {
            Err(ConfigError {
                diagnostics: std::mem::take(&mut self.errors),
                sources: std::mem::take(&mut self.sources),
            })
        }
    }

    /// Step 3, extend and include: `include:` and `extends:` of each file, with the files they
    /// name read as stack files. Their problems do not stop the check: the rest of the file is
    /// still read and checked.
    fn resolve_references(&mut self, files: &mut [SourceFile]) -> Resolved {
        let mut extra: Vec<SourceFile> = Vec::new();
        let mut errors: Vec<Diagnostic> = Vec::new();
        for f in files.iter_mut() {
            let mut read = |p: &Path| self.read_named_file(p, &mut extra);
            extends::resolve_include(
                &mut f.value,
                &f.dir,
                &mut read,
                merge_service,
                &mut errors,
                0,
            );
            extends::resolve_extends(&mut f.value, &f.dir, &mut read, merge_service, &mut errors);
        }
        let unresolved = errors
            .iter()
            .filter_map(|d| match d.path.as_ref().map(|p| p.0.as_slice()) {
                Some([Seg::Key(s), Seg::Key(name), Seg::Key(e), ..])
                    if s == "services" && e == "extends" =>
                {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        Resolved {
            files: extra,
            errors,
            unresolved,
        }
    }

    /// A file named by `include` or `extends`, read as a stack file.
    fn read_named_file(
        &mut self,
        p: &Path,
        extra: &mut Vec<SourceFile>,
    ) -> Result<Value, Box<Diagnostic>> {
        note_input(&mut self.inputs, p);
        let shown = self.shown(p);
        match read_one(p, &shown, true) {
            Ok(sf) => {
                let v = sf.value.clone();
                self.sources.insert(sf.shown.clone(), sf.text.clone());
                extra.push(sf);
                Ok(v)
            }
            Err((diags, text)) => {
                let d = diags.into_iter().next().unwrap_or_else(|| {
                    Diagnostic::new(format!("cannot read `{}`", shown.display()))
                });
                match text {
                    // A problem inside the other file is shown there.
                    Some(t) => {
                        self.sources.insert(shown.clone(), t);
                        Err(Box::new(d))
                    }
                    // A file that cannot be read is shown where it is named.
                    None => Err(Box::new(Diagnostic::new(d.message).help(
                        "check the path; it is relative to the folder of the file that names it",
                    ))),
                }
            }
        }
    }

    /// Step 4, the project's variables: the `.env` beside the first file, or the
    /// `--env-file`s instead (a later file winning), then the top-level `env_file`s for what is
    /// still unset. The shell wins over all of them; the caller asks it first.
    fn project_env(&mut self, root: &Path, files: &[SourceFile]) -> IndexMap<String, String> {
        let env = self.env;
        let mut dotenv: IndexMap<String, String> = IndexMap::new();
        let env_files: Vec<(PathBuf, bool)> = if self.opts.env_files.is_empty() {
            vec![(root.join(".env"), false)]
        } else {
            let cwd = &self.opts.cwd;
            self.opts
                .env_files
                .iter()
                .map(|f| (cwd.join(f), true))
                .collect()
        };
        for (p, required) in env_files {
            note_input(&mut self.inputs, &p);
            let shown = self.shown(&p);
            let read = {
                let lookup = |k: &str| env(k).or_else(|| dotenv.get(k).cloned());
                read_dotenv(&p, &shown, &lookup, &mut self.sources)
            };
            match read {
                Ok(Some(vars)) => dotenv.extend(vars),
                Ok(None) if !required => {}
                Ok(None) => self.errors.push(
                    Diagnostic::new(format!(
                        "cannot read env file `{}`: no such file",
                        shown.display()
                    ))
                    .help("check the path given with `--env-file`"),
                ),
                Err(d) => self.errors.push(d),
            }
        }
        for (k, v) in self.top_level_env_files(files, &dotenv) {
            dotenv.entry(k).or_insert(v);
        }
        dotenv
    }

    /// The `env_file`s named at the top level (devstack's extension), for what the shell and
    /// `.env` leave unset; among them, a later file wins, as with `--env-file a --env-file b`.
    fn top_level_env_files(
        &mut self,
        files: &[SourceFile],
        dotenv: &IndexMap<String, String>,
    ) -> IndexMap<String, String> {
        let env = self.env;
        let mut top_level: IndexMap<String, String> = IndexMap::new();
        for f in files {
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
                note_input(&mut self.inputs, &p);
                let shown = self.shown(&p);
                let read = {
                    let lookup = |k: &str| {
                        env(k)
                            .or_else(|| dotenv.get(k).cloned())
                            .or_else(|| top_level.get(k).cloned())
                    };
                    read_dotenv(&p, &shown, &lookup, &mut self.sources)
                };
                // A checkout without `.env` still runs on the stack's defaults: a missing
                // top-level env_file is not an error (a service's own env_file is).
                match read {
                    Ok(Some(vars)) => top_level.extend(vars),
                    Ok(None) => {}
                    Err(d) => self.errors.push(d),
                }
            }
        }
        top_level
    }

    /// Step 6, interpolate the merged tree. As in Compose, `${COMPOSE_PROJECT_NAME}` is the
    /// project name however it was given.
    fn interpolate(
        &mut self,
        merged: &mut Value,
        root: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
        compose_lookup: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) {
        let project_var = project_name_for_variables(self.opts, compose_lookup, merged, root);
        let interpolate_lookup = |k: &str| {
            if k == "COMPOSE_PROJECT_NAME" {
                Some(project_var.clone())
            } else {
                lookup(k)
            }
        };
        interpolate_tree(
            merged,
            &KeyPath::root(),
            &interpolate_lookup,
            &mut self.errors,
            warnings,
        );
    }

    /// The rest: type the interpolated tree, add each service's env files (step 7), and
    /// validate, which normalises: the stack, or every problem found, located.
    fn check(
        mut self,
        read: ReadFiles,
        merged: Value,
        lookup: &dyn Fn(&str) -> Option<String>,
        compose_lookup: &dyn Fn(&str) -> Option<String>,
        mut warnings: Vec<String>,
    ) -> Result<Loaded, ConfigError> {
        let mut merged = merged;
        accepted_and_ignored(&mut merged, &mut warnings);
        let Typed {
            mut raw,
            mut broken,
            top_level_errors,
        } = typed(merged, &mut self.errors);
        keep_unresolved(&mut raw, &mut broken, &read.unresolved);
        self.service_env_files(&mut raw, &read.root, lookup);

        let project_override = self
            .opts
            .project_name
            .clone()
            .or_else(|| compose_lookup("COMPOSE_PROJECT_NAME"));
        let profiles = active_profiles(self.opts, compose_lookup, &raw);
        let ctx = validate::Context {
            root: &read.root,
            project_override: project_override.as_deref(),
            env: lookup,
            compose: is_compose_file(&read.paths[0]),
            profiles: &profiles,
            broken: &broken,
            top_level_errors,
        };
        let Reading {
            mut errors,
            sources,
            inputs,
            ..
        } = self;
        match validate::validate(&raw, &ctx) {
            Ok(mut stack) if errors.is_empty() => {
                let texts: Vec<&str> = read.files.iter().map(|f| f.text.as_str()).collect();
                stack.secret_values = super::secrets::interpolated_secret_values(&texts, lookup);
                stack.files = read.paths;
                stack.inputs = inputs;
                Ok(Loaded { stack, warnings })
            }
            Ok(_) => Err(located_error(errors, &read.files, sources)),
            Err(diags) => {
                errors.extend(diags);
                Err(located_error(errors, &read.files, sources))
            }
        }
    }

    /// Step 7, each service's env_files: they add variables its `environment` does not set;
    /// later files win.
    fn service_env_files(
        &mut self,
        raw: &mut RawStack,
        root: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) {
        let Some(services) = raw.services.as_mut() else {
            return;
        };
        for (name, svc) in services.iter_mut() {
            let Some(list) = svc.env_file.clone() else {
                continue;
            };
            let mut vars: IndexMap<String, String> = IndexMap::new();
            for (i, f) in list.0.iter().enumerate() {
                let path = KeyPath::root()
                    .key("services")
                    .key(name.clone())
                    .key("env_file");
                let path = if list.0.len() > 1 {
                    path.index(i)
                } else {
                    path
                };
                vars.extend(self.service_env_file(f, &path, root, lookup));
            }
            // `="value"` names no variable: Compose reads it, a process cannot have it.
            for (k, v) in vars.into_iter().filter(|(k, _)| !k.is_empty()) {
                // Values from files are literal: a `$` in them must not be read again.
                svc.environment
                    .0
                    .entry(k)
                    .or_insert(Some(v.replace('$', "$$")));
            }
        }
    }

    /// One entry of a service's `env_file` at `path`: its variables, or none and a problem.
    fn service_env_file(
        &mut self,
        f: &RawEnvFile,
        path: &KeyPath,
        root: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> IndexMap<String, String> {
        let p = root.join(&f.path);
        note_input(&mut self.inputs, &p);
        if f.format.as_deref().is_some_and(|fmt| fmt != "raw") {
            self.errors.push(
                Diagnostic::new(format!(
                    "unknown env file format `{}`",
                    f.format.as_deref().unwrap_or_default()
                ))
                .at(path.clone())
                .help("leave `format` out for the usual `KEY=value` syntax"),
            );
            return IndexMap::new();
        }
        let shown = self.shown(&p);
        match read_dotenv(&p, &shown, lookup, &mut self.sources) {
            Ok(Some(v)) => v,
            Ok(None) if !f.required => IndexMap::new(),
            Ok(None) => {
                self.errors.push(
                    Diagnostic::new(format!("cannot read env file `{}`: no such file", f.path))
                        .at_value(path.clone())
                        .help("create the file (paths are relative to the first stack file), mark it `required: false`, or remove it from `env_file`"),
                );
                IndexMap::new()
            }
            Err(d) => {
                self.errors.push(d);
                IndexMap::new()
            }
        }
    }
}

/// Step 5, merge: the files in order, a later one over an earlier one, without extension
/// fields and merge tags.
fn merge_files(files: &[SourceFile]) -> Value {
    let mut merged = Value::Mapping(Default::default());
    for f in files {
        let mut v = f.value.clone();
        strip_extensions(&mut v);
        merge_top(&mut merged, v);
    }
    drop_merge_tags(&mut merged);
    if merged.get("version").is_some() {
        tracing::debug!("`version` is obsolete in Compose files and ignored");
    }
    merged
}

/// Services whose `extends` failed are reported already; their own keys are still checked,
/// and as a Compose service each is a container even when the image would have come from the
/// base.
fn keep_unresolved(raw: &mut RawStack, broken: &mut Vec<String>, unresolved: &[String]) {
    let Some(services) = raw.services.as_mut() else {
        return;
    };
    for name in unresolved {
        let Some(svc) = services.get_mut(name) else {
            continue;
        };
        if svc.image.is_none() && svc.build.is_none() {
            svc.image = Some(UNRESOLVED_BASE_IMAGE.to_string());
        }
        if !broken.contains(name) {
            broken.push(name.clone());
        }
    }
}

/// `--profile`s, else `DEVSTACK_PROFILES` / `COMPOSE_PROFILES`, with those of the services
/// named on the command line.
fn active_profiles(
    opts: &LoadOptions,
    lookup: &dyn Fn(&str) -> Option<String>,
    raw: &RawStack,
) -> Vec<String> {
    let profiles: Vec<String> = if opts.profiles.is_empty() {
        lookup("DEVSTACK_PROFILES")
            .or_else(|| lookup("COMPOSE_PROFILES"))
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        opts.profiles.clone()
    };
    with_target_profiles(profiles, &opts.targets, raw.services.as_ref())
}

/// The problems located in the files, in the order a person reads them: by file, then by
/// position.
fn located_error(
    diags: Vec<Diagnostic>,
    files: &[SourceFile],
    sources: HashMap<PathBuf, String>,
) -> ConfigError {
    let mut diagnostics: Vec<Diagnostic> = diags.into_iter().map(|d| locate_in(d, files)).collect();
    diagnostics.sort_by_key(|d| {
        let file = d
            .file
            .as_ref()
            .and_then(|f| files.iter().position(|sf| &sf.shown == f))
            .unwrap_or(usize::MAX);
        (file, d.span.map_or(usize::MAX, |s| s.offset))
    });
    ConfigError {
        diagnostics,
        sources,
    }
}

/// The project name as `${COMPOSE_PROJECT_NAME}` gives it: `-p`, the variable, the file's
/// `name:` (itself interpolated), else the stack file's folder; normalised as the name is.
fn project_name_for_variables(
    opts: &LoadOptions,
    lookup: &dyn Fn(&str) -> Option<String>,
    merged: &Value,
    root: &Path,
) -> String {
    let written = || {
        let name = merged.get("name")?.as_str()?;
        let mut notes = Notes::default();
        interpolate(name, lookup, &mut notes).ok()
    };
    let folder = || root.file_name().map(|s| s.to_string_lossy().into_owned());
    [
        opts.project_name.clone(),
        lookup("COMPOSE_PROJECT_NAME"),
        written(),
        folder(),
    ]
    .into_iter()
    .flatten()
    .map(|n| validate::normalize_project(&n))
    .find(|n| !n.is_empty())
    .map_or_else(
        || "devstack".to_string(),
        |base| match &opts.instance {
            Some(i) => validate::normalize_project(&format!("{base}-{i}")),
            None => base,
        },
    )
}

/// The active profiles and those of each named service that would otherwise be off, as
/// Compose enables them: the other services of those profiles become active too, so that a
/// named service's dependencies in the same profile run with it.
fn with_target_profiles(
    mut profiles: Vec<String>,
    targets: &[String],
    services: Option<&IndexMap<String, RawService>>,
) -> Vec<String> {
    let Some(services) = services else {
        return profiles;
    };
    let active = profiles.clone();
    for t in targets {
        let Some(svc) = services.get(t) else {
            continue; // an unknown name is the command's to report
        };
        if svc.profiles.is_empty() || svc.profiles.iter().any(|p| active.contains(p)) {
            continue;
        }
        for p in &svc.profiles {
            if !profiles.contains(p) {
                profiles.push(p.clone());
            }
        }
    }
    profiles
}

/// The variables of the working folder's `.env` (or of the `--env-file`s, later files
/// winning), for Compose's own variables, and the first problem reading them.
fn workdir_dotenv(
    opts: &LoadOptions,
    env: &dyn Fn(&str) -> Option<String>,
    sources: &mut HashMap<PathBuf, String>,
) -> WorkdirEnv {
    let paths: Vec<PathBuf> = if opts.env_files.is_empty() {
        vec![opts.cwd.join(".env")]
    } else {
        opts.env_files.iter().map(|f| opts.cwd.join(f)).collect()
    };
    let mut vars: IndexMap<String, String> = IndexMap::new();
    let mut problem = None;
    for p in &paths {
        let read = {
            let lookup = |k: &str| env(k).or_else(|| vars.get(k).cloned());
            read_dotenv(p, &shown_path(p, &opts.cwd), &lookup, sources)
        };
        match read {
            Ok(Some(v)) => vars.extend(v),
            // A missing `--env-file` is reported with the other problems.
            Ok(None) => {}
            Err(d) => {
                problem.get_or_insert(d);
            }
        }
    }
    WorkdirEnv {
        vars,
        problem,
        paths,
    }
}

/// The working folder's `.env` (or the `--env-file`s): its variables, its first problem, and
/// the files it was read from.
struct WorkdirEnv {
    vars: IndexMap<String, String>,
    problem: Option<Diagnostic>,
    paths: Vec<PathBuf>,
}

/// Adds `p` to the files the stack was built from: absolute, lexically normal, each once.
fn note_input(inputs: &mut Vec<PathBuf>, p: &Path) {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let p = validate::normalize_path(&abs);
    if !inputs.contains(&p) {
        inputs.push(p);
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Reads and parses one env file. `Ok(None)`: it does not exist.
#[expect(
    clippy::result_large_err,
    reason = "one diagnostic per env file, on the error path only"
)]
fn read_dotenv(
    p: &Path,
    shown: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    sources: &mut HashMap<PathBuf, String>,
) -> Result<Option<IndexMap<String, String>>, Diagnostic> {
    let text = match std::fs::read(p) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                return Err(Diagnostic::new(format!(
                    "env file `{}` is not valid UTF-8",
                    shown.display()
                ))
                .help("save it as UTF-8")
                .in_file(shown, None))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if p.is_dir() => {
            let _ = e; // the folder is the problem, not the error's wording
            return Err(
                Diagnostic::new(format!("env file `{}` is a folder", shown.display()))
                    .help("name the file itself")
                    .in_file(shown, None),
            );
        }
        Err(e) => {
            return Err(Diagnostic::new(format!(
                "cannot read env file `{}`: {}",
                shown.display(),
                io_error(&e)
            ))
            .help("check the file's permissions")
            .in_file(shown, None))
        }
    };
    match dotenv::parse(&text, lookup) {
        Ok(vars) => Ok(Some(vars)),
        Err(e) => {
            let span = locate::span_of_offset(&text, e.offset);
            sources.insert(shown.to_path_buf(), text);
            Err(Diagnostic::new(format!(
                "cannot parse env file `{}`: {}",
                shown.display(),
                e.message
            ))
            .help("lines are `KEY=value`; quote values that hold quotes or start with spaces, write `$$` for a literal `$`")
            .in_file(shown, Some(span)))
        }
    }
}

/// Removes Compose's `x-*` extension fields wherever the specification allows them: the top
/// level, each service, each top-level volume, network and secret, and `build` and `deploy`.
fn strip_extensions(v: &mut Value) {
    fn strip(m: &mut serde_yaml::Mapping) {
        m.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    }
    let Some(top) = v.as_mapping_mut() else {
        return;
    };
    strip(top);
    for section in ["services", "volumes", "networks", "secrets"] {
        let Some(Value::Mapping(items)) = top.get_mut(section) else {
            continue;
        };
        for (_, item) in items.iter_mut() {
            if let Some(m) = item.as_mapping_mut() {
                strip(m);
                if section == "services" {
                    for inner in ["build", "deploy", "healthcheck"] {
                        if let Some(Value::Mapping(im)) = m.get_mut(inner) {
                            strip(im);
                        }
                    }
                }
            }
        }
    }
}

/// Compose keys that this engine has no use for, accepted as Compose accepts them and taken out
/// before the typed pass, with one warning per key naming where it was ignored:
/// `external_links` (containers outside the project are not put on its network),
/// `networks.*.ipam` (every service joins the one project network, created with the engine's
/// addresses) and the retry limit of `restart: on-failure:N` (devstack restarts with backoff and
/// stops at a crash loop).
fn accepted_and_ignored(merged: &mut Value, warnings: &mut Vec<String>) {
    let mut external: Vec<String> = Vec::new();
    let mut retries: Vec<String> = Vec::new();
    if let Some(Value::Mapping(services)) = merged.get_mut("services") {
        for (name, svc) in services.iter_mut() {
            let Some(m) = svc.as_mapping_mut() else {
                continue;
            };
            let name = key_name(name);
            if m.remove("external_links").is_some() {
                external.push(format!("`{name}`"));
            }
            let limited = m
                .get("restart")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("on-failure:"))
                .is_some_and(|n| n.trim().parse::<u32>().is_ok());
            if limited {
                m.insert("restart".into(), Value::String("on-failure".into()));
                retries.push(format!("`{name}`"));
            }
        }
    }
    let mut ipam: Vec<String> = Vec::new();
    if let Some(Value::Mapping(networks)) = merged.get_mut("networks") {
        for (name, net) in networks.iter_mut() {
            if let Some(m) = net.as_mapping_mut() {
                if m.remove("ipam").is_some() {
                    ipam.push(format!("`{}`", key_name(name)));
                }
            }
        }
    }
    let mut warn = |what: &str, list: Vec<String>, why: &str| {
        if !list.is_empty() {
            warnings.push(format!("{what} ignored ({}): {why}", list.join(", ")));
        }
    };
    warn(
        "`external_links`",
        external,
        "containers outside the project are not joined to its network",
    );
    warn(
        "`ipam` of networks",
        ipam,
        "every service joins the one project network, with the engine's own addresses",
    );
    warn(
        "the retry limit of `restart: on-failure:N`",
        retries,
        "devstack restarts with backoff and stops a service that crash-loops",
    );
}

/// The image a service whose `extends` failed is checked with; it never reaches the stack.
const UNRESOLVED_BASE_IMAGE: &str = "unresolved-extends-base";

/// What the typed pass made of the merged document.
struct Typed {
    raw: RawStack,
    /// Services with problems already reported.
    broken: Vec<String>,
    /// A top-level key had a problem (so a missing `services` may be a misspelling).
    top_level_errors: bool,
}

/// The keys a serde struct accepts, read from serde's own "expected one of" message.
fn accepted_keys<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let mut probe = serde_yaml::Mapping::new();
    probe.insert(Value::String("\u{1}".into()), Value::Null);
    match serde_yaml::from_value::<T>(Value::Mapping(probe)) {
        Ok(_) => Vec::new(),
        Err(e) => backquoted(&e.to_string()).into_iter().skip(1).collect(),
    }
}

fn stack_keys() -> &'static [String] {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(accepted_keys::<RawStack>)
}

fn service_keys() -> &'static [String] {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(accepted_keys::<RawService>)
}

/// Checks the keys of one map against what devstack accepts: a key Compose has but devstack
/// does not gets its own refusal, any other unknown key a "did you mean". The bad keys are
/// removed so that the rest can still be read.
fn check_keys(
    map: &mut serde_yaml::Mapping,
    accepted: &[String],
    compose: &[&str],
    path: &KeyPath,
    errors: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    map.retain(|k, _| {
        let key = key_name(k);
        if accepted.contains(&key) {
            return true;
        }
        ok = false;
        if compose.contains(&key.as_str()) {
            errors.push(validate::unsupported(&path.key(key.clone()), &key));
        } else {
            let noun = context_noun(path);
            let place = if path.is_root() {
                String::new()
            } else {
                format!(" in `{path}`")
            };
            let help =
                did_you_mean(&key, accepted.iter().map(String::as_str)).unwrap_or_else(|| {
                    format!(
                        "valid keys here: {}",
                        accepted
                            .iter()
                            .map(|e| format!("`{e}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            errors.push(
                Diagnostic::new(format!("unknown {noun} `{key}`{place}"))
                    .at(path.key(key.clone()))
                    .help(help),
            );
        }
        false
    });
    ok
}

/// Reads `map` as `T` key by key, so that every key's problem is reported, not just the first.
/// Within one key every problem is reported too: the value at fault is taken out and the key
/// read again, until what is left reads. A key that still cannot be read is removed; otherwise
/// what is left stays, so that later checks see the rest of it. Returns whether all were fine.
fn check_values<T: serde::de::DeserializeOwned>(
    map: &mut serde_yaml::Mapping,
    base: &KeyPath,
    errors: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    map.retain(|k, v| {
        let (problems, kept) = problems_in_key::<T>(k, v);
        for (path, message) in problems {
            let mut full = base.clone();
            full.0.extend(path.0);
            errors.push(translate_serde_error(&message, full));
            ok = false;
        }
        match kept {
            Some(cleaned) => {
                *v = cleaned;
                true
            }
            None => false,
        }
    });
    ok
}

/// At most this many problems are reported within one key.
const MAX_PROBLEMS_PER_KEY: usize = 32;

/// Every problem serde finds in `key: value` read as part of `T`, with its path (starting at
/// `key`) and serde's message, and the value with the faulty parts taken out if what is left
/// reads (`None`: the key as a whole is at fault).
fn problems_in_key<T: serde::de::DeserializeOwned>(
    key: &Value,
    value: &Value,
) -> (Vec<(KeyPath, String)>, Option<Value>) {
    let name = key_name(key);
    let mut current = value.clone();
    let mut problems = Vec::new();
    // Paths taken out so far, as written in the file (indices before any removal).
    let mut removed: Vec<KeyPath> = Vec::new();
    let mut keep = true;
    for _ in 0..MAX_PROBLEMS_PER_KEY {
        let mut single = serde_yaml::Mapping::new();
        single.insert(key.clone(), current.clone());
        let err = match serde_path_to_error::deserialize::<_, T>(Value::Mapping(single)) {
            Ok(_) => {
                return (problems, keep.then_some(current));
            }
            Err(e) => e,
        };
        let message = err.inner().to_string();
        let exact = err.path().iter().all(|s| {
            matches!(
                s,
                serde_path_to_error::Segment::Map { .. } | serde_path_to_error::Segment::Seq { .. }
            )
        });
        let here = KeyPath::from(err.path());
        let written = as_written(&here, &removed);
        // A problem at or above a part already taken out follows from taking it out
        // (`missing field` once a bad required value is gone): not a problem of its own.
        let follows = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(field) => removed.contains(&written.key(field)),
            None => removed.iter().any(|r| r.0.starts_with(&written.0)),
        };
        if !follows {
            let shown = if written.is_root() {
                KeyPath::root().key(name.clone())
            } else {
                written.clone()
            };
            problems.push((shown, message));
        }
        // The key itself is at fault, or the path cannot be followed: nothing to keep.
        let inside_key = written.0.len() > 1 && written.0.first() == Some(&Seg::Key(name.clone()));
        if !exact || !inside_key || !remove_at(&mut current, &here.0[1..]) {
            return (problems, None);
        }
        if matches!(written.0.last(), Some(Seg::Index(_))) {
            // Later items of that list moved up: what is left would be checked at the wrong
            // index, so only serde's reading goes on, and nothing is kept.
            keep = false;
        }
        removed.push(written);
    }
    (problems, None)
}

/// `path` in the value as it is now, as the file wrote it: each index moves past the items
/// of the same list taken out before it.
fn as_written(path: &KeyPath, removed: &[KeyPath]) -> KeyPath {
    let mut out = KeyPath::root();
    for seg in &path.0 {
        match seg {
            Seg::Key(k) => out = out.key(k.clone()),
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter(|r| r.0.len() == out.0.len() + 1 && r.0.starts_with(&out.0))
                    .filter_map(|r| match r.0.last() {
                        Some(Seg::Index(j)) => Some(*j),
                        _ => None,
                    })
                    .collect();
                gone.sort_unstable();
                let mut at = *i;
                for g in gone {
                    if g <= at {
                        at += 1;
                    }
                }
                out = out.index(at);
            }
        }
    }
    out
}

/// Takes the value at `path` out of `v`. False when the path leads nowhere.
fn remove_at(v: &mut Value, path: &[Seg]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match (v, first) {
        (Value::Mapping(m), Seg::Key(k)) => {
            let Some(found) = m.keys().find(|mk| key_name(mk) == *k).cloned() else {
                return false;
            };
            if rest.is_empty() {
                m.remove(&found).is_some()
            } else {
                m.get_mut(&found)
                    .is_some_and(|inner| remove_at(inner, rest))
            }
        }
        (Value::Sequence(items), Seg::Index(i)) if *i < items.len() => {
            if rest.is_empty() {
                items.remove(*i);
                true
            } else {
                remove_at(&mut items[*i], rest)
            }
        }
        (Value::Tagged(t), _) => remove_at(&mut t.value, path),
        _ => false,
    }
}

/// The typed pass. Every key of the top level and of each service is checked on its own, so
/// that all problems are reported at once; what is fine is still read and validated.
fn typed(mut merged: Value, errors: &mut Vec<Diagnostic>) -> Typed {
    let services = match merged.get("services") {
        Some(Value::Mapping(_)) => merged.as_mapping_mut().and_then(|m| m.remove("services")),
        _ => None,
    };
    let root = KeyPath::root();
    let mut top_ok = true;
    if let Some(top) = merged.as_mapping_mut() {
        let mut accepted = stack_keys().to_vec();
        accepted.push("services".into());
        top_ok &= check_keys(top, &accepted, COMPOSE_TOP_LEVEL_KEYS, &root, errors);
        top_ok &= check_values::<RawStack>(top, &root, errors);
    }
    let mut raw: RawStack = match serde_path_to_error::deserialize(merged) {
        Ok(r) => r,
        Err(e) => {
            // Each key was read alone above; together they cannot fail short of a bug.
            errors.push(translate_serde_error(
                &e.inner().to_string(),
                KeyPath::from(e.path()),
            ));
            top_ok = false;
            RawStack::default()
        }
    };
    let mut broken = Vec::new();
    if let Some(Value::Mapping(map)) = services {
        let mut out = IndexMap::new();
        for (k, v) in map {
            let name = key_name(&k);
            let base = root.key("services").key(name.clone());
            if !matches!(k, Value::String(_)) {
                errors.push(
                    Diagnostic::new(format!("non-string key in `services`: `{name}`"))
                        .at(base.clone())
                        .help("quote it, e.g. `\"{name}\":`"),
                );
                continue;
            }
            // `web:` with nothing under it is a service with no settings.
            let mut v = if v.is_null() {
                Value::Mapping(Default::default())
            } else {
                v
            };
            let ok = match v.as_mapping_mut() {
                Some(m) => {
                    let kind_keys = |m: &serde_yaml::Mapping| {
                        ["image", "build", "command"]
                            .iter()
                            .filter(|k| m.contains_key(**k))
                            .count()
                    };
                    let before = kind_keys(m);
                    let keys_ok =
                        check_keys(m, service_keys(), COMPOSE_SERVICE_KEYS, &base, errors);
                    let values_ok = check_values::<RawService>(m, &base, errors);
                    // Without a key that decides its kind, checking the rest would only
                    // report what follows from the problem already reported.
                    if kind_keys(m) < before {
                        broken.push(name);
                        continue;
                    }
                    keys_ok && values_ok
                }
                None => true, // the whole-value error comes from serde below
            };
            if !ok {
                broken.push(name.clone());
            }
            match serde_path_to_error::deserialize::<_, RawService>(v) {
                Ok(svc) => {
                    out.insert(name, svc);
                }
                Err(e) => {
                    let mut path = base;
                    path.0.extend(KeyPath::from(e.path()).0);
                    errors.push(translate_serde_error(&e.inner().to_string(), path));
                    broken.push(name);
                }
            }
        }
        raw.services = Some(out);
    }
    Typed {
        raw,
        broken,
        top_level_errors: !top_ok,
    }
}

/// Top-level keys of the Compose Specification that devstack does not read yet.
pub(super) const COMPOSE_TOP_LEVEL_KEYS: &[&str] = &["configs", "models"];

/// Service keys of the Compose Specification that devstack does not read yet.
pub(super) const COMPOSE_SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "driver_opts",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "logging",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "oom_kill_disable",
    "oom_score_adj",
    "provider",
    "scale",
    "security_opt",
    "storage_opt",
    "use_api_socket",
    "userns_mode",
    "uts",
];

/// Keys of nested Compose maps that devstack does not read yet, by the map they sit in.
fn compose_nested_unsupported(parent: &KeyPath, field: &str) -> bool {
    use super::keypath::Seg;
    let keys: Vec<Option<&str>> = parent
        .0
        .iter()
        .map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let list: &[&str] = match keys.as_slice() {
        [Some("services"), _, Some("deploy")] => &[
            "endpoint_mode",
            "labels",
            "mode",
            "placement",
            "replicas",
            "restart_policy",
            "rollback_config",
            "update_config",
        ],
        [Some("services"), _, Some("deploy"), Some("resources"), Some(_)] => {
            &["devices", "generic_resources"]
        }
        [Some("services"), _, Some("build")] => &[
            "entitlements",
            "isolation",
            "privileged",
            "provenance",
            "sbom",
            "secrets",
            "ssh",
            "ulimits",
        ],
        [Some("services"), _, Some("networks"), Some(_)] => &[
            "driver_opts",
            "gw_priority",
            "interface_name",
            "link_local_ips",
            "mac_address",
        ],
        [Some("services"), _, Some("volumes"), None] => &[],
        [Some("services"), _, Some("volumes"), None, Some("volume")] => &[],
        [Some("services"), _, Some("volumes"), None, Some("bind")] => &["recursive"],
        [Some("volumes"), Some(_)] => &[],
        [Some("networks"), Some(_)] => &["enable_ipv4", "enable_ipv6"],
        [Some("secrets"), Some(_)] => &[
            "driver",
            "driver_opts",
            "external",
            "labels",
            "template_driver",
        ],
        _ => &[],
    };
    list.contains(&field)
}

fn io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

type ReadFailure = (Vec<Diagnostic>, Option<String>);

/// Reads one stack file. A file after the first may be empty (an override with nothing in it).
fn read_one(path: &Path, shown: &Path, first: bool) -> Result<SourceFile, ReadFailure> {
    let text = read_text(path, shown)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let blank = text
        .trim_start_matches('\u{feff}')
        .trim()
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank && !first {
        return Ok(SourceFile {
            shown: shown.to_path_buf(),
            dir,
            index: SpanIndex::default(),
            text,
            value: Value::Mapping(Default::default()),
        });
    }
    if blank {
        return Err((vec![empty_file(shown)], Some(text)));
    }

    let (index, findings) = locate::index(&text);
    let diags = structural_problems(findings, shown);
    if !diags.is_empty() {
        return Err((diags, Some(text)));
    }
    match parse_tree(&text, shown, first) {
        Ok(value) => Ok(SourceFile {
            shown: shown.to_path_buf(),
            dir,
            text,
            index,
            value,
        }),
        Err(diags) => Err((diags, Some(text))),
    }
}

/// A stack file's text: a folder, an unreadable file or bytes that are not UTF-8 are problems.
fn read_text(path: &Path, shown: &Path) -> Result<String, ReadFailure> {
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
    String::from_utf8(bytes).map_err(|e| {
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let valid = e.utf8_error().valid_up_to();
        let span = locate::span_of_offset(&String::from_utf8_lossy(&e.as_bytes()[..valid]), valid);
        (
            vec![Diagnostic::new(format!(
                "`{}` is not valid UTF-8 (bad byte at line {}, column {})",
                shown.display(),
                span.line,
                span.col
            ))
            .help("save the file as UTF-8")
            .in_file(shown, None)],
            Some(lossy),
        )
    })
}

fn empty_file(shown: &Path) -> Diagnostic {
    Diagnostic::new(format!("`{}` is empty", shown.display()))
        .help("a stack file needs at least a `services:` map")
        .in_file(shown, None)
}

/// The YAML tree of a file that is sound in structure: its documents merged, `<<` applied, a
/// map at the top (a later file may be empty).
fn parse_tree(text: &str, shown: &Path, first: bool) -> Result<Value, Vec<Diagnostic>> {
    let mut value: Value = documents(text).map_err(|e| vec![yaml_problem(&e, text, shown)])?;
    if let Err(e) = value.apply_merge() {
        return Err(vec![Diagnostic::new(format!(
            "invalid merge key `<<`: {e}"
        ))
        .help("`<<` takes an alias to a map, or a list of them")
        .in_file(shown, None)]);
    }
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null if !first => Ok(Value::Mapping(Default::default())),
        Value::Null => Err(vec![empty_file(shown)]),
        other => Err(vec![Diagnostic::new(format!(
            "the top level of `{}` must be a map, not {}",
            shown.display(),
            describe(&other)
        ))
        .help("start with `services:` at the left margin")
        .in_file(shown, Some(locate::span_of_offset(text, 0)))]),
    }
}

/// The structural faults `locate` found, as problems: at most five, tabs before the syntax
/// errors they explain.
fn structural_problems(findings: Vec<Finding>, shown: &Path) -> Vec<Diagnostic> {
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
    }
    diags
}

/// A YAML parse error as a problem at its place in the file.
fn yaml_problem(e: &serde_yaml::Error, text: &str, shown: &Path) -> Diagnostic {
    let span = e
        .location()
        .map(|l| locate::span_of_offset(text, l.index()));
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let (msg, help) = if msg.contains("repetition limit") || msg.contains("recursion limit") {
        (
            "the YAML expands too far (aliases nested too deep or repeated too often)".to_string(),
            "expand the anchors by hand; a stack file needs no deep alias nesting",
        )
    } else {
        (
            format!("invalid YAML: {msg}"),
            "check the indentation and quoting around this spot",
        )
    };
    Diagnostic::new(msg).help(help).in_file(shown, span)
}

/// The documents of a file (`---` between them), merged in order as Compose merges them: a
/// later document over an earlier one, as a later `-f` file.
fn documents(text: &str) -> Result<Value, serde_yaml::Error> {
    use serde::Deserialize;
    let mut docs = serde_yaml::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect::<Result<Vec<Value>, _>>()?;
    if docs.len() <= 1 {
        return Ok(docs.pop().unwrap_or(Value::Null));
    }
    let mut merged = Value::Null;
    for mut doc in docs {
        if doc.is_null() {
            continue;
        }
        doc.apply_merge()?;
        if merged.is_null() {
            merged = doc;
        } else {
            merge_top(&mut merged, doc);
        }
    }
    Ok(merged)
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
pub(super) fn merge(base: &mut Value, over: Value) {
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

/// Merges one more file over the document as Compose merges (its specification's merge
/// rules): per service, `environment`, `labels` and the like by key whether written as lists
/// or maps, `ports` and `expose` appended without duplicates, `volumes` and `secrets` by
/// target, `depends_on` and `networks` by name; `!reset` removes a value and `!override`
/// replaces it whole.
pub(super) fn merge_top(base: &mut Value, over: Value) {
    let (Value::Mapping(b), Value::Mapping(o)) = (&mut *base, &over) else {
        *base = over;
        return;
    };
    let _ = o;
    let Value::Mapping(o) = over else { return };
    for (k, v) in o {
        if k.as_str() == Some("services") {
            let entry = b
                .entry(k)
                .or_insert_with(|| Value::Mapping(Default::default()));
            match (entry, v) {
                (Value::Mapping(bs), Value::Mapping(os)) => {
                    for (name, svc) in os {
                        match bs.get_mut(&name) {
                            Some(existing) => merge_service(existing, svc),
                            None => {
                                bs.insert(name, untag(svc));
                            }
                        }
                    }
                }
                (e, v) => *e = v,
            }
        } else {
            merge_tagged(b, k, v, merge);
        }
    }
}

/// Applies `!reset` / `!override` or merges with `f`.
fn merge_tagged(b: &mut serde_yaml::Mapping, k: Value, v: Value, f: fn(&mut Value, Value)) {
    match tag_of(&v) {
        Some("!reset") => {
            b.remove(&k);
        }
        Some("!override") => {
            b.insert(k, untag(v));
        }
        _ => match b.get_mut(&k) {
            Some(existing) => f(existing, v),
            None => {
                b.insert(k, v);
            }
        },
    }
}

/// `!reset` and `!override` left where there was nothing to merge with: `!reset` removes the
/// key, `!override` is the value itself.
fn drop_merge_tags(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, item| tag_of(item) != Some("!reset"));
            for (_, item) in m.iter_mut() {
                if tag_of(item).is_some() {
                    *item = untag(std::mem::take(item));
                }
                drop_merge_tags(item);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_merge_tags),
        _ => {}
    }
}

fn tag_of(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) => {
            let s = t.tag.to_string();
            ["!reset", "!override"]
                .into_iter()
                .find(|want| s == *want || s == want[1..])
        }
        _ => None,
    }
}

fn untag(v: Value) -> Value {
    match v {
        Value::Tagged(t) if tag_of(&Value::Tagged(t.clone())).is_some() => t.value,
        v => v,
    }
}

/// `[K=V, K2]` or `{K: V}` as a map (`K2` with a null value).
fn as_map(v: Value) -> Value {
    match v {
        Value::Sequence(items) => {
            let mut m = serde_yaml::Mapping::new();
            for item in items {
                let s = match &item {
                    Value::String(s) => s.clone(),
                    other => key_name(other),
                };
                match s.split_once('=') {
                    Some((k, val)) => m.insert(Value::String(k.into()), Value::String(val.into())),
                    None => m.insert(Value::String(s), Value::Null),
                };
            }
            Value::Mapping(m)
        }
        other => other,
    }
}

/// A list of names (`depends_on`, `networks`) as a map of name to null.
fn names_as_map(v: Value) -> Value {
    match v {
        Value::Sequence(items) => Value::Mapping(
            items
                .into_iter()
                .map(|i| (i, Value::Null))
                .collect::<serde_yaml::Mapping>(),
        ),
        other => other,
    }
}

/// Appends the entries of `over` whose key is new and replaces those whose key is known.
fn merge_list_by(base: &mut Value, over: Value, key: fn(&Value) -> Option<String>) {
    // `env_file: a.env` in one file and a list in the other: a string is a list of one.
    let one = |v: Value| match v {
        Value::String(_) => Value::Sequence(vec![v]),
        other => other,
    };
    let over = one(over);
    if matches!(base, Value::String(_)) {
        *base = one(std::mem::take(base));
    }
    let (Value::Sequence(b), Value::Sequence(o)) = (&mut *base, &over) else {
        *base = over;
        return;
    };
    for item in o {
        let k = key(item);
        match k.and_then(|k| b.iter().position(|e| key(e).as_deref() == Some(k.as_str()))) {
            Some(i) => b[i] = item.clone(),
            None if b.contains(item) => {}
            None => b.push(item.clone()),
        }
    }
}

fn volume_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(match parts.as_slice() {
                [t] => t.to_string(),
                [_, t, ..] => t.to_string(),
                [] => return None,
            })
        }
        Value::Mapping(m) => m.get("target").map(key_name),
        _ => None,
    }
}

fn secret_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m.get("target").or_else(|| m.get("source")).map(key_name),
        _ => None,
    }
}

fn no_key(_: &Value) -> Option<String> {
    None
}

pub(super) fn merge_service(base: &mut Value, over: Value) {
    let over = untag(over);
    let (Value::Mapping(b), Value::Mapping(o)) = (&mut *base, over.clone()) else {
        *base = over;
        return;
    };
    for (k, v) in o {
        let key = key_name(&k);
        let f: fn(&mut Value, Value) = match key.as_str() {
            "environment" | "labels" | "sysctls" | "annotations" | "extra_hosts" => |b, o| {
                let mut bm = as_map(std::mem::take(b));
                merge(&mut bm, as_map(o));
                *b = bm;
            },
            "depends_on" | "networks" => |b, o| {
                let mut bm = names_as_map(std::mem::take(b));
                merge(&mut bm, names_as_map(o));
                *b = bm;
            },
            "build" => |b, o| {
                let ctx = |v: Value| match v {
                    Value::String(s) => {
                        let mut m = serde_yaml::Mapping::new();
                        m.insert("context".into(), Value::String(s));
                        Value::Mapping(m)
                    }
                    other => other,
                };
                let mut bm = ctx(std::mem::take(b));
                let om = ctx(o);
                if let (Value::Mapping(bmm), Value::Mapping(omm)) = (&mut bm, om.clone()) {
                    for (k, v) in omm {
                        if k.as_str() == Some("args") || k.as_str() == Some("labels") {
                            let e = bmm.entry(k).or_insert(Value::Null);
                            let mut em = as_map(std::mem::take(e));
                            merge(&mut em, as_map(v));
                            *e = em;
                        } else {
                            bmm.insert(k, v);
                        }
                    }
                } else {
                    bm = om;
                }
                *b = bm;
            },
            "volumes" | "tmpfs" => |b, o| merge_list_by(b, o, volume_target),
            "secrets" | "configs" => |b, o| merge_list_by(b, o, secret_target),
            "ports" | "expose" | "env_file" | "cap_add" | "cap_drop" | "dns" | "dns_search"
            | "profiles" | "security_opt" | "external_links" => |b, o| merge_list_by(b, o, no_key),
            _ => merge,
        };
        merge_tagged(b, k, v, f);
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
                        InterpolateError::BadShareRef(_) => "e.g. `${db:postgres}` is the instance's database of `postgres`, `${prefix:kafka}` its topic prefix (docs/instances.md)",
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
        (_, Some("logs"), _) => "`logs` key",
        _ => "key",
    }
}

/// Turns a serde message into one a person can act on, with its key path.
pub(super) fn translate_serde_error(msg: &str, path: KeyPath) -> Diagnostic {
    let msg = msg.split(" at line ").next().unwrap_or(msg).trim();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return unknown_field(rest, path);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return unknown_variant(rest, path);
    }
    if let Some((found, expected)) = msg
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        return invalid_type(found, expected, path);
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

/// The first backquoted name of `rest` and the others (serde's expected ones).
fn first_and_expected(rest: &str) -> (String, Vec<String>) {
    let names = backquoted(rest);
    names
        .split_first()
        .map(|(f, e)| (f.clone(), e.to_vec()))
        .unwrap_or_default()
}

/// serde's "unknown field `x`, expected one of …": a Compose key devstack does not read gets
/// its own refusal, anything else a "did you mean".
fn unknown_field(rest: &str, path: KeyPath) -> Diagnostic {
    let (field, mut expected) = first_and_expected(rest);
    // serde_path_to_error already ends the path with the unknown key.
    let parent = if path.last_key() == Some(field.as_str()) {
        path.parent().unwrap_or_default()
    } else {
        path
    };
    if compose_nested_unsupported(&parent, &field) {
        return validate::unsupported(&parent.key(field.clone()), &field);
    }
    let noun = context_noun(&parent);
    let place = if parent.is_root() {
        String::new()
    } else {
        format!(" in `{parent}`")
    };
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
    Diagnostic::new(format!("unknown {noun} `{field}`{place}"))
        .at(parent.key(field))
        .help(help)
}

/// serde's "unknown variant `x`, expected one of …", in the words of the key it is for.
fn unknown_variant(rest: &str, path: KeyPath) -> Diagnostic {
    let (value, expected) = first_and_expected(rest);
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
    Diagnostic::new(format!("unknown {what} `{value}`"))
        .at_value(path)
        .help(help)
}

/// serde's "invalid type: FOUND, expected EXPECTED", with an example for the common keys.
fn invalid_type(found: &str, expected: &str, path: KeyPath) -> Diagnostic {
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
    Diagnostic::new(format!("{place} must be {expected}, not {found}"))
        .at_value(path)
        .help(help)
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
    fn compose_merge_rules_table() {
        let cases = [
            // environment and labels merge by key, lists or maps
            (
                "services: {s: {environment: [A=1, B=2], labels: {x: a}}}",
                "services: {s: {environment: {B: '3'}, labels: [y=b]}}",
                "services: {s: {environment: {A: '1', B: '3'}, labels: {x: a, y: b}}}",
            ),
            // ports and expose append without duplicates
            (
                "services: {s: {ports: ['80:80'], expose: ['1']}}",
                "services: {s: {ports: ['80:80', '443:443'], expose: ['1', '2']}}",
                "services: {s: {ports: ['80:80', '443:443'], expose: ['1', '2']}}",
            ),
            // volumes by target
            (
                "services: {s: {volumes: ['./a:/data', 'logs:/logs']}}",
                "services: {s: {volumes: ['b:/data', {type: tmpfs, target: /t}]}}",
                "services: {s: {volumes: ['b:/data', 'logs:/logs', {type: tmpfs, target: /t}]}}",
            ),
            // depends_on by name, list or map
            (
                "services: {s: {depends_on: [a]}}",
                "services: {s: {depends_on: {b: {condition: service_healthy}}}}",
                "services: {s: {depends_on: {a: null, b: {condition: service_healthy}}}}",
            ),
            // command is replaced, build merges with args by key
            (
                "services: {s: {command: [a, b], build: {context: ., args: [X=1]}}}",
                "services: {s: {command: [c], build: {args: {Y: '2'}}}}",
                "services: {s: {command: [c], build: {context: ., args: {X: '1', Y: '2'}}}}",
            ),
            // !reset removes, !override replaces
            (
                "services: {s: {ports: ['80:80'], environment: {A: '1'}}}",
                "services: {s: {ports: !override ['81:80'], environment: !reset {}}}",
                "services: {s: {ports: ['81:80']}}",
            ),
            // a new service comes in whole
            (
                "services: {a: {image: x}}",
                "services: {b: {image: y}}",
                "services: {a: {image: x}, b: {image: y}}",
            ),
        ];
        for (base, over, want) in cases {
            let mut b = yaml(base);
            merge_top(&mut b, yaml(over));
            drop_merge_tags(&mut b);
            assert_eq!(b, yaml(want), "{base} + {over}");
        }
    }

    #[test]
    fn every_problem_within_one_key_is_found() {
        // (key, value, the problems' paths, whether what is left is kept)
        let cases: &[(&str, &str, &[&str], bool)] = &[
            ("image", "nginx", &[], true),
            // several unknown keys at different depths of one key
            (
                "deploy",
                "{resources: {limits: {pidz: 3, memry: 1g}}, replicas: 2}",
                &[
                    "deploy.resources.limits.pidz",
                    "deploy.resources.limits.memry",
                    "deploy.replicas",
                ],
                true,
            ),
            (
                "healthcheck",
                "{test: [CMD, x], retriez: 3, intervl: 5s}",
                &["healthcheck.retriez", "healthcheck.intervl"],
                true,
            ),
            // a bad item of a list: later items keep their index as written
            (
                "ports",
                "[[1, 2], {target: 81, y: 2}, [3], {target: 82, z: 1}]",
                &["ports[0]", "ports[1].y", "ports[2]", "ports[3].z"],
                false,
            ),
            // a required value of the wrong type is one problem, not two
            (
                "ports",
                "[{target: [1], published: 8080}, {published: 1, x: 1}]",
                &["ports[0].target", "ports[1].x", "ports[1]"],
                false,
            ),
            // the key as a whole is wrong
            ("ports", "5432", &["ports"], false),
        ];
        for (key, value, want, kept) in cases {
            let (problems, left) =
                problems_in_key::<RawService>(&Value::String(key.to_string()), &yaml(value));
            let paths: Vec<String> = problems.iter().map(|(p, _)| p.to_string()).collect();
            assert_eq!(&paths, want, "{key}: {value}");
            assert_eq!(left.is_some(), *kept, "{key}: {value}");
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

    /// Writes `files` into a fresh folder and loads the first with `opts`' other settings.
    fn load_files(
        files: &[(&str, &str)],
        env: &[(&str, &str)],
        tweak: impl FnOnce(&mut LoadOptions),
    ) -> (tempfile::TempDir, Result<Loaded, ConfigError>) {
        let dir = tempfile::tempdir().expect("a temp folder");
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("a folder");
            std::fs::write(p, text).expect("writing a test file");
        }
        let mut opts = LoadOptions {
            files: vec![PathBuf::from(files[0].0)],
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        tweak(&mut opts);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let loaded = load(&opts, &|k| env.get(k).cloned());
        (dir, loaded)
    }

    fn loaded(files: &[(&str, &str)], env: &[(&str, &str)]) -> (tempfile::TempDir, Stack) {
        let (dir, l) = load_files(files, env, |_| {});
        let l = l.unwrap_or_else(|e| panic!("{files:?}: {}", e.render(false)));
        (dir, l.stack)
    }

    /// `seed:` as a command or a map, its paths made absolute; what it cannot be is said at
    /// the key.
    #[test]
    fn seeds_are_read_and_their_mistakes_named() {
        let (dir, stack) = loaded(
            &[(
                "stack.yaml",
                "services:\n  db:\n    image: postgres\n    seed: { command: \"psql -f /s/x.sql\", sources: [db/x.sql], user: postgres, timeout: 2m }\n  cache:\n    image: redis\n    seed: [redis-cli, set, k, v]\n  app:\n    command: ./app\n    working_dir: app\n    seed: ./seed.sh\n",
            )],
            &[],
        );
        let db = stack.services["db"].seed.clone().unwrap();
        assert_eq!(
            db.command,
            crate::config::Command::Shell("psql -f /s/x.sql".into())
        );
        assert_eq!(db.sources, [dir.path().join("db/x.sql")]);
        assert_eq!(db.user.as_deref(), Some("postgres"));
        assert_eq!(db.timeout, std::time::Duration::from_secs(120));
        let cache = stack.services["cache"].seed.clone().unwrap();
        assert_eq!(
            cache.command,
            crate::config::Command::Argv(vec![
                "redis-cli".into(),
                "set".into(),
                "k".into(),
                "v".into()
            ])
        );
        assert_eq!(cache.timeout, crate::config::validate::DEFAULT_SEED_TIMEOUT);
        assert!(stack.services["app"].seed.is_some());

        for (yaml, says) in [
            (
                "services:\n  m:\n    image: x\n    task: true\n    seed: y\n",
                "`m` is a task and has a `seed`",
            ),
            (
                "services:\n  a:\n    command: ./a\n    seed: { command: x, user: root }\n",
                "`seed.user` of `a` applies to a container",
            ),
            (
                "services:\n  d:\n    image: x\n    seed: { command: x, working_dir: seed }\n",
                "`seed.working_dir` of `d` must be an absolute path",
            ),
            (
                "services:\n  d:\n    image: x\n    seed: { command: x, timeout: 5 }\n",
                "invalid duration `5`",
            ),
            (
                "services:\n  d:\n    image: x\n    seed: { command: x, sources: [\"*.sql\"] }\n",
                "`seed.sources` of `d` holds `*.sql`",
            ),
            (
                "services:\n  d:\n    image: x\n    seed: \"  \"\n",
                "`d` has an empty `command`",
            ),
            (
                "services:\n  d:\n    image: x\n    seed: { command: x, when: always }\n",
                "when",
            ),
        ] {
            let (_dir, l) = load_files(&[("stack.yaml", yaml)], &[], |_| {});
            let text = match l {
                Ok(_) => panic!("{yaml} loaded"),
                Err(e) => e.render(false),
            };
            assert!(text.contains(says), "{yaml}: {text}");
        }
    }

    fn env_of(stack: &Stack, svc: &str, key: &str) -> Option<String> {
        stack.services[svc].environment.get(key).cloned()
    }

    #[test]
    fn inputs_list_every_file_read_once_in_order() {
        let (dir, stack) = loaded(
            &[
                (
                    "compose.yaml",
                    "include: [inc/more.yaml]\nenv_file: [top.env]\nservices:\n  web:\n    image: nginx\n    env_file: [web.env, {path: later.env, required: false}, web.env]\n  child:\n    extends: {file: base.yaml, service: base}\n",
                ),
                ("override.yaml", "services:\n  web:\n    environment: {A: b}\n"),
                ("base.yaml", "services:\n  base:\n    image: redis\n"),
                ("inc/more.yaml", "services:\n  other:\n    image: redis\n"),
                (".env", "X=1\n"),
                ("top.env", "Y=2\n"),
                ("web.env", "Z=3\n"),
            ],
            &[],
        );
        let d = dir.path();
        let want: Vec<PathBuf> = [
            "compose.yaml",
            "inc/more.yaml",
            "base.yaml",
            ".env",
            "top.env",
            "web.env",
            "later.env",
        ]
        .iter()
        .map(|f| d.join(f))
        .collect();
        assert_eq!(stack.inputs, want);
        assert!(stack.inputs.iter().all(|p| p.is_absolute()));
        assert_eq!(stack.files, vec![d.join("compose.yaml")]);
    }

    #[test]
    fn inputs_follow_env_files_and_every_stack_file() {
        let (dir, l) = load_files(
            &[
                ("compose.yaml", "services:\n  web:\n    image: nginx\n"),
                (
                    "override.yaml",
                    "services:\n  web:\n    environment: {A: b}\n",
                ),
                ("a.env", "X=1\n"),
                ("sub/keep", ""),
            ],
            &[],
            |o| {
                o.files.push(PathBuf::from("sub/../override.yaml"));
                o.env_files = vec![PathBuf::from("a.env")];
            },
        );
        let stack = l.expect("loads").stack;
        let d = dir.path();
        assert_eq!(
            stack.inputs,
            vec![
                d.join("compose.yaml"),
                d.join("override.yaml"),
                d.join("a.env")
            ]
        );
    }

    /// The top-level `env_file` list: a later file wins, as `--env-file a --env-file b` does;
    /// the shell wins over all (issue 24).
    #[test]
    fn top_level_env_files_later_wins_shell_wins_over_all() {
        let files = [
            (
                "compose.yaml",
                "env_file: [a.env, b.env]\nservices:\n  web:\n    image: nginx\n    environment: {P: \"${PORT}\", Q: \"${ONLY_A}\"}\n",
            ),
            ("a.env", "PORT=8000\nONLY_A=a\n"),
            ("b.env", "PORT=9000\n"),
        ];
        let (_d, stack) = loaded(&files, &[]);
        assert_eq!(env_of(&stack, "web", "P").as_deref(), Some("9000"));
        assert_eq!(env_of(&stack, "web", "Q").as_deref(), Some("a"));
        let (_d, stack) = loaded(&files, &[("PORT", "1")]);
        assert_eq!(env_of(&stack, "web", "P").as_deref(), Some("1"));
    }

    /// Compose's merge of a service's `env_file` written as a string in one file and as a list
    /// in the other keeps both (compose-go override/merge_env_file_test.go
    /// TestMergeEnvFilesMixed, `StringThenSequence`; TestMergeEnvFilesString).
    #[test]
    fn env_file_string_and_list_merge() {
        let (_d, l) = load_files(
            &[
                (
                    "compose.yaml",
                    "services:\n  web:\n    image: nginx\n    env_file: a.env\n",
                ),
                (
                    "override.yaml",
                    "services:\n  web:\n    env_file: [b.env]\n",
                ),
                ("a.env", "A=1\n"),
                ("b.env", "B=2\n"),
            ],
            &[],
            |o| o.files.push(PathBuf::from("override.yaml")),
        );
        let stack = l.expect("loads").stack;
        assert_eq!(env_of(&stack, "web", "A").as_deref(), Some("1"));
        assert_eq!(env_of(&stack, "web", "B").as_deref(), Some("2"));
    }

    /// A service's env_file read as Compose reads it: keys starting with a digit, indexed and
    /// non-ASCII keys, escapes kept as written (compose-go dotenv/godotenv_test.go
    /// TestParseBytes, dotenv/parser_test.go TestParsing, TestReadPlainEnv).
    #[test]
    fn service_env_file_in_compose_dialect() {
        let (_d, stack) = loaded(
            &[
                (
                    "compose.yaml",
                    "services:\n  web:\n    image: nginx\n    env_file: web.env\n",
                ),
                (
                    "web.env",
                    "456 = ABC\na[1]=c\nárvíztűrő-TÜKÖRFÚRÓGÉP=x\n=\"nameless\"\nE=\"\\x07\\a\"\n",
                ),
            ],
            &[],
        );
        assert_eq!(env_of(&stack, "web", "456").as_deref(), Some("ABC"));
        assert_eq!(env_of(&stack, "web", "a[1]").as_deref(), Some("c"));
        assert_eq!(
            env_of(&stack, "web", "árvíztűrő-TÜKÖRFÚRÓGÉP").as_deref(),
            Some("x")
        );
        assert_eq!(env_of(&stack, "web", ""), None);
        assert_eq!(env_of(&stack, "web", "E").as_deref(), Some("\\x07\u{7}"));
    }

    /// Loader rules of Compose, each from the compose-go test named on it.
    #[test]
    fn compose_loader_rules() {
        let svc =
            |extra: &str| format!("name: myProject\nservices:\n  web:\n    image: nginx\n{extra}");
        // A name from the file is normalised; `${COMPOSE_PROJECT_NAME}` is the project name
        // (compose-go loader/loader_test.go TestProjectNameInterpolation; the normalising of a
        // name read from the file has no compose-go test of its own: types.NormalizeProjectName
        // as the loader applies it).
        let (_d, stack) = loaded(
            &[(
                "compose.yaml",
                &svc("    environment: {P: \"${COMPOSE_PROJECT_NAME}\"}\n"),
            )],
            &[],
        );
        assert_eq!(stack.name, "myproject");
        assert_eq!(env_of(&stack, "web", "P").as_deref(), Some("myproject"));
        // The same short port twice is one port (no compose-go test of its own found: the
        // loader's port deduplication); an unknown volume option is ignored (compose-go
        // format/volume_test.go TestParseVolumeWithInvalidVolumeOptions).
        let (_d, stack) = loaded(
            &[(
                "compose.yaml",
                &format!(
                    "{}volumes:\n  data:\n",
                    svc("    ports: [\"9080:80\", \"9080:80\"]\n    volumes: [\"data:/target:bogus\"]\n")
                ),
            )],
            &[],
        );
        assert_eq!(stack.services["web"].ports.len(), 1);
        // Errors, with what Compose names.
        let cases: &[(&str, &str)] = &[
            // compose-go loader/loader_test.go TestEnvironmentWhitespace
            (
                "services:\n  web:\n    image: nginx\n    environment: [\"DEBUG = true\"]\n",
                "environment variable `DEBUG` has a space before `=`",
            ),
            // compose-go loader/loader_test.go TestNonStringKeys
            (
                "services:\n  foo:\n    image: busybox\n  123:\n    image: busybox\n",
                "non-string key in `services`: `123`",
            ),
        ];
        for (yaml, want) in cases {
            let (_d, l) = load_files(&[("compose.yaml", yaml)], &[], |_| {});
            let e = l.expect_err(yaml);
            let text = e.render(false);
            assert!(text.contains(want), "{yaml}: {text}");
            assert!(text.contains("compose.yaml:"), "located: {text}");
        }
    }

    /// Several YAML documents in one file are merged in order, as compose-go's loader does
    /// (compose-go loader/multidoc_test.go TestLoadMultiDocumentYaml, loader/loader_test.go
    /// TestLoadMulmtiDocumentYaml, sic).
    #[test]
    fn several_documents_merge_in_order() {
        let (_d, stack) = loaded(
            &[(
                "compose.yaml",
                "services:\n  web:\n    image: nginx\n    environment: {A: \"1\", B: \"1\"}\n---\nservices:\n  web:\n    environment: {B: \"2\"}\n  db:\n    image: postgres:15\n",
            )],
            &[],
        );
        let names: Vec<&str> = stack.services.keys().map(String::as_str).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(env_of(&stack, "web", "A").as_deref(), Some("1"));
        assert_eq!(env_of(&stack, "web", "B").as_deref(), Some("2"));
    }

    /// Keys this engine has no use for are accepted with one warning each, naming where.
    #[test]
    fn accepted_and_ignored_keys_warn_once() {
        let (_d, l) = load_files(
            &[(
                "compose.yaml",
                "services:\n  a:\n    image: nginx\n    external_links: [redis_1, \"project_db_1:mysql\"]\n    restart: \"on-failure:3\"\n  b:\n    image: nginx\n    external_links: [x]\nnetworks:\n  front:\n    ipam:\n      driver: default\n      config: [{subnet: 172.28.0.0/16}]\n",
            )],
            &[],
            |_| {},
        );
        let l = l.unwrap_or_else(|e| panic!("{}", e.render(false)));
        let w = l.warnings.join("\n");
        assert!(w.contains("`external_links` ignored (`a`, `b`)"), "{w}");
        assert!(w.contains("`ipam` of networks ignored (`front`)"), "{w}");
        assert!(w.contains("on-failure:N` ignored (`a`)"), "{w}");
        assert_eq!(l.warnings.len(), 3, "{w}");
        assert_eq!(
            l.stack.services["a"].restart,
            crate::config::RestartPolicy::OnFailure
        );
    }

    /// Compose keys refused with their reason, located (`provider` as compose-go
    /// loader/loader_test.go TestServiceProvider writes it; `models` as the specification's
    /// models.md does).
    #[test]
    fn refused_compose_keys_say_why() {
        let cases: &[(&str, &str)] = &[
            (
                "    provider: {type: model}\n",
                "`provider` services are not supported",
            ),
            ("    models: [llm]\n", "`models` is not supported"),
            (
                "    pre_start: [{command: migrate, working_dir: app}]\n",
                "`working_dir` of a hook of `web` must be an absolute path",
            ),
            (
                "    pre_start: [{image: \"\"}]\n",
                "`image` of a `pre_start` step of `web` is empty",
            ),
            ("    pre_start: [{command: x, imgae: alpine}]\n", "unknown"),
            (
                "    post_start: [{command: x, working_dir: rel}]\n",
                "`working_dir` of a hook of `web` must be an absolute path",
            ),
            ("    pre_stop: [{command: x, usr: root}]\n", "unknown"),
        ];
        for (extra, want) in cases {
            let yaml = format!("services:\n  web:\n    image: nginx\n{extra}");
            let (_d, l) = load_files(&[("compose.yaml", &yaml)], &[], |_| {});
            let text = l.expect_err(&yaml).render(false);
            assert!(text.contains(want), "{yaml}: {text}");
            assert!(text.contains("compose.yaml:4:"), "{yaml}: {text}");
        }
        let (_d, l) = load_files(
            &[(
                "compose.yaml",
                "services:\n  web:\n    image: nginx\nmodels:\n  llm:\n    model: ai/smollm2\n",
            )],
            &[],
            |_| {},
        );
        let text = l.expect_err("models").render(false);
        assert!(text.contains("`models` is not supported"), "{text}");
        assert!(text.contains("compose.yaml:4:1"), "located: {text}");
    }

    /// `post_start` and `pre_stop` as the Compose specification writes them (services.md;
    /// compose-go loader/loader_test.go TestLoadServiceHooks).
    #[test]
    fn lifecycle_hooks_are_read() {
        let (_d, stack) = loaded(
            &[(
                "compose.yaml",
                "services:\n  web:\n    image: nginx\n    post_start:\n      - command: chown -R 1001:1001 /data\n        user: root\n        privileged: true\n    pre_stop:\n      - command: [\"./data_flush.sh\", \"--all\"]\n        working_dir: /app\n        environment: {MODE: fast}\n",
            )],
            &[],
        );
        let o = &stack.services["web"].options;
        assert_eq!(
            o.post_start,
            vec![crate::config::Hook {
                command: crate::config::Command::Shell("chown -R 1001:1001 /data".into()),
                user: Some("root".into()),
                privileged: true,
                working_dir: None,
                environment: IndexMap::new(),
            }]
        );
        let exec = crate::plan::hook_exec(&o.pre_stop[0]);
        assert_eq!(exec.argv, ["./data_flush.sh", "--all"]);
        assert_eq!(exec.working_dir.as_deref(), Some("/app"));
        assert_eq!(exec.env, ["MODE=fast"]);
    }

    /// `pre_start` steps as compose-spec 2026-06 writes them: `command` and `image` optional,
    /// `user`, `privileged`, `working_dir`, `environment`; their port references are checked
    /// like any other value's.
    #[test]
    fn pre_start_steps_are_read() {
        let (_d, stack) = loaded(
            &[(
                "compose.yaml",
                "services:\n  db:\n    image: postgres:15\n    ports: [\"5432\"]\n  web:\n    image: app\n    pre_start:\n      - command: [\"./migrate\", \"--to\", \"head\"]\n        environment: {DB_PORT: \"${port:db:5432}\"}\n      - image: busybox\n        user: root\n        privileged: true\n        working_dir: /data\n",
            )],
            &[],
        );
        let steps = &stack.services["web"].options.pre_start;
        assert_eq!(
            steps,
            &vec![
                crate::config::InitHook {
                    image: None,
                    command: Some(crate::config::Command::Argv(vec![
                        "./migrate".into(),
                        "--to".into(),
                        "head".into()
                    ])),
                    user: None,
                    privileged: false,
                    working_dir: None,
                    environment: IndexMap::from([(
                        "DB_PORT".to_string(),
                        "${port:db:5432}".to_string()
                    )]),
                },
                crate::config::InitHook {
                    image: Some("busybox".into()),
                    command: None,
                    user: Some("root".into()),
                    privileged: true,
                    working_dir: Some("/data".into()),
                    environment: IndexMap::new(),
                },
            ]
        );
        let yaml = "services:\n  web:\n    image: app\n    pre_start:\n      - command: migrate\n        environment: {P: \"${port:db:5432}\"}\n";
        let (_d, l) = load_files(&[("compose.yaml", yaml)], &[], |_| {});
        let text = l.expect_err(yaml).render(false);
        assert!(text.contains("compose.yaml:6:"), "located: {text}");
        assert!(text.contains("db"), "{text}");
    }
}
