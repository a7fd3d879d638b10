//! The validated stack: what the rest of devstack works from. Every value here has been checked;
//! strings may still hold `${port:SERVICE:PORT}` references, resolved once host ports are known.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};

/// A validated stack.
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// The project name: `-p`, else `name:`, else the folder of the first stack file.
    pub name: String,
    /// The folder of the first stack file; relative paths resolve against it.
    pub root: PathBuf,
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    pub services: IndexMap<String, Service>,
    pub test: TestSettings,
    /// Values of secret-looking variables the files interpolate: redacted wherever they show.
    #[serde(skip)]
    pub secrets: Vec<String>,
    #[serde(skip_serializing_if = "super::k8s::StackK8s::is_empty")]
    pub k8s: super::k8s::StackK8s,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TestSettings {
    pub environment: IndexMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    #[serde(skip)]
    pub name: String,
    #[serde(flatten)]
    pub kind: ServiceKind,
    pub environment: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub depends_on: IndexMap<String, Condition>,
    /// Dependencies whose restart restarts this service once they are ready again (Compose's
    /// `depends_on: { db: { condition: …, restart: true } }`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_with: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Readiness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<Watch>,
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    #[serde(serialize_with = "ser_duration")]
    pub stop_grace_period: Duration,
    /// Settings for `render k8s` only.
    #[serde(skip_serializing_if = "super::k8s::ServiceK8s::is_empty")]
    pub k8s: super::k8s::ServiceK8s,
}

impl Service {
    pub fn is_container(&self) -> bool {
        matches!(self.kind, ServiceKind::Container { .. })
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ServiceKind::Container { .. } => "container",
            ServiceKind::Process { .. } => "process",
        }
    }

    /// The published mapping of a container port (for a process, the port it listens on).
    pub fn port(&self, container_port: u16) -> Option<&PortMapping> {
        self.ports
            .iter()
            .find(|p| p.container_port == container_port)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ServiceKind {
    Container {
        image: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<Command>,
        #[serde(skip_serializing_if = "Option::is_none")]
        working_dir: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        volumes: Vec<Volume>,
    },
    Process {
        command: Command,
        working_dir: PathBuf,
    },
}

/// A command line: shell text (`sh -c` for processes, split into words for containers) or argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A published port. For a process, host and container port are the port it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    /// `None`: devstack picks a free host port at start.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self
            .host_port
            .map_or_else(|| "auto".to_string(), |p| p.to_string());
        write!(f, "{}:{}:{}", self.host_ip, host, self.container_port)?;
        if self.protocol == Protocol::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}

impl Serialize for PortMapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Volume {
    /// A named volume, created as `<project>_<name>`.
    Named {
        name: String,
        target: String,
        read_only: bool,
    },
    /// A host folder, absolute after loading.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Ready,
    Started,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

/// A stop signal, kept by its conventional name (`SIGTERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub name: &'static str,
    pub number: i32,
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

impl Signal {
    pub const TERM: Signal = Signal {
        name: "SIGTERM",
        number: 15,
    };

    const ALL: &'static [Signal] = &[
        Signal {
            name: "SIGHUP",
            number: 1,
        },
        Signal {
            name: "SIGINT",
            number: 2,
        },
        Signal {
            name: "SIGQUIT",
            number: 3,
        },
        Signal {
            name: "SIGKILL",
            number: 9,
        },
        Signal {
            name: "SIGUSR1",
            number: 10,
        },
        Signal {
            name: "SIGUSR2",
            number: 12,
        },
        Signal::TERM,
        Signal {
            name: "SIGWINCH",
            number: 28,
        },
    ];

    /// Accepts `SIGTERM`, `TERM` or `15` in any case.
    pub fn parse(s: &str) -> Option<Signal> {
        let upper = s.trim().to_ascii_uppercase();
        if let Ok(n) = upper.parse::<i32>() {
            return Self::ALL.iter().copied().find(|sig| sig.number == n);
        }
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        Self::ALL.iter().copied().find(|sig| &sig.name[3..] == name)
    }

    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|s| s.name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub probe: Probe,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// A TCP connect to the service's (container) port, through its host port.
    Tcp(u16),
    Http(String),
    Exec(Command),
    /// A regex matched against each output line.
    Log(String),
    /// The container's own healthcheck.
    Healthcheck,
    Postgres {
        port: u16,
        user: String,
        password: String,
        database: String,
    },
    Redis {
        port: u16,
        password: Option<String>,
    },
    Kafka {
        port: u16,
    },
    Zookeeper {
        port: u16,
    },
    Qdrant {
        port: u16,
    },
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp(_) => "tcp",
            Probe::Http(_) => "http",
            Probe::Exec(_) => "exec",
            Probe::Log(_) => "log",
            Probe::Healthcheck => "healthcheck",
            Probe::Postgres { .. } => "postgres",
            Probe::Redis { .. } => "redis",
            Probe::Kafka { .. } => "kafka",
            Probe::Zookeeper { .. } => "zookeeper",
            Probe::Qdrant { .. } => "qdrant",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Watch {
    pub paths: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub debounce: Duration,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}
