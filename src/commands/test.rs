//! `devstack test -- CMD`: a throwaway copy of the stack, the suite run against it through a
//! session, and the teardown whatever happens.

use std::time::{SystemTime, UNIX_EPOCH};

use super::output::{color_for, log_width};
use super::{selected_services, Env};
use crate::config::Stack;
use crate::engine::{DownRequest, Then, UpOutcome, UpRequest};
use crate::error::Error;
use crate::logs::render::{local_utc_offset, Renderer};
use crate::logs::Format;
use crate::plan::PortMode;
use crate::process::state::StateFile;
use crate::project::state_dir;
use crate::session::{ContainerEngine, LogSetup, Session};

/// A short random suffix for throwaway project names (no two runs at once share one).
fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    let from_urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if from_urandom.is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `DEVSTACK_<SERVICE>_<PORT>` for every published port: `core-service` 5000 → `DEVSTACK_CORE_SERVICE_5000`.
pub(super) fn port_variables(ports: &crate::plan::HostPorts) -> Vec<(String, String)> {
    ports
        .all()
        .map(|(service, p)| {
            (
                crate::project::thin::variable(service, &p.container_port.to_string()),
                p.host_port.to_string(),
            )
        })
        .collect()
}

/// The stack's `test.environment`, then `DEVSTACK_<SERVICE>_DB` / `_PREFIX` where it sets none.
fn suite_environment(stack: &Stack) -> indexmap::IndexMap<String, String> {
    let mut env = stack.test.environment.clone();
    for (k, v) in share_variables(stack) {
        env.entry(k).or_insert_with(|| v.replace('$', "$$"));
    }
    env
}

/// `DEVSTACK_<SERVICE>_DB` and `_PREFIX` of every service `${db:…}` / `${prefix:…}` can name:
/// the throwaway stack runs its own, so they are the main values (its database, index 0, no
/// prefix).
fn share_variables(stack: &Stack) -> Vec<(String, String)> {
    stack
        .services
        .iter()
        .filter_map(|(name, svc)| {
            let what = match svc.share_kind()?.reference() {
                crate::config::interpolate::ShareRefKind::Db => "DB",
                crate::config::interpolate::ShareRefKind::Prefix => "PREFIX",
            };
            Some((
                crate::project::thin::variable(name, what),
                crate::project::thin::main_value(svc)?,
            ))
        })
        .collect()
}

/// `devstack test -- CMD`: a throwaway stack, the suite against it, teardown whatever happens.
pub(super) fn test(
    stack: &Stack,
    args: &crate::cli::TestArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let mut throwaway = stack.clone();
    throwaway.name = format!("{}-test-{}", stack.name, random_suffix());
    let project = throwaway.name.clone();
    let selected = test_services(stack, args)?;
    if let Some(name) = &args.from_snapshot {
        // Into the throwaway project's fresh volumes; they go with it at the end.
        if let Err(e) = super::snapshot::restore_quietly(stack, &throwaway, name, env) {
            super::snapshot::remove_volumes(&throwaway);
            return Err(e);
        }
    }
    writeln!(
        env.err,
        "devstack test: project `{project}`, services {}",
        selected.join(", ")
    )?;
    let renderer = Renderer {
        width: log_width(&selected),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    // The suite owns stdout; the stack's log goes to stderr.
    let mut session = Session::start(LogSetup {
        out: Box::new(std::io::stderr()),
        format: Format::Text(renderer),
        files: None,
        redact: crate::redact::Redactor::new(stack.secret_values.iter().cloned()),
    })?;
    let state = state_dir(&project);
    let req = UpRequest {
        stack: &throwaway,
        selected: selected.clone(),
        wait: false,
        port_mode: PortMode::AllFree,
        watch: false,
        state: StateFile::new(state.join("processes.json")),
        then: Some(suite(args.command.clone(), suite_environment(stack))),
        inbox: session.take_inbox(),
        build: Default::default(),
        reload: None,
        watch_config: false,
    };
    let outcome = session.run(&throwaway, req);
    // A stack of native processes only leaves nothing in an engine to tear down.
    if let Some(docker @ ContainerEngine::Docker(_)) = session.engine() {
        let failed = !matches!(outcome, Ok(UpOutcome::Finished(0)));
        let kept = args.keep_on_failure && failed && matches!(outcome, Ok(UpOutcome::Finished(_)));
        session.block_on(after_suite(docker, &throwaway, kept, session.logs()));
    }
    session.finish();
    let _ = std::fs::remove_dir_all(&state);
    match outcome? {
        UpOutcome::Finished(0) => Ok(()),
        UpOutcome::Finished(code) => Err(Error::Suite(code)),
        UpOutcome::Ready { .. } | UpOutcome::Stopped => Err(Error::Interrupted),
    }
}

/// The named services and their dependencies; the container services when none are named.
fn test_services(stack: &Stack, args: &crate::cli::TestArgs) -> Result<Vec<String>, Error> {
    if !args.services.is_empty() {
        return selected_services(stack, &args.services);
    }
    let containers: Vec<String> = stack
        .services
        .iter()
        .filter(|(_, s)| s.is_container())
        .map(|(n, _)| n.clone())
        .collect();
    selected_services(stack, &containers)
}

/// The suite, run once the stack is ready with the stack's test environment (port references
/// resolved) and a `DEVSTACK_<SERVICE>_<PORT>` variable per published port. Its exit code.
fn suite(command: Vec<String>, test_env: indexmap::IndexMap<String, String>) -> Then {
    Box::new(move |ports| {
        Box::pin(async move {
            let mut vars: Vec<(String, String)> = test_env
                .iter()
                .map(|(k, v)| (k.clone(), ports.resolve(v)))
                .collect();
            vars.extend(port_variables(&ports));
            let (program, rest) = command.split_first().expect("clap requires a command");
            let status = tokio::process::Command::new(program)
                .args(rest)
                .envs(vars)
                // Aborted on Ctrl-C or SIGTERM: the suite must not outlive its stack.
                .kill_on_drop(true)
                .status()
                .await;
            match status {
                Ok(s) => s.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
                }),
                Err(e) => {
                    eprintln!("devstack test: cannot run `{program}`: {e}");
                    127
                }
            }
        })
    })
}

/// After the suite: the throwaway stack is removed with its volumes, or `kept` for a look.
/// Teardown happens whatever the outcome; its own failure is reported but does not hide the
/// suite's result.
async fn after_suite(
    engine: &ContainerEngine,
    throwaway: &Stack,
    kept: bool,
    logs: &crate::logs::LogHandle,
) {
    if kept {
        let project = &throwaway.name;
        logs.event(
            "devstack",
            format!("kept the stack for a look: `devstack -p {project} down -v` removes it"),
        )
        .await;
        return;
    }
    let down = DownRequest {
        stack: throwaway,
        volumes: true,
        remove_orphans: true,
    };
    if let Err(e) = crate::engine::down(engine, down, logs).await {
        logs.event("devstack", format!("teardown failed: {e}"))
            .await;
    }
}
