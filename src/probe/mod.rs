//! The protocol clients of readiness probes, run from the host: one attempt each, no retry.
//! `tcp` and `qdrant` are here; `http`, `postgres`, `redis`, `kafka` and `zookeeper` have a file
//! each. The engine's probe task (`engine/probe.rs`) schedules the attempts, paced by
//! [`Backoff`] from here, and keeps the service's deadline.
//!
//! Every attempt is bounded by [`ATTEMPT_TIMEOUT`] and every read is capped, so a silent or
//! hostile peer costs at most one timeout and a little memory; nothing here panics on peer bytes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::net::TcpStream;

mod http;
pub(crate) mod kafka;
mod postgres;
mod redis;
mod zookeeper;

pub use self::http::http;
pub(crate) use self::http::parse_status_line;
pub use self::kafka::kafka;
pub use self::postgres::postgres;
pub use self::redis::redis;
pub use self::zookeeper::zookeeper;

/// How long one attempt may take, connect included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest length-prefixed frame (Kafka, PostgreSQL) or whole answer (ZooKeeper) we read.
const MAX_FRAME: usize = 1024 * 1024;

/// The longest text line (HTTP status line, RESP reply line) we read.
const MAX_LINE: u64 = 8 * 1024;

/// Why a probe attempt failed. `Display` is a short lowercase reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("connection refused")]
    Refused,

    #[error("timed out after {0:?}")]
    TimedOut(Duration),

    #[error("server closed the connection without answering")]
    Closed,

    /// Any other network failure, as the OS words it.
    #[error("{0}")]
    Io(String),

    #[error("HTTP {status}{}{reason}", if reason.is_empty() { "" } else { " " })]
    HttpStatus { status: u16, reason: String },

    /// A PostgreSQL `ErrorResponse` (during login or the `SELECT 1`).
    #[error("{message} ({severity} {code})")]
    Postgres {
        severity: String,
        code: String,
        message: String,
    },

    /// Redis answered `PING` with something other than `+PONG` (the reply line as sent).
    #[error("no PONG: {0}")]
    NoPong(String),

    /// Redis refused `AUTH` (the reply line as sent).
    #[error("AUTH refused: {0}")]
    AuthRefused(String),

    /// A Kafka ApiVersions response with a non-zero error code.
    #[error("broker answered error code {0}")]
    KafkaError(i16),

    /// The peer answered, but not in the protocol we expected.
    #[error("{0}")]
    Protocol(String),

    /// The probe itself is misconfigured (bad URL, NUL byte in a user name).
    #[error("{0}")]
    Invalid(String),
}

impl From<io::Error> for ProbeError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::Refused,
            io::ErrorKind::UnexpectedEof => ProbeError::Closed,
            io::ErrorKind::ConnectionReset => ProbeError::Io("connection reset by peer".into()),
            _ => ProbeError::Io(lowercase_first(&e.to_string())),
        }
    }
}

/// How long a connection must stay open (or answer) to count: Docker's userland proxy accepts
/// on a published port even when nothing listens in the container, then hangs up at once.
const TCP_SETTLE: Duration = Duration::from_millis(150);

/// A TCP connect that the peer keeps open (or answers on) for a moment.
pub async fn tcp(addr: SocketAddr) -> Result<(), ProbeError> {
    attempt(async {
        let mut stream = connect(addr).await?;
        let mut buf = [0u8; 1];
        match tokio::time::timeout(
            TCP_SETTLE,
            tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
        )
        .await
        {
            // Still open and silent, as most servers are until spoken to.
            Err(_) => Ok(()),
            // A banner: something listens.
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(Ok(_)) => Err(ProbeError::Protocol(
                "the connection was closed at once (nothing listens behind the published port yet)"
                    .into(),
            )),
            Ok(Err(e)) => Err(e.into()),
        }
    })
    .await
}

/// Qdrant: `GET http://addr/readyz` is 2xx.
pub async fn qdrant(addr: SocketAddr) -> Result<(), ProbeError> {
    http(&format!("http://{addr}/readyz")).await
}

