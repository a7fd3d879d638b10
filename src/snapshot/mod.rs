//! The data in the stack: which services a snapshot covers and how each is made consistent
//! (`plan`, pure), where snapshots live and how they are checked (`store`), copying volumes
//! out and in through the engine (`copy`), one snapshot file for a teammate (`bundle`), and the
//! progress shown on a terminal (`progress`). Stopping and starting services while a devstack
//! runs is that devstack's business: `commands::snapshot` asks it over the control socket.

pub(crate) mod bundle;
pub(crate) mod copy;
pub(crate) mod progress;
pub(crate) mod qdrant;
pub(crate) mod store;

use crate::config::{Probe, ServiceKind, Stack, Volume};

/// How a running service's files are made consistent before its volumes are copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Consistency {
    /// PostgreSQL: `CHECKPOINT` (so the stop is short and recovery has nothing to replay),
    /// then a short stop.
    Postgres {
        port: u16,
        user: String,
        password: String,
        database: String,
    },
    /// Redis: `SAVE` writes the dataset to its file; the copy is taken running.
    Redis { port: u16, password: Option<String> },
    /// Qdrant: its own snapshot API, collection by collection, while it runs (no copy of its
    /// volumes, no stop); `api_key` from the service's `QDRANT__SERVICE__API_KEY`.
    Qdrant { port: u16, api_key: Option<String> },
    /// Anything else: a short stop of the container.
    Stop,
}

impl Consistency {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "checkpoint+stop",
            Self::Redis { .. } => "save",
            Self::Qdrant { .. } => store::SNAPSHOT_API,
            Self::Stop => "stop",
        }
    }
}

/// One named volume of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetVolume {
    pub volume: String,
    pub engine_name: String,
    pub target: String,
}

/// A stateful service: a container with named volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub service: String,
    pub image: String,
    /// The service's readiness probe, for a container started again straight on the engine.
    pub ready: Option<Probe>,
    /// Whether a helper of the image, with only the named volumes and the environment, runs as
    /// the service does: no command or entrypoint of its own, no other mounts.
    pub helper_ok: bool,
    /// `KEY=value` for each of the service's settled environment variables (a helper that
    /// serves its API with the service's image runs with them).
    pub environment: Vec<String>,
    pub consistency: Consistency,
    pub volumes: Vec<TargetVolume>,
}

/// The services a snapshot, restore or reset acts on: the named ones (each must be a container
/// with a named volume), or every container with named volumes. Pure. The error is the message
/// for a usage error.
pub(crate) fn targets(stack: &Stack, names: &[String]) -> Result<Vec<Target>, String> {
    for n in names {
        let Some(svc) = stack.services.get(n) else {
            return Err(format!("no service `{n}` in the stack"));
        };
        if target(stack, svc).is_none() {
            return Err(format!(
                "service `{n}` has no named volume: it keeps no data to save"
            ));
        }
    }
    Ok(stack
        .services
        .values()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .filter_map(|s| target(stack, s))
        .collect())
}

