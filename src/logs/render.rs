//! One log line as text: `HH:MM:SS.mmm service | line`, names aligned, a colour per service on a
//! terminal, and the text of a line with a level coloured by it (errors red, warnings yellow,
//! debug and trace dim). Pure: the clock offset and width come in.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Level, LogLine, Stream};

/// Colours for service names (ANSI 256-colour codes that read on dark and light terminals).
const PALETTE: &[u8] = &[39, 208, 77, 170, 214, 45, 203, 141, 112, 220, 81, 197];

#[derive(Debug, Clone)]
pub(crate) struct Renderer {
    pub width: usize,
    pub color: bool,
    /// Seconds east of UTC for the clock column.
    pub utc_offset: i64,
}

fn color_of(name: &str) -> u8 {
    // FNV-1a: stable across runs, so a service keeps its colour.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    PALETTE[(h as usize) % PALETTE.len()]
}

/// `HH:MM:SS.mmm` of `day` seconds into the day and `millis`, digit by digit: this runs for
/// every line shown, and `write!`'s formatting machinery costs more than the rest of the line.
fn push_clock(out: &mut String, day: i64, millis: u32) {
    let two = |out: &mut String, n: i64| {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    two(out, day / 3600);
    out.push(':');
    two(out, (day / 60) % 60);
    out.push(':');
    two(out, day % 60);
    out.push('.');
    out.push(char::from(b'0' + (millis / 100 % 10) as u8));
    two(out, i64::from(millis % 100));
}

#[cfg(test)]
/// `HH:MM:SS.mmm` of `at`, shifted by `utc_offset` seconds.
pub(crate) fn clock(at: SystemTime, utc_offset: i64) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64 + utc_offset;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        (day / 60) % 60,
        day % 60,
        since.subsec_millis()
    )
}

impl Renderer {
    pub(crate) fn render(&self, line: &LogLine) -> String {
        self.render_with(line, None)
    }

    /// [`render`](Self::render), with the matches of `highlight` in the line's text shown in
    /// reverse video (on a terminal with colour).
    pub(crate) fn render_with(&self, line: &LogLine, highlight: Option<&regex::Regex>) -> String {
        let mut out = String::with_capacity(line.text.len() + self.width + 32);
        self.render_into_with(line, highlight, &mut out);
        out
    }

    /// Appends the rendered line (no newline) to `out`: the log mux renders a whole burst into
    /// one buffer, without a new string per line.
    pub(crate) fn render_into(&self, line: &LogLine, out: &mut String) {
        self.render_into_with(line, None, out);
    }

    fn render_into_with(&self, line: &LogLine, highlight: Option<&regex::Regex>, out: &mut String) {
        use std::fmt::Write;
        let since = line.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let day = (since.as_secs() as i64 + self.utc_offset).rem_euclid(86_400);
        let bar = match line.stream {
            Stream::Event => "▸",
            Stream::Stdout | Stream::Stderr => "|",
        };
        let c = color_of(&line.source);
        if self.color {
            out.push_str("\x1b[2m");
        }
        push_clock(out, day, since.subsec_millis());
        if self.color {
            let _ = write!(out, "\x1b[0m \x1b[38;5;{c}m");
        } else {
            out.push(' ');
        }
        out.push_str(&line.source);
        // Service names are ASCII (validated); `devstack` too.
        for _ in line.source.len()..self.width {
            out.push(' ');
        }
        match (self.color, line.stream) {
            (true, Stream::Event) => {
                let _ = write!(out, "\x1b[0m \x1b[1m{bar} ");
            }
            (true, _) => {
                let _ = write!(out, " {bar}\x1b[0m ");
            }
            (false, _) => {
                out.push(' ');
                out.push_str(bar);
                out.push(' ');
            }
        }
        // Control characters other than tab would let a service redraw the terminal.
        let unsafe_char = |c: char| c.is_control() && c != '\t';
        // Most lines are printable ASCII: one vectorised pass says so without decoding.
        let plain = line
            .text
            .bytes()
            .fold(true, |a, b| a & ((0x20..0x7f).contains(&b) | (b == b'\t')));
        let clean: std::borrow::Cow<'_, str> = if !plain && line.text.chars().any(unsafe_char) {
            line.text
                .chars()
                .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
                .collect::<String>()
                .into()
        } else {
            line.text.as_str().into()
        };
        let level_color = match line
            .level
            .filter(|_| self.color && line.stream != Stream::Event)
        {
            Some(Level::Fatal) => Some("\x1b[1;31m"),
            Some(Level::Error) => Some("\x1b[31m"),
            Some(Level::Warn) => Some("\x1b[33m"),
            Some(Level::Debug | Level::Trace) => Some("\x1b[2m"),
            Some(Level::Info) | None => None,
        };
        if let Some(c) = level_color {
            out.push_str(c);
        }
        match highlight.filter(|_| self.color) {
            Some(re) => out.push_str(&re.replace_all(&clean, |m: &regex::Captures<'_>| {
                format!(
                    "{}{}{}",
                    crossterm::style::Attribute::Reverse,
                    &m[0],
                    crossterm::style::Attribute::NoReverse
                )
            })),
            None => out.push_str(&clean),
        }
        if (self.color && line.stream == Stream::Event) || level_color.is_some() {
            out.push_str("\x1b[0m");
        }
    }
}

