//! The engine with a recording fake container runtime and paused time: the order of what it
//! asks the runtime, and the outcome, for start-up, a crash after start-up, commands, abort and
//! shutdown. No real time passes and no Docker engine is involved. Native services run against
//! a fake process host (`processes`).

mod processes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::apply::ApplyAnswer;
use super::*;
use crate::config::test_stack;
use crate::event::ChangeAction;
use crate::logs::{Format, LogHandle};
use crate::runtime::{
    ContainerInfo, ContainerSpec, ContainerStatus, OutputChunk, OutputStream, Published,
    Result as RtResult,
};

#[derive(Default)]
struct FakeState {
    calls: Vec<String>,
    containers: HashMap<String, FakeContainer>,
    /// Images whose containers exit with this code as soon as they start.
    crash_on_start: HashMap<String, i64>,
    /// Services whose containers print this line when they start.
    greeting: HashMap<String, String>,
    /// Local images and their labels; `None`: every image is present, without labels.
    images: Option<HashMap<String, std::collections::BTreeMap<String, String>>>,
    /// Pulls fail (no registry).
    pull_fails: bool,
    /// `pre_start` steps (by their command) that exit with this code and output.
    init_fails: HashMap<String, (i64, String)>,
}

struct FakeContainer {
    service: String,
    image: String,
    status: ContainerStatus,
    exit_code: Option<i64>,
    log: Option<mpsc::UnboundedSender<RtResult<OutputChunk>>>,
    pending: Vec<String>,
}

/// A container engine in memory. The only `Arc<Mutex>` of the crate, and only in tests: the
/// test and the engine's tasks both look at it.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().calls.clone()
    }

    fn id_of(&self, service: &str) -> String {
        let s = self.0.lock().unwrap();
        s.containers
            .iter()
            .find(|(_, c)| c.service == service)
            .map(|(id, _)| id.clone())
            .expect("created")
    }

    /// The container exits by itself with `code` (crashes, or `docker kill` from outside).
    fn exit(&self, service: &str, code: i64) {
        let id = self.id_of(service);
        let mut s = self.0.lock().unwrap();
        let c = s.containers.get_mut(&id).unwrap();
        c.status = ContainerStatus::Exited;
        c.exit_code = Some(code);
        c.log = None;
    }

    fn end(&self, id: &str, code: i64, call: String) {
        let mut s = self.0.lock().unwrap();
        s.calls.push(call);
        if let Some(c) = s.containers.get_mut(id) {
            c.status = ContainerStatus::Exited;
            c.exit_code = Some(code);
            c.log = None;
        }
    }

    /// The running container of `service` prints `line`.
    fn say(&self, service: &str, line: &str) {
        let id = self.id_of(service);
        let s = self.0.lock().unwrap();
        if let Some(tx) = s.containers[&id].log.as_ref() {
            let _ = tx.send(Ok(OutputChunk {
                stderr: false,
                bytes: format!("{line}\n").into_bytes(),
                at_ns: None,
            }));
        }
    }

    fn service_of(&self, id: &str) -> String {
        self.0.lock().unwrap().containers[id].service.clone()
    }
}

