//! Scenario tables: events in, effects out. Time is a plain `Instant` moved by hand.

use super::*;
use crate::config::test_stack as stack;
use crate::config::Stack;

const YAML: &str = "
services:
  zk: { image: zk, ready: { log: ok } }
  kafka: { image: kafka, depends_on: [zk], ready: { log: ok } }
  db: { image: pg, ready: { log: ok } }
  migrate: { image: m, depends_on: [db] }
  api: { image: api, depends_on: { db: ready, migrate: completed }, ready: { log: ok } }
  sidecar: { image: s, depends_on: { api: started } }
";

struct Run {
    k: Kernel,
    now: Instant,
}

fn all(s: &Stack) -> Vec<String> {
    s.services.keys().cloned().collect()
}

impl Run {
    fn new(yaml: &str) -> (Self, Vec<Effect>) {
        Self::with(yaml, false)
    }

    fn with(yaml: &str, leave_running: bool) -> (Self, Vec<Effect>) {
        let s = stack(yaml);
        let mut k = Kernel::new(&s, &all(&s), leave_running);
        let now = Instant::now();
        let first = k.begin(now);
        (Run { k, now }, first)
    }

    fn at(&mut self, after: Duration) {
        self.now += after;
    }

    fn on(&mut self, i: Input) -> Vec<Effect> {
        self.k.handle(self.now, i)
    }

    fn epoch(&self, s: &str) -> u64 {
        self.k.epoch(s).unwrap()
    }

    fn started(&mut self, s: &str) -> Vec<Effect> {
        let epoch = self.epoch(s);
        self.on(Input::Started {
            service: s.into(),
            epoch,
            pid: Some(1),
            container: None,
            detail: String::new(),
        })
    }

    fn ready(&mut self, s: &str) -> Vec<Effect> {
        let epoch = self.epoch(s);
        self.on(Input::Ready {
            service: s.into(),
            epoch,
        })
    }

    fn exited(&mut self, s: &str, code: i64) -> Vec<Effect> {
        let epoch = self.epoch(s);
        self.on(Input::Exited {
            service: s.into(),
            epoch,
            code,
            how: None,
        })
    }

    fn stopped(&mut self, s: &str) -> Vec<Effect> {
        let epoch = self.epoch(s);
        self.on(Input::Exited {
            service: s.into(),
            epoch,
            code: 0,
            how: Some("stopped (exit code 0)".into()),
        })
    }

    fn up(&mut self, s: &str) -> Vec<Effect> {
        let mut out = self.started(s);
        out.extend(self.ready(s));
        out
    }

    fn state(&self, s: &str) -> ServiceState {
        self.k.state(s).unwrap().clone()
    }
}

/// Only the effects that act (no publishing), for compact assertions.
fn acts(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { service, .. } => Some(format!("start {service}")),
            Effect::Probe { service, .. } => Some(format!("probe {service}")),
            Effect::Stop { service, .. } => Some(format!("stop {service}")),
            Effect::Kill { service } => Some(format!("kill {service}")),
            Effect::ArmTimer { service, after, .. } => {
                Some(format!("timer {service} {}ms", after.as_millis()))
            }
            Effect::Finish(o) => Some(format!("finish {o:?}")),
            Effect::CheckTask { service, .. } => Some(format!("check {service}")),
            Effect::Recreate { service, .. } => Some(format!("recreate {service}")),
            Effect::Remove { service } => Some(format!("remove {service}")),
            Effect::Seed { service, .. } => Some(format!("seed {service}")),
            Effect::Publish(_) => None,
        })
        .collect()
}

fn published(effects: &[Effect]) -> Vec<&StackEvent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

#[test]
fn starts_follow_conditions_and_nothing_waits_on_unrelated_services() {
    let (mut r, first) = Run::new(YAML);
    assert_eq!(acts(&first), ["start zk", "start db"]);
    assert_eq!(acts(&r.started("zk")), ["probe zk"]);
    assert_eq!(acts(&r.started("db")), ["probe db"]);
    assert_eq!(acts(&r.ready("db")), ["start migrate"]);
    assert_eq!(acts(&r.ready("zk")), ["start kafka"]);
    // No probe: started is ready, but api waits for migrate to complete.
    assert_eq!(acts(&r.started("migrate")), Vec::<String>::new());
    assert_eq!(acts(&r.exited("migrate", 0)), ["start api"]);
    assert_eq!(r.state("migrate"), ServiceState::Completed);
    let e = r.started("api");
    assert_eq!(
        acts(&e),
        ["probe api", "start sidecar"],
        "`started` does not wait for ready"
    );
    r.started("sidecar");
    r.up("kafka");
    let e = r.ready("api");
    assert!(published(&e)
        .iter()
        .any(|ev| matches!(ev, StackEvent::AllReady { services: 6, .. })));
    assert!(!r.k.is_starting_up());
}

fn two_processes() -> (Run, Vec<Effect>) {
    Run::new(
        "
services:
  web: { command: w, ready: { http: 'http://127.0.0.1:1/', timeout: 3s } }
  other: { command: o }
",
    )
}

