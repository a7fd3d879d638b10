//! A log line's level, message and fields, read from the text the service printed: JSON (the
//! keys pino, zap, slog, structlog and Python's JSON formatters write), logfmt (`level=info`), or
//! a leading level word (`ERROR`, `[info]`, `ERROR:root:…`, uvicorn's `INFO:     …`, Flask's,
//! Celery's and gunicorn's prefixes). Pure, and no regular expression: [`detect`] runs once per
//! line on the hot path and only looks at a line's first bytes unless it is JSON or has a
//! `level=`; [`parse`] (fields too) runs only where a line is queried or shown as data.

use memchr::memmem;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// How severe a line is. Ordered: `Trace < Debug < … < Fatal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The lowercase name, as `--level` takes it and `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// A level word as loggers write it, in any case: `WARNING`, `err`, `critical`, `dpanic`.
    pub fn from_word(w: &str) -> Option<Level> {
        let mut buf = [0u8; LONGEST_WORD];
        if w.is_empty() || w.len() > buf.len() {
            return None;
        }
        for (b, c) in buf.iter_mut().zip(w.bytes()) {
            *b = c.to_ascii_lowercase();
        }
        Some(match &buf[..w.len()] {
            b"trace" | b"trc" | b"verbose" => Level::Trace,
            b"debug" | b"dbg" => Level::Debug,
            b"info" | b"inf" | b"information" | b"notice" => Level::Info,
            b"warn" | b"warning" | b"wrn" => Level::Warn,
            b"error" | b"err" | b"eror" => Level::Error,
            b"fatal" | b"critical" | b"crit" | b"panic" | b"dpanic" | b"alert" | b"emerg"
            | b"emergency" | b"ftl" => Level::Fatal,
            _ => return None,
        })
    }

    /// pino's numbers (10 trace … 60 fatal) and syslog-like small ones are not mixed up: a number
    /// is pino's scale.
    pub fn from_number(n: f64) -> Option<Level> {
        Some(match n as i64 {
            i64::MIN..=9 => return None,
            10..=19 => Level::Trace,
            20..=29 => Level::Debug,
            30..=39 => Level::Info,
            40..=49 => Level::Warn,
            50..=59 => Level::Error,
            _ => Level::Fatal,
        })
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::from_word(s)
            .ok_or_else(|| format!("`{s}` is not a level (trace, debug, info, warn, error, fatal)"))
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level of one line, or none. Cheap: see the module's note.
pub(crate) fn detect(text: &str) -> Option<Level> {
    let t = text.trim_start();
    match t.as_bytes().first()? {
        b'{' => json_level(t),
        _ => logfmt_level(t).or_else(|| leading_word(t)),
    }
}

/// The JSON keys that name a line's level, first found wins.
const LEVEL_KEYS: &[&str] = &["level", "levelname", "severity", "lvl", "log.level"];
/// The keys that carry the message.
const MESSAGE_KEYS: &[&str] = &["msg", "message", "event"];

/// The level of a JSON object line: its top-level level key, without building the object.
fn json_level(t: &str) -> Option<Level> {
    struct Head(Option<Level>);
    impl<'de> Deserialize<'de> for Head {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Head;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Head, A::Error> {
                    let mut found = None;
                    while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                        if found.is_none() && LEVEL_KEYS.contains(&k.as_ref()) {
                            found = m.next_value::<LevelValue>()?.0;
                        } else {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(Head(found))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Head>(t).ok()?.0
}

/// A level value: a word or pino's number; anything else is no level.
struct LevelValue(Option<Level>);
impl<'de> Deserialize<'de> for LevelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LevelValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a level")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LevelValue, E> {
                Ok(LevelValue(Level::from_word(s.trim())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<LevelValue, E> {
                Ok(LevelValue(Level::from_number(n as f64)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<LevelValue, E> {
                Ok(LevelValue(Level::from_number(n as f64)))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<LevelValue, E> {
                Ok(LevelValue(Level::from_number(n)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LevelValue, E> {
                Ok(LevelValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LevelValue, E> {
                Ok(LevelValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<LevelValue, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LevelValue(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<LevelValue, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LevelValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The value of a logfmt `level=` (or `lvl=`) key: a key of its own (start of line or after a
/// space), so `error_count=0` and `log_level=debug` are not levels.
fn logfmt_level(t: &str) -> Option<Level> {
    static KEYS: std::sync::LazyLock<[memmem::Finder<'static>; 2]> =
        std::sync::LazyLock::new(|| [memmem::Finder::new("level="), memmem::Finder::new("lvl=")]);
    let b = t.as_bytes();
    // Most lines have no `=` at all: one fast scan, then none for the keys.
    memchr::memchr(b'=', b)?;
    for finder in KEYS.iter() {
        let key = finder.needle();
        for at in finder.find_iter(b) {
            if at == 0 || b[at - 1] == b' ' || b[at - 1] == b'\t' {
                let v = &t[at + key.len()..];
                let v = v.strip_prefix('"').unwrap_or(v);
                let end = v.find([' ', '"', '\t']).unwrap_or(v.len());
                return Level::from_word(&v[..end]);
            }
        }
    }
    None
}

/// The longest word [`Level::from_word`] takes.
const LONGEST_WORD: usize = 12;

/// How far into a line a level word is looked for, and after how many leading tokens.
const LEADING_BYTES: usize = 96;
const LEADING_TOKENS: usize = 6;

/// A level word near the start, after what usually comes before it: a timestamp, a pid in
/// brackets, a thread name in brackets. Upper case (`ERROR`), in brackets (`[info]`,
/// `[INFO/MainProcess]`) or as the first word with a colon (`error: …`, `ERROR:root:…`); a
/// lowercase word in running text (`error connecting`) is not a level.
fn leading_word(t: &str) -> Option<Level> {
    let b = t.as_bytes();
    // Never inside a character: the tokens are sliced out of `t`.
    let mut end = b.len().min(LEADING_BYTES);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    let mut i = 0;
    let mut tokens = 0;
    // After `-` or `|` (`asctime - name - LEVEL - message`), one word (a logger name) may pass.
    let mut after_sep = false;
    while i < end && tokens < LEADING_TOKENS {
        // Skip spaces and ANSI colour sequences (`\x1b[32m`).
        while i < end {
            match b[i] {
                b' ' | b'\t' => i += 1,
                0x1b => {
                    i += 1;
                    if b.get(i) == Some(&b'[') {
                        while i < end && !b[i].is_ascii_alphabetic() {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                _ => break,
            }
        }
        if i >= end {
            break;
        }
        let start = i;
        i = memchr::memchr3(b' ', b'\t', 0x1b, &b[i..end]).map_or(end, |n| i + n);
        if start >= i {
            break;
        }
        let tok = &t[start..i.min(t.len())];
        tokens += 1;
        if tok == "-" || tok == "|" {
            after_sep = true;
            continue;
        }
        let bracketed = tok.starts_with(['[', '(', '<']);
        let inner = tok.trim_start_matches(['[', '(', '<']);
        let first = inner.bytes().next().unwrap_or(b' ');
        // A timestamp, a date, a pid, a time zone: look further.
        if first.is_ascii_digit() || first == b'+' || first == b'-' {
            continue;
        }
        // The word, up to `:` (`ERROR:root:`), `/` (`INFO/MainProcess`) or a closing bracket;
        // looked for only as far as a level word can reach (a long token is no level).
        let reach = inner.len().min(LONGEST_WORD + 1);
        let word_end = inner.as_bytes()[..reach]
            .iter()
            .position(|c| matches!(c, b':' | b'/' | b']' | b')' | b'>' | b',' | b'|'))
            .unwrap_or(inner.len());
        let word = &inner[..word_end];
        let colon = inner[word_end..].starts_with(':');
        if let Some(level) = Level::from_word(word) {
            let upper = word.bytes().all(|c| c.is_ascii_uppercase());
            if upper || bracketed || (colon && tokens == 1) {
                return Some(level);
            }
            return None;
        }
        // Something in brackets (a thread, a logger name) may come before the level.
        if bracketed {
            // Skip the rest of a bracket group that has spaces in it.
            if !tok.contains([']', ')', '>']) {
                while i < end && !matches!(b[i], b']' | b')' | b'>') {
                    i += 1;
                }
                i += 1;
            }
            continue;
        }
        if std::mem::take(&mut after_sep) {
            continue;
        }
        return None;
    }
    None
}

/// A line as data: its level, its message (when structured) and its fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Parsed {
    pub level: Option<Level>,
    /// The `msg`/`message`/`event` of a JSON line, the `msg=` of a logfmt line.
    pub msg: Option<String>,
    /// Every other key of a JSON object (values as written) or logfmt pair (values as strings).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Parsed {
    /// Whether the line has field `key` with this value (a JSON value compares by its text:
    /// `status=500` matches `"status": 500` and `"status": "500"`).
    pub(crate) fn has_field(&self, key: &str, value: &str) -> bool {
        match self.fields.get(key) {
            Some(serde_json::Value::String(s)) => s == value,
            Some(v) => serde_json::to_string(v).is_ok_and(|s| s == value),
            None => false,
        }
    }
}

/// The whole of one line as data (allocates; not for the hot path).
pub(crate) fn parse(text: &str) -> Parsed {
    let t = text.trim_start();
    if t.starts_with('{') {
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(t) {
            let level = json_level(t);
            if let Some(k) = LEVEL_KEYS.iter().find(|k| map.contains_key(**k)) {
                map.shift_remove(*k);
            }
            let msg = MESSAGE_KEYS
                .iter()
                .find_map(|k| match map.get(*k) {
                    Some(serde_json::Value::String(_)) => map.shift_remove(*k),
                    _ => None,
                })
                .and_then(|v| v.as_str().map(str::to_string));
            return Parsed {
                level,
                msg,
                fields: map,
            };
        }
        return Parsed::default();
    }
    let pairs = logfmt_pairs(t);
    if pairs.iter().any(|(k, _)| *k == "level" || *k == "lvl") || starts_with_pair(t) {
        let mut fields = serde_json::Map::new();
        let mut msg = None;
        for (k, v) in pairs {
            match k {
                "level" | "lvl" => {}
                "msg" | "message" if msg.is_none() => msg = Some(v),
                _ => {
                    fields.insert(k.to_string(), serde_json::Value::String(v));
                }
            }
        }
        return Parsed {
            level: logfmt_level(t),
            msg,
            fields,
        };
    }
    Parsed {
        level: leading_word(t),
        ..Parsed::default()
    }
}

/// Whether a line opens with a logfmt pair (`key=value`, the key a plain identifier): such a
/// line is logfmt even without a level.
fn starts_with_pair(t: &str) -> bool {
    let word = &t[..t.find([' ', '\t']).unwrap_or(t.len())];
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    })
}

/// The `key=value` pairs of a logfmt line (values unquoted, `\"` unescaped); words without `=`
/// are skipped.
fn logfmt_pairs(t: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = t;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let word_end = rest.find([' ', '\t', '=']).unwrap_or(rest.len());
        let key = &rest[..word_end];
        rest = &rest[word_end..];
        let Some(after) = rest.strip_prefix('=') else {
            continue;
        };
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find([' ', '\t']).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if !key.is_empty() {
            out.push((key, value));
        }
        rest = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    /// Real lines, as each logger writes them by default (or with its JSON formatter).
    const CASES: &[(&str, &str, Option<Level>)] = &[
        // pino
        ("pino", r#"{"level":30,"time":1704110400000,"pid":4242,"hostname":"web-1","msg":"server listening"}"#, Some(Info)),
        ("pino", r#"{"level":50,"time":1704110400000,"pid":4242,"hostname":"web-1","err":{"type":"Error","message":"boom","stack":"Error: boom\n    at x"},"msg":"boom"}"#, Some(Error)),
        ("pino", r#"{"level":60,"time":1704110400000,"pid":1,"hostname":"h","msg":"fatal"}"#, Some(Fatal)),
        // zap (production config)
        ("zap", r#"{"level":"info","ts":1704110400.123456,"caller":"app/main.go:42","msg":"listening","addr":":8080"}"#, Some(Info)),
        ("zap", r#"{"level":"warn","ts":1704110400.5,"caller":"db/pool.go:88","msg":"slow query","elapsed":1.2}"#, Some(Warn)),
        ("zap", r#"{"level":"dpanic","ts":1704110400.5,"msg":"x"}"#, Some(Fatal)),
        // zap development console encoder
        ("zap", "2024-01-01T12:00:00.000Z\tERROR\tapp/main.go:50\tcannot connect\t{\"addr\": \"db:5432\"}", Some(Error)),
        // Go's log/slog
        ("slog", r#"{"time":"2024-01-01T12:00:00.000000000Z","level":"INFO","msg":"started","port":8080}"#, Some(Info)),
        ("slog", r#"{"time":"2024-01-01T12:00:00Z","level":"ERROR","msg":"request failed","status":500}"#, Some(Error)),
        ("slog", "time=2024-01-01T12:00:00.000Z level=WARN msg=\"disk almost full\" free=2%", Some(Warn)),
        // structlog JSONRenderer
        ("structlog", r#"{"event": "user logged in", "user_id": 42, "level": "info", "timestamp": "2024-01-01T12:00:00Z"}"#, Some(Info)),
        ("structlog", r#"{"event": "payment failed", "level": "error", "logger": "billing", "timestamp": "2024-01-01T12:00:00Z"}"#, Some(Error)),
        // structlog's default console renderer
        ("structlog", "2024-01-01 12:00:00 [warning  ] cache miss                     key=abc", Some(Warn)),
        // python-json-logger
        ("python-json-logger", r#"{"asctime": "2024-01-01 12:00:00,000", "name": "app", "levelname": "WARNING", "message": "retrying"}"#, Some(Warn)),
        ("python-json-logger", r#"{"message": "crashed", "levelname": "CRITICAL", "name": "app"}"#, Some(Fatal)),
        // logfmt (logrus text formatter, go-kit)
        ("logfmt", "time=\"2024-01-01T12:00:00Z\" level=error msg=\"cannot open file\" path=/tmp/x", Some(Error)),
        ("logfmt", "ts=2024-01-01T12:00:00Z caller=main.go:12 level=debug msg=tick", Some(Debug)),
        // uvicorn
        ("uvicorn", "INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)", Some(Info)),
        ("uvicorn", "INFO:     127.0.0.1:51234 - \"GET / HTTP/1.1\" 200 OK", Some(Info)),
        ("uvicorn", "ERROR:    Exception in ASGI application", Some(Error)),
        ("uvicorn", "WARNING:  StatReload detected changes in 'app.py'. Reloading...", Some(Warn)),
        // Flask's app.logger default handler and werkzeug through logging
        ("flask", "[2024-01-01 12:00:00,000] ERROR in app: Exception on / [GET]", Some(Error)),
        ("werkzeug", "WARNING: This is a development server. Do not use it in a production deployment.", Some(Warn)),
        ("werkzeug", "INFO:werkzeug:127.0.0.1 - - [01/Jan/2024 12:00:00] \"GET / HTTP/1.1\" 200 -", Some(Info)),
        // Celery worker
        ("celery", "[2024-01-01 12:00:00,000: INFO/MainProcess] Connected to redis://localhost:6379/0", Some(Info)),
        ("celery", "[2024-01-01 12:00:00,123: ERROR/ForkPoolWorker-1] Task app.add[abc] raised unexpected: ValueError()", Some(Error)),
        ("celery", "[2024-01-01 12:00:00,000: WARNING/MainProcess] celery@host ready.", Some(Warn)),
        // gunicorn
        ("gunicorn", "[2024-01-01 12:00:00 +0000] [123] [INFO] Starting gunicorn 21.2.0", Some(Info)),
        ("gunicorn", "[2024-01-01 12:00:01 +0000] [124] [ERROR] Exception in worker process", Some(Error)),
        // Python logging's default basicConfig format
        ("python", "ERROR:root:something broke", Some(Error)),
        ("python", "WARNING:urllib3.connectionpool:Retrying (Retry(total=2))", Some(Warn)),
        ("python", "2024-01-01 12:00:00,000 - app - DEBUG - tick", Some(Debug)),
        ("python", "2024-01-01 12:00:00,000 INFO app: started", Some(Info)),
        // Rust tracing's fmt, with and without colour
        ("tracing", "2024-01-01T12:00:00.000000Z  WARN app::db: pool exhausted", Some(Warn)),
        ("tracing", "\x1b[2m2024-01-01T12:00:00.000000Z\x1b[0m \x1b[31mERROR\x1b[0m \x1b[2mapp\x1b[0m: boom", Some(Error)),
        // Java/logback
        ("logback", "12:00:00.000 [main] INFO  com.example.App - Started App in 2.1 seconds", Some(Info)),
        // bracketed and colon forms
        ("plain", "[info] compiled successfully", Some(Info)),
        ("plain", "[WARN] deprecated option", Some(Warn)),
        ("plain", "error: could not compile `app`", Some(Error)),
        ("plain", "warning: unused variable", Some(Warn)),
        ("winston", "info: listening on 3000", Some(Info)),
        // Not levels
        ("negative", "error_count=0 processed=12", None),
        ("negative", "log_level=debug started", None),
        ("negative", "error connecting to the database, retrying", None),
        ("negative", "Processed 3 items, 0 ERROR", None),
        ("negative", "2024-01-01 12:00:00 request done error_count=0", None),
        ("negative", r#"{"msg":"no level here","error_count":0}"#, None),
        ("negative", r#"{"nested":{"level":"error"},"msg":"x"}"#, None),
        // A line that opens like JSON but is not is not looked at further.
        ("negative", "{not json level=error", None),
        ("negative", "", None),
        ("negative", "   ", None),
        ("negative", "* Running on http://127.0.0.1:5000", None),
    ];

    #[test]
    fn each_logger_s_lines_have_their_level() {
        for (logger, line, want) in CASES {
            assert_eq!(detect(line), *want, "{logger}: {line:?}");
            assert_eq!(parse(line).level, *want, "parse, {logger}: {line:?}");
        }
    }

    #[test]
    fn json_lines_give_message_and_fields() {
        let p = parse(r#"{"level":"info","ts":1.5,"msg":"listening","addr":":8080","n":3}"#);
        assert_eq!(p.level, Some(Info));
        assert_eq!(p.msg.as_deref(), Some("listening"));
        assert_eq!(
            p.fields.keys().collect::<Vec<_>>(),
            ["ts", "addr", "n"],
            "level and message taken out, the rest in order"
        );
        assert!(p.has_field("addr", ":8080"));
        assert!(p.has_field("n", "3"));
        assert!(!p.has_field("n", "4"));
        let s = parse(r#"{"event": "user logged in", "user_id": 42, "level": "info"}"#);
        assert_eq!(s.msg.as_deref(), Some("user logged in"));
        assert!(s.has_field("user_id", "42"));
        let py = parse(r#"{"levelname": "WARNING", "message": "retrying", "name": "app"}"#);
        assert_eq!(
            (py.level, py.msg.as_deref()),
            (Some(Warn), Some("retrying"))
        );
    }

    #[test]
    fn logfmt_lines_give_message_and_fields() {
        let p = parse(
            r#"time="2024-01-01T12:00:00Z" level=error msg="cannot \"open\" file" path=/tmp/x error_count=0"#,
        );
        assert_eq!(p.level, Some(Error));
        assert_eq!(p.msg.as_deref(), Some("cannot \"open\" file"));
        assert!(p.has_field("path", "/tmp/x"));
        assert!(p.has_field("error_count", "0"));
        assert!(p.has_field("time", "2024-01-01T12:00:00Z"));
        // Plain text has no fields; a line opening with a pair is logfmt without a level too.
        assert!(parse("ERROR:root:x a=b").fields.is_empty());
        assert!(parse("GET /items?a=b 200").fields.is_empty());
        let bare = parse("error_count=0 route=/a");
        assert_eq!(bare.level, None);
        assert!(bare.has_field("error_count", "0") && bare.has_field("route", "/a"));
    }

    #[test]
    fn levels_order_and_read_from_words_and_numbers() {
        assert!(Trace < Debug && Debug < Info && Info < Warn && Warn < Error && Error < Fatal);
        assert_eq!("WARNING".parse::<Level>(), Ok(Warn));
        assert!("loud".parse::<Level>().is_err());
        assert_eq!(Level::from_number(40.0), Some(Warn));
        assert_eq!(Level::from_number(3.0), None);
        assert_eq!(serde_json::to_string(&Error).unwrap(), "\"error\"");
    }
}

#[cfg(test)]
mod cut_tests {
    use super::*;

    /// The look for a level word stops at a byte count: a character cut there is no panic, and
    /// a long first token is no level however it goes on.
    #[test]
    fn a_character_at_the_reach_and_long_tokens() {
        for pad in 90..100 {
            let line = format!("{}é ERROR x", "a".repeat(pad));
            assert_eq!(detect(&line), None, "{pad}");
        }
        assert_eq!(detect(&format!("{}ERROR:", "x".repeat(40))), None);
        assert_eq!(detect("ERROR: x"), Some(Level::Error));
        // A bracket or colour sequence open at the reach.
        assert_eq!(detect(&format!("[{}", "t ".repeat(60))), None);
        assert_eq!(detect(&format!("{}\x1b[3", " ".repeat(93))), None);
        assert_eq!(
            detect("2024-01-01 12:00:00,123 [worker-1] WARNING something"),
            Some(Level::Warn)
        );
    }
}
