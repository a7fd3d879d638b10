//! Copying volumes out of and into the engine, and the consistency commands run in a service's
//! container before a copy (`CHECKPOINT`, `SAVE`). Through the Docker adapter's helper
//! containers (`DockerRuntime::volume_export`/`volume_import`); it never stops or starts a
//! service itself: the caller does, through the running devstack or the engine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::progress::Progress;
use super::qdrant::Api;
use super::store::{collection_file, volume_file, CollectionEntry, ServiceEntry, VolumeEntry};
use super::{Consistency, Target};
use crate::docker::DockerRuntime;
use crate::error::Error;
use crate::runtime::{ContainerInfo, ContainerRuntime, ContainerStatus, HookExec, Published};

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the copy under way to stop at its next chunk or volume (Ctrl-C).
pub(crate) fn interrupt() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

pub(super) fn check_interrupted() -> Result<(), Error> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// The containers of the targets' services, by service (any state).
pub(crate) async fn containers(
    docker: &DockerRuntime,
    project: &str,
    targets: &[Target],
) -> Result<BTreeMap<String, ContainerInfo>, Error> {
    Ok(docker
        .list(project)
        .await?
        .into_iter()
        .filter(|c| targets.iter().any(|t| t.service == c.service))
        .map(|c| (c.service.to_string(), c))
        .collect())
}

pub(crate) fn is_running(c: Option<&ContainerInfo>) -> bool {
    c.is_some_and(|c| {
        matches!(
            c.status,
            ContainerStatus::Running | ContainerStatus::Restarting
        )
    })
}

/// Runs each running target's consistency command. Returns how each was made consistent
/// (by service) and the services that must stop for the copy. A failed `SAVE` falls back to a
/// stop; a failed `CHECKPOINT` only makes the stop longer. A running Qdrant whose API port is
/// published is saved through its API and keeps running.
pub(crate) async fn prepare(
    docker: &DockerRuntime,
    targets: &[Target],
    running: &BTreeMap<String, ContainerInfo>,
    notes: &mut Vec<String>,
) -> Result<(BTreeMap<String, String>, Vec<String>), Error> {
    let mut how = BTreeMap::new();
    let mut stop = Vec::new();
    for t in targets {
        let Some(c) = running.get(&t.service).filter(|c| is_running(Some(c))) else {
            how.insert(t.service.clone(), "stopped".to_string());
            continue;
        };
        if let Consistency::Qdrant { port, .. } = &t.consistency {
            if published(c, *port).is_some() {
                how.insert(t.service.clone(), super::store::SNAPSHOT_API.to_string());
            } else {
                notes.push(format!(
                    "`{}` publishes no port {port}: its snapshot API cannot be reached, so it is stopped for a copy of its volumes",
                    t.service
                ));
                how.insert(t.service.clone(), "stop".to_string());
                stop.push(t.service.clone());
            }
            continue;
        }
        let (code, out) = docker
            .exec_hook(&c.id, &consistency_exec(&t.consistency))
            .await?;
        let ok = code == 0;
        match (&t.consistency, ok) {
            (Consistency::Redis { .. }, true) => {
                how.insert(t.service.clone(), "save".into());
                continue;
            }
            (Consistency::Redis { .. }, false) => notes.push(format!(
                "`{}`: SAVE failed ({}); stopping it for the copy instead",
                t.service,
                out.trim()
            )),
            (Consistency::Postgres { .. }, false) => notes.push(format!(
                "`{}`: CHECKPOINT failed ({}); the stop may take longer",
                t.service,
                out.trim()
            )),
            _ => {}
        }
        let name = match (&t.consistency, ok) {
            (Consistency::Redis { .. }, _) => "stop",
            (c, _) => c.name(),
        };
        how.insert(t.service.clone(), name.to_string());
        stop.push(t.service.clone());
    }
    Ok((how, stop))
}

/// The command that makes a running service's files consistent (`true` when there is none).
fn consistency_exec(c: &Consistency) -> HookExec {
    let (argv, env): (Vec<&str>, Vec<String>) = match c {
        Consistency::Postgres {
            user,
            password,
            database,
            ..
        } => (
            vec![
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                user,
                "-d",
                database,
                "-Atc",
                "CHECKPOINT",
            ],
            vec![format!("PGPASSWORD={password}")],
        ),
        Consistency::Redis { password, .. } => (
            vec!["redis-cli", "SAVE"],
            password
                .iter()
                .map(|p| format!("REDISCLI_AUTH={p}"))
                .collect(),
        ),
        Consistency::Stop | Consistency::Qdrant { .. } => (vec!["true"], Vec::new()),
    };
    HookExec {
        argv: argv.into_iter().map(str::to_string).collect(),
        user: None,
        privileged: false,
        working_dir: None,
        env,
    }
}