#[test]
fn bug1_a_reload_that_breaks_readiness_after_startup_fails_only_its_service() {
    let (mut r, _) = two_processes();
    r.up("web");
    r.started("other");
    assert!(!r.k.is_starting_up());
    let e = r.on(Input::FilesChanged {
        service: "web".into(),
        paths: vec!["app.py".into()],
    });
    assert_eq!(acts(&e), ["stop web"]);
    assert_eq!(acts(&r.stopped("web")), ["start web"]);
    assert_eq!(acts(&r.started("web")), ["probe web"]);
    let epoch = r.epoch("web");
    let e = r.on(Input::ProbeFailed {
        service: "web".into(),
        epoch,
        reason: "not ready after 3s: connection refused".into(),
    });
    assert_eq!(acts(&e), Vec::<String>::new(), "no teardown, no finish");
    assert!(matches!(r.state("web"), ServiceState::Failed { .. }));
    assert_eq!(r.state("other"), ServiceState::Ready);
    // The next change retries it.
    let e = r.on(Input::FilesChanged {
        service: "web".into(),
        paths: vec!["app.py".into()],
    });
    assert_eq!(acts(&e), ["stop web"]);
}

#[test]
fn the_same_probe_failure_during_startup_stops_everything_started() {
    let (mut r, _) = two_processes();
    r.started("other");
    r.started("web");
    let epoch = r.epoch("web");
    let e = r.on(Input::ProbeFailed {
        service: "web".into(),
        epoch,
        reason: "timed out".into(),
    });
    assert_eq!(acts(&e), ["stop web", "stop other"]);
    r.stopped("web");
    let e = r.stopped("other");
    assert_eq!(
        acts(&e),
        [format!(
            "finish {:?}",
            Outcome::NotReady {
                service: "web".into(),
                reason: "timed out".into()
            }
        )]
    );
}

#[test]
fn bug2_an_aborted_startup_stops_services_still_being_created() {
    let (mut r, first) = Run::new(
        "
services:
  pg: { image: postgres:15, ready: { log: ready } }
  redis: { image: redis, ready: { log: ready } }
  bad: { command: 'exit 3', ready: { log: never } }
",
    );
    assert_eq!(acts(&first), ["start pg", "start redis", "start bad"]);
    // pg is still being created (no Started yet) when bad exits.
    r.started("redis");
    r.started("bad");
    let e = r.exited("bad", 3);
    assert_eq!(acts(&e), ["stop pg", "stop redis"]);
    assert_eq!(
        acts(&r.stopped("redis")),
        Vec::<String>::new(),
        "pg still runs"
    );
    let e = r.stopped("pg");
    assert!(acts(&e)[0].starts_with("finish NotReady"), "{e:?}");
}

#[test]
fn bug3_an_exit_before_a_log_line_is_never_ready() {
    let (mut r, _) = Run::new("services:\n  s: { command: x, ready: { log: ok } }\n");
    r.started("s");
    let e = r.exited("s", 0);
    assert_eq!(r.state("s"), ServiceState::Exited { code: 0 });
    assert!(acts(&e)[0].starts_with("finish NotReady"), "{e:?}");
    // A late Ready of that instance changes nothing.
    assert_eq!(acts(&r.ready("s")), Vec::<String>::new());
}

#[test]
fn a_crash_after_startup_backs_off_and_restarts_while_others_run() {
    let (mut r, _) =
        Run::new("services:\n  a: { command: x, restart: on-failure }\n  b: { command: y }\n");
    r.started("a");
    r.started("b");
    let mut pauses = Vec::new();
    for _ in 0..4 {
        r.at(Duration::from_secs(1));
        let e = r.exited("a", 1);
        let timer = acts(&e)
            .into_iter()
            .find(|a| a.starts_with("timer"))
            .unwrap();
        pauses.push(timer);
        let epoch = r.epoch("a");
        assert_eq!(
            acts(&r.on(Input::Timer {
                service: "a".into(),
                epoch
            })),
            ["start a"]
        );
        r.started("a");
    }
    assert_eq!(
        pauses,
        [
            "timer a 100ms",
            "timer a 200ms",
            "timer a 400ms",
            "timer a 800ms"
        ]
    );
    assert_eq!(r.state("b"), ServiceState::Ready);
    // After a stable run the backoff starts over.
    r.at(STABLE_AFTER);
    let e = r.exited("a", 1);
    assert!(acts(&e).contains(&"timer a 100ms".to_string()));
}

#[test]
fn a_crash_loop_is_shown_as_such_and_under_restart_no_a_crash_stays_crashed() {
    let (mut r, _) =
        Run::new("services:\n  a: { command: x, restart: always }\n  b: { command: y }\n");
    r.started("a");
    r.started("b");
    let mut last = Vec::new();
    for _ in 0..3 {
        last = r.exited("a", 2);
        let epoch = r.epoch("a");
        r.on(Input::Timer {
            service: "a".into(),
            epoch,
        });
        r.started("a");
    }
    assert!(published(&last)
        .iter()
        .any(|e| matches!(e, StackEvent::Backoff { crashes: 3, .. })));

    let (mut r, _) = Run::new("services:\n  a: { command: x }\n  b: { command: y }\n");
    r.started("a");
    r.started("b");
    let e = r.exited("a", 137);
    assert_eq!(acts(&e), Vec::<String>::new());
    assert_eq!(r.state("a"), ServiceState::Crashed { code: 137 });
    assert_eq!(r.state("b"), ServiceState::Ready);
}