impl ContainerRuntime for Fake {
    async fn list(&self, _project: &str) -> RtResult<Vec<ContainerInfo>> {
        Ok(Vec::new())
    }
    async fn list_publishing(&self) -> RtResult<Vec<(String, Vec<Published>)>> {
        Ok(Vec::new())
    }
    async fn inspect(&self, id: &str) -> RtResult<ContainerInfo> {
        let s = self.0.lock().unwrap();
        let c = &s.containers[id];
        Ok(ContainerInfo {
            id: id.to_string(),
            name: id.to_string(),
            project: "p".into(),
            service: ServiceName::from(c.service.clone()),
            config_hash: String::new(),
            image: c.image.clone(),
            status: c.status,
            exit_code: c.exit_code,
            health: None,
            health_fresh: false,
            started_at: Some(1),
            ports: Vec::new(),
        })
    }
    async fn image_id(&self, image: &str) -> RtResult<Option<String>> {
        Ok(self.image_labels(image).await?.map(|(id, _)| id))
    }
    async fn image_labels(
        &self,
        image: &str,
    ) -> RtResult<Option<(String, std::collections::BTreeMap<String, String>)>> {
        let s = self.0.lock().unwrap();
        let id = format!("sha256:{image}");
        Ok(match &s.images {
            None => Some((id, Default::default())),
            Some(m) => m.get(image).map(|l| (id, l.clone())),
        })
    }
    async fn build(
        &self,
        req: crate::runtime::BuildRequest,
        _p: mpsc::UnboundedSender<crate::runtime::BuildOutput>,
    ) -> RtResult<String> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(format!("build {}", req.tags.join(",")));
        if let Some(m) = s.images.as_mut() {
            for t in &req.tags {
                m.insert(t.clone(), req.labels.clone());
            }
        }
        Ok(format!("sha256:{}", req.tags[0]))
    }
    async fn copy_into(&self, _id: &str, _tar: Vec<u8>) -> RtResult<()> {
        Ok(())
    }
    async fn pull(&self, image: &str, _p: mpsc::UnboundedSender<String>) -> RtResult<()> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(format!("pull {image}"));
        if s.pull_fails {
            return Err(crate::runtime::RuntimeError::ImageUnavailable {
                image: image.to_string(),
                reason: "no registry".into(),
            });
        }
        if let Some(m) = s.images.as_mut() {
            m.insert(image.to_string(), Default::default());
        }
        Ok(())
    }
    async fn ensure_network(&self, _project: &str, _name: &str) -> RtResult<()> {
        Ok(())
    }
    async fn ensure_volume(&self, _p: &str, _v: &str, _f: &str) -> RtResult<()> {
        Ok(())
    }
    async fn create(&self, spec: &ContainerSpec) -> RtResult<String> {
        let mut s = self.0.lock().unwrap();
        let id = format!("{}-{}", spec.service, s.containers.len());
        s.calls.push(format!("create {}", spec.service));
        s.containers.insert(
            id.clone(),
            FakeContainer {
                service: spec.service.to_string(),
                image: spec.image.clone(),
                status: ContainerStatus::Created,
                exit_code: None,
                log: None,
                pending: Vec::new(),
            },
        );
        Ok(id)
    }
    async fn start(&self, id: &str) -> RtResult<()> {
        let mut s = self.0.lock().unwrap();
        let service = s.containers[id].service.clone();
        s.calls.push(format!("start {service}"));
        let crash = s.crash_on_start.get(&s.containers[id].image).copied();
        let greeting = s.greeting.get(&service).cloned();
        let c = s.containers.get_mut(id).unwrap();
        match crash {
            Some(code) => {
                c.status = ContainerStatus::Exited;
                c.exit_code = Some(code);
            }
            None => {
                c.status = ContainerStatus::Running;
                c.exit_code = None;
                c.pending.extend(greeting);
            }
        }
        Ok(())
    }
    async fn stop(&self, id: &str, _grace: Duration) -> RtResult<()> {
        let call = format!("stop {}", self.service_of(id));
        self.end(id, 0, call);
        Ok(())
    }
    async fn kill(&self, id: &str) -> RtResult<()> {
        let call = format!("kill {}", self.service_of(id));
        self.end(id, 137, call);
        Ok(())
    }
    async fn remove(&self, id: &str) -> RtResult<()> {
        self.0.lock().unwrap().containers.remove(id);
        Ok(())
    }
    async fn exec(&self, _id: &str, _argv: &[String]) -> RtResult<(i64, String)> {
        Ok((0, String::new()))
    }
    async fn exec_hook(
        &self,
        id: &str,
        hook: &crate::runtime::HookExec,
    ) -> RtResult<(i64, String)> {
        let service = self.service_of(id);
        let mut s = self.0.lock().unwrap();
        s.calls
            .push(format!("exec {service} `{}`", hook.argv.join(" ")));
        Ok((0, String::new()))
    }
    async fn run_init(&self, spec: &crate::runtime::InitSpec) -> RtResult<(i64, String)> {
        let cmd = spec.cmd.clone().unwrap_or_default().join(" ");
        let mut s = self.0.lock().unwrap();
        let beside = s
            .containers
            .get(&spec.volumes_from)
            .map_or("?", |c| c.status.as_str());
        s.calls.push(format!(
            "pre_start {} `{cmd}` beside a {beside} container",
            spec.service
        ));
        Ok(s.init_fails
            .get(&cmd)
            .cloned()
            .unwrap_or((0, String::new())))
    }
    fn logs(&self, id: &str, _since: i64, _after_ns: Option<i128>, _tty: bool) -> OutputStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = self.0.lock().unwrap();
        if let Some(c) = s.containers.get_mut(id) {
            for line in c.pending.drain(..) {
                let _ = tx.send(Ok(OutputChunk {
                    stderr: false,
                    bytes: format!("{line}\n").into_bytes(),
                    at_ns: None,
                }));
            }
            if c.status == ContainerStatus::Running {
                c.log = Some(tx);
            }
        }
        Box::pin(tokio_stream_from(rx))
    }
    async fn remove_network(&self, _name: &str) -> RtResult<()> {
        Ok(())
    }
    async fn list_volumes(&self, _project: &str) -> RtResult<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    async fn remove_volume(&self, _name: &str) -> RtResult<()> {
        Ok(())
    }
    async fn volume_id(&self, name: &str) -> RtResult<Option<String>> {
        Ok(Some(format!("{name}@0")))
    }
    async fn usage(&self, _id: &str) -> RtResult<crate::runtime::UsageSample> {
        Ok(crate::runtime::UsageSample::default())
    }
}

