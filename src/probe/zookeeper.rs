//! ZooKeeper probe: the four-letter word `ruok`, falling back to `srvr` when `ruok` is not allowed.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{attempt, connect, excerpt, ProbeError, MAX_FRAME};

/// `ruok` must answer `imok`; if the server closes without answering or says the word is not
/// whitelisted, `srvr` on a new connection must answer "Zookeeper version ...".
pub async fn zookeeper(addr: SocketAddr) -> Result<(), ProbeError> {
    attempt(async {
        match ruok_verdict(&four_letter_word(addr, b"ruok", ruok_complete).await?) {
            Ruok::Ready => Ok(()),
            Ruok::TrySrvr => srvr_verdict(&four_letter_word(addr, b"srvr", |_| false).await?),
            Ruok::Failed(error) => Err(error),
        }
    })
    .await
}

/// `imok` needs no more: ZooKeeper 3.8 can answer it and then fail to close the connection
/// (an exception in `cleanupWriterSocket` while its database is still loading, seen on the
/// reference stack's warm start), so waiting for the close would hang the attempt.
fn ruok_complete(answer: &[u8]) -> bool {
    answer.trim_ascii_end() == b"imok"
}

/// Sends `word` and reads the answer until the server closes, or until `complete` says the
/// answer so far is all there is. An empty answer means the server closed (or reset) without
/// answering.
async fn four_letter_word(
    addr: SocketAddr,
    word: &[u8],
    complete: fn(&[u8]) -> bool,
) -> Result<Vec<u8>, ProbeError> {
    let mut stream = connect(addr).await?;
    let mut answer = Vec::new();
    let exchange = async {
        stream.write_all(word).await?;
        let mut chunk = [0u8; 512];
        while answer.len() < MAX_FRAME {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            let room = MAX_FRAME - answer.len();
            answer.extend_from_slice(&chunk[..n.min(room)]);
            if complete(&answer) {
                break;
            }
        }
        Ok::<_, io::Error>(())
    };
    match exchange.await {
        Ok(()) => Ok(answer),
        // A server that drops a word it will not run may reset instead of closing, even while
        // we are still writing.
        Err(e) if answer.is_empty() && is_hang_up(&e) => Ok(answer),
        Err(e) => Err(e.into()),
    }
}

fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Ruok {
    Ready,
    TrySrvr,
    Failed(ProbeError),
}

fn ruok_verdict(answer: &[u8]) -> Ruok {
    let text = String::from_utf8_lossy(answer);
    match text.trim() {
        "imok" => Ruok::Ready,
        // ZooKeeper 3.5+ names the word it refuses ("ruok is not executed because it is not in
        // the whitelist."); some builds and proxies just close.
        "" => Ruok::TrySrvr,
        refused if refused.contains("not in the whitelist") => Ruok::TrySrvr,
        _ => Ruok::Failed(ProbeError::Protocol(format!(
            "`ruok` answered `{}`",
            excerpt(answer)
        ))),
    }
}

fn srvr_verdict(answer: &[u8]) -> Result<(), ProbeError> {
    if answer.starts_with(b"Zookeeper version") {
        Ok(())
    } else if answer.is_empty() {
        Err(ProbeError::Closed)
    } else {
        Err(ProbeError::Protocol(format!(
            "`srvr` answered `{}`",
            excerpt(answer)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruok_answers() {
        let failed = |text: &str| Ruok::Failed(ProbeError::Protocol(text.into()));
        let cases: &[(&[u8], Ruok)] = &[
            (b"imok", Ruok::Ready),
            (b"imok\n", Ruok::Ready),
            (b"", Ruok::TrySrvr),
            (
                b"ruok is not executed because it is not in the whitelist.",
                Ruok::TrySrvr,
            ),
            (b"imnotok", failed("`ruok` answered `imnotok`")),
            (
                b"\x00\x00\x00\x01",
                failed("`ruok` answered `\\0\\0\\0\\u{1}`"),
            ),
        ];
        for (answer, want) in cases {
            assert_eq!(ruok_verdict(answer), *want, "{}", excerpt(answer));
        }
    }

    #[test]
    fn srvr_answers() {
        let srvr = b"Zookeeper version: 3.8.4-9316c2a7a97e1666d8f4593f34dd6fc36ecc436c, built on \
            2024-02-12 22:16 UTC\nLatency min/avg/max: 0/0.0/0\nReceived: 1\nSent: 0\n\
            Connections: 1\nOutstanding: 0\nZxid: 0x0\nMode: standalone\nNode count: 5\n";
        let cases: &[(&[u8], Result<(), ProbeError>)] = &[
            (srvr, Ok(())),
            (b"", Err(ProbeError::Closed)),
            (
                b"This ZooKeeper instance is not currently serving requests\n",
                Err(ProbeError::Protocol(
                    "`srvr` answered `This ZooKeeper instance is not currently serving requests`"
                        .into(),
                )),
            ),
            (
                b"srvr is not executed because it is not in the whitelist.",
                Err(ProbeError::Protocol(
                    "`srvr` answered `srvr is not executed because it is not in the whitelist.`"
                        .into(),
                )),
            ),
        ];
        for (answer, want) in cases {
            assert_eq!(srvr_verdict(answer), *want, "{}", excerpt(answer));
        }
    }
}
