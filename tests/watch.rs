//! The file watcher on real files in temporary directories: what is watched, what is reported,
//! the debounce, and the polling fallback. Every wait has a deadline; a "nothing came" check waits
//! a few debounce windows and no longer.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use devstack::watch::{FilesChanged, WatchError, WatchSpec, Watcher};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

/// Generous for a loaded 2-core machine; a passing test returns as soon as the change arrives.
const DEADLINE: Duration = Duration::from_secs(5);

fn spec(service: &str, paths: &[&Path], ignore: &[&str], debounce_ms: u64) -> WatchSpec {
    WatchSpec {
        service: service.into(),
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
        debounce: Duration::from_millis(debounce_ms),
    }
}

/// A temporary directory by its canonical path, which is how the watcher reports paths.
fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir
        .path()
        .canonicalize()
        .expect("canonicalize the temporary directory");
    (dir, path)
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, text).expect("write file");
}

async fn next(rx: &mut Receiver<FilesChanged>) -> FilesChanged {
    timeout(DEADLINE, rx.recv())
        .await
        .expect("no change reported within the deadline")
        .expect("the watcher closed its channel")
}

/// Waits a bounded window and fails if anything is reported in it.
async fn assert_quiet(rx: &mut Receiver<FilesChanged>, window: Duration) {
    if let Ok(got) = timeout(window, rx.recv()).await {
        panic!("expected no change, got {got:?}");
    }
}

fn dirs_under(watcher: &Watcher, root: &Path) -> Vec<PathBuf> {
    watcher
        .watched_dirs()
        .into_iter()
        .map(|d| d.strip_prefix(root).map(Path::to_path_buf).unwrap_or(d))
        .collect()
}

#[tokio::test]
async fn an_edit_gives_one_change_naming_the_file() {
    let (_tmp, root) = tempdir();
    let file = root.join("src/app.py");
    write(&file, "print(1)\n");
    let (watcher, mut rx) = Watcher::start(vec![spec("core", &[&root], &[], 50)]).expect("start");
    assert!(!watcher.polling());

    write(&file, "print(2)\n");

    let got = next(&mut rx).await;
    assert_eq!(got.service, "core");
    assert_eq!(got.paths, vec![file]);
    assert!(got.events >= 1);
    assert_quiet(&mut rx, Duration::from_millis(150)).await;
}

#[tokio::test]
async fn spec_ignores_and_editor_files_give_no_change() {
    let (_tmp, root) = tempdir();
    let main = root.join("main.py");
    write(&main, "x = 1\n");
    fs::create_dir(root.join("build")).expect("mkdir build");
    let (watcher, mut rx) =
        Watcher::start(vec![spec("core", &[&root], &["*.log", "build/"], 50)]).expect("start");
    assert_eq!(dirs_under(&watcher, &root), vec![PathBuf::new()]);

    for ignored in ["app.log", "main.py.swp", "main.py~", ".#main.py", "4913"] {
        write(&root.join(ignored), "noise\n");
    }
    write(&root.join("build/out.js"), "noise\n");
    // A real edit after the ignored ones: had any of them counted, it would be in this burst
    // or an earlier one.
    write(&main, "x = 2\n");

    let got = next(&mut rx).await;
    assert_eq!(got.paths, vec![main]);
    assert_quiet(&mut rx, Duration::from_millis(150)).await;
}

