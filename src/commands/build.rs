//! `devstack build`: the images of the selected services, built now.

use super::output::{color_for, log_width};
use super::{selected_services, Env};
use crate::cli::BuildArgs;
use crate::config::{ServiceName, Stack};
use crate::error::Error;
use crate::logs::render::{local_utc_offset, Renderer};
use crate::logs::Format;
use crate::session::{runtime, ContainerEngine};

/// `devstack build`: the images of the named services (all with `build:` when none are named),
/// built even when their build hash is unchanged.
pub(super) fn build(stack: &Stack, args: &BuildArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let names: Vec<String> = if args.services.is_empty() {
        stack
            .services
            .iter()
            .filter(|(_, s)| s.options.build.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        // Checks the names (with "did you mean"); only the named services are built.
        selected_services(stack, &args.services)?;
        args.services.clone()
    };
    let jobs = crate::build::jobs(stack, &names).map_err(Error::Engine)?;
    if jobs.is_empty() {
        writeln!(
            env.err,
            "nothing to build: no selected service has `build:`"
        )?;
        return Ok(());
    }
    let renderer = Renderer {
        width: log_width(&names),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    let format = if args.json {
        Format::Json
    } else {
        Format::Text(renderer)
    };
    let (logs, writer) = crate::logs::spawn(Box::new(std::io::stderr()), format, 1, None);
    let rt = runtime()?;
    let flags = crate::engine::BuildFlags {
        force: true,
        no_cache: args.no_cache,
        pull: args.pull,
    };
    // Every service with `build:` is a container: this is the Docker engine.
    let built: Vec<ServiceName> = jobs.iter().flat_map(|j| j.services.clone()).collect();
    let result = rt.block_on(async {
        let engine = ContainerEngine::for_services(stack, &built).await?;
        let r = crate::engine::build::ensure_all(&engine, &jobs, flags, &logs).await;
        logs.flush().await;
        r.map_err(Error::from)
    });
    drop(logs);
    let _ = writer.join();
    result.map(|_| ())
}
