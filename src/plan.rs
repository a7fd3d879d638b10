//! From a validated stack to what will run: the host port of every published port, and the
//! exact container specs (with their config hash). Pure: free ports come from a function.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::config::interpolate::resolve_port_refs;
use crate::config::ServiceName;
use crate::config::{
    Command, ContainerOptions, Hook, InitHook, Service, ServiceKind, Stack, Volume,
};
use crate::project::ports::RecordedPorts;
use crate::runtime::{labels, ContainerInfo, ContainerSpec, HookExec, InitSpec, Mount, Published};

/// Every published port of every service, with its host port decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPorts(pub IndexMap<String, Vec<Published>>);

impl HostPorts {
    pub fn host_port(&self, service: &str, container_port: u16) -> Option<u16> {
        self.0
            .get(service)?
            .iter()
            .find(|p| p.container_port == container_port)
            .map(|p| p.host_port)
    }

    /// `s` with every `${port:SERVICE:PORT}` replaced and `$$` unescaped.
    pub fn resolve(&self, s: &str) -> String {
        resolve_port_refs(s, |r| self.host_port(&r.service, r.port))
    }

    pub fn all(&self) -> impl Iterator<Item = (&str, &Published)> {
        self.0
            .iter()
            .flat_map(|(s, ps)| ps.iter().map(move |p| (s.as_str(), p)))
    }
}

/// How host ports are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortMode {
    /// As written; `"CONTAINER"` alone gets a free port (kept across runs while the container lives).
    AsWritten,
    /// Every port on a free host port (`devstack test`).
    AllFree,
    /// An instance beside the main one: every port on the host port recorded for it, else a
    /// free one (then recorded).
    Recorded(Recorded),
}

impl PortMode {
    /// Where an instance's ports are recorded (none for the other modes).
    pub(crate) fn recorded_path(&self) -> Option<std::path::PathBuf> {
        match self {
            PortMode::Recorded(r) => Some(r.path.clone()),
            PortMode::AsWritten | PortMode::AllFree => None,
        }
    }
}

/// The recorded ports of an instance, and which of them something else holds now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Recorded {
    /// Where the record is kept (`project::ports::path`).
    pub path: std::path::PathBuf,
    pub ports: RecordedPorts,
    /// Recorded host ports taken by something other than this instance: chosen again.
    pub busy: BTreeSet<u16>,
}

/// Decides every host port. `existing` are this project's containers: an automatic port keeps
/// the host port its container already has, so a warm `up` does not change the config.
/// `pick_free` must not hand out a port recorded for another service (`Recorded` mode).
pub(crate) fn assign_ports(
    stack: &Stack,
    existing: &[ContainerInfo],
    mode: &PortMode,
    pick_free: &mut dyn FnMut(IpAddr) -> std::io::Result<u16>,
) -> std::io::Result<HostPorts> {
    let mut out = IndexMap::new();
    for (name, svc) in &stack.services {
        let mut ports = Vec::new();
        for p in &svc.ports {
            let fixed = match mode {
                PortMode::AsWritten => p.host_port,
                PortMode::AllFree => None,
                PortMode::Recorded(r) => r
                    .ports
                    .get(name, p.container_port, p.protocol)
                    .filter(|h| !r.busy.contains(h)),
            };
            let host_port = match fixed {
                Some(h) => h,
                None => {
                    let kept = existing
                        .iter()
                        .filter(|c| &c.service == name)
                        .flat_map(|c| c.ports.iter())
                        .find(|e| e.container_port == p.container_port && e.protocol == p.protocol)
                        .map(|e| e.host_port)
                        .filter(|_| *mode == PortMode::AsWritten);
                    match kept {
                        Some(h) => h,
                        None => pick_free(p.host_ip)?,
                    }
                }
            };
            ports.push(Published {
                host_ip: p.host_ip,
                host_port,
                container_port: p.container_port,
                protocol: p.protocol,
            });
        }
        out.insert(name.clone(), ports);
    }
    Ok(HostPorts(out))
}

pub(crate) fn container_name(project: &str, service: &str) -> String {
    crate::config::default_container_name(project, service)
}

pub(crate) fn network_name(project: &str) -> String {
    format!("{project}_default")
}

pub(crate) fn volume_name(project: &str, volume: &str) -> String {
    format!("{project}_{volume}")
}

