//! `devstack ls [--json]`: every instance of every project on this machine
//! (`control::instances`), as a table or JSON.

use super::output::print_table;
use super::Env;
use crate::cli::LsArgs;
use crate::config::Protocol;
use crate::control::instances::{self, Instance};
use crate::error::Error;

pub(super) fn ls(args: &LsArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let (rows, docker) = instances::list();
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
    } else {
        print_rows(&rows, env)?;
    }
    if let Err(e) = docker {
        writeln!(env.err, "note: containers and volumes not listed: {e}")?;
    }
    Ok(())
}

fn print_rows(rows: &[Instance], env: &mut Env<'_>) -> Result<(), Error> {
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let mut state = match r.pid {
                Some(pid) => format!("running (pid {pid})"),
                None if r.containers_running > 0 => "containers running".to_string(),
                None => "stopped".to_string(),
            };
            if let Some(main) = &r.shared_from {
                state.push_str(&format!(", thin on {main}"));
            }
            let ready = match (r.ready, r.total) {
                (Some(ready), Some(total)) => format!("{ready}/{total}"),
                _ => "-".to_string(),
            };
            let ports: Vec<String> = r
                .ports
                .iter()
                .filter_map(|p| {
                    let udp = if p.protocol == Protocol::Udp {
                        "/udp"
                    } else {
                        ""
                    };
                    Some(format!(
                        "{}:{}{udp}→{}",
                        p.service, p.container_port, p.host_port?
                    ))
                })
                .collect();
            let mut left = format!(
                "{} container{}, {} volume{}",
                r.containers,
                if r.containers == 1 { "" } else { "s" },
                r.volumes.len(),
                if r.volumes.len() == 1 { "" } else { "s" }
            );
            if let Some(bytes) = r.volume_bytes {
                left.push_str(&format!(" ({})", size(bytes)));
            }
            [
                r.project.clone(),
                state,
                ready,
                if ports.is_empty() {
                    "-".to_string()
                } else {
                    ports.join(", ")
                },
                left,
                r.path
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |p| p.display().to_string()),
            ]
        })
        .collect();
    print_table(
        &["PROJECT", "STATE", "READY", "PORTS", "LEFT", "PATH"],
        &table,
        env.out,
    )
}

/// Bytes as people read them: `0 B`, `812 KiB`, `46 MiB`, `1.2 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut n = bytes as f64 / 1024.0;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if n < 10.0 {
        format!("{n:.1} {}", UNITS[unit])
    } else {
        format!("{n:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_table() {
        for (bytes, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (831_488, "812 KiB"),
            (48_125_497, "46 MiB"),
            (5 * 1024 * 1024 + 300_000, "5.3 MiB"),
            (1_288_490_189, "1.2 GiB"),
        ] {
            assert_eq!(super::size(bytes), want, "{bytes}");
        }
    }
}
