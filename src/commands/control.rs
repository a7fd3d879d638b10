//! The verbs that talk to a running devstack through its control socket (`restart`, `stop`,
//! `start`, `wait`, the live `ps`, `exec`, `mcp`), and the shell helpers (`completions`,
//! `man`). None of them decides anything about services: the running engine does.

use std::io::IsTerminal;

use clap::CommandFactory;

use super::output::{color_for, log_width};
use super::Env;
use crate::cli::{
    ApplyArgs, Cli, CompletionsArgs, ControlArgs, ExecArgs, McpArgs, StopArgs, WaitArgs,
};
use crate::config::{diagnostic::did_you_mean, ServiceName, Stack};
use crate::control::client::{self, Connection};
use crate::control::protocol::{PsRow, Reply, Request};
use crate::engine::ServiceStatus;
use crate::error::{exit, Error};
use crate::event::ChangeAction;
use crate::logs::render::{local_utc_offset, Renderer};
use crate::plan::HostPorts;
use crate::project::state_dir;
use crate::runtime::ContainerRuntime;
use crate::session::{runtime, ContainerEngine};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Restart,
    Stop,
    Start,
}

/// Refuses names that are not services of the stack, with a did-you-mean.
fn known(stack: &Stack, names: &[String]) -> Result<(), Error> {
    if stack.services.is_empty() {
        // Reached while the files do not load: the running devstack checks the names.
        return Ok(());
    }
    for n in names {
        if !stack.services.contains_key(n) {
            return Err(Error::Usage {
                message: format!("no service `{n}` in the stack"),
                help: did_you_mean(n, stack.services.keys().map(String::as_str)),
            });
        }
    }
    Ok(())
}

