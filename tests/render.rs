//! `render k8s` and `render compose` on the reference stack and the fixture stacks: strict
//! schema validation, a snapshot, a field-by-field comparison with the deployment document's
//! manifests, the error for a process without an image, and the Compose round trip.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// The Kubernetes version whose official schemas the manifests are checked against (bundled
/// with kubernetes-validate 1.37.0, installed by scripts/prepare-test-env.sh).
const KUBERNETES_VERSION: &str = "1.37.0";

fn kubernetes_validate() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("DEVSTACK_KUBERNETES_VALIDATE") {
        candidates.push(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        candidates.push(c.join("devstack/kubernetes-validate/bin/kubernetes-validate"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubernetes-validate is not installed: run scripts/prepare-test-env.sh (it installs it into ~/.cache/devstack/kubernetes-validate)"
            )
        })
}

/// Runs kubernetes-validate in strict mode on multi-document YAML; panics with its report.
fn validate_strictly(label: &str, yaml: &str) -> usize {
    let mut child = Command::new(kubernetes_validate())
        .args(["--strict", "-k", KUBERNETES_VERSION, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubernetes-validate runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(yaml.as_bytes())
            .expect("writing to kubernetes-validate");
    }
    let out = child
        .wait_with_output()
        .expect("kubernetes-validate finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{label}: rendered manifests do not validate:\n{report}"
    );
    let passed = report.matches(" passed for resource ").count();
    let docs = documents(yaml).len();
    assert_eq!(
        passed, docs,
        "{label}: every document is checked:\n{report}"
    );
    passed
}

fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The reference stack's secrets as its defaults, whatever a local `.env` says (the
/// environment wins over `.env`).
const SECRETS: &[(&str, &str)] = &[
    ("JWT_SECRET_KEY", "dev-only-jwt-secret"),
    ("HUGGINGFACE_API_KEY", ""),
];

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    devstack_env(dir, args, SECRETS)
}

fn render_k8s(dir: &Path, files: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.extend(["render", "k8s"]);
    run(dir, &args)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} `{name}` rendered"))
}

#[test]
fn the_reference_stack_renders_to_valid_manifests() {
    let out = render_k8s(&root(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let n = validate_strictly("stack.yaml", &stdout(&out));
    // Namespace; 9 workloads; 8 Services; 7 ConfigMaps; 4 Secrets; 1 HPA; 1 Ingress.
    assert_eq!(n, 31);
}

/// Every fixture stack: one that stands alone renders and validates, or, when it has native
/// processes without `k8s.image`, fails with the located error naming each of them. An overlay
/// (not a stack on its own) is rendered on top of base.yaml.
#[test]
fn every_fixture_stack_renders_or_names_its_imageless_processes() {
    let dir = fixtures().join("valid");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("fixtures/valid exists")
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.ends_with(".yaml").then_some(n)
        })
        .collect();
    names.sort();
    let (mut rendered, mut refused) = (0, 0);
    for name in &names {
        let alone = devstack(&dir, &["-f", name, "validate"]).status.success();
        let files: Vec<&str> = if alone {
            vec![name.as_str()]
        } else {
            vec!["base.yaml", name.as_str()]
        };
        let mut config_args: Vec<&str> = files.iter().flat_map(|f| ["-f", *f]).collect();
        config_args.extend(["config", "--json"]);
        let config = devstack(&dir, &config_args);
        assert_eq!(config.status.code(), Some(0), "{name}: {}", stderr(&config));
        let config: Value = serde_json::from_slice(&config.stdout).unwrap();
        let imageless: Vec<String> = config["services"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| s["kind"] == "process" && s["k8s"]["image"].is_null())
            .map(|(n, _)| n.clone())
            .collect();

        let out = render_k8s(&dir, &files);
        let label = files.join(" + ");
        if imageless.is_empty() {
            assert_eq!(out.status.code(), Some(0), "{label}: {}", stderr(&out));
            validate_strictly(&label, &stdout(&out));
            rendered += 1;
        } else {
            assert_eq!(out.status.code(), Some(2), "{label}: {}", stdout(&out));
            assert!(
                stdout(&out).is_empty(),
                "{label}: nothing rendered on error"
            );
            let err = stderr(&out);
            for svc in &imageless {
                assert!(
                    err.contains(&format!("native process `{svc}` has no `k8s.image`")),
                    "{label}: names `{svc}`:\n{err}"
                );
            }
            assert!(err.contains(".yaml:"), "{label}: located:\n{err}");
            refused += 1;
        }
    }
    assert!(
        rendered >= 1 && refused >= 1,
        "{rendered} rendered, {refused} refused"
    );
}

