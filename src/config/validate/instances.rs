//! The top-level `instances:` section and the `${db:…}` / `${prefix:…}` references: each names a
//! container service devstack knows how to share (PostgreSQL, Redis, Kafka, Qdrant, by its
//! readiness preset). Pure, like the rest of `validate`.

use indexmap::IndexMap;

use super::{list, Checker};
use crate::config::diagnostic::{did_you_mean, Diagnostic};
use crate::config::interpolate::{share_refs, ShareRefKind};
use crate::config::keypath::KeyPath;
use crate::config::model::{InstanceSettings, Service, ShareKind};
use crate::config::raw::RawInstances;

const KNOWN: &str = "devstack shares PostgreSQL, Redis, Kafka and Qdrant containers, known by their readiness preset: give the service `ready: { postgres: {} }` (or `redis`, `kafka`, `qdrant`)";

/// `instances: { share, fresh }`: every name a shareable service, `fresh` only among `share`
/// and only for PostgreSQL.
pub(super) fn instance_settings(
    c: &mut Checker<'_>,
    raw: Option<&RawInstances>,
    services: &IndexMap<String, Service>,
    names: &[&str],
) -> InstanceSettings {
    let Some(raw) = raw else {
        return InstanceSettings::default();
    };
    let root = KeyPath::root().key("instances");
    let mut out = InstanceSettings::default();
    for (i, name) in raw.share.iter().enumerate() {
        let path = root.key("share").index(i);
        if shareable(c, name, &path, services, names).is_some() && !out.share.contains(name) {
            out.share.push(name.clone());
        }
    }
    for (i, name) in raw.fresh.iter().enumerate() {
        let path = root.key("fresh").index(i);
        if !raw.share.contains(name) {
            c.err(
                Diagnostic::new(format!(
                    "`instances.fresh` names `{name}`, which is not shared"
                ))
                .at_value(path)
                .help(format!(
                    "add `{name}` to `instances.share`, or remove it from `fresh`"
                )),
            );
            continue;
        }
        match services.get(name).and_then(Service::share_kind) {
            Some(ShareKind::Postgres) => out.fresh.push(name.clone()),
            Some(kind) => c.err(
                Diagnostic::new(format!(
                    "`instances.fresh` names `{name}`, a {} service: only a PostgreSQL share starts as a copy",
                    kind.name()
                ))
                .at_value(path)
                .help("a Redis index, a topic or a collection prefix always starts empty; remove it from `fresh`"),
            ),
            None => {} // reported under `share`
        }
    }
    out
}

/// The kind of the service `name` if it can be shared; else the problem, reported at `path`.
fn shareable(
    c: &mut Checker<'_>,
    name: &str,
    path: &KeyPath,
    services: &IndexMap<String, Service>,
    names: &[&str],
) -> Option<ShareKind> {
    let Some(svc) = services.get(name) else {
        if !names.contains(&name) {
            c.err(
                Diagnostic::new(format!("`instances.share` names unknown service `{name}`"))
                    .at_value(path.clone())
                    .help(
                        did_you_mean(name, names.iter().copied())
                            .unwrap_or_else(|| format!("the services are {}", list(names))),
                    ),
            );
        }
        return None;
    };
    if !svc.is_container() {
        c.err(
            Diagnostic::new(format!(
                "`instances.share` names `{name}`, a native process: only containers are shared"
            ))
            .at_value(path.clone())
            .help("a thin instance runs its own processes; share the databases they use"),
        );
        return None;
    }
    let kind = svc.share_kind();
    if kind.is_none() {
        c.err(
            Diagnostic::new(format!(
                "`instances.share` names `{name}`, which devstack does not know how to share"
            ))
            .at_value(path.clone())
            .help(KNOWN),
        );
    }
    kind
}

