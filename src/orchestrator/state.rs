//! The start-up state machine: which service may start now, when the stack is ready, and when
//! start-up has failed. Pure: events in, decisions out; no clock, no I/O.

use indexmap::IndexMap;

use crate::config::{Condition, Stack};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for dependencies.
    Waiting,
    /// Told to start; not running yet.
    Starting,
    /// Running, readiness not yet shown.
    Running,
    Ready,
    /// Exited 0 (a one-shot task that did its job).
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Started(String),
    Ready(String),
    Exited {
        service: String,
        code: i64,
    },
    /// Could not be started or never got ready (timeout, probe, engine error).
    Failed {
        service: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Start(String),
    /// Every service is ready (or completed). Given once.
    AllReady,
    /// Start-up cannot succeed: stop what was started and report.
    Abort {
        service: String,
        reason: String,
    },
    /// A service exited after start-up finished; the stack keeps running.
    Exited {
        service: String,
        code: i64,
    },
}

#[derive(Debug, Clone)]
struct Node {
    deps: Vec<(String, Condition)>,
    has_probe: bool,
    phase: Phase,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    nodes: IndexMap<String, Node>,
    all_ready_sent: bool,
    aborted: bool,
}

impl Scheduler {
    /// `selected`: the services to run (with their dependencies already included).
    pub fn new(stack: &Stack, selected: &[String]) -> Self {
        let nodes = selected
            .iter()
            .filter_map(|name| {
                let svc = stack.services.get(name)?;
                Some((
                    name.clone(),
                    Node {
                        deps: svc
                            .depends_on
                            .iter()
                            .filter(|(d, _)| selected.contains(d))
                            .map(|(d, c)| (d.clone(), *c))
                            .collect(),
                        has_probe: svc.ready.is_some(),
                        phase: Phase::Waiting,
                    },
                ))
            })
            .collect();
        Self {
            nodes,
            all_ready_sent: false,
            aborted: false,
        }
    }

    pub fn phase(&self, service: &str) -> Option<Phase> {
        self.nodes.get(service).map(|n| n.phase)
    }

    pub fn phases(&self) -> impl Iterator<Item = (&str, Phase)> {
        self.nodes.iter().map(|(k, n)| (k.as_str(), n.phase))
    }

    /// What can start right away.
    pub fn begin(&mut self) -> Vec<Decision> {
        let mut out = self.startable();
        out.extend(self.check_all_ready());
        out
    }

    fn satisfied(&self, dep: &str, cond: Condition) -> bool {
        let Some(d) = self.nodes.get(dep) else {
            return true;
        };
        match cond {
            Condition::Started => {
                matches!(d.phase, Phase::Running | Phase::Ready | Phase::Completed)
            }
            Condition::Ready => matches!(d.phase, Phase::Ready | Phase::Completed),
            Condition::Completed => d.phase == Phase::Completed,
        }
    }

