//! PostgreSQL probe: a real login and `SELECT 1`, over plain TCP (no TLS).
//!
//! Messages are framed and decoded here (with a size cap); postgres-protocol only encodes the
//! frontend messages and runs the MD5 and SCRAM-SHA-256 computations.

use std::net::SocketAddr;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{attempt, connect, ProbeError, MAX_FRAME};

/// A real login: startup message, then cleartext / MD5 / SCRAM-SHA-256 auth as the server asks,
/// ReadyForQuery, then `SELECT 1` and its result, then Terminate. A server `ErrorResponse`
/// (including 57P03 "the database system is starting up") becomes [`ProbeError::Postgres`].
pub async fn postgres(
    addr: SocketAddr,
    user: &str,
    password: &str,
    database: &str,
) -> Result<(), ProbeError> {
    let mut startup = BytesMut::new();
    let params = [
        ("user", user),
        ("database", database),
        ("application_name", "devstack"),
    ];
    frontend::startup_message(params, &mut startup)
        .map_err(|_| ProbeError::Invalid("user or database name contains a NUL byte".into()))?;
    attempt(async {
        let mut stream = BufReader::new(connect(addr).await?);
        stream.write_all(&startup).await?;
        login(&mut stream, user, password).await?;

        let mut query = BytesMut::new();
        frontend::query("SELECT 1", &mut query).expect("the query has no NUL byte");
        stream.write_all(&query).await?;
        select_one(&mut stream).await?;

        let mut terminate = BytesMut::new();
        frontend::terminate(&mut terminate);
        // Ignored on purpose: the server has answered, and it cleans up a vanished client anyway.
        let _ = stream.write_all(&terminate).await;
        Ok(())
    })
    .await
}

/// Answers the server's authentication requests until ReadyForQuery.
async fn login<S>(stream: &mut S, user: &str, password: &str) -> Result<(), ProbeError>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut scram = None;
    loop {
        let (tag, body) = read_message(stream).await?;
        let mut reply = BytesMut::new();
        let encoded = match tag {
            b'R' => match parse_auth(&body)? {
                Auth::Ok => continue,
                Auth::Cleartext => frontend::password_message(password.as_bytes(), &mut reply),
                Auth::Md5(salt) => {
                    let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                    frontend::password_message(hash.as_bytes(), &mut reply)
                }
                Auth::Sasl(mechanisms) => {
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(ProbeError::Protocol(format!(
                            "server offers no supported SASL mechanism (only {})",
                            mechanisms.join(", ")
                        )));
                    }
                    // No TLS, so no channel binding to offer.
                    let client =
                        ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    let encoded = frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        client.message(),
                        &mut reply,
                    );
                    scram = Some(client);
                    encoded
                }
                Auth::SaslContinue(data) => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| out_of_order("SASL continue"))?;
                    client.update(&data).map_err(scram_failed)?;
                    frontend::sasl_response(client.message(), &mut reply)
                }
                Auth::SaslFinal(data) => {
                    let client = scram.as_mut().ok_or_else(|| out_of_order("SASL final"))?;
                    client.finish(&data).map_err(scram_failed)?;
                    continue;
                }
                Auth::Other(method) => {
                    return Err(ProbeError::Protocol(format!(
                        "server asks for unsupported authentication method {method}"
                    )))
                }
            },
            b'E' => return Err(parse_error(&body)),
            b'Z' => return Ok(()),
            // ParameterStatus, BackendKeyData, NoticeResponse: nothing to do.
            b'S' | b'K' | b'N' => continue,
            other => return Err(unexpected(other, "login")),
        };
        encoded.map_err(|_| ProbeError::Invalid("password contains a NUL byte".into()))?;
        stream.write_all(&reply).await?;
    }
}

/// Reads the answer to `SELECT 1` up to ReadyForQuery.
async fn select_one(stream: &mut (impl AsyncBufRead + Unpin)) -> Result<(), ProbeError> {
    let mut completed = false;
    loop {
        let (tag, body) = read_message(stream).await?;
        match tag {
            b'C' => completed = true,
            b'E' => return Err(parse_error(&body)),
            b'Z' if completed => return Ok(()),
            b'Z' => return Err(ProbeError::Protocol("`SELECT 1` returned no result".into())),
            // RowDescription, DataRow, ParameterStatus, NoticeResponse.
            b'T' | b'D' | b'S' | b'N' => {}
            other => return Err(unexpected(other, "`SELECT 1`")),
        }
    }
}

/// One backend message: tag, then a length that counts itself, then the body (at most
/// [`MAX_FRAME`] bytes, so a garbage length cannot make us allocate gigabytes).
async fn read_message(
    stream: &mut (impl AsyncBufRead + Unpin),
) -> Result<(u8, Vec<u8>), ProbeError> {
    let tag = stream.read_u8().await?;
    let len = stream.read_u32().await?;
    let body_len = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_sub(4))
        .filter(|body_len| *body_len <= MAX_FRAME)
        .ok_or_else(|| {
            ProbeError::Protocol(format!("not a PostgreSQL server: message length {len}"))
        })?;
    let mut body = vec![0; body_len];
    stream.read_exact(&mut body).await?;
    Ok((tag, body))
}

#[derive(Debug, PartialEq, Eq)]
enum Auth {
    Ok,
    Cleartext,
    Md5([u8; 4]),
    Sasl(Vec<String>),
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    Other(i32),
}

