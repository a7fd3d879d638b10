//! The `k8s:` sections of the stack file (top level and per service): their serde shape, the
//! checked settings and the checks. `up` ignores them; `render k8s` reads them. Pure.

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::interpolate::port_refs;
use super::keypath::KeyPath;
use super::model::{Command, PortMapping, Service};
use super::raw::{Environment, RawCommand, RawStack, Scalar};

/// Liveness probe timing when `k8s.liveness` does not say (the deployment document's values).
pub const DEFAULT_LIVENESS_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_LIVENESS_PERIOD: Duration = Duration::from_secs(10);

// ---- as written ----

/// Top-level `k8s:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStackK8s {
    pub namespace: Option<String>,
    pub ingress: Option<RawIngressDefaults>,
}

/// Top-level `k8s.ingress`: what every service's `ingress` entry inherits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngressDefaults {
    pub name: Option<String>,
    pub class: Option<String>,
    pub host: Option<String>,
    pub tls: Option<String>,
    #[serde(default)]
    pub annotations: IndexMap<String, Scalar>,
}

/// A service's `k8s:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceK8s {
    pub image: Option<String>,
    pub command: Option<RawCommand>,
    pub replicas: Option<u32>,
    pub resources: Option<RawResources>,
    pub hpa: Option<RawHpa>,
    pub ingress: Option<RawIngressList>,
    pub liveness: Option<RawLiveness>,
    #[serde(default)]
    pub environment: Environment,
    pub storage: Option<Scalar>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub requests: Option<RawQuantities>,
    pub limits: Option<RawQuantities>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuantities {
    pub cpu: Option<Scalar>,
    pub memory: Option<Scalar>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHpa {
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngress {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    #[serde(default)]
    pub annotations: IndexMap<String, Scalar>,
}

/// `ingress:` as one entry or a list of them.
#[derive(Debug, Clone, Default)]
pub struct RawIngressList(pub Vec<RawIngress>);

impl<'de> Deserialize<'de> for RawIngressList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawIngressList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map with `host`, `path`, `tls`, `annotations`, or a list of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawIngress::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|i| RawIngressList(vec![i]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(i) = seq.next_element::<RawIngress>()? {
                    out.push(i);
                }
                Ok(RawIngressList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `liveness:` — `false`, or one probe (`http` path, `tcp` port or `exec`) with its timing.
#[derive(Debug, Clone)]
pub enum RawLiveness {
    Enabled(bool),
    Spec(RawLivenessSpec),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLivenessSpec {
    pub http: Option<String>,
    pub tcp: Option<u16>,
    pub exec: Option<RawCommand>,
    pub initial_delay: Option<Scalar>,
    pub period: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawLiveness {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLiveness;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`false` or a map with `http`, `tcp` or `exec`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawLiveness::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawLivenessSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawLiveness::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

// ---- checked ----

/// The checked top-level `k8s:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StackK8s {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "IngressDefaults::is_empty")]
    pub ingress: IngressDefaults,
}

impl StackK8s {
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.ingress.is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngressDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
}

impl IngressDefaults {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.class.is_none()
            && self.host.is_none()
            && self.tls.is_none()
            && self.annotations.is_empty()
    }
}

/// The checked per-service `k8s:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceK8s {
    /// Whether the service has a `k8s:` section at all (for error locations).
    #[serde(skip)]
    pub written: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hpa: Option<Hpa>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRoute>,
    #[serde(skip_serializing_if = "Liveness::is_convention")]
    pub liveness: Liveness,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

impl ServiceK8s {
    pub fn is_empty(&self) -> bool {
        !self.written
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Quantities::is_empty")]
    pub requests: Quantities,
    #[serde(skip_serializing_if = "Quantities::is_empty")]
    pub limits: Quantities,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Quantities {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl Quantities {
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hpa {
    pub min: u32,
    pub max: u32,
    /// Target average CPU utilisation, percent of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Target average memory utilisation, percent of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
}

/// One way in from outside: `host` + `path` to one of the service's ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressRoute {
    /// The Ingress object this route belongs to (default: `NAMESPACE-ingress`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub path: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Liveness {
    /// The deployment document's convention: `GET /health` beside an http readiness probe on
    /// `/ready` or `/health`.
    #[default]
    Convention,
    Off,
    Probe {
        check: LiveCheck,
        initial_delay: Duration,
        period: Duration,
    },
}

impl Liveness {
    pub fn is_convention(&self) -> bool {
        *self == Liveness::Convention
    }
}

impl Serialize for Liveness {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Liveness::Convention => s.serialize_str("convention"),
            Liveness::Off => s.serialize_bool(false),
            Liveness::Probe {
                check,
                initial_delay,
                period,
            } => {
                let mut m = s.serialize_map(Some(3))?;
                match check {
                    LiveCheck::Http(p) => m.serialize_entry("http", p)?,
                    LiveCheck::Tcp(p) => m.serialize_entry("tcp", p)?,
                    LiveCheck::Exec(c) => m.serialize_entry("exec", c)?,
                }
                m.serialize_entry(
                    "initial_delay",
                    &humantime::format_duration(*initial_delay).to_string(),
                )?;
                m.serialize_entry("period", &humantime::format_duration(*period).to_string())?;
                m.end()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveCheck {
    /// A path (`/health`) or a URL on the service's own port.
    Http(String),
    Tcp(u16),
    Exec(Command),
}

// ---- checks ----

/// What the per-service check needs to know about the service.
pub struct ServiceContext<'a> {
    pub name: &'a str,
    pub ports: &'a [PortMapping],
    /// Looks up devstack's own environment (for `KEY:` entries without a value).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Checks every `k8s:` section of the stack and fills in each service's settings.
pub fn validate(
    raw: &RawStack,
    services: &mut IndexMap<String, Service>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> StackK8s {
    let defaults = stack(raw.k8s.as_ref(), errors);
    let Some(raw_services) = &raw.services else {
        return defaults;
    };
    for (name, svc) in services.iter_mut() {
        let Some(rs) = raw_services.get(name) else {
            continue;
        };
        let cx = ServiceContext {
            name,
            ports: &svc.ports,
            env,
        };
        let path = KeyPath::root().key("services").key(name.clone());
        svc.k8s = service(rs.k8s.as_ref(), &defaults, &cx, &path.key("k8s"), errors);
    }
    let published = |s: &str, p: u16| services.get(s).map(|svc| svc.port(p).is_some());
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    for (name, svc) in services.iter() {
        let path = KeyPath::root().key("services").key(name.clone()).key("k8s");
        check_refs(&svc.k8s, &path, &published, &names, errors);
    }
    defaults
}

/// Checks the top-level `k8s:`.
pub fn stack(raw: Option<&RawStackK8s>, errors: &mut Vec<Diagnostic>) -> StackK8s {
    let Some(raw) = raw else {
        return StackK8s::default();
    };
    let path = KeyPath::root().key("k8s");
    if let Some(ns) = &raw.namespace {
        if !is_dns_label(ns) {
            errors.push(
                Diagnostic::new(format!("invalid Kubernetes namespace `{ns}`"))
                    .at_value(path.key("namespace"))
                    .help("a namespace is up to 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"),
            );
        }
    }
    let ingress = raw
        .ingress
        .as_ref()
        .map(|i| {
            let ipath = path.key("ingress");
            if let Some(n) = &i.name {
                check_object_name(n, &ipath.key("name"), "Ingress name", errors);
            }
            IngressDefaults {
                name: i.name.clone(),
                class: i.class.clone(),
                host: i.host.clone(),
                tls: i.tls.clone(),
                annotations: annotations(&i.annotations),
            }
        })
        .unwrap_or_default();
    StackK8s {
        namespace: raw.namespace.clone(),
        ingress,
    }
}

/// Checks a service's `k8s:` against the top-level defaults.
pub fn service(
    raw: Option<&RawServiceK8s>,
    defaults: &StackK8s,
    cx: &ServiceContext<'_>,
    path: &KeyPath,
    errors: &mut Vec<Diagnostic>,
) -> ServiceK8s {
    let Some(raw) = raw else {
        return ServiceK8s::default();
    };
    let name = cx.name;
    let image = match &raw.image {
        Some(i) if i.trim().is_empty() => {
            errors.push(
                Diagnostic::new(format!("service `{name}` has an empty `k8s.image`"))
                    .at_value(path.key("image"))
                    .help("name the image the cluster runs, e.g. `registry.example.com/app:1.0`"),
            );
            None
        }
        other => other.as_ref().map(|i| i.trim().to_string()),
    };
    let command = match &raw.command {
        Some(RawCommand::Shell(s)) if !s.trim().is_empty() => {
            Some(Command::Shell(s.trim().to_string()))
        }
        Some(RawCommand::Argv(v)) if v.first().is_some_and(|a| !a.trim().is_empty()) => {
            Some(Command::Argv(v.clone()))
        }
        Some(_) => {
            errors.push(
                Diagnostic::new(format!("service `{name}` has an empty `k8s.command`"))
                    .at_value(path.key("command"))
                    .help("give the arguments the image runs with, or remove `k8s.command` to keep the image's own"),
            );
            None
        }
        None => None,
    };
    if raw.replicas == Some(0) && raw.hpa.is_some() {
        errors.push(
            Diagnostic::new(format!(
                "service `{name}` has `k8s.replicas: 0` and an `hpa`"
            ))
            .at_value(path.key("replicas"))
            .help("the autoscaler never scales from zero; remove one of them"),
        );
    }
    let resources = raw
        .resources
        .as_ref()
        .map(|r| resources(r, &path.key("resources"), errors))
        .unwrap_or_default();
    let hpa = raw
        .hpa
        .as_ref()
        .and_then(|h| hpa(h, &resources, name, &path.key("hpa"), errors));
    let ingress = raw
        .ingress
        .as_ref()
        .map(|list| ingress(list, defaults, cx, &path.key("ingress"), errors))
        .unwrap_or_default();
    let liveness = match &raw.liveness {
        None | Some(RawLiveness::Enabled(true)) => Liveness::Convention,
        Some(RawLiveness::Enabled(false)) => Liveness::Off,
        Some(RawLiveness::Spec(s)) => liveness(s, name, &path.key("liveness"), errors),
    };
    let environment: IndexMap<String, String> = raw
        .environment
        .0
        .iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k.clone(), v.clone())),
            None => (cx.env)(k).map(|v| (k.clone(), v)),
        })
        .collect();
    let storage = raw.storage.as_ref().and_then(|s| {
        quantity(&s.0, &path.key("storage"), errors)?;
        Some(s.0.trim().to_string())
    });
    ServiceK8s {
        written: true,
        image,
        command,
        replicas: raw.replicas,
        resources,
        hpa,
        ingress,
        liveness,
        environment,
        storage,
    }
}

/// Port references in `k8s.environment` and `k8s.command` must name a published port, as
/// everywhere else; `published` answers whether `SERVICE` publishes `PORT`.
pub fn check_refs(
    k8s: &ServiceK8s,
    path: &KeyPath,
    published: &dyn Fn(&str, u16) -> Option<bool>,
    names: &[&str],
    errors: &mut Vec<Diagnostic>,
) {
    let mut values: Vec<(KeyPath, &str)> = k8s
        .environment
        .iter()
        .map(|(k, v)| (path.key("environment").key(k.clone()), v.as_str()))
        .collect();
    match &k8s.command {
        Some(Command::Shell(s)) => values.push((path.key("command"), s)),
        Some(Command::Argv(v)) => {
            values.extend(v.iter().map(|a| (path.key("command"), a.as_str())))
        }
        None => {}
    }
    for (p, v) in values {
        for r in port_refs(v) {
            let shown = format!("${{port:{}:{}}}", r.service, r.port);
            match published(&r.service, r.port) {
                None => errors.push(
                    Diagnostic::new(format!(
                        "port reference `{shown}` names unknown service `{}`",
                        r.service
                    ))
                    .at_value(p.clone())
                    .help(
                        did_you_mean(&r.service, names.iter().copied())
                            .unwrap_or_else(|| "name a service of this stack".to_string()),
                    ),
                ),
                Some(false) => errors.push(
                    Diagnostic::new(format!(
                        "port reference `{shown}`: service `{}` does not publish port {}",
                        r.service, r.port
                    ))
                    .at_value(p.clone())
                    .help(format!(
                        "add `\"{}\"` to the `ports` of `{}`",
                        r.port, r.service
                    )),
                ),
                Some(true) => {}
            }
        }
    }
}

fn annotations(raw: &IndexMap<String, Scalar>) -> IndexMap<String, String> {
    raw.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn resources(r: &RawResources, path: &KeyPath, errors: &mut Vec<Diagnostic>) -> Resources {
    let mut q = |raw: &Option<RawQuantities>, key: &str| -> (Quantities, [Option<f64>; 2]) {
        let Some(raw) = raw else {
            return (Quantities::default(), [None, None]);
        };
        let mut one = |s: &Option<Scalar>, what: &str| -> (Option<String>, Option<f64>) {
            match s {
                Some(s) => {
                    let v = quantity(&s.0, &path.key(key).key(what), errors);
                    (v.map(|_| s.0.trim().to_string()), v)
                }
                None => (None, None),
            }
        };
        let (cpu, cpu_n) = one(&raw.cpu, "cpu");
        let (memory, mem_n) = one(&raw.memory, "memory");
        (Quantities { cpu, memory }, [cpu_n, mem_n])
    };
    let (requests, req) = q(&r.requests, "requests");
    let (limits, lim) = q(&r.limits, "limits");
    for (i, what) in ["cpu", "memory"].iter().enumerate() {
        if let (Some(rq), Some(l)) = (req[i], lim[i]) {
            if rq > l {
                errors.push(
                    Diagnostic::new(format!("the {what} request is above its limit"))
                        .at_value(path.key("requests").key(*what))
                        .help("Kubernetes rejects a request larger than the limit; lower the request or raise the limit"),
                );
            }
        }
    }
    Resources { requests, limits }
}

/// A Kubernetes quantity (`250m`, `0.5`, `512Mi`, `1Gi`, `2G`) as a plain number, or an error.
fn quantity(s: &str, path: &KeyPath, errors: &mut Vec<Diagnostic>) -> Option<f64> {
    match parse_quantity(s) {
        Some(v) => Some(v),
        None => {
            errors.push(
                Diagnostic::new(format!("invalid quantity `{s}`"))
                    .at_value(path.clone())
                    .help("write a Kubernetes quantity: CPU as `250m` or `0.5`, memory as `512Mi` or `1Gi`"),
            );
            None
        }
    }
}

pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let k = 1000f64;
    let ki = 1024f64;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => k,
        "M" => k.powi(2),
        "G" => k.powi(3),
        "T" => k.powi(4),
        "P" => k.powi(5),
        "E" => k.powi(6),
        "Ki" => ki,
        "Mi" => ki.powi(2),
        "Gi" => ki.powi(3),
        "Ti" => ki.powi(4),
        "Pi" => ki.powi(5),
        "Ei" => ki.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

fn hpa(
    h: &RawHpa,
    resources: &Resources,
    name: &str,
    path: &KeyPath,
    errors: &mut Vec<Diagnostic>,
) -> Option<Hpa> {
    let before = errors.len();
    let min = h.min.unwrap_or(1);
    let Some(max) = h.max else {
        errors.push(
            Diagnostic::new(format!("the `hpa` of `{name}` has no `max`"))
                .at(path.clone())
                .help("give the most replicas the autoscaler may run, e.g. `max: 10`"),
        );
        return None;
    };
    if min == 0 {
        errors.push(
            Diagnostic::new("`hpa.min` must be at least 1")
                .at_value(path.key("min"))
                .help("the autoscaler keeps at least one replica"),
        );
    }
    if max < min {
        errors.push(
            Diagnostic::new(format!("`hpa.max` ({max}) is below `hpa.min` ({min})"))
                .at_value(path.key("max"))
                .help("raise `max` or lower `min`"),
        );
    }
    if h.cpu.is_none() && h.memory.is_none() {
        errors.push(
            Diagnostic::new(format!("the `hpa` of `{name}` has no target"))
                .at(path.clone())
                .help("give `cpu` and/or `memory`: the average utilisation to keep, in percent of the request"),
        );
    }
    for (what, target, request) in [
        ("cpu", h.cpu, &resources.requests.cpu),
        ("memory", h.memory, &resources.requests.memory),
    ] {
        match target {
            Some(0) => errors.push(
                Diagnostic::new(format!("`hpa.{what}` must be more than 0 percent"))
                    .at_value(path.key(what))
                    .help("e.g. `70`"),
            ),
            Some(_) if request.is_none() => errors.push(
                Diagnostic::new(format!(
                    "`hpa.{what}` is a percentage of the {what} request, but `{name}` requests no {what}"
                ))
                .at_value(path.key(what))
                .help(format!("add `resources.requests.{what}` to the `k8s` section of `{name}`")),
            ),
            _ => {}
        }
    }
    (errors.len() == before).then_some(Hpa {
        min,
        max,
        cpu: h.cpu,
        memory: h.memory,
    })
}

fn ingress(
    list: &RawIngressList,
    defaults: &StackK8s,
    cx: &ServiceContext<'_>,
    path: &KeyPath,
    errors: &mut Vec<Diagnostic>,
) -> Vec<IngressRoute> {
    let d = &defaults.ingress;
    let mut out = Vec::new();
    for (i, r) in list.0.iter().enumerate() {
        let p = if list.0.len() > 1 {
            path.index(i)
        } else {
            path.clone()
        };
        let port = match (r.port, cx.ports) {
            (Some(port), ports) if ports.iter().any(|m| m.container_port == port) => port,
            (Some(port), _) => {
                errors.push(
                    Diagnostic::new(format!(
                        "ingress port {port}: service `{}` does not publish port {port}",
                        cx.name
                    ))
                    .at_value(p.key("port"))
                    .help(format!("add `\"{port}\"` to its `ports`")),
                );
                continue;
            }
            (None, [one]) => one.container_port,
            (None, []) => {
                errors.push(
                    Diagnostic::new(format!(
                        "service `{}` has an `ingress` but publishes no port",
                        cx.name
                    ))
                    .at(p.clone())
                    .help("add the port it listens on to its `ports`"),
                );
                continue;
            }
            (None, _) => {
                errors.push(
                    Diagnostic::new(format!(
                        "service `{}` publishes several ports; its `ingress` needs a `port`",
                        cx.name
                    ))
                    .at(p.clone())
                    .help("add `port:` with the container port to route to"),
                );
                continue;
            }
        };
        let path_value = r.path.clone().unwrap_or_else(|| "/".to_string());
        if !path_value.starts_with('/') {
            errors.push(
                Diagnostic::new(format!("ingress path `{path_value}` must start with `/`"))
                    .at_value(p.key("path"))
                    .help(format!("write `/{path_value}`")),
            );
        }
        let name = r.name.clone().or_else(|| d.name.clone());
        if let Some(n) = &r.name {
            check_object_name(n, &p.key("name"), "Ingress name", errors);
        }
        let mut annotations = d.annotations.clone();
        annotations.extend(self::annotations(&r.annotations));
        out.push(IngressRoute {
            name,
            class: d.class.clone(),
            host: r.host.clone().or_else(|| d.host.clone()),
            path: path_value,
            port,
            tls: r.tls.clone().or_else(|| d.tls.clone()),
            annotations,
        });
    }
    out
}

fn liveness(
    s: &RawLivenessSpec,
    name: &str,
    path: &KeyPath,
    errors: &mut Vec<Diagnostic>,
) -> Liveness {
    let mut checks = Vec::new();
    if let Some(h) = &s.http {
        checks.push(LiveCheck::Http(h.clone()));
    }
    if let Some(t) = s.tcp {
        checks.push(LiveCheck::Tcp(t));
    }
    if let Some(e) = &s.exec {
        checks.push(LiveCheck::Exec(match e {
            RawCommand::Shell(s) => Command::Shell(s.clone()),
            RawCommand::Argv(v) => Command::Argv(v.clone()),
        }));
    }
    if checks.len() != 1 {
        errors.push(
            Diagnostic::new(format!(
                "the `liveness` of `{name}` needs exactly one of `http`, `tcp`, `exec`"
            ))
            .at(path.clone())
            .help("e.g. `liveness: { http: /health }`, or `liveness: false` for none"),
        );
        return Liveness::Off;
    }
    let dur = |v: &Option<Scalar>, key: &str, dflt: Duration, errors: &mut Vec<Diagnostic>| match v
    {
        None => dflt,
        Some(s) => match humantime::parse_duration(s.0.trim()) {
            Ok(d) => d,
            Err(_) => {
                errors.push(
                    Diagnostic::new(format!("invalid duration `{}`", s.0))
                        .at_value(path.key(key))
                        .help("write a number with a unit, like `10s`"),
                );
                dflt
            }
        },
    };
    let initial_delay = dur(
        &s.initial_delay,
        "initial_delay",
        DEFAULT_LIVENESS_DELAY,
        errors,
    );
    let period = dur(&s.period, "period", DEFAULT_LIVENESS_PERIOD, errors);
    Liveness::Probe {
        check: checks.remove(0),
        initial_delay,
        period,
    }
}

/// A DNS-1123 label: what namespaces, Services and most object names must be.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn check_object_name(n: &str, path: &KeyPath, what: &str, errors: &mut Vec<Diagnostic>) {
    if !is_dns_label(n) {
        errors.push(
            Diagnostic::new(format!("invalid {what} `{n}`"))
                .at_value(path.clone())
                .help("use up to 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cases: &[(&str, Option<f64>)] = &[
            ("250m", Some(0.25)),
            ("1000m", Some(1.0)),
            ("0.5", Some(0.5)),
            ("2", Some(2.0)),
            ("512Mi", Some(512.0 * 1024.0 * 1024.0)),
            ("1Gi", Some(1024.0 * 1024.0 * 1024.0)),
            ("1G", Some(1e9)),
            ("512MB", None),
            ("lots", None),
            ("", None),
            ("1.2.3", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), *want, "{s}");
        }
    }

    #[test]
    fn settings_inherit_the_top_level_defaults() {
        let stack = crate::config::test_stack(
            "name: demo\nk8s:\n  namespace: prod\n  ingress: { host: example.test, tls: ex-tls, annotations: { a: \"1\" } }\nservices:\n  api:\n    command: ./serve\n    ports: [\"8080\", \"9090\"]\n    k8s:\n      image: api:1\n      liveness: { http: /live, period: 30s }\n      ingress:\n        - { port: 8080 }\n        - { host: admin.test, path: /admin, port: 9090, tls: admin-tls, annotations: { b: \"2\" } }\n  web:\n    command: ./web\n    k8s: { image: web:1, liveness: false }\n  worker:\n    command: ./work\n",
        );
        assert_eq!(stack.k8s.namespace.as_deref(), Some("prod"));
        let api = &stack.services["api"].k8s;
        // host, path, port, TLS secret, number of annotations
        type Route<'a> = (Option<&'a str>, &'a str, u16, Option<&'a str>, usize);
        let routes: Vec<Route> = api
            .ingress
            .iter()
            .map(|r| {
                (
                    r.host.as_deref(),
                    r.path.as_str(),
                    r.port,
                    r.tls.as_deref(),
                    r.annotations.len(),
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                (Some("example.test"), "/", 8080, Some("ex-tls"), 1),
                (Some("admin.test"), "/admin", 9090, Some("admin-tls"), 2),
            ]
        );
        assert_eq!(
            api.liveness,
            Liveness::Probe {
                check: LiveCheck::Http("/live".into()),
                initial_delay: DEFAULT_LIVENESS_DELAY,
                period: Duration::from_secs(30),
            }
        );
        assert_eq!(stack.services["web"].k8s.liveness, Liveness::Off);
        let worker = &stack.services["worker"].k8s;
        assert!(!worker.written && worker.image.is_none());
        assert_eq!(worker.liveness, Liveness::Convention);
    }

    #[test]
    fn dns_labels() {
        for ok in ["ensurestudy", "core-service", "a1", "x"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "Core", "a_b", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
