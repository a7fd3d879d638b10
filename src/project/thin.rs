//! Thin instances: an instance beside the main one that shares some of the main instance's
//! running services (`instances: { share: [...] }`, `up --share`) instead of running its own,
//! each with logical isolation: a PostgreSQL database of its own, a Redis database index, a
//! Kafka topic prefix, a Qdrant collection prefix.
//!
//! Pure: what each share is ([`plan`]), the values `${db:…}` and `${prefix:…}` give, the stack
//! as the thin instance runs it ([`apply`]: the shared services left out, references to them
//! pointing at the main instance's), and the record of the shares in the instance's state
//! folder (`shares.json`, which also tells the main instance who uses it). Creating and
//! dropping the shares inside the main instance's containers is `commands::share`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::interpolate::{substitute_refs, Reference, ShareRefKind};
use crate::config::{Command, Probe, Service, ShareKind, Stack};

/// The longest PostgreSQL identifier (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

/// Redis's default `databases 16`: index 0 is the main instance's.
const REDIS_INDEXES: std::ops::RangeInclusive<u8> = 1..=15;

/// How a PostgreSQL share was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Made {
    /// `CREATE DATABASE … TEMPLATE main`: a copy of the main database, file by file.
    Template,
    /// `pg_dump main | psql new`: a copy, when the main database had sessions (TEMPLATE needs
    /// none).
    Dump,
    /// `fresh`: an empty database.
    Empty,
}

/// One service a thin instance shares with the main instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub service: String,
    pub kind: ShareKind,
    /// What `${db:…}` / `${prefix:…}` give: the database name, the Redis index, the prefix.
    pub value: String,
    /// A PostgreSQL share that starts empty (`fresh`), not as a copy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
    /// How its database was made, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made: Option<Made>,
    /// A Kafka or Qdrant share: the topics or collections that had its prefix before the
    /// instance first ran (the main instance's, by a name that happens to start so), which
    /// `down -v` leaves. None: not listed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign: Option<Vec<String>>,
}

/// Of `names` (the topics or collections a broker lists), those a prefix share owns: they
/// start with its prefix (never an empty one) and were not there before it (`foreign`).
pub fn own<'a>(names: &'a [String], prefix: &str, foreign: Option<&[String]>) -> Vec<&'a str> {
    names
        .iter()
        .filter(|n| !prefix.is_empty() && n.starts_with(prefix))
        .filter(|n| !foreign.is_some_and(|f| f.contains(n)))
        .map(String::as_str)
        .collect()
}

/// What `up` of a thin instance records in its state folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The main instance's project name.
    pub main: String,
    pub shares: Vec<Share>,
}

const RECORD_FILE: &str = "shares.json";

pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join(RECORD_FILE)
}

/// The record in `state_dir`, if the instance ever ran thin.
pub fn load_record(state_dir: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn save_record(state_dir: &Path, record: &Record) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    super::write_whole(&record_path(state_dir), text.as_bytes())
}

/// The database of a thin instance: `<main>_<instance>`, lowercase, only `[a-z0-9_]`, at most
/// 63 bytes (PostgreSQL cuts longer names, which could make two instances' names one).
pub fn database_name(main_db: &str, instance: &str) -> String {
    let mut name: String = format!("{main_db}_{instance}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if name.len() > MAX_IDENTIFIER {
        // Keep the instance's end of the name and make it unique with a short hash of all.
        use sha2::Digest;
        let hash = sha2::Sha256::digest(name.as_bytes());
        let tail = format!("_{:02x}{:02x}{:02x}", hash[0], hash[1], hash[2]);
        name.truncate(MAX_IDENTIFIER - tail.len());
        name.push_str(&tail);
    }
    name
}

/// The first Redis index in 1–15 no other thin instance of the main one holds.
pub fn pick_redis_index(used: &BTreeSet<u8>) -> Option<u8> {
    REDIS_INDEXES.into_iter().find(|i| !used.contains(i))
}

/// What a reference to `svc` gives on the main instance (and on a full instance, which runs
/// its own copy): its own database, index 0, no prefix.
pub fn main_value(svc: &Service) -> Option<String> {
    Some(
        match (svc.share_kind()?, svc.ready.as_ref().map(|r| &r.probe)) {
            (ShareKind::Postgres, Some(Probe::Postgres { database, .. })) => database.clone(),
            (ShareKind::Postgres, _) => return None,
            (ShareKind::Redis, _) => "0".to_string(),
            (ShareKind::Kafka | ShareKind::Qdrant, _) => String::new(),
        },
    )
}

