//! `devstack mcp`: a Model Context Protocol server over stdio (JSON-RPC 2.0, one message per
//! line) for coding agents. Its tools talk to the running devstack through the control socket
//! like any other client; `logs` reads the per-service log files. Every answer is redacted as
//! `config` redacts, and `--read-only` offers no tool that changes anything.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::client;
use super::protocol::{Reply, Request};
use crate::config::{ServiceName, Stack};
use crate::engine::apply::ApplyAnswer;
use crate::error::Error;
use crate::logs::query::{field_arg, resolve_run, select, Filter, RunSelector};
use crate::redact::Redactor;

/// Protocol revisions this server speaks, newest first.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];
/// Lines `logs` returns when the agent does not say.
const DEFAULT_LIMIT: usize = 100;
/// How long `restart`/`start`/`wait` wait for ready when the agent does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Mcp<'a> {
    stack: &'a Stack,
    state_dir: PathBuf,
    read_only: bool,
    redact: Redactor,
    /// The project name without instance: a tool's `instance` names a sibling of it.
    base: String,
}

/// The instance a tool call acts on: this checkout's, or the one its `instance` names.
struct Target {
    project: String,
    state_dir: PathBuf,
}

/// Why a tool call failed, told to the agent as a tool result with `isError`.
struct ToolError(String);

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        ToolError(e.render(false).trim_end().to_string())
    }
}

impl<'a> Mcp<'a> {
    pub fn new(stack: &'a Stack, state_dir: PathBuf, read_only: bool) -> Self {
        Self {
            stack,
            state_dir,
            read_only,
            redact: Redactor::new(stack.secret_values.iter().cloned()),
            base: stack.name.clone(),
        }
    }

    /// The project name without instance (this checkout may be an instance of it).
    pub fn with_base(mut self, base: &str) -> Self {
        self.base = base.to_string();
        self
    }

    /// This checkout's instance, or the sibling `instance` names: its own name (`feature-x`),
    /// its whole project name (`shop-feature-x`), or the base name for the main instance.
    fn target(&self, args: &Value) -> Result<Target, ToolError> {
        let Some(raw) = args.get("instance").and_then(Value::as_str) else {
            return Ok(Target {
                project: self.stack.name.clone(),
                state_dir: self.state_dir.clone(),
            });
        };
        let name = crate::config::validate::normalize_project(raw);
        if name.is_empty() {
            return Err(ToolError(format!(
                "`instance`: `{raw}` has no letter or digit (use a name `ls` shows)"
            )));
        }
        let project = if name == self.base || name.starts_with(&format!("{}-", self.base)) {
            name
        } else {
            format!("{}-{name}", self.base)
        };
        if project == self.stack.name {
            return self.target(&Value::Null);
        }
        Ok(Target {
            state_dir: crate::project::state_dir(&project),
            project,
        })
    }

