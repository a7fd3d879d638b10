//! The engine running native services against a fake process host, in paused time: start order
//! and readiness, a crash after start-up with backoff and crash loop, a failure during start-up,
//! a restart through the handle, reloads coalesced during a stop, and Ctrl-C escalation. The
//! fake unit keeps the unit contract (`Start` → `Started`, `Stop` → `Exited` once the instance
//! is gone, `Kill` cuts a stop short) and records what it was asked, with the virtual time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::*;
use crate::config::Probe;
use crate::unit::process::ProcessSetup;
use crate::unit::stopped_how;
use crate::watch::{FilesChanged, WatchError, WatchSpec, Watcher};

/// How one service's instances behave.
#[derive(Debug, Clone)]
struct Script {
    /// After this long an instance prints the line its `log` probe waits for; `None`: never.
    ready_after: Option<Duration>,
    /// Every instance exits with this code as soon as it has started.
    crash_on_start: Option<i64>,
    /// How long an instance takes to end after its stop signal; past the grace it is killed.
    stop_takes: Duration,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            ready_after: Some(Duration::ZERO),
            crash_on_start: None,
            stop_takes: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct HostState {
    calls: Vec<(Instant, String)>,
    next_pid: u32,
    scripts: HashMap<String, Script>,
    /// Per service: makes the running instance exit by itself with this code.
    crash: HashMap<String, mpsc::UnboundedSender<i64>>,
    changes: Option<mpsc::Sender<FilesChanged>>,
}

/// Native services in memory: one fake unit per service, each sharing this record with the test.
#[derive(Clone, Default)]
pub(super) struct FakeHost(Arc<Mutex<HostState>>);

impl FakeHost {
    fn script(&self, service: &str, script: Script) -> &Self {
        self.0
            .lock()
            .unwrap()
            .scripts
            .insert(service.into(), script);
        self
    }

    pub(super) fn calls(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .calls
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// When `call` was made (the `nth` time, from 0).
    fn when(&self, call: &str, nth: usize) -> Instant {
        let s = self.0.lock().unwrap();
        s.calls
            .iter()
            .filter(|(_, c)| c == call)
            .nth(nth)
            .unwrap_or_else(|| panic!("no {nth}th `{call}` in {:?}", s.calls))
            .0
    }

    fn record(&self, call: String) {
        self.0.lock().unwrap().calls.push((Instant::now(), call));
    }

    /// The running instance of `service` exits by itself with `code`.
    fn crash(&self, service: &str, code: i64) {
        let tx = self.0.lock().unwrap().crash[service].clone();
        tx.send(code).expect("the unit runs");
    }

    /// The file watcher reports a change of `service`'s files.
    async fn change(&self, service: &str, path: &str) {
        let tx = self.0.lock().unwrap().changes.clone().expect("watching");
        tx.send(FilesChanged {
            service: service.into(),
            paths: vec![path.into()],
            events: 1,
        })
        .await
        .expect("the engine watches");
    }
}

impl ProcessHost for FakeHost {
    fn unit(&self, setup: ProcessSetup) -> (UnitHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (crash_tx, crash_rx) = mpsc::unbounded_channel();
        let name = setup.svc.name.clone();
        let script = {
            let mut s = self.0.lock().unwrap();
            s.crash.insert(name.clone(), crash_tx);
            s.scripts.get(&name).cloned().unwrap_or_default()
        };
        let task = tokio::spawn(fake_unit(self.clone(), setup, script, rx, crash_rx));
        (UnitHandle::new(tx), task)
    }

    async fn end_leftovers(&self, _: &Stack, _: &[String], _: &StateFile, _: &LogHandle) {
        self.record("end leftovers".into());
    }

    fn become_subreaper(&self) {}

    async fn reap_orphans(&self) {}

    fn missing_programs(
        &self,
        _stack: &crate::config::Stack,
        _services: &[String],
        _before_tasks: bool,
    ) -> Vec<crate::program::MissingProgram> {
        Vec::new()
    }