#[tokio::test]
async fn heavy_and_gitignored_folders_are_never_watched_nor_reported() {
    let (_tmp, repo) = tempdir();
    // A repository whose root is above the watched path: its .gitignore and info/exclude apply.
    fs::create_dir_all(repo.join(".git/info")).expect("mkdir .git");
    write(&repo.join(".git/info/exclude"), "secret/\n");
    write(&repo.join(".gitignore"), "dist/\n");
    let app = repo.join("app");
    write(&app.join(".gitignore"), "*.tmp\n");
    let main = app.join("src/main.py");
    write(&main, "x = 1\n");
    for heavy in [
        "node_modules/left-pad",
        "__pycache__",
        ".venv/lib",
        "venv",
        ".next/cache",
        "target/debug",
        ".pytest_cache",
        ".mypy_cache",
        "dist/assets",
        "secret",
    ] {
        fs::create_dir_all(app.join(heavy)).expect("mkdir");
    }
    let (watcher, mut rx) = Watcher::start(vec![spec("core", &[&app], &[], 50)]).expect("start");
    let watched = vec![PathBuf::new(), PathBuf::from("src")];
    assert_eq!(dirs_under(&watcher, &app), watched);

    write(&app.join("node_modules/left-pad/index.js"), "noise\n");
    write(&app.join("__pycache__/main.cpython-312.pyc"), "noise\n");
    write(&app.join("dist/assets/app.js"), "noise\n");
    write(&app.join("secret/key"), "noise\n");
    write(&app.join("src/notes.tmp"), "noise\n");
    // Heavy folders that appear later are not watched either.
    write(&app.join("src/node_modules/pkg/index.js"), "noise\n");
    write(&app.join("src/__pycache__/main.cpython-312.pyc"), "noise\n");
    write(&main, "x = 2\n");

    let got = next(&mut rx).await;
    assert_eq!(got.paths, vec![main]);
    assert_quiet(&mut rx, Duration::from_millis(150)).await;
    assert_eq!(dirs_under(&watcher, &app), watched);
}

#[tokio::test]
async fn editing_gitignore_reapplies_it() {
    let (_tmp, repo) = tempdir();
    fs::create_dir_all(repo.join(".git/objects")).expect("mkdir .git");
    fs::create_dir(repo.join("gen")).expect("mkdir gen");
    fs::create_dir(repo.join("src")).expect("mkdir src");
    let (watcher, mut rx) = Watcher::start(vec![spec("core", &[&repo], &[], 50)]).expect("start");
    let all = vec![PathBuf::new(), PathBuf::from("gen"), PathBuf::from("src")];
    assert_eq!(dirs_under(&watcher, &repo), all);

    let gitignore = repo.join(".gitignore");
    write(&gitignore, "gen/\n");
    assert_eq!(next(&mut rx).await.paths, vec![gitignore]);
    let kept = vec![PathBuf::new(), PathBuf::from("src")];
    assert_eq!(dirs_under(&watcher, &repo), kept);

    write(&repo.join("gen/schema.py"), "noise\n");
    let edit = repo.join("src/a.py");
    write(&edit, "x\n");
    assert_eq!(next(&mut rx).await.paths, vec![edit]);
}

