//! `.env` files in Compose's dialect: `KEY=value` lines with single, double or no quotes,
//! `export`, comments, bare keys that inherit, escapes, multi-line quoted values and `${…}`
//! interpolation with the stack file's engine. Pure: text and a lookup in, pairs or an error
//! with line and column out.

use std::fmt;

use indexmap::IndexMap;

use super::interpolate::{interpolate, resolve_port_refs, Notes};

/// A line that cannot be read, with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub col: usize,
    /// Byte offset into the text, for a snippet.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.col, self.message
        )
    }
}

/// Parses `text`. `lookup` is the environment for `${VAR}` in values and for bare `KEY`
/// lines; it wins over earlier keys of the same file, as in Compose. Later keys override
/// earlier ones.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let base = text.len() - body.len();
    let mut p = Parser {
        text,
        pos: base,
        out: IndexMap::new(),
    };
    p.run(lookup)?;
    Ok(p.out)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    out: IndexMap<String, String>,
}

/// Compose's key characters: letters and digits of any script, `_`, `.`, `-`, and `[`, `]`
/// for indexed names (`a[1]`). A key may start with a digit.
fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn err(&self, at: usize, message: impl Into<String>) -> DotenvError {
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..at]
            .trim_start_matches('\u{feff}')
            .chars()
            .count()
            + 1;
        DotenvError {
            line,
            col,
            offset: at,
            message: message.into(),
        }
    }

    /// Skips spaces and tabs (not newlines).
    fn skip_blank(&mut self) {
        let n = self.rest().len() - self.rest().trim_start_matches([' ', '\t']).len();
        self.pos += n;
    }

    fn skip_line(&mut self) {
        match self.rest().find('\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.text.len(),
        }
    }

    fn run(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), DotenvError> {
        while self.pos < self.text.len() {
            self.skip_blank();
            let rest = self.rest();
            if rest.is_empty() {
                break;
            }
            if rest.starts_with('\n') || rest.starts_with("\r\n") || rest.starts_with('#') {
                self.skip_line();
                continue;
            }
            if let Some(after) = rest.strip_prefix("export") {
                if after.starts_with([' ', '\t']) {
                    self.pos += "export".len();
                    self.skip_blank();
                }
            }
            let key_start = self.pos;
            let key_len = self
                .rest()
                .find(|c: char| !is_key_char(c))
                .unwrap_or(self.rest().len());
            let key = self.rest()[..key_len].to_string();
            self.pos += key_len;
            self.skip_blank();
            let next = self.rest().chars().next();
            // `="value"` is read by Compose as the empty name; anything else needs a name.
            if key.is_empty() && next != Some('=') {
                return Err(self.err(
                    key_start,
                    "expected a variable name (letters, digits, `_`, `.`, `-`, `[`, `]`)",
                ));
            }
            match next {
                // A bare `KEY` takes its value from the environment, and is left out when unset.
                None | Some('\n') | Some('\r') | Some('#') => {
                    if let Some(v) = lookup(&key) {
                        self.out.insert(key, v);
                    }
                    self.skip_line();
                    continue;
                }
                Some('=') | Some(':') => self.pos += 1,
                Some(c) => {
                    return Err(
                        self.err(self.pos, format!("expected `=` after `{key}`, found `{c}`"))
                    )
                }
            }
            self.skip_blank();
            let value = self.value(&key, lookup)?;
            self.out.insert(key, value);
        }
        Ok(())
    }

    /// The value after `=`, up to the end of its line (or its closing quote).
    fn value(
        &mut self,
        key: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, DotenvError> {
        let start = self.pos;
        let text = self.text;
        let rest = &text[self.pos..];
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        let (raw, expand) = match quote {
            Some(q) => {
                let body = &rest[1..];
                // A backslash escapes the next character in either kind of quote, so
                // `'value\'` is never closed, as in Compose.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in body.char_indices() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == q {
                        end = Some(i);
                        break;
                    }
                }
                let Some(end) = end else {
                    return Err(self.err(
                        start,
                        format!(
                            "the value of `{key}` opens a {} quote that is never closed",
                            if q == '"' { "double" } else { "single" }
                        ),
                    ));
                };
                let inner = &body[..end];
                self.pos += 1 + end + 1;
                self.skip_blank();
                let tail = self.rest();
                // Text after the closing quote starts the next statement, as Compose reads it;
                // a comment or the end of the line ends this one.
                if tail.is_empty()
                    || tail.starts_with('\n')
                    || tail.starts_with("\r\n")
                    || tail.starts_with('#')
                {
                    self.skip_line();
                }
                if q == '\'' {
                    return Ok(unescape_single(inner));
                }
                (unescape_double(inner), true)
            }
            None => {
                let line_end = rest.find('\n').unwrap_or(rest.len());
                let mut line = &rest[..line_end];
                // A comment starts at a `#` after whitespace; `a#b` keeps its `#`.
                if let Some(i) = line
                    .char_indices()
                    .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with([' ', '\t'])))
                    .map(|(i, _)| i)
                {
                    line = &line[..i];
                }
                let v = line.trim_end_matches(['\r']).trim().to_string();
                self.skip_line();
                (v, true)
            }
        };
        if !expand {
            return Ok(raw);
        }
        let earlier = &self.out;
        let env = |k: &str| lookup(k).or_else(|| earlier.get(k).cloned());
        let mut notes = Notes::default();
        let v = interpolate(&raw, &env, &mut notes).map_err(|e| self.err(start, e.to_string()))?;
        Ok(resolve_port_refs(&v, |_| None))
    }
}

