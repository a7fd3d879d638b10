//! The validated stack: what the rest of devstack works from. Every value here has been checked;
//! strings may still hold `${port:SERVICE:PORT}` references, resolved once host ports are known.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};

/// The name of a service's container when `container_name` does not give one.
pub fn default_container_name(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

/// A validated stack.
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// The project name: `-p`, else `name:`, else the folder of the first stack file.
    pub name: String,
    /// The folder of the first stack file; relative paths resolve against it.
    pub root: PathBuf,
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    /// Every file the loader read to build the stack, absolute, each once, in the order first
    /// read: the stack files, `extends` and `include` files, the project `.env` or
    /// `--env-file`s, the top-level `env_file`s and each service's `env_file`s (those that do
    /// not exist yet too, so that creating one can be noticed).
    #[serde(skip)]
    pub inputs: Vec<PathBuf>,
    pub services: IndexMap<String, Service>,
    pub test: TestSettings,
    #[serde(skip_serializing_if = "LogSettings::is_default")]
    pub logs: LogSettings,
    /// Values of secret-looking variables the files interpolate: redacted wherever they show.
    #[serde(skip)]
    pub secret_values: Vec<String>,
    #[serde(skip_serializing_if = "super::k8s::StackK8s::is_empty")]
    pub k8s: super::k8s::StackK8s,
    /// Named volumes declared at the top level (Compose's `volumes:`).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub volumes: IndexMap<String, VolumeDef>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, NetworkDef>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub secrets: IndexMap<String, SecretDef>,
    /// The active profiles (`--profile`, `COMPOSE_PROFILES`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// `instances:`: what an instance beside the main one takes from the main one.
    #[serde(skip_serializing_if = "InstanceSettings::is_empty")]
    pub instances: InstanceSettings,
}

/// `instances:`: the services a thin instance (any instance but the main one) shares with the
/// main instance's running ones instead of running its own (`share`), and those of them whose
/// share starts empty instead of as a copy of the main one's data (`fresh`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceSettings {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub share: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fresh: Vec<String>,
}

impl InstanceSettings {
    pub fn is_empty(&self) -> bool {
        self.share.is_empty() && self.fresh.is_empty()
    }
}

/// How a service is shared with a thin instance, by what it is (its readiness preset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareKind {
    /// A database of the instance's own, cloned from the main one's (`${db:…}`).
    Postgres,
    /// A database index of its own (`${db:…}`).
    Redis,
    /// A topic prefix (`${prefix:…}`).
    Kafka,
    /// A collection prefix (`${prefix:…}`).
    Qdrant,
}

impl ShareKind {
    pub fn name(self) -> &'static str {
        match self {
            ShareKind::Postgres => "PostgreSQL",
            ShareKind::Redis => "Redis",
            ShareKind::Kafka => "Kafka",
            ShareKind::Qdrant => "Qdrant",
        }
    }

    /// The reference that names this kind's share: a database (`${db:…}`) or a prefix.
    pub fn reference(self) -> crate::config::interpolate::ShareRefKind {
        use crate::config::interpolate::ShareRefKind;
        match self {
            ShareKind::Postgres | ShareKind::Redis => ShareRefKind::Db,
            ShareKind::Kafka | ShareKind::Qdrant => ShareRefKind::Prefix,
        }
    }
}

impl Stack {
    /// A stack known only by its project name (a running stack reached while its files do
    /// not load).
    pub fn named(name: String, root: PathBuf) -> Stack {
        Stack {
            name,
            root,
            files: Vec::new(),
            inputs: Vec::new(),
            services: IndexMap::new(),
            test: TestSettings::default(),
            logs: LogSettings::default(),
            secret_values: Vec::new(),
            k8s: Default::default(),
            volumes: IndexMap::new(),
            networks: IndexMap::new(),
            secrets: IndexMap::new(),
            profiles: Vec::new(),
            instances: InstanceSettings::default(),
        }
    }

