//! `devstack down`: asks a running devstack to stop, ends processes a killed one left, removes
//! the project's containers (and with `-v` its volumes).

use super::output::{color_for, log_width};
use super::share::Thin;
use super::Env;
use crate::cli::DownArgs;
use crate::config::Stack;
use crate::engine::{DownReport, DownRequest};
use crate::error::Error;
use crate::logs::render::{local_utc_offset, Renderer};
use crate::logs::Format;
use crate::process::state::StateFile;
use crate::project::instance::Identity;
use crate::project::state_dir;
use crate::runtime::ContainerRuntime;
use crate::session::{runtime, ContainerEngine};

pub(super) fn down(
    stack: &Stack,
    identity: &Identity,
    thin: &Thin,
    args: &DownArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    if !identity.is_instance() {
        in_use(stack, args.force, env)?;
    }
    let renderer = Renderer {
        width: log_width(&stack.services.keys().cloned().collect::<Vec<_>>()),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    let (logs, writer) =
        crate::logs::spawn(Box::new(std::io::stderr()), Format::Text(renderer), 1, None);
    let rt = runtime()?;
    // A running devstack (in the foreground elsewhere, or the background one of `up --wait`)
    // is asked through its control socket to stop its services itself, in order; nothing is
    // killed behind its back.
    if let Some(pid) = super::detach::stop_running(stack, &state_dir(&stack.name), env)? {
        writeln!(env.err, "stopped the running devstack (pid {pid})")?;
    }
    let result = rt.block_on(async {
        // Processes a killed devstack left behind go first (they depend on the containers).
        let state = StateFile::new(state_dir(&stack.name).join("processes.json"));
        for e in crate::process::state::reap_leftovers(&state).await {
            logs.event(
                &e.service,
                format!("ended pid {} left running by a previous run", e.pid),
            )
            .await;
        }
        let engine = ContainerEngine::for_cleanup(stack).await?;
        if engine.docker().is_none() {
            return Ok((DownReport::default(), None));
        }
        let req = DownRequest {
            stack,
            volumes: args.volumes,
            // Reached without its stack file (`down --instance NAME` from anywhere): every
            // container of the project goes.
            remove_orphans: args.remove_orphans || stack.services.is_empty(),
        };
        let report = crate::engine::down(&engine, req, &logs).await?;
        Ok::<_, Error>((report, Some(engine)))
    });
    drop(logs);
    let _ = writer.join();
    let (report, engine) = result?;
    say_what_is_left(stack, &report, env)?;
    if thin.is_thin() && args.volumes {
        thin.drop_shares(&stack.name, env)?;
    } else if thin.is_thin() {
        let kept: Vec<String> = thin
            .shares
            .iter()
            .map(|s| format!("{} `{}`", s.service, s.value))
            .collect();
        writeln!(
            env.err,
            "kept shares of `{}`: {} (`down -v` drops them)",
            thin.main,
            kept.join(", ")
        )?;
    }
    // Named volumes hold the user's data; say they were kept.
    if let Some(engine) = engine.filter(|_| !args.volumes) {
        let kept = rt.block_on(engine.list_volumes(&stack.name))?;
        if !kept.is_empty() {
            writeln!(
                env.err,
                "kept volumes: {} (`down -v` removes them)",
                kept.iter()
                    .map(|(f, _)| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
    }
    Ok(())
}

/// A main instance that running thin instances use is not stopped under them, unless forced
/// (then they are named).
fn in_use(stack: &Stack, force: bool, env: &mut Env<'_>) -> Result<(), Error> {
    let users = super::share::users_of(&stack.name);
    if users.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(Error::InUse {
            project: stack.name.clone(),
            users,
        });
    }
    writeln!(
        env.err,
        "warning: stopping `{}` under the thin instances that use it (--force): {}",
        stack.name,
        users.join(", ")
    )?;
    Ok(())
}

/// Nothing removed, or containers of services no longer in the stack left alone.
fn say_what_is_left(stack: &Stack, report: &DownReport, env: &mut Env<'_>) -> Result<(), Error> {
    if report.removed.is_empty() {
        writeln!(env.err, "nothing to remove for project `{}`", stack.name)?;
    }
    if !report.orphans_left.is_empty() {
        writeln!(
            env.err,
            "note: left {} container(s) of services no longer in the stack: {} (use `down --remove-orphans`)",
            report.orphans_left.len(),
            report.orphans_left.join(", ")
        )?;
    }
    Ok(())
}
