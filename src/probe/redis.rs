//! Redis probe: optional `AUTH`, then `PING` must answer `+PONG`.

use tokio::io::{AsyncWriteExt, BufReader};

use super::{attempt, connect, excerpt, read_line, ProbeError};

/// AUTH first when a password is given; then PING must answer +PONG. (`-LOADING` is an error.)
pub async fn redis(addr: std::net::SocketAddr, password: Option<&str>) -> Result<(), ProbeError> {
    attempt(async {
        let mut stream = BufReader::new(connect(addr).await?);
        if let Some(password) = password {
            stream
                .write_all(&command(&[b"AUTH", password.as_bytes()]))
                .await?;
            match parse_reply(&read_line(&mut stream).await?) {
                Reply::Simple(ok) if ok == "OK" => {}
                Reply::Simple(other) | Reply::Error(other) | Reply::Other(other) => {
                    return Err(ProbeError::AuthRefused(other))
                }
            }
        }
        stream.write_all(&command(&[b"PING"])).await?;
        match parse_reply(&read_line(&mut stream).await?) {
            Reply::Simple(pong) if pong == "PONG" => Ok(()),
            Reply::Simple(other) | Reply::Error(other) | Reply::Other(other) => {
                Err(ProbeError::NoPong(other))
            }
        }
    })
    .await
}

/// A command as a RESP array of bulk strings, so any password bytes go through unchanged.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first line of a RESP reply, which is all a probe needs.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// `+OK` -> `OK`
    Simple(String),
    /// `-NOAUTH ...` -> the whole line, `-` included, as people know Redis errors.
    Error(String),
    /// Anything else (integers, bulk strings, arrays, garbage), for the error message.
    Other(String),
}

fn parse_reply(line: &[u8]) -> Reply {
    let complete = line.ends_with(b"\r\n");
    match line.strip_suffix(b"\r\n") {
        Some([b'+', rest @ ..]) => Reply::Simple(excerpt(rest)),
        Some(error @ [b'-', ..]) => Reply::Error(excerpt(error)),
        _ if complete => Reply::Other(excerpt(line)),
        _ => Reply::Other(format!("incomplete reply `{}`", excerpt(line))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            command(&[b"AUTH", b"p a\r\ns"]),
            b"*2\r\n$4\r\nAUTH\r\n$6\r\np a\r\ns\r\n"
        );
    }

    #[test]
    fn replies() {
        let simple = |s: &str| Reply::Simple(s.into());
        let error = |s: &str| Reply::Error(s.into());
        let other = |s: &str| Reply::Other(s.into());
        let cases: &[(&[u8], Reply)] = &[
            (b"+PONG\r\n", simple("PONG")),
            (b"+OK\r\n", simple("OK")),
            (b"+\r\n", simple("")),
            (
                b"-NOAUTH Authentication required.\r\n",
                error("-NOAUTH Authentication required."),
            ),
            (
                b"-LOADING Redis is loading the dataset in memory\r\n",
                error("-LOADING Redis is loading the dataset in memory"),
            ),
            (
                b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
                error("-WRONGPASS invalid username-password pair or user is disabled."),
            ),
            (b"$4\r\n", other("$4")),
            (b":1\r\n", other(":1")),
            (b"*1\r\n", other("*1")),
            (
                b"HTTP/1.1 400 Bad Request\r\n",
                other("HTTP/1.1 400 Bad Request"),
            ),
            (b"+PONG", other("incomplete reply `+PONG`")),
            (b"+PONG\n", other("incomplete reply `+PONG`")),
            (b"\xff\xfe\r\n", other("\u{fffd}\u{fffd}")),
        ];
        for (line, want) in cases {
            assert_eq!(parse_reply(line), *want, "{}", excerpt(line));
        }
    }
}
