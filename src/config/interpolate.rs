//! `${VAR}` interpolation and the references devstack resolves itself in string values:
//! `${port:SERVICE:PORT}` (a host port), `${db:SERVICE}` and `${prefix:SERVICE}` (what an
//! instance's share of a service is: a database, a Redis index, a topic or collection prefix).
//! Pure: the environment comes in as a lookup function, warnings go out as values.

use std::fmt;

/// A `${port:SERVICE:PORT}` reference found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRef {
    pub service: String,
    pub port: u16,
}

/// Which part of a shared service a `${db:…}` or `${prefix:…}` reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShareRefKind {
    /// `${db:SERVICE}`: a PostgreSQL database name or a Redis database index.
    Db,
    /// `${prefix:SERVICE}`: a Kafka topic prefix or a Qdrant collection prefix.
    Prefix,
}

impl ShareRefKind {
    pub fn word(self) -> &'static str {
        match self {
            ShareRefKind::Db => "db",
            ShareRefKind::Prefix => "prefix",
        }
    }
}

/// A `${db:SERVICE}` or `${prefix:SERVICE}` reference found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRef {
    pub kind: ShareRefKind,
    pub service: String,
}

impl ShareRef {
    /// The body of `${db:…}` / `${prefix:…}` (the braces' content), if it is one; a variable
    /// named `db` with an operator (`${db:-x}`) is none.
    fn parse(body: &str) -> Option<Result<ShareRef, InterpolateError>> {
        let (kind, service) = [ShareRefKind::Db, ShareRefKind::Prefix]
            .into_iter()
            .find_map(|k| Some((k, body.strip_prefix(k.word())?.strip_prefix(':')?)))?;
        if service.starts_with(['-', '?', '+']) {
            return None;
        }
        let valid = !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        Some(if valid {
            Ok(ShareRef {
                kind,
                service: service.to_string(),
            })
        } else {
            Err(InterpolateError::BadShareRef(body.to_string()))
        })
    }
}

