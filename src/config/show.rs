//! The resolved stack as `devstack config` prints it: port references resolved to the ports
//! known before start, secret values masked unless asked. Pure.

use serde_json::Value;

use super::interpolate::resolve_port_refs;
use super::model::Stack;

pub const MASK: &str = "********";

/// Keys whose values devstack never prints: `*PASSWORD*`, `*SECRET*`, `*KEY*`, `*TOKEN*`.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "KEY", "TOKEN"]
        .iter()
        .any(|s| k.contains(s))
}

/// Whether an environment entry holds a secret: a secret-looking key, or a URL with a password.
/// The one rule for `config`'s masking and for what `render k8s` puts into Secrets.
pub fn is_secret_entry(key: &str, value: &str) -> bool {
    is_secret_key(key) || mask_url_password(value) != value
}

/// `scheme://user:password@host` → `scheme://user:********@host`; other text is unchanged.
pub fn mask_url_password(v: &str) -> String {
    let Some(scheme_end) = v.find("://") else {
        return v.to_string();
    };
    let rest = &v[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return v.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.split_once(':') {
        Some((user, pw)) if !pw.is_empty() => format!(
            "{}://{user}:{MASK}{}",
            &v[..scheme_end],
            &rest[userinfo.len()..]
        ),
        _ => v.to_string(),
    }
}

/// The stack as a JSON value, ready for YAML or JSON output.
pub fn display_value(stack: &Stack, show_secrets: bool) -> Value {
    let mut v = serde_json::to_value(stack).unwrap_or(Value::Null);
    let resolve = |s: &str| {
        resolve_port_refs(s, |r| {
            stack
                .services
                .get(&r.service)
                .and_then(|svc| svc.port(r.port))
                .and_then(|p| p.host_port)
        })
    };
    let redact = crate::redact::Redactor::new(stack.secret_values.iter().cloned());
    let resolve = |s: &str| {
        let r = resolve(s);
        if show_secrets {
            r
        } else {
            redact.apply(&r)
        }
    };
    walk(&mut v, None, &resolve, show_secrets);
    v
}

fn walk(v: &mut Value, key: Option<&str>, resolve: &dyn Fn(&str) -> String, show_secrets: bool) {
    match v {
        Value::String(s) => {
            let mut out = resolve(s);
            if !show_secrets {
                if key.is_some_and(is_secret_key) && !out.is_empty() {
                    out = MASK.to_string();
                } else {
                    out = mask_url_password(&out);
                }
            }
            *s = out;
        }
        Value::Array(items) => {
            for item in items {
                walk(item, None, resolve, show_secrets);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                walk(item, Some(k), resolve, show_secrets);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for k in [
            "POSTGRES_PASSWORD",
            "JWT_SECRET_KEY",
            "HUGGINGFACE_API_KEY",
            "github_token",
            "password",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["DATABASE_URL", "POSTGRES_USER", "PORT", "NODE_ENV"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn url_passwords() {
        let cases = [
            (
                "postgresql://user:pass@127.0.0.1:5432/db",
                "postgresql://user:********@127.0.0.1:5432/db",
            ),
            (
                "redis://:hunter2@localhost:6379/0",
                "redis://:********@localhost:6379/0",
            ),
            ("redis://localhost:6379/0", "redis://localhost:6379/0"),
            (
                "http://user@host/path?a=b:c@d",
                "http://user@host/path?a=b:c@d",
            ),
            ("plain text", "plain text"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_url_password(input), want);
        }
    }
}
