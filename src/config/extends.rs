//! Compose's `extends:` (a service built on another, from the same file or another one) and
//! top-level `include:` (another Compose file's services and resources), resolved on the YAML
//! tree before it is typed. Reading other files is the caller's: it comes in as a function.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::keypath::KeyPath;

/// Reads another stack file as a YAML tree, or says why it cannot.
pub type ReadFile<'a> = dyn FnMut(&Path) -> Result<Value, Box<Diagnostic>> + 'a;

/// An `extends:` as written: `extends: NAME` or `{service, file}`.
fn extends_of(v: &Value) -> Option<(String, Option<String>)> {
    match v.get("extends")? {
        Value::String(s) => Some((s.clone(), None)),
        Value::Mapping(m) => Some((
            m.get("service")?.as_str()?.to_string(),
            m.get("file").and_then(Value::as_str).map(str::to_string),
        )),
        _ => None,
    }
}

fn join(dir: &Path, p: &str) -> String {
    if p.starts_with('/') || p.starts_with('~') || p.contains("://") || p.starts_with("git@") {
        p.to_string()
    } else {
        dir.join(p).display().to_string()
    }
}

/// Rewrites the relative paths of a service from another folder to absolute ones: the build
/// context, env files, bind-mount sources and a nested `extends.file`.
pub fn absolutize_service(svc: &mut Value, dir: &Path) {
    let Some(m) = svc.as_mapping_mut() else {
        return;
    };
    match m.get_mut("build") {
        Some(Value::String(s)) => *s = join(dir, s),
        Some(Value::Mapping(b)) => {
            let ctx = b
                .get("context")
                .and_then(Value::as_str)
                .unwrap_or(".")
                .to_string();
            b.insert("context".into(), Value::String(join(dir, &ctx)));
        }
        _ => {}
    }
    match m.get_mut("env_file") {
        Some(Value::String(s)) => *s = join(dir, s),
        Some(Value::Sequence(items)) => {
            for item in items {
                match item {
                    Value::String(s) => *s = join(dir, s),
                    Value::Mapping(e) => {
                        if let Some(Value::String(p)) = e.get_mut("path") {
                            *p = join(dir, p);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Sequence(vols)) = m.get_mut("volumes") {
        for v in vols {
            match v {
                Value::String(s) if s.starts_with('.') => {
                    if let Some((src, rest)) = s.split_once(':') {
                        *s = format!("{}:{rest}", join(dir, src));
                    }
                }
                Value::Mapping(l) => {
                    let bind = l.get("type").and_then(Value::as_str) == Some("bind");
                    if let (true, Some(Value::String(src))) = (bind, l.get_mut("source")) {
                        *src = join(dir, src);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(Value::Mapping(e)) = m.get_mut("extends") {
        if let Some(Value::String(f)) = e.get_mut("file") {
            *f = join(dir, f);
        }
    }
}

/// Resolves every service's `extends` in `doc` (whose relative paths are against `dir`).
/// `merge_service` merges a service over its base as `-f` files merge.
pub fn resolve_extends(
    doc: &mut Value,
    dir: &Path,
    read: &mut ReadFile<'_>,
    merge_service: fn(&mut Value, Value),
    errors: &mut Vec<Diagnostic>,
) {
    let Some(Value::Mapping(services)) = doc.get("services").cloned() else {
        return;
    };
    let mut resolved = Mapping::new();
    for (name, v) in &services {
        // A name that is not a string is the typed pass's to report.
        let Some(n) = name.as_str() else {
            resolved.insert(name.clone(), v.clone());
            continue;
        };
        let mut chain = Vec::new();
        let path = KeyPath::root().key("services").key(n);
        match resolve_one(n, &services, dir, read, merge_service, &mut chain, &path) {
            Ok(v) => {
                resolved.insert(name.clone(), v);
            }
            Err(d) => {
                errors.push(*d);
                // Keep the service as written, without `extends`, so the rest is still checked.
                let mut v = services.get(name).cloned().unwrap_or(Value::Null);
                if let Some(m) = v.as_mapping_mut() {
                    m.remove("extends");
                }
                resolved.insert(name.clone(), v);
            }
        }
    }
    if let Some(m) = doc.as_mapping_mut() {
        m.insert("services".into(), Value::Mapping(resolved));
    }
}

fn resolve_one(
    name: &str,
    services: &Mapping,
    dir: &Path,
    read: &mut ReadFile<'_>,
    merge_service: fn(&mut Value, Value),
    chain: &mut Vec<String>,
    path: &KeyPath,
) -> Result<Value, Box<Diagnostic>> {
    let here = format!("{}#{name}", dir.display());
    if chain.contains(&here) {
        let mut shown: Vec<&str> = chain
            .iter()
            .map(|c| c.rsplit('#').next().unwrap_or(c))
            .collect();
        shown.push(name);
        return Err(Box::new(
            Diagnostic::new(format!(
                "`extends` goes round in a circle: {}",
                shown.join(" → ")
            ))
            .at(path.key("extends"))
            .help("a service cannot extend itself, directly or through others"),
        ));
    }
    chain.push(here);
    let mut svc = services.get(name).cloned().unwrap_or(Value::Null);
    if svc.is_null() {
        svc = Value::Mapping(Mapping::new());
    }
    let Some((base_name, file)) = extends_of(&svc) else {
        if svc.get("extends").is_some() {
            return Err(Box::new(Diagnostic::new("`extends` needs a `service`")
                .at(path.key("extends"))
                .help("write `extends: { service: NAME }`, with `file: OTHER.yaml` for a service of another file")));
        }
        return Ok(svc);
    };
    let (base_services, base_dir) = match &file {
        None => (services.clone(), dir.to_path_buf()),
        Some(f) => {
            let p = PathBuf::from(join(dir, f));
            let other = read(&p).map_err(|d| Box::new(d.at(path.key("extends").key("file"))))?;
            let base_dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            match other.get("services") {
                Some(Value::Mapping(m)) => (m.clone(), base_dir),
                _ => {
                    return Err(Box::new(
                        Diagnostic::new(format!("`{f}` has no `services`"))
                            .at_value(path.key("extends").key("file"))
                            .help("name a Compose file with the service to extend"),
                    ))
                }
            }
        }
    };
    if !base_services.contains_key(base_name.as_str()) {
        let names: Vec<&str> = base_services.keys().filter_map(Value::as_str).collect();
        let place = file
            .as_ref()
            .map_or_else(String::new, |f| format!(" in `{f}`"));
        return Err(Box::new(
            Diagnostic::new(format!(
                "service `{name}` extends unknown service `{base_name}`{place}"
            ))
            .at_value(path.key("extends"))
            .help(
                did_you_mean(&base_name, names.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "the services there are {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }),
            ),
        ));
    }
    let mut base = resolve_one(
        &base_name,
        &base_services,
        &base_dir,
        read,
        merge_service,
        chain,
        path,
    )?;
    if file.is_some() {
        absolutize_service(&mut base, &base_dir);
    }
    if let Some(m) = svc.as_mapping_mut() {
        m.remove("extends");
    }
    merge_service(&mut base, svc);
    Ok(base)
}

/// Adds the services, volumes, networks and secrets of each `include:`d file to `doc`. A name
/// defined in both is an error, as in Compose.
pub fn resolve_include(
    doc: &mut Value,
    dir: &Path,
    read: &mut ReadFile<'_>,
    merge_service: fn(&mut Value, Value),
    errors: &mut Vec<Diagnostic>,
    depth: usize,
) {
    let Some(m) = doc.as_mapping_mut() else {
        return;
    };
    let Some(list) = m.remove("include") else {
        return;
    };
    let ipath = KeyPath::root().key("include");
    let items = match list {
        Value::Sequence(items) => items,
        other => vec![other],
    };
    for (i, item) in items.into_iter().enumerate() {
        let at = ipath.index(i);
        let Some(paths) = include_paths(&item, &at, errors) else {
            continue;
        };
        if depth > 8 {
            errors.push(
                Diagnostic::new("`include` nests too deep")
                    .at(at.clone())
                    .help("files that include each other never end; remove one `include`"),
            );
            return;
        }
        // Several paths in one entry merge in order, like `-f` files.
        let mut included = Value::Mapping(Mapping::new());
        for p in &paths {
            let full = PathBuf::from(join(dir, p));
            match read(&full) {
                Ok(mut v) => {
                    let d = full.parent().map(Path::to_path_buf).unwrap_or_default();
                    resolve_include(&mut v, &d, read, merge_service, errors, depth + 1);
                    resolve_extends(&mut v, &d, read, merge_service, errors);
                    if let Some(Value::Mapping(svcs)) = v.get_mut("services") {
                        for (_, s) in svcs.iter_mut() {
                            absolutize_service(s, &d);
                        }
                    }
                    if let Some(Value::Mapping(secrets)) = v.get_mut("secrets") {
                        for (_, s) in secrets.iter_mut() {
                            if let Some(Value::String(f)) = s.get_mut("file") {
                                *f = join(&d, f);
                            }
                        }
                    }
                    super::load::merge_top(&mut included, v);
                }
                Err(d) => errors.push(d.at_value(at.clone())),
            }
        }
        add_included(doc, included, errors);
    }
}

/// The services, volumes, networks and secrets of an included file, added to `doc`; a name
/// defined in both is an error, as in Compose.
fn add_included(doc: &mut Value, included: Value, errors: &mut Vec<Diagnostic>) {
    let Some(top) = doc.as_mapping_mut() else {
        return;
    };
    for section in ["services", "volumes", "networks", "secrets"] {
        let Some(Value::Mapping(theirs)) = included.get(section).cloned() else {
            continue;
        };
        let ours = top
            .entry(section.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if ours.is_null() {
            *ours = Value::Mapping(Mapping::new());
        }
        let Some(ours) = ours.as_mapping_mut() else {
            continue;
        };
        for (k, v) in theirs {
            if ours.contains_key(&k) {
                let name = k.as_str().unwrap_or("?").to_string();
                errors.push(
                    Diagnostic::new(format!(
                        "`{section}.{name}` is defined both here and in an included file"
                    ))
                    .at(KeyPath::root().key(section).key(name.clone()))
                    .help("rename one of them; an included file's names cannot be overridden, as in Compose"),
                );
                continue;
            }
            ours.insert(k, v);
        }
    }
}

/// The paths of one `include` entry: a string, or `{path}` with one or several; none (and a
/// problem) when the entry names none.
fn include_paths(item: &Value, at: &KeyPath, errors: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
    let paths = match item {
        Value::String(s) => vec![s.clone()],
        Value::Mapping(e) => {
            for key in e.keys().filter_map(Value::as_str) {
                if key != "path" {
                    errors.push(super::validate::unsupported(&at.key(key), key));
                }
            }
            match e.get("path") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Sequence(ps)) => ps
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => {
                    errors.push(
                        Diagnostic::new("`include` entry has no `path`")
                            .at(at.clone())
                            .help("write `- path: other/compose.yaml`"),
                    );
                    return None;
                }
            }
        }
        _ => {
            errors.push(
                Diagnostic::new("`include` takes paths")
                    .at_value(at.clone())
                    .help("write `include: [other/compose.yaml]`"),
            );
            return None;
        }
    };
    Some(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    fn no_files(p: &Path) -> Result<Value, Box<Diagnostic>> {
        Err(Box::new(Diagnostic::new(format!(
            "no file {}",
            p.display()
        ))))
    }

    #[test]
    fn extends_in_the_same_file_merges_over_the_base() {
        let mut doc = yaml(
            "services:\n  base:\n    image: app\n    environment: [A=1, B=2]\n  web:\n    extends: base\n    environment: { B: \"3\" }\n  deeper:\n    extends: { service: web }\n    command: run\n",
        );
        let mut errors = Vec::new();
        resolve_extends(
            &mut doc,
            Path::new("/p"),
            &mut no_files,
            super::super::load::merge_service,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            doc["services"]["web"],
            yaml("image: app\nenvironment: { A: \"1\", B: \"3\" }")
        );
        assert_eq!(doc["services"]["deeper"]["command"], yaml("run"));
        assert_eq!(doc["services"]["deeper"]["image"], yaml("app"));
    }

    #[test]
    fn extends_problems_are_named() {
        let mut doc = yaml(
            "services:\n  a:\n    extends: b\n  b:\n    extends: a\n  c:\n    extends: nope\n",
        );
        let mut errors = Vec::new();
        resolve_extends(
            &mut doc,
            Path::new("/p"),
            &mut no_files,
            super::super::load::merge_service,
            &mut errors,
        );
        let msgs: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "`extends` goes round in a circle: a → b → a",
                "`extends` goes round in a circle: b → a → b",
                "service `c` extends unknown service `nope`",
            ]
        );
    }

    #[test]
    fn paths_of_another_folder_become_absolute() {
        let mut svc = yaml(
            "build: .\nenv_file: [a.env, {path: b.env}]\nvolumes: [./data:/data, named:/n, {type: bind, source: ./s, target: /s}]\n",
        );
        absolutize_service(&mut svc, Path::new("/other"));
        assert_eq!(
            svc,
            yaml("build: /other/.\nenv_file: [/other/a.env, {path: /other/b.env}]\nvolumes: [/other/./data:/data, named:/n, {type: bind, source: /other/./s, target: /s}]\n")
        );
    }
}