#[test]
fn during_startup_a_crash_loop_or_a_passed_timeout_fails_the_wait() {
    let yaml =
        "services:\n  a: { command: x, restart: on-failure, ready: { log: ok, timeout: 5s } }\n";
    let (mut r, _) = Run::new(yaml);
    r.started("a");
    r.exited("a", 1);
    r.on(Input::Timer {
        service: "a".into(),
        epoch: 1,
    });
    r.started("a");
    r.exited("a", 1);
    r.on(Input::Timer {
        service: "a".into(),
        epoch: 2,
    });
    r.started("a");
    let e = r.exited("a", 1);
    assert!(acts(&e)[0].starts_with("finish NotReady"), "{e:?}");
    assert!(format!("{e:?}").contains("crash loop"));

    // A slow crasher: the next start would come after the timeout.
    let (mut r, _) = Run::new(yaml);
    r.started("a");
    r.at(Duration::from_secs(5));
    let e = r.exited("a", 1);
    assert!(format!("{:?}", acts(&e)).contains("cannot be ready within its 5s timeout"));
}

#[test]
fn exit_127_is_a_configuration_fault_not_retried() {
    let (mut r, _) = Run::new("services:\n  a: { command: x, restart: always }\n");
    r.started("a");
    let e = r.exited("a", 127);
    assert!(!acts(&e).iter().any(|a| a.starts_with("timer")));
    assert!(format!("{e:?}").contains("its command was not found"));
}

#[test]
fn reloads_during_a_stop_coalesce_into_one_start() {
    let (mut r, _) = two_processes();
    r.up("web");
    r.started("other");
    let change = |r: &mut Run| {
        r.on(Input::FilesChanged {
            service: "web".into(),
            paths: vec!["a.py".into()],
        })
    };
    assert_eq!(acts(&change(&mut r)), ["stop web"]);
    for _ in 0..50 {
        assert_eq!(acts(&change(&mut r)), Vec::<String>::new());
    }
    assert_eq!(acts(&r.stopped("web")), ["start web"]);
}

#[test]
fn shutdown_stops_dependents_first_and_escalates() {
    let (mut r, _) = Run::new(
        "services:\n  db: { image: pg }\n  api: { command: a, depends_on: [db] }\n  web: { command: w, depends_on: [api] }\n",
    );
    r.started("db");
    r.started("api");
    r.started("web");
    assert_eq!(acts(&r.on(Input::Interrupt)), ["stop web"]);
    assert_eq!(acts(&r.stopped("web")), ["stop api"]);
    // Second Ctrl-C: kill at once, not queued behind the graceful stop.
    assert_eq!(acts(&r.on(Input::Interrupt)), ["kill db", "kill api"]);
    r.stopped("api");
    assert_eq!(
        acts(&r.stopped("db")),
        [format!("finish {:?}", Outcome::Stopped)]
    );

    let (mut r, _) = Run::new("services:\n  db: { image: pg }\n  x: { image: x }\n");
    r.started("db");
    r.on(Input::Interrupt);
    r.on(Input::Interrupt);
    assert_eq!(
        acts(&r.on(Input::Interrupt)),
        [format!("finish {:?}", Outcome::Abandoned)],
        "the third exits without waiting"
    );
}

#[test]
fn an_interrupt_during_startup_is_interrupted_and_nothing_starts_after_it() {
    let (mut r, _) = Run::new(YAML);
    r.started("db");
    let e = r.on(Input::Interrupt);
    assert_eq!(acts(&e), ["stop zk", "stop db"]);
    r.stopped("db");
    let e = r.stopped("zk");
    assert_eq!(acts(&e), [format!("finish {:?}", Outcome::Interrupted)]);
}

#[test]
fn wait_mode_finishes_ready_and_leaves_things_running() {
    let (mut r, _) = Run::with("services:\n  db: { image: pg }\n", true);
    let e = r.started("db");
    assert_eq!(acts(&e), [format!("finish {:?}", Outcome::Ready)]);
}

#[test]
fn stop_start_and_restart_commands() {
    let (mut r, _) = Run::new(
        "services:\n  db: { image: pg, ready: { log: ok } }\n  api: { command: a, depends_on: [db] }\n",
    );
    r.up("db");
    r.started("api");
    assert_eq!(
        acts(&r.on(Input::Command(Command::Stop("db".into())))),
        ["stop db"]
    );
    r.stopped("db");
    assert_eq!(r.state("db"), ServiceState::Stopped);
    assert_eq!(
        r.state("api"),
        ServiceState::Ready,
        "a stop is of one service"
    );
    // File changes leave a stopped service alone.
    r.on(Input::FilesChanged {
        service: "db".into(),
        paths: vec!["x".into()],
    });
    assert_eq!(r.state("db"), ServiceState::Stopped);
    // Start api: its dependency db is started first.
    r.on(Input::Command(Command::Stop("api".into())));
    r.stopped("api");
    let e = r.on(Input::Command(Command::Start("api".into())));
    assert_eq!(acts(&e), ["start db"]);
    r.started("db");
    assert_eq!(acts(&r.ready("db")), ["start api"]);
    // Restart of a running service: stop, then start.
    r.started("api");
    assert_eq!(
        acts(&r.on(Input::Command(Command::Restart("api".into())))),
        ["stop api"]
    );
    assert_eq!(acts(&r.stopped("api")), ["start api"]);
    assert_eq!(
        r.k.views().find(|v| v.service == "api").unwrap().restarts,
        1
    );
}

