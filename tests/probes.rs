//! Readiness probes against real peers: PostgreSQL and Redis servers started by the tests, and
//! tiny in-process TCP servers for transport failures (silence, hang-ups, garbage).
//!
//! Needs on the machine: PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`, or
//! `PG_BINDIR`), `runuser` when running as root, and `redis-server` on PATH.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use devstack::probe::{self, Backoff, ProbeError, ATTEMPT_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// In-process peers

/// A listener that never accepts: the kernel completes the handshake, then nothing is said.
async fn silent_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An address with nothing listening: a port we bound and released.
fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn free_port() -> u16 {
    closed_addr().port()
}

/// Accepts every connection and drops it at once, before reading anything.
async fn hang_up_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    addr
}

/// For every connection: reads until `complete(request)`, writes `reply(request)` (which may be
/// empty), closes, and reports the request. Reading the whole request first matters: closing
/// with unread bytes would send a reset that can discard the reply.
async fn peer(
    complete: fn(&[u8]) -> bool,
    reply: fn(&[u8]) -> &'static [u8],
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut chunk = [0; 1024];
            while !complete(&request) {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            // Ignored: the probe may already have given up, which the test checks itself.
            let _ = socket.write_all(reply(&request)).await;
            let _ = requests_tx.send(request);
        }
    });
    (addr, requests_rx)
}

fn http_head(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n")
}

fn kafka_frame(request: &[u8]) -> bool {
    match request.first_chunk::<4>() {
        Some(size) => request.len() >= 4 + i32::from_be_bytes(*size) as usize,
        None => false,
    }
}

fn four_letters(request: &[u8]) -> bool {
    request.len() >= 4
}

fn pg_startup(request: &[u8]) -> bool {
    match request.first_chunk::<4>() {
        Some(size) => request.len() >= i32::from_be_bytes(*size) as usize,
        None => false,
    }
}

fn redis_ping(request: &[u8]) -> bool {
    request.ends_with(b"PING\r\n")
}

const HTTP_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), ProbeError>> + Send>>;

/// Every protocol probe aimed at `addr`.
fn every_probe(addr: SocketAddr) -> Vec<(&'static str, ProbeFuture)> {
    vec![
        (
            "http",
            Box::pin(async move { probe::http(&format!("http://{addr}/health")).await }),
        ),
        ("qdrant", Box::pin(probe::qdrant(addr))),
        (
            "postgres",
            Box::pin(probe::postgres(addr, "user", "pass", "db")),
        ),
        ("redis", Box::pin(probe::redis(addr, Some("pass")))),
        ("kafka", Box::pin(probe::kafka(addr))),
        ("zookeeper", Box::pin(probe::zookeeper(addr))),
    ]
}

