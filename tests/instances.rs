//! Instances side by side: two real git worktrees of one stack, each its own instance (own
//! project name, state folder, recorded host ports, containers and volumes), up at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{docker_or_skip, http, leftovers, mcp_python, project, root, stderr, stdout};
use serde_json::Value;

const WEB: &str = "services:\n  web:\n    command: python3 -m http.server ${port:web:8000} --bind 127.0.0.1\n    ports: [\"8000\"]\n    ready: { http: \"http://127.0.0.1:${port:web:8000}/\" }\n";

/// A repository with `stack.yaml` committed in its main checkout `main/`, under a temporary
/// folder that also holds the state folders (`XDG_STATE_HOME`).
struct Repo {
    tmp: tempfile::TempDir,
    base: String,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

impl Repo {
    fn new(tag: &str, stack: &str) -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("main");
        std::fs::create_dir_all(&main).unwrap();
        std::fs::write(main.join("stack.yaml"), stack).unwrap();
        git(&main, &["init", "-q"]);
        git(&main, &["add", "stack.yaml"]);
        git(&main, &["commit", "-q", "-m", "stack"]);
        Repo {
            tmp,
            base: project(tag),
        }
    }

    fn main(&self) -> PathBuf {
        self.tmp.path().join("main")
    }

    /// `git worktree add <tmp>/<path>`: a linked worktree named after the path's last part.
    fn worktree(&self, path: &str) -> PathBuf {
        let dir = self.tmp.path().join(path);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        let branch = path.replace('/', "-");
        git(
            &self.main(),
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &branch,
                dir.to_str().unwrap(),
            ],
        );
        dir
    }

    fn state(&self) -> String {
        self.tmp.path().join("state").display().to_string()
    }

    /// `devstack -p BASE ARGS` in `dir`.
    fn dev(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all = vec!["-p", self.base.as_str()];
        all.extend_from_slice(args);
        self.bare(dir, &all)
    }

    /// `devstack ARGS` in `dir`, no `-p`; unlike the other tests' helpers, the instance is the
    /// worktree's (no `DEVSTACK_INSTANCE`).
    fn bare(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_devstack"), dir);
        cmd.args(args).output().expect("the devstack binary runs")
    }

    /// `program` in `dir` with only `PATH`, `HOME`, `NO_COLOR` and this repository's state
    /// folder in its environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(dir)
            .env_clear()
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", self.state());
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd
    }

    /// Tools of `devstack -p BASE mcp` in `dir` called in order through the MCP SDK client:
    /// each call's `tool`, `error` and `text`.
    fn mcp(&self, dir: &Path, calls: &[(&str, &str)]) -> Vec<Value> {
        let out = self
            .command(mcp_python(), dir)
            .arg(root().join("tests/mcp/call.py"))
            .args([env!("CARGO_BIN_EXE_devstack"), self.base.as_str()])
            .args(calls.iter().flat_map(|(t, a)| [*t, *a]))
            .output()
            .expect("the MCP client runs");
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// A thin `up --wait` in the worktree `wt` that finds `foreign` (a name of the main
    /// instance's with the instance's prefix) there already: it says so, and adds no container.
    fn thin_up_beside(&self, wt: &Path, foreign: &str) {
        let up = self.dev(wt, &["up", "--wait"]);
        let err = stderr(&up);
        assert_eq!(up.status.code(), Some(0), "{err}");
        let said = format!("`{foreign}` already there with that prefix, not its own");
        assert!(err.contains(&said), "{err}");
        let name = wt.file_name().unwrap().to_string_lossy();
        assert_eq!(
            leftovers(&format!("{}-{name}", self.base)),
            (vec![], vec![])
        );
    }

    fn ports(&self, dir: &Path) -> Vec<Value> {
        let out = self.dev(dir, &["ports", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn host_port(&self, dir: &Path, service: &str) -> u16 {
        let ports = self.ports(dir);
        let row = ports
            .iter()
            .find(|p| p["service"] == service)
            .unwrap_or_else(|| panic!("no port of `{service}`: {ports:?}"));
        row["host_port"].as_u64().unwrap() as u16
    }

    fn ls(&self) -> Vec<Value> {
        let out = self.bare(self.tmp.path(), &["ls", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Stops every instance of the repository's worktrees whatever the test did (each with its
/// `--instance`, if it has one).
struct Down<'a> {
    repo: &'a Repo,
    dirs: Vec<(PathBuf, Option<&'static str>)>,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        for (d, instance) in &self.dirs {
            let mut args = vec!["down", "-v", "--remove-orphans", "--force"];
            if let Some(i) = instance {
                args.extend(["--instance", i]);
            }
            let _ = self.repo.dev(d, &args);
        }
    }
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn up_ok(repo: &Repo, dir: &Path) {
    let out = repo.dev(dir, &["up", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "up in {}: {}",
        dir.display(),
        stderr(&out)
    );
}

#[test]
fn two_worktrees_run_side_by_side_on_ports_that_stay() {
    let repo = Repo::new("inst", WEB);
    let a = repo.worktree("wt-a");
    let b = repo.worktree("wt-b");
    let _down = Down {
        repo: &repo,
        dirs: vec![(a.clone(), None), (b.clone(), None)],
    };
    let (pa, pb) = (format!("{}-wt-a", repo.base), format!("{}-wt-b", repo.base));

    // Each worktree is its own instance, named after it.
    let cfg = repo.dev(&a, &["validate"]);
    assert!(
        stdout(&cfg).contains(&format!("project `{pa}`")),
        "{}",
        stdout(&cfg)
    );
    let cfg = repo.dev(&repo.main(), &["validate"]);
    assert!(
        stdout(&cfg).contains(&format!("project `{}`", repo.base)),
        "the main checkout keeps the plain name"
    );

    up_ok(&repo, &a);
    up_ok(&repo, &b);
    let (port_a, port_b) = (repo.host_port(&a, "web"), repo.host_port(&b, "web"));
    assert_ne!(port_a, port_b);
    assert_ne!(port_a, 8000);
    assert!(answers(port_a) && answers(port_b));

    // The files as they are change nothing: the run's ports are the instance's, not new ones
    // (this is each instance's first run, when nothing was recorded before it).
    for dir in [&a, &b] {
        let out = repo.dev(dir, &["apply", "--dry-run", "--json"]);
        let plan: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
        assert_eq!(plan["changes"][0]["action"], "unchanged", "{plan}");
    }

    // `ls` from anywhere lists both, running, with where they run from.
    let ls = repo.ls();
    for (project, dir, port) in [(&pa, &a, port_a), (&pb, &b, port_b)] {
        let row = ls
            .iter()
            .find(|r| r["project"] == project.as_str())
            .unwrap_or_else(|| panic!("`{project}` in {ls:?}"));
        assert_eq!(row["running"], true, "{row}");
        assert_eq!(row["ready"], 1, "{row}");
        assert_eq!(row["total"], 1, "{row}");
        assert_eq!(
            Path::new(row["path"].as_str().unwrap())
                .canonicalize()
                .unwrap(),
            dir.canonicalize().unwrap()
        );
        assert_eq!(row["ports"][0]["host_port"], port, "{row}");
    }

    // Down and up again: the same host port.
    let down = repo.dev(&a, &["down", "-v"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert!(answers(port_b), "the other instance keeps running");
    let ps: Value = serde_json::from_slice(&repo.dev(&b, &["ps", "--json"]).stdout).unwrap();
    assert_eq!(ps[0]["state"], "ready", "{ps}");
    assert_eq!(
        repo.host_port(&a, "web"),
        port_a,
        "as recorded while stopped"
    );
    up_ok(&repo, &a);
    assert_eq!(repo.host_port(&a, "web"), port_a, "the recorded port again");
    assert!(answers(port_a));

    // A recorded port something else holds now: chosen again, said, and kept.
    let down = repo.dev(&a, &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port_a)).unwrap();
    let out = repo.dev(&a, &["up", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let moved = repo.host_port(&a, "web");
    assert_ne!(moved, port_a);
    drop(squatter);
    let log = std::fs::read_to_string(
        Path::new(&repo.state())
            .join("devstack")
            .join(&pa)
            .join("logs/devstack.log"),
    )
    .unwrap_or_default();
    assert!(
        log.contains(&format!("host port {port_a}")) && log.contains(&format!("moves to {moved}")),
        "the move is in the log: {log}"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: port 8000 of `web` was recorded on host port {port_a}"
        )) && err.contains(&format!("moved to {moved}")),
        "and `up --wait` says it: {err}"
    );

    // From a folder without a stack file, `--instance` names an instance as `ls` shows it.
    let ps = repo.bare(repo.tmp.path(), &["ps", "--json", "--instance", "wt-b"]);
    let ps: Value =
        serde_json::from_slice(&ps.stdout).unwrap_or_else(|_| panic!("{}", stderr(&ps)));
    assert_eq!(ps[0]["service"], "web", "{ps}");
    assert_eq!(ps[0]["state"], "ready", "{ps}");
    let logs = repo.bare(
        repo.tmp.path(),
        &["logs", "--instance", &pb, "web", "-n", "5"],
    );
    assert_eq!(logs.status.code(), Some(0), "{}", stderr(&logs));
    assert!(stdout(&logs).contains("GET / HTTP"), "{}", stdout(&logs));
    let down = repo.bare(repo.tmp.path(), &["down", "--instance", &pb]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert!(
        stderr(&down).contains("stopped the running devstack"),
        "{}",
        stderr(&down)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers(port_b) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(!answers(port_b));
    assert!(answers(moved), "only that instance stopped");
}

#[test]
fn a_second_checkout_with_the_same_instance_name_is_refused() {
    let repo = Repo::new("instdup", WEB);
    let first = repo.worktree("x/feat");
    let second = repo.worktree("y/Feat");
    let _down = Down {
        repo: &repo,
        dirs: vec![(first.clone(), None), (second.clone(), Some("feat2"))],
    };
    up_ok(&repo, &first);
    let out = repo.dev(&second, &["up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&first.display().to_string()) && err.contains(&second.display().to_string()),
        "both checkouts are named: {err}"
    );
    let ps = repo.dev(&second, &["ps"]);
    assert_eq!(ps.status.code(), Some(2), "every verb: {}", stderr(&ps));
    // Named on purpose, it is an instance of its own.
    let out = repo.dev(&second, &["--instance", "feat2", "up", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let down = repo.dev(&second, &["--instance", "feat2", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
}

#[test]
fn postgres_per_worktree_keeps_its_own_data() {
    if !docker_or_skip(&["postgres:15"]) {
        return;
    }
    let stack = "services:\n  db:\n    image: postgres:15\n    environment: { POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: d }\n    ports: [\"5432\"]\n    volumes: [\"data:/var/lib/postgresql/data\"]\n    ready: { postgres: {} }\n";
    let repo = Repo::new("instpg", stack);
    let a = repo.worktree("pg-a");
    let b = repo.worktree("pg-b");
    let _down = Down {
        repo: &repo,
        dirs: vec![(a.clone(), None), (b.clone(), None)],
    };
    let (pa, pb) = (format!("{}-pg-a", repo.base), format!("{}-pg-b", repo.base));
    up_ok(&repo, &a);
    up_ok(&repo, &b);
    assert_ne!(repo.host_port(&a, "db"), repo.host_port(&b, "db"));
    let psql = |dir: &Path, sql: &str| {
        let out = repo.dev(
            dir,
            &[
                "exec", "-T", "db", "--", "psql", "-U", "u", "-d", "d", "-tAc", sql,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{sql}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    psql(&a, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(psql(&a, "SELECT count(*) FROM t"), "1");
    assert_eq!(
        psql(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0",
        "a row written in one instance is not in the other"
    );
    let (_, volumes_b) = leftovers(&pb);
    assert_eq!(volumes_b, [format!("{pb}_data")]);
    // `ls` says what the volume holds on disk: a PostgreSQL cluster is some 40 MB after initdb.
    let listed = repo.ls();
    let row = listed.iter().find(|r| r["project"] == pb.as_str()).unwrap();
    let bytes = row["volume_bytes"].as_u64().unwrap_or(0);
    assert!((30_000_000..200_000_000).contains(&bytes), "{row}");

    let down = repo.dev(&a, &["down", "-v"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(leftovers(&pa), (vec![], vec![]), "all of `{pa}` is gone");
    assert_eq!(
        leftovers(&pb).1,
        [format!("{pb}_data")],
        "the other's volume stays"
    );
    assert_eq!(
        psql(&b, "SELECT 1"),
        "1",
        "the other instance still answers"
    );
    let down = repo.dev(&b, &["down", "-v"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(leftovers(&pb), (vec![], vec![]));
}

/// `${COMPOSE_PROJECT_NAME}` is the project name the instance's containers carry: the
/// worktree's instance (`<project>-<worktree>`), the main checkout's plain name, and the name
/// given with `--instance`.
#[test]
fn compose_project_name_is_the_instances_project_name() {
    let stack = "services:\n  web:\n    command: [sleep, \"1\"]\n    environment: { P: \"${COMPOSE_PROJECT_NAME}\" }\n";
    let repo = Repo::new("instvar", stack);
    let wt = repo.worktree("feat-x");
    let p_of = |dir: &Path, extra: &[&str]| -> String {
        let mut args = extra.to_vec();
        args.extend(["config", "--json"]);
        let out = repo.dev(dir, &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["services"]["web"]["environment"]["P"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string()
    };
    assert_eq!(p_of(&repo.main(), &[]), repo.base);
    assert_eq!(p_of(&wt, &[]), format!("{}-feat-x", repo.base));
    assert_eq!(
        p_of(&repo.main(), &["--instance", "agent-1"]),
        format!("{}-agent-1", repo.base)
    );
}

/// A port that a live edit of the stack file adds while the instance runs is recorded at once:
/// after `down`, `ports` (read from the record) gives the port the running instance used.
#[test]
fn a_port_added_by_a_live_edit_is_recorded_at_once() {
    let repo = Repo::new("instlive", WEB);
    let wt = repo.worktree("feat");
    let _down = Down {
        repo: &repo,
        dirs: vec![(wt.clone(), None)],
    };
    up_ok(&repo, &wt);
    let api = "  api:\n    command: python3 -m http.server ${port:api:8001} --bind 127.0.0.1\n    ports: [\"8001\"]\n    ready: { http: \"http://127.0.0.1:${port:api:8001}/\" }\n";
    std::fs::write(wt.join("stack.yaml"), format!("{WEB}{api}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = loop {
        if let Some(row) = repo.ports(&wt).into_iter().find(|p| p["service"] == "api") {
            break row["host_port"].as_u64().unwrap() as u16;
        }
        assert!(Instant::now() < deadline, "the edit was not applied");
        std::thread::sleep(Duration::from_millis(100));
    };
    let wait = repo.dev(&wt, &["wait", "api", "--timeout", "60s"]);
    assert_eq!(wait.status.code(), Some(0), "{}", stderr(&wait));
    assert!(answers(live), "api answers on {live}");
    let down = repo.dev(&wt, &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(repo.host_port(&wt, "api"), live, "recorded as it ran");
}

/// A stack with PostgreSQL, Redis and a process that writes what it was given to
/// `seen-<its database>.txt` (not watched: a write into its own folder would restart it, and
/// the restart empties the file for a moment);
/// an instance beside the main one shares the main instance's `db` and `cache`.
const THIN: &str = "instances: { share: [db, cache] }\nservices:\n  db:\n    image: postgres:15\n    environment: { POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: app }\n    ports: [\"5432\"]\n    volumes: [\"data:/var/lib/postgresql/data\"]\n    ready: { postgres: {} }\n  cache:\n    image: redis:7-alpine\n    ports: [\"6379\"]\n    ready: { redis: {} }\n  app:\n    command: sh -c 'echo \"$$DB $$REDIS_DB $$PGPORT $$DEVSTACK_DB_DB\" > seen-${db:db}.txt && exec sleep 600'\n    environment: { DB: \"${db:db}\", REDIS_DB: \"${db:cache}\", PGPORT: \"${port:db:5432}\" }\n    depends_on: [db, cache]\n    ready: { exec: \"test -s seen-${db:db}.txt\" }\n    watch: false\n";

/// `docker exec` in the main instance's container of `service`; its trimmed output.
fn in_main(repo: &Repo, service: &str, argv: &[&str]) -> String {
    let label = |k: &str, v: &str| format!("label=org.devstack.{k}={v}");
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(label("project", &repo.base))
        .arg("--filter")
        .arg(label("service", service))
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!id.is_empty(), "the main instance runs `{service}`");
    let out = Command::new("docker")
        .args(["exec", &id])
        .args(argv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{argv:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn psql(repo: &Repo, db: &str, sql: &str) -> String {
    in_main(repo, "db", &["psql", "-U", "u", "-d", db, "-tAc", sql])
}

fn redis(repo: &Repo, index: &str, args: &[&str]) -> String {
    let mut argv = vec!["redis-cli", "-n", index];
    argv.extend_from_slice(args);
    in_main(repo, "cache", &argv)
}

/// What the thin instance's process was given: its database, Redis index, PostgreSQL port and
/// `DEVSTACK_DB_DB`.
fn seen(dir: &Path, db: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("seen-{db}.txt")))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_thin_instance_shares_the_main_instances_postgres_and_redis() {
    if !docker_or_skip(&["postgres:15", "redis:7-alpine"]) {
        return;
    }
    let repo = Repo::new("thin", THIN);
    let wt = repo.worktree("thin-b");
    let _down = Down {
        repo: &repo,
        dirs: vec![
            (wt.clone(), None),
            (wt.clone(), Some("c")),
            (wt.clone(), Some("e")),
            (repo.main(), None),
        ],
    };
    let thin = format!("{}-thin-b", repo.base);

    // Only an instance beside the main one is thin, and only known kinds are shared.
    let out = repo.dev(&repo.main(), &["up", "--wait", "--share", "db"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("this is the main instance"),
        "{}",
        stderr(&out)
    );
    let out = repo.dev(&wt, &["up", "--wait", "--share", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot share `app`"),
        "{}",
        stderr(&out)
    );

    // The main instance is not running: refused, and nothing of the thin one starts.
    let out = repo.dev(&wt, &["up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(
        err.contains("devstack --instance \"\" up --wait db cache"),
        "says what to run: {err}"
    );
    assert_eq!(leftovers(&thin), (vec![], vec![]));
    assert!(
        seen(&wt, "app_thin_b").is_empty(),
        "the process did not start"
    );

    // The main instance with a row and a key; then the thin one beside it.
    up_ok(&repo, &repo.main());
    psql(
        &repo,
        "app",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    assert_eq!(redis(&repo, "0", &["SET", "k", "main"]), "OK");
    let main_containers = leftovers(&repo.base).0.len();
    assert_eq!(main_containers, 2);
    let out = repo.dev(&wt, &["up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("TEMPLATE"),
        "says how the copy was made: {err}"
    );
    assert!(!err.contains("p@") && !err.contains("PASSWORD=p"), "{err}");
    assert_eq!(
        leftovers(&thin),
        (vec![], vec![]),
        "no container of its own"
    );
    assert_eq!(leftovers(&repo.base).0.len(), main_containers);

    // Its process got its own database, index and the main instance's port.
    let given = seen(&wt, "app_thin_b");
    let main_port = repo.host_port(&repo.main(), "db").to_string();
    assert_eq!(given, ["app_thin_b", "1", main_port.as_str(), "app_thin_b"]);
    assert_eq!(
        psql(&repo, "app_thin_b", "SELECT count(*) FROM t"),
        "1",
        "cloned"
    );
    psql(&repo, "app_thin_b", "INSERT INTO t VALUES (2)");
    assert_eq!(psql(&repo, "app_thin_b", "SELECT count(*) FROM t"), "2");
    assert_eq!(
        psql(&repo, "app", "SELECT count(*) FROM t"),
        "1",
        "not in main"
    );
    assert_eq!(redis(&repo, "1", &["SET", "k", "thin"]), "OK");
    assert_eq!(redis(&repo, "0", &["GET", "k"]), "main");

    // `ps` and `ls` show the shares.
    let ps: Value = serde_json::from_slice(&repo.dev(&wt, &["ps", "--json"]).stdout).unwrap();
    let db = ps.as_array().unwrap().iter().find(|r| r["service"] == "db");
    let db = db.unwrap_or_else(|| panic!("{ps}"));
    assert_eq!(db["state"], "shared", "{ps}");
    assert_eq!(db["shared_from"], repo.base.as_str(), "{ps}");
    assert_eq!(db["db"], "app_thin_b", "{ps}");
    let ls = repo.ls();
    let row = ls.iter().find(|r| r["project"] == thin.as_str()).unwrap();
    assert_eq!(row["shared_from"], repo.base.as_str(), "{row}");
    assert_eq!(row["shares"][1]["value"], "1", "{row}");

    // The main instance is not stopped under it.
    let out = repo.dev(&repo.main(), &["down"]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(stderr(&out).contains(&thin), "{}", stderr(&out));
    assert_eq!(psql(&repo, "app", "SELECT 1"), "1", "still running");
    // Nor a service it shares; a service it does not share stops as always.
    let out = repo.dev(&repo.main(), &["stop", "db"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(err.contains(&format!("`db` (by {thin})")), "{err}");
    assert!(err.contains("stop --force"), "says what to do: {err}");
    assert_eq!(psql(&repo, "app", "SELECT 1"), "1", "still running");
    let out = repo.dev(&repo.main(), &["stop", "app", "--json"]);
    assert_eq!(out.status.code(), Some(0), "stop app: {}", stderr(&out));
    // The MCP tool alike.
    let calls = repo.mcp(
        &repo.main(),
        &[
            ("stop", r#"{"service": "db"}"#),
            ("start", r#"{"service": "app"}"#),
        ],
    );
    assert_eq!(calls[0]["error"], true, "{calls:?}");
    let text = calls[0]["text"].as_str().unwrap();
    assert!(text.contains(&thin) && text.contains("force"), "{text}");
    assert_eq!(calls[1]["error"], false, "{calls:?}");
    assert_eq!(psql(&repo, "app", "SELECT 1"), "1", "still running");

    // `down` keeps its database, a later `up` reuses it; `down -v` drops its own only.
    let down = repo.dev(&wt, &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    up_ok(&repo, &wt);
    assert_eq!(
        psql(&repo, "app_thin_b", "SELECT count(*) FROM t"),
        "2",
        "kept"
    );
    let down = repo.dev(&wt, &["down", "-v"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    let has_db = "SELECT count(*) FROM pg_database WHERE datname = 'app_thin_b'";
    assert_eq!(psql(&repo, "app", has_db), "0", "dropped");
    assert_eq!(
        psql(&repo, "app", "SELECT count(*) FROM t"),
        "1",
        "main's stays"
    );
    assert_eq!(redis(&repo, "1", &["DBSIZE"]), "0", "its index flushed");
    assert_eq!(redis(&repo, "0", &["GET", "k"]), "main", "main's key stays");

    // With the main database in use, the copy is made with pg_dump; a second thin instance
    // gets an index of its own.
    in_main(
        &repo,
        "db",
        &[
            "sh",
            "-c",
            "psql -U u -d app -c 'SELECT pg_sleep(120)' >/dev/null 2>&1 &",
        ],
    );
    let busy = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(20);
    while psql(&repo, "app", busy) == "0" {
        assert!(Instant::now() < deadline, "the session did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    up_ok(&repo, &wt);
    let out = repo.dev(&wt, &["--instance", "c", "up", "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("pg_dump"), "{err}");
    assert_eq!(
        psql(&repo, "app_c", "SELECT count(*) FROM t"),
        "1",
        "copied"
    );
    assert_eq!(seen(&wt, "app_c")[1], "2", "its own Redis index");

    // `fresh`: an empty database instead of a copy.
    let fresh = THIN.replace("share: [db, cache] }", "share: [db, cache], fresh: [db] }");
    std::fs::write(wt.join("fresh.yaml"), fresh).unwrap();
    let out = repo.dev(
        &wt,
        &["-f", "fresh.yaml", "--instance", "e", "up", "--wait"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("database `app_e` (empty (fresh))"), "{err}");
    let has_t = "SELECT count(*) FROM pg_tables WHERE tablename = 't'";
    assert_eq!(psql(&repo, "app_e", has_t), "0", "empty");

    // `stop --force` stops a shared service under them, naming them.
    let out = repo.dev(&repo.main(), &["stop", "--force", "cache", "--json"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("`cache` (by ") && err.contains(&thin), "{err}");
    let states: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(states[0]["state"], "stopped", "{states}");
    // And the MCP tool with `force: true`.
    let calls = repo.mcp(
        &repo.main(),
        &[("stop", r#"{"service": "db", "force": true}"#)],
    );
    assert_eq!(calls[0]["error"], false, "{calls:?}");
    let stopped: Value = serde_json::from_str(calls[0]["text"].as_str().unwrap()).unwrap();
    let db = stopped
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "db");
    assert_eq!(
        db.unwrap_or_else(|| panic!("{stopped}"))["state"],
        "stopped"
    );

    // `--force` stops the main instance under them, naming them.
    let out = repo.dev(&repo.main(), &["down", "--force"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&thin) && err.contains(&format!("{}-c", repo.base)),
        "{err}"
    );
    for args in [
        &["down"][..],
        &["--instance", "c", "down"][..],
        &["--instance", "e", "down"][..],
    ] {
        let out = repo.dev(&wt, args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

/// A thin instance's Qdrant share is a collection prefix: `down -v` deletes its own collections
/// in the main instance's Qdrant and leaves the main instance's.
#[test]
fn a_thin_instance_drops_only_its_own_qdrant_collections() {
    if !docker_or_skip(&["qdrant/qdrant:latest"]) {
        return;
    }
    let stack = "instances: { share: [vec] }\nservices:\n  vec:\n    image: qdrant/qdrant:latest\n    ports: [\"6333\"]\n    ready: { qdrant: {} }\n  ai:\n    command: sh -c 'echo \"$$P $$DEVSTACK_VEC_PREFIX\" > prefix.txt && exec sleep 600'\n    environment: { P: \"${prefix:vec}\" }\n    depends_on: [vec]\n    ready: { exec: \"test -s prefix.txt\" }\n    watch: false\n";
    let repo = Repo::new("thinq", stack);
    let wt = repo.worktree("q-b");
    let _down = Down {
        repo: &repo,
        dirs: vec![(wt.clone(), None), (repo.main(), None)],
    };
    up_ok(&repo, &repo.main());
    let main_prefix = std::fs::read_to_string(repo.main().join("prefix.txt")).unwrap();
    assert_eq!(main_prefix.trim(), "", "no prefix on the main instance");
    // A collection of the main instance's whose name happens to start with the prefix.
    let port = repo.host_port(&repo.main(), "vec");
    let create = r#"{"vectors": {"size": 2, "distance": "Dot"}}"#;
    let (status, body) = http(port, "PUT", "/collections/q-b_main", create);
    assert!(status.contains(" 200"), "{status} {body}");
    repo.thin_up_beside(&wt, "q-b_main");
    let given = std::fs::read_to_string(wt.join("prefix.txt")).unwrap();
    assert_eq!(
        given.split_whitespace().collect::<Vec<_>>(),
        ["q-b_", "q-b_"]
    );

    for name in ["docs", "q-b_docs", "q-b_chunks"] {
        let (status, body) = http(port, "PUT", &format!("/collections/{name}"), create);
        assert!(status.contains(" 200"), "{name}: {status} {body}");
    }
    let down = repo.dev(&wt, &["down", "-v"]);
    let err = stderr(&down);
    assert_eq!(down.status.code(), Some(0), "{err}");
    assert!(
        err.contains("`q-b_chunks`, `q-b_docs`") || err.contains("`q-b_docs`, `q-b_chunks`"),
        "{err}"
    );
    assert!(err.contains("left `q-b_main` (there before it)"), "{err}");
    let (_, listed) = http(port, "GET", "/collections", "");
    let names: Value = serde_json::from_str(&listed).unwrap();
    let mut names: Vec<&str> = names["result"]["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["docs", "q-b_main"],
        "only the main instance's collections stay"
    );
}

/// A thin instance's Kafka share is a topic prefix: `down -v` deletes its own topics in the main
/// instance's broker and leaves the main instance's (checked with kafka-python's admin client,
/// not with devstack). On the local stand-in (tansu 0.6), whose DeleteTopics deletes every topic
/// of its cluster, devstack sends none and says why: every topic stays.
#[test]
fn a_thin_instance_drops_only_its_own_kafka_topics() {
    if !docker_or_skip(&["confluentinc/cp-kafka:latest"]) {
        return;
    }
    let python = common::root().join("examples/ensurestudy/.venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup-example.sh first (it installs kafka-python)"
    );
    let stack = "instances: { share: [broker] }\nservices:\n  broker:\n    image: confluentinc/cp-kafka:latest\n    environment: { KAFKA_ADVERTISED_LISTENERS: \"PLAINTEXT_HOST://127.0.0.1:${port:broker:9092}\" }\n    ports: [\"9092\"]\n    ready: { kafka: {} }\n  app:\n    command: sh -c 'echo \"[$$P]\" > prefix.txt && exec sleep 600'\n    environment: { P: \"${prefix:broker}\" }\n    depends_on: [broker]\n    ready: { exec: \"test -s prefix.txt\" }\n    watch: false\n";
    let repo = Repo::new("think", stack);
    let wt = repo.worktree("k-b");
    let _down = Down {
        repo: &repo,
        dirs: vec![(wt.clone(), None), (repo.main(), None)],
    };
    up_ok(&repo, &repo.main());
    let bootstrap = format!("127.0.0.1:{}", repo.host_port(&repo.main(), "broker"));
    let admin = |script: &str| -> String {
        let out = Command::new(&python)
            .args(["-c", script, &bootstrap])
            .output()
            .expect("python runs");
        assert!(out.status.success(), "kafka-python: {}", stderr(&out));
        stdout(&out)
    };
    const CONNECT: &str = "import sys\nfrom kafka.admin import KafkaAdminClient, NewTopic\na = KafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=20000)\n";
    // A topic of the main instance's whose name happens to start with the prefix.
    admin(&format!(
        "{CONNECT}a.create_topics([NewTopic('k-b.main', 1, 1)])"
    ));
    repo.thin_up_beside(&wt, "k-b.main");
    let given = std::fs::read_to_string(wt.join("prefix.txt")).unwrap();
    assert_eq!(given.trim(), "[k-b.]");
    admin(&format!("{CONNECT}a.create_topics([NewTopic(n, 1, 1) for n in ('orders', 'k-b.orders', 'k-b.events')])"));
    let listed = |out: String| -> Vec<String> {
        let mut names: Vec<String> = out
            .lines()
            .map(str::to_string)
            .filter(|n| !n.starts_with("__"))
            .collect();
        names.sort();
        names
    };
    let topics = format!("{CONNECT}print('\\n'.join(a.list_topics()))");
    assert_eq!(
        listed(admin(&topics)),
        ["k-b.events", "k-b.main", "k-b.orders", "orders"],
        "all four made"
    );
    let down = repo.dev(&wt, &["down", "-v"]);
    let err = stderr(&down);
    assert_eq!(down.status.code(), Some(0), "{err}");
    if stand_in("confluentinc/cp-kafka:latest") {
        assert!(
            err.contains("topics prefixed `k-b.` are left: the local Kafka stand-in"),
            "{err}"
        );
        assert_eq!(
            listed(admin(&topics)),
            ["k-b.events", "k-b.main", "k-b.orders", "orders"],
            "no topic deleted on the stand-in"
        );
        return;
    }
    assert!(
        err.contains("topics `k-b.events`, `k-b.orders`")
            || err.contains("topics `k-b.orders`, `k-b.events`"),
        "{err}"
    );
    assert!(err.contains("left `k-b.main` (there before it)"), "{err}");
    assert_eq!(
        listed(admin(&topics)),
        ["k-b.main", "orders"],
        "only the main instance's topics stay"
    );
}

/// The image is devstack's local stand-in (`scripts/offline-images.sh`), not the real one.
fn stand_in(image: &str) -> bool {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format"])
        .arg("{{index .Config.Labels \"org.devstack.stand-in\"}}")
        .arg(image)
        .output()
        .expect("docker runs");
    stdout(&out).trim() == "true"
}