/// Why a thin instance cannot have its shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// `--share` names a service that is not in the stack or cannot be shared.
    NotShareable { service: String },
    /// Every Redis index 1–15 is another thin instance's.
    NoRedisIndex { service: String },
}

/// The shares of `instance` (none for the main instance): one per shared service, its value
/// kept from `recorded` when it has one (a later `up` reuses its database and index), a Redis
/// index otherwise chosen outside `used` (the indexes other thin instances hold).
pub fn plan(
    stack: &Stack,
    instance: Option<&str>,
    share: &[String],
    recorded: Option<&Record>,
    used: &BTreeSet<u8>,
) -> Result<Vec<Share>, PlanError> {
    let Some(instance) = instance else {
        return Ok(Vec::new());
    };
    let mut taken = used.clone();
    let mut out = Vec::new();
    for name in share {
        let not_shareable = || PlanError::NotShareable {
            service: name.clone(),
        };
        let svc = stack.services.get(name).ok_or_else(not_shareable)?;
        let kind = svc.share_kind().ok_or_else(not_shareable)?;
        let kept = recorded.and_then(|r| {
            r.shares
                .iter()
                .find(|s| &s.service == name && s.kind == kind)
        });
        let value = match (kind, kept) {
            (_, Some(k)) => k.value.clone(),
            (ShareKind::Postgres, None) => {
                database_name(&main_value(svc).ok_or_else(not_shareable)?, instance)
            }
            (ShareKind::Redis, None) => pick_redis_index(&taken)
                .ok_or_else(|| PlanError::NoRedisIndex {
                    service: name.clone(),
                })?
                .to_string(),
            (ShareKind::Kafka, None) => format!("{instance}."),
            (ShareKind::Qdrant, None) => format!("{instance}_"),
        };
        if let (ShareKind::Redis, Ok(i)) = (kind, value.parse::<u8>()) {
            taken.insert(i);
        }
        out.push(Share {
            service: name.clone(),
            kind,
            value,
            fresh: stack.instances.fresh.contains(name),
            made: kept.and_then(|k| k.made),
            // A record from before the list was kept: what has the prefix is taken for the
            // instance's own, as it was then (listing now would count its own topics).
            foreign: kept.map(|k| k.foreign.clone().unwrap_or_default()),
        });
    }
    Ok(out)
}

/// The host ports of the main instance's shared services: (service, container port) → host port.
pub type MainPorts = BTreeMap<(String, u16), u16>;

/// Makes `stack` the stack the instance runs: every `${db:…}` and `${prefix:…}` resolved (a
/// share's value, else the main value), and for a thin instance the shared services left out
/// (nothing depends on them: they are the main instance's, ready before this one starts),
/// `${port:…}` of them the main instance's host ports, and `DEVSTACK_<SVC>_DB`,
/// `DEVSTACK_<SVC>_PREFIX` and `DEVSTACK_<SVC>_<PORT>` of each in every service's environment.
pub fn apply(stack: &mut Stack, shares: &[Share], main_ports: &MainPorts) {
    let values = reference_values(stack, shares);
    let shared: BTreeSet<&str> = shares.iter().map(|s| s.service.as_str()).collect();
    let replace = |r: &Reference| match r {
        Reference::Share(r) => values.get(&(r.kind, r.service.clone())).cloned(),
        Reference::Port(p) if shared.contains(p.service.as_str()) => main_ports
            .get(&(p.service.clone(), p.port))
            .map(u16::to_string),
        Reference::Port(_) => None,
    };
    for svc in stack.services.values_mut() {
        for s in reference_strings(svc) {
            *s = substitute_refs(s, &replace);
        }
    }
    if shares.is_empty() {
        return;
    }
    let left_out = left_out(stack, &shared);
    stack
        .services
        .retain(|name, _| !left_out.contains(name.as_str()));
    let variables = variables(shares, main_ports);
    for svc in stack.services.values_mut() {
        svc.depends_on.retain(|d, _| !shared.contains(d.as_str()));
        svc.restart_with.retain(|d| !shared.contains(d.as_str()));
        for (k, v) in &variables {
            svc.environment
                .entry(k.clone())
                .or_insert_with(|| v.replace('$', "$$"));
        }
    }
}

