//! Thin instances at run time (`project::thin` decides what they are): the main instance's
//! shared services checked before anything starts, each share made inside the main instance's
//! container (`docker exec` of `psql`) or dropped by `down -v` (`psql`, `redis-cli`, Qdrant's
//! HTTP API, Kafka's protocol), and which thin instances use a main instance (its `down`, and
//! `stop` of a service they share, refuse while they run).

use std::collections::BTreeSet;

use indexmap::IndexMap;

use super::Env;
use crate::config::ServiceName;
use crate::config::{Probe, Service, ShareKind, Stack};
use crate::control::protocol::{Reply, Request};
use crate::docker::DockerRuntime;
use crate::error::Error;
use crate::project::instance::Identity;
use crate::project::state_dir;
use crate::project::thin::{self, Made, MainPorts, Share};
use crate::runtime::{ContainerInfo, ContainerRuntime, ContainerStatus, HookExec};

/// What this command's instance shares with the main instance, and how the main one runs.
#[derive(Clone)]
pub(super) struct Thin {
    /// The main instance's project name.
    pub(super) main: String,
    pub(super) shares: Vec<Share>,
    /// The shared services as the stack file writes them (their logins).
    services: IndexMap<String, Service>,
    /// The main instance's containers (its shared services run in them).
    containers: Vec<ContainerInfo>,
}

impl Thin {
    /// The shares of `identity`'s instance (none for the main one): for `up`, `--share` or
    /// `instances.share`; for the other commands what the last thin `up` recorded (until
    /// `down -v` drops them). `stack` is the instance's, before [`Thin::apply`].
    pub(super) fn of(
        stack: &Stack,
        identity: &Identity,
        flag: Option<&[String]>,
        is_up: bool,
    ) -> Result<Thin, Error> {
        let main = identity.base.clone();
        let mut thin = Thin {
            main,
            shares: Vec::new(),
            services: IndexMap::new(),
            containers: Vec::new(),
        };
        // The main instance shares nothing; a stack known by its name alone says nothing.
        let Some(instance) = identity.instance.as_deref() else {
            return Ok(thin);
        };
        if stack.services.is_empty() {
            return Ok(thin);
        }
        let recorded = thin::load_record(&state_dir(&stack.name));
        // Only `up` decides; the other commands see what it did (a full instance, or one
        // whose shares `down -v` dropped, has no record).
        let mut names: Vec<String> = match (flag, &recorded) {
            (Some(f), _) => f.iter().filter(|s| !s.is_empty()).cloned().collect(),
            (None, _) if is_up => stack.instances.share.clone(),
            (None, Some(r)) => r.shares.iter().map(|s| s.service.clone()).collect(),
            (None, None) => Vec::new(),
        };
        if !is_up {
            // What can no longer be shared is not in the way of `down` or `ps`.
            names.retain(|n| {
                stack
                    .services
                    .get(n)
                    .and_then(Service::share_kind)
                    .is_some()
            });
        }
        let used = redis_indexes_of_others(&thin.main, &stack.name);
        thin.shares = thin::plan(stack, Some(instance), &names, recorded.as_ref(), &used)
            .map_err(plan_error)?;
        thin.services = stack
            .services
            .iter()
            .filter(|(n, _)| thin.shares.iter().any(|s| &s.service == *n))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        if !thin.shares.is_empty() {
            thin.containers = main_containers(&thin.main).unwrap_or_default();
        }
        Ok(thin)
    }

    pub(super) fn is_thin(&self) -> bool {
        !self.shares.is_empty()
    }

    /// The host ports the main instance's shared services are published on.
    fn ports(&self) -> MainPorts {
        let mut out = MainPorts::new();
        for s in &self.shares {
            for c in self.containers.iter().filter(|c| c.service == s.service) {
                for p in &c.ports {
                    out.insert((s.service.clone(), p.container_port), p.host_port);
                }
            }
        }
        out
    }

    /// Makes `stack` the stack this instance runs (`project::thin::apply`).
    pub(super) fn apply(&self, stack: &mut Stack) {
        thin::apply(stack, &self.shares, &self.ports());
    }

    /// Resolves the references of `stack` and keeps every service: for `down`, which removes
    /// whatever the instance has (a full run of it leaves containers of the shared services).
    pub(super) fn apply_keeping_services(&self, stack: &mut Stack) {
        thin::apply(stack, &[], &MainPorts::new());
    }

