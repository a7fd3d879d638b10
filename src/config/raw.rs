//! The stack file as written: serde types that mirror the YAML. No meaning is checked here
//! beyond shape; `validate` turns these into the model.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    /// Compose's `version:`; obsolete there too, read and ignored.
    pub version: Option<Scalar>,
    pub name: Option<String>,
    #[serde(default)]
    pub env_file: Option<OneOrMany>,
    pub services: Option<IndexMap<String, RawService>>,
    pub test: Option<RawTest>,
    pub logs: Option<RawLogs>,
    pub k8s: Option<super::k8s::RawStackK8s>,
    /// Compose's top-level named volumes; `null` entries are volumes with defaults.
    pub volumes: Option<IndexMap<String, Option<RawVolumeDef>>>,
    pub networks: Option<IndexMap<String, Option<RawNetworkDef>>>,
    pub secrets: Option<IndexMap<String, RawSecretDef>>,
    pub instances: Option<RawInstances>,
}

/// The top-level `instances:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstances {
    #[serde(default)]
    pub share: Vec<String>,
    #[serde(default)]
    pub fresh: Vec<String>,
}

/// A top-level `volumes:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolumeDef {
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: IndexMap<String, Scalar>,
    pub external: Option<bool>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Labels,
}

/// A top-level `networks:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetworkDef {
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: IndexMap<String, Scalar>,
    pub external: Option<bool>,
    pub name: Option<String>,
    pub internal: Option<bool>,
    pub attachable: Option<bool>,
    #[serde(default)]
    pub labels: Labels,
}

/// A top-level `secrets:` entry: its value from a file or from a variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretDef {
    pub file: Option<String>,
    pub environment: Option<String>,
    pub name: Option<String>,
}

/// `labels:` (and `sysctls:`) as a map or a list of `KEY=value`.
#[derive(Debug, Clone, Default)]
pub struct Labels(pub IndexMap<String, String>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let env = Environment::deserialize(d)?;
        Ok(Labels(
            env.0
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        ))
    }
}

/// `build:` — a context path, or the long form. Building belongs to a later step; the loader
/// reads and keeps it.
#[derive(Debug, Clone, Default)]
pub struct RawBuild(pub RawBuildSpec);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuildSpec {
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    #[serde(default)]
    pub args: Environment,
    pub target: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub cache_from: Vec<String>,
    #[serde(default)]
    pub cache_to: Vec<String>,
    pub network: Option<String>,
    pub pull: Option<bool>,
    pub no_cache: Option<bool>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    #[serde(default)]
    pub extra_hosts: ExtraHosts,
    pub shm_size: Option<Scalar>,
    #[serde(default)]
    pub additional_contexts: Labels,
}

impl<'de> Deserialize<'de> for RawBuild {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBuild;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a build context path or a map with `context`, `dockerfile`, …")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawBuild(RawBuildSpec {
                    context: Some(v.to_string()),
                    ..Default::default()
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawBuildSpec::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawBuild)
            }
        }
        d.deserialize_any(V)
    }
}

/// `extra_hosts:` as a list of `host:ip` / `host=ip` or a map of host to address.
#[derive(Debug, Clone, Default)]
pub struct ExtraHosts(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for ExtraHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtraHosts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of `HOST:IP` or a map of host to address")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    for ip in map.next_value::<OneOrMany>()?.0 {
                        out.push((k.clone(), ip));
                    }
                }
                Ok(ExtraHosts(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    // `host=ip` is the newer form; `host:ip` splits at the first colon because
                    // an IPv6 address has more.
                    let split = item.split_once('=').or_else(|| item.split_once(':'));
                    match split {
                        Some((h, ip)) => out.push((h.to_string(), ip.to_string())),
                        None => {
                            return Err(de::Error::custom(format!(
                                "extra host `{item}` has no address: write `{item}:IP`"
                            )))
                        }
                    }
                }
                Ok(ExtraHosts(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `ulimits:` entry: a number (soft = hard) or `{soft, hard}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawUlimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for RawUlimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            soft: i64,
            hard: i64,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUlimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a map with `soft` and `hard`")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawUlimit { soft: v, hard: v })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("ulimit is too large"))?;
                Ok(RawUlimit { soft: v, hard: v })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let l = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawUlimit {
                    soft: l.soft,
                    hard: l.hard,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Service `networks:` as a list of names or a map of name to `{aliases, …}` (or null).
#[derive(Debug, Clone, Default)]
pub struct RawServiceNetworks(pub IndexMap<String, RawServiceNetwork>);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceNetwork {
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub priority: Option<i64>,
}

impl<'de> Deserialize<'de> for RawServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawServiceNetworks;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of network names or a map of network name to settings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(n) = seq.next_element::<String>()? {
                    out.insert(n, RawServiceNetwork::default());
                }
                Ok(RawServiceNetworks(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(n) = map.next_key::<String>()? {
                    let v = map.next_value::<Option<RawServiceNetwork>>()?;
                    out.insert(n, v.unwrap_or_default());
                }
                Ok(RawServiceNetworks(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A service `secrets:` entry: a name, or `{source, target, uid, gid, mode}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceSecret {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<Scalar>,
    pub gid: Option<Scalar>,
    pub mode: Option<Scalar>,
}

/// Reads a list item that is a bare string or the long map form of `T`.
fn short_or_long<'de, D, T>(d: D, short: fn(String) -> T, what: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T> {
        short: fn(String) -> T,
        what: &'static str,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.what)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            Ok((self.short)(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            Ok((self.short)(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            Ok((self.short)(v.to_string()))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V { short, what })
}

/// A service secret in either form.
#[derive(Debug, Clone)]
pub struct ServiceSecret(pub RawServiceSecret);

impl<'de> Deserialize<'de> for ServiceSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_long(
            d,
            |s| RawServiceSecret {
                source: s,
                ..Default::default()
            },
            "a secret name or a map with `source` and `target`",
        )
        .map(ServiceSecret)
    }
}