#[test]
fn a_dependency_restart_restarts_dependents_that_asked_for_it() {
    let (mut r, _) = Run::new(
        "services:\n  db: { image: pg, ready: { log: ok } }\n  api: { command: a, depends_on: { db: { condition: ready, restart: true } } }\n  other: { command: o, depends_on: [db] }\n",
    );
    r.up("db");
    r.started("api");
    r.started("other");
    r.on(Input::Command(Command::Restart("db".into())));
    r.stopped("db");
    r.started("db");
    let e = r.ready("db");
    assert_eq!(acts(&e), ["stop api"], "only api asked for restart: true");
}

#[test]
fn quick_edits_by_a_person_are_not_a_loop() {
    // A person (or an editor's autosave) saving the same file 0.8 s after each restart: every
    // save restarts the service, however many there are.
    let (mut r, _) = Run::new("services:\n  web: { command: w }\n");
    r.started("web");
    for _ in 0..RELOAD_LOOP_COUNT * 2 {
        r.at(Duration::from_millis(800));
        let e = r.on(Input::FilesChanged {
            service: "web".into(),
            paths: vec!["app.py".into()],
        });
        assert_eq!(acts(&e), ["stop web"], "each save restarts");
        assert!(!published(&e)
            .iter()
            .any(|e| matches!(e, StackEvent::Warning { .. })));
        r.stopped("web");
        r.started("web");
    }
}

#[test]
fn a_file_that_changes_at_every_restart_is_detected_as_a_loop() {
    let (mut r, _) = Run::new("services:\n  web: { command: w }\n");
    r.started("web");
    let mut warned = None;
    for i in 0..RELOAD_LOOP_COUNT {
        r.at(Duration::from_millis(200));
        let e = r.on(Input::FilesChanged {
            service: "web".into(),
            paths: vec!["up.log".into(), format!("other-{i}")],
        });
        if let Some(StackEvent::Warning { text, .. }) = published(&e)
            .into_iter()
            .find(|e| matches!(e, StackEvent::Warning { .. }))
        {
            warned = Some(text.clone());
        }
        if r.state("web") == ServiceState::Stopping {
            r.stopped("web");
            r.started("web");
        }
    }
    let text = warned.expect("a warning about the loop");
    assert!(r.k.nodes["web"].reloads.is_empty());
    assert!(
        text.contains("`up.log`") && text.contains("watch.ignore"),
        "{text}"
    );
    // From now on that file alone restarts nothing; another file still does.
    let e = r.on(Input::FilesChanged {
        service: "web".into(),
        paths: vec!["up.log".into()],
    });
    assert_eq!(acts(&e), Vec::<String>::new());
    let e = r.on(Input::FilesChanged {
        service: "web".into(),
        paths: vec!["app.py".into()],
    });
    assert_eq!(acts(&e), ["stop web"]);
}

#[test]
fn stale_events_of_an_old_instance_are_ignored() {
    let (mut r, _) = Run::new("services:\n  a: { command: x, ready: { log: ok } }\n");
    r.started("a");
    r.on(Input::Command(Command::Restart("a".into())));
    r.stopped("a");
    // Ready of epoch 1 arrives after epoch 2 started.
    let e = r.on(Input::Ready {
        service: "a".into(),
        epoch: 1,
    });
    assert_eq!(acts(&e), Vec::<String>::new());
    assert_eq!(r.state("a"), ServiceState::Starting);
}

#[test]
fn backoff_doubles_to_a_cap() {
    let got: Vec<u128> = (1..=12).map(|n| backoff(n).as_millis()).collect();
    assert_eq!(
        got,
        [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
    );
    assert_eq!(backoff(1000), BACKOFF_CAP);
    assert!(!restarts(RestartPolicy::No, 1));
    assert!(restarts(RestartPolicy::OnFailure, 1));
    assert!(!restarts(RestartPolicy::OnFailure, 0));
    assert!(restarts(RestartPolicy::Always, 0));
}

#[test]
fn a_person_saving_the_same_file_again_and_again_is_not_a_loop() {
    let (mut r, _) = Run::new("services:\n  web: { command: w }\n");
    r.started("web");
    for _ in 0..10 {
        r.at(Duration::from_secs(5));
        let e = r.on(Input::FilesChanged {
            service: "web".into(),
            paths: vec!["app.py".into()],
        });
        assert_eq!(acts(&e), ["stop web"], "every save restarts");
        r.stopped("web");
        r.started("web");
    }
}

// ---- Images, builds and task checks: the decisions the engine used to take itself. ----

const TASKS: &str = "
services:
  db: { image: pg, ready: { log: ok } }
  migrate: { command: ./migrate, depends_on: [db], task: { sources: [m.sql] } }
  api: { command: ./api, depends_on: { db: ready, migrate: completed } }
";

fn checked(r: &mut Run, s: &str, verdict: TaskVerdict) -> Vec<Effect> {
    let epoch = r.epoch(s);
    r.on(Input::TaskChecked {
        service: s.into(),
        epoch,
        verdict,
    })
}

fn up_to_date() -> TaskVerdict {
    TaskVerdict::UpToDate {
        reason: "sources unchanged".into(),
        after_ms: 3,
    }
}

fn detail(r: &Run, s: &str) -> Option<&'static str> {
    r.k.views().find(|v| v.service == s).and_then(|v| v.detail)
}

