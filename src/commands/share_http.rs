//! Qdrant's HTTP API from the host, for a thin instance: its first `up` lists the collections
//! that already have its prefix (the main instance's), and `down -v` deletes the rest of those
//! whose names start with it. Plain HTTP/1.1 on 127.0.0.1, one request
//! per connection, bounded in time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::Error;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Every collection of the main instance's Qdrant.
pub(super) fn collections(port: Option<u16>) -> Result<Vec<String>, Error> {
    let port = port.ok_or_else(|| failed("the main instance's Qdrant publishes no port 6333"))?;
    let body = request(port, "GET", "/collections")?;
    let listed: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| failed(&format!("Qdrant's collection list is not JSON: {e}")))?;
    Ok(crate::snapshot::qdrant::collection_names(&listed))
}

/// Deletes every collection the share owns (`thin::own`); the names deleted.
pub(super) fn drop_collections(
    port: Option<u16>,
    prefix: &str,
    foreign: Option<&[String]>,
) -> Result<Vec<String>, Error> {
    let port = port.ok_or_else(|| failed("the main instance's Qdrant publishes no port 6333"))?;
    let all = collections(Some(port))?;
    let names = crate::project::thin::own(&all, prefix, foreign);
    for name in &names {
        request(port, "DELETE", &format!("/collections/{name}"))?;
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

/// One request; the body of a 2xx answer.
fn request(port: u16, method: &str, path: &str) -> Result<String, Error> {
    let io = |e: std::io::Error| failed(&format!("{method} {path} on 127.0.0.1:{port}: {e}"));
    let mut conn =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), TIMEOUT).map_err(io)?;
    conn.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    conn.take(16 * 1024 * 1024)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(failed(&format!(
            "{method} {path} answered {}",
            head.lines().next().unwrap_or("nothing")
        )));
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(if chunked {
        unchunk(body)
    } else {
        body.to_string()
    })
}

/// The body of a chunked answer.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn failed(message: &str) -> Error {
    Error::Shared {
        message: message.to_string(),
        help: "is the main instance's Qdrant running? `devstack --instance \"\" ps`".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            super::unchunk("4\r\nab{}\r\n3\r\n[1]\r\n0\r\n\r\n"),
            "ab{}[1]"
        );
    }
}