    /// The stack without its tasks (`task:`) and without dependencies on them.
    pub fn without_tasks(&self) -> Stack {
        let mut s = self.clone();
        let tasks: Vec<String> = s
            .services
            .iter()
            .filter(|(_, svc)| svc.task.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        s.services.retain(|n, _| !tasks.contains(n));
        for svc in s.services.values_mut() {
            svc.depends_on.retain(|d, _| !tasks.contains(d));
            svc.restart_with.retain(|d| !tasks.contains(d));
        }
        s
    }
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VolumeDef {
    /// The engine's name: `name:` as written, else `<project>_<key>`; an external volume's own name.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub driver_opts: IndexMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkDef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub driver_opts: IndexMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
}

/// A top-level secret: where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretDef {
    /// A host file, absolute after loading.
    File(PathBuf),
    /// The value of a variable of devstack's environment.
    Environment(String),
}

/// Everything a container service can set beyond image, command and volumes. Empty for a
/// native process (validation refuses these keys there).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContainerOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// `HOST:IP` entries for the container's `/etc/hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub sysctls: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// The networks the container joins, by key of the top-level `networks`; empty means the
    /// project's default network.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, ServiceNetwork>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretMount>,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub limits: Resources,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub reservations: Resources,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Ports open to other containers only (`"3000"`, `"8000-8010/udp"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// The process namespace: `host` or `container:NAME` (a service's resolved to its container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Containers whose volumes are mounted too, `NAME[:ro|:rw]` (services resolved to their
    /// containers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// The engine's OCI runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// More names of this container on the project network: the aliases other services'
    /// `links` give it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_aliases: Vec<String>,
    /// Commands run in the container once it has started, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<Hook>,
    /// Commands run in the container before it is stopped, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<Hook>,
    /// Init containers run to completion, in order, before the container first starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<InitHook>,
    /// Compose's `develop.watch`: what a file change under a path does to the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub develop: Vec<WatchRule>,
}

/// A lifecycle hook: a command run in the service's container (`docker exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    pub command: Command,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
}

/// A `pre_start` step: a command run in a container of its own that shares the service's
/// mounts and network, before the service's container starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitHook {
    /// The service's image when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's own command when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// The service's `user` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// The service's `working_dir` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Set over the service's environment.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
}

/// One `develop.watch` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchRule {
    /// Absolute after loading.
    pub path: PathBuf,
    pub action: WatchAction,
    /// Where `sync` copies to inside the container (absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Gitignore-style patterns relative to `path`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WatchAction {
    /// Rebuild the image, recreate the container.
    #[serde(rename = "rebuild")]
    Rebuild,
    /// Copy changed files into the running container.
    #[serde(rename = "sync")]
    Sync,
    /// Restart the container.
    #[serde(rename = "restart")]
    Restart,
    /// Copy, then restart.
    #[serde(rename = "sync+restart")]
    SyncRestart,
}

/// `build:`, kept for the build step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Build {
    /// A folder, absolute after loading, or a URL as written.
    pub context: String,
    /// The service names its `image` (the build's tag, and something a pull may find); else
    /// the image is `<project>-<service>`, only ever built.
    #[serde(skip)]
    pub image_given: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_cache: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub additional_contexts: IndexMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceNetwork {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

/// A secret mounted into the container, at `/run/secrets/NAME` unless `target` says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMount {
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    /// The host file that holds the value, for a file secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// CPU, memory and process limits (Compose's `deploy.resources.limits`, `mem_limit`, `cpus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

// CPU counts are finite (validation refuses the rest), so equality is total.
impl Eq for Resources {}
impl Eq for ContainerOptions {}

impl Resources {
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// The container's own healthcheck (Compose's `healthcheck:`), given to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]`, or `["NONE"]` (disabled); the image's test when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub interval: Option<Duration>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub start_period: Option<Duration>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub start_interval: Option<Duration>,
}

impl Healthcheck {
    pub fn is_disabled(&self) -> bool {
        self.test
            .as_deref()
            .is_some_and(|t| t.first().map(String::as_str) == Some("NONE"))
    }
}

/// `logs:`: what the per-service log files keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSettings {
    /// The lines of this many runs (`up`s) are kept; older ones are removed as a run starts.
    pub keep_runs: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            keep_runs: crate::logs::files::KEEP_RUNS,
        }
    }
}

impl LogSettings {
    pub fn is_default(&self) -> bool {
        *self == LogSettings::default()
    }
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
    /// The profiles that enable this service; empty means always enabled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// A one-shot preparation step (`task:`): runs to completion, skipped when up to date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Data put in once the service is first ready (`seed:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    #[serde(flatten)]
    pub options: ContainerOptions,
}

