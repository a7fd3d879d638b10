//! The host ports an instance chose once (`ports.json` in its state folder): every later `up`
//! of the instance publishes on them again, so bookmarks, `.env.local` files and OAuth
//! callbacks keep working. The choice itself is pure (`plan::assign_ports`); this file only
//! keeps the record and compares two of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Protocol;
use crate::plan::HostPorts;

/// One recorded port of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_port: u16,
}

/// Service → its recorded ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordedPorts(pub BTreeMap<String, Vec<RecordedPort>>);

/// A recorded port that could not be had again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub service: String,
    pub container_port: u16,
    pub from: u16,
    pub to: u16,
}

impl RecordedPorts {
    pub fn get(&self, service: &str, container_port: u16, protocol: Protocol) -> Option<u16> {
        self.0
            .get(service)?
            .iter()
            .find(|p| p.container_port == container_port && p.protocol == protocol)
            .map(|p| p.host_port)
    }

    pub fn host_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.values().flatten().map(|p| p.host_port)
    }

    /// This record with the ports of `ports` put in (services not in it keep theirs: a
    /// service left out of one `up` keeps its port for the next).
    pub fn updated(&self, ports: &HostPorts) -> RecordedPorts {
        let mut out = self.clone();
        for (service, published) in &ports.0 {
            let entry: Vec<RecordedPort> = published
                .iter()
                .map(|p| RecordedPort {
                    container_port: p.container_port,
                    protocol: p.protocol,
                    host_port: p.host_port,
                })
                .collect();
            out.0.insert(service.clone(), entry);
        }
        out
    }

    /// The recorded ports `ports` does not keep, for the warning. Pure.
    pub fn moved(&self, ports: &HostPorts) -> Vec<Moved> {
        self.moved_in(
            ports
                .all()
                .map(|(service, p)| (service, p.container_port, p.protocol, p.host_port)),
        )
    }

    /// The ports of this record that `later` (the record after a run) has elsewhere. Pure.
    pub fn moved_to(&self, later: &RecordedPorts) -> Vec<Moved> {
        self.moved_in(later.0.iter().flat_map(|(service, ps)| {
            ps.iter()
                .map(move |p| (service.as_str(), p.container_port, p.protocol, p.host_port))
        }))
    }

    fn moved_in<'a>(&self, now: impl Iterator<Item = (&'a str, u16, Protocol, u16)>) -> Vec<Moved> {
        now.filter_map(|(service, container_port, protocol, to)| {
            let from = self.get(service, container_port, protocol)?;
            (from != to).then(|| Moved {
                service: service.to_string(),
                container_port,
                from,
                to,
            })
        })
        .collect()
    }
}

/// Where an instance's ports are recorded.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("ports.json")
}

/// The record, or an empty one (none yet, or unreadable: then the ports are chosen again).
pub fn load(path: &Path) -> RecordedPorts {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn save(path: &Path, ports: &RecordedPorts) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(ports).map_err(std::io::Error::other)?;
    super::write_whole(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Published;
    use indexmap::IndexMap;
    use std::net::Ipv4Addr;

    fn published(container_port: u16, host_port: u16) -> Published {
        Published {
            host_ip: Ipv4Addr::LOCALHOST.into(),
            host_port,
            container_port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn a_record_is_updated_and_says_what_moved() {
        let old = RecordedPorts::default().updated(&HostPorts(IndexMap::from([
            ("web".to_string(), vec![published(8000, 41000)]),
            ("db".to_string(), vec![published(5432, 41001)]),
        ])));
        let now = HostPorts(IndexMap::from([(
            "web".to_string(),
            vec![published(8000, 42000), published(9000, 42001)],
        )]));
        assert_eq!(
            old.moved(&now),
            vec![Moved {
                service: "web".into(),
                container_port: 8000,
                from: 41000,
                to: 42000
            }]
        );
        let new = old.updated(&now);
        assert_eq!(old.moved_to(&new), old.moved(&now));
        assert_eq!(new.get("web", 9000, Protocol::Tcp), Some(42001));
        assert_eq!(new.get("db", 5432, Protocol::Tcp), Some(41001), "kept");

        let tmp = tempfile::tempdir().unwrap();
        let file = path(tmp.path());
        assert_eq!(load(&file), RecordedPorts::default());
        save(&file, &new).unwrap();
        assert_eq!(load(&file), new);
    }
}
