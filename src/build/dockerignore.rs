//! `.dockerignore` with Docker's own semantics (moby/patternmatcher), not gitignore's. Pure: text
//! in, decisions out. The differences from `.gitignore` that matter:
//! - every pattern is anchored at the context root (`*.log` excludes `a.log`, not `src/a.log`;
//!   write `**/*.log` for every folder); a leading `/` and `./` are dropped, the pattern is
//!   cleaned (`a//b/../c` is `a/c`), and a trailing `/` means nothing special;
//! - `*` and `?` never cross `/`, `**` matches any number of folders (none included);
//! - a pattern that matches a folder excludes everything under it;
//! - `!pattern` re-includes, and the last pattern that matches a path (or one of its parent
//!   folders) decides — unlike gitignore, a file can be re-included inside an excluded folder;
//! - `#` starts a comment line; blank lines are skipped.

use regex::Regex;

#[derive(Debug, Clone)]
struct Pattern {
    re: Regex,
    exclusion: bool,
}

/// The compiled patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// `filepath.Clean` for slash paths: no `.`, no empty parts, `..` folded.
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if abs {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Docker's glob to an anchored regex.
fn to_regex(pattern: &str) -> Option<Regex> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/` is zero or more folders.
                    i += 1;
                    re.push_str("(.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => {
                i += 1;
                if let Some(n) = chars.get(i) {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            '[' => {
                // A character class as Go's filepath.Match has it: `[^…]` or `[!…]` negates.
                let mut class = String::from("[");
                i += 1;
                if matches!(chars.get(i), Some('^' | '!')) {
                    class.push('^');
                    i += 1;
                }
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            i += 1;
                            if let Some(n) = chars.get(i) {
                                class.push_str(&regex::escape(&n.to_string()));
                            }
                        }
                        '[' => class.push_str("\\["),
                        other => class.push(other),
                    }
                    i += 1;
                }
                if !closed {
                    return None;
                }
                class.push(']');
                re.push_str(&class);
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).ok()
}

impl DockerIgnore {
    /// Parses the file's text. Patterns that are not valid globs are skipped (Docker refuses the
    /// build for them; the engine then says so).
    pub(crate) fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut pat = clean(pat);
            if pat.len() > 1 && pat.starts_with('/') {
                pat.remove(0);
            }
            if pat == "." {
                // `.` (or `/`) is the whole context.
                pat = "**".to_string();
            }
            if let Some(re) = to_regex(&pat) {
                patterns.push(Pattern { re, exclusion });
            }
        }
        Self { patterns }
    }

    /// Keeps `path` (a file the build cannot do without, such as the Dockerfile) whatever the
    /// patterns say, as the Docker CLI does.
    pub(crate) fn keep(&mut self, path: &str) {
        let p = regex::escape(&clean(path));
        if let Ok(re) = Regex::new(&format!("^{p}$")) {
            self.patterns.push(Pattern {
                re,
                exclusion: true,
            });
        }
    }

    /// Whether any `!` pattern exists: then an excluded folder must still be walked.
    pub(crate) fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context: the
    /// last pattern that matches the path or one of its parent folders decides.
    pub(crate) fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            if p.re.is_match(&path) || parents.iter().any(|parent| p.re.is_match(parent)) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        // (patterns, path, excluded)
        let cases: &[(&str, &str, bool)] = &[
            ("big.bin", "big.bin", true),
            ("big.bin", "sub/big.bin", false),
            ("*.log", "a.log", true),
            ("*.log", "src/a.log", false),
            ("**/*.log", "src/deep/a.log", true),
            ("**/*.log", "a.log", true),
            ("/node_modules", "node_modules/x/y.js", true),
            ("./node_modules/", "node_modules/x/y.js", true),
            ("node_modules", "src/node_modules/x.js", false),
            ("data", "data/a/b/c", true),
            ("*\n!keep.txt", "keep.txt", false),
            ("*\n!keep.txt", "other.txt", true),
            ("docs\n!docs/README.md", "docs/README.md", false),
            ("docs\n!docs/README.md", "docs/other.md", true),
            ("!a\na", "a", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c].txt", "b.txt", true),
            ("[!a-c].txt", "b.txt", false),
            ("# comment\n\n  x  ", "x", true),
            ("src/**/test", "src/test", true),
            ("src/**/test", "src/a/b/test/file", true),
            ("a/../b", "b", true),
            (".", "anything/at/all", true),
            ("", "x", false),
        ];
        for (patterns, path, want) in cases {
            let ig = DockerIgnore::parse(patterns);
            assert_eq!(
                ig.excludes(path),
                *want,
                "patterns {patterns:?} on path {path:?}"
            );
        }
    }

    #[test]
    fn kept_files_win() {
        let mut ig = DockerIgnore::parse("*\n");
        ig.keep("Dockerfile");
        ig.keep("./.dockerignore");
        assert!(!ig.excludes("Dockerfile"));
        assert!(!ig.excludes(".dockerignore"));
        assert!(ig.excludes("app.py"));
    }
}