/// `seed:`: a command that puts the service's first data in, run once its probe passes and
/// before it counts as ready — the first time, again after `reset` or on new volumes, and when
/// the command or its sources change. In a container it runs as `docker exec` does; for a
/// native process, through `sh -c` in its working folder with its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seed {
    pub command: Command,
    /// Files and folders (absolute) whose content is hashed with the command: a change runs the
    /// seed again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<PathBuf>,
    /// A container's user for the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The folder inside the container the command runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Set over the service's own environment.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
    /// A seed that runs longer fails the service's start.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// `task:`: when a one-shot step may be skipped. With neither `sources` nor `status` it always
/// runs; with both, both must say it is up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Files and folders (absolute after loading) whose content, with the command, is hashed;
    /// the hash of the last successful run is kept, and an equal hash means up to date.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<PathBuf>,
    /// Files the task creates (absolute): all must exist to be up to date. A native service's
    /// program listed here is known to come from this task.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generates: Vec<PathBuf>,
    /// Shell commands run in the working folder: all exiting 0 means up to date.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<String>,
}

impl Task {
    /// Whether anything can say the task is up to date.
    pub fn skippable(&self) -> bool {
        !self.sources.is_empty() || !self.status.is_empty()
    }
}

impl Service {
    pub fn is_container(&self) -> bool {
        matches!(self.kind, ServiceKind::Container { .. })
    }

    /// A native process that runs until it is stopped (not a task): it needs a devstack to
    /// supervise it for as long as it runs.
    pub fn is_supervised_process(&self) -> bool {
        !self.is_container() && self.task.is_none()
    }

    pub fn kind_name(&self) -> &'static str {
        self.kind_of().as_str()
    }

    /// What kind of thing it is, as `ps`, the views and the handle's snapshot say it.
    pub fn kind_of(&self) -> Kind {
        if self.task.is_some() {
            return Kind::Task;
        }
        match self.kind {
            ServiceKind::Container { .. } => Kind::Container,
            ServiceKind::Process { .. } => Kind::Process,
        }
    }

    /// What sharing this service with a thin instance means, known by its readiness preset
    /// (written, or given by a well-known image); none for a process or another kind.
    pub fn share_kind(&self) -> Option<ShareKind> {
        if !self.is_container() {
            return None;
        }
        match self.ready.as_ref()?.probe {
            Probe::Postgres { .. } => Some(ShareKind::Postgres),
            Probe::Redis { .. } => Some(ShareKind::Redis),
            Probe::Kafka { .. } => Some(ShareKind::Kafka),
            Probe::Qdrant { .. } => Some(ShareKind::Qdrant),
            _ => None,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
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
    /// A fresh volume without a name (`- /app/node_modules`), removed with the container.
    Anonymous { target: String },
    /// A memory file system.
    Tmpfs {
        target: String,
        /// Bytes.
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Ready,
    Started,
    Completed,
}

/// What kind of thing a service is, for people and clients: `container`, `process`, or `task`
/// (a one-shot, either kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Container,
    Process,
    Task,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Process => "process",
            Kind::Task => "task",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

impl RestartPolicy {
    /// As a person reads it in the log: `restart: on-failure`.
    pub fn label(self) -> &'static str {
        match self {
            RestartPolicy::No => "restart: no",
            RestartPolicy::OnFailure => "restart: on-failure",
            RestartPolicy::Always => "restart: always",
        }
    }

    /// The policy a [`RestartPolicy::label`] names.
    pub fn from_label(label: &str) -> Option<Self> {
        [Self::No, Self::OnFailure, Self::Always]
            .into_iter()
            .find(|p| p.label() == label)
    }
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
    /// The longest gap between two attempts unless `ready: { interval }` says otherwise.
    /// Network probes (a connect and a short exchange on this machine) cost next to nothing,
    /// so they go on every 100 ms: a service is seen ready within that of being ready. An
    /// `exec` runs a process in the container each time, and a healthcheck's status changes
    /// only as often as the engine checks: those back off to 1 s.
    pub fn default_interval(&self) -> std::time::Duration {
        if self.costly() {
            std::time::Duration::from_secs(1)
        } else {
            std::time::Duration::from_millis(100)
        }
    }

    /// An attempt that runs a process in the container or waits on the engine's own checks,
    /// rather than a connect and a short exchange.
    pub fn costly(&self) -> bool {
        match self {
            Probe::Exec(_) | Probe::Healthcheck => true,
            Probe::Tcp(_)
            | Probe::Http(_)
            | Probe::Log(_)
            | Probe::Postgres { .. }
            | Probe::Redis { .. }
            | Probe::Kafka { .. }
            | Probe::Zookeeper { .. }
            | Probe::Qdrant { .. } => false,
        }
    }

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

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}