    fn watch(
        &self,
        _specs: Vec<WatchSpec>,
    ) -> Result<(Option<Watcher>, mpsc::Receiver<FilesChanged>), WatchError> {
        let (tx, rx) = mpsc::channel(16);
        self.0.lock().unwrap().changes = Some(tx);
        Ok((None, rx))
    }
}

/// One running instance of a fake unit.
struct Instance {
    epoch: u64,
    /// When its `log` line comes.
    ready_at: Option<Instant>,
    /// While stopping: when it is gone, and how that is told.
    gone_at: Option<(Instant, i64, String)>,
}

/// The unit contract over nothing: `Start` gives `Started` with a new pid (and a `LogMatched`
/// once the script says so), `Stop{grace}` gives `Exited` after the script's stop time or the
/// grace, whichever comes first, and `Kill` gives it at once.
async fn fake_unit(
    host: FakeHost,
    setup: ProcessSetup,
    script: Script,
    mut rx: mpsc::UnboundedReceiver<UnitCommand>,
    mut crash_rx: mpsc::UnboundedReceiver<i64>,
) {
    let name = setup.svc.name.clone();
    let log_probe = matches!(
        setup.svc.ready.as_ref().map(|r| &r.probe),
        Some(Probe::Log(_))
    );
    let send = |e: UnitEvent| {
        let _ = setup.events.send(e);
    };
    let exited = |epoch: u64, code: i64, how: Option<String>| UnitEvent::Exited {
        service: ServiceName::from(name.clone()),
        epoch,
        code,
        how,
    };
    let mut running: Option<Instance> = None;
    loop {
        let ready_at = running.as_ref().and_then(|i| i.ready_at);
        let gone_at = running
            .as_ref()
            .and_then(|i| i.gone_at.as_ref().map(|g| g.0));
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(UnitCommand::Start { epoch }) => {
                    assert!(running.is_none(), "`{name}` started twice: {:?}", host.calls());
                    host.record(format!("start {name}"));
                    let pid = {
                        let mut s = host.0.lock().unwrap();
                        s.next_pid += 1;
                        1000 + s.next_pid
                    };
                    send(UnitEvent::Started {
                        service: ServiceName::from(name.clone()),
                        epoch,
                        pid: Some(pid),
                        container: None,
                        detail: format!("fake {name}"),
                    });
                    if let Some(code) = script.crash_on_start {
                        send(exited(epoch, code, None));
                        continue;
                    }
                    running = Some(Instance {
                        epoch,
                        ready_at: script
                            .ready_after
                            .filter(|_| log_probe)
                            .map(|after| Instant::now() + after),
                        gone_at: None,
                    });
                }
                Some(UnitCommand::Stop { grace }) => {
                    host.record(format!("stop {name}"));
                    if let Some(i) = running.as_mut() {
                        let gone = if script.stop_takes <= grace {
                            (script.stop_takes, 0, stopped_how(false, 0, grace, false))
                        } else {
                            (grace, 137, stopped_how(true, 137, grace, false))
                        };
                        i.gone_at = Some((Instant::now() + gone.0, gone.1, gone.2));
                    }
                }
                Some(UnitCommand::Kill) => {
                    host.record(format!("kill {name}"));
                    if let Some(i) = running.take() {
                        send(exited(i.epoch, 137, Some(stopped_how(true, 137, Duration::ZERO, true))));
                    }
                }
                // Every handle gone: devstack is leaving.
                None => return,
            },
            Some(code) = crash_rx.recv() => {
                host.record(format!("crash {name}"));
                let i = running.take().unwrap_or_else(|| panic!("`{name}` does not run"));
                send(exited(i.epoch, code, None));
            }
            _ = sleep_until(ready_at.unwrap_or_else(Instant::now)), if ready_at.is_some() => {
                let i = running.as_mut().expect("armed for a running instance");
                i.ready_at = None;
                send(UnitEvent::LogMatched { service: ServiceName::from(name.clone()), epoch: i.epoch });
            }
            _ = sleep_until(gone_at.unwrap_or_else(Instant::now)), if gone_at.is_some() => {
                let i = running.take().expect("armed for a running instance");
                let (_, code, how) = i.gone_at.expect("armed");
                send(exited(i.epoch, code, Some(how)));
            }
        }
    }
}

fn start(yaml: &str, host: &FakeHost) -> Harness {
    start_with(yaml, Fake::default(), host.clone(), true)
}

fn pid(h: &Harness, service: &str) -> u32 {
    h.status(service).pid.expect("running")
}