    /// The main instance's running container of `service`.
    fn container(&self, service: &str) -> Option<&ContainerInfo> {
        self.containers
            .iter()
            .find(|c| c.service == service && c.status == ContainerStatus::Running)
    }

    /// Every shared service runs in the main instance, ready (as its devstack says, when one
    /// runs it); else what to run first, and nothing is started.
    pub(super) fn ensure_main(&self, project: &str) -> Result<(), Error> {
        let names: Vec<String> = self.shares.iter().map(|s| s.service.clone()).collect();
        let mut problems: Vec<String> = names
            .iter()
            .filter(|s| self.container(s).is_none())
            .map(|s| format!("`{s}` is not running"))
            .collect();
        if problems.is_empty() {
            problems.extend(main_not_ready(&self.main, &names));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Shared {
            message: format!(
                "thin instance `{project}` shares {} of the main instance `{}`, and {}",
                quoted(&names),
                self.main,
                problems.join(", ")
            ),
            help: format!(
                "start them as the main instance first: `devstack --instance \"\" up --wait {}` (from this folder), or `devstack up` in the main checkout; or `up --share \"\"` for a full instance",
                names.join(" ")
            ),
        })
    }

    /// Makes every share that is not there yet (idempotent: a later `up` reuses them), says
    /// what each is, and records them in the instance's state folder.
    pub(super) fn prepare(&mut self, project: &str, env: &mut Env<'_>) -> Result<(), Error> {
        let rt = crate::session::runtime()?;
        let docker = rt.block_on(DockerRuntime::connect())?;
        for i in 0..self.shares.len() {
            let share = self.shares[i].clone();
            let said = match share.kind {
                ShareKind::Postgres => {
                    let made = rt.block_on(self.make_database(&docker, &share))?;
                    self.shares[i].made = made.or(share.made);
                    made_words(&share, made)
                }
                ShareKind::Redis => format!("database index {}", share.value),
                ShareKind::Kafka | ShareKind::Qdrant => {
                    let foreign = match share.foreign.clone() {
                        Some(f) => f,
                        None => self.names_there_before(&share)?,
                    };
                    let said = prefix_words(&share, &foreign);
                    self.shares[i].foreign = Some(foreign);
                    said
                }
            };
            writeln!(
                env.err,
                "shared: {} of `{}` → {said}",
                share.service, self.main
            )?;
        }
        let record = thin::Record {
            main: self.main.clone(),
            shares: self.shares.clone(),
        };
        thin::save_record(&state_dir(project), &record).map_err(|e| Error::Shared {
            message: format!("cannot record the shares of `{project}`: {e}"),
            help: "make the state folder writable (see `devstack doctor`)".into(),
        })
    }

    /// The topics or collections that have the share's prefix before the instance first
    /// runs: the main instance's, which `down -v` must leave.
    fn names_there_before(&self, share: &Share) -> Result<Vec<String>, Error> {
        let (listed, what) = match share.kind {
            ShareKind::Kafka => (super::share_kafka::topics(self.kafka_port(share)), "topics"),
            _ => (
                super::share_http::collections(self.qdrant_port(share)),
                "collections",
            ),
        };
        let all = listed.map_err(|e| {
            let what = format!(
                "cannot list the {what} of `{}` in the main instance `{}` (the prefix `{}` must know what is already there)",
                share.service, self.main, share.value
            );
            in_context(e, &what)
        })?;
        Ok(thin::own(&all, &share.value, None)
            .into_iter()
            .map(str::to_string)
            .collect())
    }

    /// The host port of the main instance's Kafka broker of `share`.
    fn kafka_port(&self, share: &Share) -> Option<u16> {
        let probe = self
            .services
            .get(&share.service)
            .and_then(|s| s.ready.as_ref());
        let port = match probe.map(|r| &r.probe) {
            Some(Probe::Kafka { port }) => *port,
            _ => 9092,
        };
        self.ports().get(&(share.service.clone(), port)).copied()
    }

    /// The host port of the main instance's Qdrant HTTP API of `share`.
    fn qdrant_port(&self, share: &Share) -> Option<u16> {
        self.ports().get(&(share.service.clone(), 6333)).copied()
    }