/// Copies every volume of the targets into `folder` (a gzipped tar each). A volume the engine
/// does not have yet (the service never ran) is left out, with a note.
pub(crate) async fn save_volumes(
    docker: &DockerRuntime,
    project: &str,
    targets: &[Target],
    how: &BTreeMap<String, String>,
    containers: &BTreeMap<String, ContainerInfo>,
    folder: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<ServiceEntry>, Error> {
    let existing: Vec<String> = docker
        .list_volumes(project)
        .await?
        .into_iter()
        .map(|(full, _)| full)
        .collect();
    let mut out = Vec::new();
    for t in targets {
        let image_id = image_id(docker, &t.image).await?;
        let through_api =
            how.get(&t.service).map(String::as_str) == Some(super::store::SNAPSHOT_API);
        let mut volumes = Vec::new();
        let mut collections = Vec::new();
        if through_api {
            let api = containers
                .get(&t.service)
                .and_then(|c| api_of(t, c))
                .ok_or_else(|| Error::Engine(format!("`{}` publishes no API port", t.service)))?;
            collections = save_collections(&api, &t.service, folder).await?;
        }
        for v in t.volumes.iter().filter(|_| !through_api) {
            if !existing.contains(&v.engine_name) {
                notes.push(format!(
                    "`{}`: volume `{}` does not exist yet (the service never ran): not in the snapshot",
                    t.service, v.engine_name
                ));
                continue;
            }
            check_interrupted()?;
            let file = volume_file(&t.service, &v.volume);
            let (bytes, raw_bytes) = export_one(
                docker,
                project,
                &v.engine_name,
                &t.image,
                &folder.join(&file),
            )
            .await?;
            volumes.push(VolumeEntry {
                volume: v.volume.clone(),
                engine_name: v.engine_name.clone(),
                target: v.target.clone(),
                file,
                bytes,
                raw_bytes,
            });
        }
        out.push(ServiceEntry {
            service: t.service.clone(),
            image: t.image.clone(),
            image_id: Some(image_id),
            config_hash: containers
                .get(&t.service)
                .map(|c| c.config_hash.clone())
                .filter(|h| !h.is_empty()),
            consistency: how.get(&t.service).cloned().unwrap_or_default(),
            volumes,
            collections,
        });
    }
    Ok(out)
}

/// Where a container publishes `port` on the host (loopback when it listens on every address).
fn published(c: &ContainerInfo, port: u16) -> Option<std::net::SocketAddr> {
    c.ports
        .iter()
        .find(|p: &&Published| {
            p.container_port == port && p.protocol == crate::config::Protocol::Tcp
        })
        .map(|p| {
            let ip = if p.host_ip.is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                p.host_ip
            };
            std::net::SocketAddr::new(ip, p.host_port)
        })
}

/// The API of a Qdrant target's container, where it publishes it.
fn api_of(t: &Target, c: &ContainerInfo) -> Option<Api> {
    let Consistency::Qdrant { port, api_key } = &t.consistency else {
        return None;
    };
    Some(Api {
        addr: published(c, *port)?,
        api_key: api_key.clone(),
    })
}

fn qdrant_failed(service: &str, why: String) -> Error {
    match check_interrupted() {
        Err(e) => e,
        Ok(()) => Error::Snapshot(format!("`{service}` (Qdrant's snapshot API): {why}")),
    }
}

/// Every collection of a running Qdrant, through its snapshot API, into `folder`.
async fn save_collections(
    api: &Api,
    service: &str,
    folder: &Path,
) -> Result<Vec<CollectionEntry>, Error> {
    let names = api
        .collections()
        .await
        .map_err(|e| qdrant_failed(service, e))?;
    let mut out = Vec::new();
    for (n, name) in names.into_iter().enumerate() {
        check_interrupted()?;
        let file = collection_file(service, n);
        let bytes = api
            .save(&name, &folder.join(&file))
            .await
            .map_err(|e| qdrant_failed(service, e))?;
        out.push(CollectionEntry {
            collection: name,
            file,
            bytes,
        });
    }
    Ok(out)
}