/// Inside single quotes only an escaped quote loses its backslash.
fn unescape_single(s: &str) -> String {
    s.replace("\\'", "'")
}

/// The escapes of double quotes, as compose-go's `dotenv` has them (those of POSIX `echo`):
/// `\a \b \f \n \r \t \v`, `\"`, `\\`, `\$` (a literal dollar, written `$$` for the
/// interpolation that follows) and `\0` with three octal digits (`\0123` is `S`). Any other
/// backslash (`\x07`, `\u12e4`, `\ `) is kept as written.
fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(c) = after.chars().next() else {
            out.push('\\');
            rest = after;
            break;
        };
        let simple = match c {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '"' => Some("\""),
            '\\' => Some("\\"),
            '$' => Some("$$"),
            _ => None,
        };
        if let Some(text) = simple {
            out.push_str(text);
            rest = &after[1..];
            continue;
        }
        if c == '0' {
            // compose-go takes up to three digits after `\0`; three octal ones make a byte.
            let digits: String = after[1..]
                .chars()
                .take(3)
                .take_while(char::is_ascii_digit)
                .collect();
            match u8::from_str_radix(&digits, 8) {
                Ok(b) if digits.len() == 3 => out.push(char::from(b)),
                _ => {
                    out.push('\\');
                    out.push('0');
                    out.push_str(&digits);
                }
            }
            rest = &after[1 + digits.len()..];
            continue;
        }
        out.push('\\');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TEST_VAR" => Some("from-shell".into()),
            "HOME" => Some("/home/ada".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parsed(text: &str) -> Vec<(String, String)> {
        parse(text, &env)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .collect()
    }

    /// One case per rule of Compose's `.env` syntax
    /// (https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/#env-file-syntax).
    #[test]
    fn compose_dotenv_rules() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            ("plain", "A=b", &[("A", "b")]),
            (
                "blank lines and comments",
                "\n# c\n  # d\nA=1\n\n",
                &[("A", "1")],
            ),
            ("empty value", "A=", &[("A", "")]),
            ("spaces around =", "A = b", &[("A", "b")]),
            (
                "unquoted with spaces",
                "A=hello world",
                &[("A", "hello world")],
            ),
            ("inline comment after space", "A=b # note", &[("A", "b")]),
            ("hash without space is kept", "A=b#c", &[("A", "b#c")]),
            ("export prefix", "export A=b", &[("A", "b")]),
            ("a key named export", "export=1", &[("export", "1")]),
            (
                "single quotes are literal",
                "A='$HOME \\n x'",
                &[("A", "$HOME \\n x")],
            ),
            (
                "double quotes expand",
                "A=\"$HOME/x\"",
                &[("A", "/home/ada/x")],
            ),
            (
                "escapes in double quotes",
                "A=\"a\\nb\\tc\\\"d\\\\e\"",
                &[("A", "a\nb\tc\"d\\e")],
            ),
            ("escaped dollar", "A=\"\\$HOME\"", &[("A", "$HOME")]),
            ("double dollar", "A=$$HOME", &[("A", "$HOME")]),
            ("comment after quotes", "A=\"b c\" # note", &[("A", "b c")]),
            ("hash inside quotes", "A=\"b # c\"", &[("A", "b # c")]),
            (
                "multi-line double",
                "A=\"one\ntwo\"\nB=3",
                &[("A", "one\ntwo"), ("B", "3")],
            ),
            ("multi-line single", "A='one\ntwo'", &[("A", "one\ntwo")]),
            ("yaml-style colon", "A: b", &[("A", "b")]),
            ("BOM", "\u{feff}A=b", &[("A", "b")]),
            ("CRLF", "A=b\r\nB=c\r\n", &[("A", "b"), ("B", "c")]),
            (
                "bare key inherits",
                "TEST_VAR\nA=1",
                &[("TEST_VAR", "from-shell"), ("A", "1")],
            ),
            ("bare key unset is left out", "NOPE\nA=1", &[("A", "1")]),
            ("later key overrides", "A=1\nA=2", &[("A", "2")]),
            // dotenvy cut `$OPTION_B` at the underscore.
            (
                "unbraced name with underscore",
                "OPTION_B=x\nOPTION_C=$OPTION_B",
                &[("OPTION_B", "x"), ("OPTION_C", "x")],
            ),
            (
                "earlier key of the same file",
                "A=1\nB=${A}2",
                &[("A", "1"), ("B", "12")],
            ),
            (
                "the environment wins over an earlier key",
                "TEST_VAR=file\nB=$TEST_VAR",
                &[("TEST_VAR", "file"), ("B", "from-shell")],
            ),
            // dotenvy gave an empty value here.
            (
                "default in quotes, variable set",
                "X=\"${TEST_VAR:-Default}\"",
                &[("X", "from-shell")],
            ),
            (
                "default in quotes, variable unset",
                "X=\"${NOPE:-Default}\"",
                &[("X", "Default")],
            ),
            ("default when empty", "X=${EMPTY:-d}", &[("X", "d")]),
            ("default only when unset", "X=${EMPTY-d}", &[("X", "")]),
            ("alternative", "X=${TEST_VAR:+alt}", &[("X", "alt")]),
            ("unset variable is empty", "X=a${NOPE}b", &[("X", "ab")]),
            ("dotted and dashed keys", "a.b-c=1", &[("a.b-c", "1")]),
        ];
        for (rule, text, want) in cases {
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(parsed(text), want, "{rule}: {text:?}");
        }
    }

    #[test]
    fn malformed_lines_name_line_and_column() {
        let cases: &[(&str, usize, usize, &str)] = &[
            (
                "A=1\nB=\"open\n",
                2,
                3,
                "the value of `B` opens a double quote that is never closed",
            ),
            (
                "A='x",
                1,
                3,
                "the value of `A` opens a single quote that is never closed",
            ),
            ("MY KEY=1", 1, 4, "expected `=` after `MY`, found `K`"),
            ("%x=1", 1, 1, "expected a variable name"),
            (
                "A=${X:?need it}",
                1,
                3,
                "required variable `X` is not set: need it",
            ),
            ("A=${B", 1, 3, "unterminated `${`"),
        ];
        for (text, line, col, msg) in cases {
            let e = parse(text, &env).expect_err(text);
            assert_eq!((e.line, e.col), (*line, *col), "{text:?}: {e}");
            assert!(e.message.starts_with(msg), "{text:?}: {e}");
        }
    }

    /// Cases transcribed from compose-go's own tests of its `dotenv` package
    /// (dotenv/godotenv_test.go, dotenv/parser_test.go); the test function is named on each.
    #[test]
    fn compose_go_dotenv_cases() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            // TestParsing: the shell escape sequences of double quotes.
            (
                "TestParsing",
                r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
                &[("KEY", "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ")],
            ),
            ("TestParsing", r#"KEY="\0123""#, &[("KEY", "S")]),
            ("TestParsing", r#"KEY="\x07""#, &[("KEY", r"\x07")]),
            ("TestParsing", r#"KEY="\u12e4""#, &[("KEY", r"\u12e4")]),
            (
                "TestParsing",
                r#"KEY="\U00101234""#,
                &[("KEY", r"\U00101234")],
            ),
            (
                "TestParsing",
                r#"FOO="bar\n\ b\az""#,
                &[("FOO", "bar\n\\ b\u{7}z")],
            ),
            (
                "TestParsing",
                r#"FOO="bar\\\n\ b\az""#,
                &[("FOO", "bar\\\n\\ b\u{7}z")],
            ),
            (
                "TestParsing",
                r#"FOO="bar\\r\ b\az""#,
                &[("FOO", "bar\\r\\ b\u{7}z")],
            ),
            (
                "TestParsing",
                r#"FOO="bar\nbaz\\""#,
                &[("FOO", "bar\nbaz\\")],
            ),
            (
                "TestParsing",
                r#"FOO="\"quoted\"""#,
                &[("FOO", "\"quoted\"")],
            ),
            ("TestParsing", r#"FOO=a\tb"#, &[("FOO", r"a\tb")]),
            ("TestParsing", r##"FOO="bar#baz"#"##, &[("FOO", "bar#baz")]),
            ("TestParsing", r#"="value""#, &[("", "value")]),
            (
                "TestParsing",
                "FOO=123#not-an-inline-comment",
                &[("FOO", "123#not-an-inline-comment")],
            ),
            // TestParseBytes: indexed and non-ASCII names.
            (
                "TestParseBytes",
                "a=b\na[1]=c\na.propertyKey=d\nárvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép\n",
                &[
                    ("a", "b"),
                    ("a[1]", "c"),
                    ("a.propertyKey", "d"),
                    ("árvíztűrő-TÜKÖRFÚRÓGÉP", "ÁRVÍZTŰRŐ-tükörfúrógép"),
                ],
            ),
            // TestReadPlainEnv / TestUTF8BOM (their fixtures hold a key starting with a digit).
            (
                "TestReadPlainEnv",
                "OPTION_A=1\nOPTION_C= 3\n456 = ABC\nOPTION_H = my string # Inline comment\n",
                &[
                    ("OPTION_A", "1"),
                    ("OPTION_C", "3"),
                    ("456", "ABC"),
                    ("OPTION_H", "my string"),
                ],
            ),
            // TestLoadQuotedEnv: an escaped quote inside single quotes, and a quoted value with
            // more text after it on its line (read as the next statement).
            (
                "TestLoadQuotedEnv",
                "OPTION_K='line one\nthis is \\'quoted\\'\none more line'\n",
                &[("OPTION_K", "line one\nthis is 'quoted'\none more line")],
            ),
            (
                "TestLoadQuotedEnv",
                "OPTION_A='1' OPTION_B=\"2\"\nOPTION_C=\"x\"  # note\n",
                &[("OPTION_A", "1"), ("OPTION_B", "2"), ("OPTION_C", "x")],
            ),
        ];
        for (test, text, want) in cases {
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(parsed(text), want, "{test}: {text:?}");
        }
    }

    /// TestUnterminatedQuotes: a backslash before the closing quote escapes it, in either kind.
    #[test]
    fn compose_go_unterminated_quotes() {
        for text in [
            r#"KEY=""#,
            r#"KEY="value"#,
            r#"KEY="value\""#,
            r#"KEY="value'"#,
            "KEY='",
            "KEY='value",
            r"KEY='value\'",
            r#"KEY='value""#,
        ] {
            let e = parse(text, &env).expect_err(text);
            assert!(e.message.contains("is never closed"), "{text:?}: {e}");
        }
    }
}
