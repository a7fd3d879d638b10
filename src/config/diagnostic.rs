//! Config errors a person can act on: message, file, line and column, key path, help. All the
//! wording of config errors lives in `validate` and `load`; this module only carries and renders.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};

use super::keypath::KeyPath;
use super::locate::Span;

/// One problem in the stack files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// Where in the (merged) document; `None` for whole-file problems.
    pub path: Option<KeyPath>,
    /// Point at the value rather than the key (a bad value, not a bad key).
    pub at_value: bool,
    pub help: Option<String>,
    /// Filled in by the loader from the path, or given directly for syntax errors.
    pub file: Option<PathBuf>,
    pub span: Option<Span>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            path: None,
            at_value: false,
            help: None,
            file: None,
            span: None,
        }
    }

    pub fn at(mut self, path: KeyPath) -> Self {
        self.path = Some(path);
        self
    }

    pub fn at_value(mut self, path: KeyPath) -> Self {
        self.path = Some(path);
        self.at_value = true;
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help.or(self.help);
        self
    }

    pub fn in_file(mut self, file: &Path, span: Option<Span>) -> Self {
        self.file = Some(file.to_path_buf());
        self.span = span;
        self
    }

    /// `file:line:col` (or less, as far as known).
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?.display().to_string();
        Some(match self.span {
            Some(s) => format!("{file}:{}:{}", s.line, s.col),
            None => file,
        })
    }
}

impl fmt::Display for Diagnostic {
    /// One line, for logs and `--json`: `stack.yaml:3:5: services.x: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location() {
            write!(f, "{loc}: ")?;
        }
        if let Some(p) = self.path.as_ref().filter(|p| !p.is_root()) {
            write!(f, "`{p}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.help {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

/// "did you mean `x`?" for the closest of `candidates`, if one is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Adapter that lets miette draw a [`Diagnostic`] with its source snippet.
struct Report<'a> {
    diag: &'a Diagnostic,
    source: Option<NamedSource<String>>,
    message: String,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diag.fmt(f)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.diag.span?;
        self.source.as_ref()?;
        let label = match self.diag.path.as_ref().filter(|p| !p.is_root()) {
            Some(p) => format!("at `{p}`"),
            None => "here".to_string(),
        };
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(label),
            span.offset,
            span.len,
        ))))
    }
}

/// Draws a diagnostic for a person: the message, a snippet of the file with the key path at the
/// spot, and the help. `source` is the text of `diag.file` when it could be read as UTF-8.
pub fn render(diag: &Diagnostic, source: Option<&str>, color: bool) -> String {
    let shown_name = diag
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    let source = match (source, diag.span) {
        (Some(text), Some(_)) => Some(NamedSource::new(shown_name, text.to_string())),
        _ => None,
    };
    // Without a snippet the place still has to be named in words.
    let mut message = diag.message.clone();
    if source.is_none() {
        let mut place = Vec::new();
        if let Some(p) = diag.path.as_ref().filter(|p| !p.is_root()) {
            place.push(format!("at `{p}`"));
        }
        if let Some(loc) = diag.location() {
            place.push(format!("in {loc}"));
        }
        if !place.is_empty() {
            message = format!("{message}\n  {}", place.join(" "));
        }
    }
    let report = Report {
        diag,
        source,
        message,
    };
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_wrap_lines(false)
        .with_context_lines(1);
    if handler.render_report(&mut out, &report).is_err() {
        // Rendering into a String cannot fail short of a bug in miette; fall back to one line.
        out = format!("error: {diag}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = ["postgres", "redis", "core-service"];
        assert_eq!(
            did_you_mean("postgress", names).as_deref(),
            Some("did you mean `postgres`?")
        );
        assert_eq!(
            did_you_mean("core", names).as_deref(),
            Some("did you mean `core-service`?")
        );
        assert_eq!(did_you_mean("zzz", names), None);
    }
}