/// `${db:SERVICE}` names a PostgreSQL or Redis service, `${prefix:SERVICE}` a Kafka or Qdrant
/// one (whether or not it is shared: the main instance and a full one resolve them too).
pub(super) fn check_share_refs(
    c: &mut Checker<'_>,
    value: &str,
    path: &KeyPath,
    services: &IndexMap<String, Service>,
    names: &[&str],
) {
    for r in share_refs(value) {
        let shown = format!("${{{}:{}}}", r.kind.word(), r.service);
        let Some(svc) = services.get(&r.service) else {
            if !names.contains(&r.service.as_str()) {
                c.err(
                    Diagnostic::new(format!(
                        "reference `{shown}` names unknown service `{}`",
                        r.service
                    ))
                    .at_value(path.clone())
                    .help(
                        did_you_mean(&r.service, names.iter().copied())
                            .unwrap_or_else(|| format!("the services are {}", list(names))),
                    ),
                );
            }
            continue;
        };
        let fits = svc.share_kind().filter(|k| k.reference() == r.kind);
        if fits.is_none() {
            let help = match r.kind {
                ShareRefKind::Db => "`${db:…}` names a PostgreSQL service (its database) or a Redis one (its database index)",
                ShareRefKind::Prefix => "`${prefix:…}` names a Kafka service (a topic prefix) or a Qdrant one (a collection prefix)",
            };
            c.err(
                Diagnostic::new(format!(
                    "reference `{shown}`: `{}` is not a service it can name",
                    r.service
                ))
                .at_value(path.clone())
                .help(format!("{help}; {KNOWN}")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load, LoadOptions, DEFAULT_FILE};

    const SERVICES: &str = "services:\n  db:\n    image: postgres:15\n    ports: [\"5432\"]\n    ready: { postgres: {} }\n  cache:\n    image: redis:7\n    ports: [\"6379\"]\n    ready: { redis: {} }\n  web:\n    command: sleep 1\n  other:\n    image: nginx\n";

    /// The stack, or the rendered error (file:line:col, message, help).
    fn try_load(yaml: &str) -> Result<crate::config::Stack, String> {
        let dir = tempfile::tempdir().expect("a temp folder");
        std::fs::write(dir.path().join(DEFAULT_FILE), yaml).expect("writing the stack file");
        let opts = LoadOptions {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        load(&opts, &|_| None)
            .map(|l| l.stack)
            .map_err(|e| e.render(false))
    }

    #[test]
    fn instances_settings_table() {
        let ok = try_load(&format!(
            "{SERVICES}instances: {{ share: [db, cache, db], fresh: [db] }}\n"
        ))
        .expect("valid");
        assert_eq!(ok.instances.share, ["db", "cache"]);
        assert_eq!(ok.instances.fresh, ["db"]);
        let cases: &[(&str, &[&str])] = &[
            (
                "instances: { share: [dbb] }",
                &[
                    "unknown service `dbb`",
                    "did you mean `db`?",
                    "stack.yaml:14:22",
                ],
            ),
            ("instances: { share: [web] }", &["`web`, a native process"]),
            (
                "instances: { share: [other] }",
                &[
                    "`other`, which devstack does not know how to share",
                    "PostgreSQL, Redis, Kafka and Qdrant",
                ],
            ),
            (
                "instances: { share: [db], fresh: [cache] }",
                &["names `cache`, which is not shared"],
            ),
            (
                "instances: { share: [cache], fresh: [cache] }",
                &["a Redis service: only a PostgreSQL share starts as a copy"],
            ),
            ("instances: { sahre: [db] }", &["sahre"]),
        ];
        for (yaml, wanted) in cases {
            let err = try_load(&format!("{SERVICES}{yaml}\n")).expect_err(yaml);
            for w in *wanted {
                assert!(err.contains(w), "{yaml}: {w:?} in {err}");
            }
        }
    }

    #[test]
    fn share_references_name_a_service_of_their_kind() {
        let with = |env: &str| {
            format!("{SERVICES}  app:\n    command: run\n    environment: {{ X: \"{env}\" }}\n")
        };
        assert!(try_load(&with("${db:db}/${db:cache}")).is_ok());
        let cases: &[(&str, &str)] = &[
            (
                "${db:nope}",
                "reference `${db:nope}` names unknown service `nope`",
            ),
            (
                "${db:web}",
                "reference `${db:web}`: `web` is not a service it can name",
            ),
            (
                "${prefix:db}",
                "reference `${prefix:db}`: `db` is not a service it can name",
            ),
            ("${db:}", "malformed reference `${db:}`"),
        ];
        for (env, want) in cases {
            let err = try_load(&with(env)).expect_err(env);
            assert!(err.contains(want), "{env}: {err}");
            assert!(err.contains("stack.yaml:"), "located: {err}");
        }
    }
}