/// The body of an `R` (Authentication*) message.
fn parse_auth(body: &[u8]) -> Result<Auth, ProbeError> {
    let malformed = || ProbeError::Protocol("malformed authentication request".into());
    let (method, rest) = body.split_first_chunk::<4>().ok_or_else(malformed)?;
    Ok(match i32::from_be_bytes(*method) {
        0 => Auth::Ok,
        3 => Auth::Cleartext,
        5 => Auth::Md5(*rest.first_chunk::<4>().ok_or_else(malformed)?),
        10 => Auth::Sasl(
            rest.split(|b| *b == 0)
                .take_while(|name| !name.is_empty())
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .collect(),
        ),
        11 => Auth::SaslContinue(rest.to_vec()),
        12 => Auth::SaslFinal(rest.to_vec()),
        other => Auth::Other(other),
    })
}

/// The fields of an `ErrorResponse`: (type byte, NUL-terminated text)*, then a NUL.
fn parse_error(body: &[u8]) -> ProbeError {
    let (mut severity, mut localized_severity, mut code, mut message) = (None, None, None, None);
    for field in body.split(|b| *b == 0) {
        let Some((kind, value)) = field.split_first() else {
            break;
        };
        let value = String::from_utf8_lossy(value).trim().to_string();
        match kind {
            b'V' => severity = Some(value),
            b'S' => localized_severity = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    ProbeError::Postgres {
        severity: severity
            .or(localized_severity)
            .unwrap_or_else(|| "ERROR".into()),
        code: code.unwrap_or_else(|| "?????".into()),
        message: message.unwrap_or_else(|| "server error without a message".into()),
    }
}

fn unexpected(tag: u8, during: &str) -> ProbeError {
    let tag = if tag.is_ascii_graphic() {
        format!("`{}`", char::from(tag))
    } else {
        format!("0x{tag:02x}")
    };
    ProbeError::Protocol(format!(
        "not a PostgreSQL server: unexpected message {tag} during {during}"
    ))
}

fn out_of_order(what: &str) -> ProbeError {
    ProbeError::Protocol(format!("server sent {what} before starting SASL"))
}

fn scram_failed(e: std::io::Error) -> ProbeError {
    ProbeError::Protocol(format!("SCRAM-SHA-256 exchange failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(method: i32, rest: &[u8]) -> Vec<u8> {
        let mut body = method.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn auth_requests() {
        let malformed = || {
            Err(ProbeError::Protocol(
                "malformed authentication request".into(),
            ))
        };
        let cases: Vec<(Vec<u8>, Result<Auth, ProbeError>)> = vec![
            (auth(0, b""), Ok(Auth::Ok)),
            (auth(3, b""), Ok(Auth::Cleartext)),
            (auth(5, b"salt"), Ok(Auth::Md5(*b"salt"))),
            (auth(5, b"sal"), malformed()),
            (
                auth(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
                Ok(Auth::Sasl(vec![
                    "SCRAM-SHA-256-PLUS".into(),
                    "SCRAM-SHA-256".into(),
                ])),
            ),
            (auth(10, b""), Ok(Auth::Sasl(vec![]))),
            (
                auth(10, b"SCRAM-SHA-256"),
                Ok(Auth::Sasl(vec!["SCRAM-SHA-256".into()])),
            ),
            (
                auth(11, b"r=abc,s=c2FsdA==,i=4096"),
                Ok(Auth::SaslContinue(b"r=abc,s=c2FsdA==,i=4096".to_vec())),
            ),
            (auth(12, b"v=xyz"), Ok(Auth::SaslFinal(b"v=xyz".to_vec()))),
            (auth(7, b""), Ok(Auth::Other(7))),
            (vec![0, 0, 0], malformed()),
            (vec![], malformed()),
        ];
        for (body, want) in cases {
            assert_eq!(parse_auth(&body), want, "{body:?}");
        }
    }

    #[test]
    fn error_responses() {
        let pg = |severity: &str, code: &str, message: &str| ProbeError::Postgres {
            severity: severity.into(),
            code: code.into(),
            message: message.into(),
        };
        let cases: &[(&[u8], ProbeError, &str)] = &[
            (
                b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"user\"\0\
                  Fauth.c\0L326\0Rauth_failed\0\0",
                pg(
                    "FATAL",
                    "28P01",
                    "password authentication failed for user \"user\"",
                ),
                "password authentication failed for user \"user\" (FATAL 28P01)",
            ),
            (
                b"SFATAL\0VFATAL\0C3D000\0Mdatabase \"x\" does not exist\0\0",
                pg("FATAL", "3D000", "database \"x\" does not exist"),
                "database \"x\" does not exist (FATAL 3D000)",
            ),
            (
                // A localized server: `V` (never translated) wins over `S`.
                b"Slocalized\0VFATAL\0C57P03\0Mthe database system is starting up\0\0",
                pg("FATAL", "57P03", "the database system is starting up"),
                "the database system is starting up (FATAL 57P03)",
            ),
            (
                b"SERROR\0C42601\0Msyntax error\0\0",
                pg("ERROR", "42601", "syntax error"),
                "syntax error (ERROR 42601)",
            ),
            (
                b"",
                pg("ERROR", "?????", "server error without a message"),
                "server error without a message (ERROR ?????)",
            ),
            (
                b"Mno terminator",
                pg("ERROR", "?????", "no terminator"),
                "no terminator (ERROR ?????)",
            ),
        ];
        for (body, want, text) in cases {
            let got = parse_error(body);
            assert_eq!(got, *want);
            assert_eq!(got.to_string(), *text);
        }
    }

    #[test]
    fn unexpected_tags() {
        assert_eq!(
            unexpected(b'H', "login").to_string(),
            "not a PostgreSQL server: unexpected message `H` during login"
        );
        assert_eq!(
            unexpected(0, "login").to_string(),
            "not a PostgreSQL server: unexpected message 0x00 during login"
        );
    }
}
