//! The config plan: what a new stack file changes in a running stack. Each service's desired
//! definition is a [`Spec`] (what the kernel needs to supervise it, and its effective
//! definition flattened into fields); [`diff`] compares the running specs with the desired ones
//! and says, per service, `unchanged`, `restart`, `recreate`, `start` or `stop`, with the fields
//! that cause it. Pure: no files, no clock.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;

use crate::config::ServiceName;
use crate::config::{Condition, RestartPolicy, Service};
use crate::event::{ChangeAction, ConfigChange};
use crate::plan::HostPorts;

/// Start-up gives a crashing service without `ready:` this long before it fails the wait.
pub(super) const DEFAULT_STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Keys of a service that change how devstack supervises it, not what runs: a change to them
/// is applied in place, without a restart (the new policy, grace, probe or watch is used from
/// then on).
const IN_PLACE: &[&str] = &[
    "depends_on",
    "restart_with",
    "restart",
    "stop_grace_period",
    "ready",
    "watch",
    "develop",
    "k8s",
    "profiles",
    "task",
    "seed",
];

/// One service as the kernel is to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub deps: Vec<(String, Condition)>,
    pub restart_with: Vec<String>,
    pub has_probe: bool,
    pub policy: RestartPolicy,
    pub grace: Duration,
    pub ready_timeout: Duration,
    /// How soon after a start a change counts towards a reload loop.
    pub loop_lag: Duration,
    /// A task whose run is skipped when it is up to date.
    pub checked: bool,
    /// It has a `seed:`, run once its probe passes and before it counts as ready.
    pub seeded: bool,
    pub container: bool,
    /// A container's config hash (what `up` recreates by); `None` for a process, whose
    /// fields decide.
    pub identity: Option<String>,
    /// The effective definition, flattened (`environment.DATABASE_URL` → its value, with every
    /// `${port:…}` resolved), without the keys applied in place.
    pub fields: BTreeMap<String, String>,
}

impl Spec {
    /// `svc` within `selected` (dependencies outside it are not waited for); `identity` is its
    /// container's config hash, when known.
    pub(crate) fn of(
        svc: &Service,
        selected: &[String],
        ports: &HostPorts,
        identity: Option<String>,
    ) -> Self {
        Spec {
            deps: svc
                .depends_on
                .iter()
                .filter(|(d, _)| selected.contains(d))
                .map(|(d, c)| (d.clone(), *c))
                .collect(),
            restart_with: svc.restart_with.clone(),
            has_probe: svc.ready.is_some(),
            policy: svc.restart,
            grace: svc.stop_grace_period,
            ready_timeout: svc
                .ready
                .as_ref()
                .map_or(DEFAULT_STARTUP_DEADLINE, |r| r.timeout),
            loop_lag: svc.watch.as_ref().map_or(Duration::ZERO, |w| w.debounce)
                + super::RELOAD_LOOP_LAG,
            checked: svc.task.as_ref().is_some_and(|t| t.skippable()),
            seeded: svc.seed.is_some(),
            container: svc.is_container(),
            identity,
            fields: fields(svc, ports),
        }
    }
}

/// The effective definition of `svc`, flattened: nested keys joined with `.`, list items as
/// `[i]`, every string with its `${port:SERVICE:PORT}` references resolved against `ports` (so
/// a port that moves changes the services that use it). The keys in [`IN_PLACE`] are left out.
pub(crate) fn fields(svc: &Service, ports: &HostPorts) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(svc) else {
        return out;
    };
    for (key, value) in map {
        if !IN_PLACE.contains(&key.as_str()) {
            flatten(&key, &value, ports, &mut out);
        }
    }
    out
}

fn flatten(
    path: &str,
    value: &serde_json::Value,
    ports: &HostPorts,
    out: &mut BTreeMap<String, String>,
) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{path}.{k}"), v, ports, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, ports, out);
            }
        }
        Value::String(s) => {
            out.insert(path.to_string(), ports.resolve(s));
        }
        Value::Null => {}
        other => {
            out.insert(path.to_string(), other.to_string());
        }
    }
}

/// The paths whose values differ between `old` and `new` (added, removed or changed), each
/// list shown once by its first changed item.
fn changed_fields(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let keys = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    let mut keys: Vec<&String> = keys.collect();
    keys.sort();
    for k in keys {
        if old.get(k) != new.get(k) && !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// What changes when the services running now (`current`, with their specs) are to become
/// `desired`. Removed services come first, dependents before what they depend on; then every
/// desired service in its order. A dependent that declared `restart: true` on a service that
/// restarts or is recreated is listed as restarting after it (the kernel restarts it once that
/// service is ready again).
pub(crate) fn diff(
    current: &IndexMap<String, &Spec>,
    desired: &IndexMap<String, Spec>,
) -> Vec<ConfigChange> {
    let mut out = Vec::new();
    for name in removal_order(current, desired) {
        out.push(ConfigChange {
            service: ServiceName::from(name),
            action: ChangeAction::Stop,
            causes: vec!["removed from the stack".to_string()],
        });
    }
    let mut bounced: Vec<&str> = Vec::new();
    let mut changes: Vec<ConfigChange> = Vec::new();
    for (name, want) in desired {
        let change = match current.get(name) {
            None => ConfigChange {
                service: ServiceName::from(name.clone()),
                action: ChangeAction::Start,
                causes: vec!["added to the stack".to_string()],
            },
            Some(have) => compare(name, have, want),
        };
        if matches!(
            change.action,
            ChangeAction::Restart | ChangeAction::Recreate
        ) {
            bounced.push(name);
        }
        changes.push(change);
    }
    for c in &mut changes {
        if c.action != ChangeAction::Unchanged {
            continue;
        }
        let after: Vec<String> = desired[c.service.as_str()]
            .restart_with
            .iter()
            .filter(|d| bounced.contains(&d.as_str()))
            .map(|d| format!("after `{d}` (depends_on.{d}.restart)"))
            .collect();
        if !after.is_empty() {
            c.action = ChangeAction::Restart;
            c.causes = after;
        }
    }
    out.extend(changes);
    out
}

fn compare(name: &str, have: &Spec, want: &Spec) -> ConfigChange {
    let causes = changed_fields(&have.fields, &want.fields);
    let action = if want.container || have.container {
        if have.container != want.container {
            ChangeAction::Recreate
        } else if have.identity == want.identity && (have.identity.is_some() || causes.is_empty()) {
            ChangeAction::Unchanged
        } else {
            ChangeAction::Recreate
        }
    } else if causes.is_empty() {
        ChangeAction::Unchanged
    } else {
        ChangeAction::Restart
    };
    let causes = match action {
        ChangeAction::Unchanged => Vec::new(),
        _ if causes.is_empty() => vec!["image".to_string()],
        _ => causes,
    };
    ConfigChange {
        service: name.into(),
        action,
        causes,
    }
}

/// The running services `desired` no longer has, each after every removed service that depends
/// on it.
fn removal_order(
    current: &IndexMap<String, &Spec>,
    desired: &IndexMap<String, Spec>,
) -> Vec<String> {
    let mut left: Vec<&String> = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let before = left.len();
        let free: Vec<&String> = left
            .iter()
            .copied()
            .filter(|s| {
                !left
                    .iter()
                    .any(|d| current[*d].deps.iter().any(|(dep, _)| dep == *s))
            })
            .collect();
        for s in free {
            out.push(s.clone());
            left.retain(|x| *x != s);
        }
        if left.len() == before {
            // A cycle cannot be in a validated stack; keep the rest in file order.
            out.extend(left.drain(..).cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests;
