//! The Kafka protocol from the host, for a thin instance: its first `up` lists the topics that
//! already have its prefix (the main instance's), and `down -v` deletes the rest of those whose
//! names start with it. Two requests on one connection to the main
//! instance's broker, bounded in time: Metadata v4 (every topic; Kafka 4 took v0–v3 away,
//! KIP-896) and DeleteTopics v1 (the oldest Kafka 4 still takes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::Error;
use crate::probe::kafka::Reader;

/// How long the broker may take to delete; the answer is waited for a little longer.
const TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(15);
const METADATA: i16 = 3;
const DELETE_TOPICS: i16 = 20;
const CLIENT_ID: &str = "devstack";
/// The largest answer read: a Metadata answer of some thousand topics.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Every topic of the main instance's broker (one Metadata request).
pub(super) fn topics(port: Option<u16>) -> Result<Vec<String>, Error> {
    let (_, names) = connect_and_list(port)?;
    Ok(names)
}

fn connect_and_list(port: Option<u16>) -> Result<(TcpStream, Vec<String>), Error> {
    let port = port.ok_or_else(|| failed("the main instance's Kafka publishes no port"))?;
    let io = |e: std::io::Error| failed(&format!("127.0.0.1:{port}: {e}"));
    let mut conn =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), TIMEOUT).map_err(io)?;
    conn.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    let listed = exchange(&mut conn, METADATA, 4, &metadata_body()).map_err(io)?;
    Ok((conn, topics_of(&listed)?))
}

/// Deletes every topic the share owns (`thin::own`: prefixed, never with an empty prefix, and
/// not there before it); the names deleted.
pub(super) fn drop_topics(
    port: Option<u16>,
    prefix: &str,
    foreign: Option<&[String]>,
) -> Result<Vec<String>, Error> {
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    let (mut conn, all) = connect_and_list(port)?;
    let names: Vec<String> = crate::project::thin::own(&all, prefix, foreign)
        .into_iter()
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Ok(names);
    }
    let io = |e: std::io::Error| failed(&format!("DeleteTopics: {e}"));
    let answer = exchange(&mut conn, DELETE_TOPICS, 1, &delete_body(&names)).map_err(io)?;
    let refused: Vec<String> = deleted_of(&answer)?
        .into_iter()
        // 3: UNKNOWN_TOPIC_OR_PARTITION, gone already.
        .filter(|(_, code)| *code != 0 && *code != 3)
        .map(|(name, code)| format!("`{name}` (Kafka error {code})"))
        .collect();
    if !refused.is_empty() {
        return Err(failed(&format!(
            "the broker refused to delete {}",
            refused.join(", ")
        )));
    }
    Ok(names)
}

/// Sends one request (header v1) and reads its answer, the correlation id checked and cut off.
fn exchange(
    conn: &mut TcpStream,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    let correlation_id = i32::from(api_key);
    conn.write_all(&request(api_key, version, correlation_id, body))?;
    let mut size = [0u8; 4];
    conn.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|s| (4..=MAX_ANSWER).contains(s))
        .ok_or_else(|| invalid("an answer size out of range"))?;
    let mut answer = vec![0; size];
    conn.read_exact(&mut answer)?;
    if answer[..4] != correlation_id.to_be_bytes() {
        return Err(invalid("an answer to another request"));
    }
    answer.drain(..4);
    Ok(answer)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("not a Kafka broker: {what}"),
    )
}

/// Size-prefixed request: api key, version, correlation id, client id, then the body.
fn request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + body.len());
    message.extend_from_slice(&api_key.to_be_bytes());
    message.extend_from_slice(&version.to_be_bytes());
    message.extend_from_slice(&correlation_id.to_be_bytes());
    put_string(&mut message, CLIENT_ID);
    message.extend_from_slice(body);
    let size = i32::try_from(message.len()).unwrap_or(i32::MAX);
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&message);
    out
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// Metadata v4: a null topic list (every topic), and no topic made by asking.
fn metadata_body() -> Vec<u8> {
    let mut out = (-1i32).to_be_bytes().to_vec();
    out.push(0);
    out
}

/// DeleteTopics v1: the names, and how long the broker may take.
fn delete_body(names: &[String]) -> Vec<u8> {
    let mut out = i32::try_from(names.len())
        .unwrap_or(i32::MAX)
        .to_be_bytes()
        .to_vec();
    for n in names {
        put_string(&mut out, n);
    }
    let timeout = i32::try_from(TIMEOUT.as_millis()).unwrap_or(i32::MAX);
    out.extend_from_slice(&timeout.to_be_bytes());
    out
}

