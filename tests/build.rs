//! `build:` against the real Docker engine: images built FROM the local base image, skipped when
//! their inputs are unchanged, rebuilt when a file changes, `.dockerignore` honoured, located
//! errors with exit code 8, one build for services that share it. Every test has its own
//! project and removes its containers and images.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const BASE: &str = "devstack/debian-base:bookworm";

/// A copy of the fixture context in a temporary folder, its stack file, and cleanup.
struct Case {
    dir: tempfile::TempDir,
    project: String,
}

impl Case {
    fn new(tag: &str, services: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = fixtures().join("build/app");
        let dst = dir.path().join("app");
        fs::create_dir_all(&dst).unwrap();
        for entry in fs::read_dir(&src).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
        fs::write(
            dir.path().join("compose.yaml"),
            format!("services:\n{services}"),
        )
        .unwrap();
        Case {
            dir,
            project: project(tag),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn app(&self, rel: &str) -> PathBuf {
        self.dir.path().join("app").join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec!["-p", &self.project];
        all.extend_from_slice(args);
        devstack_env(self.path(), &all, env)
    }

    fn image(&self, service: &str) -> String {
        format!("{}-{service}", self.project)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--remove-orphans"]);
        // Every image this project built (`<project>-<service>`), whatever the test did.
        let out = Command::new("docker")
            .args([
                "images",
                "--filter",
                &format!("reference={}-*", self.project),
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ])
            .output()
            .expect("docker runs");
        for image in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

const ONE: &str = "  web:\n    build: ./app\n";

/// The `built` events of a `--json` run (on stderr with `--wait` and for `build`).
fn built_events(o: &Output) -> Vec<Value> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("event").cloned())
        .filter(|e| e["type"] == "built")
        .collect()
}

fn inspect(image: &str, format: &str) -> String {
    let o = Command::new("docker")
        .args(["image", "inspect", "--format", format, image])
        .output()
        .expect("docker runs");
    assert!(o.status.success(), "image `{image}` is missing");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
}

#[test]
fn unchanged_inputs_skip_the_build_and_a_changed_file_rebuilds() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let case = Case::new("build-skip", ONE);
    let up = case.run(&["up", "--wait", "--json"]);
    ok(&up);
    let ev = built_events(&up);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["how"], "built");
    assert_eq!(ev[0]["services"], serde_json::json!(["web"]));
    let image = case.image("web");
    let id = inspect(&image, "{{.Id}}");
    let hash = inspect(
        &image,
        "{{index .Config.Labels \"org.devstack.build-hash\"}}",
    );
    assert_eq!(hash.len(), 64, "a sha256 build hash label: {hash:?}");
    // The build's output went into the merged log under the service's name.
    let err = stderr(&up);
    assert!(
        err.contains(r#""service":"web""#) && err.contains("step 4/"),
        "{err}"
    );

    // Unchanged: no build, same image, and the container is reused.
    let again = case.run(&["up", "--wait", "--json"]);
    ok(&again);
    let ev = built_events(&again);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["how"], "up_to_date");
    assert_eq!(inspect(&image, "{{.Id}}"), id);

    // A changed file under the context: rebuilt, and the container recreated on the new image.
    fs::write(case.app("hello.txt"), "changed\n").unwrap();
    let changed = case.run(&["up", "--wait", "--json"]);
    ok(&changed);
    let ev = built_events(&changed);
    assert_eq!(ev[0]["how"], "built", "{ev:?}");
    let new_id = inspect(&image, "{{.Id}}");
    assert_ne!(new_id, id);
    let container = format!("{}-web", case.project);
    let o = Command::new("docker")
        .args(["inspect", "--format", "{{.Image}}", &container])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), new_id);

    // `up --build` builds even when nothing changed.
    let forced = case.run(&["up", "--wait", "--json", "--build"]);
    ok(&forced);
    assert_eq!(built_events(&forced)[0]["how"], "built");
}

