//! The dispatcher: loads the stack and hands each subcommand to its own file (`up.rs`,
//! `down.rs`, `ps.rs`, …); the pure ones (`validate`, `config`, `graph`) live here. Output goes
//! to the writers given, so tests can read it. A running stack is wired in `crate::session`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

mod build;
mod control;
mod detach;
mod doctor;
mod down;
mod logs;
mod ls;
mod output;
mod ports;
mod ps;
mod render;
mod share;
mod share_http;
mod share_kafka;
mod snapshot;
mod test;
mod tty;
mod up;

pub use crate::project::state_dir;

use crate::cli::{Cli, Command, ConfigArgs, GraphArgs, RenderCommand};
use crate::config::{self, diagnostic::did_you_mean, Condition, LoadOptions, Loaded, Stack};
use crate::error::Error;
use crate::graph::Graph;
use crate::plan::PortMode;
use crate::project::instance::{self, Identity, Source};

/// Where a command runs and how it prints.
pub struct Env<'a> {
    pub cwd: PathBuf,
    pub vars: &'a dyn Fn(&str) -> Option<String>,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// `--no-color` was given.
    pub no_color: bool,
}

pub fn run(cli: &Cli, env: &mut Env<'_>) -> Result<(), Error> {
    // The shell helpers and the list of instances need no stack file.
    match &cli.command {
        Command::Completions(args) => return control::completions(args, env),
        Command::Man => return control::man(env),
        Command::Ls(args) => return ls::ls(args, env),
        _ => {}
    }
    let (mut loaded, identity) = match load(cli, env) {
        Ok(l) => {
            let identity = identity(cli, env, &l.stack.name, &l.stack.root)?;
            let mut l = for_instance(cli, env, &identity, l)?;
            instance::apply(&mut l.stack, &identity, &recorded_ports(&identity));
            (l, identity)
        }
        Err(e) => {
            match running_project(cli, env)?.map_or_else(|| elsewhere(cli, env), |p| Ok(Some(p)))? {
                // The files do not load (an edit under way), or there are none here (`down
                // --instance NAME` from anywhere): the project is still reached, and says what is
                // wrong (`ps`, `apply`).
                Some((stack, identity)) => (
                    Loaded {
                        stack,
                        warnings: Vec::new(),
                    },
                    identity,
                ),
                None => return Err(e),
            }
        }
    };
    if let Some(other) = claimed_elsewhere(cli, &loaded.stack, &identity) {
        return Err(Error::InstanceTaken {
            project: loaded.stack.name.clone(),
            here: loaded.stack.root.clone(),
            other,
        });
    }
    let mut thin = thin_of(cli, &loaded.stack, &identity)?;
    match cli.command {
        Command::Down(_) => thin.apply_keeping_services(&mut loaded.stack),
        _ => thin.apply(&mut loaded.stack),
    }
    match &cli.command {
        Command::Validate => validate(&loaded, env),
        Command::Config(args) => show_config(&loaded.stack, args, env),
        Command::Graph(args) => graph(&loaded.stack, args, env),
        Command::Up(args) if args.from_snapshot.is_some() => {
            snapshot::restore_before_up(&loaded.stack, args, env)?;
            let reload = reloader(cli, env, &identity, &thin);
            up::up(&loaded.stack, &identity, args, env, reload, &mut thin)
        }
        Command::Up(args) => {
            let reload = reloader(cli, env, &identity, &thin);
            up::up(&loaded.stack, &identity, args, env, reload, &mut thin)
        }
        Command::Ports(args) => ports::ports(&loaded.stack, &identity, args, env),
        Command::Down(args) => down::down(&loaded.stack, &identity, &thin, args, env),
        Command::Build(args) => build::build(&loaded.stack, args, env),
        Command::Ps(args) => ps::ps(&loaded.stack, &thin, args, env),
        Command::Logs(args) => logs::logs(&loaded.stack, args, env),
        Command::Test(args) => test::test(&loaded.stack, args, env),
        Command::Doctor(args) => doctor::doctor(&loaded.stack, &identity, args.json, env),
        Command::Render(what) => render::render(&loaded.stack, what, env),
        Command::Restart(args) => control::verb(&loaded.stack, control::Verb::Restart, args, env),
        Command::Stop(args) => control::stop(&loaded.stack, args, env),
        Command::Start(args) => control::verb(&loaded.stack, control::Verb::Start, args, env),
        Command::Wait(args) => control::wait(&loaded.stack, args, env),
        Command::Exec(args) => control::exec(&loaded.stack, &identity, args, env),
        Command::Apply(args) => control::apply(&loaded.stack, args, env),
        Command::Mcp(args) => control::mcp(&loaded.stack, &identity, args, env),
        Command::Snapshot(cmd) => snapshot::snapshot(&loaded.stack, cmd, env),
        Command::Reset(args) => snapshot::reset(&loaded.stack, args, env),
        Command::Completions(_) | Command::Man | Command::Ls(_) => {
            unreachable!("handled before loading")
        }
    }
}

