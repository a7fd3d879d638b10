//! `devstack render k8s|compose`: the pure renderers' output to standard output or to files.

use std::path::Path;

use crate::cli::{RenderArgs, RenderCommand};
use crate::config::{ConfigError, Stack};
use crate::error::Error;
use crate::render;

use super::{selected_services, Env};

pub(super) fn render(stack: &Stack, what: &RenderCommand, env: &mut Env<'_>) -> Result<(), Error> {
    // Tasks prepare this machine (a virtualenv, a base image): a cluster or Compose has no use
    // for them.
    let stack = &stack.without_tasks();
    match what {
        RenderCommand::K8s(args) => k8s(stack, args, env),
        RenderCommand::Compose(args) => compose(stack, args, env),
    }
}

fn k8s(stack: &Stack, args: &RenderArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let selected = selected_services(stack, &args.services)?;
    let objects = render::k8s::render(stack, &selected)
        .map_err(|diags| ConfigError::located(diags, &stack.files, &env.cwd))?;
    if args.output == Path::new("-") {
        let text = render::yaml_documents(objects.iter().map(|o| &o.value));
        env.out.write_all(text.as_bytes())?;
        return Ok(());
    }
    let dir = env.cwd.join(&args.output);
    std::fs::create_dir_all(&dir)?;
    for (name, text) in render::files(&objects) {
        std::fs::write(dir.join(&name), text)?;
        writeln!(env.out, "{}", args.output.join(&name).display())?;
    }
    Ok(())
}

fn compose(stack: &Stack, args: &RenderArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let selected = selected_services(stack, &args.services)?;
    let text = render::compose::render(stack, &selected);
    if args.output == Path::new("-") {
        env.out.write_all(text.as_bytes())?;
        return Ok(());
    }
    let dir = env.cwd.join(&args.output);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("compose.yaml"), text)?;
    writeln!(env.out, "{}", args.output.join("compose.yaml").display())?;
    Ok(())
}
