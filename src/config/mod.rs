//! The stack file: schema, loading, interpolation, validation, display, and its dependency
//! graph (`graph`: start levels, stop order, cycles).

pub mod diagnostic;
pub mod dotenv;
pub mod extends;
pub mod graph;
pub mod interpolate;
pub mod k8s;
pub mod keypath;
mod load;
pub mod locate;
pub mod model;
mod name;
pub mod raw;
pub mod secrets;
pub mod show;
pub mod validate;

pub use diagnostic::Diagnostic;
pub use keypath::KeyPath;
pub use load::{
    find_stack_file, is_compose_file, load, ConfigError, LoadOptions, Loaded, DEFAULT_FILE,
    DEFAULT_FILES,
};
pub use model::*;
pub use name::ServiceName;

/// A stack from YAML text in one folder per test thread: the same text gives the same stack
/// (working folders included), for tests that compare two versions of a stack file.
#[cfg(test)]
pub fn test_stack_here(yaml: &str) -> Stack {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temp folder");
    }
    DIR.with(|dir| {
        std::fs::write(dir.path().join(DEFAULT_FILE), yaml).expect("writing the stack file");
        let opts = LoadOptions {
            cwd: dir.path().to_path_buf(),
            project_name: Some("stack".into()),
            ..Default::default()
        };
        load(&opts, &|_| None)
            .expect("the test stack is valid")
            .stack
    })
}

/// A stack from YAML text, for unit tests of the modules that work on stacks.
#[cfg(test)]
pub fn test_stack(yaml: &str) -> Stack {
    let dir = tempfile::tempdir().expect("a temp folder");
    test_stack_in(dir.path(), yaml)
}

/// A stack from YAML text written into `dir`, beside the files a test put there.
#[cfg(test)]
pub fn test_stack_in(dir: &std::path::Path, yaml: &str) -> Stack {
    std::fs::write(dir.join(DEFAULT_FILE), yaml).expect("writing the stack file");
    let opts = LoadOptions {
        cwd: dir.to_path_buf(),
        ..Default::default()
    };
    load(&opts, &|_| None)
        .expect("the test stack is valid")
        .stack
}

/// The service names of the stack file found from the current folder (for shell completion);
/// none when there is no valid one.
pub fn service_names_here() -> Vec<String> {
    let Ok(cwd) = std::env::current_dir() else {
        return Vec::new();
    };
    let opts = LoadOptions {
        files: Vec::new(),
        project_name: None,
        cwd,
        env_files: Vec::new(),
        profiles: Vec::new(),
        targets: Vec::new(),
        instance: None,
    };
    load(&opts, &|k| std::env::var(k).ok())
        .map(|l| l.stack.services.keys().cloned().collect())
        .unwrap_or_default()
}
