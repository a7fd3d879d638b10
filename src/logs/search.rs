//! Ranked search over log records (the MCP `logs` tool's `search`): a line matches when it has
//! any of the words; the score adds how many words it has (each counted once, case-insensitive),
//! how severe it is and how recent. Pure and simple on purpose: an agent asking "what about the
//! database?" gets the errors about it first, the newest first among equals.

use super::files::Record;
use super::Level;

/// The weight of each matched word.
const TERM: f64 = 2.0;
/// At most this much for being the newest line (the oldest gets none).
const RECENCY: f64 = 1.0;

fn level_weight(l: Option<Level>) -> f64 {
    match l {
        Some(Level::Fatal) => 2.0,
        Some(Level::Error) => 1.5,
        Some(Level::Warn) => 1.0,
        Some(Level::Info) => 0.25,
        _ => 0.0,
    }
}

/// The best `limit` matches of `query`'s words among `records` (oldest first), best first,
/// each with its score.
pub(crate) fn rank<'a>(records: &'a [Record], query: &str, limit: usize) -> Vec<(&'a Record, f64)> {
    let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    if terms.is_empty() {
        return Vec::new();
    }
    let (first, last) = match (records.first(), records.last()) {
        (Some(f), Some(l)) => (f.t, l.t),
        _ => return Vec::new(),
    };
    let span = (last - first).max(1) as f64;
    let mut scored: Vec<(&Record, f64)> = records
        .iter()
        .filter_map(|r| {
            let text = r.text.to_lowercase();
            let hits = terms.iter().filter(|t| text.contains(t.as_str())).count();
            (hits > 0).then(|| {
                let recency = RECENCY * (r.t - first) as f64 / span;
                (r, TERM * hits as f64 + level_weight(r.level) + recency)
            })
        })
        .collect();
    // Stable: equal scores keep the newer first.
    scored.reverse();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(limit);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u64, level: Option<Level>, text: &str) -> Record {
        Record {
            run: None,
            t,
            service: "api".into(),
            stream: "stdout".into(),
            level,
            text: text.into(),
            fields: None,
            event: None,
        }
    }

    #[test]
    fn more_words_then_severity_then_recency() {
        let rs = [
            rec(1, Some(Level::Error), "database connection refused"),
            rec(2, Some(Level::Info), "database pool ready"),
            rec(3, Some(Level::Info), "request served"),
            rec(4, Some(Level::Warn), "database slow query on users"),
            rec(5, Some(Level::Info), "database pool ready"),
            rec(6, Some(Level::Info), "Database connection opened"),
        ];
        let got: Vec<u64> = rank(&rs, "database connection", 10)
            .iter()
            .map(|(r, _)| r.t)
            .collect();
        // Both words: the error before the info; one word: the warning, then newest first.
        assert_eq!(got, [1, 6, 4, 5, 2]);
        assert_eq!(rank(&rs, "database", 2).len(), 2);
        assert!(rank(&rs, "  ", 5).is_empty());
        assert!(rank(&rs, "nothing", 5).is_empty());
    }
}
