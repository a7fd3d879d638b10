//! `render k8s`: the stack as Kubernetes objects — a Namespace; per service a Deployment (or a
//! StatefulSet for named volumes), a ClusterIP Service per port, a ConfigMap and a Secret split
//! by `config`'s secret rule, probes from `ready:`, init containers for `depends_on`, an HPA;
//! the Ingress of every `k8s.ingress` route. Pure: a `Stack` in, JSON values out, no I/O.

use indexmap::IndexMap;
use serde_json::{json, Map, Value};

use crate::config::diagnostic::Diagnostic;
use crate::config::interpolate::resolve_port_refs;
use crate::config::k8s::{is_dns_label, LiveCheck, Liveness};
use crate::config::show::is_secret_entry;
use crate::config::{Command, KeyPath, Probe, Protocol, Service, ServiceKind, Stack, Volume};
use crate::plan::shell_words;

use super::Object;

/// The image of the init containers that wait for a dependency's Service.
pub(crate) const WAIT_IMAGE: &str = "busybox:1.36";
/// Readiness probe timing (the deployment document's values).
pub(crate) const READINESS_DELAY_SECONDS: u64 = 5;
pub(crate) const READINESS_PERIOD_SECONDS: u64 = 5;
/// The size of each volume claim when `k8s.storage` does not say.
pub(crate) const DEFAULT_STORAGE: &str = "1Gi";

/// Renders the `selected` services (all when empty is not meant: pass the names) in stack order.
pub(crate) fn render(stack: &Stack, selected: &[String]) -> Result<Vec<Object>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let ns = namespace(stack);
    if !is_dns_label(&ns) {
        errors.push(
            Diagnostic::new(format!(
                "project name `{}` is not a valid Kubernetes namespace",
                stack.name
            ))
            .at_value(KeyPath::root().key("name"))
            .help("set `k8s.namespace` to up to 63 lowercase letters, digits and `-`"),
        );
    }
    let services: Vec<&Service> = stack
        .services
        .values()
        .filter(|s| selected.contains(&s.name))
        .collect();
    for svc in &services {
        check_service(svc, &mut errors);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut out = vec![Object {
        service: None,
        kind: "Namespace",
        name: ns.clone(),
        value: json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": ns },
        }),
    }];
    for svc in &services {
        out.extend(service_objects(stack, svc, &ns));
    }
    out.extend(ingresses(stack, &services, &ns));
    Ok(out)
}

/// `k8s.namespace`, else the project name made a DNS label.
pub(crate) fn namespace(stack: &Stack) -> String {
    stack
        .k8s
        .namespace
        .clone()
        .unwrap_or_else(|| stack.name.replace('_', "-").trim_matches('-').to_string())
}

fn check_service(svc: &Service, errors: &mut Vec<Diagnostic>) {
    let path = KeyPath::root().key("services").key(svc.name.clone());
    // Services and containers are DNS-1035 labels: they must also start with a letter.
    if !is_dns_label(&svc.name) || !svc.name.starts_with(|c: char| c.is_ascii_lowercase()) {
        errors.push(
            Diagnostic::new(format!(
                "service name `{}` is not a valid Kubernetes name",
                svc.name
            ))
            .at(path.clone())
            .help("Kubernetes names are up to 63 lowercase letters, digits and `-`, starting with a letter; rename the service"),
        );
    }
    if !svc.is_container() && svc.k8s.image.is_none() {
        let at = if svc.k8s.written {
            path.key("k8s")
        } else {
            path.clone()
        };
        errors.push(
            Diagnostic::new(format!(
                "native process `{}` has no `k8s.image` to run in the cluster",
                svc.name
            ))
            .at(at)
            .help(format!(
                "build an image for it and name it: `k8s: {{ image: registry.example.com/{}:1.0 }}`; or render only other services",
                svc.name
            )),
        );
    }
    if let Liveness::Probe {
        check: LiveCheck::Http(p),
        ..
    } = &svc.k8s.liveness
    {
        if p.starts_with('/') && svc.ports.is_empty() {
            errors.push(
                Diagnostic::new(format!(
                    "the `liveness` of `{}` is a path but the service publishes no port",
                    svc.name
                ))
                .at_value(path.key("k8s").key("liveness").key("http"))
                .help("add the port it listens on to its `ports`, or give a full URL"),
            );
        }
    }
}