/// For the MCP server: `snapshot save|restore` or `reset` run as the command line runs them
/// (with `--json`); what they printed on stdout, or the error with what they said on stderr.
pub(crate) fn run_data(
    stack: &Stack,
    cmd: &crate::cli::SnapshotCommand,
    reset: Option<&crate::cli::ResetArgs>,
) -> Result<String, (Error, String)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let vars = |k: &str| std::env::var(k).ok();
    let mut env = Env {
        cwd: stack.root.clone(),
        vars: &vars,
        out: &mut out,
        err: &mut err,
        no_color: true,
    };
    let result = match reset {
        Some(args) => snapshot::reset(stack, args, &mut env),
        None => snapshot::snapshot(stack, cmd, &mut env),
    };
    drop(env);
    match result {
        Ok(()) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(e) => Err((e, String::from_utf8_lossy(&err).into_owned())),
    }
}

/// What the instance shares with the main one (nothing for the main instance, or for a stack
/// known only by its name).
fn thin_of(cli: &Cli, stack: &Stack, identity: &Identity) -> Result<share::Thin, Error> {
    let (flag, is_up) = match &cli.command {
        Command::Up(args) => (args.share.as_deref(), true),
        _ => (None, false),
    };
    if flag.is_some_and(|f| f.iter().any(|s| !s.is_empty())) && !identity.is_instance() {
        return Err(Error::Usage {
            message: "`--share` makes a thin instance beside the main one, and this is the main instance".into(),
            help: Some("run it in a linked worktree, or name an instance: `devstack --instance NAME up --share …`".into()),
        });
    }
    share::Thin::of(stack, identity, flag, is_up)
}

/// The instance this command acts on, for the project `base` whose stack file is in `root`.
fn identity(cli: &Cli, env: &Env<'_>, base: &str, root: &Path) -> Result<Identity, Error> {
    let var = (env.vars)("DEVSTACK_INSTANCE");
    let worktree = instance::linked_worktree(root);
    instance::resolve(
        base,
        cli.global.instance.as_deref(),
        var.as_deref(),
        worktree.as_ref(),
    )
    .map_err(|raw| Error::Usage {
        message: format!("instance name `{raw}` has no letter or digit"),
        help: Some("an instance name is made of letters, digits, `-` and `_`".into()),
    })
}

/// Another checkout that already uses this instance's name (exit 2 rather than acting on its
/// containers). Checked for the instance a worktree gives, and for any instance `up` starts;
/// an instance named on purpose may be reached from anywhere else.
fn claimed_elsewhere(cli: &Cli, stack: &Stack, identity: &Identity) -> Option<PathBuf> {
    let implicit = matches!(identity.source, Some(Source::Worktree(_)));
    let starts = matches!(cli.command, Command::Up(_));
    if !identity.is_instance() || !(implicit || starts) {
        return None;
    }
    let record = instance::load_record(&crate::project::preferred_state_dir(&stack.name))
        .or_else(|| instance::load_record(&state_dir(&stack.name)));
    instance::claimed_elsewhere(record.as_ref(), &stack.root)
}

/// The host ports recorded for the instance (none for the main one: its ports are written).
fn recorded_ports(identity: &Identity) -> crate::project::ports::RecordedPorts {
    if !identity.is_instance() {
        return Default::default();
    }
    crate::project::ports::load(&crate::project::ports::path(&state_dir(
        &identity.project(),
    )))
}

/// How `up` chooses host ports: every one free with `--free-ports`; an instance's as recorded;
/// the main instance's as written.
pub(crate) fn port_mode(stack: &Stack, identity: &Identity, free_ports: bool) -> PortMode {
    if free_ports {
        return PortMode::AllFree;
    }
    if !identity.is_instance() {
        return PortMode::AsWritten;
    }
    let path = crate::project::ports::path(&state_dir(&stack.name));
    PortMode::Recorded(crate::plan::Recorded {
        ports: crate::project::ports::load(&path),
        path,
        busy: Default::default(),
    })
}