#[test]
fn a_task_is_checked_before_it_runs_and_an_up_to_date_one_completes_unrun() {
    let (mut r, _) = Run::new(TASKS);
    r.up("db");
    // The start of a skippable task is a check first, with a readable detail; nothing runs.
    let migrate_epoch = r.epoch("migrate");
    assert_eq!(detail(&r, "migrate"), Some("checking task"));
    assert_eq!(r.state("migrate"), ServiceState::Starting);
    assert!(!r.k.views().any(|v| v.service == "migrate" && v.running));
    // A stale answer (an older epoch) changes nothing.
    let stale = r.on(Input::TaskChecked {
        service: "migrate".into(),
        epoch: migrate_epoch - 1,
        verdict: up_to_date(),
    });
    assert!(acts(&stale).is_empty());
    let e = checked(&mut r, "migrate", up_to_date());
    assert_eq!(acts(&e), ["start api"]);
    assert_eq!(r.state("migrate"), ServiceState::Completed);
    assert!(published(&e)
        .iter()
        .any(|ev| matches!(ev, StackEvent::Skipped { service, .. } if service == "migrate")));
    // Not running: no exit is told, and no stop is needed at shutdown.
    assert!(!published(&e)
        .iter()
        .any(|ev| matches!(ev, StackEvent::Exited { .. })));
}

#[test]
fn a_task_that_must_run_starts_once_its_check_says_so() {
    let (mut r, _) = Run::new(TASKS);
    r.started("db");
    assert_eq!(acts(&r.ready("db")), ["check migrate"]);
    let e = checked(&mut r, "migrate", TaskVerdict::Run);
    assert_eq!(acts(&e), ["start migrate"]);
    assert_eq!(detail(&r, "migrate"), None);
    r.started("migrate");
    assert_eq!(acts(&r.exited("migrate", 0)), ["start api"]);
}

/// The race "a task's up-to-date answer starts it only if the kernel still wants that start"
/// patched in the engine: a check overtaken by a stop, by a newer start or by a shutdown.
#[test]
fn a_check_overtaken_by_a_stop_a_restart_or_a_shutdown_is_stale() {
    type Overtake = fn(&mut Run) -> Vec<Effect>;
    let table: [(&str, Overtake); 3] = [
        ("stop", |r| {
            r.on(Input::Command(Command::Stop("migrate".into())))
        }),
        ("restart", |r| {
            r.on(Input::Command(Command::Restart("migrate".into())))
        }),
        ("shutdown", |r| r.on(Input::Command(Command::Shutdown))),
    ];
    for (what, overtake) in table {
        let (mut r, _) = Run::new(TASKS);
        r.up("db");
        let asked = r.epoch("migrate");
        let e = overtake(&mut r);
        assert!(
            !acts(&e).contains(&"start migrate".to_string()),
            "{what}: {:?}",
            acts(&e)
        );
        let late = r.on(Input::TaskChecked {
            service: "migrate".into(),
            epoch: asked,
            verdict: TaskVerdict::Run,
        });
        assert!(
            acts(&late).is_empty(),
            "{what}: the old answer starts nothing"
        );
        match what {
            "stop" => assert_eq!(r.state("migrate"), ServiceState::Stopped),
            // The restart asked again, under a new epoch, and that answer counts.
            "restart" => {
                assert_eq!(detail(&r, "migrate"), Some("checking task"));
                assert_eq!(
                    acts(&checked(&mut r, "migrate", TaskVerdict::Run)),
                    ["start migrate"]
                );
            }
            _ => assert_eq!(r.state("migrate"), ServiceState::Stopped),
        }
    }
}

const BUILT: &str = "
services:
  db: { image: pg, ready: { log: ok } }
  api: { image: api, build: ., depends_on: [db] }
  web: { image: web, build: ./web }
";