/// The in-cluster name of the Service for `service`'s container port `port`: the service's own
/// name for its first port, `SERVICE-PORT` for the others.
pub(crate) fn service_host(stack: &Stack, service: &str, port: u16) -> String {
    let first = stack
        .services
        .get(service)
        .and_then(|s| s.ports.first())
        .map(|p| p.container_port);
    match first {
        Some(p) if p != port => format!("{service}-{port}"),
        _ => service.to_string(),
    }
}

/// A value as the cluster needs it: `127.0.0.1:${port:postgres:5432}` (or `localhost:`) becomes
/// the Service address `postgres:5432`, any other `${port:SVC:N}` becomes `N` (in the cluster a
/// Service port is the container port), and `$$` becomes `$`.
pub(crate) fn cluster_value(s: &str, host: &dyn Fn(&str, u16) -> String) -> String {
    const LOOPBACK: [&str; 4] = ["127.0.0.1:", "localhost:", "0.0.0.0:", "[::1]:"];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'scan: while !rest.is_empty() {
        for lo in LOOPBACK {
            if let Some(after) = rest.strip_prefix(lo) {
                if let Some(body) = after.strip_prefix("${port:") {
                    if let Some(end) = body.find('}') {
                        if let Ok(r) = crate::config::interpolate::parse_port_ref(&body[..end]) {
                            // Not after a `$` escape: `$$` was copied whole below.
                            out.push_str(&host(&r.service, r.port));
                            out.push(':');
                            out.push_str(&r.port.to_string());
                            rest = &body[end + 1..];
                            continue 'scan;
                        }
                    }
                }
            }
        }
        let mut chars = rest.chars();
        let c = chars.next().expect("rest is not empty");
        if c == '$' && rest.starts_with("$$") {
            out.push_str("$$");
            rest = &rest[2..];
        } else {
            out.push(c);
            rest = chars.as_str();
        }
    }
    resolve_port_refs(&out, |r| Some(r.port))
}

