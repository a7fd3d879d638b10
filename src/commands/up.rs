//! `devstack up`: hands `--wait` with native processes to a background copy, or else takes the
//! project's lock and runs the stack in the foreground through a [`Session`] (with the
//! dashboard and the terminal view when wanted), then says what is ready.

use super::output::{color_for, log_width};
use super::{selected_services, Env};
use crate::cli::UpArgs;
use crate::config::Stack;
use crate::engine::{BuildFlags, UpOutcome, UpRequest};
use crate::error::Error;
use crate::logs::render::{local_utc_offset, Renderer};
use crate::logs::Format;
use crate::process::state::StateFile;
use crate::project::instance::{self, Identity, Record};
use crate::project::lock::ProjectLock;
use crate::project::state_dir;
use crate::session::{LogSetup, Session};

fn already_up(project: &str, pid: u32) -> Error {
    Error::AlreadyUp {
        project: project.to_string(),
        pid,
    }
}

pub(super) fn up(
    stack: &Stack,
    identity: &Identity,
    args: &UpArgs,
    env: &mut Env<'_>,
    reload: crate::engine::apply::Reload,
    thin: &mut super::share::Thin,
) -> Result<(), Error> {
    let selected = selected_services(stack, &args.services)?;
    let dir = state_dir(&stack.name);
    // Tasks run to completion before `--wait` returns: only long-running processes need a
    // supervisor.
    let has_processes = selected
        .iter()
        .any(|s| stack.services[s.as_str()].is_supervised_process());
    let detached_copy = (env.vars)(super::detach::DETACHED_ENV).is_some_and(|v| v == "1");
    if thin.is_thin() {
        // Before anything starts: never a thin instance without what it shares.
        thin.ensure_main(&stack.name)?;
        // The background copy of `up --wait` finds them made by this command.
        if !detached_copy {
            thin.prepare(&stack.name, env)?;
        }
    }
    if has_processes && !detached_copy && args.wait {
        // Processes need a supervisor that outlives this command: a background copy.
        let renderer = Renderer {
            width: log_width(&selected),
            color: color_for(false, env),
            utc_offset: local_utc_offset(),
        };
        if let Some(note) = crate::project::fallback_note(&stack.name) {
            writeln!(env.err, "warning: {note}")?;
        }
        // The background copy says in its log when a recorded port had to move; this command
        // may have started following it after that, so it says so again.
        let recorded = crate::project::ports::path(&dir);
        let before = crate::project::ports::load(&recorded);
        super::detach::up_detached(&stack.name, &dir, renderer, env)?;
        if identity.is_instance() {
            for m in before.moved_to(&crate::project::ports::load(&recorded)) {
                writeln!(
                    env.err,
                    "warning: port {} of `{}` was recorded on host port {}, which something else holds now: it moved to {} (and stays there)",
                    m.container_port, m.service, m.from, m.to
                )?;
            }
        }
        return Ok(());
    }
    // Held until `up` returns: one devstack per project.
    let _lock = lock_project(&stack.name, &dir, detached_copy)?;
    let mut session = Session::start(log_setup(stack, args, &selected, env))?;
    if let Some(note) = crate::project::fallback_note(&stack.name) {
        session.warn(note);
    }
    // `up --wait` returns once ready: nobody would be left to serve a dashboard (with native
    // processes, the background copy serves it).
    if !args.no_dashboard && !args.wait {
        serve_dashboard(&mut session, stack, identity, args, &selected)?;
    }
    let record = Record {
        project: stack.name.clone(),
        base: identity.base.clone(),
        instance: identity.instance.clone(),
        path: stack.root.clone(),
        checkout: instance::checkout_of(&stack.root),
        dashboard: session.dashboard_url().map(str::to_string),
    };
    if let Err(e) = instance::save_record(&dir, &record) {
        session.warn(format!(
            "cannot record the instance in `{}`: {e}; `devstack ls` will not show where it runs from",
            dir.display()
        ));
    }
    // The interactive view: on a terminal, in the foreground, for people (not --json, not CI).
    let interactive = !args.no_tty
        && !args.json
        && !args.wait
        && crate::views::terminal::wanted((env.vars)("CI"));
    if interactive {
        session.show_terminal(selected.clone(), color_for(true, env));
    }
    let req = UpRequest {
        stack,
        selected: selected.clone(),
        wait: args.wait,
        port_mode: super::port_mode(stack, identity, args.free_ports),
        watch: !args.no_watch,
        state: StateFile::new(dir.join("processes.json")),
        then: None,
        inbox: session.take_inbox(),
        build: BuildFlags {
            force: args.build,
            ..Default::default()
        },
        reload: Some(reload),
        watch_config: !args.no_watch_config,
    };
    let result = session.run(stack, req);
    session.finish();
    report(result?, &selected, env)
}