/// A lifecycle hook as the engine runs it: a string command split as a service's `command` is
/// (no shell runs), its environment as `KEY=value`, `$$` a literal `$` (hooks run after the
/// ports are known, but name none: a `${port:…}` is kept as written).
pub(crate) fn hook_exec(hook: &Hook) -> HookExec {
    let resolve = |s: &str| resolve_port_refs(s, |_| None);
    HookExec {
        argv: match &hook.command {
            Command::Shell(s) => shell_words(&resolve(s)),
            Command::Argv(v) => v.iter().map(|a| resolve(a)).collect(),
        },
        user: hook.user.clone(),
        privileged: hook.privileged,
        working_dir: hook.working_dir.clone(),
        env: hook
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", resolve(v)))
            .collect(),
    }
}

/// A `pre_start` step with its port references resolved (and `$$` unescaped), as the container
/// spec carries it.
fn resolved_init_hook(hook: &InitHook, ports: &HostPorts) -> InitHook {
    InitHook {
        command: hook.command.as_ref().map(|c| match c {
            Command::Shell(s) => Command::Shell(ports.resolve(s)),
            Command::Argv(v) => Command::Argv(v.iter().map(|a| ports.resolve(a)).collect()),
        }),
        environment: hook
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), ports.resolve(v)))
            .collect(),
        ..hook.clone()
    }
}

/// The `n`th (from 0) `pre_start` step of the service `spec` is for, as the engine runs it next
/// to the service's created container `container_id`: the step's image, else the service's;
/// the service's environment with the step's over it; the step's user and working folder, else
/// the service's; the service's volumes and binds shared, its memory mounts its own.
pub(crate) fn init_spec(
    spec: &ContainerSpec,
    hook: &InitHook,
    n: usize,
    container_id: &str,
) -> InitSpec {
    let mut env: IndexMap<String, String> = spec
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect();
    for (k, v) in &hook.environment {
        env.insert(k.clone(), v.clone());
    }
    InitSpec {
        project: spec.project.clone(),
        service: spec.service.to_string(),
        name: format!("{}-pre_start-{}", spec.name, n + 1),
        image: hook.image.clone().unwrap_or_else(|| spec.image.clone()),
        cmd: hook.command.as_ref().map(|c| match c {
            Command::Shell(s) => shell_words(s),
            Command::Argv(v) => v.clone(),
        }),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        user: hook.user.clone().or_else(|| spec.options.user.clone()),
        working_dir: hook
            .working_dir
            .clone()
            .or_else(|| spec.working_dir.clone()),
        privileged: hook.privileged,
        network: spec.network.clone(),
        volumes_from: container_id.to_string(),
        tmpfs: spec
            .mounts
            .iter()
            .filter(|m| matches!(m, Mount::Tmpfs { .. }))
            .cloned()
            .collect(),
    }
}

/// What a succeeded `pre_start` run is recorded under: the service's config hash and every
/// step's definition. The same key on the same container: the steps are not run again.
pub(crate) fn pre_start_key(spec: &ContainerSpec) -> String {
    let mut h = Sha256::new();
    let hash = spec
        .labels
        .get(labels::CONFIG_HASH)
        .map_or("", String::as_str);
    h.update(format!("{hash}\n{:?}", spec.options.pre_start).as_bytes());
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Splits a command string into words as a POSIX shell would, for containers (no shell runs).
pub(crate) fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    cur.push('\\');
                                }
                                cur.push(n);
                            }
                        }
                        _ => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The container spec of a container service, with its config hash label. `image_id` is the