    /// The share's database, made unless it exists: empty (`fresh`), else a copy of the main
    /// database with `TEMPLATE`, else (the main database has sessions) with `pg_dump`. None:
    /// it existed.
    async fn make_database(
        &self,
        docker: &DockerRuntime,
        share: &Share,
    ) -> Result<Option<Made>, Error> {
        let pg = self.postgres(docker, share)?;
        let exists = pg
            .sql(&format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                literal(&share.value)
            ))
            .await?;
        if exists.trim() == "1" {
            return Ok(None);
        }
        let new = ident(&share.value);
        if share.fresh {
            pg.sql(&format!("CREATE DATABASE {new}")).await?;
            return Ok(Some(Made::Empty));
        }
        let template = format!("CREATE DATABASE {new} TEMPLATE {}", ident(&pg.database));
        match pg.sql(&template).await {
            Ok(_) => Ok(Some(Made::Template)),
            Err(e) if e.to_string().contains("being accessed by other users") => {
                pg.sql(&format!("CREATE DATABASE {new}")).await?;
                if let Err(e) = pg.dump_into(&share.value).await {
                    // No half-made copy stays behind.
                    let _ = pg
                        .sql(&format!("DROP DATABASE IF EXISTS {new} WITH (FORCE)"))
                        .await;
                    return Err(e);
                }
                Ok(Some(Made::Dump))
            }
            Err(e) => Err(e),
        }
    }

    /// `psql` in the main instance's container of a PostgreSQL share.
    fn postgres<'a>(&'a self, docker: &'a DockerRuntime, share: &Share) -> Result<Psql<'a>, Error> {
        let container = self
            .container(&share.service)
            .ok_or_else(|| Error::Shared {
                message: format!(
                    "the main instance `{}` runs no `{}` container",
                    self.main, share.service
                ),
                help: format!(
                    "start it: `devstack --instance \"\" up --wait {}`",
                    share.service
                ),
            })?;
        let Some(Probe::Postgres {
            user,
            password,
            database,
            ..
        }) = self
            .services
            .get(&share.service)
            .and_then(|s| s.ready.as_ref())
            .map(|r| &r.probe)
        else {
            return Err(plan_error(thin::PlanError::NotShareable {
                service: share.service.clone(),
            }));
        };
        Ok(Psql {
            docker,
            container: container.id.clone(),
            service: share.service.clone(),
            user: user.clone(),
            password: password.clone(),
            database: database.clone(),
        })
    }

    /// `down -v` of a thin instance: drops its own database, flushes its Redis index, deletes
    /// its prefixed Qdrant collections and Kafka topics (in the main instance's containers),
    /// and forgets them.
    pub(super) fn drop_shares(&self, project: &str, env: &mut Env<'_>) -> Result<(), Error> {
        let rt = crate::session::runtime()?;
        let docker = rt.block_on(DockerRuntime::connect())?;
        let mut all = true;
        for share in &self.shares {
            match rt.block_on(self.drop_share(&docker, share)) {
                Ok(said) => writeln!(
                    env.err,
                    "dropped: {} of `{}`: {said}",
                    share.service, self.main
                )?,
                // The rest still goes; the record stays, so a later `down -v` tries again.
                Err(e) => {
                    all = false;
                    write!(env.err, "warning: {}", e.render(false))?;
                }
            }
        }
        if all {
            let _ = std::fs::remove_file(thin::record_path(&state_dir(project)));
        }
        Ok(())
    }

    async fn drop_share(&self, docker: &DockerRuntime, share: &Share) -> Result<String, Error> {
        match share.kind {
            ShareKind::Postgres => {
                let pg = self.postgres(docker, share)?;
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(&share.value)
                );
                pg.sql(&sql).await?;
                Ok(format!("database `{}`", share.value))
            }
            ShareKind::Redis => {
                self.flush_redis(docker, share).await?;
                Ok(format!("the keys of database index {}", share.value))
            }
            ShareKind::Qdrant => {
                let foreign = share.foreign.as_deref();
                let gone = super::share_http::drop_collections(
                    self.qdrant_port(share),
                    &share.value,
                    foreign,
                )
                .map_err(|e| in_context(e, "cannot delete the instance's Qdrant collections"))?;
                Ok(format!(
                    "collections {}{}",
                    quoted(&gone),
                    left_words(foreign)
                ))
            }
            ShareKind::Kafka => {
                if let Some(why) = self.unsafe_to_delete_topics(docker, share).await {
                    return Ok(format!("topics prefixed `{}` are left: {why}", share.value));
                }
                let foreign = share.foreign.as_deref();
                let gone =
                    super::share_kafka::drop_topics(self.kafka_port(share), &share.value, foreign)
                        .map_err(|e| in_context(e, "cannot delete the instance's Kafka topics"))?;
                Ok(format!("topics {}{}", quoted(&gone), left_words(foreign)))
            }
        }
    }

    /// Why no DeleteTopics request may go to the main instance's broker: the local Kafka
    /// stand-in (tansu 0.6, `images/kafka`) deletes every topic of its cluster on one (its
    /// `topic_delete_by.sql` matches the cluster, not the topic), which would take the main
    /// instance's topics and every other thin instance's with them.
    async fn unsafe_to_delete_topics(
        &self,
        docker: &DockerRuntime,
        share: &Share,
    ) -> Option<&'static str> {
        const UNKNOWN: &str = "the main instance's broker image cannot be read, and the local Kafka stand-in (tansu 0.6) deletes every topic of its cluster on a DeleteTopics request, so devstack sends none";
        let Some(c) = self.container(&share.service) else {
            return Some(UNKNOWN);
        };
        let Ok(Some((_, labels))) = docker.image_labels(&c.image).await else {
            return Some(UNKNOWN);
        };
        let stand_in = labels
            .get("org.devstack.stand-in")
            .is_some_and(|v| v == "true");
        let tansu = labels
            .get("org.devstack.description")
            .is_some_and(|d| d.contains("tansu"));
        (stand_in && tansu).then_some(
            "the local Kafka stand-in (tansu 0.6) deletes every topic of its cluster on a DeleteTopics request, the main instance's too, so devstack sends none; a real Kafka broker gets one",
        )
    }

    async fn flush_redis(&self, docker: &DockerRuntime, share: &Share) -> Result<(), Error> {
        let Some(c) = self.container(&share.service) else {
            return Err(not_running(&self.main, &share.service));
        };
        let password = match self
            .services
            .get(&share.service)
            .and_then(|s| s.ready.as_ref())
        {
            Some(r) => match &r.probe {
                Probe::Redis { password, .. } => password.clone(),
                _ => None,
            },
            None => None,
        };
        let argv = ["redis-cli", "-n", &share.value, "FLUSHDB"];
        let env = password.map(|p| vec![format!("REDISCLI_AUTH={p}")]);
        run(
            docker,
            &c.id,
            &argv,
            env.unwrap_or_default(),
            &share.service,
        )
        .await?;
        Ok(())
    }
}

