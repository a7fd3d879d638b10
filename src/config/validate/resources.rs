//! Resources: byte sizes and CPU counts as Compose writes them, for limits and reservations.

use super::*;

/// A byte size as Compose writes it: `1024`, `64m`, `1.5g`, `512kb` (1024-based).
pub(super) fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mul: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let v = n * mul as f64;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

pub(super) fn bytes(c: &mut Checker<'_>, s: &str, path: &KeyPath) -> Option<u64> {
    let v = parse_bytes(s);
    if v.is_none() {
        c.err(
            Diagnostic::new(format!("invalid size `{s}`"))
                .at_value(path.clone())
                .help("write bytes with an optional unit: `64m`, `1g`, `512k`"),
        );
    }
    v
}

pub(super) fn cpus(c: &mut Checker<'_>, s: &str, path: &KeyPath) -> Option<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Some(v),
        _ => {
            c.err(
                Diagnostic::new(format!("invalid CPU count `{s}`"))
                    .at_value(path.clone())
                    .help("write a number of CPUs, e.g. `0.5` or `2`"),
            );
            None
        }
    }
}

/// Limits and reservations from `deploy.resources`, and the older service-level forms.
pub(super) fn resources(
    c: &mut Checker<'_>,
    rs: &RawService,
    path: &KeyPath,
) -> (Resources, Resources) {
    let mut limits = Resources::default();
    let mut reservations = Resources::default();
    if let Some(res) = rs.deploy.as_ref().and_then(|d| d.resources.as_ref()) {
        let rpath = path.key("deploy").key("resources");
        if let Some(l) = &res.limits {
            let lpath = rpath.key("limits");
            limits.cpus = l
                .cpus
                .as_ref()
                .and_then(|s| cpus(c, &s.0, &lpath.key("cpus")));
            limits.memory = l
                .memory
                .as_ref()
                .and_then(|s| bytes(c, &s.0, &lpath.key("memory")));
            limits.pids = l.pids;
        }
        if let Some(r) = &res.reservations {
            let lpath = rpath.key("reservations");
            reservations.cpus = r
                .cpus
                .as_ref()
                .and_then(|s| cpus(c, &s.0, &lpath.key("cpus")));
            reservations.memory = r
                .memory
                .as_ref()
                .and_then(|s| bytes(c, &s.0, &lpath.key("memory")));
        }
    }
    // The older service-level forms; `deploy` wins when both are given, as in Compose.
    if limits.cpus.is_none() {
        limits.cpus = rs
            .cpus
            .as_ref()
            .and_then(|s| cpus(c, &s.0, &path.key("cpus")));
    }
    if limits.memory.is_none() {
        limits.memory = rs
            .mem_limit
            .as_ref()
            .and_then(|s| bytes(c, &s.0, &path.key("mem_limit")));
    }
    if limits.pids.is_none() {
        limits.pids = rs.pids_limit;
    }
    (limits, reservations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_as_compose_writes_them() {
        for (s, want) in [
            ("1024", Some(1024)),
            ("64m", Some(64 << 20)),
            ("1gb", Some(1 << 30)),
            ("512K", Some(512 << 10)),
            ("1.5g", Some(3 << 29)),
            ("2 MB", Some(2 << 20)),
            ("lots", None),
            ("-1m", None),
        ] {
            assert_eq!(parse_bytes(s), want, "{s}");
        }
    }
}