fn service_objects(stack: &Stack, svc: &Service, ns: &str) -> Vec<Object> {
    let name = svc.name.as_str();
    let host = |s: &str, p: u16| service_host(stack, s, p);
    let obj = |kind: &'static str, oname: String, value: Value| Object {
        service: Some(name.to_string()),
        kind,
        name: oname,
        value,
    };
    let meta = |oname: &str| json!({ "name": oname, "namespace": ns });
    let mut out = Vec::new();

    // Environment: every value in the ConfigMap or the Secret, by `config`'s rule.
    let config_name = format!("{name}-config");
    let secret_name = format!("{name}-secrets");
    let mut config = Map::new();
    let mut secret = Map::new();
    let mut env = Vec::new();
    let mut merged: IndexMap<&str, &str> = svc
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in &svc.k8s.environment {
        merged.insert(k, v);
    }
    for (k, v) in merged {
        let value = cluster_value(v, &host);
        // One rule with `config`: secret keys, URLs with passwords, and interpolated secrets.
        if is_secret_entry(k, &value)
            || stack
                .secret_values
                .iter()
                .any(|x| value.contains(x.as_str()))
        {
            secret.insert(k.to_string(), Value::String(value));
            env.push(json!({ "name": k, "valueFrom": { "secretKeyRef": { "name": secret_name, "key": k } } }));
        } else {
            config.insert(k.to_string(), Value::String(value));
            env.push(json!({ "name": k, "valueFrom": { "configMapKeyRef": { "name": config_name, "key": k } } }));
        }
    }
    // redis-cli reads the password from REDISCLI_AUTH, so the probe never shows it.
    if let Some(Probe::Redis {
        password: Some(pw), ..
    }) = svc.ready.as_ref().map(|r| &r.probe)
    {
        if !pw.is_empty() {
            secret.insert("REDISCLI_AUTH".into(), Value::String(pw.clone()));
            env.push(json!({ "name": "REDISCLI_AUTH", "valueFrom": { "secretKeyRef": { "name": secret_name, "key": "REDISCLI_AUTH" } } }));
        }
    }
    if !config.is_empty() {
        out.push(obj(
            "ConfigMap",
            config_name.clone(),
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&config_name), "data": config }),
        ));
    }
    if !secret.is_empty() {
        out.push(obj(
            "Secret",
            secret_name.clone(),
            json!({ "apiVersion": "v1", "kind": "Secret", "metadata": meta(&secret_name), "type": "Opaque", "stringData": secret }),
        ));
    }

    // The container.
    let (image, command, working_dir, volumes) = match &svc.kind {
        ServiceKind::Container {
            image,
            command,
            working_dir,
            volumes,
        } => (
            svc.k8s.image.clone().unwrap_or_else(|| image.clone()),
            svc.k8s.command.clone().or_else(|| command.clone()),
            working_dir.clone(),
            volumes.as_slice(),
        ),
        ServiceKind::Process { .. } => (
            svc.k8s.image.clone().unwrap_or_default(),
            svc.k8s.command.clone(),
            None,
            &[][..],
        ),
    };
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    c.insert("image".into(), json!(image));
    if let Some(cmd) = &command {
        let args: Vec<String> = match cmd {
            Command::Shell(s) => shell_words(&cluster_value(s, &host)),
            Command::Argv(v) => v.iter().map(|a| cluster_value(a, &host)).collect(),
        };
        c.insert("args".into(), json!(args));
    }
    if let Some(w) = working_dir {
        c.insert("workingDir".into(), json!(w));
    }
    if !svc.ports.is_empty() {
        let ports: Vec<Value> = svc
            .ports
            .iter()
            .map(|p| match p.protocol {
                Protocol::Tcp => json!({ "containerPort": p.container_port }),
                Protocol::Udp => json!({ "containerPort": p.container_port, "protocol": "UDP" }),
            })
            .collect();
        c.insert("ports".into(), json!(ports));
    }
    if !env.is_empty() {
        c.insert("env".into(), json!(env));
    }
    if !svc.k8s.resources.is_empty() {
        c.insert(
            "resources".into(),
            serde_json::to_value(&svc.k8s.resources).unwrap_or(Value::Null),
        );
    }
    let mut ready = svc.ready.as_ref().and_then(|r| readiness_handler(&r.probe));
    // An http probe written with a literal host port (`http://127.0.0.1:16333/`) checks the
    // container port that host port publishes.
    if let Some(get) = ready.as_mut().and_then(|h| h.get_mut("httpGet")) {
        let port = get["port"].as_u64();
        if let Some(m) = svc
            .ports
            .iter()
            .find(|m| m.host_port.map(u64::from) == port && m.protocol == Protocol::Tcp)
        {
            get["port"] = json!(m.container_port);
        }
    }
    if let Some(live) = liveness(svc) {
        c.insert("livenessProbe".into(), live);
    }
    if let Some(mut handler) = ready {
        handler.insert("initialDelaySeconds".into(), json!(READINESS_DELAY_SECONDS));
        handler.insert("periodSeconds".into(), json!(READINESS_PERIOD_SECONDS));
        c.insert("readinessProbe".into(), Value::Object(handler));
    }
    let named: Vec<(&String, &String, bool)> = volumes
        .iter()
        .filter_map(|v| match v {
            Volume::Named {
                name,
                target,
                read_only,
            } => Some((name, target, *read_only)),
            Volume::Bind { .. } | Volume::Anonymous { .. } | Volume::Tmpfs { .. } => None,
        })
        .collect();
    if !named.is_empty() {
        let mounts: Vec<Value> = named
            .iter()
            .map(|(n, target, ro)| {
                let mut m = json!({ "name": claim_name(n), "mountPath": target });
                if *ro {
                    m["readOnly"] = json!(true);
                }
                m
            })
            .collect();
        c.insert("volumeMounts".into(), json!(mounts));
    }

    // The pod.
    let mut pod = Map::new();
    let init = init_containers(stack, svc);
    if !init.is_empty() {
        pod.insert("initContainers".into(), json!(init));
    }
    pod.insert("containers".into(), json!([Value::Object(c)]));
    if svc.stop_grace_period != crate::config::validate::DEFAULT_STOP_GRACE {
        pod.insert(
            "terminationGracePeriodSeconds".into(),
            json!(svc.stop_grace_period.as_secs_f64().ceil() as u64),
        );
    }
    let mut spec = Map::new();
    if let Some(r) = svc.k8s.replicas {
        spec.insert("replicas".into(), json!(r));
    }
    let workload_kind = if named.is_empty() {
        "Deployment"
    } else {
        "StatefulSet"
    };
    if workload_kind == "StatefulSet" {
        spec.insert("serviceName".into(), json!(name));
    }
    spec.insert("selector".into(), json!({ "matchLabels": { "app": name } }));
    spec.insert(
        "template".into(),
        json!({ "metadata": { "labels": { "app": name } }, "spec": pod }),
    );
    if !named.is_empty() {
        let storage = svc.k8s.storage.as_deref().unwrap_or(DEFAULT_STORAGE);
        let claims: Vec<Value> = named
            .iter()
            .map(|(n, _, _)| {
                json!({
                    "metadata": { "name": claim_name(n) },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": { "requests": { "storage": storage } },
                    },
                })
            })
            .collect();
        spec.insert("volumeClaimTemplates".into(), json!(claims));
    }
    out.push(obj(
        workload_kind,
        name.to_string(),
        json!({ "apiVersion": "apps/v1", "kind": workload_kind, "metadata": meta(name), "spec": spec }),
    ));

    // A ClusterIP Service per published container port (both protocols of a port in one).
    let mut by_port: IndexMap<u16, Vec<Protocol>> = IndexMap::new();
    for p in &svc.ports {
        let protos = by_port.entry(p.container_port).or_default();
        if !protos.contains(&p.protocol) {
            protos.push(p.protocol);
        }
    }
    for (port, protos) in by_port {
        let sname = service_host(stack, name, port);
        let ports: Vec<Value> = protos
            .iter()
            .map(|proto| {
                let mut p = json!({ "port": port, "targetPort": port });
                if protos.len() > 1 {
                    p["name"] = json!(format!(
                        "{}-{port}",
                        if *proto == Protocol::Udp {
                            "udp"
                        } else {
                            "tcp"
                        }
                    ));
                }
                if *proto == Protocol::Udp {
                    p["protocol"] = json!("UDP");
                }
                p
            })
            .collect();
        out.push(obj(
            "Service",
            sname.clone(),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(&sname),
                "spec": { "selector": { "app": name }, "ports": ports, "type": "ClusterIP" },
            }),
        ));
    }

    if let Some(h) = &svc.k8s.hpa {
        let hname = format!("{name}-hpa");
        let mut metrics = Vec::new();
        for (what, target) in [("cpu", h.cpu), ("memory", h.memory)] {
            if let Some(t) = target {
                metrics.push(json!({
                    "type": "Resource",
                    "resource": { "name": what, "target": { "type": "Utilization", "averageUtilization": t } },
                }));
            }
        }
        out.push(obj(
            "HorizontalPodAutoscaler",
            hname.clone(),
            json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": meta(&hname),
                "spec": {
                    "scaleTargetRef": { "apiVersion": "apps/v1", "kind": workload_kind, "name": name },
                    "minReplicas": h.min,
                    "maxReplicas": h.max,
                    "metrics": metrics,
                },
            }),
        ));
    }
    out
}

