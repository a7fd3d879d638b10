//! Which stored lines `devstack logs` and the MCP `logs` tool show, and how they are found fast:
//! a stored line is only parsed once its run, time and stored level (read from its first bytes)
//! pass. The matching is pure; [`select`] is the thin reader over the files.

use std::path::Path;

use memchr::memmem;

use super::files::{boundary_id, path_of, Record, Run};
use super::Level;

/// Which run's lines: `--run 0` (the current or last run), `--run -1` (the one before), a run's
/// id, or every run kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSelector {
    /// 0 is the current (or last) run, -1 the one before, …
    Relative(i64),
    /// A run by its id (as `logs --json` shows in `run` records).
    Id(u64),
    All,
}

impl std::str::FromStr for RunSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "all" => Ok(RunSelector::All),
            "current" => Ok(RunSelector::Relative(0)),
            n => match n.parse::<i64>() {
                Ok(i) if i <= 0 => Ok(RunSelector::Relative(i)),
                Ok(i) => Ok(RunSelector::Id(i as u64)),
                Err(_) => Err(format!(
                    "`{s}` is not a run: write 0 (the current run), -1 (the previous one), a run id, or `all`"
                )),
            },
        }
    }
}

/// The run id `sel` names among the runs kept (oldest first); `None` for every line (also
/// when no run was ever recorded: files written before runs existed).
pub(crate) fn resolve_run(sel: RunSelector, runs: &[Run]) -> Result<Option<u64>, String> {
    if runs.is_empty() {
        return match sel {
            RunSelector::All | RunSelector::Relative(0) => Ok(None),
            _ => Err("no runs are recorded yet".to_string()),
        };
    }
    match sel {
        RunSelector::All => Ok(None),
        RunSelector::Relative(back) => {
            let i = (runs.len() as i64 - 1) + back;
            usize::try_from(i)
                .ok()
                .and_then(|i| runs.get(i))
                .map(|r| Some(r.id))
                .ok_or_else(|| {
                    format!(
                        "there is no run {back}: {} run(s) are kept (from {} to 0)",
                        runs.len(),
                        1 - runs.len() as i64
                    )
                })
        }
        RunSelector::Id(id) => runs
            .iter()
            .any(|r| r.id == id)
            .then_some(Some(id))
            .ok_or_else(|| {
                format!(
                    "there is no run {id}: the runs kept are {} to {}",
                    runs[0].id,
                    runs[runs.len() - 1].id
                )
            }),
    }
}

/// Which stored records are shown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Only records at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only records whose text matches.
    pub grep: Option<regex::Regex>,
    /// Only the last N of each service.
    pub tail: Option<usize>,
    /// Only records of at least this level.
    pub level: Option<Level>,
    /// Only records with each of these fields (`key`, `value`).
    pub fields: Vec<(String, String)>,
    /// Only records of this run (see [`resolve_run`]); `None`: every run.
    pub run: Option<u64>,
}

impl Filter {
    /// Whether a record passes every condition but `tail` and `run`. Pure.
    pub(crate) fn matches(&self, r: &Record) -> bool {
        !r.is_boundary()
            && self.since_ms.is_none_or(|s| r.t >= s)
            && self
                .level
                .is_none_or(|min| r.level.is_some_and(|l| l >= min))
            && self.grep.as_ref().is_none_or(|g| g.is_match(&r.text))
            && (self.fields.is_empty() || {
                let p = super::level::parse(&r.text);
                self.fields.iter().all(|(k, v)| p.has_field(k, v))
            })
    }
}

/// `key=value` as `--field` takes it.
pub(crate) fn field_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a field: write `key=value`")),
    }
}

/// What the query looks for in a stored line's first bytes.
struct Quick {
    level_key: memmem::Finder<'static>,
}

impl Quick {
    fn new() -> Self {
        Quick {
            level_key: memmem::Finder::new(b",\"level\":\""),
        }
    }

    /// The level stored in a line, from the `"level"` key the files write before the text (a
    /// quote inside a text is always escaped, so the key cannot be a text's).
    fn level(&self, line: &str) -> Option<Level> {
        let at = self.level_key.find(line.as_bytes())? + self.level_key.needle().len();
        let rest = &line[at..];
        Level::from_word(&rest[..rest.find('"')?])
    }
}

