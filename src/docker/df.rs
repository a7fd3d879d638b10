//! Volume sizes from the engine's `GET /system/df`. bollard's model of that answer is the one of
//! API 1.52 (`VolumeUsage`); older engines (Docker 20.10 speaks 1.41) answer `Volumes` with
//! `UsageData.Size`, which that model drops. So this one request is read here, over the same
//! socket (a `unix://` or plain `tcp://` DOCKER_HOST), as HTTP/1.0 (no chunking), and the sizes
//! are taken from whichever shape came back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// The engine computes sizes by walking every volume: give it time.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes used by each volume the engine knows, by its engine name; `None` when the engine
/// cannot be asked this way (TLS, ssh) or does not say.
pub(crate) fn volume_sizes() -> Option<BTreeMap<String, u64>> {
    // `type` and `verbose` are what API 1.42+ engines need to size volumes alone (1.52 lists
    // them only when verbose); older ones ignore both and size everything.
    let answer = get("/system/df?type=volume&verbose=1").ok()?;
    let (head, body) = split_answer(&answer)?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    sizes_of(&serde_json::from_slice(body).ok()?)
}

fn get(path: &str) -> std::io::Result<Vec<u8>> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let mut answer = Vec::new();
    if let Some(addr) = host.strip_prefix("tcp://") {
        let mut conn = std::net::TcpStream::connect(addr.trim_end_matches('/'))?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.write_all(request.as_bytes())?;
        conn.read_to_end(&mut answer)?;
    } else {
        let socket = match host.strip_prefix("unix://") {
            Some(p) => p.to_string(),
            None if host.is_empty() => "/var/run/docker.sock".to_string(),
            None => return Err(std::io::ErrorKind::Unsupported.into()),
        };
        let mut conn = std::os::unix::net::UnixStream::connect(socket)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.write_all(request.as_bytes())?;
        conn.read_to_end(&mut answer)?;
    }
    Ok(answer)
}

fn split_answer(answer: &[u8]) -> Option<(String, &[u8])> {
    let at = memchr::memmem::find(answer, b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&answer[..at]).into_owned(),
        &answer[at + 4..],
    ))
}

/// `Volumes[].{Name, UsageData.Size}` (API ≤ 1.51) or `VolumeUsage.Items[]` (1.52); a size of
/// -1 (not computed) is left out.
fn sizes_of(df: &serde_json::Value) -> Option<BTreeMap<String, u64>> {
    let volumes = df["Volumes"]
        .as_array()
        .or_else(|| df["VolumeUsage"]["Items"].as_array())?;
    Some(
        volumes
            .iter()
            .filter_map(|v| {
                let size = v["UsageData"]["Size"].as_i64()?;
                Some((v["Name"].as_str()?.to_string(), u64::try_from(size).ok()?))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_either_shape() {
        let old = serde_json::json!({
            "LayersSize": 0,
            "Volumes": [
                {"Name": "shop_db", "UsageData": {"RefCount": 1, "Size": 48125497}},
                {"Name": "shop_cache", "UsageData": {"RefCount": 0, "Size": -1}},
                {"Name": "shop_x", "UsageData": null},
            ],
            "BuildCache": null,
        });
        assert_eq!(
            sizes_of(&old).unwrap(),
            BTreeMap::from([("shop_db".to_string(), 48125497)])
        );
        let new = serde_json::json!({"VolumeUsage": {"Items": [
            {"Name": "shop_db", "UsageData": {"RefCount": 1, "Size": 7}},
        ]}});
        assert_eq!(
            sizes_of(&new).unwrap(),
            BTreeMap::from([("shop_db".to_string(), 7)])
        );
        assert_eq!(sizes_of(&serde_json::json!({"message": "no"})), None);
    }

    #[test]
    fn answers_split_at_the_blank_line() {
        let (head, body) = split_answer(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!(head, "HTTP/1.0 200 OK\r\nA: b");
        assert_eq!(body, b"{\"x\":1}");
        assert!(split_answer(b"HTTP/1.0 200 OK\r\n").is_none());
    }
}