/// Puts a Qdrant's collections back through its API: each saved one uploaded (replaced, or
/// created), then each made since the save deleted. A running container's own API is used;
/// else a helper of the service's image serves the volumes for the time of the restore.
pub(crate) async fn restore_collections(
    docker: &DockerRuntime,
    project: &str,
    work: &[(Target, Vec<CollectionEntry>)],
    containers: &BTreeMap<String, ContainerInfo>,
    folder: &Path,
    within: std::time::Duration,
) -> Result<(), Error> {
    for (t, saved) in work {
        check_interrupted()?;
        let Consistency::Qdrant { port, api_key } = &t.consistency else {
            continue;
        };
        let running = containers.get(&t.service).filter(|c| is_running(Some(c)));
        let (api, helper) = match running.map(|c| api_of(t, c)) {
            Some(Some(api)) => (api, None),
            // Running, but its API cannot be reached: a helper beside it would share its
            // storage.
            Some(None) => {
                return Err(Error::Usage {
                    message: format!(
                        "`{}` runs but publishes no port {port}, and its collections go back through its API: nothing was restored",
                        t.service
                    ),
                    help: Some(format!(
                        "publish the port (`ports: [\"{port}\"]`), or stop it (`devstack stop {}`) and restore again",
                        t.service
                    )),
                })
            }
            None if !t.helper_ok => {
                return Err(Error::Usage {
                    message: format!(
                        "`{}` is not running, and it sets its own command or mounts more than its named volumes, so a helper of its image may not serve its data: nothing was restored",
                        t.service
                    ),
                    help: Some(format!(
                        "start it (`devstack up --wait {}`) and restore again",
                        t.service
                    )),
                })
            }
            None => {
                image_id(docker, &t.image).await?;
                let mut mounts = Vec::new();
                for v in &t.volumes {
                    let engine = crate::plan::volume_name(project, &v.volume);
                    docker.ensure_volume(project, &v.volume, &engine).await?;
                    mounts.push((engine, v.target.clone()));
                }
                let (id, addr) = docker
                    .served_helper(project, &t.image, &mounts, &t.environment, *port)
                    .await?;
                let api = Api {
                    addr,
                    api_key: api_key.clone(),
                };
                (api, Some(id))
            }
        };
        let done = async {
            if helper.is_some() {
                let deadline = tokio::time::Instant::now() + within;
                while !api.ready().await {
                    check_interrupted()?;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::Engine(format!(
                            "a helper Qdrant for `{}` did not answer on {} within {}s",
                            t.service,
                            api.addr,
                            within.as_secs()
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            let before = api
                .collections()
                .await
                .map_err(|e| qdrant_failed(&t.service, e))?;
            for c in saved {
                check_interrupted()?;
                api.recover(&c.collection, &folder.join(&c.file))
                    .await
                    .map_err(|e| qdrant_failed(&t.service, e))?;
            }
            for name in before
                .iter()
                .filter(|n| !saved.iter().any(|c| &c.collection == *n))
            {
                check_interrupted()?;
                api.drop_collection(name)
                    .await
                    .map_err(|e| qdrant_failed(&t.service, e))?;
            }
            Ok(())
        }
        .await;
        if let Some(id) = helper {
            // The restore's own failure first, then the helper's.
            let stopped = docker.stop(&id, std::time::Duration::from_secs(10)).await;
            let removed = docker.remove(&id).await;
            done.and(stopped.map_err(Error::from))
                .and(removed.map_err(Error::from))?;
        } else {
            done?;
        }
    }
    Ok(())
}

async fn image_id(docker: &DockerRuntime, image: &str) -> Result<String, Error> {
    docker
        .image_id(image)
        .await?
        .ok_or_else(|| Error::ImageUnavailable {
            image: image.to_string(),
            reason: "the snapshot copies volumes with the service's own image, and it is not here"
                .into(),
        })
}

/// One volume into a gzipped tar file: (file bytes, volume bytes as tarred).
async fn export_one(
    docker: &DockerRuntime,
    project: &str,
    volume: &str,
    image: &str,
    file: &Path,
) -> Result<(u64, u64), Error> {
    // Disk full and the like: say which file, not "output".
    let cannot = |e: std::io::Error| {
        Error::Engine(format!(
            "cannot write the snapshot file `{}`: {e}",
            file.display()
        ))
    };
    let f = std::fs::File::create(file).map_err(cannot)?;
    let mut gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(1 << 20, f),
        flate2::Compression::fast(),
    );
    let mut progress = Progress::new(format!("saving {volume}"));
    let mut sink = |chunk: &[u8]| {
        if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "interrupted",
            ));
        }
        progress.add(chunk.len());
        gz.write_all(chunk)
    };
    let exported = docker
        .volume_export(project, volume, image, &mut sink)
        .await;
    check_interrupted()?;
    exported?;
    let raw = progress.bytes();
    drop(progress);
    let f = gz
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(cannot)?;
    f.sync_all().map_err(cannot)?;
    Ok((std::fs::metadata(file).map_err(cannot)?.len(), raw))
}