fn building(yaml: &str, services: &[&str]) -> (Run, Vec<Effect>) {
    let s = stack(yaml);
    let mut k = Kernel::new(&s, &all(&s), false);
    k.building(&services.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let now = Instant::now();
    let first = k.begin(now);
    (Run { k, now }, first)
}

fn built(r: &mut Run, services: &[&str], failure: Option<&str>) -> Vec<Effect> {
    r.on(Input::ImageBuilt {
        services: ServiceName::list(services),
        failure: failure.map(str::to_string),
    })
}

#[test]
fn a_start_waits_for_its_image_and_goes_ahead_once_built() {
    let (mut r, first) = building(BUILT, &["api", "web"]);
    assert_eq!(acts(&first), ["start db"], "web waits for its image");
    assert_eq!(detail(&r, "web"), Some("waiting for image"));
    r.started("db");
    assert_eq!(acts(&r.ready("db")), Vec::<String>::new(), "api waits too");
    assert_eq!(acts(&built(&mut r, &["web"], None)), ["start web"]);
    assert_eq!(acts(&built(&mut r, &["api"], None)), ["start api"]);
    assert_eq!(detail(&r, "api"), None);
}

#[test]
fn a_failed_build_fails_its_waiting_start_and_ends_start_up() {
    let (mut r, _) = building(BUILT, &["api", "web"]);
    r.up("db");
    let e = built(
        &mut r,
        &["web"],
        Some("the build of `web` failed: RUN exit 1"),
    );
    let failed: Vec<(&str, &str)> = published(&e)
        .iter()
        .filter_map(|ev| match ev {
            StackEvent::NotReady {
                service, reason, ..
            } => Some((service.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    // The failed build's own service fails, with its reason; that ends start-up, and the start
    // still waiting for another image is stopped with everything else.
    assert_eq!(failed, [("web", "the build of `web` failed: RUN exit 1")]);
    assert_eq!(acts(&e), ["stop db"], "start-up ends: what runs is stopped");
    assert_eq!(r.state("api"), ServiceState::Stopped);
    assert_eq!(detail(&r, "web"), Some("build failed"));
}

#[test]
fn a_failed_build_with_no_start_waiting_stops_the_run() {
    let (mut r, _) = building("services:\n  db: { image: pg }\n  late: { image: l, build: ., depends_on: { db: ready } }\n", &["late"]);
    // `late` has not been asked to start (db is not ready): nothing waits for the image.
    let e = built(&mut r, &["late"], Some("the build of `l` failed"));
    assert_eq!(acts(&e), ["stop db"]);
    r.stopped("db");
    assert_eq!(r.state("late"), ServiceState::Stopped);
}

#[test]
fn a_shutdown_while_a_start_waits_for_its_image_stops_nothing_that_never_ran() {
    let (mut r, _) = building(BUILT, &["api", "web"]);
    let e = r.on(Input::Command(Command::Shutdown));
    assert_eq!(acts(&e), ["stop db"], "web never ran: no stop for it");
    assert_eq!(r.state("web"), ServiceState::Stopped);
    // The build that ends afterwards starts nothing.
    assert!(acts(&built(&mut r, &["web"], None)).is_empty());
    assert_eq!(acts(&r.stopped("db")), ["finish Interrupted"]);
}

#[test]
fn a_rebuilt_image_recreates_the_container_at_the_restart() {
    let (mut r, _) = Run::new("services:\n  web: { image: web, build: . }\n");
    r.up("web");
    let e = r.on(Input::ImageRebuilt {
        service: "web".into(),
        image: "web".into(),
    });
    assert_eq!(acts(&e), ["stop web"]);
    assert!(published(&e).iter().any(
        |ev| matches!(ev, StackEvent::Restarting { reason, .. } if reason.contains("image `web`"))
    ));
    assert_eq!(acts(&r.stopped("web")), ["recreate web"]);
    // Only that once: a later restart reuses the new container.
    r.up("web");
    r.on(Input::Command(Command::Restart("web".into())));
    assert_eq!(acts(&r.stopped("web")), ["start web"]);
}

// ---- The stack file is live: a new config in, its plan carried out. ----

const LIVE: &str = "
services:
  db: { image: pg, ready: { log: ok } }
  api: { command: api, depends_on: { db: { condition: ready, restart: true } }, environment: { LOG: info } }
  web: { command: web, depends_on: [api] }
  worker: { command: worker }
";

/// Every service of `yaml` as the kernel is to run it (identity: the fields, as a hash would).
fn desired(yaml: &str) -> IndexMap<String, Spec> {
    let s = crate::config::test_stack_here(yaml);
    let all = all(&s);
    let none = crate::plan::HostPorts::default();
    s.services
        .iter()
        .map(|(n, svc)| {
            let identity = svc
                .is_container()
                .then(|| format!("{:?}", plan::fields(svc, &none)));
            (n.clone(), Spec::of(svc, &all, &none, identity))
        })
        .collect()
}

/// `LIVE`, everything up, with the kernel's specs as `desired` makes them.
fn live() -> Run {
    let mut k = Kernel::with_specs(desired(LIVE), false);
    let now = Instant::now();
    k.begin(now);
    let mut r = Run { k, now };
    r.up("db");
    r.started("api");
    r.started("web");
    r.started("worker");
    assert!(!r.k.is_starting_up());
    r
}

fn applied(effects: &[Effect]) -> Vec<(String, ChangeAction)> {
    published(effects)
        .iter()
        .find_map(|e| match e {
            StackEvent::ConfigApplied { changes, .. } => Some(
                changes
                    .iter()
                    .map(|c| (c.service.to_string(), c.action))
                    .collect(),
            ),
            _ => None,
        })
        .expect("the plan is published")
}

#[test]
fn config_a_no_op_save_publishes_the_plan_and_bounces_nothing() {
    let mut r = live();
    let epochs: Vec<u64> = ["db", "api", "web", "worker"].map(|s| r.epoch(s)).to_vec();
    let e = r.on(Input::Desired(desired(LIVE)));
    assert_eq!(acts(&e), Vec::<String>::new());
    assert!(applied(&e)
        .iter()
        .all(|(_, a)| *a == ChangeAction::Unchanged));
    assert_eq!(
        ["db", "api", "web", "worker"].map(|s| r.epoch(s)).to_vec(),
        epochs
    );
    // Positive control: a real change does act.
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("LOG: info", "LOG: debug"),
    )));
    assert_eq!(acts(&e), ["stop api"]);
}

#[test]
fn config_a_changed_process_stops_then_starts_on_a_new_unit() {
    let mut r = live();
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("LOG: info", "LOG: debug"),
    )));
    assert_eq!(
        applied(&e),
        [
            ("db".to_string(), ChangeAction::Unchanged),
            ("api".to_string(), ChangeAction::Restart),
            ("web".to_string(), ChangeAction::Unchanged),
            ("worker".to_string(), ChangeAction::Unchanged),
        ]
    );
    assert_eq!(acts(&e), ["stop api"]);
    assert!(published(&e).iter().any(|ev| matches!(ev,
        StackEvent::Restarting { service, reason } if service == "api" && reason == "config changed: environment.LOG")));
    assert_eq!(acts(&r.stopped("api")), ["recreate api"]);
    // Only once: the next start is a plain one.
    r.started("api");
    let e = r.on(Input::Command(Command::Restart("api".into())));
    assert_eq!(acts(&e), ["stop api"]);
    assert_eq!(acts(&r.stopped("api")), ["start api"]);
}

