//! Qdrant's own snapshot API, from the host, on the service's published port: a running
//! Qdrant's collections are saved one by one with no stop (`POST /collections/{c}/snapshots`,
//! the file downloaded, then deleted in Qdrant), and put back by uploading each
//! (`POST /collections/{c}/snapshots/upload?priority=snapshot`, which replaces or creates it),
//! the collections made since the save deleted. Plain HTTP/1.1, one request per connection,
//! bodies streamed to and from files; each call bounded in time.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::progress::Progress;

/// A small call (a listing, a deletion).
const SHORT: Duration = Duration::from_secs(30);
/// A readiness check.
const READY: Duration = Duration::from_secs(2);
/// A snapshot made, downloaded or recovered: as long as a large collection needs.
const LONG: Duration = Duration::from_secs(30 * 60);
/// The most of a JSON answer kept.
const ANSWER_MAX: usize = 16 * 1024 * 1024;

/// A Qdrant's HTTP API at `addr`, with its API key when the service sets one.
pub(crate) struct Api {
    pub addr: SocketAddr,
    pub api_key: Option<String>,
}

/// Why a call failed, as a sentence that names the call.
pub(crate) type Failed = String;

impl Api {
    /// The names of every collection.
    pub(crate) async fn collections(&self) -> Result<Vec<String>, Failed> {
        let v = self.json("GET", "/collections", SHORT).await?;
        Ok(collection_names(&v))
    }

    /// Whether Qdrant answers that it is ready (`GET /readyz`).
    pub(crate) async fn ready(&self) -> bool {
        let mut sink = |_: &[u8]| Ok(());
        matches!(
            self.call("GET", "/readyz", None, &mut sink, READY).await,
            Ok(200)
        )
    }

    /// A snapshot of `collection` made in Qdrant, downloaded into `file` and deleted in Qdrant
    /// (also when the download failed). The file's bytes.
    pub(crate) async fn save(&self, collection: &str, file: &Path) -> Result<u64, Failed> {
        let base = format!("/collections/{}/snapshots", segment(collection));
        let made = self
            .json("POST", &format!("{base}?wait=true"), LONG)
            .await?;
        let name = made["result"]["name"]
            .as_str()
            .ok_or_else(|| format!("POST {base}: the answer names no snapshot: {made}"))?
            .to_string();
        let at = format!("{base}/{}", segment(&name));
        let got = self.download(&at, collection, file).await;
        let deleted = self.json("DELETE", &at, SHORT).await;
        let bytes = got?;
        deleted?;
        Ok(bytes)
    }

    async fn download(&self, path: &str, collection: &str, file: &Path) -> Result<u64, Failed> {
        let cannot = |e: std::io::Error| format!("cannot write `{}`: {e}", file.display());
        let f = std::fs::File::create(file).map_err(cannot)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut progress = Progress::new(format!("saving collection {collection}"));
        let mut sink = |chunk: &[u8]| {
            super::copy::check_interrupted().map_err(std::io::Error::other)?;
            progress.add(chunk.len());
            std::io::Write::write_all(&mut out, chunk)
        };
        let status = self.call("GET", path, None, &mut sink, LONG).await?;
        drop(progress);
        if status != 200 {
            // What came is Qdrant's error, not a snapshot.
            drop(out);
            let body = std::fs::read(file).unwrap_or_default();
            let _ = std::fs::remove_file(file);
            return Err(refused("GET", path, status, &body[..body.len().min(4096)]));
        }
        let f = out.into_inner().map_err(|e| cannot(e.into_error()))?;
        f.sync_all().map_err(cannot)?;
        Ok(f.metadata().map_err(cannot)?.len())
    }