/// For the verbs that talk to a running stack, when its files do not load: the project a
/// devstack runs here (`-p`, `COMPOSE_PROJECT_NAME`, the first file's `name:`, or its folder,
/// with this checkout's instance).
fn running_project(cli: &Cli, env: &Env<'_>) -> Result<Option<(Stack, Identity)>, Error> {
    let live = matches!(
        cli.command,
        Command::Ps(_)
            | Command::Logs(_)
            | Command::Apply(_)
            | Command::Restart(_)
            | Command::Stop(_)
            | Command::Start(_)
            | Command::Wait(_)
            | Command::Ports(_)
    );
    if !live {
        return Ok(None);
    }
    let file = match cli.global.files.first() {
        Some(f) => env.cwd.join(f),
        None => match config::find_stack_file(&env.cwd) {
            Some(f) => f,
            None => return Ok(None),
        },
    };
    let Some(root) = file.parent().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let written = || {
        let text = std::fs::read_to_string(&file).ok()?;
        let line = text.lines().find(|l| l.starts_with("name:"))?;
        let name = line["name:".len()..].trim().trim_matches(['"', '\'']);
        Some(config::validate::normalize_project(name))
    };
    let base = cli
        .global
        .project_name
        .clone()
        .or_else(|| (env.vars)("COMPOSE_PROJECT_NAME"))
        .filter(|n| !n.is_empty())
        .or_else(written)
        .or_else(|| {
            let dir = root.file_name()?.to_string_lossy().into_owned();
            Some(config::validate::normalize_project(&dir))
        });
    let Some(base) = base else {
        return Ok(None);
    };
    let identity = identity(cli, env, &base, &root)?;
    let name = identity.project();
    if crate::project::lock::holder(&crate::project::state_dir(&name)).is_none() {
        return Ok(None);
    }
    Ok(Some((Stack::named(name, root), identity)))
}

/// The stack of a recorded instance, loaded from the folder it was started from (default
/// options), so that `logs` and `ps` know its services and `down` stops them in order; known
/// by its name alone when those files no longer load as that project.
fn recorded_stack(r: &instance::Record, identity: &Identity, env: &Env<'_>) -> Stack {
    let opts = LoadOptions {
        cwd: r.path.clone(),
        project_name: Some(r.base.clone()),
        instance: identity.instance.clone(),
        ..Default::default()
    };
    match config::load(&opts, env.vars) {
        Ok(mut l) if l.stack.name == r.base => {
            instance::apply(&mut l.stack, identity, &recorded_ports(identity));
            l.stack
        }
        _ => Stack::named(r.project.clone(), r.path.clone()),
    }
}

/// `--instance NAME` with no stack file here: the instance as `devstack ls` shows it (its
/// project name, or its own name when only one project has an instance of that name), for the
/// verbs that need no stack file (`down`, `ps`, `logs`, `ports`).
fn elsewhere(cli: &Cli, env: &Env<'_>) -> Result<Option<(Stack, Identity)>, Error> {
    let anywhere = matches!(
        cli.command,
        Command::Down(_) | Command::Ps(_) | Command::Logs(_) | Command::Ports(_)
    );
    let no_file = cli.global.files.is_empty() && config::find_stack_file(&env.cwd).is_none();
    let (Some(name), true, true) = (cli.global.instance.as_deref(), anywhere, no_file) else {
        return Ok(None);
    };
    let known: Vec<instance::Record> = crate::project::known_state_dirs()
        .iter()
        .filter_map(|(_, dir)| instance::load_record(dir))
        .collect();
    match instance::find_known(&known, name) {
        Ok(r) => {
            let identity = Identity {
                base: r.base.clone(),
                instance: r.instance.clone(),
                source: Some(Source::Flag),
            };
            Ok(Some((recorded_stack(r, &identity, env), identity)))
        }
        Err(several) if !several.is_empty() => Err(Error::Usage {
            message: format!(
                "instance `{name}` is ambiguous here: {}",
                several.join(", ")
            ),
            help: Some("name it as `devstack ls` shows it (the whole project name)".into()),
        }),
        Err(_) => Err(Error::Usage {
            message: format!("no stack file here and no instance `{name}` on this machine"),
            help: Some("`devstack ls` lists the instances".into()),
        }),
    }
}