/// Empties each volume and extracts its saved copy into it (the engine creates a volume that
/// is missing, with the project's labels).
pub(crate) async fn restore_volumes(
    docker: &DockerRuntime,
    project: &str,
    work: &[(Target, Vec<VolumeEntry>)],
    folder: &Path,
) -> Result<(), Error> {
    for (t, volumes) in work {
        image_id(docker, &t.image).await?;
        for v in volumes {
            check_interrupted()?;
            docker
                .ensure_volume(project, &v.volume, &v.engine_name_for(project))
                .await?;
            let file = std::fs::File::open(folder.join(&v.file))?;
            let chunks = tar_chunks(file, Progress::new(format!("restoring {}", v.volume)));
            let imported = docker
                .volume_import(project, &v.engine_name_for(project), &t.image, Some(chunks))
                .await;
            check_interrupted()?;
            imported?;
        }
    }
    Ok(())
}

/// A saved volume (a gzipped tar file) as a stream of its plain tar in 1 MiB chunks, counted on
/// `progress`. The file is decompressed on a thread of its own while the engine extracts what
/// came before, two cores at work where the engine alone would decompress and extract in turn.
/// The stream ends with an error at the next chunk once the copy is interrupted (the engine then
/// drops the upload).
fn tar_chunks(file: std::fs::File, mut progress: Progress) -> crate::runtime::ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    std::thread::spawn(move || {
        let mut tar = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        loop {
            if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                let e = std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted");
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let mut buf = vec![0u8; 1 << 20];
            let chunk = match fill(&mut tar, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    progress.add(n);
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            // A closed channel: the upload is gone, nothing is waiting for the rest.
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// Reads until `buf` is full or the input ends; how many bytes it holds.
fn fill(from: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Empties each volume of the targets (`reset`).
pub(crate) async fn empty_volumes(
    docker: &DockerRuntime,
    project: &str,
    targets: &[Target],
) -> Result<(), Error> {
    for t in targets {
        image_id(docker, &t.image).await?;
        for v in &t.volumes {
            check_interrupted()?;
            docker
                .ensure_volume(project, &v.volume, &v.engine_name)
                .await?;
            docker
                .volume_import(project, &v.engine_name, &t.image, None)
                .await?;
        }
    }
    Ok(())
}

impl VolumeEntry {
    /// The engine's name of this volume in `project` (a snapshot may come from another
    /// project or instance: its volumes go into this one's).
    pub(crate) fn engine_name_for(&self, project: &str) -> String {
        crate::plan::volume_name(project, &self.volume)
    }
}

/// Removes helper containers of this process that an interrupted copy left. The engine may
/// still hold one for the archive stream that was cut (a removal then answers "in progress" or
/// "conflict"), so this asks again until none is left, for up to ten seconds.
pub(crate) async fn remove_helpers(docker: &DockerRuntime, project: &str) {
    let mine = format!("{project}-snapshot-{}-", std::process::id());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<ContainerInfo> = match docker.list(project).await {
            Ok(list) => list
                .into_iter()
                .filter(|c| c.name.starts_with(&mine))
                .collect(),
            // Best effort: `down` removes any helper left with the project's label.
            Err(_) => return,
        };
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return;
        }
        for c in left {
            let _ = docker.remove(&c.id).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// With no devstack running: waits until a container started again answers its readiness
/// probe on its published port, within `within`: a real PostgreSQL login, a Redis `PING`,
/// Qdrant's `/readyz`, ZooKeeper's `ruok`, Kafka's ApiVersions, or a TCP connect. Services
/// with another probe (or none) are not awaited.
pub(crate) async fn await_ready(
    docker: &DockerRuntime,
    id: &str,
    target: &Target,
    within: std::time::Duration,
) -> Result<(), Error> {
    use crate::config::Probe;
    let port = match &target.ready {
        Some(
            Probe::Tcp(port)
            | Probe::Postgres { port, .. }
            | Probe::Redis { port, .. }
            | Probe::Qdrant { port }
            | Probe::Kafka { port }
            | Probe::Zookeeper { port },
        ) => *port,
        _ => return Ok(()),
    };
    let info = docker.inspect(id).await?;
    let Some(addr) = published(&info, port) else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = crate::probe::Backoff::new(std::time::Duration::from_millis(500));
    loop {
        let attempt = match &target.ready {
            Some(Probe::Postgres {
                user,
                password,
                database,
                ..
            }) => crate::probe::postgres(addr, user, password, database).await,
            Some(Probe::Redis { password, .. }) => {
                crate::probe::redis(addr, password.as_deref()).await
            }
            Some(Probe::Qdrant { .. }) => crate::probe::qdrant(addr).await,
            Some(Probe::Kafka { .. }) => crate::probe::kafka(addr).await,
            Some(Probe::Zookeeper { .. }) => crate::probe::zookeeper(addr).await,
            _ => crate::probe::tcp(addr).await,
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Engine(format!(
                    "`{}` did not answer on {addr} within {}s after the copy: {e}",
                    target.service,
                    within.as_secs()
                )))
            }
            Err(_) => tokio::time::sleep(backoff.next_delay()).await,
        }
    }
}
