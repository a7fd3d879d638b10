//! `devstack snapshot save|restore|ls|rm` and `devstack reset`: the order of the steps (check,
//! make consistent, stop, copy, start again, publish) and what is said. Stopping and starting
//! goes through the running devstack when one runs (its kernel stops dependents and awaits
//! readiness), else straight to the engine; copies are `snapshot::copy`'s.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::control::{live_ps, until_done};
use super::Env;
use crate::cli::{ResetArgs, SnapshotCommand, SnapshotRestoreArgs, SnapshotSaveArgs};
use crate::config::{ServiceName, Stack};
use crate::control::client;
use crate::control::protocol::Request;
use crate::docker::DockerRuntime;
use crate::engine::seed;
use crate::error::Error;
use crate::project::state_dir;
use crate::runtime::{ContainerInfo, ContainerRuntime};
use crate::session::runtime;
use crate::snapshot::progress::mib;
use crate::snapshot::store::{self, CollectionEntry, Manifest, SnapshotError, VolumeEntry};
use crate::snapshot::{bundle, copy, targets, with_dependents, Consistency, Target};

pub(super) fn snapshot(
    stack: &Stack,
    cmd: &SnapshotCommand,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    match cmd {
        SnapshotCommand::Save(args) => save(stack, args, env),
        SnapshotCommand::Restore(args) => restore(stack, args, env),
        SnapshotCommand::Ls(args) => ls(stack, args.json, env),
        SnapshotCommand::Rm(args) => rm(stack, &args.name, env),
    }
}

fn snapshots(stack: &Stack) -> std::path::PathBuf {
    store::dir(&state_dir(&stack.name))
}

fn usage(message: String) -> Error {
    Error::Usage {
        message,
        help: None,
    }
}

/// The stateful services named (or all), at least one.
fn chosen(stack: &Stack, names: &[String]) -> Result<Vec<Target>, Error> {
    let t = targets(stack, names).map_err(usage)?;
    if t.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "project `{}` has no service with a named volume",
                stack.name
            ),
            help: Some("snapshots hold named volumes (`volumes: [\"data:/path\"]`)".into()),
        });
    }
    Ok(t)
}

/// The engine and the containers of the targets.
struct Engine {
    rt: tokio::runtime::Runtime,
    docker: DockerRuntime,
    containers: BTreeMap<String, ContainerInfo>,
}

impl Engine {
    fn connect(stack: &Stack, targets: &[Target]) -> Result<Self, Error> {
        let rt = runtime()?;
        let docker = rt.block_on(DockerRuntime::connect())?;
        let containers = rt.block_on(copy::containers(&docker, &stack.name, targets))?;
        Ok(Self {
            rt,
            docker,
            containers,
        })
    }

    /// Runs a copy; Ctrl-C ends it at its next chunk or volume (it removes its own helper
    /// container; no engine request is cut half way), then the caller starts what it stopped.
    fn run<T>(
        &self,
        stack: &Stack,
        f: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let r = self.rt.block_on(async {
            tokio::pin!(f);
            tokio::select! {
                r = &mut f => r,
                _ = tokio::signal::ctrl_c() => {
                    copy::interrupt();
                    let _ = (&mut f).await;
                    Err(Error::Interrupted)
                }
            }
        });
        if r.is_err() {
            self.rt
                .block_on(copy::remove_helpers(&self.docker, &stack.name));
        }
        r
    }
}

/// How long a container started again straight on the engine gets to answer its probe.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// What was stopped for a copy, to be started again.
enum Paused {
    /// Through the running devstack: these services, started again with their dependencies
    /// first and awaited until ready.
    Live(Vec<String>),
    /// Straight on the engine: these containers (service, id), started again and awaited
    /// through their preset's probe.
    Direct(Vec<(Target, String)>),
}

