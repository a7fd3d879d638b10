//! `ready` (devstack's readiness probes), the protocol presets of well-known images, and
//! `${port:…}` references checked against what services publish.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn readiness(
    c: &mut Checker<'_>,
    r: &RawReady,
    path: &KeyPath,
    name: &str,
    is_container: bool,
    env: &IndexMap<String, String>,
    ports: &[PortMapping],
) -> Option<Readiness> {
    let kind = probe_kind(c, r, path, name)?;
    let site = ProbeSite {
        kpath: path.key(kind),
        name,
        is_container,
        ports,
    };
    let probe = match kind {
        "tcp" => tcp_probe(c, r, &site)?,
        "http" => http_probe(c, r, &site)?,
        "exec" => Probe::Exec(command(c, r.exec.as_ref()?, &site.kpath, name)?),
        "log" => log_probe(c, r, &site)?,
        "healthcheck" => healthcheck_probe(c, &site)?,
        _ => preset_probe(r, kind, env, &mut |port, what| {
            site.needs_published(c, port, what)
        }),
    };
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|s| duration(c, &s.0, &path.key("timeout")))
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    let interval = r
        .interval
        .as_ref()
        .and_then(|s| duration(c, &s.0, &path.key("interval")))
        .unwrap_or_else(|| probe.default_interval());
    if timeout.is_zero() {
        c.err(
            Diagnostic::new("readiness `timeout` must be more than zero")
                .at_value(path.key("timeout"))
                .help("e.g. `timeout: 60s`"),
        );
    }
    Some(Readiness {
        probe,
        timeout,
        interval,
    })
}

/// Where a probe is checked: its key, its service, and the ports the service lists.
struct ProbeSite<'a> {
    kpath: KeyPath,
    name: &'a str,
    is_container: bool,
    ports: &'a [PortMapping],
}

impl ProbeSite<'_> {
    /// Probes run from the host: the port a probe checks must be one the service lists.
    fn needs_published(&self, c: &mut Checker<'_>, port: u16, what: &str) {
        if self.ports.iter().any(|p| p.container_port == port) {
            return;
        }
        let name = self.name;
        let d = if self.is_container {
            Diagnostic::new(format!(
                "the `{what}` probe of `{name}` needs port {port} published, as probes run from the host"
            ))
            .at(self.kpath.clone())
            .help(format!("add `\"{port}:{port}\"` (or `\"{port}\"` for a free host port) to `ports`"))
        } else {
            Diagnostic::new(format!(
                "the `{what}` probe of `{name}` checks port {port}, which is not in its `ports`"
            ))
            .at(self.kpath.clone())
            .help(format!("for a native process, `ports` lists the ports it listens on: add `\"{port}\"` to `ports`, or probe a port it lists"))
        };
        c.err(d);
    }
}

fn tcp_probe(c: &mut Checker<'_>, r: &RawReady, site: &ProbeSite<'_>) -> Option<Probe> {
    let raw = r.tcp.as_ref().map(|s| s.0.clone()).unwrap_or_default();
    match parse_port_number(&raw) {
        Ok(p) => {
            site.needs_published(c, p, "tcp");
            Some(Probe::Tcp(p))
        }
        Err(m) => {
            c.err(
                Diagnostic::new(m)
                    .at_value(site.kpath.clone())
                    .help("`tcp:` takes the port the service listens on, e.g. `tcp: 5432`"),
            );
            None
        }
    }
}

fn http_probe(c: &mut Checker<'_>, r: &RawReady, site: &ProbeSite<'_>) -> Option<Probe> {
    let url = r.http.clone().unwrap_or_default();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        c.err(
            Diagnostic::new(format!(
                "`http` probe URL `{url}` must start with `http://`"
            ))
            .at_value(site.kpath.clone())
            .help("e.g. `http: \"http://127.0.0.1:${port:web:8080}/health\"`"),
        );
        return None;
    }
    Some(Probe::Http(url))
}

fn log_probe(c: &mut Checker<'_>, r: &RawReady, site: &ProbeSite<'_>) -> Option<Probe> {
    let re = r.log.clone().unwrap_or_default();
    if let Err(e) = regex::Regex::new(&re) {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("").trim().to_string();
        c.err(
            Diagnostic::new(format!("invalid `log` regex `{re}`: {last}"))
                .at_value(site.kpath.clone())
                .help("the pattern is a Rust regex matched against each output line"),
        );
        return None;
    }
    Some(Probe::Log(re))
}

fn healthcheck_probe(c: &mut Checker<'_>, site: &ProbeSite<'_>) -> Option<Probe> {
    if !site.is_container {
        c.err(
            Diagnostic::new(format!(
                "`healthcheck` readiness needs a container, but `{}` is a native process",
                site.name
            ))
            .at(site.kpath.clone())
            .help("use `http`, `tcp`, `log` or `exec` for a process"),
        );
        return None;
    }
    Some(Probe::Healthcheck)
}