/// A stream that ends when every sender is gone (the container stopped).
fn tokio_stream_from(
    mut rx: mpsc::UnboundedReceiver<RtResult<OutputChunk>>,
) -> impl futures_util::Stream<Item = RtResult<OutputChunk>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn logs() -> (LogHandle, std::thread::JoinHandle<()>) {
    crate::logs::spawn(Box::new(std::io::sink()), Format::Json, TAIL_LINES, None)
}

struct Harness {
    fake: Fake,
    host: processes::FakeHost,
    handle: StackHandle,
    signals: mpsc::UnboundedSender<()>,
    run: tokio::task::JoinHandle<std::result::Result<UpOutcome, UpError>>,
    events: tokio::sync::broadcast::Receiver<crate::logs::mux::Published>,
    /// Every event published so far (see [`Harness::outcome`]).
    seen: Vec<StackEvent>,
}

fn start(yaml: &str, fake: Fake) -> Harness {
    start_with(yaml, fake, processes::FakeHost::default(), false)
}

/// With native services run by `host`, and their file changes sent by it when `watch`.
fn start_with(yaml: &str, fake: Fake, host: processes::FakeHost, watch: bool) -> Harness {
    start_full(yaml, fake, host, watch, None)
}

/// The stack files as a test edits them: `apply` loads whatever they hold now.
type Files = std::sync::Arc<std::sync::Mutex<String>>;

fn start_live(yaml: &str, fake: Fake) -> (Harness, Files) {
    let files: Files = std::sync::Arc::new(std::sync::Mutex::new(yaml.to_string()));
    let now = files.clone();
    let reload: super::apply::Reload = Box::new(move || {
        let text = now.lock().unwrap().clone();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("stack.yaml"), text).map_err(|e| e.to_string())?;
        let opts = crate::config::LoadOptions {
            cwd: dir.path().to_path_buf(),
            project_name: Some("stack".into()),
            ..Default::default()
        };
        let loaded = crate::config::load(&opts, &|_| None).map_err(|e| e.render(false))?;
        let selected = loaded.stack.services.keys().cloned().collect();
        Ok(super::apply::Reloaded {
            stack: loaded.stack,
            selected,
            warnings: Vec::new(),
        })
    });
    let h = start_full(
        yaml,
        fake,
        processes::FakeHost::default(),
        false,
        Some(reload),
    );
    (h, files)
}