/// local image's id, so that a rebuilt image also recreates the container.
pub(crate) fn container_spec(
    project: &str,
    svc: &Service,
    ports: &HostPorts,
    image_id: &str,
) -> Option<ContainerSpec> {
    let ServiceKind::Container {
        image,
        command,
        working_dir,
        volumes,
    } = &svc.kind
    else {
        return None;
    };
    let cmd = command.as_ref().map(|c| match c {
        Command::Shell(s) => shell_words(&ports.resolve(s)),
        Command::Argv(v) => v.iter().map(|a| ports.resolve(a)).collect(),
    });
    let env = svc
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={}", ports.resolve(v)))
        .collect();
    let mut mounts: Vec<Mount> = volumes
        .iter()
        .map(|v| match v {
            Volume::Named {
                name,
                target,
                read_only,
            } => Mount::Volume {
                name: volume_name(project, name),
                target: target.clone(),
                read_only: *read_only,
            },
            Volume::Bind {
                source,
                target,
                read_only,
            } => Mount::Bind {
                source: source.display().to_string(),
                target: target.clone(),
                read_only: *read_only,
            },
            Volume::Anonymous { target } => Mount::Anonymous {
                target: target.clone(),
            },
            Volume::Tmpfs { target, size } => Mount::Tmpfs {
                target: target.clone(),
                size: *size,
            },
        })
        .collect();
    let opts = &svc.options;
    // File secrets are read-only bind mounts at `/run/secrets/NAME`; `tmpfs:` entries are
    // memory mounts.
    for s in &opts.secrets {
        if let Some(file) = &s.file {
            mounts.push(Mount::Bind {
                source: file.display().to_string(),
                target: s.target.clone(),
                read_only: true,
            });
        }
    }
    for t in &opts.tmpfs {
        let target = t.split(':').next().unwrap_or(t).to_string();
        mounts.push(Mount::Tmpfs { target, size: None });
    }
    let entrypoint = opts.entrypoint.as_ref().map(|c| match c {
        Command::Shell(s) => shell_words(&ports.resolve(s)),
        Command::Argv(v) => v.iter().map(|a| ports.resolve(a)).collect(),
    });
    let mut spec = ContainerSpec {
        project: project.to_string(),
        service: ServiceName::from(svc.name.clone()),
        name: opts
            .container_name
            .clone()
            .unwrap_or_else(|| container_name(project, &svc.name)),
        image: image.clone(),
        cmd,
        env,
        working_dir: working_dir.clone(),
        ports: ports.0.get(&svc.name).cloned().unwrap_or_default(),
        mounts,
        network: network_name(project),
        stop_signal: svc.stop_signal.name.to_string(),
        stop_grace: svc.stop_grace_period,
        restart: svc.restart,
        labels: BTreeMap::new(),
        entrypoint,
        options: ContainerOptions {
            secrets: Vec::new(),
            tmpfs: Vec::new(),
            entrypoint: None,
            pre_start: opts
                .pre_start
                .iter()
                .map(|h| resolved_init_hook(h, ports))
                .collect(),
            ..opts.clone()
        },
    };
    let hash = config_hash(&spec, image_id);
    spec.labels = BTreeMap::from([
        (labels::PROJECT.to_string(), project.to_string()),
        (labels::SERVICE.to_string(), svc.name.clone()),
        (labels::CONFIG_HASH.to_string(), hash),
    ]);
    Some(spec)
}

