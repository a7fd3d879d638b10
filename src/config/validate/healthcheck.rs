//! `healthcheck`: checked durations and test, and the readiness it stands for when `ready:` is absent.

use super::*;

pub(super) fn healthcheck(
    c: &mut Checker<'_>,
    h: &RawHealthcheck,
    path: &KeyPath,
) -> Option<Healthcheck> {
    let dur = |c: &mut Checker<'_>, v: &Option<Scalar>, key: &str| {
        v.as_ref().and_then(|s| duration(c, &s.0, &path.key(key)))
    };
    let test = if h.disable {
        Some(vec!["NONE".to_string()])
    } else {
        match &h.test {
            None => None,
            Some(RawCommand::Shell(s)) => Some(vec!["CMD-SHELL".to_string(), s.clone()]),
            Some(RawCommand::Argv(v)) => {
                match v.first().map(String::as_str) {
                    Some("CMD") | Some("CMD-SHELL") | Some("NONE") => {}
                    _ => {
                        c.err(
                            Diagnostic::new("a healthcheck `test` list starts with `CMD`, `CMD-SHELL` or `NONE`")
                                .at_value(path.key("test"))
                                .help("e.g. `test: [\"CMD\", \"pg_isready\"]` or `test: pg_isready -U user` (run by a shell)"),
                        );
                        return None;
                    }
                }
                Some(v.clone())
            }
        }
    };
    Some(Healthcheck {
        test,
        interval: dur(c, &h.interval, "interval"),
        timeout: dur(c, &h.timeout, "timeout"),
        retries: h.retries,
        start_period: dur(c, &h.start_period, "start_period"),
        start_interval: dur(c, &h.start_interval, "start_interval"),
    })
}

/// The readiness a Compose healthcheck gives: the container's health, waited on at least as
/// long as the engine takes to call it unhealthy.
pub(super) fn healthcheck_readiness(h: &Healthcheck) -> Readiness {
    // Docker's defaults: every 30s, 30s timeout, 3 retries.
    let interval = h.interval.unwrap_or(Duration::from_secs(30));
    let timeout = h.timeout.unwrap_or(Duration::from_secs(30));
    let retries = h.retries.unwrap_or(3);
    let engine = h.start_period.unwrap_or_default() + (interval + timeout) * retries;
    Readiness {
        interval: Probe::Healthcheck.default_interval(),
        probe: Probe::Healthcheck,
        timeout: DEFAULT_READY_TIMEOUT.max(engine),
    }
}
