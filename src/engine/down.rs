//! `down`: this project's containers removed (dependents first), its network, and with `-v` its
//! named volumes. Touches nothing without the project's label.

use std::time::Duration;

use crate::config::Stack;
use crate::graph::Graph;
use crate::logs::LogHandle;
use crate::plan;
use crate::runtime::{ContainerInfo, ContainerRuntime, ContainerStatus, RuntimeError};

pub(crate) struct DownRequest<'a> {
    pub stack: &'a Stack,
    pub volumes: bool,
    pub remove_orphans: bool,
}

/// What `down` did, for its summary.
#[derive(Debug, Default)]
pub(crate) struct DownReport {
    pub removed: Vec<String>,
    pub orphans_left: Vec<String>,
    pub volumes_removed: Vec<String>,
}

/// Stops and removes this project's containers (dependents first), its network, and with
/// `volumes` its named volumes. Touches nothing without the project's label.
pub(crate) async fn down<R: ContainerRuntime>(
    rt: &R,
    req: DownRequest<'_>,
    logs: &LogHandle,
) -> Result<DownReport, RuntimeError> {
    let stack = req.stack;
    let containers = rt.list(&stack.name).await?;
    let mut report = DownReport::default();
    let (known, orphans): (Vec<_>, Vec<_>) = containers
        .into_iter()
        .partition(|c| stack.services.contains_key(c.service.as_str()));
    let mut order = Graph::from_stack(stack).stop_order();
    order.retain(|s| known.iter().any(|c| &c.service == s));
    let mut batches: Vec<Vec<&ContainerInfo>> = Vec::new();
    if req.remove_orphans {
        batches.push(orphans.iter().collect());
    } else {
        report.orphans_left = orphans.iter().map(|c| c.name.clone()).collect();
    }
    for s in &order {
        batches.push(known.iter().filter(|c| &c.service == s).collect());
    }
    for batch in batches {
        for c in batch {
            let grace = stack
                .services
                .get(c.service.as_str())
                .map_or(Duration::from_secs(5), |s| s.stop_grace_period);
            if c.status == ContainerStatus::Running {
                // A failed `pre_stop` hook is shown; the container is stopped all the same.
                if let Some(s) = stack.services.get(c.service.as_str()) {
                    let hooks = &s.options.pre_stop;
                    let ran = crate::unit::container::run_hooks(
                        rt, &c.id, hooks, "pre_stop", logs, &c.service,
                    )
                    .await;
                    if let Err(why) = ran {
                        logs.event(&c.service, why).await;
                    }
                }
                rt.stop(&c.id, grace).await?;
            }
            rt.remove(&c.id).await?;
            logs.event(&c.service, format!("removed container `{}`", c.name))
                .await;
            report.removed.push(c.name.clone());
        }
    }
    if report.orphans_left.is_empty() {
        rt.remove_network(&plan::network_name(&stack.name)).await?;
    }
    if req.volumes {
        for (full, _) in rt.list_volumes(&stack.name).await? {
            rt.remove_volume(&full).await?;
            logs.event("devstack", format!("removed volume `{full}`"))
                .await;
            report.volumes_removed.push(full);
        }
    }
    logs.flush().await;
    Ok(report)
}