/// When to probe next. Every 5 ms for the first second, as the critical-path floor probes: a
/// refused or unanswered attempt on this machine costs microseconds, most services get ready
/// within that second, and each link of a dependency chain is then seen ready within 5 ms
/// instead of within the last, grown pause (a process restart's probe used to land up to 30 ms
/// after the app answered); every 1 ms after a refused connection ([`Backoff::next_delay_after`]).
/// Then from 5 ms growing 1.5x per attempt, capped at `max` (the
/// service's `interval`). [`Backoff::gradual`] is for attempts that cost a process or an
/// engine round trip (`exec`, a healthcheck): from 20 ms, growing at once. Pure.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    brisk_left: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const REFUSED: Duration = Duration::from_millis(1);
    const BRISK_PATIENCE: Duration = Duration::from_millis(250);
    const BRISK_FOR: Duration = Duration::from_secs(1);

    pub fn new(max: Duration) -> Self {
        Backoff {
            next: Self::FIRST.min(max),
            max,
            brisk_left: Self::BRISK_FOR,
        }
    }

    pub fn gradual(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(20).min(max),
            max,
            brisk_left: Duration::ZERO,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_after(false)
    }

    /// How long the next attempt may wait for its answer: 250 ms while brisk (a service on this
    /// machine answers in milliseconds; a connection that hangs, as one through the engine's
    /// proxy can while the container's network comes up, is given up and tried again rather
    /// than waited on for seconds), then no limit of its own (a network attempt keeps its
    /// [`ATTEMPT_TIMEOUT`], an exec probe the service's timeout).
    pub fn patience(&self) -> Duration {
        if self.brisk_left.is_zero() {
            Duration::MAX
        } else {
            Self::BRISK_PATIENCE
        }
    }

    /// Counts the time an attempt itself took against the brisk second (the pauses count
    /// themselves), so attempts that hang until [`Backoff::patience`] end it on time.
    pub fn spent(&mut self, attempt: Duration) {
        self.brisk_left = self.brisk_left.saturating_sub(attempt);
    }

    /// The pause after an attempt; after a refused connection (nothing listens yet: the attempt
    /// cost microseconds and asked the service nothing) the brisk pause is 1 ms, so a native
    /// process is seen ready within a millisecond of listening.
    pub fn next_delay_after(&mut self, refused: bool) -> Duration {
        if !self.brisk_left.is_zero() {
            let step = if refused { Self::REFUSED } else { Self::FIRST };
            // Counted in whole steps, so a zero `max` cannot stay brisk forever.
            self.brisk_left = self.brisk_left.saturating_sub(step);
            return step.min(self.max);
        }
        let delay = self.next;
        // checked: a huge `max` must saturate, not overflow.
        self.next = delay
            .checked_mul(3)
            .map_or(self.max, |d| (d / 2).min(self.max));
        delay
    }
}

/// Runs one attempt under [`ATTEMPT_TIMEOUT`].
async fn attempt<T>(probe: impl Future<Output = Result<T, ProbeError>>) -> Result<T, ProbeError> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, probe)
        .await
        .map_err(|_| ProbeError::TimedOut(ATTEMPT_TIMEOUT))?
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    let stream = TcpStream::connect(addr).await?;
    // Small request/response exchanges: do not let Nagle hold back our writes.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One line, at most [`MAX_LINE`] bytes, `\n` included when the peer sent one.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin)) -> Result<Vec<u8>, ProbeError> {
    let mut line = Vec::new();
    reader.take(MAX_LINE).read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(ProbeError::Closed);
    }
    Ok(line)
}

