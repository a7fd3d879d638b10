//! Where each key path sits in a stack file's text, and the structural faults serde cannot see
//! (duplicate keys, tabs in indentation). Pure: text in, positions and findings out.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::keypath::KeyPath;

/// A place in the text: 1-based line and column, byte offset and length for snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub offset: usize,
    pub len: usize,
}

/// The positions of keys and values of one file.
#[derive(Debug, Default)]
pub struct SpanIndex {
    keys: HashMap<KeyPath, Span>,
    values: HashMap<KeyPath, Span>,
}

impl SpanIndex {
    /// The key of `path` if it is a map entry, else its value; walking up to the nearest
    /// ancestor that exists in this file.
    pub fn find(&self, path: &KeyPath) -> Option<Span> {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(s) = self.keys.get(&cur).or_else(|| self.values.get(&cur)) {
                return Some(*s);
            }
            p = cur.parent();
        }
        None
    }

    /// Prefers the value (for "bad value" errors), falling back to [`SpanIndex::find`].
    pub fn find_value(&self, path: &KeyPath) -> Option<Span> {
        self.values.get(path).copied().or_else(|| self.find(path))
    }

    /// Whether this exact path is written in this file.
    pub fn contains(&self, path: &KeyPath) -> bool {
        self.keys.contains_key(path) || self.values.contains_key(path)
    }
}

/// A structural fault found while indexing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    DuplicateKey {
        path: KeyPath,
        first: Span,
        second: Span,
    },
    Syntax {
        message: String,
        span: Span,
    },
    Tab {
        span: Span,
    },
}

enum Frame {
    Map {
        path: KeyPath,
        key: Option<String>,
        seen: HashMap<String, Span>,
        // A mapping used as a key (`? {a: 1}: x`) is skipped rather than indexed.
        complex_key_depth: usize,
    },
    Seq {
        path: KeyPath,
        index: usize,
    },
}

struct Walker<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    stack: Vec<Frame>,
    index: SpanIndex,
    findings: Vec<Finding>,
}

impl Walker<'_> {
    fn span(&self, mark: Marker, len_chars: usize) -> Span {
        span_at(
            self.text,
            &self.line_starts,
            mark.line(),
            mark.col(),
            len_chars,
        )
    }

    /// The path the next value gets, or `None` when the next scalar is a map key.
    fn next_value_path(&self) -> Option<KeyPath> {
        match self.stack.last() {
            None => Some(KeyPath::root()),
            Some(Frame::Map { path, key, .. }) => key.as_ref().map(|k| path.key(k.clone())),
            Some(Frame::Seq { path, index }) => Some(path.index(*index)),
        }
    }

    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn in_complex_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { complex_key_depth, .. }) if *complex_key_depth > 0)
    }
}