fn start_full(
    yaml: &str,
    fake: Fake,
    host: processes::FakeHost,
    watch: bool,
    reload: Option<super::apply::Reload>,
) -> Harness {
    let mut stack = test_stack(yaml);
    if reload.is_some() {
        stack.name = "stack".into();
    }
    let (logs, _writer) = logs();
    let (handle, inbox) = channel(logs.fanout());
    let events = logs.subscribe();
    let (signals, mut sig_rx) = mpsc::unbounded_channel();
    let rt = fake.clone();
    let processes = host.clone();
    let run = tokio::spawn(async move {
        let selected: Vec<String> = stack.services.keys().cloned().collect();
        let state = tempfile::tempdir().unwrap();
        let req = UpRequest {
            stack: &stack,
            selected,
            wait: false,
            port_mode: PortMode::AsWritten,
            watch,
            state: StateFile::new(state.path().join("processes.json")),
            then: None,
            inbox: Some(inbox),
            build: Default::default(),
            reload,
            watch_config: false,
        };
        up_with(&rt, &processes, req, logs, &mut sig_rx).await
    });
    Harness {
        fake,
        host,
        handle,
        signals,
        run,
        events,
        seen: Vec::new(),
    }
}

impl Harness {
    /// Waits (in paused time: no real time passes) until `service` is in state `name`.
    async fn until(&mut self, service: &str, name: &str) {
        self.until_with(service, name, 0).await;
    }

