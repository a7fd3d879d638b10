//! End to end on the ensureStudy example stack (five containers, four native processes, three
//! preparation tasks): it comes up, an edit to core-service restarts it until it is ready again,
//! one `snapshot save` and one `snapshot restore` put PostgreSQL, Redis and Qdrant back while
//! the rest of the stack runs on, and Ctrl-C leaves no process and no listener. Runs on a copy
//! of the example app, on free ports, beside anything else.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const INFRA: &[&str] = &[
    "postgres:15",
    "redis:7-alpine",
    "qdrant/qdrant:latest",
    "confluentinc/cp-zookeeper:latest",
    "confluentinc/cp-kafka:latest",
];

/// The stack's preparation tasks: `completed`, where every other service is `ready`.
const TASKS: &[&str] = &["debian-base", "kafka-broker", "venv"];

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if [
            ".venv",
            "node_modules",
            "__pycache__",
            ".pytest_cache",
            "bin",
        ]
        .iter()
        .any(|n| name == *n)
        {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Processes whose working folder is inside `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cwd) = fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                out.push(format!("{pid} {cmd}"));
            }
        }
    }
    out
}

fn port_after(line: &str, flag: &str) -> Option<u16> {
    line.split(flag)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The example stack is heavy (five containers, four apps): its tests take turns, so that each
/// gets the machine its deadlines are set for.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A copy of the example app and of the repository files its stack uses (the root
/// `stack.yaml`, the scripts of its preparation tasks, the image build contexts), with its own
/// state folder and project. Fields drop in order: `down -v` runs while the folders are there,
/// and the next test's turn comes after it.
struct Example {
    _down: Teardown,
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
    project: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Example {
    fn new(tag: &str) -> Self {
        // A test that failed still hands its turn on.
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let venv = root().join("examples/ensurestudy/.venv");
        assert!(
            venv.join("bin/python").exists(),
            "run scripts/setup-example.sh first"
        );
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("examples/ensurestudy");
        copy_tree(&root().join("examples/ensurestudy"), &app);
        std::os::unix::fs::symlink(&venv, app.join(".venv")).unwrap();
        fs::copy(root().join("stack.yaml"), dir.path().join("stack.yaml")).unwrap();
        // What the stack's preparation tasks and image builds use (each is up to date here).
        copy_tree(&root().join("scripts"), &dir.path().join("scripts"));
        copy_tree(&root().join("images"), &dir.path().join("images"));
        let project = project(tag);
        Self {
            _down: Teardown {
                dir: dir.path().into(),
                project: project.clone(),
                files: vec![],
            },
            state: tempfile::tempdir().unwrap(),
            dir,
            project,
            _turn: turn,
        }
    }

    fn app(&self) -> PathBuf {
        self.dir.path().join("examples/ensurestudy")
    }

    fn state_env(&self) -> String {
        self.state.path().display().to_string()
    }

    /// `up --free-ports` in the foreground until all twelve services are ready: the running
    /// devstack, its output so far, and the rest of its output to come.
    fn up(&self) -> (Running, mpsc::Receiver<String>, Vec<String>) {
        let (child, rx) = spawn_up(
            self.dir.path(),
            &["-p", &self.project, "up", "--free-ports"],
            &[("XDG_STATE_HOME", &self.state_env())],
        );
        let mut seen = Vec::new();
        // Nine services and the three preparation tasks.
        wait_for(
            &rx,
            "12 services ready in",
            Duration::from_secs(240),
            &mut seen,
        );
        (child, rx, seen)
    }

    /// `devstack -p PROJECT ARGS` beside the running one (same state folder), exit 0.
    fn ok(&self, args: &[&str]) -> Output {
        let mut all = vec!["-p", self.project.as_str()];
        all.extend_from_slice(args);
        let state = self.state_env();
        let out = devstack_env(self.dir.path(), &all, &[("XDG_STATE_HOME", &state)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "devstack {args:?}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
    }

    /// `ports --json`: the host port of each (service, container port).
    fn ports(&self) -> BTreeMap<(String, u16), u16> {
        self.json(&["ports", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| {
                Some((
                    (
                        r["service"].as_str()?.to_string(),
                        u16::try_from(r["container_port"].as_u64()?).ok()?,
                    ),
                    u16::try_from(r["host_port"].as_u64()?).ok()?,
                ))
            })
            .collect()
    }

    /// `ps --json`, by service.
    fn ps(&self) -> BTreeMap<String, Value> {
        self.json(&["ps", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["service"].as_str().unwrap().to_string(), r.clone()))
            .collect()
    }

    /// Ctrl-C: devstack exits 130 and leaves no process in the copy and no listener on `ports`.
    fn interrupt_and_check(
        &self,
        child: &mut Running,
        rx: &mpsc::Receiver<String>,
        mut seen: Vec<String>,
        ports: &[u16],
    ) {
        interrupt(child);
        let code = exit_within(child, Duration::from_secs(90));
        seen.extend(rx.try_iter());
        assert_eq!(code, Some(130), "{}", seen.join("\n"));
        let left = processes_in(self.dir.path());
        assert!(left.is_empty(), "processes left behind: {left:?}");
        for &port in ports {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is still held"
            );
        }
    }
}

fn curl_ok(url: &str) -> bool {
    Command::new("curl")
        .args(["-sf", url])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_example_stack_runs_reloads_and_stops_cleanly() {
    if !docker_or_skip(INFRA) {
        return;
    }
    let ex = Example::new("example");
    let (mut child, rx, mut seen) = ex.up();
    let core_port = seen
        .iter()
        .find(|l| l.contains("core-service  ▸ started"))
        .and_then(|l| port_after(l, "--port "))
        .expect("core-service's port");
    let ai_port = seen
        .iter()
        .find(|l| l.contains("ai-service    ▸ started"))
        .and_then(|l| port_after(l, "--port "))
        .expect("ai-service's port");
    assert!(
        curl_ok(&format!("http://127.0.0.1:{core_port}/ready")),
        "core-service /ready"
    );

    // An edit to core-service restarts it, and it gets ready again.
    let web = ex.app().join("backend/core-service/app/web.py");
    let mut text = fs::read_to_string(&web).unwrap();
    text.push_str("\n# edited by devstack's end-to-end test\n");
    fs::write(&web, text).unwrap();
    wait_for(
        &rx,
        "core-service  ▸ restarting: examples/ensurestudy/backend/core-service/app/web.py changed",
        Duration::from_secs(20),
        &mut seen,
    );
    wait_for(
        &rx,
        "core-service  ▸ ready in",
        Duration::from_secs(60),
        &mut seen,
    );
    assert!(
        curl_ok(&format!("http://127.0.0.1:{core_port}/ready")),
        "core-service is ready again after the restart"
    );

    ex.interrupt_and_check(&mut child, &rx, seen, &[core_port, ai_port]);
}

/// The example's data, on the host ports of the running stack: PostgreSQL and Redis through
/// their own clients, Qdrant and core-service through their HTTP APIs.
struct Stores {
    pg: u16,
    redis: u16,
    qdrant: u16,
    core: u16,
}

impl Stores {
    fn of(ports: &BTreeMap<(String, u16), u16>) -> Self {
        let port = |s: &str, p: u16| {
            *ports
                .get(&(s.to_string(), p))
                .unwrap_or_else(|| panic!("no host port for {s}:{p} in {ports:?}"))
        };
        Self {
            pg: port("postgres", 5432),
            redis: port("redis", 6379),
            qdrant: port("qdrant", 6333),
            core: port("core-service", 5000),
        }
    }

    fn sql(&self, q: &str) -> String {
        let o = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.pg.to_string()])
            .args(["-U", "user", "-d", "ensurestudy", "-v", "ON_ERROR_STOP=1"])
            .args(["-tAc", q])
            .env("PGPASSWORD", "pass")
            .output()
            .expect("psql runs");
        assert!(
            o.status.success(),
            "psql {q}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn redis(&self, args: &[&str]) -> String {
        let o = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.redis.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(o.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// One request with curl: the status code and the JSON body.
    fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-X", method, "-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        let o = cmd
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code: u16 = code.trim().parse().unwrap_or(0);
        (code, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn qdrant(&self, method: &str, path: &str, body: &str) -> Value {
        let (code, v) = Self::http(self.qdrant, method, path, Some(body));
        assert_eq!(code, 200, "qdrant {method} {path}: {v}");
        v
    }

    /// The ids of the points of collection `snapcheck`, in order.
    fn point_ids(&self) -> Vec<u64> {
        let v = self.qdrant(
            "POST",
            "/collections/snapcheck/points/scroll",
            r#"{"limit":100}"#,
        );
        let mut ids: Vec<u64> = v["result"]["points"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    }

    fn collection_exists(&self, name: &str) -> bool {
        let (code, v) = Self::http(
            self.qdrant,
            "GET",
            &format!("/collections/{name}/exists"),
            None,
        );
        assert_eq!(code, 200, "{v}");
        v["result"]["exists"].as_bool().unwrap()
    }

    /// A note written through the app (core-service's API, into PostgreSQL): its id.
    fn add_note(&self, text: &str) -> u64 {
        let (code, v) = Self::http(
            self.core,
            "POST",
            "/api/v1/notes",
            Some(&format!(r#"{{"text":"{text}"}}"#)),
        );
        assert_eq!(code, 201, "{v}");
        v["id"].as_u64().unwrap()
    }

    /// A note as the app reads it: the status code and the note's text.
    fn note(&self, id: u64) -> (u16, Value) {
        let (code, v) = Self::http(self.core, "GET", &format!("/api/v1/notes/{id}"), None);
        (code, v["text"].clone())
    }

    /// Rows, keys and points, and a note through the app: the id of the note.
    fn write_originals(&self) -> u64 {
        self.sql(
            "CREATE TABLE snapcheck (v int); INSERT INTO snapcheck SELECT generate_series(1, 1000)",
        );
        assert_eq!(self.redis(&["SET", "snap:k", "original"]), "OK");
        assert_eq!(self.redis(&["RPUSH", "snap:list", "a", "b", "c"]), "3");
        self.qdrant(
            "PUT",
            "/collections/snapcheck",
            r#"{"vectors":{"size":2,"distance":"Cosine"}}"#,
        );
        self.qdrant(
            "PUT",
            "/collections/snapcheck/points?wait=true",
            r#"{"points":[{"id":1,"vector":[1,0]},{"id":2,"vector":[0,1]},{"id":3,"vector":[1,1]}]}"#,
        );
        self.add_note("saved with the stack")
    }

    /// Changes and deletions in all three, and a note written after the save: its id.
    fn change_everything(&self) -> u64 {
        self.sql("DELETE FROM snapcheck WHERE v > 10; INSERT INTO snapcheck VALUES (-5); CREATE TABLE junk (x int)");
        self.redis(&["SET", "snap:k", "changed"]);
        self.redis(&["DEL", "snap:list"]);
        self.redis(&["SET", "snap:junk", "1"]);
        self.qdrant(
            "POST",
            "/collections/snapcheck/points/delete?wait=true",
            r#"{"points":[1,2]}"#,
        );
        self.qdrant(
            "PUT",
            "/collections/snapcheck/points?wait=true",
            r#"{"points":[{"id":9,"vector":[1,0]}]}"#,
        );
        self.qdrant(
            "PUT",
            "/collections/junk",
            r#"{"vectors":{"size":2,"distance":"Dot"}}"#,
        );
        self.add_note("written after the save")
    }

    /// What `change_everything` did is there (the controls for the checks after the restore).
    fn assert_changed(&self, later: u64) {
        assert_eq!(self.sql("SELECT count(*), sum(v) FROM snapcheck"), "11|50");
        assert_eq!(self.sql("SELECT to_regclass('junk')"), "junk");
        assert_eq!(self.redis(&["GET", "snap:k"]), "changed");
        assert_eq!(self.redis(&["EXISTS", "snap:list"]), "0");
        assert_eq!(self.redis(&["EXISTS", "snap:junk"]), "1");
        assert_eq!(self.point_ids(), [3, 9]);
        assert!(self.collection_exists("junk"));
        assert_eq!(self.note(later).0, 200);
    }

    fn assert_originals(&self, note: u64, later: u64) {
        assert_eq!(
            self.sql("SELECT count(*), sum(v) FROM snapcheck"),
            "1000|500500"
        );
        assert_eq!(
            self.sql("SELECT to_regclass('junk')"),
            "",
            "table `junk` is gone"
        );
        assert_eq!(self.redis(&["GET", "snap:k"]), "original");
        assert_eq!(self.redis(&["LRANGE", "snap:list", "0", "-1"]), "a\nb\nc");
        assert_eq!(self.redis(&["EXISTS", "snap:junk"]), "0");
        assert_eq!(self.point_ids(), [1, 2, 3]);
        assert!(!self.collection_exists("junk"));
        assert!(self.collection_exists("snapcheck"), "the control");
        assert_eq!(
            self.note(note),
            (200, Value::from("saved with the stack")),
            "the app reads the restored database"
        );
        assert_eq!(self.note(later).0, 404, "the later note is gone");
    }
}

/// What identifies a service's current instance: restarted, it changes.
fn instance(row: &Value) -> Value {
    serde_json::json!([
        row["pid"],
        row["container"],
        row["started_at_ms"],
        row["epoch"]
    ])
}

/// Every service ready, the preparation tasks completed.
fn assert_all_ready(ps: &BTreeMap<String, Value>) {
    assert_eq!(ps.len(), 12, "{ps:?}");
    for (service, row) in ps {
        let want = if TASKS.contains(&service.as_str()) {
            "completed"
        } else {
            "ready"
        };
        assert_eq!(row["state"], want, "{service}: {row}");
    }
}

/// Issue 22: the whole reference stack saved and restored in one command each, through the
/// running devstack, while Kafka and ZooKeeper run on.
#[test]
fn the_example_stack_saves_and_restores_its_data_in_one_command() {
    if !docker_or_skip(INFRA) {
        return;
    }
    let started = Instant::now();
    let ex = Example::new("example-snap");
    let (mut child, rx, seen) = ex.up();
    let db = Stores::of(&ex.ports());
    let note = db.write_originals();
    let before = ex.ps();
    assert_all_ready(&before);
    let up_at = started.elapsed();

    let m = ex.json(&["snapshot", "save", "s1", "--json"]);
    let saved: Vec<(&str, Option<&str>, &str)> = m["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap(),
                s["volumes"][0]["volume"].as_str(),
                s["consistency"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        saved,
        [
            ("postgres", Some("postgres_data"), "checkpoint+stop"),
            ("qdrant", None, "snapshot-api"),
            ("redis", Some("redis_data"), "save"),
        ],
        "{m}"
    );
    let collections: Vec<&str> = m["services"][1]["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["collection"].as_str().unwrap())
        .collect();
    assert!(collections.contains(&"snapcheck"), "{m}");
    // The save answers once what it stopped is ready again.
    let after_save = ex.ps();
    assert_all_ready(&after_save);
    // Kafka and ZooKeeper are not in it; Qdrant is saved through its API, so it and the
    // ai-service (which needs only Qdrant and Redis) run on.
    for s in ["zookeeper", "kafka", "qdrant", "ai-service"] {
        assert_eq!(
            instance(&after_save[s]),
            instance(&before[s]),
            "`{s}` ran on through the save"
        );
    }
    // The controls: postgres and its dependents were stopped and started again.
    for s in ["core-service", "celery-worker", "frontend", "postgres"] {
        assert_ne!(
            instance(&after_save[s]),
            instance(&before[s]),
            "`{s}` was stopped for the save and started again"
        );
    }
    let saved_at = started.elapsed();

    let later = db.change_everything();
    db.assert_changed(later);
    let r = ex.json(&["snapshot", "restore", "s1", "--json"]);
    let mut restored: Vec<&str> = r["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["service"].as_str().unwrap())
        .collect();
    restored.sort_unstable();
    assert_eq!(restored, ["postgres", "qdrant", "redis"], "{r}");
    // `restore` answers once the services are ready again: no wait needed here.
    let after = ex.ps();
    assert_all_ready(&after);
    db.assert_originals(note, later);
    // Qdrant's collections went back through its API: it ran on too.
    for s in ["zookeeper", "kafka", "qdrant"] {
        assert_eq!(
            instance(&after[s]),
            instance(&before[s]),
            "`{s}` ran on through the restore"
        );
    }
    for s in ["redis", "core-service", "celery-worker", "ai-service"] {
        assert_ne!(
            instance(&after[s]),
            instance(&after_save[s]),
            "`{s}` was stopped for the restore and started again"
        );
    }
    assert!(
        curl_ok(&format!("http://127.0.0.1:{}/ready", db.core)),
        "core-service /ready"
    );
    let restored_at = started.elapsed();

    let ai = ex.ports()[&("ai-service".to_string(), 8000)];
    ex.interrupt_and_check(&mut child, &rx, seen, &[db.core, ai]);
    eprintln!(
        "up {up_at:?}, saved at {saved_at:?}, restored at {restored_at:?}, stopped at {:?}",
        started.elapsed()
    );
}

fn git_in(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

/// A second checkout of the reference stack (`git worktree add`) is a thin instance, as its
/// `instances:` says: its four apps run on their own ports against the main instance's
/// PostgreSQL, Redis, Qdrant and Kafka, with a database of its own, and it starts no container
/// (no ZooKeeper either, which only the shared Kafka needs). `down -v` drops its database and
/// leaves the main instance ready.
#[test]
fn a_second_checkout_of_the_example_stack_is_thin() {
    if !docker_or_skip(INFRA) {
        return;
    }
    let ex = Example::new("example-thin");
    // The copy as a repository, its generated and local files ignored, and a linked worktree.
    fs::write(
        ex.dir.path().join(".gitignore"),
        "examples/ensurestudy/.venv\nimages/kafka/bin/\n",
    )
    .unwrap();
    git_in(ex.dir.path(), &["init", "-q", "-b", "main"]);
    git_in(ex.dir.path(), &["add", "-A"]);
    git_in(ex.dir.path(), &["commit", "-q", "-m", "example"]);
    let wt_parent = tempfile::tempdir().unwrap();
    let wt = wt_parent.path().join("feat");
    git_in(
        ex.dir.path(),
        &["worktree", "add", "-q", &wt.display().to_string()],
    );
    std::os::unix::fs::symlink(
        root().join("examples/ensurestudy/.venv"),
        wt.join("examples/ensurestudy/.venv"),
    )
    .unwrap();
    let thin_project = format!("{}-feat", ex.project);
    let state = ex.state_env();
    // As a person runs it in the worktree: no DEVSTACK_INSTANCE, the worktree names the instance.
    let in_wt = |args: &[&str]| -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_devstack"));
        cmd.args(["-p", ex.project.as_str()])
            .args(args)
            .current_dir(&wt)
            .env_clear()
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", &state);
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.output().expect("the devstack binary runs")
    };
    // Dropped before the main instance's teardown: the thin one goes first.
    let _thin_down = ThinDown(&in_wt);

    let (mut child, rx, seen) = ex.up();
    let before = ex.ps();
    assert_all_ready(&before);
    let main_containers = leftovers(&ex.project).0.len();

    let started = Instant::now();
    let up = in_wt(&["up", "--wait", "--no-dashboard"]);
    let took = started.elapsed();
    assert_eq!(up.status.code(), Some(0), "thin up: {}", stderr(&up));
    let ps: Value = serde_json::from_slice(&in_wt(&["ps", "--json"]).stdout).unwrap();
    let rows: BTreeMap<&str, &Value> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["service"].as_str().unwrap(), r))
        .collect();
    let states: BTreeMap<&str, &str> = rows
        .iter()
        .map(|(s, r)| (*s, r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("ai-service", "ready"),
            ("celery-worker", "ready"),
            ("core-service", "ready"),
            ("frontend", "ready"),
            ("kafka", "shared"),
            ("postgres", "shared"),
            ("qdrant", "shared"),
            ("redis", "shared"),
            ("venv", "completed"),
        ]),
        "{ps}"
    );
    assert_eq!(
        leftovers(&thin_project),
        (vec![], vec![]),
        "the thin instance has no container or volume of its own"
    );
    assert_eq!(leftovers(&ex.project).0.len(), main_containers);
    let db = rows["postgres"]["db"].as_str().unwrap().to_string();
    assert_ne!(db, "ensurestudy", "{ps}");
    let stores = Stores::of(&ex.ports());
    let databases = || stores.sql("SELECT datname FROM pg_database ORDER BY 1");
    assert!(databases().lines().any(|d| d == db), "{}", databases());
    // Its core-service answers on a port of its own, from its own database.
    let thin_core = in_wt(&["ports", "--json"]);
    let thin_core: Value = serde_json::from_slice(&thin_core.stdout).unwrap();
    let thin_core = thin_core
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "core-service")
        .and_then(|r| r["host_port"].as_u64())
        .unwrap();
    assert_ne!(thin_core, u64::from(stores.core));
    assert!(curl_ok(&format!("http://127.0.0.1:{thin_core}/ready")));

    let down = in_wt(&["down", "-v"]);
    assert_eq!(
        down.status.code(),
        Some(0),
        "thin down -v: {}",
        stderr(&down)
    );
    assert!(!databases().lines().any(|d| d == db), "{}", databases());
    // The control: the main instance ran on, untouched.
    let after = ex.ps();
    assert_all_ready(&after);
    for (s, row) in &before {
        assert_eq!(instance(&after[s]), instance(row), "`{s}` ran on");
    }
    let ai = ex.ports()[&("ai-service".to_string(), 8000)];
    ex.interrupt_and_check(&mut child, &rx, seen, &[stores.core, ai]);
    eprintln!("the thin instance was ready in {took:?}");
}

/// `down -v` of the thin instance, whatever happened.
struct ThinDown<'a>(&'a dyn Fn(&[&str]) -> Output);

impl Drop for ThinDown<'_> {
    fn drop(&mut self) {
        let _ = (self.0)(&["down", "-v"]);
    }
}