/// Stops `services` for a copy: through the running devstack (their running dependents first),
/// else their running containers.
fn pause(
    stack: &Stack,
    eng: &Engine,
    targets: &[Target],
    services: &[String],
    env: &mut Env<'_>,
) -> Result<Paused, Error> {
    if services.is_empty() {
        return Ok(Paused::Direct(Vec::new()));
    }
    if let Some(rows) = live_ps(stack)? {
        let running = |s: &String| {
            rows.iter()
                .any(|r| r.status.service == *s && r.status.running)
        };
        let all: Vec<String> = with_dependents(stack, services)
            .into_iter()
            .filter(running)
            .collect();
        let dependents: Vec<String> = all
            .iter()
            .filter(|s| !services.contains(s))
            .cloned()
            .collect();
        let own: Vec<String> = services
            .iter()
            .filter(|s| all.contains(s))
            .cloned()
            .collect();
        // Dependents first: nothing runs against a stopped service.
        let order: Vec<String> = dependents.iter().chain(&own).cloned().collect();
        writeln!(
            env.err,
            "stopping {} for the copy (the running devstack starts them again)",
            list(&order)
        )?;
        for group in [dependents, own] {
            if !group.is_empty() {
                live(
                    stack,
                    Request::Stop {
                        services: ServiceName::list(&group),
                        wait: true,
                    },
                    &group,
                    env,
                )?;
            }
        }
        return Ok(Paused::Live(all));
    }
    let mut ids = Vec::new();
    for s in services {
        if let Some(c) = eng.containers.get(s).filter(|c| copy::is_running(Some(c))) {
            let grace = stack
                .services
                .get(s)
                .map_or(Duration::from_secs(10), |s| s.stop_grace_period);
            writeln!(env.err, "stopping `{s}` for the copy")?;
            eng.rt.block_on(eng.docker.stop(&c.id, grace))?;
            if let Some(t) = targets.iter().find(|t| t.service == *s) {
                ids.push((t.clone(), c.id.clone()));
            }
        }
    }
    Ok(Paused::Direct(ids))
}

/// Starts again what [`pause`] stopped; through a devstack, waits until each is ready.
fn resume(stack: &Stack, eng: &Engine, paused: Paused, env: &mut Env<'_>) -> Result<(), Error> {
    match paused {
        Paused::Live(services) if !services.is_empty() => {
            live(
                stack,
                Request::Start {
                    services: ServiceName::list(&services),
                    wait: true,
                    timeout_ms: None,
                },
                &services,
                env,
            )?;
            writeln!(env.err, "{} ready again", list(&services))?;
        }
        Paused::Live(_) => {}
        Paused::Direct(ids) => {
            for (_, id) in &ids {
                eng.rt.block_on(eng.docker.start(id))?;
            }
            for (t, id) in &ids {
                eng.rt
                    .block_on(copy::await_ready(&eng.docker, id, t, READY_WITHIN))?;
                seed_direct(stack, eng, &t.service, id, env)?;
                writeln!(env.err, "`{}` ready again", t.service)?;
            }
        }
    }
    Ok(())
}

/// Restored data counts as seeded: each restored service's seed is recorded as done for it
/// (a failure to record only means the seed runs again, and says so).
fn seeded_by_restore(
    stack: &Stack,
    eng: &Engine,
    services: &[String],
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let dir = state_dir(&stack.name);
    for s in services {
        let Some(svc) = stack.services.get(s) else {
            continue;
        };
        let marked = eng
            .rt
            .block_on(seed::mark_done(&eng.docker, &stack.name, svc, &dir));
        if let Err(e) = marked {
            writeln!(
                env.err,
                "warning: `{s}` will be seeded again at its next start: {e}"
            )?;
        }
    }
    Ok(())
}

/// Straight on the engine: the service's seed, unless it is done for its data (a `reset`).
fn seed_direct(
    stack: &Stack,
    eng: &Engine,
    service: &str,
    id: &str,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let Some(svc) = stack.services.get(service) else {
        return Ok(());
    };
    let dir = state_dir(&stack.name);
    let ran = eng.rt.block_on(seed::run_direct(
        eng.docker.clone(),
        &stack.name,
        svc,
        id,
        &dir,
    ));
    match ran {
        Ok(Some((true, reason))) => writeln!(env.err, "`{service}` seeded ({reason})")?,
        Ok(_) => {}
        Err(reason) => {
            return Err(Error::Snapshot(format!(
                "`{service}` is running again but {reason}"
            )))
        }
    }
    Ok(())
}