/// A `volumes:` entry of a service: `SOURCE:TARGET[:MODE]`, a bare `TARGET` (anonymous volume),
/// or the long form.
#[derive(Debug, Clone)]
pub enum RawServiceVolume {
    Short(String),
    Long(Box<RawLongVolume>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLongVolume {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    pub consistency: Option<String>,
    pub bind: Option<RawBindOptions>,
    pub volume: Option<RawVolumeOptions>,
    pub tmpfs: Option<RawTmpfsOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBindOptions {
    pub propagation: Option<String>,
    pub create_host_path: Option<bool>,
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolumeOptions {
    #[serde(default)]
    pub nocopy: bool,
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTmpfsOptions {
    pub size: Option<Scalar>,
    pub mode: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawServiceVolume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawServiceVolume;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`SOURCE:TARGET` or a map with `type`, `source` and `target`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawServiceVolume::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawLongVolume::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|l| RawServiceVolume::Long(Box::new(l)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `ports:` entry: the short text form or the long map form.
#[derive(Debug, Clone)]
pub enum RawPort {
    Short(String),
    Long(RawLongPort),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLongPort {
    pub target: Scalar,
    pub published: Option<Scalar>,
    pub host_ip: Option<String>,
    pub protocol: Option<String>,
    pub mode: Option<String>,
    pub name: Option<String>,
    pub app_protocol: Option<String>,
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "`HOST:CONTAINER`, a port number, or a map with `target` and `published`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawPort::Short(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawPort::Short(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawPort::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawLongPort::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawPort::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// An `env_file:` entry: a path, or `{path, required, format}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvFile {
    pub path: String,
    #[serde(default = "yes")]
    pub required: bool,
    pub format: Option<String>,
}

fn yes() -> bool {
    true
}

/// `env_file:` as one entry or a list of them.
#[derive(Debug, Clone, Default)]
pub struct EnvFiles(pub Vec<RawEnvFile>);

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Item(RawEnvFile);
        impl<'de> Deserialize<'de> for Item {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                short_or_long(
                    d,
                    |path| RawEnvFile {
                        path,
                        required: true,
                        format: None,
                    },
                    "a path or a map with `path` and `required`",
                )
                .map(Item)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EnvFiles(vec![RawEnvFile {
                    path: v.to_string(),
                    required: true,
                    format: None,
                }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(f)) = seq.next_element::<Item>()? {
                    out.push(f);
                }
                Ok(EnvFiles(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `healthcheck:` as Compose writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthcheck {
    pub test: Option<RawCommand>,
    pub interval: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub retries: Option<u32>,
    pub start_period: Option<Scalar>,
    pub start_interval: Option<Scalar>,
    #[serde(default)]
    pub disable: bool,
}

/// `deploy:`; only the resource limits mean something on one machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    pub resources: Option<RawResources>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub limits: Option<RawLimits>,
    pub reservations: Option<RawReservations>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub cpus: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReservations {
    pub cpus: Option<Scalar>,
    pub memory: Option<Scalar>,
}

/// The top-level `logs:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    pub keep_runs: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    #[serde(default)]
    pub environment: Environment,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub image: Option<String>,
    pub command: Option<RawCommand>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: Environment,
    pub env_file: Option<EnvFiles>,
    #[serde(default)]
    pub ports: Vec<RawPort>,
    #[serde(default)]
    pub volumes: Vec<RawServiceVolume>,
    #[serde(default)]
    pub depends_on: DependsOn,
    pub ready: Option<RawReady>,
    pub watch: Option<RawWatch>,
    pub restart: Option<RawRestart>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Scalar>,
    pub k8s: Option<super::k8s::RawServiceK8s>,
    pub build: Option<RawBuild>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub user: Option<Scalar>,
    pub entrypoint: Option<RawCommand>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub extra_hosts: ExtraHosts,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    pub shm_size: Option<Scalar>,
    pub tmpfs: Option<OneOrMany>,
    #[serde(default)]
    pub ulimits: IndexMap<String, RawUlimit>,
    #[serde(default)]
    pub sysctls: Labels,
    pub init: Option<bool>,
    pub stdin_open: Option<bool>,
    pub tty: Option<bool>,
    pub privileged: Option<bool>,
    pub read_only: Option<bool>,
    pub platform: Option<String>,
    pub network_mode: Option<String>,
    /// Compose's `links`: `SERVICE` or `SERVICE:ALIAS`.
    #[serde(default)]
    pub links: Vec<String>,
    /// `host`, `service:NAME` or `container:NAME`.
    pub pid: Option<String>,
    /// `SERVICE[:ro|:rw]` or `container:NAME[:ro|:rw]`.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// The engine's OCI runtime (`runc`, `runsc`, …).
    pub runtime: Option<String>,
    /// Compose's lifecycle hooks: commands run in the container after it starts and before it
    /// stops.
    #[serde(default)]
    pub post_start: Vec<RawHook>,
    #[serde(default)]
    pub pre_stop: Vec<RawHook>,
    /// Compose's init containers: each run to completion, in order, before the container starts.
    #[serde(default)]
    pub pre_start: Vec<RawInitHook>,
    pub networks: Option<RawServiceNetworks>,
    #[serde(default)]
    pub secrets: Vec<ServiceSecret>,
    pub deploy: Option<RawDeploy>,
    pub healthcheck: Option<RawHealthcheck>,
    #[serde(default)]
    pub expose: Vec<Scalar>,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub mem_limit: Option<Scalar>,
    pub cpus: Option<Scalar>,
    pub pids_limit: Option<i64>,
    pub pull_policy: Option<String>,
    pub develop: Option<RawDevelop>,
    pub task: Option<RawTask>,
    pub seed: Option<RawSeed>,
}

/// `task:` — `true`, or `{sources, generates, status}`: the service runs once to completion, and
/// is skipped when it is up to date.
pub type RawTask = BoolOr<RawTaskSpec>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaskSpec {
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub generates: Vec<String>,
    #[serde(default)]
    pub status: Vec<String>,
}

impl MapKeys for RawTaskSpec {
    const KEYS: &'static str = "`sources`, `generates`, `status`";
}

/// `seed:` — a command (string or list), or a map with `command` and its settings: run once
/// after the service's first ready, again after `reset`, and when its sources change.
#[derive(Debug, Clone)]
pub enum RawSeed {
    Command(RawCommand),
    Spec(RawSeedSpec),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeedSpec {
    pub command: RawCommand,
    #[serde(default)]
    pub sources: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: Environment,
    pub timeout: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawSeed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSeed;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command, or a map with `command`, `sources`, `user`, `working_dir`, `environment`, `timeout`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawSeed::Command(RawCommand::Shell(v.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                RawCommand::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawSeed::Command)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawSeedSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawSeed::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

/// Compose's `develop:`: what to do when files change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevelop {
    #[serde(default)]
    pub watch: Vec<RawWatchRule>,
}

/// One `develop.watch` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatchRule {
    pub path: String,
    pub action: String,
    pub target: Option<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
    pub initial_sync: Option<bool>,
}

/// `restart:`; `no` is the string here, YAML 1.2 reads it as such.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum RawRestart {
    #[serde(rename = "no")]
    No,
    #[serde(rename = "on-failure")]
    OnFailure,
    #[serde(rename = "always")]
    Always,
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
}

/// A string, or a list of strings (`env_file`).
#[derive(Debug, Clone)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a string (shell words) or a list (argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawCommand::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Scalar>()? {
                    out.push(s.0);
                }
                Ok(RawCommand::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar written as a string, number or boolean, kept as its text (`5432`, `"5432:5432"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// One lifecycle hook (`post_start`, `pre_stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    pub command: RawCommand,
    pub user: Option<String>,
    pub privileged: Option<bool>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: Environment,
}

/// One `pre_start` step: an init container beside the service's (compose-spec 2026-06).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInitHook {
    /// Absent: the image's own command.
    pub command: Option<RawCommand>,
    /// Absent: the service's image.
    pub image: Option<String>,
    pub user: Option<String>,
    pub privileged: Option<bool>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: Environment,
}

/// `environment:` as a map (`KEY: value`) or a list (`- KEY=value`). A value of `null` (or a
/// list entry without `=`) means "pass through from devstack's own environment".
#[derive(Debug, Clone, Default)]
pub struct Environment(pub IndexMap<String, Option<String>>);

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Environment;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of variables or a list of `KEY=value`")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Environment::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v = map.next_value::<Option<Scalar>>()?;
                    out.insert(k, v.map(|s| s.0));
                }
                Ok(Environment(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(item) = seq.next_element::<String>()? {
                    match item.split_once('=') {
                        // Compose refuses `DEBUG = true`: the name would end in a space.
                        Some((k, _)) if k.ends_with(char::is_whitespace) => {
                            return Err(de::Error::custom(format!(
                                "environment variable `{}` has a space before `=`",
                                k.trim_end()
                            )));
                        }
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None => out.insert(item, None),
                    };
                }
                Ok(Environment(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `depends_on:` as a list of names or a map of name to condition (`ready`, or Compose's
/// `{condition: service_healthy}`).
#[derive(Debug, Clone, Default)]
pub struct DependsOn(pub Vec<RawDependency>, pub DependsForm);

/// One `depends_on` entry: the dependency, its condition, and Compose's `restart: true` (restart
/// this service when the dependency restarts).
#[derive(Debug, Clone)]
pub struct RawDependency {
    pub name: String,
    pub condition: Option<RawCondition>,
    pub restart: bool,
    /// Compose's `required: false`: a dependency that is not in the stack (or not in an active
    /// profile) is left out instead of refused.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DependsForm {
    #[default]
    List,
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawCondition {
    #[serde(rename = "ready", alias = "service_healthy")]
    Ready,
    #[serde(rename = "started", alias = "service_started")]
    Started,
    #[serde(rename = "completed", alias = "service_completed_successfully")]
    Completed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongCondition {
    condition: Option<RawCondition>,
    #[serde(default)]
    restart: bool,
    #[serde(default = "yes")]
    required: bool,
}

enum ConditionForm {
    Short(RawCondition),
    Long(LongCondition),
    Null,
}

impl<'de> Deserialize<'de> for ConditionForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConditionForm;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a condition (`ready`, `started` or `completed`)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ConditionForm::Null)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                RawCondition::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(ConditionForm::Short)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                LongCondition::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ConditionForm::Long)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of service names or a map of service name to condition")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DependsOn::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    out.push(RawDependency {
                        name,
                        condition: None,
                        restart: false,
                        required: true,
                    });
                }
                Ok(DependsOn(out, DependsForm::List))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let (condition, restart, required) = match map.next_value::<ConditionForm>()? {
                        ConditionForm::Short(c) => (Some(c), false, true),
                        ConditionForm::Long(l) => (l.condition, l.restart, l.required),
                        ConditionForm::Null => (None, false, true),
                    };
                    out.push(RawDependency {
                        name,
                        condition,
                        restart,
                        required,
                    });
                }
                Ok(DependsOn(out, DependsForm::Map))
            }
        }
        d.deserialize_any(V)
    }
}

/// `ready:` — exactly one probe kind plus `timeout` / `interval`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub tcp: Option<Scalar>,
    pub http: Option<String>,
    pub exec: Option<RawCommand>,
    pub log: Option<String>,
    pub healthcheck: Option<bool>,
    #[serde(default, deserialize_with = "preset")]
    pub postgres: Option<RawPostgresProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub redis: Option<RawRedisProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub kafka: Option<RawPortProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub zookeeper: Option<RawPortProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub qdrant: Option<RawPortProbe>,
    pub timeout: Option<Scalar>,
    pub interval: Option<Scalar>,
}

/// A preset written as `redis: {}` or bare `redis:` (null) both mean "with defaults".
fn preset<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresProbe {
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisProbe {
    pub password: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortProbe {
    pub port: Option<u16>,
}

/// `watch:` — `false`, `true`, or `{paths, ignore, debounce}`.
pub type RawWatch = BoolOr<RawWatchSpec>;

/// A key that is `true`, `false`, or a map of settings (`watch`, `task`).
#[derive(Debug, Clone)]
pub enum BoolOr<T> {
    Enabled(bool),
    Spec(T),
}

/// The keys of a [`BoolOr`]'s map, for the message when something else is written.
pub trait MapKeys {
    const KEYS: &'static str;
}

impl<'de, T: Deserialize<'de> + MapKeys> Deserialize<'de> for BoolOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + MapKeys> Visitor<'de> for V<T> {
            type Value = BoolOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "`true`, `false` or a map with {}", T::KEYS)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(BoolOr::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(BoolOr::Spec)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatchSpec {
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub ignore: Vec<String>,
    pub debounce: Option<Scalar>,
}

impl MapKeys for RawWatchSpec {
    const KEYS: &'static str = "`paths`, `ignore`, `debounce`";
}