/// The topic names of a Metadata v4 answer: throttle time, brokers [node_id, host, port,
/// rack], cluster id, controller id, topics [error_code, name, is_internal, partitions
/// [error_code, index, leader, replicas [i32], isr [i32]]]. Internal topics are left out.
fn topics_of(answer: &[u8]) -> Result<Vec<String>, Error> {
    let malformed = || {
        failed(&format!(
            "a malformed Metadata answer ({} bytes)",
            answer.len()
        ))
    };
    let mut r = Reader(answer);
    r.i32().ok_or_else(malformed)?;
    for _ in 0..r.count(14).ok_or_else(malformed)? {
        r.i32().ok_or_else(malformed)?;
        r.string().ok_or_else(malformed)?;
        r.i32().ok_or_else(malformed)?;
        r.string().ok_or_else(malformed)?;
    }
    r.string().ok_or_else(malformed)?;
    r.i32().ok_or_else(malformed)?;
    let mut names = Vec::new();
    for _ in 0..r.count(5).ok_or_else(malformed)? {
        r.i16().ok_or_else(malformed)?;
        let name = r.string().ok_or_else(malformed)?;
        let internal = r.take::<1>().ok_or_else(malformed)?[0] != 0;
        for _ in 0..r.count(18).ok_or_else(malformed)? {
            r.take::<10>().ok_or_else(malformed)?;
            for _ in 0..2 {
                let n = r.count(4).ok_or_else(malformed)?;
                r.skip(n * 4).ok_or_else(malformed)?;
            }
        }
        if let (Some(name), false) = (name, internal) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Each topic of a DeleteTopics v1 answer with its error code: throttle time, then
/// [name, error_code].
fn deleted_of(answer: &[u8]) -> Result<Vec<(String, i16)>, Error> {
    let malformed = || {
        failed(&format!(
            "a malformed DeleteTopics answer ({} bytes)",
            answer.len()
        ))
    };
    let mut r = Reader(answer);
    r.i32().ok_or_else(malformed)?;
    (0..r.count(4).ok_or_else(malformed)?)
        .map(|_| {
            let name = r.string().ok_or_else(malformed)?.unwrap_or_default();
            Ok((name, r.i16().ok_or_else(malformed)?))
        })
        .collect()
}

fn failed(message: &str) -> Error {
    Error::Shared {
        message: message.to_string(),
        help: "is the main instance's Kafka running? `devstack --instance \"\" ps`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => put_string(out, s),
            None => out.extend_from_slice(&(-1i16).to_be_bytes()),
        }
    }

    /// A Metadata v4 answer as a one-broker cluster sends it (Kafka protocol guide, Metadata
    /// Response (Version: 4)).
    fn metadata(topics: &[(&str, bool, usize)]) -> Vec<u8> {
        let mut out = 0i32.to_be_bytes().to_vec(); // throttle time
        out.extend_from_slice(&1i32.to_be_bytes()); // one broker
        out.extend_from_slice(&1i32.to_be_bytes());
        string(&mut out, Some("kafka"));
        out.extend_from_slice(&9092i32.to_be_bytes());
        string(&mut out, None);
        string(&mut out, Some("tansu_cluster"));
        out.extend_from_slice(&1i32.to_be_bytes()); // controller
        out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (name, internal, partitions) in topics {
            out.extend_from_slice(&0i16.to_be_bytes());
            string(&mut out, Some(name));
            out.push(u8::from(*internal));
            out.extend_from_slice(&(*partitions as i32).to_be_bytes());
            for p in 0..*partitions {
                out.extend_from_slice(&0i16.to_be_bytes());
                out.extend_from_slice(&(p as i32).to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
                for _ in 0..2 {
                    out.extend_from_slice(&1i32.to_be_bytes());
                    out.extend_from_slice(&1i32.to_be_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn a_metadata_answer_gives_its_topics() {
        let answer = metadata(&[
            ("feat.orders", false, 3),
            ("__consumer_offsets", true, 2),
            ("orders", false, 0),
        ]);
        assert_eq!(topics_of(&answer).unwrap(), ["feat.orders", "orders"]);
        for cut in [1, 10, answer.len() - 1] {
            assert!(topics_of(&answer[..cut]).is_err(), "cut at {cut}");
        }
        let mut hostile = answer.clone();
        hostile[4..8].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(topics_of(&hostile).is_err());
    }

    /// A Metadata v4 answer of the local Kafka stand-in (tansu 0.6) with the topics
    /// `k-b.orders` and `orders` of two partitions each, as it sent it.
    #[test]
    fn a_real_brokers_metadata_answer() {
        let hex: String = [
        "00000000000000010000006f00093132372e302e302e3100004a94ffff000d74616e73755f636c7573746572",
        "0000006f000000020000000a6b2d622e6f726465727300000000020000000000000000006f00000001000000",
        "6f000000010000006f0000000000010000006f000000010000006f000000010000006f000000066f72646572",
        "7300000000020000000000000000006f000000010000006f000000010000006f0000000000010000006f0000",
        "00010000006f000000010000006f",
        ]
        .concat();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(topics_of(&bytes).unwrap(), ["k-b.orders", "orders"]);
    }

    #[test]
    fn requests_and_delete_answers() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 26,            // size: 2 + 2 + 4 + 10 + 4 + 4
            0, 20, 0, 1,            // DeleteTopics v1
            0, 0, 0, 20,            // correlation id
            0, 8, b'd', b'e', b'v', b's', b't', b'a', b'c', b'k',
            0, 0, 0, 0,             // no topics
            0, 0, 0x27, 0x10,       // timeout 10 000 ms
        ];
        assert_eq!(request(DELETE_TOPICS, 1, 20, &delete_body(&[])), want);
        assert_eq!(metadata_body(), [0xff, 0xff, 0xff, 0xff, 0]);
        let mut answer = 0i32.to_be_bytes().to_vec();
        answer.extend_from_slice(&2i32.to_be_bytes());
        string(&mut answer, Some("feat.a"));
        answer.extend_from_slice(&0i16.to_be_bytes());
        string(&mut answer, Some("feat.b"));
        answer.extend_from_slice(&41i16.to_be_bytes());
        assert_eq!(
            deleted_of(&answer).unwrap(),
            [("feat.a".to_string(), 0), ("feat.b".to_string(), 41)]
        );
        assert!(deleted_of(&answer[..answer.len() - 1]).is_err());
    }
}
