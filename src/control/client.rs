//! The control socket's client: finds the project's running devstack (its socket at
//! `project::socket_path`), sends one request and reads the answers. Synchronous, as the CLI
//! verbs are. A socket left by a killed devstack is removed and reported as "no devstack is
//! running", never as a hang or a raw `ECONNREFUSED`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Envelope, Reply, Request, PROTOCOL_VERSION};
use crate::error::Error;

/// How long the server gets to greet.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Connection {
    reader: BufReader<UnixStream>,
    /// The pid of the devstack that answered.
    pub pid: u32,
}

/// Connects to the devstack that runs `project`. `Error::NotRunning` when none does (a stale
/// socket is removed on the way).
pub fn connect(state_dir: &Path, project: &str) -> Result<Connection, Error> {
    let path = crate::project::socket_path(state_dir);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::Engine(format!(
                "cannot reach the control socket `{}` of project `{project}`: {e}; it belongs to another user",
                path.display()
            )))
        }
        Err(e) => {
            let holder = crate::project::lock::holder(state_dir);
            return Err(match holder {
                None => {
                    if path.exists() {
                        // Nobody holds the project's lock, so nobody serves this socket: a
                        // killed devstack left it.
                        let _ = std::fs::remove_file(&path);
                    }
                    Error::NotRunning {
                        project: project.to_string(),
                    }
                }
                Some(pid) => Error::Engine(format!(
                    "devstack pid {pid} runs project `{project}` but does not answer on `{}` ({e}); it may be starting, or be older than the control socket",
                    path.display()
                )),
            });
        }
    };
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut conn = Connection {
        reader: BufReader::new(stream),
        pid: 0,
    };
    match conn.answer()? {
        Some(Reply::Hello { v, pid, .. }) if v == PROTOCOL_VERSION => conn.pid = pid,
        Some(Reply::Hello { v, pid, .. }) => {
            return Err(Error::Engine(format!(
                "devstack pid {pid} speaks control protocol version {v}, this devstack speaks {PROTOCOL_VERSION}: use the same devstack binary"
            )))
        }
        Some(Reply::Error { message, .. }) => return Err(Error::Engine(message)),
        _ => {
            return Err(Error::Engine(format!(
                "the devstack of project `{project}` did not greet on `{}`",
                path.display()
            )))
        }
    }
    conn.reader.get_ref().set_read_timeout(None)?;
    Ok(conn)
}

impl Connection {
    pub fn send(&mut self, request: Request) -> Result<(), Error> {
        let mut line = serde_json::to_vec(&Envelope {
            v: PROTOCOL_VERSION,
            request,
        })
        .map_err(|e| Error::Encode(e.to_string()))?;
        line.push(b'\n');
        self.reader.get_mut().write_all(&line)?;
        Ok(())
    }

    /// The next answer; `None` once the server has closed the connection.
    pub fn answer(&mut self) -> Result<Option<Reply>, Error> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| Error::Engine(format!("cannot read the control socket's answer: {e}")))
    }
}