/// The main instance's `psql`, as its superuser over the container's local socket.
struct Psql<'a> {
    docker: &'a DockerRuntime,
    container: String,
    service: String,
    user: String,
    password: String,
    database: String,
}

impl Psql<'_> {
    fn env(&self) -> Vec<String> {
        vec![
            format!("PGUSER={}", self.user),
            format!("PGPASSWORD={}", self.password),
        ]
    }

    /// One statement against the `postgres` database; its output (`-tA`).
    async fn sql(&self, sql: &str) -> Result<String, Error> {
        let argv = [
            "psql",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        ];
        run(
            self.docker,
            &self.container,
            &argv,
            self.env(),
            &self.service,
        )
        .await
    }

    /// `pg_dump main | psql new`, through a file in the container removed after.
    async fn dump_into(&self, new: &str) -> Result<String, Error> {
        let script = r#"f=$(mktemp) && pg_dump --no-owner "$MAIN_DB" > "$f" && psql -q -v ON_ERROR_STOP=1 -d "$NEW_DB" -f "$f" > /dev/null; s=$?; rm -f "$f"; exit $s"#;
        let mut env = self.env();
        env.push(format!("MAIN_DB={}", self.database));
        env.push(format!("NEW_DB={new}"));
        run(
            self.docker,
            &self.container,
            &["sh", "-c", script],
            env,
            &self.service,
        )
        .await
    }
}

/// `argv` in the container; its output, or the error with the tail of it.
async fn run(
    docker: &DockerRuntime,
    container: &str,
    argv: &[&str],
    env: Vec<String>,
    service: &str,
) -> Result<String, Error> {
    let hook = HookExec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        user: None,
        privileged: false,
        working_dir: None,
        env,
    };
    let (code, output) = docker.exec_hook(container, &hook).await?;
    if code == 0 {
        return Ok(output);
    }
    Err(Error::Shared {
        message: format!(
            "`{}` in the main instance's `{service}` exited with {code}: {}",
            argv[0],
            output.trim()
        ),
        help: "`devstack --instance \"\" logs` shows the main instance's log".into(),
    })
}

