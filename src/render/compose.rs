//! `render compose`: a plain Compose file for people without devstack. Containers as devstack
//! runs them; native processes as commented stubs that need an image. Pure: text out.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::config::interpolate::resolve_port_refs;
use crate::config::{
    Command, Condition, PortMapping, Protocol, RestartPolicy, Service, ServiceKind, Signal, Stack,
    Volume,
};

/// The Compose file for the `selected` services (names), in stack order.
pub(crate) fn render(stack: &Stack, selected: &[String]) -> String {
    let services: Vec<&Service> = stack
        .services
        .values()
        .filter(|s| selected.contains(&s.name))
        .collect();
    let mut out = format!(
        "# Rendered by `devstack render compose` from the stack of project `{}`.\n\
         # Containers are as devstack runs them (host ports and `${{port:…}}` references resolved);\n\
         # native processes are commented stubs: each needs an image before Compose can run it.\n\
         # Not carried over: readiness probes (`depends_on` waits for a start, not for readiness),\n\
         # hot reload, `seed:` commands and `test:` settings.\n\
         version: \"3.8\"\n",
        stack.name
    );
    let mut body = String::new();
    let mut volumes: Vec<&str> = Vec::new();
    for svc in &services {
        let mut v = service_value(stack, svc, &services);
        let one = |v: Value| -> String {
            let mut m = Map::new();
            m.insert(svc.name.clone(), v);
            super::yaml(&Value::Object(m))
        };
        match &svc.kind {
            ServiceKind::Container { volumes: vs, .. } => {
                for vol in vs {
                    if let Volume::Named { name, .. } = vol {
                        if !volumes.contains(&name.as_str()) {
                            volumes.push(name);
                        }
                    }
                }
                let dropped: Vec<&str> = svc
                    .depends_on
                    .keys()
                    .filter(|d| !is_rendered_container(&services, d))
                    .map(String::as_str)
                    .collect();
                if !dropped.is_empty() {
                    body.push_str(&format!(
                        "  # `{}` also depends on {}, not rendered as containers here\n",
                        svc.name,
                        dropped
                            .iter()
                            .map(|d| format!("`{d}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                for line in one(v).lines() {
                    body.push_str(&format!("  {line}\n"));
                }
            }
            ServiceKind::Process { .. } => {
                let image = svc
                    .k8s
                    .image
                    .clone()
                    .unwrap_or_else(|| format!("IMAGE-FOR-{}", svc.name));
                v["image"] = json!(image);
                if let Value::Object(m) = &mut v {
                    // The image goes first, as in the containers.
                    let image = m.shift_remove("image");
                    let mut ordered = Map::new();
                    if let Some(i) = image {
                        ordered.insert("image".into(), i);
                    }
                    ordered.extend(std::mem::take(m));
                    *m = ordered;
                }
                body.push_str(&format!(
                    "  # `{}` is a native process in the stack: it needs an image to run under Compose.\n  # Build one, set `image`, and uncomment (addresses are already the in-network ones):\n",
                    svc.name
                ));
                for line in one(v).lines() {
                    body.push_str(&format!("  # {line}\n"));
                }
            }
        }
    }
    let has_container = services.iter().any(|s| s.is_container());
    if has_container {
        out.push_str("services:\n");
    } else {
        out.push_str("services: {}\n");
    }
    out.push_str(&body);
    if !volumes.is_empty() {
        out.push_str("volumes:\n");
        for v in volumes {
            out.push_str(&format!("  {}: {{}}\n", super::yaml(&json!(v)).trim_end()));
        }
    }
    out
}

fn is_rendered_container(services: &[&Service], name: &str) -> bool {
    services.iter().any(|s| s.name == name && s.is_container())
}

/// A value as devstack would hand it to the service, escaped for Compose's own interpolation.
fn resolved(stack: &Stack, s: &str) -> String {
    resolve_port_refs(s, |r| {
        stack
            .services
            .get(&r.service)
            .and_then(|svc| svc.port(r.port))
            .and_then(|p| p.host_port)
    })
    .replace('$', "$$")
}

fn command_value(stack: &Stack, cmd: &Command) -> Value {
    match cmd {
        Command::Shell(s) => json!(resolved(stack, s)),
        Command::Argv(v) => json!(v.iter().map(|a| resolved(stack, a)).collect::<Vec<_>>()),
    }
}

fn port_value(p: &PortMapping) -> String {
    let ip = match p.host_ip {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let host = p.host_port.map(|h| h.to_string()).unwrap_or_default();
    let proto = if p.protocol == Protocol::Udp {
        "/udp"
    } else {
        ""
    };
    format!("{ip}:{host}:{}{proto}", p.container_port)
}

fn service_value(stack: &Stack, svc: &Service, services: &[&Service]) -> Value {
    let mut m = Map::new();
    match &svc.kind {
        ServiceKind::Container {
            image,
            command,
            working_dir,
            volumes,
        } => {
            m.insert("image".into(), json!(image));
            if let Some(c) = command {
                m.insert("command".into(), command_value(stack, c));
            }
            if let Some(w) = working_dir {
                m.insert("working_dir".into(), json!(w));
            }
            if !volumes.is_empty() {
                let vs: Vec<Value> = volumes
                    .iter()
                    .map(|v| {
                        let (src, target, ro) = match v {
                            Volume::Named {
                                name,
                                target,
                                read_only,
                            } => (name.clone(), target, *read_only),
                            Volume::Bind {
                                source,
                                target,
                                read_only,
                            } => (source.display().to_string(), target, *read_only),
                            Volume::Anonymous { target } => return json!(target),
                            // The short form has no tmpfs mount (`tmpfs:/x` is a named volume).
                            Volume::Tmpfs { target, size } => {
                                let mut long = Map::new();
                                long.insert("type".into(), json!("tmpfs"));
                                long.insert("target".into(), json!(target));
                                if let Some(size) = size {
                                    long.insert("tmpfs".into(), json!({ "size": size }));
                                }
                                return Value::Object(long);
                            }
                        };
                        json!(format!("{src}:{target}{}", if ro { ":ro" } else { "" }))
                    })
                    .collect();
                m.insert("volumes".into(), json!(vs));
            }
        }
        ServiceKind::Process { .. } => {
            if let Some(c) = &svc.k8s.command {
                m.insert("command".into(), command_value(stack, c));
            }
        }
    }
    if !svc.environment.is_empty() {
        // A process that becomes a container reaches the others by name on the project network,
        // as in the cluster: `127.0.0.1:${port:postgres:5432}` → `postgres:5432`.
        let host = |s: &str, _port: u16| s.to_string();
        let env: Map<String, Value> = svc
            .environment
            .iter()
            .map(|(k, v)| {
                let v = if svc.is_container() {
                    resolved(stack, v)
                } else {
                    super::k8s::cluster_value(v, &host).replace('$', "$$")
                };
                (k.clone(), json!(v))
            })
            .collect();
        m.insert("environment".into(), Value::Object(env));
    }
    if !svc.ports.is_empty() {
        m.insert(
            "ports".into(),
            json!(svc.ports.iter().map(port_value).collect::<Vec<_>>()),
        );
    }
    let deps: Map<String, Value> = svc
        .depends_on
        .iter()
        .filter(|(d, _)| !svc.is_container() || is_rendered_container(services, d))
        .map(|(d, c)| {
            let cond = match c {
                Condition::Ready | Condition::Started => "service_started",
                Condition::Completed => "service_completed_successfully",
            };
            (d.clone(), json!({ "condition": cond }))
        })
        .collect();
    if !deps.is_empty() {
        m.insert("depends_on".into(), Value::Object(deps));
    }
    let restart = match svc.restart {
        RestartPolicy::No => None,
        RestartPolicy::OnFailure => Some("on-failure"),
        RestartPolicy::Always => Some("always"),
    };
    if let Some(r) = restart {
        m.insert("restart".into(), json!(r));
    }
    if svc.stop_signal != Signal::TERM {
        m.insert("stop_signal".into(), json!(svc.stop_signal.name));
    }
    m.insert(
        "stop_grace_period".into(),
        json!(humantime::format_duration(svc.stop_grace_period).to_string()),
    );
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_written_in_compose_form() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let cases = [
            (lo, Some(5432), 5432, Protocol::Tcp, "127.0.0.1:5432:5432"),
            (lo, None, 9187, Protocol::Tcp, "127.0.0.1::9187"),
            (lo, Some(53), 53, Protocol::Udp, "127.0.0.1:53:53/udp"),
            (
                "::1".parse().unwrap(),
                Some(8080),
                80,
                Protocol::Tcp,
                "[::1]:8080:80",
            ),
        ];
        for (host_ip, host_port, container_port, protocol, want) in cases {
            let p = PortMapping {
                host_ip,
                host_port,
                container_port,
                protocol,
            };
            assert_eq!(port_value(&p), want);
        }
    }
}