/// This machine's offset from UTC now, in seconds (0 when it cannot be read).
pub(crate) fn local_utc_offset() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as libc::time_t;
    // SAFETY: localtime_r writes only into the `tm` we pass; `now` is a valid time_t.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_digit_by_digit_is_the_formatted_one() {
        for ms in [0u64, 42, 999, 3_723_042, 86_399_999, 1_796_622_531_187] {
            let at = UNIX_EPOCH + std::time::Duration::from_millis(ms);
            let since = at.duration_since(UNIX_EPOCH).unwrap();
            let mut out = String::new();
            push_clock(
                &mut out,
                (since.as_secs() as i64).rem_euclid(86_400),
                since.subsec_millis(),
            );
            assert_eq!(out, clock(at, 0), "{ms}");
        }
    }
    use std::time::Duration;

    fn line(source: &str, stream: Stream, text: &str) -> LogLine {
        LogLine {
            at: UNIX_EPOCH + Duration::from_millis(45_296_789),
            source: source.into(),
            stream,
            level: crate::logs::level::detect(text),
            text: text.into(),
        }
    }

    #[test]
    fn plain_lines_align() {
        let r = Renderer {
            width: 8,
            color: false,
            utc_offset: 0,
        };
        assert_eq!(
            r.render(&line("redis", Stream::Stdout, "Ready to accept")),
            "12:34:56.789 redis    | Ready to accept"
        );
        assert_eq!(
            r.render(&line("devstack", Stream::Event, "redis ready in 80 ms")),
            "12:34:56.789 devstack ▸ redis ready in 80 ms"
        );
        assert_eq!(
            r.render(&line("x", Stream::Stderr, "a\x1b[2Jb\tc")),
            "12:34:56.789 x        | a\u{fffd}[2Jb\tc"
        );
    }

    #[test]
    fn offset_shifts_the_clock() {
        assert_eq!(
            clock(UNIX_EPOCH + Duration::from_secs(3600), 3600),
            "02:00:00.000"
        );
        assert_eq!(clock(UNIX_EPOCH, -3600), "23:00:00.000");
    }

    #[test]
    fn highlights_mark_matches_in_the_text_only() {
        let r = Renderer {
            width: 5,
            color: true,
            utc_offset: 0,
        };
        let re = regex::Regex::new("err[a-z]*").unwrap();
        let out = r.render_with(&line("errsvc", Stream::Stdout, "an error here"), Some(&re));
        assert!(out.ends_with("an \x1b[7merror\x1b[27m here"), "{out:?}");
        assert!(!out.contains("\x1b[7merrsvc"));
        let plain = Renderer { color: false, ..r };
        assert_eq!(
            plain.render_with(&line("x", Stream::Stdout, "an error"), Some(&re)),
            plain.render(&line("x", Stream::Stdout, "an error"))
        );
    }

    #[test]
    fn levels_colour_the_text_on_a_terminal_only() {
        let r = Renderer {
            width: 3,
            color: true,
            utc_offset: 0,
        };
        let shown: Vec<String> = [
            r#"{"level":"error","msg":"boom"}"#,
            "WARNING:root:careful",
            "[2024-01-01 12:00:00,000: INFO/MainProcess] ready",
            "level=debug msg=tick",
            "error_count=0",
        ]
        .iter()
        .map(|t| format!("{:?}", r.render(&line("api", Stream::Stdout, t))))
        .collect();
        insta::assert_snapshot!(shown.join("\n"));
        let plain = Renderer { color: false, ..r };
        assert_eq!(
            plain.render(&line("api", Stream::Stdout, "ERROR x")),
            "12:34:56.789 api | ERROR x"
        );
    }

    #[test]
    fn colours_are_stable_and_only_on_request() {
        let r = Renderer {
            width: 5,
            color: true,
            utc_offset: 0,
        };
        let a = r.render(&line("redis", Stream::Stdout, "x"));
        assert!(a.contains("\x1b[38;5;"));
        assert_eq!(a, r.render(&line("redis", Stream::Stdout, "x")));
    }
}