fn ms(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

/// Reads answers until `done`, showing the relayed events on stderr. The final states.
pub(super) fn until_done(
    conn: &mut Connection,
    names: &[String],
    env: &mut Env<'_>,
) -> Result<Vec<ServiceStatus>, Error> {
    let renderer = Renderer {
        width: log_width(names),
        color: color_for(false, env),
        utc_offset: local_utc_offset(),
    };
    loop {
        match conn.answer()? {
            Some(Reply::Record { record }) => {
                if !record.text.is_empty() {
                    writeln!(env.err, "{}", renderer.render(&record.to_line()))?;
                }
            }
            Some(Reply::Done { services }) => return Ok(services),
            Some(Reply::Error {
                code,
                message,
                not_ready,
            }) => return Err(answer_error(code, message, not_ready)),
            Some(Reply::Hello { .. } | Reply::Ps { .. } | Reply::Apply { .. }) => {}
            None => {
                return Err(Error::Engine(
                    "the running devstack closed the connection before answering".into(),
                ))
            }
        }
    }
}

fn answer_error(
    code: i32,
    message: String,
    not_ready: Option<crate::engine::NotReadyReport>,
) -> Error {
    match (not_ready, code) {
        (Some(r), _) => Error::NotReadyLive(Box::new(r)),
        (None, exit::CONFIG) => Error::Usage {
            message,
            help: None,
        },
        (None, exit::NOT_RUNNING) => Error::Engine(message),
        (None, _) => Error::Engine(message),
    }
}

fn summary(
    services: &[ServiceStatus],
    names: &[String],
    json: bool,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let chosen: Vec<&ServiceStatus> = services
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| *n == s.service))
        .collect();
    if json {
        let text =
            serde_json::to_string_pretty(&chosen).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    for s in chosen {
        let what = match (&s.pid, &s.container) {
            (Some(pid), _) => format!(" (pid {pid})"),
            (None, Some(c)) if s.running => format!(" (container {})", short_id(c)),
            _ => String::new(),
        };
        writeln!(env.out, "{}: {}{what}", s.service, s.state)?;
    }
    Ok(())
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `devstack restart|stop|start SERVICE…`.
pub(super) fn verb(
    stack: &Stack,
    verb: Verb,
    args: &ControlArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    known(stack, &args.services)?;
    let mut conn = client::connect(&state_dir(&stack.name), &stack.name)?;
    let services = ServiceName::list(&args.services);
    let wait = !args.no_wait;
    let timeout_ms = ms(args.timeout);
    conn.send(match verb {
        Verb::Restart => Request::Restart {
            services,
            wait,
            timeout_ms,
        },
        Verb::Stop => Request::Stop { services, wait },
        Verb::Start => Request::Start {
            services,
            wait,
            timeout_ms,
        },
    })?;
    let states = until_done(&mut conn, &args.services, env)?;
    summary(&states, &args.services, args.json, env)
}

/// `devstack stop SERVICE… [--force]`: a service that running thin instances share is not
/// stopped under them unless forced (then they are named).
pub(super) fn stop(stack: &Stack, args: &StopArgs, env: &mut Env<'_>) -> Result<(), Error> {
    known(stack, &args.control.services)?;
    let shared = crate::project::shared_by_thin(&stack.name, &args.control.services);
    if !shared.is_empty() && !args.force {
        return Err(Error::Shared {
            message: format!(
                "thin instances use {} of `{}`",
                shared.join(", "),
                stack.name
            ),
            help: "stop them first (`devstack down --instance NAME`), or `devstack stop --force` to stop it under them".into(),
        });
    }
    if !shared.is_empty() {
        writeln!(
            env.err,
            "warning: stopping {} under the thin instances that use it (--force)",
            shared.join(", ")
        )?;
    }
    verb(stack, Verb::Stop, &args.control, env)
}

/// How long `wait` waits for a devstack that has not started serving yet.
const APPEAR: std::time::Duration = std::time::Duration::from_secs(10);

/// `devstack wait [SERVICE…] [--timeout D]`.
pub(super) fn wait(stack: &Stack, args: &WaitArgs, env: &mut Env<'_>) -> Result<(), Error> {
    known(stack, &args.services)?;
    // `devstack up &` then `devstack wait`: the devstack gets a moment to appear.
    let appear = args.timeout.unwrap_or(APPEAR).min(APPEAR);
    let deadline = std::time::Instant::now() + appear;
    let mut conn = loop {
        match client::connect(&state_dir(&stack.name), &stack.name) {
            Ok(c) => break c,
            Err(Error::NotRunning { .. } | Error::Engine(_))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    conn.send(Request::Wait {
        services: ServiceName::list(&args.services),
        timeout_ms: ms(args.timeout),
    })?;
    let states = until_done(&mut conn, &args.services, env)?;
    summary(&states, &args.services, false, env)
}

/// The running devstack's `ps` rows, or `None` when no devstack runs the project.
pub(super) fn live_ps(stack: &Stack) -> Result<Option<Vec<PsRow>>, Error> {
    let mut conn = match client::connect(&state_dir(&stack.name), &stack.name) {
        Ok(c) => c,
        Err(Error::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    conn.send(Request::Ps)?;
    answer_of(&mut conn, |r| match r {
        Reply::Ps { services } => Some(services),
        _ => None,
    })
    .map(Some)
}

/// The first answer `pick` takes; an error answer, or the end of the connection, as the error
/// it is.
fn answer_of<T>(conn: &mut Connection, pick: impl Fn(Reply) -> Option<T>) -> Result<T, Error> {
    loop {
        match conn.answer()? {
            Some(Reply::Error {
                code,
                message,
                not_ready,
            }) => return Err(answer_error(code, message, not_ready)),
            Some(reply) => {
                if let Some(t) = pick(reply) {
                    return Ok(t);
                }
            }
            None => {
                return Err(Error::Engine(
                    "the running devstack closed the connection before answering".into(),
                ))
            }
        }
    }
}

/// `ps` as a table: the live rows of a running devstack.
pub(super) fn print_live_ps(rows: &[PsRow], json: bool, env: &mut Env<'_>) -> Result<(), Error> {
    if json {
        let text = serde_json::to_string_pretty(rows).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    if let Some(error) = rows.iter().find_map(|r| r.config_error.as_deref()) {
        writeln!(
            env.err,
            "the stack files are not applied (the stack runs as it was):\n{}",
            error.trim_end()
        )?;
    }
    let now = crate::clock::unix_ms();
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let s = &r.status;
            let id = match (&s.pid, &s.container) {
                (Some(pid), _) => pid.to_string(),
                (None, Some(c)) if s.running => short_id(c).to_string(),
                _ => "-".to_string(),
            };
            let ports = if s.ports.is_empty() {
                "-".to_string()
            } else {
                s.ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let uptime = s.started_at_ms.map_or_else(
                || "-".to_string(),
                |t| super::output::coarse(now.saturating_sub(t) / 1000),
            );
            [
                s.service.to_string(),
                s.kind.to_string(),
                match &s.detail {
                    Some(d) => format!("{} ({d})", s.state),
                    None => s.state.to_string(),
                },
                s.restarts.to_string(),
                id,
                ports,
                uptime,
                match (r.cpu_percent, r.rss_bytes) {
                    (c, Some(m)) => format!(
                        "{} {}",
                        c.map_or_else(|| "-".to_string(), |c| format!("{c:.1}%")),
                        mebibytes(m)
                    ),
                    _ => "-".to_string(),
                },
            ]
        })
        .collect();
    let header = [
        "SERVICE", "KIND", "STATE", "RESTARTS", "PID/ID", "PORTS", "UPTIME", "CPU MEM",
    ];
    super::output::print_table(&header, &table, env.out)
}

fn mebibytes(b: u64) -> String {
    format!("{:.1}MiB", b as f64 / (1024.0 * 1024.0))
}

/// `devstack exec SERVICE -- CMD…`: in the container (exec API; a pseudo-terminal when stdin
/// is a terminal), or for a process in its working folder with its environment (port
/// references as the running devstack resolved them).
pub(super) fn exec(
    stack: &Stack,
    identity: &crate::project::instance::Identity,
    args: &ExecArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    known(stack, std::slice::from_ref(&args.service))?;
    let svc = &stack.services[&args.service];
    let code = if svc.is_container() {
        exec_in_container(stack, args)?
    } else {
        exec_as_process(stack, identity, svc, args, env)?
    };
    match code {
        0 => Ok(()),
        c => Err(Error::Exit(i32::try_from(c).unwrap_or(exit::FAILURE))),
    }
}

/// `exec` in the service's running container, through Docker's exec API. Its exit code.
fn exec_in_container(stack: &Stack, args: &ExecArgs) -> Result<i64, Error> {
    let tty = !args.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let attach_stdin = tty || args.interactive;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let service = std::slice::from_ref(&args.service);
        let engine = ContainerEngine::for_services(stack, service).await?;
        let docker = engine
            .docker()
            .expect("a container service is picked Docker");
        let container = docker
            .list(&stack.name)
            .await?
            .into_iter()
            .find(|c| {
                c.service == args.service && c.status == crate::runtime::ContainerStatus::Running
            })
            .ok_or_else(|| Error::Usage {
                message: format!(
                    "service `{}` of project `{}` has no running container",
                    args.service, stack.name
                ),
                help: Some(format!("`devstack up {}` starts it", args.service)),
            })?;
        let _raw = if tty {
            super::tty::RawMode::enter()
        } else {
            None
        };
        docker
            .exec_attached(
                &container.id,
                &args.command,
                tty,
                attach_stdin,
                super::tty::size(),
            )
            .await
            .map_err(Error::from)
    });
    // A stdin reader may still wait for a key: do not wait for it.
    rt.shutdown_background();
    result
}

/// `exec` for a native process: in its working folder with its environment (port references
/// as the running devstack resolved them, or as written). Its exit code.
fn exec_as_process(
    stack: &Stack,
    identity: &crate::project::instance::Identity,
    svc: &crate::config::Service,
    args: &ExecArgs,
    env: &mut Env<'_>,
) -> Result<i64, Error> {
    let ports = match live_ps(stack)? {
        Some(rows) => HostPorts(
            rows.into_iter()
                .map(|r| {
                    let ports = r
                        .status
                        .ports
                        .iter()
                        .map(|p| crate::runtime::Published {
                            host_ip: p.host_ip,
                            host_port: p.host_port,
                            container_port: p.container_port,
                            protocol: p.protocol,
                        })
                        .collect();
                    (r.status.service.into_string(), ports)
                })
                .collect(),
        ),
        None => crate::plan::assign_ports(
            stack,
            &[],
            &super::port_mode(stack, identity, false),
            &mut |_| Ok(0),
        )?,
    };
    let spec = crate::unit::process::spawn_spec(&stack.name, svc, &ports)
        .expect("a service without image is a process");
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    env.out.flush()?;
    let status = std::process::Command::new(program)
        .args(rest)
        .current_dir(&spec.cwd)
        // As the service itself gets it (`SpawnSpec` leaves it to the spawner).
        .env("PYTHONUNBUFFERED", "1")
        // Not the service's mark: stopping the service must not end this command.
        .envs(
            spec.env
                .iter()
                .filter(|(k, _)| k.as_str() != crate::process::MARK_VAR)
                .map(|(k, v)| (k, v)),
        )
        .status()
        .map_err(|e| Error::Usage {
            message: format!("cannot run `{program}` in `{}`: {e}", spec.cwd.display()),
            help: None,
        })?;
    Ok(match status.code() {
        Some(c) => i64::from(c),
        None => {
            128 + i64::from(std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0))
        }
    })
}

/// `devstack mcp [--read-only]`.
pub(super) fn mcp(
    stack: &Stack,
    identity: &crate::project::instance::Identity,
    args: &McpArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let server = crate::control::mcp::Mcp::new(stack, state_dir(&stack.name), args.read_only)
        .with_base(&identity.base);
    server.serve(std::io::stdin().lock(), env.out)
}

/// `devstack completions SHELL`: the registration script; completions themselves are computed
/// by devstack when the shell asks (`COMPLETE=SHELL devstack -- …`), service names included.
pub(super) fn completions(args: &CompletionsArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let shells = clap_complete::env::Shells::builtins();
    let name = args.shell.to_string();
    let completer = shells.completer(&name).ok_or_else(|| Error::Usage {
        message: format!("no completions for `{name}`"),
        help: Some(format!(
            "the shells are {}",
            shells.names().collect::<Vec<_>>().join(", ")
        )),
    })?;
    completer.write_registration("COMPLETE", "devstack", "devstack", "devstack", env.out)?;
    Ok(())
}

/// `devstack man`: the manual page.
pub(super) fn man(env: &mut Env<'_>) -> Result<(), Error> {
    clap_mangen::Man::new(Cli::command()).render(env.out)?;
    Ok(())
}

/// `devstack apply [--dry-run] [--json]`: the running stack takes the stack files as they are
/// now. Exit 2 when they are invalid, 4 when a port they need is taken, 9 when nothing runs.
pub(super) fn apply(stack: &Stack, args: &ApplyArgs, env: &mut Env<'_>) -> Result<(), Error> {
    use crate::engine::apply::ApplyAnswer;
    let mut conn = client::connect(&state_dir(&stack.name), &stack.name)?;
    conn.send(Request::Apply {
        dry_run: args.dry_run,
    })?;
    let answer = answer_of(&mut conn, |r| match r {
        Reply::Apply { answer } => Some(answer),
        _ => None,
    })?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&answer).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
    }
    match answer {
        ApplyAnswer::Applied { changes, dry_run } => {
            if !args.json {
                let what = if dry_run { "plan" } else { "applied" };
                writeln!(env.out, "{what}: {}", crate::event::plan_summary(&changes))?;
                for c in changes.iter().filter(|c| c.action != ChangeAction::Unchanged) {
                    let causes = c.causes.join(", ");
                    writeln!(env.out, "  {:<9} {}  {causes}", c.action.as_str(), c.service)?;
                }
            }
            Ok(())
        }
        ApplyAnswer::Invalid { error } => Err(Error::Usage {
            message: format!("the stack files are invalid; nothing changed\n{error}"),
            help: None,
        }),
        ApplyAnswer::Refused { code, reason } => Err(Error::ApplyRefused { code, reason }),
        ApplyAnswer::Stopping => Err(Error::NotRunning {
            project: stack.name.clone(),
        }),
        ApplyAnswer::Unsupported => Err(Error::Engine(
            "this run does not follow its stack files (`devstack test` keeps the stack it started with)".into(),
        )),
    }
}