    /// ... and has restarted at least `restarts` times.
    async fn until_with(&mut self, service: &str, name: &str, restarts: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            self.drain();
            if self
                .handle
                .snapshot()
                .iter()
                .any(|s| s.service == service && s.state.name() == name && s.restarts >= restarts)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{service}` never got `{name}`: {:?} after {:?} {:?}",
                self.handle.snapshot(),
                self.fake.calls(),
                self.host.calls()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What the snapshot says of `service`.
    fn status(&self, service: &str) -> ServiceStatus {
        self.handle
            .snapshot()
            .into_iter()
            .find(|s| s.service == service)
            .expect("a selected service")
    }

    fn drain(&mut self) {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match self.events.try_recv() {
                Ok(crate::logs::mux::Published::Event { event, .. }) => self.seen.push(event),
                Ok(_) => {}
                Err(TryRecvError::Lagged(n)) => panic!("the test lost {n} events"),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Ends the run: the outcome, and every event published.
    async fn outcome(mut self) -> (std::result::Result<UpOutcome, UpError>, Vec<StackEvent>) {
        let outcome = (&mut self.run).await.expect("the run did not panic");
        self.drain();
        (outcome, self.seen)
    }
}

const TWO: &str = "
services:
  db: { image: pg, ready: { log: 'db ready' }, restart: on-failure }
  api: { image: api, depends_on: [db], restart: 'no' }
";

fn greeting(fake: &Fake, service: &str, line: &str) {
    fake.0
        .lock()
        .unwrap()
        .greeting
        .insert(service.into(), line.into());
}

#[tokio::test(start_paused = true)]
async fn starts_in_order_restarts_a_crashed_container_and_stops_dependents_first() {
    let fake = Fake::default();
    greeting(&fake, "db", "db ready");
    let mut h = start(TWO, fake.clone());
    h.until("api", "ready").await;
    assert_eq!(
        fake.calls(),
        ["create db", "start db", "create api", "start api"],
        "api waits for db to be ready"
    );

    // A crash after start-up: restarted under on-failure, the rest keeps running.
    fake.exit("db", 137);
    h.until("db", "backoff").await;
    h.until("db", "ready").await;
    assert_eq!(
        fake.calls()[4..],
        ["start db"],
        "the same container starts again"
    );
    let api = h
        .handle
        .snapshot()
        .into_iter()
        .find(|s| s.service == "api")
        .unwrap();
    assert_eq!(api.state, ServiceStateAlias::Ready);

    // Under `restart: no` a crash stays crashed, and nothing else stops.
    fake.exit("api", 3);
    h.until("api", "crashed").await;
    h.until("db", "ready").await;

    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    assert_eq!(fake.calls().last().unwrap(), "stop db");
    assert!(events
        .iter()
        .any(|e| matches!(e, StackEvent::Backoff { service, code: 137, .. } if service == "db")));
}

use crate::event::ServiceState as ServiceStateAlias;

#[tokio::test(start_paused = true)]
async fn a_failure_during_startup_stops_every_container_already_created() {
    let fake = Fake::default();
    greeting(&fake, "db", "db ready");
    fake.0
        .lock()
        .unwrap()
        .crash_on_start
        .insert("bad".into(), 3);
    let h = start(
        "
services:
  db: { image: pg, ready: { log: 'db ready' } }
  cache: { image: redis, ready: { log: 'never' } }
  bad: { image: bad, ready: { log: 'never' } }
",
        fake.clone(),
    );
    let outcome = h.run.await.unwrap();
    match outcome {
        Err(UpError::NotReady(r)) => {
            assert_eq!(r.service, "bad");
            assert!(r.reason.contains("exited with code 3"), "{}", r.reason);
        }
        other => panic!("{other:?}"),
    }
    let calls = fake.calls();
    for s in ["db", "cache"] {
        assert!(
            calls.contains(&format!("stop {s}")),
            "{s} was stopped: {calls:?}"
        );
    }
    assert!(
        !calls.contains(&"stop bad".to_string()),
        "bad had exited already"
    );
}

#[tokio::test(start_paused = true)]
async fn commands_through_the_handle_restart_stop_and_start() {
    let fake = Fake::default();
    greeting(&fake, "db", "db ready");
    let mut h = start(TWO, fake.clone());
    h.until("api", "ready").await;

    assert!(h.handle.restart("db"));
    h.until_with("db", "ready", 1).await;
    let db = h
        .handle
        .snapshot()
        .into_iter()
        .find(|s| s.service == "db")
        .unwrap();
    assert_eq!(db.restarts, 1);

    assert!(h.handle.stop("api"));
    h.until("api", "stopped").await;
    assert!(h.handle.stop("db"));
    h.until("db", "stopped").await;
    let before = fake.calls().len();
    // Starting api starts db first: api waits until db is ready again.
    assert!(h.handle.start("api"));
    h.until("api", "ready").await;
    assert_eq!(fake.calls()[before..], ["start db", "start api"]);

    assert!(h.handle.shutdown());
    let outcome = h.run.await.unwrap();
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    assert_eq!(
        fake.calls()[fake.calls().len() - 2..],
        ["stop api", "stop db"]
    );
}

/// A Compose file with builds, on disk (the build contexts must exist).
fn build_stack(services: &str) -> (tempfile::TempDir, crate::config::Stack) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(
        dir.path().join("app/Dockerfile"),
        "FROM base\nCOPY . /app\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("app/main.py"), "print(1)\n").unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("services:\n{services}"),
    )
    .unwrap();
    let opts = crate::config::LoadOptions {
        cwd: dir.path().to_path_buf(),
        project_name: Some("p".into()),
        ..Default::default()
    };
    let stack = crate::config::load(&opts, &|_| None).unwrap().stack;
    (dir, stack)
}

/// Runs every build job of the stack against `fake`: the `how` of each `built` event.
async fn ensure_builds(
    fake: &Fake,
    stack: &crate::config::Stack,
    flags: BuildFlags,
) -> Vec<String> {
    let (logs, writer) = logs();
    let mut rx = logs.subscribe();
    let selected: Vec<String> = stack.services.keys().cloned().collect();
    let jobs = crate::build::jobs(stack, &selected).unwrap();
    build::ensure_all(fake, &jobs, flags, &logs).await.unwrap();
    logs.flush().await;
    let mut how = Vec::new();
    while let Ok(p) = rx.try_recv() {
        if let crate::logs::mux::Published::Event {
            event: StackEvent::Built { how: h, .. },
            ..
        } = p
        {
            // As `--json` names it.
            how.push(
                serde_json::to_value(h)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    drop(logs);
    let _ = writer.join();
    how
}

fn with_images(images: &[&str], pull_fails: bool) -> Fake {
    let fake = Fake::default();
    {
        let mut s = fake.0.lock().unwrap();
        s.images = Some(
            images
                .iter()
                .map(|i| (i.to_string(), Default::default()))
                .collect(),
        );
        s.pull_fails = pull_fails;
    }
    fake
}

#[tokio::test]
async fn pull_policy_decides_between_local_pull_and_build() {
    let image_and_build = |policy: &str| {
        format!("  web:\n    image: team/web:1\n    build: ./app\n    pull_policy: {policy}\n")
    };
    // (policy, local images, pulls fail, calls, how)
    type Case<'a> = (&'a str, &'a [&'a str], bool, &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        ("missing", &["team/web:1"], false, &[], "local"),
        ("missing", &[], false, &["pull team/web:1"], "pulled"),
        (
            "missing",
            &[],
            true,
            &["pull team/web:1", "build team/web:1"],
            "built",
        ),
        ("never", &[], false, &["build team/web:1"], "built"),
        ("never", &["team/web:1"], false, &[], "local"),
        (
            "always",
            &["team/web:1"],
            true,
            &["pull team/web:1", "build team/web:1"],
            "built",
        ),
        (
            "build",
            &["team/web:1"],
            false,
            &["build team/web:1"],
            "built",
        ),
    ];
    for (policy, images, pull_fails, calls, how) in cases {
        let (_dir, stack) = build_stack(&image_and_build(policy));
        let fake = with_images(images, *pull_fails);
        let got = ensure_builds(&fake, &stack, BuildFlags::default()).await;
        assert_eq!(
            fake.calls(),
            *calls,
            "pull_policy {policy}, images {images:?}"
        );
        assert_eq!(got, [*how], "pull_policy {policy}, images {images:?}");
    }
}

#[tokio::test]
async fn a_build_is_skipped_while_its_hash_matches_and_shared_builds_run_once() {
    let shared = "    build:\n      context: ./app\n";
    let (dir, stack) = build_stack(&format!("  web:\n{shared}  worker:\n{shared}"));
    let fake = with_images(&[], true);
    let first = ensure_builds(&fake, &stack, BuildFlags::default()).await;
    assert_eq!(first, ["built"]);
    assert_eq!(fake.calls(), ["build p-web,p-worker"]);

    let again = ensure_builds(&fake, &stack, BuildFlags::default()).await;
    assert_eq!(again, ["up_to_date"]);
    assert_eq!(fake.calls().len(), 1, "no second build");

    let forced = ensure_builds(
        &fake,
        &stack,
        BuildFlags {
            force: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(forced, ["built"]);

    std::fs::write(dir.path().join("app/main.py"), "print(2)\n").unwrap();
    let changed = ensure_builds(&fake, &stack, BuildFlags::default()).await;
    assert_eq!(changed, ["built"]);
    assert_eq!(fake.calls().len(), 3);
}

// ---- The stack file is live ----

#[tokio::test(start_paused = true)]
async fn apply_recreates_only_the_changed_container_removes_the_gone_one_and_starts_the_new() {
    let fake = Fake::default();
    greeting(&fake, "db", "db ready");
    let yaml = "
services:
  db: { image: pg, ready: { log: 'db ready' } }
  api: { image: api, depends_on: [db], environment: { LOG: info } }
  cache: { image: redis }
";
    let (mut h, files) = start_live(yaml, fake.clone());
    h.until("api", "ready").await;
    h.until("cache", "ready").await;
    let before = fake.calls().len();

    // A no-op: the same file. Nothing is touched.
    let answer = h.handle.apply(false).await.expect("an answer");
    let ApplyAnswer::Applied { changes, .. } = answer else {
        panic!("{answer:?}")
    };
    assert!(changes.iter().all(|c| c.action == ChangeAction::Unchanged));
    assert_eq!(fake.calls().len(), before, "{:?}", fake.calls());

    // api's environment changes, cache goes, worker comes.
    *files.lock().unwrap() = "
services:
  db: { image: pg, ready: { log: 'db ready' } }
  api: { image: api, depends_on: [db], environment: { LOG: debug } }
  worker: { image: worker, depends_on: [db] }
"
    .to_string();
    let dry = h.handle.apply(true).await.expect("an answer");
    assert!(matches!(dry, ApplyAnswer::Applied { dry_run: true, .. }));
    assert_eq!(fake.calls().len(), before, "a dry run changes nothing");
    let answer = h.handle.apply(false).await.expect("an answer");
    let ApplyAnswer::Applied { changes, .. } = answer else {
        panic!("{answer:?}")
    };
    let plan: Vec<(&str, ChangeAction)> = changes
        .iter()
        .map(|c| (c.service.as_str(), c.action))
        .collect();
    assert_eq!(
        plan,
        [
            ("cache", ChangeAction::Stop),
            ("db", ChangeAction::Unchanged),
            ("api", ChangeAction::Recreate),
            ("worker", ChangeAction::Start),
        ]
    );
    h.until("worker", "ready").await;
    h.until_with("api", "ready", 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.handle.snapshot().iter().any(|s| s.service == "cache") {
        assert!(tokio::time::Instant::now() < deadline, "cache never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after: Vec<String> = fake.calls()[before..].to_vec();
    for call in [
        "stop api",
        "create api",
        "start api",
        "stop cache",
        "create worker",
    ] {
        assert!(after.iter().any(|c| c == call), "no `{call}` in {after:?}");
    }
    assert!(
        !after.iter().any(|c| c.ends_with(" db")),
        "db untouched: {after:?}"
    );
    assert!(
        !fake
            .0
            .lock()
            .unwrap()
            .containers
            .keys()
            .any(|k| k.starts_with("cache")),
        "the removed service's container is removed"
    );

    // An invalid file: refused, nothing changes, the error is kept for `ps` until fixed.
    let calls = fake.calls().len();
    *files.lock().unwrap() = "services:\n  api: { image: api, depends_on: [nope] }\n".to_string();
    let answer = h.handle.apply(false).await.expect("an answer");
    assert!(
        matches!(&answer, ApplyAnswer::Invalid { error } if error.contains("nope")),
        "{answer:?}"
    );
    assert!(h.handle.config_error().is_some_and(|e| e.contains("nope")));
    assert_eq!(fake.calls().len(), calls);
    *files.lock().unwrap() = yaml.to_string();
    let answer = h.handle.apply(true).await.expect("an answer");
    assert!(matches!(answer, ApplyAnswer::Applied { .. }), "{answer:?}");
    assert_eq!(
        h.handle.config_error(),
        None,
        "a valid file clears the error"
    );

    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(
        matches!(outcome, Err(UpError::Interrupted) | Ok(UpOutcome::Stopped)),
        "{outcome:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StackEvent::ConfigApplied { .. }))
            .count(),
        2,
        "one event per apply that was carried out (not the dry runs)"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, StackEvent::ConfigInvalid { error } if error.contains("nope"))));
}

const PRE_START: &str = "
services:
  web:
    image: app
    ready: { log: 'web ready' }
    restart: on-failure
    pre_start:
      - command: migrate
      - command: seed
";

/// Compose's `pre_start` steps run in order between the container's create and its start, and
/// not again when the same container restarts (issue 24).
#[tokio::test(start_paused = true)]
async fn pre_start_steps_run_between_create_and_start_once_per_container() {
    let fake = Fake::default();
    greeting(&fake, "web", "web ready");
    let mut h = start(PRE_START, fake.clone());
    h.until("web", "ready").await;
    assert_eq!(
        fake.calls(),
        [
            "create web",
            "pre_start web `migrate` beside a created container",
            "pre_start web `seed` beside a created container",
            "start web"
        ]
    );
    fake.exit("web", 137);
    h.until("web", "backoff").await;
    h.until("web", "ready").await;
    assert_eq!(
        fake.calls()[4..],
        ["start web"],
        "a restart of the same container runs no step again"
    );
    h.signals.send(()).unwrap();
    let (outcome, _) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
}

/// A failing `pre_start` step fails the start with its exit code and last output lines, runs
/// no later step, and leaves no container behind.
#[tokio::test(start_paused = true)]
async fn a_failing_pre_start_step_fails_the_start_and_leaves_no_container() {
    let fake = Fake::default();
    fake.0
        .lock()
        .unwrap()
        .init_fails
        .insert("migrate".into(), (3, "connecting\nno such table\n".into()));
    let h = start(
        "services:\n  web: { image: app, pre_start: [{command: migrate}, {command: seed}] }\n",
        fake.clone(),
    );
    let outcome = h.run.await.unwrap();
    match outcome {
        Err(UpError::NotReady(r)) => {
            assert_eq!(r.service, "web");
            assert!(
                r.reason.contains(
                    "pre_start step 1 `migrate` exited with 3: connecting | no such table"
                ),
                "{}",
                r.reason
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.calls(),
        [
            "create web",
            "pre_start web `migrate` beside a created container"
        ]
    );
    assert!(
        fake.0.lock().unwrap().containers.is_empty(),
        "the container made for the start is removed"
    );
}

/// A seed runs in the service's container once its probe passes and before what depends on it
/// is created; a restart of the same container (no volume: the container is the data) finds it
/// done and runs nothing (issue 22).
#[tokio::test(start_paused = true)]
async fn a_seed_runs_after_the_probe_before_dependents_and_once_per_container() {
    let fake = Fake::default();
    greeting(&fake, "db", "db ready");
    let mut h = start(
        "services:\n  db: { image: pg, ready: { log: 'db ready' }, restart: on-failure, seed: load-data < /seed.sql }\n  api: { image: api, depends_on: [db] }\n",
        fake.clone(),
    );
    h.until("api", "ready").await;
    let calls = fake.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    // `api`'s container may be made ahead; it starts only after `db`'s seed.
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert!(
        at("start db") < at("exec db `sh -c load-data < /seed.sql`"),
        "{calls:?}"
    );
    assert!(
        at("exec db `sh -c load-data < /seed.sql`") < at("start api"),
        "{calls:?}"
    );
    assert!(at("create api") < at("start api"), "{calls:?}");
    fake.exit("db", 137);
    h.until("db", "backoff").await;
    h.until("db", "ready").await;
    assert_eq!(
        fake.calls()[5..],
        ["start db"],
        "the same container is not seeded again"
    );
    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    let seeds: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            StackEvent::Seeded { service, ran, .. } if service == "db" => Some(*ran),
            _ => None,
        })
        .collect();
    assert_eq!(seeds, [true, false], "seeded, then found done");
}

/// The container of a service that waits for its dependencies is created while they start, and
/// started only once they are ready (issue 23: the create is off the critical path).
#[tokio::test(start_paused = true)]
async fn a_waiting_containers_create_happens_while_its_dependency_starts() {
    let fake = Fake::default();
    let mut h = start(TWO, fake.clone());
    h.until("db", "probing").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fake.calls().contains(&"create api".to_string()) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", fake.calls());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !fake.calls().contains(&"start api".to_string()),
        "{:?}",
        fake.calls()
    );
    assert_eq!(h.status("api").state.name(), "waiting");
    // Positive control: once `db` is ready, `api` starts the container made ahead.
    fake.say("db", "db ready");
    h.until("api", "ready").await;
    let calls = fake.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("create api")).count(),
        1,
        "{calls:?}"
    );
    assert!(calls.contains(&"start api".to_string()), "{calls:?}");
    h.signals.send(()).unwrap();
    let (outcome, _) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
}

/// A container made ahead for a start that never comes (its dependency failed start-up) is
/// removed when the run ends: nothing of a failed start-up stays.
#[tokio::test(start_paused = true)]
async fn a_container_made_ahead_goes_when_start_up_fails_before_its_start() {
    let fake = Fake::default();
    // `db` never says it is ready: its probe gives up after 5 s (of paused time).
    let h = start(
        "services:\n  db: { image: pg, ready: { log: 'db ready', timeout: 5s } }\n  api: { image: api, depends_on: [db] }\n",
        fake.clone(),
    );
    let outcome = h.run.await.unwrap();
    assert!(matches!(outcome, Err(UpError::NotReady(_))), "{outcome:?}");
    let calls = fake.calls();
    assert!(calls.contains(&"create api".to_string()), "{calls:?}");
    assert!(!calls.contains(&"start api".to_string()), "{calls:?}");
    let left: Vec<String> = fake
        .0
        .lock()
        .unwrap()
        .containers
        .values()
        .map(|c| c.service.clone())
        .collect();
    assert_eq!(left, ["db"], "only the container that ran stays");
}
