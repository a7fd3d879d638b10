//! `devstack ports [--json]`: the published ports of this instance (service, container port,
//! host port, URL): as the running devstack publishes them, else as recorded for the instance
//! (or written, for the main one).

use std::net::IpAddr;

use serde::Serialize;

use super::output::print_table;
use super::Env;
use crate::cli::PortsArgs;
use crate::config::{Protocol, Stack};
use crate::error::Error;
use crate::project::instance::Identity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct PortRow {
    pub service: String,
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: IpAddr,
    /// None: chosen when it starts (an automatic port of a stack not running).
    pub host_port: Option<u16>,
    pub url: Option<String>,
}

/// The URL a browser opens for a TCP port on the host.
pub(super) fn url(host_ip: IpAddr, host_port: u16, protocol: Protocol) -> Option<String> {
    if protocol != Protocol::Tcp {
        return None;
    }
    let host = match host_ip {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    Some(format!("http://{host}:{host_port}/"))
}

fn row(service: &str, host_ip: IpAddr, host_port: Option<u16>, cport: u16, p: Protocol) -> PortRow {
    PortRow {
        service: service.to_string(),
        container_port: cport,
        protocol: p,
        host_ip,
        host_port,
        url: host_port.and_then(|h| url(host_ip, h, p)),
    }
}

/// The rows of a running devstack, or `None` when none runs the project.
pub(super) fn live_rows(stack: &Stack) -> Result<Option<Vec<PortRow>>, Error> {
    let Some(rows) = super::control::live_ps(stack)? else {
        return Ok(None);
    };
    Ok(Some(
        rows.iter()
            .flat_map(|r| {
                r.status.ports.iter().map(|p| {
                    row(
                        &r.status.service,
                        p.host_ip,
                        Some(p.host_port),
                        p.container_port,
                        p.protocol,
                    )
                })
            })
            .collect(),
    ))
}

/// The rows as the next `up` would publish them: recorded (an instance), or written (the main
/// one; an automatic port is unknown until it starts).
fn planned_rows(stack: &Stack, identity: &Identity) -> Result<Vec<PortRow>, Error> {
    let mode = super::port_mode(stack, identity, false);
    // 0 stands for "chosen at start".
    let ports = crate::plan::assign_ports(stack, &[], &mode, &mut |_| Ok(0))?;
    Ok(ports
        .all()
        .map(|(service, p)| {
            let host = Some(p.host_port).filter(|h| *h != 0);
            row(service, p.host_ip, host, p.container_port, p.protocol)
        })
        .collect())
}

pub fn ports(
    stack: &Stack,
    identity: &Identity,
    args: &PortsArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let rows = match live_rows(stack)? {
        Some(rows) => rows,
        None => planned_rows(stack, identity)?,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let proto = match r.protocol {
                Protocol::Tcp => String::new(),
                Protocol::Udp => "/udp".to_string(),
            };
            [
                r.service.clone(),
                format!("{}{proto}", r.container_port),
                r.host_port
                    .map_or_else(|| "auto".to_string(), |h| format!("{}:{h}", r.host_ip)),
                r.url.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    print_table(&["SERVICE", "PORT", "HOST", "URL"], &table, env.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_table() {
        let cases: &[(&str, Protocol, Option<&str>)] = &[
            ("0.0.0.0", Protocol::Tcp, Some("http://127.0.0.1:8080/")),
            ("127.0.0.1", Protocol::Tcp, Some("http://127.0.0.1:8080/")),
            ("::1", Protocol::Tcp, Some("http://[::1]:8080/")),
            ("127.0.0.1", Protocol::Udp, None),
        ];
        for (ip, proto, want) in cases {
            assert_eq!(
                url(ip.parse().unwrap(), 8080, *proto).as_deref(),
                *want,
                "{ip}"
            );
        }
    }
}