/// Takes the project's lock, or says which devstack runs the project. Without a folder to hold
/// it in (see `project::fallback_note`), the run goes on unlocked.
fn lock_project(
    project: &str,
    dir: &std::path::Path,
    detached_copy: bool,
) -> Result<Option<ProjectLock>, Error> {
    if !detached_copy {
        if let Some(pid) = crate::project::lock::holder(dir) {
            return Err(already_up(project, pid));
        }
    }
    match crate::project::lock::acquire(dir) {
        Ok(Ok(lock)) => Ok(Some(lock)),
        Ok(Err(pid)) => Err(already_up(project, pid)),
        Err(e) => {
            tracing::debug!("no project lock in `{}`: {e}", dir.display());
            Ok(None)
        }
    }
}

/// The log of a foreground run: to stdout for people, to stderr with `--wait` (the caller is a
/// script: progress goes to stderr, stdout stays clean); per-service files in the state folder.
fn log_setup(stack: &Stack, args: &UpArgs, selected: &[String], env: &Env<'_>) -> LogSetup {
    let to_stdout = !args.wait;
    let renderer = Renderer {
        width: log_width(selected),
        color: color_for(to_stdout, env),
        utc_offset: local_utc_offset(),
    };
    LogSetup {
        out: if to_stdout {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::stderr())
        },
        format: if args.json {
            Format::Json
        } else {
            Format::Text(renderer)
        },
        files: Some(crate::logs::files::FileSetup {
            dir: state_dir(&stack.name).join("logs"),
            keep_runs: stack.logs.keep_runs,
        }),
        redact: crate::redact::Redactor::new(stack.secret_values.iter().cloned()),
    }
}

/// The dashboard of the run; a port that was asked for and cannot be had is an error, a free
/// one that cannot be had only a warning.
fn serve_dashboard(
    session: &mut Session,
    stack: &Stack,
    identity: &Identity,
    args: &UpArgs,
    selected: &[String],
) -> Result<(), Error> {
    // An instance's ports are not the written ones: no link goes to the main instance's.
    let written = !args.free_ports && !identity.is_instance();
    let info = crate::views::web::StackInfo::of(stack, selected, !written);
    match session.serve_dashboard(info, args.dashboard, crate::views::web::secrets(stack)) {
        Ok(()) => Ok(()),
        Err(e) if args.dashboard.is_some() => Err(Error::Usage {
            message: format!(
                "cannot serve the dashboard on 127.0.0.1:{}: {e}",
                args.dashboard.unwrap_or_default()
            ),
            help: Some("choose another `--dashboard` port, or leave it out for a free one".into()),
        }),
        Err(e) => {
            session.warn(format!("cannot serve the dashboard: {e}"));
            Ok(())
        }
    }
}

/// What the run's end means for the caller: `--wait`'s ready list, or the exit code.
fn report(outcome: UpOutcome, selected: &[String], env: &mut Env<'_>) -> Result<(), Error> {
    match outcome {
        UpOutcome::Ready { ports } => {
            let mut published: Vec<String> = Vec::new();
            for (service, p) in ports.all() {
                if selected.iter().any(|s| s == service) {
                    published.push(format!(
                        "{service} {}:{}->{}",
                        p.host_ip, p.host_port, p.container_port
                    ));
                }
            }
            writeln!(env.err, "ready: {}", selected.join(", "))?;
            for p in published {
                writeln!(env.err, "  {p}")?;
            }
            Ok(())
        }
        // The log already says everything stopped; the exit code says it was a signal.
        UpOutcome::Stopped => Err(Error::Stopped),
        // `up` runs no suite.
        UpOutcome::Finished(code) => Err(Error::Suite(code)),
    }
}