fn target(stack: &Stack, svc: &crate::config::Service) -> Option<Target> {
    let ServiceKind::Container {
        image,
        volumes,
        command,
        ..
    } = &svc.kind
    else {
        return None;
    };
    let helper_ok = command.is_none()
        && svc.options.entrypoint.is_none()
        && volumes.iter().all(|v| matches!(v, Volume::Named { .. }));
    let volumes: Vec<TargetVolume> = volumes
        .iter()
        .filter_map(|v| match v {
            Volume::Named { name, target, .. } => Some(TargetVolume {
                volume: name.clone(),
                engine_name: crate::plan::volume_name(&stack.name, name),
                target: target.clone(),
            }),
            _ => None,
        })
        .collect();
    if volumes.is_empty() || svc.task.is_some() {
        return None;
    }
    let consistency = match svc.ready.as_ref().map(|r| &r.probe) {
        Some(Probe::Postgres {
            port,
            user,
            password,
            database,
        }) => Consistency::Postgres {
            port: *port,
            user: user.clone(),
            password: password.clone(),
            database: database.clone(),
        },
        Some(Probe::Redis { port, password }) => Consistency::Redis {
            port: *port,
            password: password.clone(),
        },
        Some(Probe::Qdrant { port }) => Consistency::Qdrant {
            port: *port,
            api_key: svc.environment.get("QDRANT__SERVICE__API_KEY").cloned(),
        },
        _ => Consistency::Stop,
    };
    Some(Target {
        service: svc.name.clone(),
        image: image.clone(),
        ready: svc.ready.as_ref().map(|r| r.probe.clone()),
        helper_ok,
        environment: svc
            .environment
            .iter()
            .filter(|(_, v)| !v.contains("${"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        consistency,
        volumes,
    })
}

/// `services` and every service that depends on one of them, directly or not. Pure.
pub(crate) fn with_dependents(stack: &Stack, services: &[String]) -> Vec<String> {
    let graph = crate::graph::Graph::from_stack(stack);
    let mut out: Vec<String> = Vec::new();
    let mut todo: Vec<String> = services.to_vec();
    while let Some(s) = todo.pop() {
        if out.contains(&s) {
            continue;
        }
        todo.extend(graph.dependents(&s).into_iter().map(str::to_string));
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(yaml: &str) -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("stack.yaml"), yaml).unwrap();
        let opts = crate::config::LoadOptions {
            cwd: tmp.path().to_path_buf(),
            ..Default::default()
        };
        crate::config::load(&opts, &|_| None).unwrap().stack
    }

    const YAML: &str = "name: p\nservices:\n  vec:\n    image: qdrant/qdrant:latest\n    ports: [\"6333\"]\n    volumes: [\"qd:/qdrant/storage\"]\n    environment: { QDRANT__SERVICE__API_KEY: k1 }\n    ready: { qdrant: {} }\n  db:\n    image: postgres:15\n    ports: [\"5432\"]\n    volumes: [\"data:/var/lib/postgresql/data\"]\n    ready: { postgres: { user: u, password: pw, database: d } }\n  cache:\n    image: redis:7-alpine\n    ports: [\"6379\"]\n    volumes: [\"rd:/data\"]\n    ready: { redis: {} }\n  web:\n    image: busybox\n    depends_on: [db]\n  app:\n    command: sleep 1\n    depends_on: [web]\n";

    #[test]
    fn stateful_services_and_their_consistency() {
        let s = stack(YAML);
        let all = targets(&s, &[]).unwrap();
        let names: Vec<&str> = all.iter().map(|t| t.service.as_str()).collect();
        assert_eq!(names, ["vec", "db", "cache"]);
        // Qdrant: through its API, with the API key from its environment.
        assert_eq!(
            all[0].consistency,
            Consistency::Qdrant {
                port: 6333,
                api_key: Some("k1".into())
            }
        );
        assert_eq!(all[0].consistency.name(), "snapshot-api");
        assert!(
            all[0].helper_ok,
            "the image as it is, its named volume only"
        );
        assert_eq!(all[1].consistency.name(), "checkpoint+stop");
        assert_eq!(all[1].volumes[0].engine_name, "p_data");
        assert_eq!(all[2].consistency.name(), "save");
        let one = targets(&s, &["cache".into()]).unwrap();
        assert_eq!(one.len(), 1);
        assert!(targets(&s, &["web".into()])
            .unwrap_err()
            .contains("no named volume"));
        assert!(targets(&s, &["nope".into()])
            .unwrap_err()
            .contains("no service `nope`"));
    }

    /// A helper of the image runs as the service does only without a command, an entrypoint
    /// or mounts of its own.
    #[test]
    fn a_helper_stands_in_only_for_a_plain_service() {
        let named = "\"qd:/qdrant/storage\"";
        for (volumes, extra, ok) in [
            (named, "", true),
            (
                named,
                "    command: [\"./qdrant\", \"--config-path\", \"/c.yaml\"]\n",
                false,
            ),
            (named, "    entrypoint: [\"/bin/sh\"]\n", false),
            (
                "\"qd:/qdrant/storage\", \"./cfg:/qdrant/config\"",
                "",
                false,
            ),
        ] {
            let s = stack(&format!(
                "name: p\nservices:\n  vec:\n    image: qdrant/qdrant:latest\n    ports: [\"6333\"]\n    volumes: [{volumes}]\n    ready: {{ qdrant: {{}} }}\n{extra}"
            ));
            assert_eq!(
                targets(&s, &[]).unwrap()[0].helper_ok,
                ok,
                "{volumes} {extra}"
            );
        }
    }

    #[test]
    fn dependents_are_found_transitively() {
        let s = stack(YAML);
        let mut d = with_dependents(&s, &["db".into()]);
        d.sort();
        assert_eq!(d, ["app", "db", "web"]);
    }
}