/// Peer bytes made fit for an error message: lossy UTF-8, trimmed, escaped, shortened.
fn excerpt(bytes: &[u8]) -> String {
    const MAX_CHARS: usize = 80;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX_CHARS {
        out.push('…');
    }
    out
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_brisk_for_a_second_then_grows_by_half_and_caps() {
        let ms = Duration::from_millis;
        let brisk = (Backoff::BRISK_FOR.as_millis() / Backoff::FIRST.as_millis()) as usize;
        let cases: &[(Duration, &[Duration])] = &[
            (
                ms(1000),
                &[
                    ms(5),
                    ms(7) + Duration::from_micros(500),
                    ms(11) + Duration::from_micros(250),
                ],
            ),
            (
                ms(10),
                &[ms(5), ms(7) + Duration::from_micros(500), ms(10), ms(10)],
            ),
            (ms(2), &[ms(2), ms(2)]),
            (Duration::ZERO, &[Duration::ZERO, Duration::ZERO]),
        ];
        for (max, want) in cases {
            let mut backoff = Backoff::new(*max);
            let first: Vec<_> = (0..brisk).map(|_| backoff.next_delay()).collect();
            assert!(
                first.iter().all(|d| *d == Backoff::FIRST.min(*max)),
                "max {max:?}: {first:?}"
            );
            let got: Vec<_> = want.iter().map(|_| backoff.next_delay()).collect();
            assert_eq!(&got, want, "max {max:?}");
        }
    }

    #[test]
    fn a_refused_attempt_is_followed_every_millisecond_while_brisk() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(1000));
        // Nothing listens: 1 ms; something answers wrongly: 5 ms; both count against the second.
        assert_eq!(backoff.next_delay_after(true), ms(1));
        assert_eq!(backoff.next_delay_after(false), ms(5));
        assert_eq!(backoff.next_delay_after(true), ms(1));
        let mut spent = ms(7);
        while spent < Backoff::BRISK_FOR {
            assert_eq!(backoff.next_delay_after(true), ms(1));
            spent += ms(1);
        }
        // The second is over: the grown pauses, refused or not.
        assert_eq!(backoff.next_delay_after(true), ms(5));
        assert_eq!(
            backoff.next_delay_after(true),
            ms(7) + Duration::from_micros(500)
        );
    }

    #[test]
    fn an_attempt_is_given_250_ms_while_brisk_then_no_limit_of_its_own() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        assert_eq!(backoff.patience(), Duration::from_millis(250));
        // A second of brisk pauses, 5 ms each.
        for _ in 0..200 {
            assert_eq!(backoff.patience(), Duration::from_millis(250));
            backoff.next_delay();
        }
        assert_eq!(backoff.patience(), Duration::MAX, "after the second");
        // Attempts that hang for their 250 ms count too: four of them end the second.
        let mut backoff = Backoff::new(Duration::from_millis(100));
        for _ in 0..3 {
            backoff.spent(Duration::from_millis(250));
            backoff.next_delay();
        }
        assert_eq!(backoff.patience(), Duration::from_millis(250));
        backoff.spent(Duration::from_millis(250));
        assert_eq!(
            backoff.patience(),
            Duration::MAX,
            "a second of hung attempts"
        );
        // Exec and healthcheck attempts (gradual) are never cut short.
        assert_eq!(
            Backoff::gradual(Duration::from_secs(1)).patience(),
            Duration::MAX
        );
    }

    #[test]
    fn a_gradual_backoff_grows_at_once() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::gradual(ms(50));
        let got: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
        assert_eq!(got, [ms(20), ms(30), ms(45), ms(50), ms(50)]);
    }

    #[test]
    fn backoff_saturates_at_huge_max() {
        let mut backoff = Backoff::new(Duration::MAX);
        for _ in 0..400 {
            assert!(backoff.next_delay() <= Duration::MAX);
        }
        assert_eq!(backoff.next_delay(), Duration::MAX);
    }

    #[test]
    fn error_texts() {
        let cases = [
            (ProbeError::Refused, "connection refused"),
            (ProbeError::TimedOut(ATTEMPT_TIMEOUT), "timed out after 2s"),
            (
                ProbeError::HttpStatus {
                    status: 503,
                    reason: "Service Unavailable".into(),
                },
                "HTTP 503 Service Unavailable",
            ),
            (
                ProbeError::HttpStatus {
                    status: 500,
                    reason: String::new(),
                },
                "HTTP 500",
            ),
            (
                ProbeError::from(io::Error::from(io::ErrorKind::ConnectionRefused)),
                "connection refused",
            ),
            (
                ProbeError::from(io::Error::from(io::ErrorKind::UnexpectedEof)),
                "server closed the connection without answering",
            ),
            (
                ProbeError::from(io::Error::other("Broken pipe")),
                "broken pipe",
            ),
            (ProbeError::KafkaError(35), "broker answered error code 35"),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }

    #[test]
    fn excerpts() {
        let long = "x".repeat(100);
        let cases: &[(&[u8], &str)] = &[
            (b"  hello\r\n", "hello"),
            (b"a\x00b", "a\\0b"),
            (b"\xff\xfe", "\u{fffd}\u{fffd}"),
            (long.as_bytes(), &format!("{}…", "x".repeat(80))),
        ];
        for (bytes, want) in cases {
            assert_eq!(excerpt(bytes), *want);
        }
    }
}