    /// Collection `collection` replaced by (or created from) the snapshot in `file`.
    pub(crate) async fn recover(&self, collection: &str, file: &Path) -> Result<(), Failed> {
        let path = format!(
            "/collections/{}/snapshots/upload?wait=true&priority=snapshot",
            segment(collection)
        );
        let boundary = format!(
            "devstack-{}-{}",
            std::process::id(),
            crate::clock::unix_ms()
        );
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"{}.snapshot\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            segment(collection)
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", file.display());
        let mut f = std::fs::File::open(file).map_err(cannot)?;
        let len = f.metadata().map_err(cannot)?.len();
        let body = Body {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            len: head.len() as u64 + len + tail.len() as u64,
        };
        let mut answer = Vec::new();
        let mut sink = |chunk: &[u8]| keep(&mut answer, chunk);
        let mut progress = Progress::new(format!("restoring collection {collection}"));
        let sent = until_interrupted(tokio::time::timeout(LONG, async {
            let mut conn = self.open("POST", &path, Some(&body)).await?;
            let io = |e: std::io::Error| format!("POST {path} on {}: {e}", self.addr);
            conn.write_all(head.as_bytes()).await.map_err(io)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                super::copy::check_interrupted().map_err(|e| e.to_string())?;
                let n = std::io::Read::read(&mut f, &mut buf).map_err(cannot)?;
                if n == 0 {
                    break;
                }
                progress.add(n);
                conn.write_all(&buf[..n]).await.map_err(io)?;
            }
            conn.write_all(tail.as_bytes()).await.map_err(io)?;
            read_answer(conn, &mut sink)
                .await
                .map_err(|e| format!("POST {path} on {}: {e}", self.addr))
        }))
        .await?
        .map_err(|_| format!("POST {path} on {}: no answer within {LONG:?}", self.addr))?;
        let status = sent?;
        if !(200..300).contains(&status) {
            return Err(refused("POST", &path, status, &answer));
        }
        Ok(())
    }

    /// Collection `collection` deleted.
    pub(crate) async fn drop_collection(&self, collection: &str) -> Result<(), Failed> {
        self.json(
            "DELETE",
            &format!("/collections/{}", segment(collection)),
            SHORT,
        )
        .await
        .map(|_| ())
    }

    /// A call whose 2xx answer is JSON.
    async fn json(
        &self,
        method: &str,
        path: &str,
        within: Duration,
    ) -> Result<serde_json::Value, Failed> {
        let mut answer = Vec::new();
        let mut sink = |chunk: &[u8]| keep(&mut answer, chunk);
        let status = self.call(method, path, None, &mut sink, within).await?;
        if !(200..300).contains(&status) {
            return Err(refused(method, path, status, &answer));
        }
        serde_json::from_slice(&answer)
            .map_err(|e| format!("{method} {path}: the answer is not JSON: {e}"))
    }

    /// One request without a body; the answer's body goes to `sink`; its status.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Body>,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
        within: Duration,
    ) -> Result<u16, Failed> {
        let at = |e: String| format!("{method} {path} on {}: {e}", self.addr);
        until_interrupted(tokio::time::timeout(within, async {
            let conn = self.open(method, path, body).await?;
            read_answer(conn, sink).await.map_err(at)
        }))
        .await?
        .map_err(|_| at(format!("no answer within {within:?}")))?
    }

    /// A connection with the request's head written.
    async fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<&Body>,
    ) -> Result<TcpStream, Failed> {
        let io = |e: std::io::Error| format!("{method} {path} on {}: {e}", self.addr);
        let mut conn = TcpStream::connect(self.addr).await.map_err(io)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: devstack\r\nAccept: */*\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(key) = &self.api_key {
            head.push_str(&format!("api-key: {key}\r\n"));
        }
        match body {
            Some(b) => head.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
                b.content_type, b.len
            )),
            None => head.push_str("Content-Length: 0\r\n\r\n"),
        }
        conn.write_all(head.as_bytes()).await.map_err(io)?;
        Ok(conn)
    }
}

/// `f`, or an error once the copy is interrupted (Ctrl-C), checked every 100 ms: a snapshot
/// Qdrant takes long to make does not hold the user up.
async fn until_interrupted<T>(f: impl std::future::Future<Output = T>) -> Result<T, Failed> {
    tokio::select! {
        r = f => Ok(r),
        () = async {
            while super::copy::check_interrupted().is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } => Err("interrupted".into()),
    }
}

/// The names in Qdrant's answer to `GET /collections`. Pure.
pub(crate) fn collection_names(answer: &serde_json::Value) -> Vec<String> {
    answer["result"]["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .map(str::to_string)
        .collect()
}

/// A request body's head fields; the bytes are written by the caller.
struct Body {
    content_type: String,
    len: u64,
}

fn keep(answer: &mut Vec<u8>, chunk: &[u8]) -> std::io::Result<()> {
    if answer.len() + chunk.len() > ANSWER_MAX {
        return Err(std::io::Error::other("the answer is larger than 16 MiB"));
    }
    answer.extend_from_slice(chunk);
    Ok(())
}

/// A non-2xx answer as a sentence, with Qdrant's own message (`{"status": {"error": …}}`).
fn refused(method: &str, path: &str, status: u16, body: &[u8]) -> Failed {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let why = v["status"]["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    format!("{method} {path} answered {status}: {why}")
}

/// Reads an HTTP/1.1 answer: its status; its body (by length, chunked, or to the end) to `sink`.
async fn read_answer(
    conn: TcpStream,
    sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
) -> Result<u16, String> {
    let mut r = BufReader::with_capacity(1 << 16, conn);
    let mut line = String::new();
    r.read_line(&mut line).await.map_err(|e| e.to_string())?;
    let status = crate::probe::parse_status_line(line.as_bytes())
        .map(|(code, _)| code)
        .map_err(|e| e.to_string())?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("the answer ended in its head".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("bad Content-Length `{v}`"))?,
                );
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    let io = |e: std::io::Error| e.to_string();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).await.map_err(io)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size `{}`", line.trim()))?;
            if size == 0 {
                return Ok(status);
            }
            copy(&mut (&mut r).take(size), sink, Some(size)).await?;
            line.clear();
            r.read_line(&mut line).await.map_err(io)?;
        }
    }
    match length {
        Some(n) => copy(&mut (&mut r).take(n), sink, Some(n)).await?,
        None => copy(&mut r, sink, None).await?,
    }
    Ok(status)
}

/// Copies `from` to `sink`; with `expect`, fails when fewer bytes came.
async fn copy(
    from: &mut (impl AsyncReadExt + Unpin),
    sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    expect: Option<u64>,
) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n as u64;
        sink(&buf[..n]).map_err(|e| e.to_string())?;
    }
    match expect {
        Some(want) if got < want => Err(format!("the answer ended after {got} of {want} bytes")),
        _ => Ok(()),
    }
}

/// A path segment: every byte but the unreserved ones percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(segment("docs-2"), "docs-2");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(segment("ü"), "%C3%BC");
    }

    /// One answer served on a real loopback socket, read as the client reads it.
    async fn answered(raw: &'static [u8]) -> (Result<u16, String>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(raw).await.unwrap();
        });
        let conn = TcpStream::connect(addr).await.unwrap();
        let mut body = Vec::new();
        let mut sink = |c: &[u8]| keep(&mut body, c);
        let r = read_answer(conn, &mut sink).await;
        (r, body)
    }

    #[tokio::test]
    async fn answers_are_read_by_length_chunked_or_to_the_end() {
        let (r, b) = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        assert_eq!((r, b.as_slice()), (Ok(200), &b"hello"[..]));
        let (r, b) = answered(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!((r, b.as_slice()), (Ok(200), &b"hello"[..]));
        let (r, b) =
            answered(b"HTTP/1.0 404 Not Found\r\n\r\n{\"status\":{\"error\":\"nope\"}}").await;
        assert_eq!(r, Ok(404));
        assert_eq!(refused("GET", "/x", 404, &b), "GET /x answered 404: nope");
        let (r, _) = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").await;
        assert_eq!(r, Err("the answer ended after 5 of 9 bytes".into()));
    }
}