#[tokio::test]
async fn a_burst_of_a_thousand_writes_is_one_change() {
    let (_tmp, root) = tempdir();
    let (_watcher, mut rx) = Watcher::start(vec![spec("core", &[&root], &[], 100)]).expect("start");

    for i in 0..1000 {
        fs::write(root.join(format!("gen_{i}.py")), "x = 1\n").expect("write");
    }

    let got = next(&mut rx).await;
    assert_eq!(got.service, "core");
    assert!(got.events >= 1000, "{} events", got.events);
    assert_eq!(got.paths.len(), 20);
    assert_quiet(&mut rx, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_new_subdirectory_and_its_files_are_picked_up() {
    let (_tmp, root) = tempdir();
    let (watcher, mut rx) = Watcher::start(vec![spec("core", &[&root], &[], 50)]).expect("start");

    // Created faster than the watcher can add a watch for `sub`: the file must still be seen.
    let new = root.join("sub/deeper/new.py");
    write(&new, "x = 1\n");
    let mut seen = Vec::new();
    while !seen.contains(&new) {
        seen.extend(next(&mut rx).await.paths);
    }
    let dirs = dirs_under(&watcher, &root);
    assert!(dirs.contains(&PathBuf::from("sub/deeper")), "{dirs:?}");

    // And the new directory is watched from now on.
    let later = root.join("sub/deeper/later.py");
    write(&later, "y = 1\n");
    let got = next(&mut rx).await;
    assert_eq!(got.paths, vec![later]);
}

#[tokio::test]
async fn two_services_are_independent() {
    let (_tmp, root) = tempdir();
    let (a, b) = (root.join("a"), root.join("b"));
    fs::create_dir(&a).expect("mkdir a");
    fs::create_dir(&b).expect("mkdir b");
    let (_watcher, mut rx) = Watcher::start(vec![
        spec("fast", &[&a], &[], 50),
        spec("slow", &[&b], &[], 500),
    ])
    .expect("start");

    write(&b.join("y.py"), "y\n");
    write(&a.join("x.py"), "x\n");

    // The slow service's open burst does not hold back the fast one.
    let first = next(&mut rx).await;
    assert_eq!(
        (first.service.as_str(), first.paths),
        ("fast", vec![a.join("x.py")])
    );
    let second = next(&mut rx).await;
    assert_eq!(
        (second.service.as_str(), second.paths),
        ("slow", vec![b.join("y.py")])
    );
    assert_quiet(&mut rx, Duration::from_millis(150)).await;
}

#[tokio::test]
async fn services_sharing_a_tree_keep_their_own_ignores() {
    let (_tmp, root) = tempdir();
    fs::create_dir(root.join("gen")).expect("mkdir gen");
    let (_watcher, mut rx) = Watcher::start(vec![
        spec("api", &[&root], &["gen/"], 50),
        spec("worker", &[&root], &[], 50),
    ])
    .expect("start");

    let generated = root.join("gen/schema.py");
    write(&generated, "x\n");

    let got = next(&mut rx).await;
    assert_eq!(
        (got.service.as_str(), got.paths),
        ("worker", vec![generated])
    );
    assert_quiet(&mut rx, Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_single_file_path_is_watched_alone() {
    let (_tmp, root) = tempdir();
    let config = root.join("config.yaml");
    write(&config, "a: 1\n");
    let (watcher, mut rx) = Watcher::start(vec![spec("core", &[&config], &[], 50)]).expect("start");
    assert_eq!(watcher.watched_dirs(), vec![root.clone()]);

    write(&root.join("other.txt"), "noise\n");
    write(&config, "a: 2\n");

    let got = next(&mut rx).await;
    assert_eq!(got.paths, vec![config]);
    assert_quiet(&mut rx, Duration::from_millis(150)).await;
}

#[tokio::test]
async fn the_polling_fallback_delivers_an_edit() {
    let (_tmp, root) = tempdir();
    let file = root.join("src/app.py");
    write(&file, "print(1)\n");
    // The poller compares modification times in whole seconds: start from an older one so the
    // edit below is newer whatever the clock says.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(hour_ago))
        .expect("backdate the file");
    let (watcher, mut rx) =
        Watcher::start_polling(vec![spec("core", &[&root], &["*.log"], 50)]).expect("start");
    assert!(watcher.polling());
    assert_eq!(
        dirs_under(&watcher, &root),
        vec![PathBuf::new(), PathBuf::from("src")]
    );

    write(&root.join("src/debug.log"), "noise\n");
    write(&file, "print(2)\n");

    let got = next(&mut rx).await;
    assert_eq!(got.paths, vec![file]);
}

#[tokio::test]
async fn a_missing_path_is_an_error_naming_service_and_path() {
    let (_tmp, root) = tempdir();
    let missing = root.join("no-such-dir");
    let err = match Watcher::start(vec![spec("core", &[&missing], &[], 50)]) {
        Ok(_) => panic!("watching a missing path must fail"),
        Err(err) => err,
    };
    assert!(matches!(err, WatchError::PathNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "watch path `{}` of service `core` does not exist",
            missing.display()
        )
    );
}

#[tokio::test]
async fn dropping_the_watcher_ends_it() {
    let (_tmp, root) = tempdir();
    let (watcher, mut rx) = Watcher::start(vec![spec("core", &[&root], &[], 50)]).expect("start");
    drop(watcher);
    let end = timeout(DEADLINE, rx.recv())
        .await
        .expect("channel not closed");
    assert_eq!(end, None);
}
