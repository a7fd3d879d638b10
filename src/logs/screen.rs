//! The terminal view's part of the log writer: one status line pinned under the streaming log,
//! taken away before each burst of lines and drawn again after it, plus the service filter and
//! the highlight that apply to what is printed from then on. The mux thread owns it, so the
//! terminal has one writer; the terminal view only sends it [`ScreenCommand`]s. Without
//! commands it does nothing: output stays byte for byte what it was.

use std::collections::HashSet;
use std::io::Write;

use crossterm::cursor::MoveToColumn;
use crossterm::queue;
use crossterm::terminal::{Clear, ClearType};

/// What the terminal view tells the writer.
#[derive(Debug, Clone)]
pub enum ScreenCommand {
    /// The pinned line, already fitted to the terminal's width (may hold colours); empty: none.
    Status(String),
    /// Print only these services' lines from now on (devstack's own stack-wide events always).
    Filter(Option<HashSet<String>>),
    /// Show matches of this in reverse video from now on.
    Highlight(Option<regex::Regex>),
    /// Lines to print above the status line (help, an error shown again).
    Print(Vec<String>),
}

#[derive(Debug, Default)]
pub(crate) struct Screen {
    status: String,
    /// The status line is on the screen, the cursor at its end.
    shown: bool,
    filter: Option<HashSet<String>>,
    highlight: Option<regex::Regex>,
}

impl Screen {
    /// Whether lines of `service` (`None`: about the whole stack) are printed.
    pub(crate) fn shows(&self, service: Option<&str>) -> bool {
        match (service, &self.filter) {
            (Some(s), Some(f)) => f.contains(s),
            _ => true,
        }
    }

    pub(crate) fn highlight(&self) -> Option<&regex::Regex> {
        self.highlight.as_ref()
    }

    /// Takes the status line away, leaving the cursor at the start of its (empty) row.
    pub(crate) fn lift<W: Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        if self.shown {
            queue!(out, MoveToColumn(0), Clear(ClearType::CurrentLine))?;
            self.shown = false;
        }
        Ok(())
    }

    /// Draws the status line again after a burst (no newline: the next burst overwrites it).
    pub(crate) fn settle<W: Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        if !self.shown && !self.status.is_empty() {
            out.write_all(self.status.as_bytes())?;
            self.shown = true;
        }
        Ok(())
    }

    pub(crate) fn apply<W: Write>(
        &mut self,
        cmd: ScreenCommand,
        out: &mut W,
    ) -> std::io::Result<()> {
        match cmd {
            ScreenCommand::Status(s) => {
                if s != self.status {
                    self.lift(out)?;
                    self.status = s;
                }
            }
            ScreenCommand::Filter(f) => self.filter = f,
            ScreenCommand::Highlight(h) => self.highlight = h,
            ScreenCommand::Print(lines) => {
                self.lift(out)?;
                for l in lines {
                    out.write_all(l.as_bytes())?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn the_status_line_is_lifted_before_lines_and_settled_after() {
        let mut s = Screen::default();
        let mut out = Vec::new();
        s.settle(&mut out).unwrap();
        assert!(out.is_empty(), "no status, nothing drawn");
        s.apply(ScreenCommand::Status("1/2 ready".into()), &mut out)
            .unwrap();
        s.settle(&mut out).unwrap();
        assert_eq!(text(&out), "1/2 ready");
        out.clear();
        s.lift(&mut out).unwrap();
        out.extend_from_slice(b"a line\n");
        s.settle(&mut out).unwrap();
        assert_eq!(text(&out), "\x1b[1G\x1b[2Ka line\n1/2 ready");
        out.clear();
        // The same status again draws nothing new.
        s.apply(ScreenCommand::Status("1/2 ready".into()), &mut out)
            .unwrap();
        s.settle(&mut out).unwrap();
        assert!(out.is_empty());
        s.apply(ScreenCommand::Print(vec!["help".into()]), &mut out)
            .unwrap();
        s.settle(&mut out).unwrap();
        assert_eq!(text(&out), "\x1b[1G\x1b[2Khelp\n1/2 ready");
    }

    #[test]
    fn the_filter_keeps_stack_wide_lines() {
        let mut s = Screen::default();
        assert!(s.shows(Some("db")));
        s.apply(
            ScreenCommand::Filter(Some(["api".to_string()].into())),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(!s.shows(Some("db")));
        assert!(s.shows(Some("api")));
        assert!(s.shows(None));
    }
}
