//! What several subcommands print with: the padded service-name width, whether to colour, the
//! table of `ps`, and coarse durations. Pure formatting; nothing here talks to an engine.

use std::io::{IsTerminal, Write};

use super::Env;
use crate::error::Error;

/// Service names are padded to the longest (within reason), `devstack` included.
pub(super) fn log_width(selected: &[String]) -> usize {
    selected
        .iter()
        .map(String::len)
        .chain(std::iter::once("devstack".len()))
        .max()
        .unwrap_or(8)
        .min(24)
}

pub(super) fn color_for(stdout: bool, env: &Env<'_>) -> bool {
    let no_color = (env.vars)("NO_COLOR").is_some_and(|v| !v.is_empty());
    let tty = if stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    tty && !no_color && !env.no_color
}

/// Prints rows under a header, columns padded to the widest cell (the last one unpadded).
pub(super) fn print_table<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    out: &mut dyn Write,
) -> Result<(), Error> {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(header[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `1h 5m`, `3m 12s`, `8s`: the two largest units are enough for an uptime.
pub(super) fn coarse(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs))
        .to_string()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}