/// A digest of everything that shapes the container: same hash, same container.
pub(crate) fn config_hash(spec: &ContainerSpec, image_id: &str) -> String {
    let mut h = Sha256::new();
    let text = format!(
        "{image_id}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        spec.image,
        spec.cmd,
        spec.env,
        spec.working_dir,
        spec.ports,
        spec.mounts,
        spec.network,
        spec.stop_signal,
        spec.stop_grace,
        spec.restart
    );
    // Only specs with Compose settings hash them, so existing containers stay as they are.
    let text = if spec.entrypoint.is_none() && spec.options == ContainerOptions::default() {
        text
    } else {
        format!("{text}\n{:?}\n{:?}", spec.entrypoint, spec.options)
    };
    h.update(text.as_bytes());
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use crate::runtime::ContainerStatus;
    use std::net::Ipv4Addr;

    use crate::config::test_stack as stack;

    const YAML: &str = "name: demo\nservices:\n  db:\n    image: postgres:15\n    ports: [\"5432:5432\", \"9187\"]\n  kafka:\n    image: kafka\n    environment: { ADV: \"PLAINTEXT://127.0.0.1:${port:kafka:9092}\", DB: \"${port:db:9187}\" }\n    ports: [\"9092\"]\n    command: serve --port ${port:kafka:9092} 'a b'\n";

    fn counter(start: u16) -> impl FnMut(IpAddr) -> std::io::Result<u16> {
        let mut next = start;
        move |_| {
            next += 1;
            Ok(next)
        }
    }

    #[test]
    fn compose_settings_reach_the_container_spec() {
        let s = stack(
            "name: demo\nservices:\n  app:\n    image: busybox\n    container_name: my-app\n    entrypoint: /bin/sh -c\n    user: \"1000\"\n    tmpfs: [/run]\n    secrets: [token]\n    volumes: [/cache]\n    healthcheck: { test: [CMD, true], interval: 2s }\nsecrets:\n  token: { file: ./token.txt }\n",
        );
        let ports = assign_ports(&s, &[], &PortMode::AsWritten, &mut counter(40000)).unwrap();
        let spec = container_spec("demo", &s.services["app"], &ports, "sha256:x").unwrap();
        assert_eq!(spec.name, "my-app");
        assert_eq!(
            spec.entrypoint,
            Some(vec!["/bin/sh".to_string(), "-c".to_string()])
        );
        assert_eq!(spec.options.user.as_deref(), Some("1000"));
        assert!(spec.options.healthcheck.is_some());
        assert_eq!(
            spec.mounts[0],
            Mount::Anonymous {
                target: "/cache".into()
            }
        );
        assert!(
            matches!(&spec.mounts[1], Mount::Bind { source, target, read_only: true }
            if source.ends_with("token.txt") && target == "/run/secrets/token")
        );
        assert_eq!(
            spec.mounts[2],
            Mount::Tmpfs {
                target: "/run".into(),
                size: None
            }
        );
        // The settings are part of the config hash: changing one recreates the container.
        let mut other = spec.clone();
        other.options.user = Some("0".into());
        assert_ne!(config_hash(&spec, "i"), config_hash(&other, "i"));
    }

    /// A `pre_start` step runs beside the service's container: its image and command, else the
    /// image's own; the service's environment under the step's; the service's user and folder
    /// unless the step names its own; the container's volumes through `volumes_from`, memory
    /// mounts its own. A changed step changes the config hash and the record's key.
    #[test]
    fn init_spec_table() {
        let yaml = |word: &str| {
            format!("name: demo\nservices:\n  db:\n    image: pg\n    ports: [\"5432\"]\n  web:\n    image: app:1\n    user: app\n    working_dir: /srv\n    environment: {{A: \"1\", B: \"2\"}}\n    volumes: [\"data:/data\", /cache]\n    tmpfs: [/run]\n    pre_start:\n      - command: migrate --all\n        environment: {{B: {word}, P: \"${{port:db:5432}}\", D: \"$$x\"}}\n      - image: busybox\n        user: root\n        working_dir: /data\n")
        };
        let s = stack(&yaml("three"));
        let ports = assign_ports(&s, &[], &PortMode::AsWritten, &mut counter(40000)).unwrap();
        let spec = container_spec("demo", &s.services["web"], &ports, "sha256:x").unwrap();
        let steps = &spec.options.pre_start;
        let first = init_spec(&spec, &steps[0], 0, "cid");
        assert_eq!(first.name, "demo-web-pre_start-1");
        assert_eq!(first.image, "app:1");
        assert_eq!(first.cmd, Some(vec!["migrate".into(), "--all".into()]));
        assert_eq!(first.env, ["A=1", "B=three", "P=40001", "D=$x"]);
        assert_eq!(first.user.as_deref(), Some("app"));
        assert_eq!(first.working_dir.as_deref(), Some("/srv"));
        assert_eq!(first.network, "demo_default");
        assert_eq!(first.volumes_from, "cid");
        assert_eq!(
            first.tmpfs,
            [Mount::Tmpfs {
                target: "/run".into(),
                size: None
            }]
        );
        let second = init_spec(&spec, &steps[1], 1, "cid");
        assert_eq!(second.name, "demo-web-pre_start-2");
        assert_eq!(second.image, "busybox");
        assert_eq!(second.cmd, None);
        assert_eq!(second.env, ["A=1", "B=2"]);
        assert_eq!(second.user.as_deref(), Some("root"));
        assert_eq!(second.working_dir.as_deref(), Some("/data"));

        let changed = stack(&yaml("four"));
        let other = container_spec("demo", &changed.services["web"], &ports, "sha256:x").unwrap();
        assert_ne!(
            spec.labels, other.labels,
            "a changed step recreates the container"
        );
        assert_ne!(pre_start_key(&spec), pre_start_key(&other));
        assert_eq!(pre_start_key(&spec), pre_start_key(&spec.clone()));
    }

    #[test]
    fn fixed_ports_stay_automatic_ones_are_picked_or_kept() {
        let s = stack(YAML);
        let ports = assign_ports(&s, &[], &PortMode::AsWritten, &mut counter(40000)).unwrap();
        assert_eq!(ports.host_port("db", 5432), Some(5432));
        assert_eq!(ports.host_port("db", 9187), Some(40001));
        assert_eq!(ports.host_port("kafka", 9092), Some(40002));

        let existing = ContainerInfo {
            id: "x".into(),
            name: "demo-kafka".into(),
            project: "demo".into(),
            service: "kafka".into(),
            config_hash: String::new(),
            image: "kafka".into(),
            status: ContainerStatus::Running,
            exit_code: None,
            health: None,
            health_fresh: false,
            started_at: None,
            ports: vec![Published {
                host_ip: Ipv4Addr::LOCALHOST.into(),
                host_port: 45555,
                container_port: 9092,
                protocol: Protocol::Tcp,
            }],
        };
        let ports = assign_ports(
            &s,
            std::slice::from_ref(&existing),
            &PortMode::AsWritten,
            &mut counter(40000),
        )
        .unwrap();
        assert_eq!(
            ports.host_port("kafka", 9092),
            Some(45555),
            "a warm up keeps the host port"
        );

        let ports = assign_ports(&s, &[existing], &PortMode::AllFree, &mut counter(50000)).unwrap();
        assert_eq!(
            ports.host_port("db", 5432),
            Some(50001),
            "test mode moves even fixed ports"
        );
        assert_eq!(ports.host_port("kafka", 9092), Some(50003));
    }

    #[test]
    fn recorded_ports_table() {
        use crate::project::ports::RecordedPort;
        let s = stack(YAML);
        let rec = |entries: &[(&str, u16, u16)]| {
            let mut r = RecordedPorts::default();
            for (svc, container_port, host_port) in entries {
                r.0.entry(svc.to_string()).or_default().push(RecordedPort {
                    container_port: *container_port,
                    protocol: Protocol::Tcp,
                    host_port: *host_port,
                });
            }
            r
        };
        type Case<'a> = (&'a str, &'a [(&'a str, u16, u16)], &'a [u16], [u16; 3]);
        // (what, recorded, busy, want db:5432, db:9187, kafka:9092); the picker counts from 50001.
        let cases: &[Case] = &[
            (
                "nothing recorded: all picked, even written ones",
                &[],
                &[],
                [50001, 50002, 50003],
            ),
            (
                "all recorded and free: reused",
                &[
                    ("db", 5432, 41000),
                    ("db", 9187, 41001),
                    ("kafka", 9092, 41002),
                ],
                &[],
                [41000, 41001, 41002],
            ),
            (
                "one taken by something else: picked again",
                &[
                    ("db", 5432, 41000),
                    ("db", 9187, 41001),
                    ("kafka", 9092, 41002),
                ],
                &[41001],
                [41000, 50001, 41002],
            ),
            (
                "a port new in the file: picked, the rest reused",
                &[("db", 5432, 41000), ("kafka", 9092, 41002)],
                &[],
                [41000, 50001, 41002],
            ),
            (
                "another container port recorded: not this one's",
                &[("db", 5433, 41000)],
                &[],
                [50001, 50002, 50003],
            ),
        ];
        for (what, recorded, busy, want) in cases {
            let mode = PortMode::Recorded(Recorded {
                path: "ports.json".into(),
                ports: rec(recorded),
                busy: busy.iter().copied().collect(),
            });
            let ports = assign_ports(&s, &[], &mode, &mut counter(50000)).unwrap();
            let got = [
                ports.host_port("db", 5432).unwrap(),
                ports.host_port("db", 9187).unwrap(),
                ports.host_port("kafka", 9092).unwrap(),
            ];
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn specs_resolve_references_and_hash_the_config() {
        let s = stack(YAML);
        let ports = assign_ports(&s, &[], &PortMode::AsWritten, &mut counter(40000)).unwrap();
        let spec = container_spec("demo", &s.services["kafka"], &ports, "sha256:1").unwrap();
        assert_eq!(spec.name, "demo-kafka");
        assert_eq!(spec.network, "demo_default");
        assert_eq!(
            spec.env,
            vec!["ADV=PLAINTEXT://127.0.0.1:40002", "DB=40001"]
        );
        assert_eq!(
            spec.cmd,
            Some(vec![
                "serve".into(),
                "--port".into(),
                "40002".into(),
                "a b".into()
            ])
        );
        assert_eq!(spec.labels[labels::SERVICE], "kafka");

        let same = container_spec("demo", &s.services["kafka"], &ports, "sha256:1").unwrap();
        assert_eq!(
            same.labels[labels::CONFIG_HASH],
            spec.labels[labels::CONFIG_HASH]
        );
        let rebuilt = container_spec("demo", &s.services["kafka"], &ports, "sha256:2").unwrap();
        assert_ne!(
            rebuilt.labels[labels::CONFIG_HASH],
            spec.labels[labels::CONFIG_HASH]
        );
        let moved = assign_ports(&s, &[], &PortMode::AsWritten, &mut counter(41000)).unwrap();
        let other = container_spec("demo", &s.services["kafka"], &moved, "sha256:1").unwrap();
        assert_ne!(
            other.labels[labels::CONFIG_HASH],
            spec.labels[labels::CONFIG_HASH]
        );
    }

    #[test]
    fn shell_words_table() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("sh -c 'echo $X; exit 1'", &["sh", "-c", "echo $X; exit 1"]),
            (r#"say "a \"b\" c" d\ e"#, &["say", "a \"b\" c", "d e"]),
            ("''", &[""]),
            ("", &[]),
        ];
        for (input, want) in cases {
            assert_eq!(shell_words(input), *want, "{input}");
        }
    }
}