/// The protocol preset for a well-known image (`postgres:15` → a real login), if its port is
/// published.
pub(super) fn image_preset(
    image: &str,
    env: &IndexMap<String, String>,
    ports: &[PortMapping],
) -> Option<Readiness> {
    let name = image.split('@').next().unwrap_or(image);
    let repo = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let repo = repo
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    let published = |port: u16| ports.iter().any(|p| p.container_port == port);
    let probe = match repo {
        "postgres" if published(5432) => {
            let user = env
                .get("POSTGRES_USER")
                .cloned()
                .unwrap_or_else(|| "postgres".into());
            Probe::Postgres {
                port: 5432,
                password: env.get("POSTGRES_PASSWORD").cloned().unwrap_or_default(),
                database: env
                    .get("POSTGRES_DB")
                    .cloned()
                    .unwrap_or_else(|| user.clone()),
                user,
            }
        }
        "redis" if published(6379) => Probe::Redis {
            port: 6379,
            password: None,
        },
        "qdrant/qdrant" if published(6333) => Probe::Qdrant { port: 6333 },
        "confluentinc/cp-kafka" | "bitnami/kafka" | "apache/kafka" if published(9092) => {
            Probe::Kafka { port: 9092 }
        }
        "confluentinc/cp-zookeeper" | "zookeeper" if published(2181) => {
            Probe::Zookeeper { port: 2181 }
        }
        _ => return None,
    };
    Some(Readiness {
        interval: probe.default_interval(),
        probe,
        timeout: DEFAULT_READY_TIMEOUT,
    })
}

/// Port references must name a service that publishes that port.
pub(super) fn check_refs(
    c: &mut Checker<'_>,
    value: &str,
    path: &KeyPath,
    services: &IndexMap<String, Service>,
    names: &[&str],
) {
    super::instances::check_share_refs(c, value, path, services, names);
    for r in port_refs(value) {
        let shown = format!("${{port:{}:{}}}", r.service, r.port);
        match services.get(&r.service) {
            None if names.contains(&r.service.as_str()) => {} // invalid service, reported already
            None => c.err(
                Diagnostic::new(format!(
                    "port reference `{shown}` names unknown service `{}`",
                    r.service
                ))
                .at_value(path.clone())
                .help(
                    did_you_mean(&r.service, names.iter().copied())
                        .unwrap_or_else(|| format!("the services are {}", list(names))),
                ),
            ),
            Some(s) if s.port(r.port).is_none() => {
                let published: Vec<String> = s
                    .ports
                    .iter()
                    .map(|p| p.container_port.to_string())
                    .collect();
                let help = if published.is_empty() {
                    format!(
                        "`{}` publishes no ports; add `\"{}\"` to its `ports`",
                        r.service, r.port
                    )
                } else {
                    format!(
                        "`{}` publishes {}",
                        r.service,
                        list(&published.iter().map(String::as_str).collect::<Vec<_>>())
                    )
                };
                c.err(
                    Diagnostic::new(format!(
                        "port reference `{shown}`: service `{}` does not publish port {}",
                        r.service, r.port
                    ))
                    .at_value(path.clone())
                    .help(help),
                );
            }
            Some(_) => {}
        }
    }
}

/// The one probe kind `ready` gives; none (reported) when it gives none or several.
fn probe_kind(
    c: &mut Checker<'_>,
    r: &RawReady,
    path: &KeyPath,
    name: &str,
) -> Option<&'static str> {
    let given: Vec<&'static str> = [
        ("tcp", r.tcp.is_some()),
        ("http", r.http.is_some()),
        ("exec", r.exec.is_some()),
        ("log", r.log.is_some()),
        ("healthcheck", r.healthcheck == Some(true)),
        ("postgres", r.postgres.is_some()),
        ("redis", r.redis.is_some()),
        ("kafka", r.kafka.is_some()),
        ("zookeeper", r.zookeeper.is_some()),
        ("qdrant", r.qdrant.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match given.len() {
        0 => {
            // A misspelt probe kind, reported already, leaves a `ready` without one.
            if !c.ctx.broken.iter().any(|b| b == name) {
                c.err(
                    Diagnostic::new(format!("`ready` of service `{name}` has no probe"))
                        .at(path.clone())
                        .help(format!("give exactly one of {}", list(PROBE_KINDS))),
                );
            }
            return None;
        }
        1 => {}
        _ => {
            c.err(
                Diagnostic::new(format!(
                    "`ready` of service `{name}` has more than one probe: {}",
                    list(&given)
                ))
                .at(path.key(given[1]))
                .help("keep exactly one probe kind"),
            );
            return None;
        }
    }
    Some(given[0])
}

/// The probes of well-known protocols, their port defaulting to the protocol's own.
fn preset_probe(
    r: &RawReady,
    kind: &str,
    env: &IndexMap<String, String>,
    needs_published: &mut dyn FnMut(u16, &str),
) -> Probe {
    match kind {
        "postgres" => {
            let p = r.postgres.clone().unwrap_or_default();
            let port = p.port.unwrap_or(5432);
            needs_published(port, "postgres");
            let user = p
                .user
                .or_else(|| env.get("POSTGRES_USER").cloned())
                .unwrap_or_else(|| "postgres".into());
            let password = p
                .password
                .or_else(|| env.get("POSTGRES_PASSWORD").cloned())
                .unwrap_or_default();
            let database = p
                .database
                .or_else(|| env.get("POSTGRES_DB").cloned())
                .unwrap_or_else(|| user.clone());
            Probe::Postgres {
                port,
                user,
                password,
                database,
            }
        }
        "redis" => {
            let p = r.redis.clone().unwrap_or_default();
            let port = p.port.unwrap_or(6379);
            needs_published(port, "redis");
            Probe::Redis {
                port,
                password: p.password,
            }
        }
        "kafka" => {
            let port = r.kafka.as_ref().and_then(|p| p.port).unwrap_or(9092);
            needs_published(port, "kafka");
            Probe::Kafka { port }
        }
        "zookeeper" => {
            let port = r.zookeeper.as_ref().and_then(|p| p.port).unwrap_or(2181);
            needs_published(port, "zookeeper");
            Probe::Zookeeper { port }
        }
        _ => {
            let port = r.qdrant.as_ref().and_then(|p| p.port).unwrap_or(6333);
            needs_published(port, "qdrant");
            Probe::Qdrant { port }
        }
    }
}
