//! Secret values out of devstack's own output: every value that came from a secret-looking
//! variable or key is replaced by `****` wherever it shows up (a command line, a probe URL, a
//! diagnostic), whatever key it was interpolated into. Pure; cheap to clone.

use std::sync::Arc;

/// Values shorter than this are not redacted: they would mask ordinary words everywhere.
const MIN_LEN: usize = 4;
pub(crate) const MASK: &str = "****";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a value that contains another is masked whole.
    values: Arc<Vec<String>>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| v.len() >= MIN_LEN).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self {
            values: Arc::new(values),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value masked.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in self.values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_value_longest_first_and_leaves_short_ones() {
        let r = Redactor::new(["s3cr3t-token".to_string(), "s3cr3t".into(), "ab".into()]);
        let cases = [
            ("run --token s3cr3t-token", "run --token ****"),
            ("http://x/?k=s3cr3t&j=s3cr3t", "http://x/?k=****&j=****"),
            ("ab stays", "ab stays"),
            ("nothing here", "nothing here"),
        ];
        for (input, want) in cases {
            assert_eq!(r.apply(input), want, "{input}");
        }
    }
}