fn load_options(cli: &Cli, env: &Env<'_>) -> LoadOptions {
    LoadOptions {
        files: cli.global.files.clone(),
        project_name: cli.global.project_name.clone(),
        cwd: env.cwd.clone(),
        env_files: cli.global.env_files.clone(),
        profiles: cli.global.profiles.clone(),
        targets: targets(&cli.command),
        instance: None,
    }
}

/// Loads the stack files again as this command did (the environment as it is now, the same
/// options and named services), for a run that follows its stack files.
fn reloader(
    cli: &Cli,
    env: &Env<'_>,
    identity: &Identity,
    thin: &share::Thin,
) -> crate::engine::apply::Reload {
    let opts = LoadOptions {
        instance: identity.instance.clone(),
        ..load_options(cli, env)
    };
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let identity = identity.clone();
    // The record as the run started (before it chose its ports): the stack a reload compares
    // with was pinned to it, so an unchanged port reads as unchanged.
    let recorded = recorded_ports(&identity);
    let thin = thin.clone();
    Box::new(move || {
        let mut loaded =
            config::load(&opts, &|k| vars.get(k).cloned()).map_err(|e| e.render(false))?;
        // The same instance as at start, whatever the files now say.
        let identity = Identity {
            base: loaded.stack.name.clone(),
            ..identity.clone()
        };
        instance::apply(&mut loaded.stack, &identity, &recorded);
        thin.apply(&mut loaded.stack);
        let selected =
            selected_services(&loaded.stack, &opts.targets).map_err(|e| e.render(false))?;
        Ok(crate::engine::apply::Reloaded {
            stack: loaded.stack,
            selected,
            warnings: loaded.warnings,
        })
    })
}

/// The stack as an instance reads it: loaded again with the instance known, so
/// `${COMPOSE_PROJECT_NAME}` is the instance's project name (the main instance's load stands).
fn for_instance(
    cli: &Cli,
    env: &Env<'_>,
    identity: &Identity,
    loaded: Loaded,
) -> Result<Loaded, Error> {
    if !identity.is_instance() {
        return Ok(loaded);
    }
    let opts = LoadOptions {
        instance: identity.instance.clone(),
        ..load_options(cli, env)
    };
    Ok(config::load(&opts, env.vars)?)
}

fn load(cli: &Cli, env: &mut Env<'_>) -> Result<Loaded, Error> {
    let opts = load_options(cli, env);
    let loaded = config::load(&opts, env.vars)?;
    for w in &loaded.warnings {
        writeln!(env.err, "warning: {w}")?;
    }
    Ok(loaded)
}

/// The services a command names: their profiles are switched on, as in Compose.
fn targets(command: &Command) -> Vec<String> {
    match command {
        Command::Up(args) => args.services.clone(),
        Command::Graph(args) => args.services.clone(),
        Command::Test(args) => args.services.clone(),
        Command::Render(RenderCommand::K8s(args) | RenderCommand::Compose(args)) => {
            args.services.clone()
        }
        _ => Vec::new(),
    }
}

fn validate(loaded: &Loaded, env: &mut Env<'_>) -> Result<(), Error> {
    let stack = &loaded.stack;
    let tasks = stack.services.values().filter(|s| s.task.is_some()).count();
    let containers = stack
        .services
        .values()
        .filter(|s| s.is_container() && s.task.is_none())
        .count();
    let processes = stack.services.len() - containers - tasks;
    let tasks = if tasks == 0 {
        String::new()
    } else {
        format!(", {tasks} task{}", if tasks == 1 { "" } else { "s" })
    };
    let files: Vec<String> = stack
        .files
        .iter()
        .map(|f| f.strip_prefix(&env.cwd).unwrap_or(f).display().to_string())
        .collect();
    writeln!(
        env.out,
        "{}: ok — project `{}`, {} services ({} containers, {} processes{tasks})",
        files.join(" + "),
        stack.name,
        stack.services.len(),
        containers,
        processes,
    )?;
    Ok(())
}