    fn startable(&mut self) -> Vec<Decision> {
        if self.aborted {
            return Vec::new();
        }
        let ready: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.phase == Phase::Waiting && n.deps.iter().all(|(d, c)| self.satisfied(d, *c))
            })
            .map(|(k, _)| k.clone())
            .collect();
        ready
            .into_iter()
            .map(|k| {
                if let Some(n) = self.nodes.get_mut(&k) {
                    n.phase = Phase::Starting;
                }
                Decision::Start(k)
            })
            .collect()
    }

    fn check_all_ready(&mut self) -> Option<Decision> {
        if self.all_ready_sent || self.aborted {
            return None;
        }
        if self
            .nodes
            .values()
            .all(|n| matches!(n.phase, Phase::Ready | Phase::Completed))
        {
            self.all_ready_sent = true;
            return Some(Decision::AllReady);
        }
        None
    }

    fn abort(&mut self, service: &str, reason: String) -> Vec<Decision> {
        if self.aborted {
            return Vec::new();
        }
        self.aborted = true;
        vec![Decision::Abort {
            service: service.to_string(),
            reason,
        }]
    }

    pub fn on(&mut self, input: Input) -> Vec<Decision> {
        let name = match &input {
            Input::Started(s) | Input::Ready(s) => s.clone(),
            Input::Exited { service, .. } | Input::Failed { service, .. } => service.clone(),
        };
        let Some(node) = self.nodes.get_mut(&name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match input {
            Input::Started(_) => {
                if node.phase == Phase::Starting {
                    // Without a probe, running is ready.
                    node.phase = if node.has_probe {
                        Phase::Running
                    } else {
                        Phase::Ready
                    };
                }
            }
            Input::Ready(_) => {
                if matches!(node.phase, Phase::Starting | Phase::Running) {
                    node.phase = Phase::Ready;
                }
            }
            Input::Exited { code, .. } => {
                let before = node.phase;
                let waits_for_completion = self.nodes.values().any(|n| {
                    n.deps
                        .iter()
                        .any(|(d, c)| d == &name && *c == Condition::Completed)
                });
                let node = self.nodes.get_mut(&name).expect("looked up above");
                if code == 0 && (before == Phase::Ready || waits_for_completion || !node.has_probe)
                {
                    node.phase = Phase::Completed;
                } else if !self.all_ready_sent {
                    node.phase = Phase::Failed;
                    let reason = if before == Phase::Ready {
                        format!("exited with code {code} during start-up")
                    } else {
                        format!("exited with code {code} before it was ready")
                    };
                    return self.abort(&name, reason);
                } else {
                    node.phase = Phase::Failed;
                }
                if self.all_ready_sent {
                    out.push(Decision::Exited {
                        service: name.clone(),
                        code,
                    });
                }
                // A `completed` dependency that failed can never be satisfied.
                if code != 0 && !self.all_ready_sent {
                    return self.abort(&name, format!("exited with code {code}"));
                }
            }
            Input::Failed { reason, .. } => {
                node.phase = Phase::Failed;
                return self.abort(&name, reason);
            }
        }
        out.extend(self.startable());
        out.extend(self.check_all_ready());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_stack as stack;

    const YAML: &str = "
services:
  zk: { image: zk, ready: { log: ok } }
  kafka: { image: kafka, depends_on: [zk], ready: { log: ok } }
  db: { image: pg, ready: { log: ok } }
  migrate: { image: m, depends_on: [db] }
  api: { image: api, depends_on: { db: ready, migrate: completed }, ready: { log: ok } }
  sidecar: { image: s, depends_on: { api: started } }
";

    fn all(s: &Stack) -> Vec<String> {
        s.services.keys().cloned().collect()
    }

    fn start(names: &[&str]) -> Vec<Decision> {
        names
            .iter()
            .map(|n| Decision::Start(n.to_string()))
            .collect()
    }

    #[test]
    fn starts_follow_conditions_and_nothing_waits_on_unrelated_services() {
        let s = stack(YAML);
        let mut m = Scheduler::new(&s, &all(&s));
        assert_eq!(m.begin(), start(&["zk", "db"]));
        assert_eq!(m.on(Input::Started("zk".into())), vec![]);
        assert_eq!(m.on(Input::Started("db".into())), vec![]);
        // db ready: migrate may start; kafka still waits for zk only.
        assert_eq!(m.on(Input::Ready("db".into())), start(&["migrate"]));
        assert_eq!(m.on(Input::Ready("zk".into())), start(&["kafka"]));
        // migrate has no probe: started means ready, but api waits for it to complete.
        assert_eq!(m.on(Input::Started("migrate".into())), vec![]);
        assert_eq!(
            m.on(Input::Exited {
                service: "migrate".into(),
                code: 0
            }),
            start(&["api"])
        );
        assert_eq!(
            m.on(Input::Started("api".into())),
            start(&["sidecar"]),
            "`started` does not wait for ready"
        );
        assert_eq!(m.on(Input::Started("sidecar".into())), vec![]);
        assert_eq!(m.on(Input::Started("kafka".into())), vec![]);
        assert_eq!(m.on(Input::Ready("kafka".into())), vec![]);
        assert_eq!(m.on(Input::Ready("api".into())), vec![Decision::AllReady]);
        // After start-up, an exit is reported, not an abort.
        assert_eq!(
            m.on(Input::Exited {
                service: "kafka".into(),
                code: 137
            }),
            vec![Decision::Exited {
                service: "kafka".into(),
                code: 137
            }]
        );
    }

    #[test]
    fn a_failure_aborts_once() {
        let s = stack(YAML);
        let mut m = Scheduler::new(&s, &all(&s));
        m.begin();
        m.on(Input::Started("db".into()));
        assert_eq!(
            m.on(Input::Failed {
                service: "db".into(),
                reason: "timed out".into()
            }),
            vec![Decision::Abort {
                service: "db".into(),
                reason: "timed out".into()
            }]
        );
        assert_eq!(
            m.on(Input::Failed {
                service: "zk".into(),
                reason: "x".into()
            }),
            vec![]
        );
        assert_eq!(
            m.on(Input::Ready("zk".into())),
            vec![],
            "nothing starts after an abort"
        );
    }

    #[test]
    fn exits_before_ready_and_failed_tasks_abort() {
        let s = stack(YAML);
        let mut m = Scheduler::new(&s, &all(&s));
        m.begin();
        m.on(Input::Started("zk".into()));
        assert_eq!(
            m.on(Input::Exited {
                service: "zk".into(),
                code: 1
            }),
            vec![Decision::Abort {
                service: "zk".into(),
                reason: "exited with code 1 before it was ready".into()
            }]
        );

        let mut m = Scheduler::new(&s, &all(&s));
        m.begin();
        m.on(Input::Started("db".into()));
        m.on(Input::Ready("db".into()));
        m.on(Input::Started("migrate".into()));
        let d = m.on(Input::Exited {
            service: "migrate".into(),
            code: 3,
        });
        assert!(
            matches!(&d[..], [Decision::Abort { service, .. }] if service == "migrate"),
            "{d:?}"
        );
    }

    #[test]
    fn a_subset_ignores_dependencies_outside_it() {
        let s = stack(YAML);
        let mut m = Scheduler::new(&s, &["zk".to_string()]);
        assert_eq!(m.begin(), start(&["zk"]));
        m.on(Input::Started("zk".into()));
        assert_eq!(m.on(Input::Ready("zk".into())), vec![Decision::AllReady]);
    }
}