#[tokio::test(start_paused = true)]
async fn processes_start_in_dependency_order_and_a_dependent_waits_for_readiness() {
    let host = FakeHost::default();
    host.script(
        "db",
        Script {
            ready_after: Some(Duration::from_secs(2)),
            ..Script::default()
        },
    );
    let mut h = start(
        "
services:
  web: { command: web, depends_on: [api] }
  api: { command: api, depends_on: [db] }
  db: { command: db, ready: { log: 'db ready', timeout: 10s } }
",
        &host,
    );
    h.until("db", "probing").await;
    assert_eq!(h.status("api").state.name(), "waiting");
    assert_eq!(host.calls(), ["end leftovers", "start db"]);

    h.until("web", "ready").await;
    assert_eq!(
        host.calls(),
        ["end leftovers", "start db", "start api", "start web"]
    );
    assert_eq!(
        host.when("start api", 0) - host.when("start db", 0),
        Duration::from_secs(2),
        "api starts when db's log line has come, not before"
    );
    assert_eq!(
        host.when("start web", 0),
        host.when("start api", 0),
        "api has no probe: ready once started"
    );
    let db = h.status("db");
    assert_eq!((db.running, db.pid, db.epoch), (true, Some(1001), 1));

    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    let started: Vec<(&str, Option<u32>)> = events
        .iter()
        .filter_map(|e| match e {
            StackEvent::Started { service, pid, .. } => Some((service.as_str(), *pid)),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [("db", Some(1001)), ("api", Some(1002)), ("web", Some(1003))]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, StackEvent::Ready { service, after_ms: 2000 } if service == "db")));
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_startup_backs_off_and_restarts_while_the_rest_keeps_running() {
    let host = FakeHost::default();
    let mut h = start(
        "
services:
  db: { command: db, restart: on-failure, ready: { log: 'db ready' } }
  api: { command: api, depends_on: [db] }
",
        &host,
    );
    h.until("api", "ready").await;
    let api_pid = pid(&h, "api");

    for (crash, pause) in [(0, 100), (1, 200)] {
        host.crash("db", 1);
        h.until("db", "backoff").await;
        h.until("db", "ready").await;
        assert_eq!(
            host.when("start db", crash + 1) - host.when("crash db", crash),
            Duration::from_millis(pause),
            "crash {}",
            crash + 1
        );
    }
    // The third crash within a minute: a crash loop, still restarted after a longer pause.
    host.crash("db", 1);
    h.until("db", "backoff").await;
    assert_eq!(
        h.status("db").state,
        ServiceStateAlias::Backoff {
            restart_in_ms: 400,
            crash_loop: true
        }
    );
    h.until("db", "ready").await;
    // At least: the crash-loop event carries the last lines, which the engine asks of the log
    // writer's thread before it arms the timer, and paused time runs on while nothing but a
    // real thread has work.
    let pause = host.when("start db", 3) - host.when("crash db", 2);
    assert!(pause >= Duration::from_millis(400), "{pause:?}");

    // api kept running through all of it: never stopped, same instance.
    let api = h.status("api");
    assert_eq!((api.state.name(), api.pid), ("ready", Some(api_pid)));
    assert!(!host.calls().contains(&"stop api".to_string()));

    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    let backoffs: Vec<(u64, usize)> = events
        .iter()
        .filter_map(|e| match e {
            StackEvent::Backoff {
                service,
                code: 1,
                restart_in_ms,
                crashes,
                ..
            } if service == "db" => Some((*restart_in_ms, *crashes)),
            _ => None,
        })
        .collect();
    assert_eq!(backoffs, [(100, 1), (200, 2), (400, 3)]);
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_startup_fails_the_run_and_stops_what_was_started() {
    let host = FakeHost::default();
    host.script(
        "cache",
        Script {
            ready_after: None,
            ..Script::default()
        },
    )
    .script(
        "bad",
        Script {
            ready_after: None,
            crash_on_start: Some(3),
            ..Script::default()
        },
    );
    let h = start(
        "
services:
  db: { command: db, ready: { log: 'db ready' } }
  cache: { command: cache, ready: { log: 'never' } }
  bad: { command: bad, depends_on: [db], restart: 'no', ready: { log: 'never' } }
",
        &host,
    );
    let (outcome, events) = h.outcome().await;
    match outcome {
        Err(UpError::NotReady(r)) => {
            assert_eq!(r.service, "bad");
            assert!(r.reason.contains("exited with code 3"), "{}", r.reason);
        }
        other => panic!("{other:?}"),
    }
    let calls = host.calls();
    for s in ["db", "cache"] {
        assert!(
            calls.contains(&format!("stop {s}")),
            "{s} was stopped: {calls:?}"
        );
    }
    assert!(!calls.contains(&"stop bad".to_string()), "bad had exited");
    let stopped: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StackEvent::Stopped { service, .. } => Some(service.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 2, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StackEvent::AllReady { .. })),
        "start-up never ended"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_through_the_handle_gives_a_new_instance_that_gets_ready_again() {
    let host = FakeHost::default();
    let mut h = start(
        "
services:
  api: { command: api, ready: { log: 'api ready' } }
",
        &host,
    );
    h.until("api", "ready").await;
    let before = h.status("api");

    assert!(h.handle.restart("api"));
    h.until_with("api", "ready", 1).await;
    let after = h.status("api");
    assert_eq!(after.epoch, before.epoch + 1);
    assert_ne!(after.pid, before.pid);
    assert!(after.running);
    assert_eq!(
        host.calls(),
        ["end leftovers", "start api", "stop api", "start api"]
    );

    assert!(h.handle.shutdown());
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        StackEvent::Restarting { service, reason } if service == "api" && reason == "restart requested"
    )));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StackEvent::Ready { service, .. } if service == "api"))
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn changes_during_a_reload_stop_coalesce_into_one_start() {
    let host = FakeHost::default();
    host.script(
        "web",
        Script {
            stop_takes: Duration::from_secs(2),
            ..Script::default()
        },
    );
    let mut h = start(
        "
services:
  web: { command: web, ready: { log: 'listening' } }
",
        &host,
    );
    h.until("web", "ready").await;

    host.change("web", "/src/app.py").await;
    h.until("web", "stopping").await;
    // More saves while the old instance is still stopping.
    host.change("web", "/src/app.py").await;
    host.change("web", "/src/util.py").await;
    h.until_with("web", "ready", 1).await;
    // Long enough for any restart still owed to show.
    tokio::time::sleep(Duration::from_secs(30)).await;

    assert_eq!(
        host.calls(),
        ["end leftovers", "start web", "stop web", "start web"]
    );
    assert_eq!(
        host.when("start web", 1) - host.when("stop web", 0),
        Duration::from_secs(2),
        "the new instance starts once the old one is gone"
    );
    let web = h.status("web");
    assert_eq!((web.state.name(), web.restarts, web.epoch), ("ready", 1, 2));

    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    let restarting: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StackEvent::Restarting { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(restarting, ["/src/app.py changed"]);
}

const CHAIN: &str = "
services:
  db: { command: db }
  api: { command: api, depends_on: [db] }
  web: { command: web, depends_on: [api], stop_grace_period: 10s }
";

#[tokio::test(start_paused = true)]
async fn ctrl_c_stops_dependents_first() {
    let host = FakeHost::default();
    host.script(
        "api",
        Script {
            stop_takes: Duration::from_secs(1),
            ..Script::default()
        },
    );
    let mut h = start(CHAIN, &host);
    h.until("web", "ready").await;
    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    assert_eq!(
        host.calls()[4..],
        ["stop web", "stop api", "stop db"],
        "each waits until what depends on it is gone"
    );
    assert_eq!(
        host.when("stop db", 0) - host.when("stop api", 0),
        Duration::from_secs(1)
    );
    let stopped: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            StackEvent::Stopped { service, how } => Some((service.as_str(), how.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        stopped,
        [
            ("web", "stopped (exit code 0)"),
            ("api", "stopped (exit code 0)"),
            ("db", "stopped (exit code 0)")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_ctrl_c_kills_at_once() {
    let host = FakeHost::default();
    // web ignores its stop signal: a graceful stop would take its whole 10 s grace.
    host.script(
        "web",
        Script {
            stop_takes: Duration::from_secs(3600),
            ..Script::default()
        },
    );
    let mut h = start(CHAIN, &host);
    h.until("web", "ready").await;
    h.signals.send(()).unwrap();
    h.until("web", "stopping").await;
    let first = Instant::now();
    assert_eq!(host.calls()[4..], ["stop web"], "api and db wait for web");

    tokio::time::sleep(Duration::from_secs(1)).await;
    h.signals.send(()).unwrap();
    let (outcome, events) = h.outcome().await;
    assert!(matches!(outcome, Ok(UpOutcome::Stopped)), "{outcome:?}");
    assert_eq!(
        host.when("kill web", 0) - first,
        Duration::from_secs(1),
        "the kill goes out with the second Ctrl-C, not after the grace"
    );
    let mut after = host.calls()[5..].to_vec();
    after.sort();
    assert_eq!(after, ["kill api", "kill db", "kill web"]);
    assert!(events.iter().any(|e| matches!(
        e,
        StackEvent::Stopped { service, how } if service == "web" && how == "killed"
    )));
}