/// `postgres_data` → `postgres-data`: claim names are DNS labels.
fn claim_name(volume: &str) -> String {
    volume.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// One init container per dependency that has a Service: it waits until the Service answers,
/// which it does once the dependency's pod is ready.
fn init_containers(stack: &Stack, svc: &Service) -> Vec<Value> {
    svc.depends_on
        .keys()
        .filter_map(|dep| {
            let port = stack.services.get(dep)?.ports.first()?.container_port;
            let host = service_host(stack, dep, port);
            Some(json!({
                "name": format!("wait-for-{dep}"),
                "image": WAIT_IMAGE,
                "command": [
                    "sh",
                    "-c",
                    format!("until nc -z -w 2 {host} {port}; do echo waiting for {host}:{port}; sleep 2; done"),
                ],
            }))
        })
        .collect()
}

/// The readiness check for a `ready:` probe, run inside the pod; `None` where Kubernetes has no
/// equivalent (`log`, the image's own `healthcheck`).
pub(crate) fn readiness_handler(probe: &Probe) -> Option<Map<String, Value>> {
    let exec = |argv: Vec<String>| json!({ "exec": { "command": argv } });
    let bash = |script: String| exec(vec!["bash".into(), "-c".into(), script]);
    let v = match probe {
        Probe::Http(url) => json!({ "httpGet": http_get(&resolve_port_refs(url, |r| Some(r.port))) }),
        Probe::Tcp(port) => json!({ "tcpSocket": { "port": port } }),
        Probe::Exec(cmd) => exec(exec_argv(cmd)),
        Probe::Log(_) | Probe::Healthcheck => return None,
        Probe::Postgres {
            port,
            user,
            database,
            ..
        } => exec(vec![
            "pg_isready".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-U".into(),
            user.clone(),
            "-d".into(),
            database.clone(),
        ]),
        Probe::Redis { port, .. } => exec(vec![
            "sh".into(),
            "-c".into(),
            format!("redis-cli -h 127.0.0.1 -p {port} ping | grep -q PONG"),
        ]),
        // `ruok`, or `srvr` where the server does not allow `ruok` (as the local probe does).
        Probe::Zookeeper { port } => bash(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf ruok >&3 && grep -q imok <&3 || {{ exec 4<>/dev/tcp/127.0.0.1/{port} && printf srvr >&4 && grep -q 'Zookeeper version' <&4; }}"
        )),
        // ApiVersions v0 (api key 18, correlation id 1, client id "ds"): a broker answers with
        // a size-prefixed response.
        Probe::Kafka { port } => bash(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf '\\x00\\x00\\x00\\x0c\\x00\\x12\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x02ds' >&3 && test \"$(head -c 4 <&3 | wc -c)\" -eq 4"
        )),
        Probe::Qdrant { port } => json!({ "httpGet": { "path": "/readyz", "port": port } }),
    };
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn exec_argv(cmd: &Command) -> Vec<String> {
    // Inside its own pod a service reaches itself on loopback: only the port number is needed.
    let local = |s: &str| resolve_port_refs(s, |r| Some(r.port));
    match cmd {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), local(s)],
        Command::Argv(v) => v.iter().map(|a| local(a)).collect(),
    }
}