fn live(stack: &Stack, req: Request, names: &[String], env: &mut Env<'_>) -> Result<(), Error> {
    let mut conn = client::connect(&state_dir(&stack.name), &stack.name)?;
    conn.send(req)?;
    until_done(&mut conn, names, env).map(|_| ())
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn snapshot_error(e: SnapshotError) -> Error {
    Error::Snapshot(e.to_string())
}

fn save(stack: &Stack, args: &SnapshotSaveArgs, env: &mut Env<'_>) -> Result<(), Error> {
    store::check_name(&args.name).map_err(snapshot_error)?;
    let targets = chosen(stack, &args.services)?;
    let dir = snapshots(stack);
    let eng = Engine::connect(stack, &targets)?;
    let tmp = store::begin(&dir, &args.name)?;
    let mut notes = Vec::new();
    let result = save_into(stack, &eng, &targets, &tmp, &mut notes, env);
    let services = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let m = Manifest {
        format: store::FORMAT,
        name: args.name.clone(),
        project: stack.name.clone(),
        created: crate::clock::unix_ms() / 1000,
        devstack: env!("CARGO_PKG_VERSION").to_string(),
        services,
    };
    let text = serde_json::to_vec_pretty(&m).map_err(|e| Error::Encode(e.to_string()))?;
    let published = crate::project::write_whole(&tmp.join(store::MANIFEST), &text)
        .and_then(|()| store::publish(&tmp, &dir, &args.name));
    if let Err(e) = published {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    if let Some(file) = &args.to {
        bundle::write(&dir.join(&args.name), &m, file)?;
    }
    for n in &notes {
        writeln!(env.err, "note: {n}")?;
    }
    say_saved(&m, args.to.as_deref(), args.json, env)
}

/// Consistency, stop, copy, start again: the services run as before whatever the copy did.
fn save_into(
    stack: &Stack,
    eng: &Engine,
    targets: &[Target],
    tmp: &Path,
    notes: &mut Vec<String>,
    env: &mut Env<'_>,
) -> Result<Vec<store::ServiceEntry>, Error> {
    let (how, stop) =
        eng.rt
            .block_on(copy::prepare(&eng.docker, targets, &eng.containers, notes))?;
    let paused = pause(stack, eng, targets, &stop, env)?;
    let copied = eng.run(
        stack,
        copy::save_volumes(
            &eng.docker,
            &stack.name,
            targets,
            &how,
            &eng.containers,
            tmp,
            notes,
        ),
    );
    resume(stack, eng, paused, env)?;
    copied
}

fn say_saved(m: &Manifest, to: Option<&Path>, json: bool, env: &mut Env<'_>) -> Result<(), Error> {
    if json {
        let text = serde_json::to_string_pretty(m).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    for s in &m.services {
        for v in &s.volumes {
            writeln!(
                env.err,
                "  {} {}: {} ({} in the volume)",
                s.service,
                v.volume,
                mib(v.bytes),
                mib(v.raw_bytes)
            )?;
        }
        if s.through_api() {
            writeln!(
                env.err,
                "  {}: {} collection(s) through Qdrant's snapshot API, {}",
                s.service,
                s.collections.len(),
                mib(s.collections.iter().map(|c| c.bytes).sum())
            )?;
        }
    }
    writeln!(
        env.out,
        "saved snapshot `{}` ({} services, {})",
        m.name,
        m.services.len(),
        mib(m.bytes())
    )?;
    if let Some(f) = to {
        writeln!(env.out, "wrote {}", f.display())?;
    }
    Ok(())
}

/// What a restore puts back: volumes (their services stopped for the copy), and Qdrant
/// collections (through its API, the service left running).
#[derive(Debug, Default)]
struct Plan {
    volumes: Vec<(Target, Vec<VolumeEntry>)>,
    collections: Vec<(Target, Vec<CollectionEntry>)>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.collections.is_empty()
    }

    fn services(&self) -> Vec<String> {
        self.volumes
            .iter()
            .map(|(t, _)| t.service.clone())
            .chain(self.collections.iter().map(|(t, _)| t.service.clone()))
            .collect()
    }
}

/// For each target the snapshot has: what to restore; notes for what it lacks.
fn restore_plan(
    m: &Manifest,
    targets: Vec<Target>,
    here: &BTreeMap<String, Option<String>>,
    notes: &mut Vec<String>,
) -> Plan {
    let mut plan = Plan::default();
    for t in targets {
        let Some(entry) = m.service(&t.service) else {
            notes.push(format!(
                "snapshot `{}` has no `{}`: its volumes are left alone",
                m.name, t.service
            ));
            continue;
        };
        if let (Some(saved), Some(Some(now))) = (&entry.image_id, here.get(&t.service)) {
            if saved != now {
                notes.push(format!(
                    "warning: `{}` was saved with image id {} and its image `{}` is now {}: the data may not suit this version",
                    t.service, short(saved), t.image, short(now)
                ));
            }
        }
        if entry.through_api() {
            if matches!(t.consistency, Consistency::Qdrant { .. }) {
                plan.collections.push((t, entry.collections.clone()));
            } else {
                notes.push(format!(
                    "snapshot `{}` holds `{}` as Qdrant collections, and it is not a Qdrant service here (`ready: {{ qdrant: {{}} }}`): it is left alone",
                    m.name, t.service
                ));
            }
            continue;
        }
        let mut vols = Vec::new();
        for v in &t.volumes {
            match entry.volumes.iter().find(|e| e.volume == v.volume) {
                Some(e) => vols.push(e.clone()),
                None => notes.push(format!(
                    "snapshot `{}` has no volume `{}` of `{}`: it is left alone",
                    m.name, v.volume, t.service
                )),
            }
        }
        if !vols.is_empty() {
            plan.volumes.push((t, vols));
        }
    }
    plan
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// The snapshot to restore, imported first with `--from`, and checked whole (manifest, sizes,
/// every path in every volume tar) before anything is stopped or written.
fn checked(dir: &Path, args: &SnapshotRestoreArgs, env: &mut Env<'_>) -> Result<Manifest, Error> {
    if let Some(file) = &args.from {
        bundle::import(file, dir, &args.name).map_err(snapshot_error)?;
        writeln!(
            env.err,
            "imported {} as snapshot `{}`",
            file.display(),
            args.name
        )?;
    }
    let m = store::open(dir, &args.name).map_err(snapshot_error)?;
    store::check_contents(&dir.join(&args.name), &m).map_err(|why| {
        snapshot_error(SnapshotError::Damaged {
            name: args.name.clone(),
            why,
        })
    })?;
    Ok(m)
}

fn restore(stack: &Stack, args: &SnapshotRestoreArgs, env: &mut Env<'_>) -> Result<(), Error> {
    restore_from(&snapshots(stack), stack, args, env)
}

/// Restores snapshot `args.name` of folder `dir` into `stack`'s volumes.
fn restore_from(
    dir: &Path,
    stack: &Stack,
    args: &SnapshotRestoreArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let m = checked(dir, args, env)?;
    let targets = chosen(stack, &args.services)?;
    let eng = Engine::connect(stack, &targets)?;
    let mut here = BTreeMap::new();
    for t in &targets {
        here.insert(
            t.service.clone(),
            eng.rt.block_on(eng.docker.image_id(&t.image))?,
        );
    }
    let mut notes = Vec::new();
    let plan = restore_plan(&m, targets.clone(), &here, &mut notes);
    for n in &notes {
        let line = if n.starts_with("warning") {
            n.clone()
        } else {
            format!("note: {n}")
        };
        writeln!(env.err, "{line}")?;
    }
    if plan.is_empty() {
        return Err(Error::Snapshot(format!(
            "snapshot `{}` has none of the volumes asked for: nothing was restored",
            m.name
        )));
    }
    let folder = dir.join(&args.name);
    // Qdrant first, through its API: it keeps running, and nothing is stopped for it.
    let through_api = eng.run(
        stack,
        copy::restore_collections(
            &eng.docker,
            &stack.name,
            &plan.collections,
            &eng.containers,
            &folder,
            READY_WITHIN,
        ),
    );
    if through_api.is_ok() {
        let restored: Vec<String> = plan
            .collections
            .iter()
            .map(|(t, _)| t.service.clone())
            .collect();
        seeded_by_restore(stack, &eng, &restored, env)?;
    }
    through_api?;
    let stop: Vec<String> = plan
        .volumes
        .iter()
        .map(|(t, _)| t.service.clone())
        .filter(|s| copy::is_running(eng.containers.get(s)))
        .collect();
    let paused = pause(stack, &eng, &targets, &stop, env)?;
    let done = eng.run(
        stack,
        copy::restore_volumes(&eng.docker, &stack.name, &plan.volumes, &folder),
    );
    if done.is_ok() {
        let restored: Vec<String> = plan
            .volumes
            .iter()
            .map(|(t, _)| t.service.clone())
            .collect();
        seeded_by_restore(stack, &eng, &restored, env)?;
    }
    resume(stack, &eng, paused, env)?;
    done?;
    say_restored(&m, &plan, &notes, args.json, env)
}

fn say_restored(
    m: &Manifest,
    plan: &Plan,
    notes: &[String],
    json: bool,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    if json {
        let restored: Vec<serde_json::Value> = plan
            .volumes
            .iter()
            .flat_map(|(t, vs)| {
                vs.iter().map(
                    move |v| json!({ "service": t.service, "volume": v.volume, "bytes": v.bytes }),
                )
            })
            .chain(plan.collections.iter().map(|(t, cs)| {
                json!({
                    "service": t.service,
                    "collections": cs.iter().map(|c| &c.collection).collect::<Vec<_>>(),
                    "bytes": cs.iter().map(|c| c.bytes).sum::<u64>(),
                })
            }))
            .collect();
        let v = json!({ "name": m.name, "restored": restored, "notes": notes });
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Encode(e.to_string()))?;
        writeln!(env.out, "{text}")?;
        return Ok(());
    }
    let services = plan.services();
    writeln!(
        env.out,
        "restored snapshot `{}` into {}",
        m.name,
        list(&services)
    )?;
    Ok(())
}

/// `up --from-snapshot NAME`: the snapshot's volumes put back before the stack starts.
pub(super) fn restore_before_up(
    stack: &Stack,
    up: &crate::cli::UpArgs,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    match &up.from_snapshot {
        Some(name) => restore_quietly(stack, stack, name, env),
        None => Ok(()),
    }
}

/// Snapshot `name` of project `from` restored into `into`'s volumes (`up --from-snapshot`, and
/// `test --from-snapshot` into its throwaway project), speaking on stderr only: stdout belongs
/// to scripts and suites.
pub(super) fn restore_quietly(
    from: &Stack,
    into: &Stack,
    name: &str,
    env: &mut Env<'_>,
) -> Result<(), Error> {
    let args = SnapshotRestoreArgs {
        name: name.to_string(),
        services: Vec::new(),
        from: None,
        json: false,
    };
    let mut out = Vec::new();
    let result = restore_from(
        &snapshots(from),
        into,
        &args,
        &mut Env {
            cwd: env.cwd.clone(),
            vars: env.vars,
            out: &mut out,
            err: env.err,
            no_color: env.no_color,
        },
    );
    env.err.write_all(&out)?;
    result
}

/// Best effort: the volumes of a throwaway project whose start-up failed before it ran.
pub(super) fn remove_volumes(stack: &Stack) {
    let Ok(rt) = runtime() else { return };
    rt.block_on(async {
        let Ok(docker) = DockerRuntime::connect().await else {
            return;
        };
        for (name, _) in docker.list_volumes(&stack.name).await.unwrap_or_default() {
            // A volume that stays is named by `devstack ls` and goes with `down -v`.
            let _ = docker.remove_volume(&name).await;
        }
    });
}

fn ls(stack: &Stack, json: bool, env: &mut Env<'_>) -> Result<(), Error> {
    let (good, bad) = store::list(&snapshots(stack));
    if json {
        let rows: Vec<serde_json::Value> = good
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "created": m.created,
                    "bytes": m.bytes(),
                    "services": m.services.iter().map(|s| &s.service).collect::<Vec<_>>(),
                    "manifest": m,
                })
            })
            .collect();
        writeln!(
            env.out,
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Error::Encode(e.to_string()))?
        )?;
    } else if good.is_empty() {
        writeln!(
            env.err,
            "no snapshots for project `{}` (`devstack snapshot save NAME` makes one)",
            stack.name
        )?;
    } else {
        let now = crate::clock::unix_ms() / 1000;
        let width = good.iter().map(|m| m.name.len()).max().unwrap_or(4).max(4);
        writeln!(
            env.out,
            "{:<width$}  {:>10}  {:>10}  SERVICES",
            "NAME", "AGE", "SIZE"
        )?;
        for m in &good {
            let age =
                humantime::format_duration(Duration::from_secs(now.saturating_sub(m.created)))
                    .to_string();
            let age = age.split(' ').next().unwrap_or("0s").to_string();
            let svcs: Vec<String> = m.services.iter().map(|s| s.service.clone()).collect();
            writeln!(
                env.out,
                "{:<width$}  {:>10}  {:>10}  {}",
                m.name,
                age,
                mib(m.bytes()),
                svcs.join(", ")
            )?;
        }
    }
    for (name, why) in bad {
        writeln!(env.err, "warning: `{name}`: {why}")?;
    }
    Ok(())
}

