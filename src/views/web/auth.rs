//! Who may talk to the dashboard: requests to our own loopback address only (the `Host` header
//! is `127.0.0.1:PORT` or `localhost:PORT`, which defeats DNS rebinding) that carry the per-run
//! token (query on first load, then a cookie, or a header for scripts). Pure decisions; the
//! server applies them.

/// The header a script may send the token in.
pub(super) const TOKEN_HEADER: &str = "x-devstack-token";

/// The cookie that keeps the token after the first load. Cookies are per host, not per port:
/// the port in the name keeps two dashboards on one machine apart.
pub(super) fn cookie_name(port: u16) -> String {
    format!("devstack_token_{port}")
}

/// A fresh token: 16 random bytes as hex.
pub(crate) fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `host` (the `Host` header) names this server on loopback.
pub(super) fn host_allowed(host: Option<&str>, port: u16) -> bool {
    let Some(host) = host else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}")
}

/// Whether an `Origin` header (sent by browsers with POSTs) is this server's own.
pub(super) fn origin_allowed(origin: Option<&str>, port: u16) -> bool {
    match origin {
        // Not a browser, or a same-origin GET: the token alone decides.
        None => true,
        Some(o) => {
            let o = o.to_ascii_lowercase();
            o == format!("http://127.0.0.1:{port}") || o == format!("http://localhost:{port}")
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(super) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The value of `token` in a query string.
pub(super) fn query_token(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then_some(v)
    })
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Credential {
    /// The URL printed at start-up: the response sets the cookie.
    Query,
    Cookie,
    Header,
}

/// What to do with a request, from its headers and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow(Credential),
    /// A foreign `Host` (a DNS-rebinding page) or `Origin` (a cross-site form).
    ForeignHost,
    /// No token, or a wrong one.
    NoToken,
}

pub(super) struct Request<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub query: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub header: Option<&'a str>,
    /// POST and friends: they change the stack.
    pub mutating: bool,
}

pub(super) fn check(req: &Request<'_>, token: &str, port: u16) -> Verdict {
    if !host_allowed(req.host, port) {
        return Verdict::ForeignHost;
    }
    if req.mutating && !origin_allowed(req.origin, port) {
        return Verdict::ForeignHost;
    }
    let name = cookie_name(port);
    let candidates = [
        (Credential::Header, req.header),
        (
            Credential::Cookie,
            req.cookie.and_then(|c| cookie(c, &name)),
        ),
        (Credential::Query, req.query.and_then(query_token)),
    ];
    for (how, given) in candidates {
        if given.is_some_and(|g| same(g, token)) {
            return Verdict::Allow(how);
        }
    }
    Verdict::NoToken
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "00112233445566778899aabbccddeeff";

    fn req<'a>() -> Request<'a> {
        Request {
            host: Some("127.0.0.1:8080"),
            origin: None,
            query: None,
            cookie: None,
            header: None,
            mutating: false,
        }
    }

    #[test]
    fn host_and_token_decide() {
        let cookie = format!("a=b; devstack_token_8080={T}");
        let query = format!("x=1&token={T}");
        let cases: Vec<(Request, Verdict)> = vec![
            (req(), Verdict::NoToken),
            (
                Request {
                    query: Some(&query),
                    ..req()
                },
                Verdict::Allow(Credential::Query),
            ),
            (
                Request {
                    cookie: Some(&cookie),
                    host: Some("LOCALHOST:8080"),
                    ..req()
                },
                Verdict::Allow(Credential::Cookie),
            ),
            (
                Request {
                    header: Some(T),
                    ..req()
                },
                Verdict::Allow(Credential::Header),
            ),
            (
                Request {
                    header: Some("00112233445566778899aabbccddeefe"),
                    ..req()
                },
                Verdict::NoToken,
            ),
            // The cookie of another dashboard (other port) is not ours.
            (
                Request {
                    cookie: Some("devstack_token_9090=00112233445566778899aabbccddeeff"),
                    ..req()
                },
                Verdict::NoToken,
            ),
            (
                Request {
                    host: Some("evil.example:8080"),
                    header: Some(T),
                    ..req()
                },
                Verdict::ForeignHost,
            ),
            (
                Request {
                    host: Some("127.0.0.1:8081"),
                    header: Some(T),
                    ..req()
                },
                Verdict::ForeignHost,
            ),
            (
                Request {
                    host: None,
                    header: Some(T),
                    ..req()
                },
                Verdict::ForeignHost,
            ),
            (
                Request {
                    origin: Some("http://evil.example"),
                    cookie: Some(&cookie),
                    mutating: true,
                    ..req()
                },
                Verdict::ForeignHost,
            ),
            (
                Request {
                    origin: Some("http://localhost:8080"),
                    cookie: Some(&cookie),
                    mutating: true,
                    ..req()
                },
                Verdict::Allow(Credential::Cookie),
            ),
        ];
        for (i, (r, want)) in cases.iter().enumerate() {
            assert_eq!(check(r, T, 8080), *want, "case {i}");
        }
    }

    #[test]
    fn tokens_are_fresh_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