/// Runs all `probes` at once; returns each result with how long it took.
async fn run_all(
    probes: Vec<(&'static str, ProbeFuture)>,
) -> Vec<(&'static str, Result<(), ProbeError>, Duration)> {
    let mut set = tokio::task::JoinSet::new();
    for (name, probe) in probes {
        set.spawn(async move {
            let start = Instant::now();
            let result = probe.await;
            (name, result, start.elapsed())
        });
    }
    let mut results = Vec::new();
    while let Some(result) = set.join_next().await {
        results.push(result.unwrap());
    }
    results
}

// ---------------------------------------------------------------------------------------------
// Transport failures, every probe

#[tokio::test]
async fn every_probe_times_out_on_a_silent_server() {
    let (_listener, addr) = silent_listener().await;
    let results = run_all(every_probe(addr)).await;
    assert_eq!(results.len(), 6);
    for (name, result, elapsed) in results {
        assert_eq!(result, Err(ProbeError::TimedOut(ATTEMPT_TIMEOUT)), "{name}");
        assert_eq!(result.unwrap_err().to_string(), "timed out after 2s");
        assert!(
            elapsed >= ATTEMPT_TIMEOUT && elapsed < Duration::from_millis(2500),
            "{name} took {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn every_probe_reports_connection_refused() {
    let addr = closed_addr();
    let mut probes = every_probe(addr);
    probes.push(("tcp", Box::pin(probe::tcp(addr))));
    for (name, result, _) in run_all(probes).await {
        assert_eq!(result, Err(ProbeError::Refused), "{name}");
        assert_eq!(result.unwrap_err().to_string(), "connection refused");
    }
}

#[tokio::test]
async fn every_probe_fails_when_the_server_hangs_up() {
    let addr = hang_up_listener().await;
    for (name, result, elapsed) in run_all(every_probe(addr)).await {
        // Closed (EOF), reset or broken pipe, depending on how our request met the closing socket.
        match result {
            Err(ProbeError::Closed) => {}
            Err(ProbeError::Io(ref text))
                if text == "connection reset by peer" || text.starts_with("broken pipe") => {}
            other => panic!("{name}: {other:?}"),
        }
        assert!(elapsed < Duration::from_secs(1), "{name} took {elapsed:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// TCP and HTTP

#[tokio::test]
async fn tcp_connects_to_a_listener() {
    let (_listener, addr) = silent_listener().await;
    assert_eq!(probe::tcp(addr).await, Ok(()));
}

#[tokio::test]
async fn tcp_is_not_fooled_by_a_proxy_that_accepts_and_hangs_up() {
    // Docker's userland proxy accepts on a published port and closes when nothing listens
    // inside the container; that is not ready.
    let addr = hang_up_listener().await;
    let result = probe::tcp(addr).await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn http_2xx_is_ready_and_the_request_is_well_formed() {
    let ok = peer(http_head, |_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    })
    .await;
    let no_content = peer(http_head, |_| b"HTTP/1.0 204 No Content\r\n\r\n").await;
    for (addr, mut requests) in [ok, no_content] {
        assert_eq!(
            probe::http(&format!("http://{addr}/ready?deep=1")).await,
            Ok(())
        );
        let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
        assert!(
            request.starts_with("GET /ready?deep=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: {addr}\r\n")),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }
}

#[tokio::test]
async fn http_503_names_the_status() {
    let (addr, _requests) = peer(http_head, |_| {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    })
    .await;
    let error = probe::http(&format!("http://{addr}/ready"))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "HTTP 503 Service Unavailable");
}

#[tokio::test]
async fn http_garbage_is_not_an_http_response() {
    let (addr, _requests) = peer(http_head, |_| b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let error = probe::http(&format!("http://{addr}/")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "not an HTTP response: `SSH-2.0-OpenSSH_9.6`"
    );
}

#[tokio::test]
async fn http_rejects_https_urls_without_connecting() {
    let error = probe::http("https://127.0.0.1:1/").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid URL `https://127.0.0.1:1/`: only http:// is supported"
    );
}

#[tokio::test]
async fn qdrant_asks_for_readyz() {
    let (addr, mut requests) = peer(http_head, |_| b"HTTP/1.1 200 OK\r\n\r\n").await;
    assert_eq!(probe::qdrant(addr).await, Ok(()));
    let request = requests.recv().await.unwrap();
    assert!(request.starts_with(b"GET /readyz HTTP/1.1\r\n"));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL and Redis probes pointed at the wrong service

#[tokio::test]
async fn postgres_rejects_an_http_answer() {
    let (addr, _requests) = peer(pg_startup, |_| HTTP_400).await;
    let error = probe::postgres(addr, "user", "pass", "db")
        .await
        .unwrap_err();
    // `H`, then "TTP/" read as a length: capped, nothing allocated.
    assert_eq!(
        error.to_string(),
        "not a PostgreSQL server: message length 1414811695"
    );
}

#[tokio::test]
async fn redis_rejects_an_http_answer() {
    let (addr, _requests) = peer(redis_ping, |_| HTTP_400).await;
    let error = probe::redis(addr, None).await.unwrap_err();
    assert_eq!(error.to_string(), "no PONG: HTTP/1.1 400 Bad Request");
}

// ---------------------------------------------------------------------------------------------
// Kafka and ZooKeeper: failures only (real brokers are tested with containers)

#[tokio::test]
async fn kafka_sends_api_versions_and_rejects_an_http_answer() {
    let (addr, mut requests) = peer(kafka_frame, |_| HTTP_400).await;
    let error = probe::kafka(addr).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "not a Kafka broker: response size 1213486160"
    );
    let request = requests.recv().await.unwrap();
    // size, api key 18, version 0, correlation id, client id "devstack"
    assert_eq!(&request[..8], &[0, 0, 0, 18, 0, 18, 0, 0]);
    assert_eq!(&request[12..], b"\x00\x08devstack");
}

#[tokio::test]
async fn kafka_rejects_a_foreign_correlation_id() {
    let (addr, _requests) = peer(kafka_frame, |_| &[0, 0, 0, 6, 0, 0, 0, 42, 0, 0]).await;
    let error = probe::kafka(addr).await.unwrap_err().to_string();
    assert!(
        error.starts_with("not a Kafka broker: correlation id 42 instead of"),
        "{error}"
    );
}

#[tokio::test]
async fn kafka_fails_on_a_short_response() {
    // Announces 100 bytes, sends 2, closes.
    let (addr, _requests) = peer(kafka_frame, |_| &[0, 0, 0, 100, 0, 0]).await;
    assert_eq!(probe::kafka(addr).await, Err(ProbeError::Closed));
}

#[tokio::test]
async fn zookeeper_rejects_a_garbage_ruok_answer() {
    let (addr, mut requests) = peer(four_letters, |_| b"hello\n").await;
    let error = probe::zookeeper(addr).await.unwrap_err();
    assert_eq!(error.to_string(), "`ruok` answered `hello`");
    assert_eq!(requests.recv().await.unwrap(), b"ruok");
}

#[tokio::test]
async fn zookeeper_falls_back_to_srvr_on_a_new_connection() {
    // `ruok` gets the answer of a ZooKeeper that does not whitelist it; `srvr` gets garbage.
    let (addr, mut requests) = peer(four_letters, |request| match request {
        b"ruok" => b"ruok is not executed because it is not in the whitelist.",
        _ => b"\x00\x01garbage",
    })
    .await;
    let error = probe::zookeeper(addr).await.unwrap_err();
    assert_eq!(error.to_string(), "`srvr` answered `\\0\\u{1}garbage`");
    assert_eq!(requests.recv().await.unwrap(), b"ruok");
    assert_eq!(requests.recv().await.unwrap(), b"srvr");
}

#[tokio::test]
async fn zookeeper_hang_up_after_fallback_says_closed() {
    let addr = hang_up_listener().await;
    let error = probe::zookeeper(addr).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "server closed the connection without answering"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers for real servers

/// Polls `ready` with the probes' own backoff until it holds or `deadline` passes.
fn wait_until(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) {
    let give_up = Instant::now() + deadline;
    let mut backoff = Backoff::new(Duration::from_millis(200));
    while !ready() {
        assert!(
            Instant::now() < give_up,
            "{what} not ready after {deadline:?}"
        );
        std::thread::sleep(backoff.next_delay());
    }
}

fn output_text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        output_text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn running_as_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a real server per test
//
// PostgreSQL refuses to run as root. When the tests run as root (containers, CI images), the
// server-side commands (initdb, postgres, pg_ctl) run as the `postgres` system user through
// `runuser -u postgres --`, in a temporary directory under /tmp (not $TMPDIR, which may sit in
// root's home where `postgres` cannot enter) that is chowned to `postgres`. As any other user
// they run as that user directly. Clients (pg_isready, psql, the probe) run as the test user.

const USER: &str = "probe_user";
const PASSWORD: &str = "probe-pass";
const DATABASE: &str = "probe_db";
const SUPERUSER_PASSWORD: &str = "super-pass";

struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    addr: SocketAddr,
    /// `postgres` itself (behind `runuser` when we are root), so an early exit is seen at once.
    postmaster: Option<Child>,
}

impl PgServer {
    /// initdb, `pg_hba.conf` = `host all all 127.0.0.1/32 <hba_method>`, start on a free port,
    /// wait until it accepts connections, create `USER` (its password stored with
    /// `password_encryption`) and `DATABASE`.
    fn start(hba_method: &str, password_encryption: &str) -> PgServer {
        let bin = pg_bindir();
        let as_postgres = running_as_root();
        let dir = if as_postgres {
            tempfile::Builder::new()
                .prefix("devstack-pg-")
                .tempdir_in("/tmp")
                .unwrap()
        } else {
            tempfile::Builder::new()
                .prefix("devstack-pg-")
                .tempdir()
                .unwrap()
        };
        std::fs::write(dir.path().join("pwfile"), SUPERUSER_PASSWORD).unwrap();
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path()));
        }
        let mut server = PgServer {
            bin,
            dir,
            as_postgres,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            postmaster: None,
        };
        let data = server.data();
        run(server
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!(
                "--pwfile={}",
                server.dir.path().join("pwfile").display()
            )));
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("host all all 127.0.0.1/32 {hba_method}\n"),
        )
        .unwrap();
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             password_encryption = '{password_encryption}'\nfsync = off\n",
            server.addr.port()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap();

        // From here on `Drop` stops the server whatever happens.
        let log = std::fs::File::create(server.log()).unwrap();
        server.postmaster = Some(
            server
                .server_command("postgres")
                .arg("-D")
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let port = server.addr.port().to_string();
        wait_until(
            &format!("postgres on {}", server.addr),
            Duration::from_secs(30),
            || {
                let postmaster = server.postmaster.as_mut().expect("spawned above");
                if let Ok(Some(status)) = postmaster.try_wait() {
                    panic!(
                        "postgres exited with {status}; its log:\n{}",
                        server.log_text()
                    );
                }
                Command::new(server.bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port, "-t", "1"])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            },
        );
        server.psql(&format!("CREATE USER {USER} PASSWORD '{PASSWORD}'"));
        server.psql(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// A server-side program, as `postgres` when we are root.
    fn server_command(&self, program: &str) -> Command {
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        };
        // `postgres` may not be allowed into the test's working directory.
        command.current_dir(self.dir.path());
        command
    }

    /// Runs `sql` as the superuser; returns the unaligned, tuples-only output.
    fn psql(&self, sql: &str) -> String {
        run(Command::new(self.bin.join("psql"))
            .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.addr.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Ignored: the server may never have started; the tempdir goes right after.
        let _ = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut postmaster) = self.postmaster.take() {
            // Reaps it; kill first in case `pg_ctl stop` could not reach it.
            let _ = postmaster.kill();
            let _ = postmaster.wait();
        }
    }
}

/// `PG_BINDIR`, else the newest `/usr/lib/postgresql/<version>/bin` (Debian and Ubuntu layout).
fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return dir.into();
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root).ok().and_then(|versions| {
        versions
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                Some((
                    entry.file_name().to_str()?.parse::<u32>().ok()?,
                    entry.path(),
                ))
            })
            .filter(|(_, path)| path.join("bin/initdb").exists())
            .max()
    });
    match newest {
        Some((_, path)) => path.join("bin"),
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/<version>/bin: \
             install them (`apt-get install postgresql`) or set PG_BINDIR"
        ),
    }
}

