//! `devstack ports [--json]`: the published ports of this instance (service, container port,
//! host port, URL): as the running devstack publishes them, else as recorded for the instance
//! (or written, for the main one).

use super::output::print_table;
use super::Env;
use crate::cli::PortsArgs;
use crate::config::{Protocol, Stack};
use crate::control::instances::PortRow;
use crate::error::Error;
use crate::project::instance::Identity;

/// The rows of a running devstack, or `None` when none runs the project.
fn live_rows(stack: &Stack) -> Result<Option<Vec<PortRow>>, Error> {
    let Some(rows) = super::control::live_ps(stack)? else {
        return Ok(None);
    };
    Ok(Some(PortRow::of_live(&rows)))
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
            PortRow::new(service, p.host_ip, host, p.container_port, p.protocol)
        })
        .collect())
}

pub(super) fn ports(
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
