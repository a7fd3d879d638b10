//! HTTP GET probe: plain http:// only, reads no more than the status line.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{attempt, excerpt, read_line, ProbeError};

/// GET `url` (http:// only, host:port/path; sends Host, Connection: close); Ok on any 2xx status.
pub async fn http(url: &str) -> Result<(), ProbeError> {
    let target = parse_url(url)?;
    attempt(async {
        let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: devstack\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n",
            target.path, target.authority
        );
        stream.write_all(request.as_bytes()).await?;
        let line = read_line(&mut BufReader::new(stream)).await?;
        match parse_status_line(&line)? {
            (200..=299, _) => Ok(()),
            (status, reason) => Err(ProbeError::HttpStatus { status, reason }),
        }
    })
    .await
}

#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// What to connect to: a name or an address, IPv6 without brackets.
    host: String,
    port: u16,
    /// The `Host` header: host and port as the URL wrote them.
    authority: String,
    /// Path and query, starting with `/`.
    path: String,
}

fn parse_url(url: &str) -> Result<Target, ProbeError> {
    let invalid = |why: &str| ProbeError::Invalid(format!("invalid URL `{url}`: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// is supported"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_string(),
    };
    if authority.contains('@') {
        return Err(invalid("user info is not supported"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(|| invalid("unclosed `[`"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(invalid("unexpected text after `]`")),
                },
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        None => 80,
        Some(port) => port.parse().map_err(|_| invalid("bad port"))?,
    };
    Ok(Target {
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

/// `HTTP/1.1 503 Service Unavailable\r\n` -> `(503, "Service Unavailable")`.
pub(crate) fn parse_status_line(line: &[u8]) -> Result<(u16, String), ProbeError> {
    let not_http = || ProbeError::Protocol(format!("not an HTTP response: `{}`", excerpt(line)));
    let text = std::str::from_utf8(line).map_err(|_| not_http())?;
    let text = text.trim_end_matches(['\r', '\n']);
    let rest = text.strip_prefix("HTTP/").ok_or_else(not_http)?;
    let (_version, rest) = rest.split_once(' ').ok_or_else(not_http)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_http());
    }
    let status = code.parse().map_err(|_| not_http())?;
    Ok((status, reason.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |host: &str, port, authority: &str, path: &str| Target {
            host: host.into(),
            port,
            authority: authority.into(),
            path: path.into(),
        };
        let cases = [
            (
                "http://127.0.0.1:5000/ready",
                ok("127.0.0.1", 5000, "127.0.0.1:5000", "/ready"),
            ),
            ("http://localhost", ok("localhost", 80, "localhost", "/")),
            (
                "http://localhost:3000",
                ok("localhost", 3000, "localhost:3000", "/"),
            ),
            ("http://h:1?x=1#frag", ok("h", 1, "h:1", "/?x=1")),
            ("http://h/a/b?c=d", ok("h", 80, "h", "/a/b?c=d")),
            (
                "http://[::1]:6333/readyz",
                ok("::1", 6333, "[::1]:6333", "/readyz"),
            ),
            ("http://[::1]/", ok("::1", 80, "[::1]", "/")),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url), Ok(want), "{url}");
        }
    }

    #[test]
    fn bad_urls() {
        let cases = [
            ("https://h/", "only http:// is supported"),
            ("h:80/", "only http:// is supported"),
            ("http://", "no host"),
            ("http://:80/", "no host"),
            ("http://h:99999/", "bad port"),
            ("http://h:x/", "bad port"),
            ("http://[::1/", "unclosed `[`"),
            ("http://[::1]x/", "unexpected text after `]`"),
            ("http://u:p@h/", "user info is not supported"),
        ];
        for (url, why) in cases {
            let want = ProbeError::Invalid(format!("invalid URL `{url}`: {why}"));
            assert_eq!(parse_url(url), Err(want), "{url}");
        }
    }

    #[test]
    fn status_lines() {
        /// A status line, then the status and reason or the error text.
        type Case = (&'static [u8], Result<(u16, &'static str), &'static str>);
        let cases: &[Case] = &[
            (b"HTTP/1.1 200 OK\r\n", Ok((200, "OK"))),
            (b"HTTP/1.0 204 No Content\n", Ok((204, "No Content"))),
            (
                b"HTTP/1.1 503 Service Unavailable\r\n",
                Ok((503, "Service Unavailable")),
            ),
            (b"HTTP/1.1 500\r\n", Ok((500, ""))),
            (b"HTTP/1.1 500 \r\n", Ok((500, ""))),
            (b"HTTP/2 200\r\n", Ok((200, ""))),
            (b"garbage\r\n", Err("not an HTTP response: `garbage`")),
            (b"HTTP/1.1\r\n", Err("not an HTTP response: `HTTP/1.1`")),
            (
                b"HTTP/1.1 20 OK\r\n",
                Err("not an HTTP response: `HTTP/1.1 20 OK`"),
            ),
            (
                b"HTTP/1.1 2000 OK\r\n",
                Err("not an HTTP response: `HTTP/1.1 2000 OK`"),
            ),
            (
                b"HTTP/1.1 +20 OK\r\n",
                Err("not an HTTP response: `HTTP/1.1 +20 OK`"),
            ),
            (
                b"HTTP/1.1 \xff\r\n",
                Err("not an HTTP response: `HTTP/1.1 \u{fffd}`"),
            ),
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                Err("not an HTTP response: `SSH-2.0-OpenSSH_9.6`"),
            ),
        ];
        for (line, want) in cases {
            let got = parse_status_line(line);
            let want = match want {
                Ok((status, reason)) => Ok((*status, reason.to_string())),
                Err(text) => Err(ProbeError::Protocol(text.to_string())),
            };
            assert_eq!(got, want, "{}", excerpt(line));
        }
    }
}