fn made_words(share: &Share, made: Option<Made>) -> String {
    let how = match made {
        None => "kept from the last run",
        Some(Made::Template) => "copied from the main database with CREATE DATABASE … TEMPLATE",
        Some(Made::Dump) => {
            "copied from the main database with pg_dump (it has open sessions, which TEMPLATE refuses)"
        }
        Some(Made::Empty) => "empty (fresh)",
    };
    format!("database `{}` ({how})", share.value)
}

/// `e`'s message after what was being done.
fn in_context(e: Error, doing: &str) -> Error {
    match e {
        Error::Shared { message, help } => Error::Shared {
            message: format!("{doing}: {message}"),
            help,
        },
        other => other,
    }
}

/// What `up` says of a prefix share: the prefix, and the names of it that are not its own.
fn prefix_words(share: &Share, foreign: &[String]) -> String {
    let what = match share.kind {
        ShareKind::Kafka => "topic",
        _ => "collection",
    };
    let mut said = format!("{what} prefix `{}`", share.value);
    if !foreign.is_empty() {
        said += &format!(
            " ({} already there with that prefix, not its own: `down -v` leaves them)",
            quoted(foreign)
        );
    }
    said
}

/// What `down -v` says of the prefixed names it left (there before the instance).
fn left_words(foreign: Option<&[String]>) -> String {
    match foreign {
        Some(f) if !f.is_empty() => format!("; left {} (there before it)", quoted(f)),
        _ => String::new(),
    }
}

fn not_running(main: &str, service: &str) -> Error {
    Error::Shared {
        message: format!("the main instance `{main}` runs no `{service}` container"),
        help: format!("start it: `devstack --instance \"\" up --wait {service}`"),
    }
}

fn plan_error(e: thin::PlanError) -> Error {
    match e {
        thin::PlanError::NotShareable { service } => Error::Usage {
            message: format!("cannot share `{service}`: it is not a PostgreSQL, Redis, Kafka or Qdrant container of the stack"),
            help: Some("`--share` and `instances.share` name containers with a `postgres`, `redis`, `kafka` or `qdrant` readiness preset".into()),
        },
        thin::PlanError::NoRedisIndex { service } => Error::Shared {
            message: format!("every Redis database index 1–15 of `{service}` is another thin instance's"),
            help: "`devstack ls` lists them; `devstack down -v --instance NAME` frees one".into(),
        },
    }
}

/// A SQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quoted(names: &[impl AsRef<str>]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the devstack that runs `main` (if one does) does not have every one of `services`
/// ready: asked with `wait` and no patience (`ps` would measure CPU for a second).
fn main_not_ready(main: &str, services: &[String]) -> Option<String> {
    let mut conn = crate::control::client::connect(&state_dir(main), main).ok()?;
    let request = Request::Wait {
        services: services.iter().map(ServiceName::from).collect(),
        timeout_ms: Some(0),
    };
    if conn.send(request).is_err() {
        return None;
    }
    loop {
        match conn.answer() {
            Ok(Some(Reply::Record { .. })) => {}
            Ok(Some(Reply::Done { .. })) => return None,
            Ok(Some(Reply::Error { message, .. })) => {
                return Some(format!("its devstack says: {message}"))
            }
            // A devstack that stops as it answers: the containers were checked.
            _ => return None,
        }
    }
}

fn main_containers(main: &str) -> Result<Vec<ContainerInfo>, Error> {
    let rt = crate::session::runtime()?;
    rt.block_on(async {
        let docker = DockerRuntime::connect().await?;
        Ok(docker.list(main).await?)
    })
}

/// The thin records of every instance on this machine but `except`.
fn thin_records(except: &str) -> Vec<(String, std::path::PathBuf, thin::Record)> {
    crate::project::known_state_dirs()
        .into_iter()
        .filter(|(p, _)| p != except)
        .filter_map(|(p, dir)| thin::load_record(&dir).map(|r| (p, dir, r)))
        .collect()
}

/// The Redis indexes other thin instances of `main` hold.
fn redis_indexes_of_others(main: &str, project: &str) -> BTreeSet<u8> {
    thin_records(project)
        .into_iter()
        .filter(|(_, _, r)| r.main == main)
        .flat_map(|(_, _, r)| r.shares)
        .filter(|s| s.kind == ShareKind::Redis)
        .filter_map(|s| s.value.parse().ok())
        .collect()
}

/// The thin instances running on `main`'s services (a devstack holds their lock).
pub(super) fn users_of(main: &str) -> Vec<String> {
    crate::project::thin_users(main)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}