async fn assert_login_checks_the_password(server: &PgServer) {
    assert_eq!(
        probe::postgres(server.addr, USER, PASSWORD, DATABASE).await,
        Ok(())
    );
    let error = probe::postgres(server.addr, USER, "wrong", DATABASE)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("password authentication failed for user \"{USER}\" (FATAL 28P01)")
    );
}

#[tokio::test]
async fn postgres_scram_sha_256_login() {
    let server = PgServer::start("scram-sha-256", "scram-sha-256");
    assert_login_checks_the_password(&server).await;

    let error = probe::postgres(server.addr, USER, PASSWORD, "missing_db")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "database \"missing_db\" does not exist (FATAL 3D000)"
    );
}

#[tokio::test]
async fn postgres_md5_login() {
    let server = PgServer::start("md5", "md5");
    let stored = server.psql(&format!(
        "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = '{USER}'"
    ));
    assert_eq!(
        stored.trim(),
        "md5",
        "the user's password must be stored as MD5"
    );
    assert_login_checks_the_password(&server).await;
}

#[tokio::test]
async fn postgres_cleartext_login() {
    let server = PgServer::start("password", "scram-sha-256");
    assert_login_checks_the_password(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Redis: a real redis-server per test

struct RedisServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start(extra_args: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("redis-server")
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(extra_args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}): these tests need a real Redis; \
                     install it with `apt-get install redis-server`"
                )
            });
        let mut server = RedisServer { child, addr, dir };
        wait_until(&format!("redis on {addr}"), Duration::from_secs(10), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.dir.path().join("redis.log"));
                panic!(
                    "redis-server exited with {status}; its log:\n{}",
                    log.unwrap_or_default()
                );
            }
            std::net::TcpStream::connect(addr).is_ok()
        });
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Ignored: it may have exited already; either way it is gone after `wait`.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_without_a_password() {
    let server = RedisServer::start(&[]);
    assert_eq!(probe::redis(server.addr, None).await, Ok(()));

    // A password the server does not expect is a configuration error worth reporting.
    let error = probe::redis(server.addr, Some("pass")).await.unwrap_err();
    assert!(
        error.to_string().starts_with("AUTH refused: -ERR"),
        "{error}"
    );
}