#[test]
fn config_a_recreated_container_restarts_the_dependents_that_asked_once_it_is_ready() {
    let mut r = live();
    let new = LIVE.replace("image: pg", "image: pg, environment: { X: \"1\" }");
    let e = r.on(Input::Desired(desired(&new)));
    let plan = applied(&e);
    assert_eq!(plan[0], ("db".to_string(), ChangeAction::Recreate));
    assert_eq!(plan[1], ("api".to_string(), ChangeAction::Restart));
    assert_eq!(plan[2], ("web".to_string(), ChangeAction::Unchanged));
    assert_eq!(acts(&e), ["stop db"], "api waits for db to be ready again");
    assert_eq!(acts(&r.stopped("db")), ["recreate db"]);
    assert_eq!(acts(&r.started("db")), ["probe db"]);
    assert_eq!(acts(&r.ready("db")), ["stop api"], "`restart: true`");
    // web has no `restart: true`: untouched.
    assert_eq!(r.state("web"), ServiceState::Ready);
}

#[test]
fn config_a_new_service_starts_once_its_dependencies_are_ready() {
    let mut r = live();
    let new = format!("{LIVE}  beat: {{ command: beat, depends_on: [db] }}\n");
    let e = r.on(Input::Desired(desired(&new)));
    assert_eq!(
        applied(&e).last().unwrap(),
        &("beat".to_string(), ChangeAction::Start)
    );
    assert_eq!(acts(&e), ["start beat"]);
    assert_eq!(r.state("beat"), ServiceState::Starting);
}

#[test]
fn config_removed_services_stop_dependents_first_then_go() {
    let mut r = live();
    let e = r.on(Input::Desired(desired(
        "services:\n  worker: { command: worker }\n",
    )));
    assert_eq!(
        applied(&e)[..3],
        [
            ("web".to_string(), ChangeAction::Stop),
            ("api".to_string(), ChangeAction::Stop),
            ("db".to_string(), ChangeAction::Stop),
        ]
    );
    assert_eq!(acts(&e), ["stop web"], "dependents first");
    assert_eq!(acts(&r.stopped("web")), ["remove web", "stop api"]);
    assert_eq!(acts(&r.stopped("api")), ["remove api", "stop db"]);
    assert_eq!(acts(&r.stopped("db")), ["remove db"]);
    assert!(r.k.state("db").is_none());
    assert_eq!(r.state("worker"), ServiceState::Ready);
    // A removed service cannot be started by a person any more.
    assert_eq!(
        acts(&r.on(Input::Command(Command::Start("db".into())))),
        Vec::<String>::new()
    );
}

#[test]
fn config_a_later_plan_supersedes_one_still_carrying_out() {
    let mut r = live();
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("LOG: info", "LOG: debug"),
    )));
    assert_eq!(acts(&e), ["stop api"]);
    // A second edit while api is still stopping: one start, of the newest definition.
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("LOG: info", "LOG: trace"),
    )));
    assert_eq!(
        acts(&e),
        Vec::<String>::new(),
        "already stopping: coalesced"
    );
    assert_eq!(acts(&r.stopped("api")), ["recreate api"]);
    let epoch = r.epoch("api");
    // A third one after it started: a new epoch, the old instance's answers are stale.
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("LOG: info", "LOG: warn"),
    )));
    assert_eq!(acts(&e), ["stop api"]);
    let stale = r.on(Input::Started {
        service: "api".into(),
        epoch: epoch - 1,
        pid: Some(9),
        container: None,
        detail: String::new(),
    });
    assert_eq!(acts(&stale), Vec::<String>::new());
    assert_eq!(acts(&r.stopped("api")), ["recreate api"]);
    assert_eq!(r.epoch("api"), epoch + 1);
}

#[test]
fn config_a_service_a_person_stopped_changes_but_stays_stopped() {
    let mut r = live();
    r.on(Input::Command(Command::Stop("worker".into())));
    r.stopped("worker");
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("command: worker", "command: worker2"),
    )));
    assert_eq!(
        applied(&e)[3],
        ("worker".to_string(), ChangeAction::Restart)
    );
    assert_eq!(acts(&e), Vec::<String>::new());
    assert_eq!(r.state("worker"), ServiceState::Stopped);
    // Started again by a person: the new definition, on a new unit.
    let e = r.on(Input::Command(Command::Start("worker".into())));
    assert_eq!(acts(&e), ["recreate worker"]);
}

