//! What the dashboard page is told about the stack, as data: the static description of each
//! service (kind, image, ports as links, dependencies), the dependency graph laid out by start
//! levels, the rows of the live table, and log items. Pure; no secret value is ever in here
//! (no environment, no command line; log text comes already redacted from the mux).

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::config::{ServiceKind, Stack};
use crate::engine::ServiceStatus;
use crate::event::StackEvent;
use crate::graph::Graph;
use crate::logs::mux::Published;
use crate::logs::Stream;

/// Width and height of a node in the graph, and the gaps between columns and rows (px).
const NODE_W: u32 = 130;
const NODE_H: u32 = 30;
const COL_GAP: u32 = 40;
const ROW_GAP: u32 = 14;
const PAD: u32 = 10;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct StackInfo {
    pub project: String,
    pub services: Vec<ServiceInfo>,
    pub graph: Layout,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ServiceInfo {
    pub name: String,
    pub kind: &'static str,
    /// The image of a container; `None` for a process (its command line may hold secrets).
    pub image: Option<String>,
    pub ports: Vec<PortLink>,
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct PortLink {
    pub label: String,
    /// Where a browser on this machine reaches it; `None` when devstack picks the host port at
    /// start (not known to the view yet).
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Layout {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    /// `[dependency, dependent]`: edges point the way start-up goes.
    pub edges: Vec<[String; 2]>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Node {
    pub name: String,
    pub level: usize,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl StackInfo {
    /// The selected services of `stack`, in file order. With `free_ports` (`up --free-ports`)
    /// the written ports are not the ones in use, so no port gets a link.
    pub(crate) fn of(stack: &Stack, selected: &[String], free_ports: bool) -> Self {
        let services: Vec<ServiceInfo> = stack
            .services
            .iter()
            .filter(|(n, _)| selected.contains(n))
            .map(|(name, svc)| ServiceInfo {
                name: name.clone(),
                kind: svc.kind_name(),
                image: match &svc.kind {
                    ServiceKind::Container { image, .. } => Some(image.clone()),
                    ServiceKind::Process { .. } => None,
                },
                ports: svc
                    .ports
                    .iter()
                    .map(|p| {
                        let host = if free_ports {
                            None
                        } else if svc.is_container() {
                            p.host_port
                        } else {
                            Some(p.container_port)
                        };
                        let ip = if p.host_ip.is_unspecified() {
                            "127.0.0.1".to_string()
                        } else {
                            p.host_ip.to_string()
                        };
                        PortLink {
                            label: match host {
                                Some(h) if h != p.container_port => {
                                    format!("{h}→{}", p.container_port)
                                }
                                Some(h) => h.to_string(),
                                None => format!("auto→{}", p.container_port),
                            },
                            url: host.map(|h| format!("http://{ip}:{h}/")),
                        }
                    })
                    .collect(),
                depends_on: svc
                    .depends_on
                    .keys()
                    .filter(|d| selected.contains(d))
                    .cloned()
                    .collect(),
            })
            .collect();
        let graph = Graph::new(
            services
                .iter()
                .map(|s| (s.name.as_str(), s.depends_on.iter().map(String::as_str))),
        );
        Self {
            project: stack.name.clone(),
            graph: layout(&graph),
            services,
        }
    }
}

/// Columns by start level (left to right), services of a level stacked in file order.
pub(crate) fn layout(graph: &Graph) -> Layout {
    let levels = graph.levels();
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let rows = levels.iter().map(Vec::len).max().unwrap_or(0) as u32;
    for (level, names) in levels.iter().enumerate() {
        for (row, name) in names.iter().enumerate() {
            nodes.push(Node {
                name: name.clone(),
                level,
                x: PAD + level as u32 * (NODE_W + COL_GAP),
                y: PAD + row as u32 * (NODE_H + ROW_GAP),
                w: NODE_W,
                h: NODE_H,
            });
            for d in graph.dependencies(name) {
                edges.push([d.clone(), name.clone()]);
            }
        }
    }
    let cols = levels.len() as u32;
    Layout {
        width: 2 * PAD + cols * NODE_W + cols.saturating_sub(1) * COL_GAP,
        height: 2 * PAD + rows * NODE_H + rows.saturating_sub(1) * ROW_GAP,
        nodes,
        edges,
    }
}

/// CPU and memory of a service's processes or container, when sampled.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Usage {
    pub cpu_percent: f32,
    pub rss_bytes: u64,
}

/// One row of the live table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Row {
    #[serde(flatten)]
    pub status: ServiceStatus,
    pub cpu_percent: Option<f32>,
    pub rss_bytes: Option<u64>,
}

pub(crate) fn rows(snapshot: Vec<ServiceStatus>, usage: &HashMap<String, Usage>) -> Vec<Row> {
    snapshot
        .into_iter()
        .map(|status| {
            let u = usage.get(status.service.as_str());
            Row {
                cpu_percent: u.map(|u| u.cpu_percent),
                rss_bytes: u.map(|u| u.rss_bytes),
                status,
            }
        })
        .collect()
}

/// One line of the merged log as the page gets it. Short keys: at 1,000 lines a second the
/// names are most of the bytes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Item {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    /// Service, or `devstack`.
    pub s: String,
    /// `out`, `err`, `ev` (devstack's event) or `warn`.
    pub k: &'static str,
    pub x: String,
    /// The line's level, when it says one (the page filters by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l: Option<crate::logs::Level>,
}

/// The log items of one published item (a bare state change has none: the table shows it).
/// Takes the item apart: the dashboard's hub gets every line of a flood, so nothing is copied.
pub(crate) fn items(p: Published) -> Vec<Item> {
    let ms = |at: std::time::SystemTime| {
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    match p {
        Published::Line(l) => vec![Item {
            t: ms(l.at),
            s: l.source.to_string(),
            k: match l.stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
                Stream::Event => "ev",
            },
            x: l.text,
            l: l.level,
        }],
        Published::Event { at, event } => {
            let k = match event {
                StackEvent::Warning { .. }
                | StackEvent::NotReady { .. }
                | StackEvent::Backoff { .. } => "warn",
                _ => "ev",
            };
            let s = event.service().unwrap_or("devstack").to_string();
            let l = event.level();
            event
                .text_lines()
                .into_iter()
                .map(|x| Item {
                    t: ms(at),
                    s: s.clone(),
                    k,
                    x,
                    l,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_levels_in_columns_and_edges_from_dependency_to_dependent() {
        let g = Graph::new([
            ("db", vec![]),
            ("cache", vec![]),
            ("api", vec!["db", "cache"]),
            ("web", vec!["api"]),
        ]);
        let l = layout(&g);
        let at: Vec<(&str, usize, u32, u32)> = l
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.level, n.x, n.y))
            .collect();
        assert_eq!(
            at,
            [
                ("db", 0, 10, 10),
                ("cache", 0, 10, 54),
                ("api", 1, 180, 10),
                ("web", 2, 350, 10)
            ]
        );
        assert_eq!(
            l.edges,
            [
                ["db".to_string(), "api".to_string()],
                ["cache".to_string(), "api".to_string()],
                ["api".to_string(), "web".to_string()]
            ]
        );
        assert_eq!((l.width, l.height), (490, 94));
    }

    #[test]
    fn an_empty_graph_has_no_size_beyond_its_padding() {
        let l = layout(&Graph::default());
        assert!(l.nodes.is_empty());
        assert_eq!((l.width, l.height), (20, 20));
    }

    #[test]
    fn events_become_log_items_and_state_changes_none() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1234);
        let ev = |event| Published::Event { at, event };
        assert_eq!(
            items(ev(StackEvent::Ready {
                service: "db".into(),
                after_ms: 5
            })),
            [Item {
                t: 1234,
                s: "db".into(),
                k: "ev",
                x: "ready in 5 ms".into(),
                l: Some(crate::logs::Level::Info),
            }]
        );
        assert!(items(ev(StackEvent::State {
            service: "db".into(),
            state: crate::event::ServiceState::Ready
        }))
        .is_empty());
        let w = items(ev(StackEvent::warning(None, "careful")));
        assert_eq!((w[0].s.as_str(), w[0].k), ("devstack", "warn"));
        let line = items(Published::Line(crate::logs::LogLine {
            at,
            source: "api".into(),
            stream: Stream::Stderr,
            text: "boom".into(),
            level: None,
        }));
        assert_eq!((line[0].k, line[0].x.as_str()), ("err", "boom"));
    }
}