#[test]
fn render_k8s_snapshot_of_the_reference_stack() {
    let out = render_k8s(&root(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("render_k8s_reference_stack", stdout(&out));
}

#[test]
fn the_kitchen_sink_fixture_renders_every_feature() {
    let out = render_k8s(&fixtures().join("valid"), &["k8s-all.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    insta::assert_snapshot!("render_k8s_kitchen_sink", text);
    let docs = documents(&text);
    assert_eq!(
        find(&docs, "Namespace", "kitchen-sink")["kind"],
        "Namespace",
        "`_` becomes `-`"
    );

    let cache = find(&docs, "StatefulSet", "cache");
    assert_eq!(
        cache["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    let dns = find(&docs, "Service", "dns");
    assert_eq!(
        dns["spec"]["ports"],
        json!([
            { "port": 53, "targetPort": 53, "name": "udp-53", "protocol": "UDP" },
            { "port": 53, "targetPort": 53, "name": "tcp-53" },
        ])
    );
    find(&docs, "Service", "dns-9153");
    let dns_pod = &find(&docs, "Deployment", "dns")["spec"]["template"]["spec"];
    assert_eq!(dns_pod["terminationGracePeriodSeconds"], 30);

    let api = find(&docs, "Deployment", "api");
    let c = &api["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], json!(["serve", "--port", "8080"]));
    assert_eq!(
        c["livenessProbe"],
        json!({ "tcpSocket": { "port": 8080 }, "initialDelaySeconds": 3, "periodSeconds": 20 })
    );
    let waits: Vec<&str> = api["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        waits,
        ["wait-for-cache", "wait-for-broker"],
        "migrate publishes no port"
    );
    let api_config = find(&docs, "ConfigMap", "api-config");
    assert_eq!(
        api_config["data"]["METRICS"],
        "http://dns-9153:9153/metrics"
    );
    assert_eq!(api_config["data"]["FLAG_ON"], "on");
    assert_eq!(
        find(&docs, "Secret", "api-secrets")["stringData"]["CACHE_URL"],
        "redis://:s3cret@cache:6379/0"
    );
    let hpa = find(&docs, "HorizontalPodAutoscaler", "api-hpa");
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(hpa["spec"]["metrics"].as_array().unwrap().len(), 1);

    let vectors = find(&docs, "StatefulSet", "vectors");
    let vc = &vectors["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        vc["readinessProbe"]["httpGet"]["port"], 6333,
        "host port 16333 → container port"
    );
    assert_eq!(
        vc["volumeMounts"].as_array().unwrap().len(),
        1,
        "bind mounts are not rendered"
    );

    let admin = find(&docs, "Ingress", "admin");
    assert_eq!(
        admin["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "api-9090"
    );
    assert_eq!(
        admin["spec"]["tls"],
        json!([{ "hosts": ["admin.example.test"], "secretName": "admin-tls" }])
    );
    let main = find(&docs, "Ingress", "kitchen-sink-ingress");
    assert_eq!(main["spec"]["ingressClassName"], "nginx");
    assert_eq!(main["spec"]["rules"][0]["host"], "example.test");
    let web = &find(&docs, "Deployment", "web")["spec"]["template"]["spec"]["containers"][0];
    assert!(web["livenessProbe"].is_null(), "liveness: false");
    let worker = &find(&docs, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        worker["readinessProbe"].is_null(),
        "log readiness has no Kubernetes probe"
    );
}

#[test]
fn a_process_without_an_image_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "name: demo\nservices:\n  db:\n    image: postgres:15\n    ports: [\"5432\"]\n  api:\n    command: ./serve\n    depends_on: [db]\n    k8s:\n      replicas: 2\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["render", "k8s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(err.contains("stack.yaml:9:5"), "{err}");
    insta::assert_snapshot!("render_k8s_process_without_image", err);

    // Rendering only the services that can be rendered works.
    let out = devstack(dir.path(), &["render", "k8s", "db"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kinds: Vec<String> = documents(&stdout(&out))
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(kinds, ["Namespace demo", "Deployment db", "Service db"]);
}

#[test]
fn output_folder_gets_one_file_per_kind_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("manifests");
    let out = run(
        &root(),
        &[
            "render",
            "k8s",
            "core-service",
            "-o",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut files: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "00-namespace.yaml",
            "core-service-configmap.yaml",
            "core-service-deployment.yaml",
            "core-service-horizontalpodautoscaler.yaml",
            "core-service-secret.yaml",
            "core-service-service.yaml",
            "ensurestudy-ingress-ingress.yaml",
            "postgres-configmap.yaml",
            "postgres-secret.yaml",
            "postgres-service.yaml",
            "postgres-statefulset.yaml",
            "redis-service.yaml",
            "redis-statefulset.yaml",
        ]
    );
    let all: String = files
        .iter()
        .map(|f| fs::read_to_string(target.join(f)).unwrap() + "---\n")
        .collect();
    validate_strictly("-o DIR", &all);
    // Secret values are only in the Secret files.
    for f in &files {
        let text = fs::read_to_string(target.join(f)).unwrap();
        let has_secret = text.contains("dev-only-jwt-secret") || text.contains(":pass@");
        assert_eq!(
            has_secret,
            f.ends_with("-secret.yaml") && f.starts_with("core"),
            "{f}"
        );
    }
}

#[test]
fn secret_values_appear_only_in_secrets() {
    let out = render_k8s(&root(), &[]);
    let docs = documents(&stdout(&out));
    let secrets = [
        "dev-only-jwt-secret",
        "user:pass@",
        "POSTGRES_PASSWORD: pass",
    ];
    for d in &docs {
        let text = serde_yaml::to_string(d).unwrap();
        let found: Vec<&str> = secrets
            .iter()
            .copied()
            .filter(|s| text.contains(s))
            .collect();
        if d["kind"] == "Secret" {
            continue;
        }
        assert!(
            found.is_empty(),
            "{} {} shows {found:?}",
            d["kind"],
            d["metadata"]["name"]
        );
    }
    let pg = find(&docs, "Secret", "postgres-secrets");
    assert_eq!(pg["stringData"]["POSTGRES_PASSWORD"], "pass");
    let core = find(&docs, "Secret", "core-service-secrets");
    assert_eq!(
        core["stringData"]["DATABASE_URL"], "postgresql://user:pass@postgres:5432/ensurestudy",
        "the host address becomes the in-cluster one"
    );
}

// ---- against the deployment document ----

/// Every leaf where `want` (the document) and `got` (rendered) differ, as `(path, want, got)`;
/// a side that lacks the field shows `null`.
fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let mut keys: Vec<&String> = w.keys().collect();
            keys.extend(g.keys().filter(|k| !w.contains_key(*k)));
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    w.get(k).unwrap_or(&Value::Null),
                    g.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            for i in 0..w.len().max(g.len()) {
                diff(
                    &format!("{path}[{i}]"),
                    w.get(i).unwrap_or(&Value::Null),
                    g.get(i).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (w, g) if w == g => {}
        // A whole subtree on one side only is one difference.
        (w, g) => out.push((path.to_string(), w.clone(), g.clone())),
    }
}

/// `env: [{name: A, …}]` → `env: {A: {…}}`, so that variables are compared by name.
fn env_by_name(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("env", Value::Array(items)) => {
                        let by_name = items
                            .iter()
                            .map(|e| {
                                let mut rest = e.clone();
                                let name = rest
                                    .as_object_mut()
                                    .and_then(|o| o.remove("name"))
                                    .and_then(|n| n.as_str().map(str::to_string))
                                    .unwrap_or_default();
                                (name, rest)
                            })
                            .collect();
                        (k.clone(), Value::Object(by_name))
                    }
                    _ => (k.clone(), env_by_name(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(env_by_name).collect()),
        other => other.clone(),
    }
}

/// Compares one document object with its rendered counterpart: the differing paths must be
/// exactly the listed ones (each with the reason it differs on purpose).
fn compare(want: &Value, got: &Value, expected: &[(&str, &str)]) {
    let mut found = Vec::new();
    diff("", &env_by_name(want), &env_by_name(got), &mut found);
    let mut found_paths: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    let mut expected_paths: Vec<&str> = expected.iter().map(|(p, _)| *p).collect();
    found_paths.sort();
    expected_paths.sort();
    let shown: Vec<String> = found
        .iter()
        .map(|(p, w, g)| format!("  {p}: document {w}, rendered {g}"))
        .collect();
    assert_eq!(
        found_paths,
        expected_paths,
        "{} `{}` differs from the document in:\n{}",
        want["kind"],
        want["metadata"]["name"],
        shown.join("\n")
    );
}

fn document_manifests() -> Vec<Value> {
    let text = fs::read_to_string(fixtures().join("k8s/ensurestudy-deployment.yaml")).unwrap();
    documents(&text)
}

#[test]
fn the_rendered_manifests_match_the_deployment_document() {
    let out = render_k8s(&root(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rendered = documents(&stdout(&out));
    let doc = document_manifests();
    assert_eq!(doc.len(), 9, "the document's objects");
    let want = |kind: &str, name: &str| find(&doc, kind, name).clone();
    let c0 = "spec.template.spec.containers[0]";

    compare(
        &want("Namespace", "ensurestudy"),
        find(&rendered, "Namespace", "ensurestudy"),
        &[],
    );

    let env = |var: &str, field: &str| format!("{c0}.env.{var}{field}");
    let core_expected: Vec<(String, &str)> = vec![
        (
            "spec.template.spec.initContainers".into(),
            "depends_on [postgres, redis]: init containers wait for their Services",
        ),
        (
            env("DATABASE_URL", ".valueFrom.secretKeyRef.name"),
            "one Secret per service: `core-service-secrets`, not `db-secrets`",
        ),
        (
            env("DATABASE_URL", ".valueFrom.secretKeyRef.key"),
            "keys are the variable names: `DATABASE_URL`, not `url`",
        ),
        (
            env("REDIS_URL", ".valueFrom.configMapKeyRef.name"),
            "one ConfigMap per service: `core-service-config`, not `app-config`",
        ),
        (
            env("REDIS_URL", ".valueFrom.configMapKeyRef.key"),
            "keys are the variable names: `REDIS_URL`, not `redis_url`",
        ),
        (
            env("CELERY_BROKER_URL", ""),
            "the stack also gives CELERY_BROKER_URL (ConfigMap)",
        ),
        (
            env("JWT_SECRET_KEY", ""),
            "the stack also gives JWT_SECRET_KEY (Secret), as the document's Compose file does",
        ),
    ];
    let core_expected: Vec<(&str, &str)> = core_expected
        .iter()
        .map(|(p, r)| (p.as_str(), *r))
        .collect();
    compare(
        &want("Deployment", "core-service"),
        find(&rendered, "Deployment", "core-service"),
        &core_expected,
    );
    compare(
        &want("Service", "core-service"),
        find(&rendered, "Service", "core-service"),
        &[],
    );

    let ai_expected: Vec<(String, &str)> = vec![
        (
            "spec.template.spec.initContainers".into(),
            "depends_on [qdrant, redis]",
        ),
        (
            env("QDRANT_URL", ".value"),
            "every value comes from the ConfigMap or the Secret: no inline value",
        ),
        (
            env("QDRANT_URL", ".valueFrom"),
            "QDRANT_URL from `ai-service-config`",
        ),
        (
            env("HUGGINGFACE_API_KEY", ".valueFrom.secretKeyRef.name"),
            "one Secret per service: `ai-service-secrets`",
        ),
        (
            env("HUGGINGFACE_API_KEY", ".valueFrom.secretKeyRef.key"),
            "keys are the variable names: `HUGGINGFACE_API_KEY`",
        ),
        (
            env("REDIS_URL", ""),
            "the stack also gives REDIS_URL (the AI service's /ready checks Redis)",
        ),
        (
            env("QDRANT_COLLECTION", ""),
            "the stack names its collection (`${prefix:qdrant}ensurestudy`: a thin instance's own)",
        ),
        (
            format!("{c0}.livenessProbe"),
            "the `/health` convention: the stack's readiness is `/health`",
        ),
        (
            format!("{c0}.readinessProbe"),
            "from `ready: http …/health`; the document gives ai-service no probes",
        ),
    ];
    let ai_expected: Vec<(&str, &str)> =
        ai_expected.iter().map(|(p, r)| (p.as_str(), *r)).collect();
    compare(
        &want("Deployment", "ai-service"),
        find(&rendered, "Deployment", "ai-service"),
        &ai_expected,
    );

    compare(
        &want("HorizontalPodAutoscaler", "core-service-hpa"),
        find(&rendered, "HorizontalPodAutoscaler", "core-service-hpa"),
        &[],
    );

    // Rule order and TLS host order carry no meaning: compare them sorted by host.
    let by_host = |v: &Value| {
        let mut v = v.clone();
        let rules = v["spec"]["rules"].as_array_mut().unwrap();
        rules.sort_by(|a, b| a["host"].as_str().cmp(&b["host"].as_str()));
        let hosts = v["spec"]["tls"][0]["hosts"].as_array_mut().unwrap();
        hosts.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        v
    };
    compare(
        &by_host(&want("Ingress", "ensurestudy-ingress")),
        &by_host(find(&rendered, "Ingress", "ensurestudy-ingress")),
        &[],
    );

    // The document's one ConfigMap `app-config` is split per service; key by key:
    let app_config = want("ConfigMap", "app-config");
    let core_config = find(&rendered, "ConfigMap", "core-service-config");
    let ai_config = find(&rendered, "ConfigMap", "ai-service-config");
    let data = &app_config["data"];
    let cases: &[(&str, Option<&Value>, &str)] = &[
        (
            "redis_url",
            Some(&core_config["data"]["REDIS_URL"]),
            "redis://redis:6379/0: the stack's apps name their Redis database (`${db:redis}`, 0 in the main instance)",
        ),
        ("qdrant_url", Some(&ai_config["data"]["QDRANT_URL"]), ""),
        (
            "kafka_brokers",
            None,
            "no service of the stack reads a Kafka address (Spark streaming is not part of it)",
        ),
        ("log_level", None, "no service of the stack reads LOG_LEVEL"),
    ];
    assert_eq!(
        data.as_object().unwrap().len(),
        cases.len(),
        "every key is accounted for"
    );
    for (key, rendered_value, why) in cases {
        let doc_value = &data[*key];
        match rendered_value {
            Some(v) if why.is_empty() => assert_eq!(*v, doc_value, "{key}"),
            Some(v) => {
                assert_ne!(
                    *v, doc_value,
                    "{key}: listed as a difference, so it must differ"
                );
                assert_eq!(
                    v.as_str().unwrap().rsplit_once('/').unwrap().0,
                    doc_value.as_str().unwrap(),
                    "{key}: the same address, plus the database index ({why})"
                );
            }
            None => {
                let everywhere = rendered
                    .iter()
                    .filter(|d| d["kind"] == "ConfigMap")
                    .any(|d| {
                        d["data"]
                            .as_object()
                            .unwrap()
                            .values()
                            .any(|v| v == doc_value)
                    });
                assert!(!everywhere, "{key}: listed as not rendered ({why})");
            }
        }
    }

    // The document's Secrets: the same values under the services' Secrets.
    let db = want("Secret", "db-secrets");
    let core_secret = find(&rendered, "Secret", "core-service-secrets");
    assert_eq!(
        db["stringData"]["url"],
        json!("postgresql://user:password@postgres:5432/ensurestudy")
    );
    assert_eq!(
        core_secret["stringData"]["DATABASE_URL"],
        json!("postgresql://user:pass@postgres:5432/ensurestudy"),
        "the same URL with the stack's own password (`pass`)"
    );
    let ai = want("Secret", "ai-secrets");
    assert_eq!(ai["stringData"]["huggingface_key"], "hf_...");
    let ai_secret = find(&rendered, "Secret", "ai-service-secrets");
    assert_eq!(
        ai_secret["stringData"]["HUGGINGFACE_API_KEY"], "",
        "from `.env` when set; the document shows a placeholder"
    );
}

// ---- compose ----

#[test]
fn render_compose_round_trips_through_docker_compose_and_devstack() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &root(),
        &["render", "compose", "-o", dir.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let file = dir.path().join("compose.yaml");
    let text = fs::read_to_string(&file).unwrap();
    insta::assert_snapshot!("render_compose_reference_stack", text);

    let dc = Command::new("docker-compose")
        .args(["-f", "-", "config"])
        .current_dir(dir.path())
        .stdin(fs::File::open(&file).unwrap())
        .output()
        .expect("docker-compose runs (Debian's docker-compose is installed by the test machine)");
    assert!(
        dc.status.success(),
        "docker-compose rejects the file:\n{}",
        String::from_utf8_lossy(&dc.stderr)
    );
    let normalized = String::from_utf8_lossy(&dc.stdout);
    for svc in ["zookeeper:", "kafka:", "postgres:", "qdrant:", "redis:"] {
        assert!(normalized.contains(svc), "{svc} in\n{normalized}");
    }
    assert!(
        !normalized.contains("core-service:"),
        "processes stay comments"
    );

    let out = devstack(dir.path(), &["-f", "compose.yaml", "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("5 services (5 containers, 0 processes)"),
        "{}",
        stdout(&out)
    );
    let out = devstack(
        dir.path(),
        &["-f", "compose.yaml", "config", "--json", "--show-secrets"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kafka = &v["services"]["kafka"];
    assert_eq!(
        kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"],
        "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://127.0.0.1:9092"
    );
    assert_eq!(kafka["depends_on"], json!({ "zookeeper": "started" }));
    assert_eq!(
        v["services"]["postgres"]["volumes"][0]["name"],
        "postgres_data"
    );
}

#[test]
fn render_compose_tmpfs_volumes_round_trip_through_docker_compose_and_devstack() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  web:\n    image: nginx\n    volumes:\n      - { type: tmpfs, target: /cache, tmpfs: { size: 1048576 } }\n      - { type: tmpfs, target: /scratch }\n      - data:/data\n      - /anon\nvolumes:\n  data:\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["render", "compose", "-o", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out_dir = dir.path().join("out");
    let dc = Command::new("docker-compose")
        .args(["-f", "compose.yaml", "config"])
        .current_dir(&out_dir)
        .output()
        .expect("docker-compose runs (Debian's docker-compose is installed by the test machine)");
    assert!(
        dc.status.success(),
        "docker-compose rejects the file:\n{}\n{}",
        String::from_utf8_lossy(&dc.stderr),
        fs::read_to_string(out_dir.join("compose.yaml")).unwrap()
    );
    let seen: Value = serde_yaml::from_slice(&dc.stdout).expect("docker-compose prints YAML");
    let vols = &seen["services"]["web"]["volumes"];
    assert_eq!(vols[0]["type"], "tmpfs", "{vols}");
    assert_eq!(vols[0]["target"], "/cache");
    assert_eq!(vols[0]["tmpfs"]["size"], 1048576);
    assert_eq!(vols[1]["type"], "tmpfs");
    assert_eq!(vols[1]["target"], "/scratch");
    // And devstack reads its own rendering back to the same mounts.
    let out = devstack(&out_dir, &["-f", "compose.yaml", "config", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["services"]["web"]["volumes"],
        json!([
            { "type": "tmpfs", "target": "/cache", "size": 1048576 },
            { "type": "tmpfs", "target": "/scratch" },
            { "type": "named", "name": "data", "target": "/data", "read_only": false },
            { "type": "anonymous", "target": "/anon" },
        ])
    );
}

#[test]
fn render_compose_of_the_fixtures_is_accepted_by_docker_compose() {
    let dir = fixtures().join("valid");
    for files in [vec!["k8s-all.yaml"], vec!["base.yaml", "override.yaml"]] {
        let mut args: Vec<&str> = files.iter().flat_map(|f| ["-f", *f]).collect();
        args.extend(["render", "compose"]);
        let out = devstack(&dir, &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut dc = Command::new("docker-compose")
            .args(["-f", "-", "config"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-compose runs");
        {
            use std::io::Write;
            dc.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        }
        let dc = dc.wait_with_output().unwrap();
        assert!(
            dc.status.success(),
            "{files:?}: docker-compose rejects:\n{}\n{}",
            String::from_utf8_lossy(&dc.stderr),
            stdout(&out)
        );
        let seen: Value = serde_yaml::from_slice(&dc.stdout).expect("docker-compose prints YAML");
        if files == ["k8s-all.yaml"] {
            // Strings a YAML 1.1 reader could take for a boolean or a number stay strings.
            assert_eq!(
                seen["services"]["dns"]["environment"],
                json!({ "DEBUG": "off", "UMASK": "0022", "WHEN": "1:30", "EMPTY": "" })
            );
            assert_eq!(seen["volumes"], json!({ "cache_data": {}, "vectors": {} }));
        } else {
            assert_eq!(seen["services"]["db"]["image"], "postgres:16");
        }
    }
}