fn rm(stack: &Stack, name: &str, env: &mut Env<'_>) -> Result<(), Error> {
    store::check_name(name).map_err(snapshot_error)?;
    let folder = snapshots(stack).join(name);
    if !folder.is_dir() {
        return Err(snapshot_error(SnapshotError::Missing(name.to_string())));
    }
    std::fs::remove_dir_all(&folder)?;
    writeln!(env.out, "removed snapshot `{name}`")?;
    Ok(())
}

/// `devstack reset [SERVICE…]`: names the volumes, asks (unless `--yes`), empties them and
/// starts the services fresh.
pub(super) fn reset(stack: &Stack, args: &ResetArgs, env: &mut Env<'_>) -> Result<(), Error> {
    let targets = chosen(stack, &args.services)?;
    let volumes: Vec<String> = targets
        .iter()
        .flat_map(|t| {
            t.volumes
                .iter()
                .map(move |v| format!("`{}` ({})", v.engine_name, t.service))
        })
        .collect();
    writeln!(
        env.err,
        "reset empties these volumes: {}",
        volumes.join(", ")
    )?;
    if !args.yes && !confirmed(env)? {
        return Err(Error::Usage {
            message: "reset not confirmed: nothing was emptied".into(),
            help: None,
        });
    }
    let eng = Engine::connect(stack, &targets)?;
    let stop: Vec<String> = targets
        .iter()
        .map(|t| t.service.clone())
        .filter(|s| copy::is_running(eng.containers.get(s)))
        .collect();
    let paused = pause(stack, &eng, &targets, &stop, env)?;
    let done = eng.run(
        stack,
        copy::empty_volumes(&eng.docker, &stack.name, &targets),
    );
    // Emptied data is seeded again at its next ready.
    for t in &targets {
        seed::forget(&state_dir(&stack.name), &t.service)?;
    }
    resume(stack, &eng, paused, env)?;
    done?;
    let names: Vec<String> = targets.iter().map(|t| t.service.clone()).collect();
    writeln!(env.out, "reset {}", list(&names))?;
    Ok(())
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirmed(env: &mut Env<'_>) -> Result<bool, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage {
            message: "reset empties volumes and asks first, but stdin is not a terminal".into(),
            help: Some("confirm on the command line: `devstack reset --yes [SERVICE…]`".into()),
        });
    }
    write!(env.err, "empty them? [y/N] ")?;
    env.err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Consistency, TargetVolume};

    fn target(service: &str, volumes: &[&str]) -> Target {
        Target {
            service: service.into(),
            image: "img".into(),
            ready: None,
            helper_ok: true,
            environment: Vec::new(),
            consistency: Consistency::Stop,
            volumes: volumes
                .iter()
                .map(|v| TargetVolume {
                    volume: (*v).into(),
                    engine_name: format!("p_{v}"),
                    target: "/data".into(),
                })
                .collect(),
        }
    }

    fn manifest() -> Manifest {
        let mut m = crate::snapshot::store::sample_manifest("s1", &["db.data.tar.gz"]);
        m.services[0].image = "img".into();
        m.services[0].image_id = Some("sha256:aaaaaaaaaaaaaaaa".into());
        let v = &mut m.services[0].volumes[0];
        (v.bytes, v.raw_bytes) = (1, 1);
        m.created = 0;
        m
    }

    #[test]
    fn what_a_snapshot_lacks_is_left_alone_and_said() {
        let here = BTreeMap::from([
            (
                "db".to_string(),
                Some("sha256:aaaaaaaaaaaaaaaa".to_string()),
            ),
            ("cache".to_string(), None),
        ]);
        let mut notes = Vec::new();
        let work = restore_plan(
            &manifest(),
            vec![target("db", &["data", "logs"]), target("cache", &["rd"])],
            &here,
            &mut notes,
        );
        assert_eq!(work.volumes.len(), 1);
        assert_eq!(work.volumes[0].1.len(), 1, "only the volume it has");
        assert_eq!(
            notes,
            [
                "snapshot `s1` has no volume `logs` of `db`: it is left alone",
                "snapshot `s1` has no `cache`: its volumes are left alone",
            ]
        );
    }

    #[test]
    fn collections_go_back_through_qdrants_api_and_only_to_a_qdrant() {
        let mut m = manifest();
        m.services[0].consistency = store::SNAPSHOT_API.into();
        m.services[0].volumes.clear();
        m.services[0].collections = vec![CollectionEntry {
            collection: "docs".into(),
            file: "db.collection-0.snapshot".into(),
            bytes: 1,
        }];
        let mut qdrant = target("db", &["data"]);
        qdrant.consistency = Consistency::Qdrant {
            port: 6333,
            api_key: None,
        };
        let mut notes = Vec::new();
        let plan = restore_plan(&m, vec![qdrant], &BTreeMap::new(), &mut notes);
        assert!(plan.volumes.is_empty(), "no volume copy, no stop");
        assert_eq!(plan.collections.len(), 1);
        assert_eq!(plan.collections[0].1[0].collection, "docs");
        assert_eq!(plan.services(), ["db"]);
        assert!(notes.is_empty(), "{notes:?}");
        // Into a service that is not a Qdrant here: left alone, and said.
        let plan = restore_plan(
            &m,
            vec![target("db", &["data"])],
            &BTreeMap::new(),
            &mut notes,
        );
        assert!(plan.is_empty());
        assert!(notes[0].contains("not a Qdrant service here"), "{notes:?}");
    }

    #[test]
    fn another_image_id_warns() {
        let here = BTreeMap::from([(
            "db".to_string(),
            Some("sha256:bbbbbbbbbbbbbbbb".to_string()),
        )]);
        let mut notes = Vec::new();
        let work = restore_plan(
            &manifest(),
            vec![target("db", &["data"])],
            &here,
            &mut notes,
        );
        assert_eq!(work.volumes.len(), 1, "it still restores");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("warning: `db` was saved with image id aaaaaaaaaaaa"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("is now bbbbbbbbbbbb"), "{}", notes[0]);
    }
}