/// The shared services, and what only they need (ZooKeeper under a shared Kafka, the tasks that
/// prepare a shared service's image): a service stays when it is not shared and something that
/// stays needs it (`depends_on` or a `${port:…}` reference), or when no shared service needs it.
fn left_out(stack: &Stack, shared: &BTreeSet<&str>) -> BTreeSet<String> {
    // What `roots` need, directly or not; `through_shared` follows the shared services' needs.
    let needed_by = |roots: Vec<&str>, through_shared: bool| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = roots;
        while let Some(name) = todo.pop() {
            let Some(svc) = stack.services.get(name) else {
                continue;
            };
            if !through_shared && shared.contains(name) {
                continue;
            }
            // A `${port:S:…}` reference needs S running as much as `depends_on` does.
            let mut copy = svc.clone();
            let referenced: Vec<String> = reference_strings(&mut copy)
                .into_iter()
                .flat_map(|s| crate::config::interpolate::port_refs(s))
                .map(|p| p.service)
                .collect();
            for dep in svc.depends_on.keys().cloned().chain(referenced) {
                if dep != name && seen.insert(dep.clone()) {
                    if let Some((key, _)) = stack.services.get_key_value(dep.as_str()) {
                        todo.push(key.as_str());
                    }
                }
            }
        }
        seen
    };
    let under_shared = needed_by(shared.iter().copied().collect(), true);
    let roots = stack
        .services
        .keys()
        .map(String::as_str)
        .filter(|n| !shared.contains(n) && !under_shared.contains(*n))
        .collect::<Vec<_>>();
    let kept = needed_by(roots.clone(), false);
    stack
        .services
        .keys()
        .filter(|n| {
            shared.contains(n.as_str())
                || (!roots.contains(&n.as_str()) && !kept.contains(n.as_str()))
        })
        .cloned()
        .collect()
}

/// What each `${db:S}` / `${prefix:S}` gives in this instance.
fn reference_values(stack: &Stack, shares: &[Share]) -> BTreeMap<(ShareRefKind, String), String> {
    stack
        .services
        .iter()
        .filter_map(|(name, svc)| {
            let kind = svc.share_kind()?;
            let value = match shares.iter().find(|s| &s.service == name) {
                Some(s) => s.value.clone(),
                None => main_value(svc)?,
            };
            Some(((kind.reference(), name.clone()), value))
        })
        .collect()
}

/// `DEVSTACK_<SVC>_DB` or `_PREFIX`, and `DEVSTACK_<SVC>_<PORT>`, of every share.
fn variables(shares: &[Share], main_ports: &MainPorts) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in shares {
        let suffix = match s.kind.reference() {
            ShareRefKind::Db => "DB",
            ShareRefKind::Prefix => "PREFIX",
        };
        out.push((variable(&s.service, suffix), s.value.clone()));
        for ((service, port), host) in main_ports.iter().filter(|((n, _), _)| n == &s.service) {
            out.push((variable(service, &port.to_string()), host.to_string()));
        }
    }
    out
}

/// `DEVSTACK_<SERVICE>_<WHAT>`: `core-service`, `5000` → `DEVSTACK_CORE_SERVICE_5000`.
pub fn variable(service: &str, what: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("DEVSTACK_{name}_{what}")
}

/// The values of a service that may carry references (the ones `validate` checks).
fn reference_strings(svc: &mut Service) -> Vec<&mut String> {
    fn command(c: &mut Command) -> Vec<&mut String> {
        match c {
            Command::Shell(s) => vec![s],
            Command::Argv(v) => v.iter_mut().collect(),
        }
    }
    let mut out: Vec<&mut String> = svc.environment.values_mut().collect();
    match &mut svc.kind {
        crate::config::ServiceKind::Container { command: c, .. } => {
            out.extend(c.as_mut().map(command).unwrap_or_default());
        }
        crate::config::ServiceKind::Process { command: c, .. } => out.extend(command(c)),
    }
    match svc.ready.as_mut().map(|r| &mut r.probe) {
        Some(Probe::Http(u)) => out.push(u),
        Some(Probe::Exec(c)) => out.extend(command(c)),
        _ => {}
    }
    for step in &mut svc.options.pre_start {
        out.extend(step.command.as_mut().map(command).unwrap_or_default());
        out.extend(step.environment.values_mut());
    }
    out
}

#[cfg(test)]
mod tests;