fn show_config(stack: &Stack, args: &ConfigArgs, env: &mut Env<'_>) -> Result<(), Error> {
    if args.services {
        for name in stack.services.keys() {
            writeln!(env.out, "{name}")?;
        }
        return Ok(());
    }
    let value = config::show::display_value(stack, args.show_secrets);
    let text = if args.json {
        serde_json::to_string_pretty(&value).map_err(|e| Error::Encode(e.to_string()))? + "\n"
    } else {
        serde_yaml::to_string(&value).map_err(|e| Error::Encode(e.to_string()))?
    };
    env.out.write_all(text.as_bytes())?;
    Ok(())
}

/// The named services and everything they depend on, in start order; all when none are named.
pub fn selected_services(stack: &Stack, names: &[String]) -> Result<Vec<String>, Error> {
    let (graph, _) = selected(stack, names)?;
    Ok(graph.start_order())
}

fn selected(stack: &Stack, names: &[String]) -> Result<(Graph, Vec<String>), Error> {
    let full = Graph::from_stack(stack);
    if names.is_empty() {
        let all = full.start_order();
        return Ok((full, all));
    }
    match full.closure(names.iter().map(String::as_str)) {
        Ok(sel) => Ok((full.subset(&sel), sel)),
        Err(unknown) => {
            let name = &unknown[0];
            Err(Error::Usage {
                message: format!("no service `{name}` in the stack"),
                help: did_you_mean(name, stack.services.keys().map(String::as_str)).or_else(|| {
                    Some(format!(
                        "the services are {}",
                        stack
                            .services
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            })
        }
    }
}

fn graph(stack: &Stack, args: &GraphArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let (graph, _) = selected(stack, &args.services)?;
    let levels = graph.levels();
    if args.json {
        let services: serde_json::Map<String, serde_json::Value> = graph
            .names()
            .map(|n| {
                let svc = &stack.services[n];
                (
                    n.to_string(),
                    json!({
                        "kind": svc.kind_name(),
                        "depends_on": svc.depends_on,
                        "dependents": graph.dependents(n),
                    }),
                )
            })
            .collect();
        let v = json!({
            "levels": levels,
            "start_order": graph.start_order(),
            "stop_order": graph.stop_order(),
            "services": services,
        });
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    if args.tree {
        let roots: Vec<&str> = graph
            .names()
            .filter(|n| graph.dependents(n).is_empty())
            .collect();
        for root in roots {
            writeln!(env.out, "{}", label(stack, root, None))?;
            tree(stack, &graph, root, "", env.out)?;
        }
        return Ok(());
    }
    writeln!(env.out, "start levels (a service starts as soon as its own dependencies are ready; stop runs in reverse):")?;
    let width = levels.iter().flatten().map(String::len).max().unwrap_or(0);
    for (i, level) in levels.iter().enumerate() {
        for (j, name) in level.iter().enumerate() {
            let head = if j == 0 {
                format!("{:>3}.", i + 1)
            } else {
                "    ".to_string()
            };
            let deps = graph.dependencies(name);
            let svc = &stack.services[name.as_str()];
            let after = if deps.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = deps
                    .iter()
                    .map(|d| match svc.depends_on.get(d) {
                        Some(Condition::Ready) | None => d.clone(),
                        Some(c) => format!("{d} ({})", condition_name(*c)),
                    })
                    .collect();
                format!("after {}", parts.join(", "))
            };
            let line = format!("{head} {name:<width$}  {:<9}  {after}", svc.kind_name());
            writeln!(env.out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

fn condition_name(c: Condition) -> &'static str {
    match c {
        Condition::Ready => "ready",
        Condition::Started => "started",
        Condition::Completed => "completed",
    }
}

fn label(stack: &Stack, name: &str, cond: Option<Condition>) -> String {
    let kind = stack.services.get(name).map_or("", |s| s.kind_name());
    match cond {
        Some(c) if c != Condition::Ready => format!("{name} ({kind}, when {})", condition_name(c)),
        _ => format!("{name} ({kind})"),
    }
}

fn tree(
    stack: &Stack,
    graph: &Graph,
    name: &str,
    prefix: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let deps = graph.dependencies(name);
    for (i, d) in deps.iter().enumerate() {
        let last = i + 1 == deps.len();
        let cond = stack.services[name].depends_on.get(d).copied();
        writeln!(
            out,
            "{prefix}{}{}",
            if last { "└── " } else { "├── " },
            label(stack, d, cond)
        )?;
        let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
        tree(stack, graph, d, &child_prefix, out)?;
    }
    Ok(())
}
