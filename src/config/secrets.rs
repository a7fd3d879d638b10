//! Which values are secrets by where they came from: the value of every secret-looking variable
//! (`*PASSWORD*`, `*SECRET*`, `*KEY*`, `*TOKEN*`) that the stack files interpolate, whatever key
//! it ends up in (a command, a probe URL). Pure.

use regex::Regex;

use super::show::is_secret_key;

/// The values of the secret-looking variables that `texts` (the stack files) refer to.
pub fn interpolated_secret_values(
    texts: &[&str],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let re = Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").expect("a valid pattern");
    let mut out: Vec<String> = Vec::new();
    for text in texts {
        for cap in re.captures_iter(text) {
            let name = &cap[1];
            if !is_secret_key(name) {
                continue;
            }
            if let Some(v) = lookup(name).filter(|v| !v.is_empty()) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secret_variables_in_braced_and_bare_references() {
        let lookup = |k: &str| match k {
            "API_TOKEN" => Some("tok-123".to_string()),
            "DB_PASSWORD" => Some("pw-456".to_string()),
            "HOST" => Some("localhost".to_string()),
            _ => None,
        };
        let text = "command: run --token ${API_TOKEN} --host $HOST\nurl: http://u:$DB_PASSWORD@h/ ${MISSING_SECRET:-x}";
        assert_eq!(
            interpolated_secret_values(&[text], &lookup),
            ["tok-123", "pw-456"]
        );
    }
}