/// The time of a stored line, from its first bytes (`{"t":123,`).
fn quick_time(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"t\":")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// The records of one file's text that pass `filter`, appended to `out`. `run` is the run the
/// text starts in (carried from a rotated file to its successor) and is moved past the text's
/// boundaries. Pure.
pub(crate) fn select_text(
    text: &str,
    filter: &Filter,
    run: &mut Option<u64>,
    out: &mut Vec<Record>,
) {
    let quick = Quick::new();
    for line in text.lines() {
        if let Some(id) = boundary_id(line) {
            *run = Some(id);
            continue;
        }
        if filter.run.is_some() && *run != filter.run {
            continue;
        }
        if let (Some(since), Some(t)) = (filter.since_ms, quick_time(line)) {
            if t < since {
                continue;
            }
        }
        if let Some(min) = filter.level {
            if quick.level(line).is_none_or(|l| l < min) {
                continue;
            }
        }
        let Ok(rec) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        if filter.matches(&rec) {
            out.push(rec);
        }
    }
}

/// The records of `services` that pass `filter`, merged by time.
pub(crate) fn select(dir: &Path, services: &[String], filter: &Filter) -> Vec<Record> {
    let mut out = Vec::new();
    for s in services {
        let path = path_of(dir, s);
        let mut rs = Vec::new();
        let mut run = None;
        for p in [path.with_extension("log.1"), path] {
            if let Ok(text) = std::fs::read_to_string(&p) {
                select_text(&text, filter, &mut run, &mut rs);
            }
        }
        if let Some(k) = filter.tail {
            rs.drain(..rs.len().saturating_sub(k));
        }
        out.extend(rs);
    }
    // Stable: lines of one service keep their order within a millisecond.
    out.sort_by_key(|r| r.t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::files::{FileSetup, LogFiles};
    use crate::logs::{LogLine, Stream};
    use std::time::{Duration, UNIX_EPOCH};

    fn write(files: &mut LogFiles, t: u64, svc: &str, text: &str) {
        let line = LogLine::output(
            UNIX_EPOCH + Duration::from_millis(t),
            svc,
            Stream::Stdout,
            text.into(),
        );
        assert_eq!(files.write(&line), None);
    }

    fn texts(dir: &Path, services: &[&str], f: &Filter) -> Vec<String> {
        let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        select(dir, &services, f)
            .into_iter()
            .map(|r| r.text)
            .collect()
    }

    #[test]
    fn select_filters_by_time_text_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::new(dir.path().to_path_buf()).unwrap();
        for (t, svc, text) in [
            (1, "a", "boot"),
            (2, "b", "error: x"),
            (3, "a", "error: y"),
            (4, "a", "error: z"),
        ] {
            write(&mut files, t, svc, text);
        }
        assert_eq!(files.flush(), None);
        let grep = Some(regex::Regex::new("^error").unwrap());
        let f = |f: Filter| texts(dir.path(), &["a", "b"], &f);
        assert_eq!(
            f(Filter {
                grep: grep.clone(),
                ..Filter::default()
            }),
            ["error: x", "error: y", "error: z"]
        );
        assert_eq!(
            f(Filter {
                grep,
                tail: Some(1),
                ..Filter::default()
            }),
            ["error: x", "error: z"]
        );
        assert_eq!(
            f(Filter {
                since_ms: Some(3),
                ..Filter::default()
            }),
            ["error: y", "error: z"]
        );
    }

    #[test]
    fn level_filter_keeps_that_level_and_above_and_fields_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::new(dir.path().to_path_buf()).unwrap();
        for (t, text) in [
            (1, r#"{"level":"info","msg":"up","port":8080}"#),
            (2, r#"{"level":"warn","msg":"slow","route":"/a"}"#),
            (3, "level=error msg=boom route=/b"),
            (4, "ERROR:root:plain"),
            (5, "error_count=0 route=/a"),
            (6, r#"{"level":60,"msg":"fatal","route":"/a"}"#),
            (
                7,
                r#"{"msg":"quoted \"level\":\"error\" inside","route":"/a"}"#,
            ),
        ] {
            write(&mut files, t, "api", text);
        }
        assert_eq!(files.flush(), None);
        let f = |f: Filter| texts(dir.path(), &["api"], &f);
        let warn = f(Filter {
            level: Some(Level::Warn),
            ..Filter::default()
        });
        assert_eq!(warn.len(), 4, "{warn:#?}");
        assert!(warn[0].contains("slow") && warn[3].contains("fatal"));
        let errors = f(Filter {
            level: Some(Level::Error),
            ..Filter::default()
        });
        assert_eq!(errors.len(), 3, "{errors:#?}");
        let route_a = f(Filter {
            fields: vec![("route".into(), "/a".into())],
            ..Filter::default()
        });
        assert_eq!(route_a.len(), 4, "JSON and logfmt fields: {route_a:#?}");
        assert_eq!(
            f(Filter {
                fields: vec![("route".into(), "/a".into())],
                level: Some(Level::Warn),
                ..Filter::default()
            })
            .len(),
            2
        );
        assert_eq!(
            f(Filter {
                fields: vec![("port".into(), "8080".into())],
                ..Filter::default()
            }),
            [r#"{"level":"info","msg":"up","port":8080}"#]
        );
    }

    #[test]
    fn runs_have_boundaries_and_select_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let setup = FileSetup {
            dir: dir.path().to_path_buf(),
            keep_runs: 10,
        };
        for (run, start) in [(1u64, 100u64), (2, 200), (3, 300)] {
            let mut files = LogFiles::for_run(setup.clone(), start).unwrap();
            assert_eq!(files.run().map(|r| r.id), Some(run));
            write(&mut files, start + 1, "a", &format!("a in run {run}"));
            if run != 2 {
                write(&mut files, start + 2, "b", &format!("b in run {run}"));
            }
            assert_eq!(files.flush(), None);
        }
        let runs = crate::logs::files::runs(dir.path());
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3]);
        let at = |sel: RunSelector| {
            let run = resolve_run(sel, &runs).unwrap();
            texts(
                dir.path(),
                &["a", "b"],
                &Filter {
                    run,
                    ..Filter::default()
                },
            )
        };
        assert_eq!(at(RunSelector::Relative(0)), ["a in run 3", "b in run 3"]);
        assert_eq!(
            at(RunSelector::Relative(-1)),
            ["a in run 2"],
            "b printed nothing in run 2"
        );
        assert_eq!(at(RunSelector::Id(1)), ["a in run 1", "b in run 1"]);
        assert_eq!(at(RunSelector::All).len(), 5);
        assert!(resolve_run(RunSelector::Relative(-3), &runs).is_err());
        assert!(resolve_run(RunSelector::Id(9), &runs).is_err());
        assert_eq!(resolve_run(RunSelector::Relative(0), &[]), Ok(None));
        // The boundary is a record of its own at the start of each file, never shown.
        let raw = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
        assert!(
            raw.starts_with(r#"{"run":1,"t":100,"service":"b","stream":"run""#),
            "{raw}"
        );
        assert_eq!("-1".parse(), Ok(RunSelector::Relative(-1)));
        assert_eq!("all".parse(), Ok(RunSelector::All));
        assert_eq!("4".parse(), Ok(RunSelector::Id(4)));
        assert!("x".parse::<RunSelector>().is_err());
    }

    #[test]
    fn retention_keeps_the_last_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        // Lines from before runs existed are older than every run.
        let mut legacy = LogFiles::new(dir.path().to_path_buf()).unwrap();
        write(&mut legacy, 1, "a", "legacy");
        write(&mut legacy, 2, "gone", "a service since removed");
        assert_eq!(legacy.flush(), None);
        drop(legacy);
        let setup = FileSetup {
            dir: dir.path().to_path_buf(),
            keep_runs: 2,
        };
        for start in [100u64, 200, 300] {
            let mut files = LogFiles::for_run(setup.clone(), start).unwrap();
            write(&mut files, start + 1, "a", &format!("a at {start}"));
            assert_eq!(files.flush(), None);
        }
        let runs = crate::logs::files::runs(dir.path());
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3]);
        let all = texts(dir.path(), &["a", "gone"], &Filter::default());
        assert_eq!(all, ["a at 200", "a at 300"]);
        assert!(
            !dir.path().join("gone.log").exists(),
            "a file of old runs only goes"
        );
    }

    #[test]
    fn quick_reads_match_the_stored_format() {
        let rec = r#"{"t":1234,"service":"a","stream":"stdout","level":"warn","text":"x"}"#;
        assert_eq!(quick_time(rec), Some(1234));
        assert_eq!(Quick::new().level(rec), Some(Level::Warn));
        let none = r#"{"t":1,"service":"a","stream":"stdout","text":"{\"level\":\"error\"}"}"#;
        assert_eq!(Quick::new().level(none), None);
    }
}