    /// Serves until the input ends.
    pub fn serve(&self, input: impl BufRead, output: &mut dyn Write) -> Result<(), Error> {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let reply = match serde_json::from_str::<Value>(&line) {
                Ok(msg) => self.handle(&msg),
                Err(e) => Some(error_reply(
                    Value::Null,
                    -32700,
                    &format!("parse error: {e}"),
                )),
            };
            if let Some(reply) = reply {
                writeln!(output, "{reply}")?;
                output.flush()?;
            }
        }
        Ok(())
    }

    /// The answer to one message; `None` for a notification.
    pub fn handle(&self, msg: &Value) -> Option<Value> {
        let id = msg.get("id").cloned();
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let id = id?;
        let result = match method {
            "initialize" => {
                let asked = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = PROTOCOL_VERSIONS
                    .iter()
                    .find(|v| **v == asked)
                    .unwrap_or(&PROTOCOL_VERSIONS[0]);
                json!({
                    "protocolVersion": version,
                    "capabilities": { "tools": { "listChanged": false } },
                    "serverInfo": { "name": "devstack", "version": env!("CARGO_PKG_VERSION") },
                    "instructions": format!(
                        "devstack runs the development stack of project `{}`: {}. Use `ps` to see each service's state, `logs` to read output, and{} `wait` to wait for readiness.",
                        self.stack.name,
                        self.stack.services.keys().cloned().collect::<Vec<_>>().join(", "),
                        if self.read_only { "" } else { " `restart`, `stop`, `start` to act on a service, `apply` to apply an edit of the stack files, and" },
                    ),
                })
            }
            "ping" => json!({}),
            "tools/list" => json!({ "tools": self.tools() }),
            "tools/call" => {
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                let args = params.get("arguments").cloned().unwrap_or(json!({}));
                if !self.tools().iter().any(|t| t["name"] == name) {
                    return Some(error_reply(id, -32602, &format!("unknown tool `{name}`")));
                }
                let (text, is_error) = match self.call(name, &args) {
                    Ok(v) => (serde_json::to_string_pretty(&v).unwrap_or_default(), false),
                    Err(ToolError(m)) => (m, true),
                };
                json!({
                    "content": [{ "type": "text", "text": self.redact.apply(&text) }],
                    "isError": is_error,
                })
            }
            other => {
                return Some(error_reply(
                    id,
                    -32601,
                    &format!("method `{other}` not found"),
                ))
            }
        };
        Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
    }

    fn tools(&self) -> Vec<Value> {
        let services = json!({
            "type": "string",
            "description": "a service name",
            "enum": self.stack.services.keys().collect::<Vec<_>>(),
        });
        let timeout = json!({ "type": "string", "description": "how long to wait, e.g. `30s` (default 120s)" });
        let instance = json!({ "type": "string", "description": "another instance of this project, as `ls` shows it (`feature-x`, or the whole project name); default: this checkout's" });
        let read = |readonly: bool| json!({ "readOnlyHint": readonly, "openWorldHint": false });
        let mut tools = vec![
            json!({
                "name": "ps",
                "description": "Every service of the running stack: state (waiting, starting, probing, ready, completed, stopping, backoff, crashed, exited, failed, stopped), restarts, pid or container, host ports, CPU % and resident memory.",
                "inputSchema": { "type": "object", "properties": { "instance": instance } },
                "annotations": read(true),
            }),
            json!({
                "name": "logs",
                "description": "The most recent log lines (output and devstack's events) of the current run, merged by time; each with its level and fields when the line has them (JSON, logfmt or a leading level word). With `search`, the best matches first instead.",
                "inputSchema": { "type": "object", "properties": {
                    "service": services,
                    "grep": { "type": "string", "description": "only lines matching this regular expression" },
                    "since": { "type": "string", "description": "only lines from this long ago on, e.g. `10m` (of every run unless `run` is given)" },
                    "level": { "type": "string", "enum": ["trace", "debug", "info", "warn", "error", "fatal"], "description": "only lines of this level and above" },
                    "field": { "type": "array", "items": { "type": "string" }, "description": "only lines with these fields, each `key=value` (JSON keys, logfmt pairs)" },
                    "run": { "type": ["integer", "string"], "description": "which run (`up`): 0 the current or last (default), -1 the one before, a run id, or `all`" },
                    "search": { "type": "string", "description": "words to look for: lines with any of them, ranked by how many match, then level (errors first), then how recent; each with its `score`" },
                    "limit": { "type": "integer", "minimum": 1, "description": "at most this many lines (default 100)" },
                    "instance": instance,
                } },
                "annotations": read(true),
            }),
            json!({
                "name": "wait",
                "description": "Wait until services are ready; fails with the probe's last error and the service's last lines if one does not get ready in time.",
                "inputSchema": { "type": "object", "properties": {
                    "services": { "type": "array", "items": services, "description": "default: every service" },
                    "timeout": timeout,
                    "instance": instance,
                } },
                "annotations": read(true),
            }),
            json!({
                "name": "config",
                "description": "The resolved stack configuration (files merged, variables interpolated), secrets masked.",
                "inputSchema": { "type": "object", "properties": {} },
                "annotations": read(true),
            }),
            json!({
                "name": "ls",
                "description": "Every instance of every project on this machine (one per git worktree, or named with --instance): project, instance, the folder it runs from, running, services ready/total, host ports with URLs, containers and volumes left.",
                "inputSchema": { "type": "object", "properties": {} },
                "annotations": read(true),
            }),
        ];
        if !self.read_only {
            for (name, what) in [
                (
                    "restart",
                    "Stop a service and start it again; returns once it is ready again.",
                ),
                (
                    "stop",
                    "Stop a service (its dependents keep running); returns once it is gone.",
                ),
                (
                    "start",
                    "Start a service, and first what it depends on; returns once it is ready.",
                ),
            ] {
                let mut properties =
                    json!({ "service": services, "timeout": timeout, "instance": instance });
                if name == "stop" {
                    properties["force"] = json!({ "type": "boolean", "description": "stop it even while thin instances share it (refused otherwise, naming them)" });
                }
                tools.push(json!({
                    "name": name,
                    "description": what,
                    "inputSchema": { "type": "object", "properties": properties, "required": ["service"] },
                    "annotations": { "readOnlyHint": false, "destructiveHint": name != "start", "idempotentHint": name != "restart", "openWorldHint": false },
                }));
            }
            let names = json!({ "type": "array", "items": services, "description": "default: every service with a named volume" });
            tools.push(json!({
                "name": "snapshot_save",
                "description": "Save the data of the stateful services (their named volumes) as snapshot `name`, each made consistent first (PostgreSQL CHECKPOINT and a short stop, Redis SAVE, others a short stop); dependents are stopped and everything is started again and ready before it returns. Replaces an older snapshot of that name. Returns its manifest.",
                "inputSchema": { "type": "object", "properties": {
                    "name": { "type": "string", "description": "letters, digits, `-`, `_`, `.`" },
                    "services": names,
                }, "required": ["name"] },
                "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false },
            }));
            tools.push(json!({
                "name": "snapshot_restore",
                "description": "Put snapshot `name`'s volumes back (the current data of those volumes is replaced); volumes the snapshot lacks are left alone. The services are stopped for it and are ready again when it returns.",
                "inputSchema": { "type": "object", "properties": {
                    "name": { "type": "string" },
                    "services": names,
                }, "required": ["name"] },
                "annotations": { "readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false },
            }));
            tools.push(json!({
                "name": "reset",
                "description": "Empty the named volumes of services (all their data is lost) and start them fresh. `confirm` must be true.",
                "inputSchema": { "type": "object", "properties": {
                    "services": names,
                    "confirm": { "type": "boolean", "description": "must be true: the volumes are emptied" },
                }, "required": ["confirm"] },
                "annotations": { "readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false },
            }));
            tools.push(json!({
                "name": "apply",
                "description": "Apply the stack files as they are now to the running stack: only what changed restarts, is recreated, starts or stops. Returns the plan (per service: unchanged, restart, recreate, start or stop, with the changed fields), or the located errors when the files are invalid (then nothing changes). With `dry_run`, only plans.",
                "inputSchema": { "type": "object", "properties": {
                    "dry_run": { "type": "boolean", "description": "only return the plan; change nothing" },
                    "instance": instance,
                } },
                "annotations": { "readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false },
            }));
        }
        tools
    }

    fn call(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        let str_arg = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
        let timeout = match str_arg("timeout") {
            Some(t) => humantime::parse_duration(&t)
                .map_err(|e| ToolError(format!("`timeout`: {e} (write e.g. `30s`)")))?,
            None => DEFAULT_TIMEOUT,
        };
        let to = self.target(args)?;
        match name {
            "config" => Ok(crate::config::show::display_value(self.stack, false)),
            "ls" => {
                // Without a container engine the state folders alone answer.
                let (rows, _) = super::instances::list();
                Ok(serde_json::to_value(rows).unwrap_or_default())
            }
            "logs" => self.logs(&to, args),
            "ps" => match self.request(&to, Request::Ps)? {
                Reply::Ps { services } => Ok(serde_json::to_value(services).unwrap_or_default()),
                other => Err(unexpected(&other)),
            },
            "wait" => {
                let services = args
                    .get("services")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(ServiceName::from))
                            .collect()
                    })
                    .unwrap_or_default();
                self.until_done(
                    &to,
                    Request::Wait {
                        services,
                        timeout_ms: Some(timeout.as_millis() as u64),
                    },
                )
            }
            "apply" => {
                let dry_run = args
                    .get("dry_run")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                match self.request(&to, Request::Apply { dry_run })? {
                    Reply::Apply { answer } => match answer {
                        ApplyAnswer::Applied { .. } => {
                            Ok(serde_json::to_value(answer).unwrap_or_default())
                        }
                        ApplyAnswer::Invalid { error } => Err(ToolError(format!(
                            "the stack files are invalid; nothing changed:\n{error}"
                        ))),
                        ApplyAnswer::Refused { reason, .. } => {
                            Err(ToolError(format!("not applied: {reason}")))
                        }
                        ApplyAnswer::Stopping => Err(ToolError("the stack is stopping".into())),
                        ApplyAnswer::Unsupported => {
                            Err(ToolError("this run does not follow its stack files".into()))
                        }
                    },
                    Reply::Error { message, .. } => Err(ToolError(message)),
                    other => Err(unexpected(&other)),
                }
            }
            "snapshot_save" | "snapshot_restore" | "reset" => self.data(name, args),
            "restart" | "stop" | "start" => {
                let service =
                    str_arg("service").ok_or_else(|| ToolError("`service` is required".into()))?;
                let force = args.get("force").and_then(Value::as_bool).unwrap_or(false);
                let shared = if name == "stop" && !force {
                    crate::project::shared_by_thin(&to.project, std::slice::from_ref(&service))
                } else {
                    Vec::new()
                };
                if !shared.is_empty() {
                    return Err(ToolError(format!(
                        "not stopped: thin instances use {} of `{}`; stop them first, or call again with `force: true`",
                        shared.join(", "),
                        to.project
                    )));
                }
                let services = vec![ServiceName::from(service)];
                let timeout_ms = Some(timeout.as_millis() as u64);
                let request = match name {
                    "restart" => Request::Restart {
                        services,
                        wait: true,
                        timeout_ms,
                    },
                    "stop" => Request::Stop {
                        services,
                        wait: true,
                    },
                    _ => Request::Start {
                        services,
                        wait: true,
                        timeout_ms,
                    },
                };
                self.until_done(&to, request)
            }
            other => Err(ToolError(format!("unknown tool `{other}`"))),
        }
    }

    /// The data tools, run as `devstack snapshot …` / `reset` run.
    fn data(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        use crate::cli::{ResetArgs, SnapshotCommand, SnapshotRestoreArgs, SnapshotSaveArgs};
        let services: Vec<String> = args
            .get("services")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let snapshot = || {
            args.get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ToolError("`name` is required".into()))
        };
        let (cmd, reset) = match name {
            "snapshot_save" => (
                SnapshotCommand::Save(SnapshotSaveArgs {
                    name: snapshot()?,
                    services,
                    to: None,
                    json: true,
                }),
                None,
            ),
            "snapshot_restore" => (
                SnapshotCommand::Restore(SnapshotRestoreArgs {
                    name: snapshot()?,
                    services,
                    from: None,
                    json: true,
                }),
                None,
            ),
            _ => {
                if args.get("confirm").and_then(Value::as_bool) != Some(true) {
                    return Err(ToolError(
                        "`reset` empties volumes: call it with `confirm: true`".into(),
                    ));
                }
                let reset = ResetArgs {
                    services,
                    yes: true,
                };
                (
                    SnapshotCommand::Ls(crate::cli::SnapshotLsArgs { json: true }),
                    Some(reset),
                )
            }
        };
        match crate::commands::run_data(self.stack, &cmd, reset.as_ref()) {
            Ok(out) => Ok(serde_json::from_str(&out).unwrap_or(Value::String(out))),
            Err((e, said)) => Err(ToolError(format!("{}{}", said, ToolError::from(e).0))),
        }
    }

    fn logs(&self, to: &Target, args: &Value) -> Result<Value, ToolError> {
        let services: Vec<String> = match args.get("service").and_then(Value::as_str) {
            Some(s) if self.stack.services.contains_key(s) => vec![s.to_string()],
            Some(s) => return Err(ToolError(format!("no service `{s}` in the stack"))),
            None => self
                .stack
                .services
                .keys()
                .cloned()
                .chain(["devstack".to_string()])
                .collect(),
        };
        let grep = match args.get("grep").and_then(Value::as_str) {
            Some(g) => Some(regex::Regex::new(g).map_err(|e| ToolError(format!("`grep`: {e}")))?),
            None => None,
        };
        let since_ms = match args.get("since").and_then(Value::as_str) {
            Some(s) => {
                let d = humantime::parse_duration(s)
                    .map_err(|e| ToolError(format!("`since`: {e} (write e.g. `10m`)")))?;
                Some(crate::clock::unix_ms().saturating_sub(d.as_millis() as u64))
            }
            None => None,
        };
        let limit = args
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_LIMIT, |l| l.max(1) as usize);
        let level = match args.get("level").and_then(Value::as_str) {
            Some(l) => Some(
                l.parse::<crate::logs::Level>()
                    .map_err(|e| ToolError(format!("`level`: {e}")))?,
            ),
            None => None,
        };
        let fields = match args.get("field") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => {
                vec![field_arg(s).map_err(|e| ToolError(format!("`field`: {e}")))?]
            }
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| "a field is a string `key=value`".to_string())
                        .and_then(field_arg)
                        .map_err(|e| ToolError(format!("`field`: {e}")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ToolError("`field`: write `key=value` strings".into())),
        };
        let selector = match args.get("run") {
            None | Some(Value::Null) if since_ms.is_some() => RunSelector::All,
            None | Some(Value::Null) => RunSelector::Relative(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(|n| n.to_string())
                .unwrap_or_default()
                .parse()
                .map_err(|e| ToolError(format!("`run`: {e}")))?,
            Some(Value::String(s)) => s.parse().map_err(|e| ToolError(format!("`run`: {e}")))?,
            Some(_) => return Err(ToolError("`run`: a number or `all`".into())),
        };
        let dir = to.state_dir.join("logs");
        let run = resolve_run(selector, &crate::logs::files::runs(&dir))
            .map_err(|e| ToolError(format!("`run`: {e}")))?;
        let filter = Filter {
            since_ms,
            grep,
            tail: None,
            level,
            fields,
            run,
        };
        let records = select(&dir, &services, &filter);
        let line = |r: &crate::logs::files::Record| {
            let r = r.clone().with_fields();
            let mut v =
                json!({ "t": r.t, "service": r.service, "stream": r.stream, "text": r.text });
            if let Some(l) = r.level {
                v["level"] = json!(l);
            }
            if let Some(f) = r.fields {
                v["fields"] = Value::Object(f);
            }
            v
        };
        let lines: Vec<Value> = match args.get("search").and_then(Value::as_str) {
            Some(q) => crate::logs::search::rank(&records, q, limit)
                .into_iter()
                .map(|(r, score)| {
                    let mut v = line(r);
                    v["score"] = json!((score * 100.0).round() / 100.0);
                    v
                })
                .collect(),
            None => records[records.len().saturating_sub(limit)..]
                .iter()
                .map(line)
                .collect(),
        };
        Ok(json!({ "lines": lines }))
    }

    fn request(&self, to: &Target, request: Request) -> Result<Reply, ToolError> {
        let mut conn = client::connect(&to.state_dir, &to.project)?;
        conn.send(request)?;
        loop {
            match conn.answer()? {
                Some(Reply::Record { .. }) => continue,
                Some(reply) => return Ok(reply),
                None => return Err(ToolError("the devstack closed the connection".into())),
            }
        }
    }

    fn until_done(&self, to: &Target, request: Request) -> Result<Value, ToolError> {
        match self.request(to, request)? {
            Reply::Done { services } => Ok(serde_json::to_value(services).unwrap_or_default()),
            Reply::Error {
                message, not_ready, ..
            } => Err(ToolError(match not_ready {
                Some(r) => format!(
                    "{message}\nprobe: {}\nlast lines:\n{}",
                    r.probe,
                    r.tail.join("\n")
                ),
                None => message,
            })),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &Reply) -> ToolError {
    ToolError(format!("unexpected answer from devstack: {reply:?}"))
}

fn error_reply(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("stack.yaml"),
            "name: mcp-unit\nservices:\n  web:\n    command: sleep 100\n    environment:\n      API_TOKEN: ${API_TOKEN}\n",
        )
        .expect("write");
        let opts = crate::config::LoadOptions {
            files: vec![dir.path().join("stack.yaml")],
            project_name: None,
            cwd: dir.path().to_path_buf(),
            env_files: Vec::new(),
            profiles: Vec::new(),
            targets: Vec::new(),
            instance: None,
        };
        let vars = |k: &str| (k == "API_TOKEN").then(|| "tok-very-secret".to_string());
        crate::config::load(&opts, &vars).expect("loads").stack
    }

    #[test]
    fn read_only_lists_no_tool_that_changes_anything() {
        let stack = stack();
        let names = |m: &Mcp<'_>| -> Vec<String> {
            let v = m
                .handle(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
                .expect("a reply");
            v["result"]["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .map(|t| t["name"].as_str().expect("name").to_string())
                .collect()
        };
        let dir = std::env::temp_dir();
        assert_eq!(
            names(&Mcp::new(&stack, dir.clone(), false)),
            [
                "ps",
                "logs",
                "wait",
                "config",
                "ls",
                "restart",
                "stop",
                "start",
                "snapshot_save",
                "snapshot_restore",
                "reset",
                "apply"
            ]
        );
        let ro = Mcp::new(&stack, dir, true);
        assert_eq!(names(&ro), ["ps", "logs", "wait", "config", "ls"]);
        let refused = ro
            .handle(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"restart","arguments":{"service":"web"}}}))
            .expect("a reply");
        assert_eq!(refused["error"]["code"], -32602);
        // The data tools refuse before anything is touched: a bad name, an unconfirmed reset.
        let rw = Mcp::new(&stack, std::env::temp_dir(), false);
        for (tool, args, says) in [
            ("snapshot_save", json!({"name": "../x"}), "is not allowed"),
            ("reset", json!({}), "confirm: true"),
        ] {
            let r = rw
                .handle(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":tool,"arguments":args}}))
                .expect("a reply");
            assert_eq!(r["result"]["isError"], true, "{r}");
            assert!(r.to_string().contains(says), "{r}");
        }
    }

    #[test]
    fn a_tools_instance_names_a_sibling_of_this_checkouts_project() {
        let mut stack = stack();
        stack.name = "shop-feat".into();
        let m = Mcp::new(&stack, PathBuf::from("/state/shop-feat"), false).with_base("shop");
        let project = |arg: Value| m.target(&arg).map(|t| t.project).map_err(|e| e.0);
        assert_eq!(project(json!({})), Ok("shop-feat".to_string()));
        assert_eq!(
            project(json!({"instance": "agent-1"})),
            Ok("shop-agent-1".into())
        );
        assert_eq!(
            project(json!({"instance": "Agent-1"})),
            Ok("shop-agent-1".into())
        );
        assert_eq!(
            project(json!({"instance": "shop-agent-1"})),
            Ok("shop-agent-1".into())
        );
        assert_eq!(project(json!({"instance": "shop"})), Ok("shop".into()));
        assert_eq!(
            m.target(&json!({"instance": "feat"}))
                .map(|t| t.state_dir)
                .map_err(|e| e.0),
            Ok(PathBuf::from("/state/shop-feat")),
            "this checkout's own instance keeps its state folder"
        );
        let err = project(json!({"instance": "--"})).unwrap_err();
        assert!(err.contains("no letter or digit"), "{err}");
    }

    #[test]
    fn logs_takes_level_field_run_and_ranks_a_search() {
        use crate::logs::files::{FileSetup, LogFiles};
        use crate::logs::{LogLine, Stream};
        let stack = stack();
        let state = tempfile::tempdir().expect("tempdir");
        let setup = FileSetup {
            dir: state.path().join("logs"),
            keep_runs: 10,
        };
        for (start, lines) in [
            (1_000u64, &["ERROR:root:old run db error"][..]),
            (
                2_000,
                &[
                    r#"{"level":"error","msg":"db connection refused","db":"main"}"#,
                    r#"{"level":"info","msg":"db pool ready","db":"main"}"#,
                    "level=warn msg=\"slow db query\" db=replica",
                    "request served",
                ][..],
            ),
        ] {
            let mut files = LogFiles::for_run(setup.clone(), start).expect("files");
            for (i, text) in lines.iter().enumerate() {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(start + i as u64);
                let notice = files.write(&LogLine::output(
                    at,
                    "web",
                    Stream::Stdout,
                    text.to_string(),
                ));
                assert_eq!(notice, None);
            }
            assert_eq!(files.flush(), None);
        }
        let m = Mcp::new(&stack, state.path().to_path_buf(), true);
        let call = |args: Value| -> Value {
            let v = m
                .handle(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"logs","arguments":args}}))
                .expect("a reply");
            let text = v["result"]["content"][0]["text"].as_str().expect("text");
            serde_json::from_str(text).expect("json")
        };
        let texts = |v: &Value| -> Vec<String> {
            v["lines"]
                .as_array()
                .expect("lines")
                .iter()
                .map(|l| l["text"].as_str().expect("text").to_string())
                .collect()
        };
        let warn = call(json!({"level": "warn"}));
        assert_eq!(texts(&warn).len(), 2, "{warn}");
        assert_eq!(warn["lines"][0]["level"], "error");
        assert_eq!(warn["lines"][0]["fields"]["db"], "main");
        let replica = call(json!({"field": ["db=replica"]}));
        assert_eq!(
            texts(&replica),
            ["level=warn msg=\"slow db query\" db=replica"]
        );
        assert_eq!(
            texts(&call(json!({"run": -1}))),
            ["ERROR:root:old run db error"]
        );
        assert_eq!(
            texts(&call(json!({"run": "all", "level": "error"}))).len(),
            2
        );
        let ranked = call(json!({"search": "db connection"}));
        let got = texts(&ranked);
        assert_eq!(got.len(), 3, "{ranked}");
        assert!(got[0].contains("connection refused"), "{ranked}");
        assert!(ranked["lines"][0]["score"].as_f64().expect("score") > 4.0);
        let bad = m
            .handle(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"logs","arguments":{"run": -7}}}))
            .expect("a reply");
        assert_eq!(bad["result"]["isError"], true, "{bad}");
    }

    #[test]
    fn config_masks_secrets_and_notifications_get_no_answer() {
        let stack = stack();
        let m = Mcp::new(&stack, std::env::temp_dir(), false);
        assert!(m
            .handle(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .is_none());
        let v = m
            .handle(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"config","arguments":{}}}))
            .expect("a reply");
        let text = v["result"]["content"][0]["text"].as_str().expect("text");
        assert!(text.contains("API_TOKEN"), "{text}");
        assert!(!text.contains("tok-very-secret"), "{text}");
        let init = m
            .handle(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}))
            .expect("a reply");
        assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
        let unknown = m
            .handle(&json!({"jsonrpc":"2.0","id":4,"method":"resources/list"}))
            .expect("a reply");
        assert_eq!(unknown["error"]["code"], -32601);
    }
}
