//! Kafka probe: one ApiVersions v0 exchange, the request every Kafka client opens with.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{attempt, connect, ProbeError, MAX_FRAME};

const API_VERSIONS: i16 = 18;
const CLIENT_ID: &str = "devstack";
/// Each attempt uses its own connection, so a fixed id is enough to catch a confused peer.
const CORRELATION_ID: i32 = 0x6465_7673;

/// Kafka ApiVersions request (api key 18, version 0, client id "devstack"); Ok when the response's
/// correlation id matches, its error code is 0 and it lists at least one API.
pub async fn kafka(addr: std::net::SocketAddr) -> Result<(), ProbeError> {
    attempt(async {
        let mut stream = connect(addr).await?;
        stream.write_all(&encode_request(CORRELATION_ID)).await?;
        let size = stream.read_i32().await?;
        let size = usize::try_from(size)
            .ok()
            .filter(|size| *size <= MAX_FRAME)
            .ok_or_else(|| {
                ProbeError::Protocol(format!("not a Kafka broker: response size {size}"))
            })?;
        let mut response = vec![0; size];
        stream.read_exact(&mut response).await?;
        decode_response(&response, CORRELATION_ID).map(drop)
    })
    .await
}

/// Size-prefixed ApiVersions v0 request: header v1 (api key, api version, correlation id,
/// nullable client id) and an empty body.
fn encode_request(correlation_id: i32) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&API_VERSIONS.to_be_bytes());
    message.extend_from_slice(&0i16.to_be_bytes());
    message.extend_from_slice(&correlation_id.to_be_bytes());
    let client_id_len = i16::try_from(CLIENT_ID.len()).expect("the client id is a short constant");
    message.extend_from_slice(&client_id_len.to_be_bytes());
    message.extend_from_slice(CLIENT_ID.as_bytes());
    let size = i32::try_from(message.len()).expect("the request is a few bytes");
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&message);
    out
}

/// The ApiVersions v0 response without its size prefix: correlation id, error code, then an
/// array of (api key, min version, max version). Returns how many APIs the broker lists.
fn decode_response(response: &[u8], correlation_id: i32) -> Result<usize, ProbeError> {
    let malformed = || {
        ProbeError::Protocol(format!(
            "malformed ApiVersions response ({} bytes)",
            response.len()
        ))
    };
    let mut reader = Reader(response);
    let got = reader.i32().ok_or_else(malformed)?;
    if got != correlation_id {
        return Err(ProbeError::Protocol(format!(
            "not a Kafka broker: correlation id {got} instead of {correlation_id}"
        )));
    }
    let error_code = reader.i16().ok_or_else(malformed)?;
    if error_code != 0 {
        return Err(ProbeError::KafkaError(error_code));
    }
    let count = reader.i32().ok_or_else(malformed)?;
    // A v0 array entry is 3 x int16: checking the count against the bytes left keeps a hostile
    // count from meaning anything.
    let count = usize::try_from(count)
        .ok()
        .filter(|count| {
            count
                .checked_mul(6)
                .is_some_and(|bytes| bytes <= reader.0.len())
        })
        .ok_or_else(malformed)?;
    if count == 0 {
        return Err(ProbeError::Protocol("broker lists no APIs".into()));
    }
    Ok(count)
}

/// Big-endian Kafka primitives off the front of an answer; `None` when the bytes run out.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.0 = self.0.get(n..)?;
        Some(())
    }

    /// An array's length, when the bytes left can hold that many entries of at least
    /// `entry_bytes` each (a hostile count means nothing); a null array is empty.
    pub(crate) fn count(&mut self, entry_bytes: usize) -> Option<usize> {
        let n = self.i32()?;
        if n == -1 {
            return Some(0);
        }
        usize::try_from(n).ok().filter(|n| {
            n.checked_mul(entry_bytes)
                .is_some_and(|b| b <= self.0.len())
        })
    }

    /// A (nullable) string: an int16 length, then UTF-8 bytes.
    pub(crate) fn string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        let Ok(len) = usize::try_from(len) else {
            return Some(None);
        };
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        Some(Some(String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 18,            // size: 2 + 2 + 4 + 2 + 8
            0, 18,                  // api key: ApiVersions
            0, 0,                   // api version 0
            0, 0, 0, 7,             // correlation id
            0, 8,                   // client id length
            b'd', b'e', b'v', b's', b't', b'a', b'c', b'k',
        ];
        assert_eq!(encode_request(7), want);
    }

    /// A v0 response laid out as a broker sends it (Kafka protocol guide, ApiVersions Response
    /// (Version: 0) => error_code [api_keys]; api_keys => api_key min_version max_version).
    fn response(correlation_id: i32, error_code: i16, apis: &[(i16, i16, i16)]) -> Vec<u8> {
        let mut out = correlation_id.to_be_bytes().to_vec();
        out.extend_from_slice(&error_code.to_be_bytes());
        out.extend_from_slice(&(apis.len() as i32).to_be_bytes());
        for (key, min, max) in apis {
            for v in [key, min, max] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out
    }

    #[test]
    fn responses() {
        // As a Kafka 3.x broker answers: Produce 0-9, Fetch 0-13, ..., ApiVersions 0-3.
        let apis = [(0, 0, 9), (1, 0, 13), (2, 0, 7), (3, 0, 12), (18, 0, 3)];
        let good = response(7, 0, &apis);
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0, 0, 0]); // a v1+ throttle_time_ms is tolerated
        let huge_count = {
            let mut r = response(7, 0, &[]);
            r[6..10].copy_from_slice(&i32::MAX.to_be_bytes());
            r
        };
        let malformed = |n: usize| {
            Err(ProbeError::Protocol(format!(
                "malformed ApiVersions response ({n} bytes)"
            )))
        };
        let cases: Vec<(Vec<u8>, Result<usize, ProbeError>)> = vec![
            (good.clone(), Ok(5)),
            (trailing, Ok(5)),
            (response(7, 0, &[(18, 0, 3)]), Ok(1)),
            // Too new a request version: the broker answers v0 with UNSUPPORTED_VERSION.
            (response(7, 35, &apis), Err(ProbeError::KafkaError(35))),
            (
                response(8, 0, &apis),
                Err(ProbeError::Protocol(
                    "not a Kafka broker: correlation id 8 instead of 7".into(),
                )),
            ),
            (
                response(7, 0, &[]),
                Err(ProbeError::Protocol("broker lists no APIs".into())),
            ),
            (good[..good.len() - 1].to_vec(), malformed(good.len() - 1)),
            (good[..9].to_vec(), malformed(9)),
            (good[..5].to_vec(), malformed(5)),
            (vec![], malformed(0)),
            (huge_count, malformed(10)),
            (
                {
                    let mut r = response(7, 0, &[]);
                    r[6..10].copy_from_slice(&(-1i32).to_be_bytes());
                    r
                },
                malformed(10),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_response(&bytes, 7), want, "{bytes:?}");
        }
    }
}
