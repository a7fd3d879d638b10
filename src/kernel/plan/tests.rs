//! The config diff, one table row per kind of change: two stack files in, the plan out.

use super::*;
use crate::config::test_stack_here as stack;
use crate::runtime::Published;

const BASE: &str = "
services:
  db: { image: postgres:15, ports: [\"5432:5432\"], environment: { POSTGRES_PASSWORD: x } }
  api:
    command: python app.py
    depends_on: { db: { condition: started, restart: true } }
    environment: { LOG_LEVEL: info, DATABASE_URL: \"postgres://127.0.0.1:${port:db:5432}/app\" }
  worker: { command: celery worker, environment: { A: \"1\", B: \"2\" } }
";

/// The specs of every service; a container's identity stands for its config hash (its image
/// and the fields, as the real hash covers them).
fn specs(yaml: &str, ports: &HostPorts) -> IndexMap<String, Spec> {
    let s = stack(yaml);
    let all: Vec<String> = s.services.keys().cloned().collect();
    s.services
        .iter()
        .map(|(name, svc)| {
            let f = fields(svc, ports);
            let identity = svc.is_container().then(|| format!("{f:?}"));
            (name.clone(), Spec::of(svc, &all, ports, identity))
        })
        .collect()
}

fn plan(old: &str, new: &str) -> Vec<(String, ChangeAction, Vec<String>)> {
    plan_with_ports(old, new, &HostPorts::default(), &HostPorts::default())
}

fn plan_with_ports(
    old: &str,
    new: &str,
    old_ports: &HostPorts,
    new_ports: &HostPorts,
) -> Vec<(String, ChangeAction, Vec<String>)> {
    let before = specs(old, old_ports);
    let current: IndexMap<String, &Spec> = before.iter().map(|(k, v)| (k.clone(), v)).collect();
    diff(&current, &specs(new, new_ports))
        .into_iter()
        .map(|c| (c.service.into_string(), c.action, c.causes))
        .collect()
}

fn actions(p: &[(String, ChangeAction, Vec<String>)]) -> Vec<(&str, ChangeAction)> {
    p.iter().map(|(s, a, _)| (s.as_str(), *a)).collect()
}

use ChangeAction::{Recreate, Restart, Start, Stop, Unchanged};

#[test]
fn a_save_that_changes_nothing_bounces_nothing() {
    // Whitespace, a comment, keys in another order, the same list written the other way.
    let same = "
# a comment
services:
  worker: { environment: { B: \"2\", A: \"1\" },   command: celery worker }
  db:
    environment: [POSTGRES_PASSWORD=x]
    ports: [\"5432:5432\"]
    image: postgres:15
  api:
    environment: { DATABASE_URL: \"postgres://127.0.0.1:${port:db:5432}/app\", LOG_LEVEL: info }
    depends_on: { db: { condition: started, restart: true } }
    command: python app.py
";
    let p = plan(BASE, same);
    assert!(p.iter().all(|(_, a, _)| *a == Unchanged), "{p:?}");
    assert_eq!(p.len(), 3);
}

#[test]
fn each_kind_of_change_with_its_fields() {
    let cases: &[(&str, &str, &str, ChangeAction, &[&str])] = &[
        (
            "a process's environment",
            "LOG_LEVEL: info",
            "LOG_LEVEL: debug",
            Restart,
            &["environment.LOG_LEVEL"],
        ),
        (
            "a process's command",
            "command: python app.py",
            "command: python app.py --reload",
            Restart,
            &["command"],
        ),
        (
            "a container's environment",
            "POSTGRES_PASSWORD: x }",
            "POSTGRES_PASSWORD: y }",
            Recreate,
            &["environment.POSTGRES_PASSWORD"],
        ),
        (
            "a container's image",
            "image: postgres:15",
            "image: postgres:16",
            Recreate,
            &["image"],
        ),
        (
            "a variable added",
            "command: celery worker, environment: { A: \"1\"",
            "command: celery worker, environment: { C: \"3\", A: \"1\"",
            Restart,
            &["environment.C"],
        ),
    ];
    for (what, from, to, action, causes) in cases {
        let new = BASE.replacen(from, to, 1);
        assert_ne!(new, BASE, "{what}: the edit applies");
        let p = plan(BASE, &new);
        let changed: Vec<_> = p.iter().filter(|(_, a, _)| *a != Unchanged).collect();
        let (_, got, why) = changed
            .iter()
            .find(|(_, a, _)| a == action)
            .unwrap_or_else(|| panic!("{what}: {p:?}"));
        assert_eq!(got, action, "{what}");
        assert_eq!(why, causes, "{what}");
    }
}

#[test]
fn a_port_change_is_a_recreate_of_its_service_and_reaches_who_uses_it() {
    let new = BASE.replace("\"5432:5432\"", "\"5433:5432\"");
    let port = |host_port| {
        HostPorts(
            [(
                "db".to_string(),
                vec![Published {
                    host_ip: "127.0.0.1".parse().unwrap(),
                    host_port,
                    container_port: 5432,
                    protocol: crate::config::Protocol::Tcp,
                }],
            )]
            .into_iter()
            .collect(),
        )
    };
    let p = plan_with_ports(BASE, &new, &port(5432), &port(5433));
    let db = p.iter().find(|c| c.0 == "db").unwrap();
    assert_eq!(db.1, Recreate);
    assert!(db.2.iter().any(|c| c.starts_with("ports[0]")), "{db:?}");
    // `api` reads `${port:db:5432}`: its environment changes with it.
    let api = p.iter().find(|c| c.0 == "api").unwrap();
    assert_eq!(
        (api.1, api.2.clone()),
        (Restart, vec!["environment.DATABASE_URL".to_string()])
    );
    assert_eq!(p.iter().find(|c| c.0 == "worker").unwrap().1, Unchanged);
}

#[test]
fn added_and_removed_services() {
    let new = BASE.replace(
        "  worker: { command: celery worker, environment: { A: \"1\", B: \"2\" } }\n",
        "  beat: { command: celery beat }\n",
    );
    let p = plan(BASE, &new);
    assert_eq!(
        actions(&p),
        [
            ("worker", Stop),
            ("db", Unchanged),
            ("api", Unchanged),
            ("beat", Start)
        ]
    );
}

#[test]
fn removed_services_stop_dependents_first() {
    let old = "
services:
  db: { image: pg }
  api: { command: api, depends_on: [db] }
  web: { command: web, depends_on: [api] }
  other: { command: other }
";
    let p = plan(old, "services:\n  other: { command: other }\n");
    assert_eq!(
        actions(&p),
        [
            ("web", Stop),
            ("api", Stop),
            ("db", Stop),
            ("other", Unchanged)
        ]
    );
}

#[test]
fn a_dependent_with_restart_true_restarts_after_a_recreated_dependency() {
    let new = BASE.replace("POSTGRES_PASSWORD: x", "POSTGRES_PASSWORD: y");
    let p = plan(BASE, &new);
    assert_eq!(
        actions(&p),
        [("db", Recreate), ("api", Restart), ("worker", Unchanged)]
    );
    assert_eq!(p[1].2, ["after `db` (depends_on.db.restart)"]);
    // Without `restart: true`, it is left alone (Compose's rule).
    let no_restart = BASE.replace(
        "{ db: { condition: started, restart: true } }",
        "{ db: { condition: started } }",
    );
    let p = plan(
        &no_restart,
        &no_restart.replace("POSTGRES_PASSWORD: x", "POSTGRES_PASSWORD: y"),
    );
    assert_eq!(
        actions(&p),
        [("db", Recreate), ("api", Unchanged), ("worker", Unchanged)]
    );
}

#[test]
fn settings_applied_in_place_restart_nothing() {
    // The restart policy, grace period and dependencies are the kernel's own: no bounce.
    let new = BASE.replace(
        "command: celery worker,",
        "command: celery worker, restart: always, stop_grace_period: 3s, depends_on: [db],",
    );
    let p = plan(BASE, &new);
    assert!(p.iter().all(|(_, a, _)| *a == Unchanged), "{p:?}");
    let after = specs(&new, &HostPorts::default());
    assert_eq!(after["worker"].policy, RestartPolicy::Always);
    assert_eq!(after["worker"].deps.len(), 1);
}

#[test]
fn a_process_that_becomes_a_container_is_recreated() {
    let new = BASE.replace("command: celery worker,", "image: worker,");
    let p = plan(BASE, &new);
    assert_eq!(p.iter().find(|c| c.0 == "worker").unwrap().1, Recreate);
}
