//! `render`: the same stack as other tools' files — Kubernetes manifests, a Compose file. Pure:
//! the loaded `Stack` in, documents or text out; the command writes them.

pub(crate) mod compose;
pub(crate) mod k8s;

use serde_json::Value;

/// One rendered Kubernetes object.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// The stack service it comes from; `None` for the Namespace and Ingresses.
    pub service: Option<String>,
    pub kind: &'static str,
    pub name: String,
    pub value: Value,
}

impl Object {
    /// The file `render k8s -o DIR` writes it to: one per kind and service. The namespace file
    /// sorts first, so `kubectl apply -f DIR` creates it before what lives in it.
    pub(crate) fn file_name(&self) -> String {
        match (&self.service, self.kind) {
            (_, "Namespace") => "00-namespace.yaml".to_string(),
            (Some(s), kind) => format!("{s}-{}.yaml", kind.to_ascii_lowercase()),
            (None, kind) => format!("{}-{}.yaml", self.name, kind.to_ascii_lowercase()),
        }
    }
}

/// Values as YAML documents separated by `---`.
pub(crate) fn yaml_documents<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&yaml(v));
    }
    out
}

/// A value as block-style YAML that YAML 1.1 readers (kubectl, PyYAML, docker-compose) read
/// back as the same JSON: every string that could be taken for anything but a string (`on`,
/// `yes`, `n`, `0755`, `1:30`, `~`, `250m`) is double-quoted.
pub(crate) fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn write_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&pad(indent));
        out.push_str(&string(k));
        out.push(':');
        write_value(v, indent, out);
    }
}

fn write_seq(a: &[Value], indent: usize, out: &mut String) {
    for item in a {
        out.push_str(&pad(indent));
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key goes on the dash's line.
                let mut inner = String::new();
                write_map(m, indent + 2, &mut inner);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_seq(a, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a scalar on the same line, a collection below it.
fn write_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(a, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// A string plain when nothing can misread it, else JSON-quoted (valid YAML double quotes).
fn string(s: &str) -> String {
    const WORDS: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "<<", "=",
    ];
    let first = s.chars().next();
    let plain = first.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+,=()$<>;&*!?'\"^ ".contains(c))
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.ends_with(':')
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// The objects grouped by [`Object::file_name`], in order of first appearance.
pub(crate) fn files(objects: &[Object]) -> Vec<(String, String)> {
    let mut groups: indexmap::IndexMap<String, Vec<&Value>> = indexmap::IndexMap::new();
    for o in objects {
        groups.entry(o.file_name()).or_default().push(&o.value);
    }
    groups
        .into_iter()
        .map(|(name, values)| (name, yaml_documents(values)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_that_yaml_could_misread_are_quoted() {
        let cases = [
            ("core-service", "core-service"),
            ("redis://redis:6379/0", "redis://redis:6379/0"),
            ("/api/v1", "/api/v1"),
            (
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://kafka:9092",
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://kafka:9092",
            ),
            ("on", "\"on\""),
            ("Yes", "\"Yes\""),
            ("n", "\"n\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("0755", "\"0755\""),
            ("1:30", "\"1:30\""),
            ("250m", "\"250m\""),
            ("1e3", "\"1e3\""),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            ("key:", "\"key:\""),
            ("a #b", "\"a #b\""),
            (
                "until nc -z db 5432; do sleep 2; done",
                "until nc -z db 5432; do sleep 2; done",
            ),
            ("trailing ", "\"trailing \""),
            ("-x", "\"-x\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("*alias", "\"*alias\""),
            ("héllo", "\"héllo\""),
        ];
        for (input, want) in cases {
            assert_eq!(string(input), want, "{input:?}");
        }
    }

    #[test]
    fn block_layout() {
        let v = json!({
            "kind": "Pod",
            "spec": {
                "containers": [
                    { "name": "a", "args": ["x", "on"], "ports": [{ "containerPort": 80 }] },
                ],
                "empty": {},
                "none": [],
            },
        });
        assert_eq!(
            yaml(&v),
            "kind: Pod\nspec:\n  containers:\n    - name: a\n      args:\n        - x\n        - \"on\"\n      ports:\n        - containerPort: 80\n  empty: {}\n  none: []\n"
        );
    }
}
