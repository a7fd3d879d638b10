//! Where a build step is in its Dockerfile. The classic builder reports `Step 3/7 : RUN …`, not
//! a line number; this finds the line by the instruction's text. Pure.

/// One instruction: the line it starts on (1-based) and its text with continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instruction {
    pub line: usize,
    pub text: String,
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The instructions of a Dockerfile, honouring `# escape=` and comment lines inside
/// continuations, as the classic builder parses them.
pub(crate) fn instructions(text: &str) -> Vec<Instruction> {
    let mut escape = '\\';
    let mut out = Vec::new();
    let mut current: Option<Instruction> = None;
    let mut directives = true;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if directives {
            if let Some(d) = line.strip_prefix('#') {
                let d = d.trim();
                if let Some((k, v)) = d.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("escape") {
                        escape = v.trim().chars().next().unwrap_or('\\');
                    }
                    continue;
                }
            }
            directives = false;
        }
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (line, false),
        };
        match current.as_mut() {
            Some(c) => {
                c.text.push(' ');
                c.text.push_str(body);
            }
            None => {
                current = Some(Instruction {
                    line: i + 1,
                    text: body.to_string(),
                })
            }
        }
        if !continues {
            if let Some(mut c) = current.take() {
                c.text = squash(&c.text);
                out.push(c);
            }
        }
    }
    if let Some(mut c) = current.take() {
        c.text = squash(&c.text);
        out.push(c);
    }
    out
}

/// The line of step `n` (1-based) whose text the builder printed as `printed`: the instruction
/// with that text nearest to position `n`, else the `n`-th instruction.
pub(crate) fn step_line(text: &str, n: usize, printed: &str) -> Option<usize> {
    let all = instructions(text);
    let want = squash(printed).to_ascii_lowercase();
    let by_text = all
        .iter()
        .enumerate()
        .filter(|(_, ins)| ins.text.to_ascii_lowercase() == want)
        .min_by_key(|(i, _)| (*i as isize - (n as isize - 1)).unsigned_abs())
        .map(|(_, ins)| ins.line);
    by_text.or_else(|| all.get(n.checked_sub(1)?).map(|i| i.line))
}

/// `Dockerfile parse error line 3: unknown instruction: RUNX` → 3 (the engine's own location).
pub(crate) fn line_in_message(message: &str) -> Option<usize> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("line ")?;
    let digits: String = lower[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `Step 3/7 : RUN make` → (3, 7, "RUN make").
pub(crate) fn parse_step(line: &str) -> Option<(usize, usize, String)> {
    let rest = line.trim().strip_prefix("Step ")?;
    let (counts, instruction) = rest.split_once(" : ")?;
    let (n, of) = counts.split_once('/')?;
    Some((
        n.trim().parse().ok()?,
        of.trim().parse().ok()?,
        instruction.trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# syntax=docker/dockerfile:1\n\
FROM base AS build\n\
\n\
# install\n\
RUN apt-get update && \\\n\
    # a comment inside\n\
    apt-get install -y make\n\
COPY . /src\n\
RUN make\n\
FROM base\n\
RUN make\n";

    #[test]
    fn instructions_with_their_lines() {
        let ins = instructions(FILE);
        let lines: Vec<(usize, &str)> = ins.iter().map(|i| (i.line, i.text.as_str())).collect();
        assert_eq!(
            lines,
            [
                (2, "FROM base AS build"),
                (5, "RUN apt-get update && apt-get install -y make"),
                (8, "COPY . /src"),
                (9, "RUN make"),
                (10, "FROM base"),
                (11, "RUN make"),
            ]
        );
    }

    #[test]
    fn steps_to_lines() {
        assert_eq!(step_line(FILE, 4, "RUN make"), Some(9));
        assert_eq!(step_line(FILE, 6, "RUN make"), Some(11));
        assert_eq!(
            step_line(FILE, 2, "RUN apt-get update &&     apt-get install -y make"),
            Some(5)
        );
        assert_eq!(step_line(FILE, 3, "COPY something else"), Some(8));
        assert_eq!(step_line(FILE, 40, "nothing"), None);
    }

    #[test]
    fn engine_messages() {
        assert_eq!(
            line_in_message("Dockerfile parse error line 3: unknown instruction: RUNX"),
            Some(3)
        );
        assert_eq!(line_in_message("no line here"), None);
        assert_eq!(
            parse_step("Step 3/7 : RUN make all"),
            Some((3, 7, "RUN make all".into()))
        );
        assert_eq!(parse_step(" ---> Running in 1234"), None);
    }
}
