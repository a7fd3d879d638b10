//! `seed:`: the command that puts a service's first data in, with what decides when it runs
//! again.

use super::*;

/// How long a seed may run unless `timeout` says otherwise.
pub const DEFAULT_SEED_TIMEOUT: Duration = Duration::from_secs(600);

/// `seed:` of a service. Its sources are against the service's working folder (the stack's
/// folder for a container); `user` and `working_dir` are a container's (inside it).
pub(super) fn seed(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
    name: &str,
    kind: &Option<ServiceKind>,
) -> Option<Seed> {
    let at = path.key("seed");
    let spec = match rs.seed.as_ref()? {
        RawSeed::Command(command) => RawSeedSpec {
            command: command.clone(),
            sources: Vec::new(),
            user: None,
            working_dir: None,
            environment: Environment::default(),
            timeout: None,
        },
        RawSeed::Spec(s) => s.clone(),
    };
    let (command_at, is_map) = match rs.seed.as_ref()? {
        RawSeed::Command(_) => (at.clone(), false),
        RawSeed::Spec(_) => (at.key("command"), true),
    };
    if rs.task.is_some() {
        c.err(
            Diagnostic::new(format!("`{name}` is a task and has a `seed`"))
                .at(at.clone())
                .help("a task runs once already: put the seeding in its command, or give the seed to the service whose data it fills"),
        );
    }
    let command = command(c, &spec.command, &command_at, name);
    let container = matches!(kind, Some(ServiceKind::Container { .. }));
    if !container && is_map {
        for (key, given) in [
            ("user", spec.user.is_some()),
            ("working_dir", spec.working_dir.is_some()),
        ] {
            if given {
                c.err(
                    Diagnostic::new(format!(
                        "`seed.{key}` of `{name}` applies to a container, and `{name}` is a native process"
                    ))
                    .at(at.key(key))
                    .help("a native process's seed runs in its own working folder as you: remove the key"),
                );
            }
        }
    }
    if let Some(w) = spec.working_dir.as_deref().filter(|w| !w.starts_with('/')) {
        c.err(
            Diagnostic::new(format!(
                "`seed.working_dir` of `{name}` must be an absolute path inside the container"
            ))
            .at_value(at.key("working_dir"))
            .help(format!("write `/{}`", w.trim_start_matches("./"))),
        );
    }
    let base = match kind {
        Some(ServiceKind::Process { working_dir, .. }) => working_dir.clone(),
        _ => c.ctx.root.to_path_buf(),
    };
    let sources = host_paths(
        c,
        &base,
        &spec.sources,
        &at.key("sources"),
        "seed.sources",
        name,
    );
    let timeout = match &spec.timeout {
        Some(t) => duration(c, &t.0, &at.key("timeout"))?,
        None => DEFAULT_SEED_TIMEOUT,
    };
    Some(Seed {
        command: command?,
        sources,
        user: spec.user,
        working_dir: spec.working_dir,
        environment: environment(c, &spec.environment),
        timeout,
    })
}