/// `http://127.0.0.1:5000/ready?x=1` → `{path: /ready?x=1, port: 5000}` (and `scheme: HTTPS`).
pub(crate) fn http_get(url: &str) -> Value {
    let (https, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("https"), rest),
        None => (false, url),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let port = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => p.parse::<u16>().ok(),
        _ => None,
    }
    .unwrap_or(if https { 443 } else { 80 });
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let mut v = json!({ "path": path, "port": port });
    if https {
        v["scheme"] = json!("HTTPS");
    }
    v
}

/// `k8s.liveness`, or the `/health` convention beside an http readiness probe on `/ready` or
/// `/health`.
fn liveness(svc: &Service) -> Option<Value> {
    let (mut handler, delay, period) = match &svc.k8s.liveness {
        Liveness::Off => return None,
        Liveness::Convention => {
            let Some(Probe::Http(url)) = svc.ready.as_ref().map(|r| &r.probe) else {
                return None;
            };
            let get = http_get(&resolve_port_refs(url, |r| Some(r.port)));
            let path = get["path"].as_str().unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            if path != "/ready" && path != "/health" {
                return None;
            }
            let mut get = get.clone();
            get["path"] = json!("/health");
            let m = json!({ "httpGet": get });
            (
                m,
                crate::config::k8s::DEFAULT_LIVENESS_DELAY,
                crate::config::k8s::DEFAULT_LIVENESS_PERIOD,
            )
        }
        Liveness::Probe {
            check,
            initial_delay,
            period,
        } => {
            let m = match check {
                LiveCheck::Http(p) if p.starts_with('/') => {
                    let port = svc.ports.first().map_or(80, |p| p.container_port);
                    json!({ "httpGet": { "path": p, "port": port } })
                }
                LiveCheck::Http(url) => {
                    json!({ "httpGet": http_get(&resolve_port_refs(url, |r| Some(r.port))) })
                }
                LiveCheck::Tcp(port) => json!({ "tcpSocket": { "port": port } }),
                LiveCheck::Exec(cmd) => json!({ "exec": { "command": exec_argv(cmd) } }),
            };
            (m, *initial_delay, *period)
        }
    };
    handler["initialDelaySeconds"] = json!(delay.as_secs_f64().ceil() as u64);
    handler["periodSeconds"] = json!((period.as_secs_f64().ceil() as u64).max(1));
    Some(handler)
}