#[tokio::test]
async fn redis_with_requirepass() {
    let server = RedisServer::start(&["--requirepass", "s3cret pass"]);

    let error = probe::redis(server.addr, None).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "no PONG: -NOAUTH Authentication required."
    );

    let error = probe::redis(server.addr, Some("wrong")).await.unwrap_err();
    // Redis 6+ says WRONGPASS; older servers say "-ERR invalid password".
    let text = error.to_string();
    assert!(
        text.starts_with("AUTH refused: -WRONGPASS")
            || text == "AUTH refused: -ERR invalid password",
        "{text}"
    );

    assert_eq!(probe::redis(server.addr, Some("s3cret pass")).await, Ok(()));
}

#[tokio::test]
async fn zookeeper_is_ready_on_imok_though_the_connection_stays_open() {
    // ZooKeeper 3.8 can answer `imok` and then fail to close while its database loads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, mut held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut word = [0; 4];
            if socket.read_exact(&mut word).await.is_ok() {
                let _ = socket.write_all(b"imok").await;
            }
            // Kept open (until the test ends): no close follows the answer.
            let _ = held_tx.send(socket);
        }
    });
    // Well inside the attempt's own 2 s limit: the answer alone ends it.
    let verdict = tokio::time::timeout(
        std::time::Duration::from_millis(1500),
        probe::zookeeper(addr),
    )
    .await
    .expect("the probe waited for a close that never comes");
    assert_eq!(verdict, Ok(()));
    assert!(
        held.recv().await.is_some(),
        "the peer answered one connection"
    );
}
