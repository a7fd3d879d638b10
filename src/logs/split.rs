//! Bytes to whole lines: chunks from a pipe or the engine arrive cut anywhere. Pure.

/// Longest line kept whole; longer ones are cut into pieces of this size so memory stays bounded.
pub(crate) const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the lines they complete (without `\n` or `\r\n`). Invalid UTF-8 is
    /// replaced, never dropped.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, after) = (&rest[..nl], &rest[nl + 1..]);
            rest = after;
            if self.buf.is_empty() {
                // A whole line in this chunk: straight from it, no copy through the buffer.
                out.push(text(line.strip_suffix(b"\r").unwrap_or(line)));
            } else {
                self.buf.extend_from_slice(line);
                if self.buf.ends_with(b"\r") {
                    self.buf.pop();
                }
                out.push(text(&self.buf));
                self.buf.clear();
            }
        }
        self.buf.extend_from_slice(rest);
        while self.buf.len() > MAX_LINE {
            let tail = self.buf.split_off(MAX_LINE);
            out.push(text(&self.buf));
            self.buf = tail;
        }
        out
    }

    /// The last line of a stream that ended without a newline: never lost.
    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let line = text(&self.buf);
        self.buf.clear();
        Some(line)
    }
}

/// Valid UTF-8 as it is (checked at SIMD speed); anything else with its bad bytes replaced.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\r\n\nx"), vec!["world", ""]);
        assert_eq!(s.finish().as_deref(), Some("x"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"caf\xe9\n"), vec!["caf\u{fffd}"]);
    }

    #[test]
    fn long_lines_are_cut_not_buffered_forever() {
        let mut s = LineSplitter::default();
        let big = vec![b'a'; MAX_LINE * 2 + 10];
        let lines = s.push(&big);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(s.finish().map(|l| l.len()), Some(10));
    }
}