#[test]
fn dockerignore_keeps_a_big_file_out_of_the_hash_and_the_context() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let case = Case::new("build-ignore", ONE);
    let first = case.run(&["build", "--json"]);
    ok(&first);
    let small = built_events(&first)[0]["context_bytes"].as_u64().unwrap();

    // 50 MB the .dockerignore leaves out, and a log file (`**/*.log`). (A new folder would
    // count, as it does for Docker: the folder itself is sent.)
    let big = fs::File::create(case.app("big.bin")).unwrap();
    big.set_len(50 * 1024 * 1024).unwrap();
    fs::write(case.app("trace.log"), "noise\n").unwrap();

    let up = case.run(&["up", "--wait", "--json"]);
    ok(&up);
    let ev = built_events(&up);
    assert_eq!(
        ev[0]["how"], "up_to_date",
        "ignored files change nothing: {ev:?}"
    );

    // A forced build sends the same small context: the 50 MB file is not in it.
    let forced = case.run(&["build", "--json"]);
    ok(&forced);
    let sent = built_events(&forced)[0]["context_bytes"].as_u64().unwrap();
    assert!(
        sent < 64 * 1024,
        "context of {sent} bytes sent (first build: {small})"
    );
    assert_eq!(sent, small, "the same files are sent");
}

/// No container of the project runs (one that started beside the build is stopped).
fn assert_nothing_running(case: &Case) {
    let o = Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=org.devstack.project={}", case.project),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("docker runs");
    let running = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(running.is_empty(), "still running: {running}");
}

#[test]
fn a_dockerfile_syntax_error_is_located_and_exits_8() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let case = Case::new("build-syntax", ONE);
    fs::write(
        case.app("Dockerfile"),
        "FROM devstack/debian-base:bookworm\nRUN true\nRUNX nope\n",
    )
    .unwrap();
    let up = case.run(&["up", "--wait"]);
    let err = stderr(&up);
    assert_eq!(up.status.code(), Some(8), "{err}");
    assert!(err.contains("unknown instruction"), "{err}");
    assert!(err.contains("app/Dockerfile:3"), "{err}");
    assert!(err.contains("| RUNX nope"), "{err}");
    assert_nothing_running(&case);
    let (containers, _) = leftovers(&case.project);
    assert!(containers.is_empty(), "never created: {containers:?}");
}

#[test]
fn a_failing_run_is_located_with_its_output_and_exits_8() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    // A second service that needs no build starts beside the build, and is stopped when it
    // fails.
    let case = Case::new(
        "build-run",
        &format!("{ONE}  other:\n    image: {BASE}\n    command: [sleep, '300']\n"),
    );
    fs::write(
        case.app("Dockerfile"),
        "FROM devstack/debian-base:bookworm\n\
         COPY hello.txt /hello.txt\n\
         # a comment\n\
         RUN echo before-failing && \\\n    echo oops >&2 && exit 3\n\
         RUN true\n",
    )
    .unwrap();
    let up = case.run(&["up", "--wait"]);
    let err = stderr(&up);
    assert_eq!(up.status.code(), Some(8), "{err}");
    assert!(err.contains("returned a non-zero code: 3"), "{err}");
    assert!(err.contains("app/Dockerfile:4"), "{err}");
    assert!(err.contains("last ") && err.contains("| oops"), "{err}");
    assert!(!err.contains("\u{1b}["), "no colour codes: {err}");
    assert_nothing_running(&case);

    // `devstack build` fails the same way.
    let build = case.run(&["build"]);
    assert_eq!(build.status.code(), Some(8), "{}", stderr(&build));
}