impl MarkedEventReceiver for Walker<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.in_complex_key() {
            if let Some(Frame::Map {
                complex_key_depth,
                key,
                ..
            }) = self.stack.last_mut()
            {
                match ev {
                    Event::MappingStart(..) | Event::SequenceStart(..) => *complex_key_depth += 1,
                    Event::MappingEnd | Event::SequenceEnd => {
                        *complex_key_depth -= 1;
                        if *complex_key_depth == 0 {
                            *key = Some("?".to_string());
                        }
                    }
                    _ => {}
                }
            }
            return;
        }
        match ev {
            Event::Scalar(value, ..) => {
                let len = value.chars().count().max(1);
                match self.next_value_path() {
                    Some(path) => {
                        let span = self.span(mark, len);
                        self.index.values.insert(path, span);
                        self.value_done();
                    }
                    None => {
                        let span = self.span(mark, len);
                        if let Some(Frame::Map {
                            path, key, seen, ..
                        }) = self.stack.last_mut()
                        {
                            let kp = path.key(value.clone());
                            if let Some(first) = seen.get(&value) {
                                if value != "<<" {
                                    self.findings.push(Finding::DuplicateKey {
                                        path: kp.clone(),
                                        first: *first,
                                        second: span,
                                    });
                                }
                            } else {
                                seen.insert(value.clone(), span);
                                self.index.keys.insert(kp, span);
                            }
                            *key = Some(value);
                        }
                    }
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.next_value_path() {
                    let span = self.span(mark, 1);
                    self.index.values.insert(path, span);
                    self.value_done();
                } else if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some("*".to_string());
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.next_value_path() {
                    Some(path) => {
                        let span = self.span(mark, 1);
                        self.index.values.insert(path.clone(), span);
                        self.stack.push(if is_map {
                            Frame::Map {
                                path,
                                key: None,
                                seen: HashMap::new(),
                                complex_key_depth: 0,
                            }
                        } else {
                            Frame::Seq { path, index: 0 }
                        });
                    }
                    None => {
                        if let Some(Frame::Map {
                            complex_key_depth, ..
                        }) = self.stack.last_mut()
                        {
                            *complex_key_depth = 1;
                        }
                    }
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::DocumentEnd => self.stack.clear(),
            _ => {}
        }
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Byte-accurate span from a 1-based line and a 0-based column counted in characters.
fn span_at(text: &str, starts: &[usize], line: usize, col_chars: usize, len_chars: usize) -> Span {
    let line = line.max(1);
    let start = starts.get(line - 1).copied().unwrap_or(text.len());
    let rest = &text[start..];
    let offset = start
        + rest
            .char_indices()
            .nth(col_chars)
            .map_or(rest.len(), |(i, _)| i);
    let tail = &text[offset..];
    let line_end = tail.find('\n').unwrap_or(tail.len());
    let len = tail[..line_end]
        .char_indices()
        .nth(len_chars)
        .map_or(line_end, |(i, _)| i);
    Span {
        line,
        col: col_chars + 1,
        offset,
        len,
    }
}

/// Positions of every key path in `text`, and its structural faults. A syntax error stops the
/// walk; the index then holds what came before it.
pub fn index(text: &str) -> (SpanIndex, Vec<Finding>) {
    let starts = line_starts(text);
    let mut findings = tabs(text, &starts);
    let mut walker = Walker {
        text,
        line_starts: starts,
        stack: Vec::new(),
        index: SpanIndex::default(),
        findings: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    let result = parser.load(&mut walker, true);
    if let Err(e) = result {
        let m = e.marker();
        let span = walker.span(*m, 1);
        walker.findings.push(Finding::Syntax {
            message: e.info().to_string(),
            span,
        });
    }
    findings.extend(walker.findings);
    (walker.index, findings)
}

/// Tabs in indentation: YAML forbids them and parsers report them confusingly.
fn tabs(text: &str, starts: &[usize]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let indent_end = line
            .find(|c: char| c != ' ' && c != '\t')
            .unwrap_or(line.len());
        if indent_end == line.len() || line[indent_end..].starts_with('#') {
            continue;
        }
        if let Some(col) = line[..indent_end].find('\t') {
            out.push(Finding::Tab {
                span: span_at(text, starts, n + 1, col, 1),
            });
        }
    }
    out
}

/// 1-based line and column of a byte offset (for errors found by other parsers).
pub fn span_of_offset(text: &str, offset: usize) -> Span {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Span {
        line,
        col,
        offset,
        len: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\nservices:\n  web:\n    image: nginx\n    depends_on:\n      - db\n      - cache\n  db:\n    image: postgres\n";

    fn at(ix: &SpanIndex, p: &str) -> (usize, usize) {
        let s = ix.find(&KeyPath::parse(p)).expect(p);
        (s.line, s.col)
    }

    #[test]
    fn keys_and_items_are_located() {
        let (ix, findings) = index(DOC);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(at(&ix, "name"), (1, 1));
        assert_eq!(at(&ix, "services.web"), (3, 3));
        assert_eq!(at(&ix, "services.web.depends_on[1]"), (7, 9));
        assert_eq!(at(&ix, "services.db.image"), (9, 5));
        let v = ix.find_value(&KeyPath::parse("services.db.image")).unwrap();
        assert_eq!(
            (v.line, v.col, &DOC[v.offset..v.offset + v.len]),
            (9, 12, "postgres")
        );
        // An unknown child falls back to its nearest ancestor.
        assert_eq!(at(&ix, "services.web.nope.deeper"), (3, 3));
    }

    #[test]
    fn duplicate_keys_are_found() {
        let (_, findings) = index("services:\n  a:\n    image: x\n  a:\n    image: y\n");
        match &findings[..] {
            [Finding::DuplicateKey {
                path,
                first,
                second,
            }] => {
                assert_eq!(path.to_string(), "services.a");
                assert_eq!((first.line, second.line), (2, 4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tabs_in_indentation_are_found() {
        let (_, findings) = index("services:\n\tweb:\n    image: 'a\tb'\n");
        assert!(findings
            .iter()
            .any(|f| matches!(f, Finding::Tab { span } if span.line == 2 && span.col == 1)));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let (_, findings) = index("services:\n  web: [1, 2\n");
        assert!(
            findings.iter().any(|f| matches!(f, Finding::Syntax { .. })),
            "{findings:?}"
        );
    }

    #[test]
    fn offsets_map_to_lines() {
        let s = span_of_offset("ab\ncdé\nf", 7);
        assert_eq!((s.line, s.col), (2, 4));
    }
}