#[test]
fn config_an_apply_during_shutdown_is_ignored() {
    let mut r = live();
    let e = r.on(Input::Interrupt);
    assert!(!acts(&e).is_empty());
    let e = r.on(Input::Desired(desired(
        &LIVE.replace("LOG: info", "LOG: debug"),
    )));
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn config_an_apply_during_start_up_joins_it() {
    let mut k = Kernel::with_specs(desired(LIVE), false);
    let now = Instant::now();
    let first = k.begin(now);
    assert_eq!(acts(&first), ["start db", "start worker"]);
    let mut r = Run { k, now };
    let new = format!("{LIVE}  beat: {{ command: beat, depends_on: [db] }}\n");
    let e = r.on(Input::Desired(desired(&new)));
    assert_eq!(acts(&e), Vec::<String>::new(), "beat waits for db");
    let e = r.up("db");
    assert_eq!(acts(&e), ["probe db", "start api", "start beat"]);
    r.started("api");
    r.started("web");
    let e = r.started("worker");
    assert!(
        published(&e).is_empty() || r.k.is_starting_up(),
        "beat not started yet"
    );
    let e = r.started("beat");
    assert!(published(&e)
        .iter()
        .any(|ev| matches!(ev, StackEvent::AllReady { services: 5, .. })));
}

const SEEDED: &str = "
services:
  db: { image: pg, ready: { log: ok }, seed: psql -f /seed.sql }
  cache: { image: redis, seed: [redis-cli, set, k, v] }
  api: { image: api, depends_on: { db: ready, cache: ready } }
  side: { image: s, depends_on: { db: started } }
";

fn seeded(r: &mut Run, s: &str, result: Result<SeedDone, String>) -> Vec<Effect> {
    let epoch = r.epoch(s);
    r.on(Input::Seeded {
        service: s.into(),
        epoch,
        result,
    })
}

fn ran() -> Result<SeedDone, String> {
    Ok(SeedDone {
        ran: true,
        reason: "first ready".into(),
        after_ms: 40,
    })
}

#[test]
fn a_seeded_service_is_ready_only_once_its_seed_is_done() {
    let (mut r, _) = Run::new(SEEDED);
    // The probe passing is not ready yet: the seed comes first; a `started` dependent goes.
    let e = r.up("db");
    assert_eq!(acts(&e), ["probe db", "start side", "seed db"]);
    assert_eq!(r.state("db"), ServiceState::Seeding);
    assert!(!published(&e)
        .iter()
        .any(|ev| matches!(ev, StackEvent::Ready { .. })));
    // Without a probe, the seed follows the start.
    let e = r.started("cache");
    assert_eq!(acts(&e), ["seed cache"]);
    // A stale answer (an older epoch) changes nothing.
    let stale = r.on(Input::Seeded {
        service: "db".into(),
        epoch: r.epoch("db") - 1,
        result: ran(),
    });
    assert!(acts(&stale).is_empty());
    assert_eq!(r.state("db"), ServiceState::Seeding);
    // Done: `Seeded` then `Ready`, and the dependent waiting for both starts after the second.
    let e = seeded(&mut r, "db", ran());
    let events = published(&e);
    let seeded_at = events.iter().position(
        |ev| matches!(ev, StackEvent::Seeded { service, ran: true, .. } if service == "db"),
    );
    let ready_at = events
        .iter()
        .position(|ev| matches!(ev, StackEvent::Ready { service, .. } if service == "db"));
    assert!(seeded_at.is_some() && seeded_at < ready_at, "{events:?}");
    assert!(acts(&e).is_empty(), "api still waits for cache");
    let skipped = Ok(SeedDone {
        ran: false,
        reason: "done for this data, sources unchanged".into(),
        after_ms: 2,
    });
    let e = seeded(&mut r, "cache", skipped);
    assert_eq!(acts(&e), ["start api"]);
    assert_eq!(r.state("cache"), ServiceState::Ready);
}

#[test]
fn a_failed_seed_fails_start_up_and_a_stop_during_a_seed_makes_its_answer_stale() {
    let (mut r, _) = Run::new(SEEDED);
    r.up("db");
    let e = seeded(&mut r, "db", Err("its seed exited with code 3".into()));
    assert!(matches!(r.state("db"), ServiceState::Failed { reason } if reason.contains("code 3")));
    // Start-up ends: everything started stops, dependents first.
    assert_eq!(acts(&e), ["stop cache", "stop side"]);
    assert_eq!(acts(&r.stopped("side")), ["stop db"]);
    assert!(published(&e)
        .iter()
        .any(|ev| matches!(ev, StackEvent::NotReady { service, .. } if service == "db")));

    // After start-up: a person stops a service while it seeds; the late answer is ignored.
    let (mut r, _) = Run::new("services:\n  db: { image: pg, seed: x }\n");
    r.started("db");
    seeded(&mut r, "db", ran());
    assert_eq!(r.state("db"), ServiceState::Ready);
    let e = r.on(Input::Command(Command::Restart("db".into())));
    assert_eq!(acts(&e), ["stop db"]);
    r.stopped("db");
    r.started("db");
    assert_eq!(r.state("db"), ServiceState::Seeding);
    let e = r.on(Input::Command(Command::Stop("db".into())));
    assert_eq!(acts(&e), ["stop db"]);
    let late = seeded(&mut r, "db", ran());
    assert!(acts(&late).is_empty());
    assert_eq!(r.state("db"), ServiceState::Stopping);
    // Positive control: started again, its seed's answer counts.
    r.stopped("db");
    r.on(Input::Command(Command::Start("db".into())));
    r.started("db");
    seeded(&mut r, "db", ran());
    assert_eq!(r.state("db"), ServiceState::Ready);
}