#[test]
fn buildkit_is_used_when_asked_and_its_failures_are_located_too() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let case = Case::new("build-kit", ONE);
    // `RUN --mount` is BuildKit-only syntax.
    fs::write(
        case.app("Dockerfile"),
        "FROM devstack/debian-base:bookworm\n\
         COPY hello.txt /hello.txt\n\
         RUN --mount=type=tmpfs,target=/scratch echo kit > /scratch/x && cp /scratch/x /kit.txt\n",
    )
    .unwrap();
    // The classic builder (what this engine prefers: it sends no `Builder-Version: 2`) refuses
    // it, at that line.
    let classic = case.run_env(&["build"], &[("DOCKER_BUILDKIT", "0")]);
    assert_eq!(classic.status.code(), Some(8), "{}", stderr(&classic));
    assert!(
        stderr(&classic).contains("app/Dockerfile:3"),
        "{}",
        stderr(&classic)
    );
    // `DOCKER_BUILDKIT=1`, as the Docker CLI reads it: BuildKit builds it, with its steps, and
    // the image carries the build hash like any other.
    let kit = case.run_env(&["build", "--json"], &[("DOCKER_BUILDKIT", "1")]);
    assert_eq!(kit.status.code(), Some(0), "{}", stderr(&kit));
    let built = built_events(&kit);
    assert_eq!(built.len(), 1, "{}", stderr(&kit));
    assert_eq!(built[0]["how"], "built");
    let steps: Vec<Value> = stderr(&kit)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("event").cloned())
        .filter(|e| e["type"] == "build_step")
        .collect();
    assert_eq!(steps.len(), 3, "{}", stderr(&kit));
    assert_eq!(
        (steps[2]["step"].as_u64(), steps[2]["of"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(steps[2]["instruction"]
        .as_str()
        .unwrap()
        .starts_with("RUN --mount=type=tmpfs"));
    assert!(!inspect(
        &case.image("web"),
        "{{index .Config.Labels \"org.devstack.build-hash\"}}"
    )
    .is_empty());
    let run = Command::new("docker")
        .args(["run", "--rm", &case.image("web"), "cat", "/kit.txt"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "kit\n");

    // A failing RUN under BuildKit: located, with its output.
    fs::write(
        case.app("Dockerfile"),
        "FROM devstack/debian-base:bookworm\n\
         COPY hello.txt /hello.txt\n\
         RUN echo before-failing && echo oops >&2 && exit 3\n",
    )
    .unwrap();
    let failed = case.run_env(&["build"], &[("DOCKER_BUILDKIT", "1")]);
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(8), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("app/Dockerfile:3"), "{err}");
    assert!(err.contains("| oops"), "{err}");
}

#[test]
fn services_sharing_a_build_get_one_build() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let shared = "    build:\n      context: ./app\n      args: { GREETING: shared }\n";
    let case = Case::new(
        "build-shared",
        &format!(
            "  web:\n{shared}  worker:\n{shared}    command: [sh, -c, 'exec sleep 3600']\n  solo:\n    build:\n      context: ./app\n      args: {{ GREETING: other }}\n"
        ),
    );
    let up = case.run(&["up", "--wait", "--json"]);
    ok(&up);
    let ev = built_events(&up);
    assert_eq!(
        ev.len(),
        2,
        "one build for web+worker, one for solo: {ev:?}"
    );
    let pair = ev
        .iter()
        .find(|e| e["services"] == serde_json::json!(["web", "worker"]))
        .unwrap_or_else(|| panic!("{ev:?}"));
    assert_eq!(pair["how"], "built");
    let web = inspect(&case.image("web"), "{{.Id}}");
    assert_eq!(web, inspect(&case.image("worker"), "{{.Id}}"));
    assert_ne!(web, inspect(&case.image("solo"), "{{.Id}}"));
    let starts = stderr(&up)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"]["type"] == "note")
        .filter(|v| {
            v["event"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("building `"))
        })
        .count();
    assert_eq!(starts, 2, "two builds started: {}", stderr(&up));
}

#[test]
fn a_build_runs_while_services_that_do_not_need_it_start() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let case = Case::new(
        "build-overlap",
        &format!(
            "  web:\n    build:\n      context: ./app\n      args: {{ STAMP: '{}' }}\n    depends_on: [db]\n  db:\n    image: {BASE}\n    command: [sleep, '300']\n  other:\n    image: {BASE}\n    command: [sleep, '300']\n",
            std::process::id()
        ),
    );
    // A build step that takes seconds whatever the layer cache holds (STAMP is new each run).
    fs::write(
        case.app("Dockerfile"),
        "FROM devstack/debian-base:bookworm\nARG STAMP\nRUN sleep 3 && echo \"$STAMP\" > /stamp\nCMD [\"sleep\", \"300\"]\n",
    )
    .unwrap();
    let up = case.run(&["up", "--wait", "--json"]);
    ok(&up);
    let events: Vec<Value> = stderr(&up)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("event").cloned())
        .collect();
    let at = |kind: &str, service: &str| {
        events
            .iter()
            .position(|e| e["type"] == kind && e["service"] == service)
            .unwrap_or_else(|| panic!("no `{kind}` event for `{service}`: {events:?}"))
    };
    // `other` and `db` start while `web` builds; `web` starts once built and `db` is ready.
    assert!(at("started", "other") < at("built", "web"), "{events:?}");
    assert!(at("started", "db") < at("built", "web"), "{events:?}");
    assert!(at("built", "web") < at("started", "web"), "{events:?}");
}

