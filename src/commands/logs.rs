//! `devstack logs`: the per-service log files merged by time, then (`-f`) the live stream of
//! the running devstack, or the files polled when none runs.

use std::io::Write;

use super::output::{color_for, log_width};
use super::Env;
use crate::config::{ServiceName, Stack};
use crate::control::client::Connection;
use crate::control::protocol::{Reply, Request};
use crate::error::Error;
use crate::logs::files::{path_of, Record};
use crate::logs::query::{resolve_run, select, Filter, RunSelector};
use crate::logs::render::{local_utc_offset, Renderer};
use crate::project::state_dir;

/// Prints one record (as text or JSON).
type Show<'a> = dyn Fn(&Record, &mut dyn Write) -> std::io::Result<()> + 'a;

/// `devstack logs`: the per-service log files, merged by time; with `-f`, then the live stream
/// of the running devstack (the files, polled, when none runs).
pub(super) fn logs(
    stack: &Stack,
    args: &crate::cli::LogsArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let dir = state_dir(&stack.name).join("logs");
    let names = log_names(stack, args)?;
    let filter = filter_of(args, &dir)?;
    let renderer = Renderer {
        width: log_width(&names),
        color: color_for(true, env),
        utc_offset: local_utc_offset(),
    };
    let show = |r: &Record, out: &mut dyn Write| -> std::io::Result<()> {
        if args.json {
            let r = r.clone().with_fields();
            writeln!(out, "{}", serde_json::to_string(&r).unwrap_or_default())
        } else {
            writeln!(out, "{}", renderer.render(&r.to_line()))
        }
    };
    // Subscribed before the files are read, so no line falls between the two.
    let mut live = None;
    if args.follow {
        match crate::control::client::connect(&state_dir(&stack.name), &stack.name) {
            Ok(mut conn) => {
                conn.send(Request::Logs {
                    services: ServiceName::list(&args.services),
                })?;
                live = Some(conn);
            }
            Err(Error::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let records = select(&dir, &names, &filter);
    if records.is_empty() && !args.follow {
        writeln!(
            env.err,
            "no logs yet for project `{}` (in `{}`)",
            stack.name,
            dir.display()
        )?;
        return Ok(());
    }
    for r in &records {
        show(r, env.out)?;
    }
    if !args.follow {
        return Ok(());
    }
    env.out.flush()?;
    match live {
        Some(conn) => follow_live(conn, &records, &filter, &show, env, &stack.name),
        None => follow_files(&dir, &names, &filter, &show, env),
    }
}

/// The services named (checked, with a did-you-mean), or all of them and devstack's own log.
fn log_names(stack: &Stack, args: &crate::cli::LogsArgs) -> Result<Vec<String>, Error> {
    if args.services.is_empty() {
        let mut all: Vec<String> = stack.services.keys().cloned().collect();
        all.push("devstack".to_string());
        return Ok(all);
    }
    for n in &args.services {
        if !stack.services.contains_key(n) {
            return Err(Error::Usage {
                message: format!("no service `{n}` in the stack"),
                help: crate::config::diagnostic::did_you_mean(
                    n,
                    stack.services.keys().map(String::as_str),
                ),
            });
        }
    }
    Ok(args.services.clone())
}

/// `--since`, `--grep`, `--tail`, `--level`, `--field` and `--run` as one filter. Without
/// `--run`, the current (or last) run; with `--since` alone, every run in that time.
fn filter_of(args: &crate::cli::LogsArgs, dir: &std::path::Path) -> Result<Filter, Error> {
    let selector = args.run.unwrap_or(if args.since.is_some() {
        RunSelector::All
    } else {
        RunSelector::Relative(0)
    });
    let run =
        resolve_run(selector, &crate::logs::files::runs(dir)).map_err(|message| Error::Usage {
            message,
            help: Some("`devstack logs --run all` shows every run kept".to_string()),
        })?;
    let grep = match &args.grep {
        Some(g) => Some(regex::Regex::new(g).map_err(|e| Error::Usage {
            message: format!("`--grep {g}` is not a regular expression: {e}"),
            help: None,
        })?),
        None => None,
    };
    Ok(Filter {
        since_ms: args
            .since
            .map(|d| crate::clock::unix_ms().saturating_sub(d.as_millis() as u64)),
        grep,
        tail: args.tail,
        level: args.level,
        fields: args.fields.clone(),
        run,
    })
}

/// Follows the running devstack's stream until it stops.
fn follow_live(
    mut conn: Connection,
    records: &[Record],
    filter: &Filter,
    show: &Show<'_>,
    env: &mut Env<'_>,
    project: &str,
) -> Result<(), Error> {
    // What the files already showed is not shown twice.
    let shown_until = records.last().map_or(0, |r| r.t);
    let seen: std::collections::HashSet<(String, String)> = records
        .iter()
        .filter(|r| r.t == shown_until)
        .map(|r| (r.service.clone(), r.text.clone()))
        .collect();
    while let Some(reply) = conn.answer()? {
        let Reply::Record { record } = reply else {
            continue;
        };
        if record.t < shown_until
            || (record.t == shown_until
                && seen.contains(&(record.service.clone(), record.text.clone())))
            || !filter.matches(&record)
            || (record.stream == "event" && record.text.is_empty())
        {
            continue;
        }
        show(&record, env.out)?;
        env.out.flush()?;
    }
    writeln!(env.err, "the devstack of project `{project}` has stopped")?;
    Ok(())
}

/// Follows the files: reads what is appended, polling (a few per project; cheap). Never ends
/// on its own.
fn follow_files(
    dir: &std::path::Path,
    names: &[String],
    filter: &Filter,
    show: &Show<'_>,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let mut offsets: Vec<(std::path::PathBuf, u64)> = names
        .iter()
        .map(|n| {
            let p = path_of(dir, n);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, len)
        })
        .collect();
    loop {
        let mut fresh: Vec<Record> = Vec::new();
        for (p, off) in offsets.iter_mut() {
            fresh.extend(appended(p, off).into_iter().filter(|r| filter.matches(r)));
        }
        fresh.sort_by_key(|r| r.t);
        for r in &fresh {
            show(r, env.out)?;
        }
        env.out.flush()?;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The whole records appended to the file at `path` since `offset`, which moves past them.
fn appended(path: &std::path::Path, offset: &mut u64) -> Vec<Record> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    if meta.len() < *offset {
        *offset = 0; // rotated
    }
    if meta.len() == *offset {
        return Vec::new();
    }
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let new = &bytes[*offset as usize..];
    // Only whole lines; a half-written last line waits for the next round.
    let end = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    *offset += end as u64;
    String::from_utf8_lossy(&new[..end])
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .collect()
}