/// One Ingress per `k8s.ingress` name: rules by host in order of appearance, TLS by secret.
fn ingresses(stack: &Stack, services: &[&Service], ns: &str) -> Vec<Object> {
    struct Ing {
        class: Option<String>,
        annotations: Map<String, Value>,
        rules: IndexMap<Option<String>, Vec<Value>>,
        tls: IndexMap<String, Vec<String>>,
    }
    let mut by_name: IndexMap<String, Ing> = IndexMap::new();
    for svc in services {
        for r in &svc.k8s.ingress {
            let name = r.name.clone().unwrap_or_else(|| format!("{ns}-ingress"));
            let ing = by_name.entry(name).or_insert_with(|| Ing {
                class: None,
                annotations: Map::new(),
                rules: IndexMap::new(),
                tls: IndexMap::new(),
            });
            if ing.class.is_none() {
                ing.class = r.class.clone();
            }
            for (k, v) in &r.annotations {
                ing.annotations.insert(k.clone(), json!(v));
            }
            ing.rules.entry(r.host.clone()).or_default().push(json!({
                "path": r.path,
                "pathType": "Prefix",
                "backend": { "service": {
                    "name": service_host(stack, &svc.name, r.port),
                    "port": { "number": r.port },
                } },
            }));
            if let Some(secret) = &r.tls {
                let hosts = ing.tls.entry(secret.clone()).or_default();
                if let Some(h) = &r.host {
                    if !hosts.contains(h) {
                        hosts.push(h.clone());
                    }
                }
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, ing)| {
            let mut meta = json!({ "name": name, "namespace": ns });
            if !ing.annotations.is_empty() {
                meta["annotations"] = Value::Object(ing.annotations);
            }
            let mut spec = Map::new();
            if let Some(c) = ing.class {
                spec.insert("ingressClassName".into(), json!(c));
            }
            if !ing.tls.is_empty() {
                let tls: Vec<Value> = ing
                    .tls
                    .into_iter()
                    .map(|(secret, hosts)| {
                        if hosts.is_empty() {
                            json!({ "secretName": secret })
                        } else {
                            json!({ "hosts": hosts, "secretName": secret })
                        }
                    })
                    .collect();
                spec.insert("tls".into(), json!(tls));
            }
            let rules: Vec<Value> = ing
                .rules
                .into_iter()
                .map(|(host, paths)| {
                    let mut r = Map::new();
                    if let Some(h) = host {
                        r.insert("host".into(), json!(h));
                    }
                    r.insert("http".into(), json!({ "paths": paths }));
                    Value::Object(r)
                })
                .collect();
            spec.insert("rules".into(), json!(rules));
            Object {
                service: None,
                kind: "Ingress",
                name: name.clone(),
                value: json!({
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": meta,
                    "spec": spec,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str, p: u16) -> String {
        if s == "db" && p == 9187 {
            "db-9187".into()
        } else {
            s.into()
        }
    }

    #[test]
    fn addresses_are_rewritten_for_the_cluster() {
        let cases = [
            (
                "postgresql://user:pass@127.0.0.1:${port:postgres:5432}/ensurestudy",
                "postgresql://user:pass@postgres:5432/ensurestudy",
            ),
            (
                "redis://localhost:${port:redis:6379}/0",
                "redis://redis:6379/0",
            ),
            (
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://127.0.0.1:${port:kafka:9092}",
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://kafka:9092",
            ),
            (
                "http://0.0.0.0:${port:db:9187}/metrics",
                "http://db-9187:9187/metrics",
            ),
            ("${port:frontend:3000}", "3000"),
            ("--port ${port:api:8080}", "--port 8080"),
            ("127.0.0.1:$${port:db:1}", "127.0.0.1:${port:db:1}"),
            ("cost: 5$$", "cost: 5$"),
            ("plain 127.0.0.1:5432", "plain 127.0.0.1:5432"),
            ("héllo", "héllo"),
        ];
        for (input, want) in cases {
            assert_eq!(cluster_value(input, &host), want, "{input}");
        }
    }

    #[test]
    fn http_urls_become_http_get() {
        let cases = [
            (
                "http://127.0.0.1:5000/ready",
                json!({"path": "/ready", "port": 5000}),
            ),
            ("http://127.0.0.1:3000/", json!({"path": "/", "port": 3000})),
            ("http://localhost:8000", json!({"path": "/", "port": 8000})),
            (
                "http://localhost/x?y=1",
                json!({"path": "/x?y=1", "port": 80}),
            ),
            (
                "https://u:p@[::1]:8443/h",
                json!({"path": "/h", "port": 8443, "scheme": "HTTPS"}),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(http_get(url), want, "{url}");
        }
    }

    #[test]
    fn probes_map_to_in_pod_checks() {
        let argv = |p: &Probe| readiness_handler(p).map(|m| Value::Object(m).to_string());
        let cases: Vec<(Probe, Option<&str>)> = vec![
            (
                Probe::Http("http://127.0.0.1:${port:core-service:5000}/ready".into()),
                Some(r#"{"httpGet":{"path":"/ready","port":5000}}"#),
            ),
            (Probe::Tcp(6379), Some(r#"{"tcpSocket":{"port":6379}}"#)),
            (
                Probe::Exec(Command::Shell("check --port ${port:me:1}".into())),
                Some(r#"{"exec":{"command":["sh","-c","check --port 1"]}}"#),
            ),
            (
                Probe::Exec(Command::Argv(vec!["a".into(), "b".into()])),
                Some(r#"{"exec":{"command":["a","b"]}}"#),
            ),
            (Probe::Log("ready".into()), None),
            (Probe::Healthcheck, None),
            (
                Probe::Postgres {
                    port: 5432,
                    user: "user".into(),
                    password: "pass".into(),
                    database: "db".into(),
                },
                Some(
                    r#"{"exec":{"command":["pg_isready","-h","127.0.0.1","-p","5432","-U","user","-d","db"]}}"#,
                ),
            ),
            (
                Probe::Redis {
                    port: 6379,
                    password: Some("secret".into()),
                },
                Some(
                    r#"{"exec":{"command":["sh","-c","redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG"]}}"#,
                ),
            ),
            (
                Probe::Zookeeper { port: 2181 },
                Some(
                    r#"{"exec":{"command":["bash","-c","exec 3<>/dev/tcp/127.0.0.1/2181 && printf ruok >&3 && grep -q imok <&3 || { exec 4<>/dev/tcp/127.0.0.1/2181 && printf srvr >&4 && grep -q 'Zookeeper version' <&4; }"]}}"#,
                ),
            ),
            (
                Probe::Qdrant { port: 6333 },
                Some(r#"{"httpGet":{"path":"/readyz","port":6333}}"#),
            ),
        ];
        for (probe, want) in cases {
            assert_eq!(argv(&probe).as_deref(), want, "{probe:?}");
        }
        let kafka = argv(&Probe::Kafka { port: 9092 }).unwrap();
        assert!(kafka.contains("/dev/tcp/127.0.0.1/9092"), "{kafka}");
        assert!(
            kafka.contains(r"\\x00\\x12"),
            "the ApiVersions key: {kafka}"
        );
    }

    #[test]
    fn the_secret_split_follows_configs_rule() {
        let stack = crate::config::test_stack(
            "name: demo\nservices:\n  db:\n    image: postgres:15\n    ports: [\"5432\"]\n  api:\n    image: api:1\n    environment:\n      DATABASE_URL: postgresql://u:pw@127.0.0.1:${port:db:5432}/d\n      PLAIN_URL: http://127.0.0.1:${port:db:5432}/\n      API_TOKEN: t0k3n\n      EMPTY_KEY: \"\"\n      MODE: prod\n",
        );
        let objects = render(&stack, &["db".into(), "api".into()]).unwrap();
        let find = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o.kind == kind && o.name == name)
                .map(|o| o.value.clone())
                .unwrap_or_else(|| panic!("{kind} {name}"))
        };
        let secret = find("Secret", "api-secrets");
        let config = find("ConfigMap", "api-config");
        let cases = [
            ("DATABASE_URL", Some("postgresql://u:pw@db:5432/d"), None),
            ("PLAIN_URL", None, Some("http://db:5432/")),
            ("API_TOKEN", Some("t0k3n"), None),
            ("EMPTY_KEY", Some(""), None),
            ("MODE", None, Some("prod")),
        ];
        for (key, in_secret, in_config) in cases {
            assert_eq!(secret["stringData"][key].as_str(), in_secret, "{key}");
            assert_eq!(config["data"][key].as_str(), in_config, "{key}");
        }
        // Secret values appear nowhere but in the Secret.
        for o in objects.iter().filter(|o| o.kind != "Secret") {
            let text = o.value.to_string();
            assert!(
                !text.contains("t0k3n") && !text.contains(":pw@"),
                "{}",
                o.name
            );
        }
    }
}