/// `docker exec CONTAINER cat PATH`, or `None` while it fails.
fn cat_in(container: &str, path: &str) -> Option<String> {
    let o = Command::new("docker")
        .args(["exec", container, "cat", path])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn poll(what: &str, within: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("{what}: not within {within:?}");
}

#[test]
fn develop_watch_syncs_files_and_rebuilds_on_change() {
    if !docker_or_skip(&[BASE]) {
        return;
    }
    let case = Case::new(
        "build-watch",
        &format!(
            "  web:\n    build: ./app\n    init: true\n    develop:\n      watch:\n        - path: ./app/static\n          action: sync\n          target: /srv/static\n        - path: ./app/hello.txt\n          action: rebuild\n\
             # restarted when `web` is rebuilt (`restart: true`)\n\
             \x20 dep:\n    image: {BASE}\n    command: sleep infinity\n    init: true\n    depends_on:\n      web: {{ condition: service_started, restart: true }}\n\
             # not restarted (no `restart: true`)\n\
             \x20 other:\n    image: {BASE}\n    command: sleep infinity\n    init: true\n    depends_on:\n      web: {{ condition: service_started }}\n"
        ),
    );
    fs::create_dir_all(case.app("static")).unwrap();
    fs::write(case.app("static/index.txt"), "v1\n").unwrap();
    let dir = case.path().to_path_buf();
    let (mut up, rx) = spawn_up(&dir, &["-p", &case.project, "up"], &[("NO_COLOR", "1")]);
    let mut seen = Vec::new();
    wait_for(
        &rx,
        "press Ctrl-C",
        std::time::Duration::from_secs(120),
        &mut seen,
    );
    let container = format!("{}-web", case.project);
    // A field of a container (empty while there is no such container).
    let field = |c: &str, format: &str| {
        let o = Command::new("docker")
            .args(["inspect", "--format", format, c])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let image_of = |c: &str| field(c, "{{.Image}}");
    let started_at = |c: &str| field(c, "{{.State.StartedAt}}");
    let first_image = image_of(&container);
    let (dep, other) = (
        format!("{}-dep", case.project),
        format!("{}-other", case.project),
    );
    let (dep_started, other_started) = (started_at(&dep), started_at(&other));
    assert!(!dep_started.is_empty() && !other_started.is_empty());

    // sync: a changed file is copied into the running container (same container, no restart).
    fs::write(case.app("static/index.txt"), "v2\n").unwrap();
    fs::write(case.app("static/new.txt"), "new\n").unwrap();
    poll("synced files", std::time::Duration::from_secs(30), || {
        cat_in(&container, "/srv/static/index.txt").as_deref() == Some("v2\n")
            && cat_in(&container, "/srv/static/new.txt").as_deref() == Some("new\n")
    });
    assert_eq!(image_of(&container), first_image);

    // rebuild: a change under the rebuild path builds a new image and recreates the container.
    fs::write(case.app("hello.txt"), "rebuilt\n").unwrap();
    poll(
        "a rebuilt image in a new container",
        std::time::Duration::from_secs(120),
        || {
            let img = image_of(&container);
            !img.is_empty()
                && img != first_image
                && cat_in(&container, "/hello.txt").is_some_and(|t| t.starts_with("rebuilt"))
        },
    );
    // The dependent with `restart: true` starts again once the new `web` runs; the other one,
    // without it, keeps its start.
    poll(
        "`dep` restarted after the rebuild",
        std::time::Duration::from_secs(60),
        || {
            let now = started_at(&dep);
            !now.is_empty() && now != dep_started
        },
    );
    assert_eq!(started_at(&other), other_started);
    interrupt(&up);
    let code = exit_within(&mut up, std::time::Duration::from_secs(60));
    while let Ok(l) = rx.try_recv() {
        seen.push(l);
    }
    assert_eq!(code, Some(130), "{}", seen.join("\n"));
    let log = seen.join("\n");
    assert!(log.contains("synced "), "{log}");
    assert!(log.contains("rebuilding"), "{log}");
}

/// `GET path` on 127.0.0.1:port: the status code, or `None` while nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn ensurestudy_compose_file_builds_and_runs_in_containers() {
    let images = [
        "python:3.11-slim",
        "node:20-alpine",
        "postgres:15",
        "redis:7-alpine",
        "qdrant/qdrant:latest",
        "confluentinc/cp-zookeeper:latest",
        "confluentinc/cp-kafka:latest",
    ];
    if !docker_or_skip(&images) {
        return;
    }
    let compose = root()
        .join("examples/ensurestudy/docker-compose.yml")
        .display()
        .to_string();
    // The file as it is, on free host ports (its fixed ones may be taken on this machine).
    let case = Case::new("build-es", ONE);
    let up = case.run(&["-f", &compose, "up", "--wait", "--free-ports"]);
    let err = stderr(&up);
    let _down = Teardown {
        dir: case.path().into(),
        project: case.project.clone(),
        files: vec![compose.clone()],
    };
    assert_eq!(up.status.code(), Some(0), "{err}");
    for s in ["frontend", "core-service", "ai-service", "celery-worker"] {
        assert!(err.contains(s), "{err}");
    }
    // core-service and celery-worker share one build.
    assert!(
        err.contains("(for core-service, celery-worker)") || err.contains("is up to date"),
        "{err}"
    );
    let port_of = |service: &str, container_port: u16| -> u16 {
        let suffix = format!("->{container_port}");
        err.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{service} ")) && l.ends_with(&suffix))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|p| p.split("->").next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no published port {container_port} of {service} in\n{err}"))
    };
    let core = port_of("core-service", 5000);
    poll(
        "core-service /health",
        std::time::Duration::from_secs(90),
        || http_status(core, "/health") == Some(200),
    );
    // /ready checks PostgreSQL and Redis, reached by service name from inside the container.
    poll(
        "core-service /ready",
        std::time::Duration::from_secs(90),
        || http_status(core, "/ready") == Some(200),
    );
    let ai = port_of("ai-service", 8000);
    poll(
        "ai-service /health",
        std::time::Duration::from_secs(90),
        || http_status(ai, "/health") == Some(200),
    );
    let web = port_of("frontend", 3000);
    poll("frontend /", std::time::Duration::from_secs(60), || {
        http_status(web, "/") == Some(200)
    });

    let down = case.run(&["-f", &compose, "down", "-v"]);
    ok(&down);
    let (containers, volumes) = leftovers(&case.project);
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "{containers:?} {volumes:?}"
    );
}