/// A reference devstack resolves itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Port(PortRef),
    Share(ShareRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${` with no closing `}`.
    Unterminated,
    /// `${}` or `${1abc}`: not a variable name.
    BadName(String),
    /// `${VAR:?message}` with `VAR` unset (or empty, for the `:?` form).
    Required { var: String, message: String },
    /// `${port:...}` that is not `${port:SERVICE:PORT}`.
    BadPortRef(String),
    /// `${db:...}` or `${prefix:...}` that does not name a service.
    BadShareRef(String),
}

impl fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unterminated => write!(
                f,
                "unterminated `${{` in value (a literal `$` is written `$$`)"
            ),
            Self::BadName(n) => write!(f, "`${{{n}}}` is not a valid variable reference"),
            Self::Required { var, message } if message.is_empty() => {
                write!(f, "required variable `{var}` is not set")
            }
            Self::Required { var, message } => {
                write!(f, "required variable `{var}` is not set: {message}")
            }
            Self::BadPortRef(r) => write!(
                f,
                "malformed port reference `${{{r}}}`: expected `${{port:SERVICE:PORT}}`"
            ),
            Self::BadShareRef(r) => write!(
                f,
                "malformed reference `${{{r}}}`: expected `${{db:SERVICE}}` or `${{prefix:SERVICE}}`"
            ),
        }
    }
}

/// What interpolating one string produced besides its value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Variables referenced as `${VAR}` / `$VAR` without a default that were unset.
    pub unset: Vec<String>,
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Finds the `}` that closes a `${` whose body starts at `start`, honouring nested `${...}`
/// and plain braces in a default (`${JSON:-{"a":1}}`).
fn closing_brace(s: &str, start: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => {
                i += 2;
                continue;
            }
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses the body of `${port:...}` (without `port:`).
pub fn parse_port_ref(body: &str) -> Result<PortRef, InterpolateError> {
    let bad = || InterpolateError::BadPortRef(format!("port:{body}"));
    let (service, port) = body.rsplit_once(':').ok_or_else(bad)?;
    if service.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(PortRef {
        service: service.to_string(),
        port,
    })
}

/// Substitutes `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`,
/// `$VAR` and `$$`. `${port:SERVICE:PORT}` is kept verbatim for [`resolve_port_refs`].
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    notes: &mut Notes,
) -> Result<String, InterpolateError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.chars().next() {
            Some('$') => {
                // `$$` stays `$$` until the final pass so that `$${port:..}` is not read as a reference.
                out.push_str("$$");
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = pos + 2;
                let close =
                    closing_brace(rest, body_start).ok_or(InterpolateError::Unterminated)?;
                let body = &rest[body_start..close];
                out.push_str(&expand_braced(body, lookup, notes)?);
                rest = &rest[close + 1..];
            }
            Some(c) if is_name_start(c) => {
                let end = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let name = &after[..end];
                match lookup(name) {
                    Some(v) => out.push_str(&escape(&v)),
                    None => notes.unset.push(name.to_string()),
                }
                rest = &after[end..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Values from the environment are inserted literally: a `$` in a password must not be re-read.
fn escape(v: &str) -> String {
    v.replace('$', "$$")
}

fn expand_braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    notes: &mut Notes,
) -> Result<String, InterpolateError> {
    if let Some(port_body) = body.strip_prefix("port:") {
        if !port_body.starts_with('-') && !port_body.starts_with('?') {
            parse_port_ref(port_body)?;
            return Ok(format!("${{{body}}}"));
        }
    }
    if let Some(share) = ShareRef::parse(body) {
        share?;
        return Ok(format!("${{{body}}}"));
    }
    let name_end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(InterpolateError::BadName(body.to_string()));
    }
    let op = &body[name_end..];
    let value = lookup(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    // With `:` an empty value counts as unset, as in the shell and Compose.
    let present = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    if op.is_empty() {
        if colon {
            return Err(InterpolateError::BadName(body.to_string()));
        }
        return Ok(match value {
            Some(v) => escape(&v),
            None => {
                notes.unset.push(name.to_string());
                String::new()
            }
        });
    }
    // The operator is one character, which need not be one byte (`${X€…}` is refused below).
    let sigil_len = op.chars().next().map_or(0, char::len_utf8);
    let (sigil, arg) = op.split_at(sigil_len);
    match sigil {
        "-" if present => Ok(escape(&value.unwrap_or_default())),
        "-" => interpolate(arg, lookup, notes),
        "?" if present => Ok(escape(&value.unwrap_or_default())),
        // The message is expanded too: `${X:?need ${FOO}}`.
        "?" => Err(InterpolateError::Required {
            var: name.to_string(),
            message: resolve_port_refs(&interpolate(arg, lookup, notes)?, |_| None),
        }),
        "+" if present => interpolate(arg, lookup, notes),
        "+" => Ok(String::new()),
        _ => Err(InterpolateError::BadName(body.to_string())),
    }
}

/// Every `${port:SERVICE:PORT}` reference in an interpolated string, in order.
pub fn port_refs(s: &str) -> Vec<PortRef> {
    let mut refs = Vec::new();
    scan_port_refs(s, |r| {
        refs.push(r.clone());
        None
    });
    refs
}

/// Every `${db:SERVICE}` and `${prefix:SERVICE}` reference in an interpolated string, in order.
pub fn share_refs(s: &str) -> Vec<ShareRef> {
    let mut refs = Vec::new();
    substitute_refs(s, |r| {
        if let Reference::Share(r) = r {
            refs.push(r.clone());
        }
        None
    });
    refs
}

/// Replaces each reference `replace` answers for (`${port:…}`, `${db:…}`, `${prefix:…}`) and
/// keeps everything else as it is, `$$` included: the result is still an interpolated string,
/// for [`resolve_port_refs`] later.
pub fn substitute_refs(s: &str, mut replace: impl FnMut(&Reference) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = stripped;
            continue;
        }
        let body = after
            .strip_prefix('{')
            .and_then(|b| Some(&b[..b.find('}')?]));
        let reference = body.and_then(|b| match b.strip_prefix("port:") {
            Some(p) => parse_port_ref(p).ok().map(Reference::Port),
            None => ShareRef::parse(b)?.ok().map(Reference::Share),
        });
        match (body, reference.as_ref().and_then(&mut replace)) {
            (Some(b), Some(v)) => {
                out.push_str(&v);
                rest = &after[b.len() + 2..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Replaces each `${port:SERVICE:PORT}` with `resolve`'s answer (kept verbatim when it has none)
/// and turns `$$` into `$`. This is the last step before a value is used.
pub fn resolve_port_refs(s: &str, resolve: impl Fn(&PortRef) -> Option<u16>) -> String {
    scan_port_refs(s, resolve)
}

fn scan_port_refs(s: &str, mut resolve: impl FnMut(&PortRef) -> Option<u16>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        if let Some(body) = after.strip_prefix("{port:") {
            if let Some(end) = body.find('}') {
                if let Ok(r) = parse_port_ref(&body[..end]) {
                    match resolve(&r) {
                        Some(p) => out.push_str(&p.to_string()),
                        None => out.push_str(&rest[pos..pos + 1 + "{port:".len() + end + 1]),
                    }
                    rest = &body[end + 1..];
                    continue;
                }
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER" => Some("ada".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("p$ss".into()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<String, InterpolateError> {
        interpolate(s, &env, &mut Notes::default()).map(|v| resolve_port_refs(&v, |_| None))
    }

    #[test]
    fn table() {
        let cases: &[(&str, Result<&str, InterpolateError>)] = &[
            ("plain", Ok("plain")),
            ("${USER}", Ok("ada")),
            ("$USER@host", Ok("ada@host")),
            ("a${USER}b", Ok("aadab")),
            ("${MISSING}", Ok("")),
            ("${MISSING:-dflt}", Ok("dflt")),
            ("${EMPTY:-dflt}", Ok("dflt")),
            ("${EMPTY-dflt}", Ok("")),
            ("${MISSING-dflt}", Ok("dflt")),
            ("${MISSING:-${USER}x}", Ok("adax")),
            ("${USER:+set}", Ok("set")),
            ("${MISSING:+set}", Ok("")),
            ("$$USER", Ok("$USER")),
            ("cost: 5$", Ok("cost: 5$")),
            ("${DOLLAR}", Ok("p$ss")),
            ("${port:postgres:5432}", Ok("${port:postgres:5432}")),
            ("x${port:a-b:1}y", Ok("x${port:a-b:1}y")),
            ("${port:-fallback}", Ok("fallback")),
            ("${db:postgres}", Ok("${db:postgres}")),
            ("x${prefix:kafka}y", Ok("x${prefix:kafka}y")),
            ("${db:-plain}", Ok("plain")),
            ("${db:}", Err(InterpolateError::BadShareRef("db:".into()))),
            (
                "${prefix:a b}",
                Err(InterpolateError::BadShareRef("prefix:a b".into())),
            ),
            // Braces inside a default are kept, and a set variable leaves no stray brace.
            ("${JSON:-{\"a\":1}}", Ok("{\"a\":1}")),
            ("${USER:-{\"a\":1}}", Ok("ada")),
            ("${MISSING:-{{x}}}y", Ok("{{x}}y")),
            ("${MISSING:-$${x}}", Ok("${x}")),
            // An unbraced name runs to the first character that cannot be in a name.
            ("$USER_X", Ok("")),
            ("$USER-x", Ok("ada-x")),
            (
                "${MISSING:?need ${USER}}",
                Err(InterpolateError::Required {
                    var: "MISSING".into(),
                    message: "need ada".into(),
                }),
            ),
            ("${USER", Err(InterpolateError::Unterminated)),
            ("${}", Err(InterpolateError::BadName(String::new()))),
            ("${1X}", Err(InterpolateError::BadName("1X".into()))),
            ("${USER:}", Err(InterpolateError::BadName("USER:".into()))),
            (
                "${MISSING:?set it in .env}",
                Err(InterpolateError::Required {
                    var: "MISSING".into(),
                    message: "set it in .env".into(),
                }),
            ),
            (
                "${EMPTY:?}",
                Err(InterpolateError::Required {
                    var: "EMPTY".into(),
                    message: String::new(),
                }),
            ),
            ("${EMPTY?}", Ok("")),
            (
                "${port:postgres}",
                Err(InterpolateError::BadPortRef("port:postgres".into())),
            ),
            (
                "${port:postgres:99999}",
                Err(InterpolateError::BadPortRef("port:postgres:99999".into())),
            ),
        ];
        for (input, want) in cases {
            let got = run(input);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn a_multibyte_character_after_a_name_is_refused_not_a_panic() {
        let mut notes = Notes::default();
        let r = interpolate("${po€rt:db:5432}", &|_| None, &mut notes);
        assert!(matches!(r, Err(InterpolateError::BadName(b)) if b == "po€rt:db:5432"));
    }

    #[test]
    fn unset_variables_are_noted() {
        let mut notes = Notes::default();
        interpolate("${A} $B ${C:-x}", &env, &mut notes).unwrap();
        assert_eq!(notes.unset, vec!["A".to_string(), "B".to_string()]);
    }

    #[test]
    fn port_refs_are_found_and_resolved() {
        let s = "postgresql://u@127.0.0.1:${port:postgres:5432}/db?r=${port:redis:6379}&x=$${port:no:1}";
        assert_eq!(
            port_refs(s),
            vec![
                PortRef {
                    service: "postgres".into(),
                    port: 5432
                },
                PortRef {
                    service: "redis".into(),
                    port: 6379
                },
            ]
        );
        let resolved = resolve_port_refs(s, |r| (r.service == "postgres").then_some(15432));
        assert_eq!(
            resolved,
            "postgresql://u@127.0.0.1:15432/db?r=${port:redis:6379}&x=${port:no:1}"
        );
    }

    #[test]
    fn share_refs_are_found_and_substituted_leaving_the_rest() {
        let s = "postgresql://u@h:${port:pg:5432}/${db:pg}?r=${db:redis}&t=${prefix:kafka}x&l=$${db:pg}";
        assert_eq!(
            share_refs(s),
            [
                ShareRef {
                    kind: ShareRefKind::Db,
                    service: "pg".into()
                },
                ShareRef {
                    kind: ShareRefKind::Db,
                    service: "redis".into()
                },
                ShareRef {
                    kind: ShareRefKind::Prefix,
                    service: "kafka".into()
                },
            ]
        );
        let out = substitute_refs(s, |r| match r {
            Reference::Share(r) if r.service == "pg" => Some("app_b".into()),
            Reference::Share(r) if r.service == "redis" => Some("3".into()),
            Reference::Port(p) if p.service == "pg" => Some("41000".into()),
            _ => None,
        });
        assert_eq!(
            out, "postgresql://u@h:41000/app_b?r=3&t=${prefix:kafka}x&l=$${db:pg}",
            "unanswered references and `$$` stay for the last pass"
        );
        assert_eq!(
            resolve_port_refs(&out, |_| None),
            "postgresql://u@h:41000/app_b?r=3&t=${prefix:kafka}x&l=${db:pg}"
        );
    }
}
