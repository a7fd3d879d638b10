//! Ports (`ports`, the short, long and ranged forms): parsed into mappings, each checked.

use super::*;

pub(super) fn parse_port_number(s: &str) -> Result<u16, String> {
    let s = s.trim();
    match s.parse::<u64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("port `{n}` is out of range (1-65535)")),
        Err(_) => Err(format!("`{s}` is not a port number")),
    }
}

/// Parses one `ports` entry: `C`, `H:C`, `IP:H:C`, `IP::C`, each with an optional `/tcp|/udp`.
pub(super) fn parse_port_mapping(
    s: &str,
    is_container: bool,
) -> Result<PortMapping, (String, String)> {
    let form_help = || {
        if is_container {
            "write `HOST:CONTAINER` (`\"5432:5432\"`), `IP:HOST:CONTAINER`, or just `CONTAINER` for a free host port".to_string()
        } else {
            "a native process publishes the port it listens on: write it alone, e.g. `\"5000\"`"
                .to_string()
        }
    };
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => {
            return Err((
                format!("unknown protocol `{other}` in port mapping `{s}`"),
                "use `/tcp` or `/udp`".to_string(),
            ))
        }
        None => (s, Protocol::Tcp),
    };
    // An IPv6 address is written in brackets: `[::1]:8080:80`.
    let (ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
        match stripped.split_once("]:") {
            Some((ip, rest)) => (Some(ip), rest),
            None => return Err((format!("malformed port mapping `{s}`"), form_help())),
        }
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
            _ => return Err((format!("malformed port mapping `{s}`"), form_help())),
        }
    };
    let host_ip: IpAddr = match ip {
        // An empty address (`":2283:2283"`) is the default one, loopback for devstack.
        None | Some("") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(ip) => ip.parse().map_err(|_| {
            (
                format!("invalid address `{ip}` in port mapping `{s}`"),
                "give an IP address such as `127.0.0.1` or `0.0.0.0`".to_string(),
            )
        })?,
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    if container.is_empty() || host.is_some_and(|h| h.is_empty() && ip.is_none()) {
        return Err((format!("malformed port mapping `{s}`"), form_help()));
    }
    let container_port = parse_port_number(container).map_err(|m| (m, form_help()))?;
    let host_port = match host {
        None | Some("") => None,
        Some(h) => Some(parse_port_number(h).map_err(|m| (m, form_help()))?),
    };
    if !is_container {
        if ip.is_some() || host_port.is_some_and(|h| h != container_port) {
            return Err((
                format!("a native process cannot map ports (`{s}`)"),
                form_help(),
            ));
        }
        return Ok(PortMapping {
            host_ip,
            host_port: Some(container_port),
            container_port,
            protocol,
        });
    }
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    })
}

pub(super) fn ports(
    c: &mut Checker<'_>,
    raw: &[RawPort],
    path: &KeyPath,
    name: &str,
    is_container: bool,
) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let ppath = path.index(i);
        let parsed = match p {
            RawPort::Short(s) => parse_port_spec(s.trim(), is_container),
            RawPort::Long(l) => long_port(l).and_then(|s| parse_port_spec(&s, is_container)),
        };
        match parsed {
            Ok(ms) => {
                for m in ms {
                    // The same mapping written twice is one mapping, as Compose reads it.
                    if out.contains(&m) {
                        continue;
                    }
                    if out
                        .iter()
                        .any(|o| o.container_port == m.container_port && o.protocol == m.protocol)
                    {
                        c.err(
                            Diagnostic::new(format!(
                                "service `{name}` publishes port {} twice",
                                m.container_port
                            ))
                            .at_value(ppath.clone())
                            .help("remove one of the two entries; an override file that changes a host port replaces the list with `ports: !override [...]`"),
                        );
                    } else {
                        out.push(m);
                    }
                }
            }
            Err((message, help)) => c.err(Diagnostic::new(message).at_value(ppath).help(help)),
        }
    }
    out
}

/// The long form `{target, published, host_ip, protocol}` as the short text it means.
pub(super) fn long_port(l: &RawLongPort) -> Result<String, (String, String)> {
    let mut s = String::new();
    if let Some(ip) = &l.host_ip {
        if ip.contains(':') {
            s.push_str(&format!("[{ip}]:"));
        } else {
            s.push_str(&format!("{ip}:"));
        }
    }
    match &l.published {
        Some(p) => s.push_str(&format!("{}:", p.0)),
        None if l.host_ip.is_some() => s.push(':'),
        None => {}
    }
    s.push_str(&l.target.0);
    if let Some(proto) = &l.protocol {
        s.push_str(&format!("/{proto}"));
    }
    Ok(s)
}

/// A port or an inclusive range `A-B`.
pub(super) fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let a = parse_port_number(a)?;
            let b = parse_port_number(b)?;
            if b < a {
                return Err(format!("port range `{s}` ends before it starts"));
            }
            Ok((a, b))
        }
        None => parse_port_number(s).map(|p| (p, p)),
    }
}

/// One `ports` entry, ranges expanded: `8000-8002:9000-9002` is three mappings.
pub(super) fn parse_port_spec(
    s: &str,
    is_container: bool,
) -> Result<Vec<PortMapping>, (String, String)> {
    if !s.contains('-') {
        return parse_port_mapping(s, is_container).map(|m| vec![m]);
    }
    let range_help = || {
        "a range maps to a range of the same length: `\"8000-8010:8000-8010\"`, or `\"8000-8010\"` alone for free host ports".to_string()
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, format!("/{p}")),
        None => (s, String::new()),
    };
    let (prefix, rest) = if spec.starts_with('[') {
        match spec.find("]:") {
            Some(i) => (&spec[..i + 2], &spec[i + 2..]),
            None => return parse_port_mapping(s, is_container).map(|m| vec![m]),
        }
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        if parts.len() == 3 {
            let i = parts[0].len() + 1;
            (&spec[..i], &spec[i..])
        } else {
            ("", spec)
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    let (c0, c1) = parse_port_range(container).map_err(|m| (m, range_help()))?;
    let hosts = match host {
        None | Some("") => None,
        Some(h) => Some(parse_port_range(h).map_err(|m| (m, range_help()))?),
    };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 {
            return Err((
                format!("port ranges in `{s}` differ in length"),
                range_help(),
            ));
        }
    }
    (c0..=c1)
        .map(|cp| {
            let host = match (hosts, host) {
                (Some((h0, _)), _) => format!("{}:", h0 + (cp - c0)),
                (None, Some(_)) => ":".to_string(),
                (None, None) => String::new(),
            };
            parse_port_mapping(&format!("{prefix}{host}{cp}{proto}"), is_container)
        })
        .collect()
}

/// `expose`: ports open to other containers only, each a port or a range.
pub(super) fn expose(c: &mut Checker<'_>, rs: &RawService, path: &KeyPath) -> Vec<String> {
    let mut expose = Vec::new();
    for (i, e) in rs.expose.iter().enumerate() {
        let (ports, proto) = match e.0.rsplit_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (e.0.as_str(), None),
        };
        let proto_ok = matches!(proto, None | Some("tcp") | Some("udp"));
        match parse_port_range(ports) {
            Ok(_) if proto_ok => expose.push(e.0.trim().to_string()),
            Ok(_) => c.err(
                Diagnostic::new(format!("unknown protocol in `expose` entry `{}`", e.0))
                    .at_value(path.key("expose").index(i))
                    .help("use `/tcp` or `/udp`"),
            ),
            Err(m) => c.err(
                Diagnostic::new(m)
                    .at_value(path.key("expose").index(i))
                    .help("write a port or a range: `\"3000\"`, `\"8000-8010/udp\"`"),
            ),
        }
    }
    expose
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn port_mappings_table() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        type Want = (IpAddr, Option<u16>, u16, Protocol);
        let ok: &[(&str, bool, Want)] = &[
            ("5432:5432", true, (lo, Some(5432), 5432, Protocol::Tcp)),
            ("15432:5432", true, (lo, Some(15432), 5432, Protocol::Tcp)),
            ("5432", true, (lo, None, 5432, Protocol::Tcp)),
            (
                "0.0.0.0:8080:80",
                true,
                (any, Some(8080), 80, Protocol::Tcp),
            ),
            ("127.0.0.1::80", true, (lo, None, 80, Protocol::Tcp)),
            ("53:53/udp", true, (lo, Some(53), 53, Protocol::Udp)),
            (
                "[::1]:8080:80",
                true,
                ("::1".parse().unwrap(), Some(8080), 80, Protocol::Tcp),
            ),
            ("5000", false, (lo, Some(5000), 5000, Protocol::Tcp)),
            ("5000:5000", false, (lo, Some(5000), 5000, Protocol::Tcp)),
        ];
        for (spec, container, (ip, host, cport, proto)) in ok {
            let m =
                parse_port_mapping(spec, *container).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
            assert_eq!(
                (m.host_ip, m.host_port, m.container_port, m.protocol),
                (*ip, *host, *cport, *proto),
                "{spec}"
            );
        }
        let bad: &[(&str, bool, &str)] = &[
            ("70000:80", true, "port `70000` is out of range (1-65535)"),
            ("0:80", true, "port `0` is out of range (1-65535)"),
            ("http:80", true, "`http` is not a port number"),
            ("1:2:3:4", true, "malformed port mapping `1:2:3:4`"),
            (
                "8000-8010:9000",
                true,
                "port ranges in `8000-8010:9000` differ in length",
            ),
            (
                "8010-8000:8010-8000",
                true,
                "port range `8010-8000` ends before it starts",
            ),
            (
                "80/sctp",
                true,
                "unknown protocol `sctp` in port mapping `80/sctp`",
            ),
            (
                "example.com:80:80",
                true,
                "invalid address `example.com` in port mapping `example.com:80:80`",
            ),
            (":80", true, "malformed port mapping `:80`"),
            (
                "8080:5000",
                false,
                "a native process cannot map ports (`8080:5000`)",
            ),
            (
                "127.0.0.1:5000:5000",
                false,
                "a native process cannot map ports (`127.0.0.1:5000:5000`)",
            ),
        ];
        for (spec, container, msg) in bad {
            let (m, _help) = parse_port_spec(spec, *container).expect_err(spec);
            assert_eq!(&m, msg, "{spec}");
        }
    }

    #[test]
    fn port_ranges_and_empty_addresses() {
        let shown = |spec: &str| -> Vec<String> {
            parse_port_spec(spec, true)
                .unwrap_or_else(|e| panic!("{spec}: {e:?}"))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            shown("8000-8002:9000-9002"),
            [
                "127.0.0.1:8000:9000",
                "127.0.0.1:8001:9001",
                "127.0.0.1:8002:9002"
            ]
        );
        assert_eq!(
            shown("8000-8001"),
            ["127.0.0.1:auto:8000", "127.0.0.1:auto:8001"]
        );
        assert_eq!(
            shown("0.0.0.0:53-54:53-54/udp"),
            ["0.0.0.0:53:53/udp", "0.0.0.0:54:54/udp"]
        );
        // Compose's empty host address is the default one: loopback for devstack.
        assert_eq!(shown(":2283:2283"), ["127.0.0.1:2283:2283"]);
        let long = |target: &str, published: Option<&str>, ip: Option<&str>| RawLongPort {
            target: Scalar(target.into()),
            published: published.map(|p| Scalar(p.into())),
            host_ip: ip.map(str::to_string),
            protocol: None,
            mode: None,
            name: None,
            app_protocol: None,
        };
        for (l, want) in [
            (long("80", Some("8080"), None), "8080:80"),
            (long("80", None, None), "80"),
            (long("80", None, Some("0.0.0.0")), "0.0.0.0::80"),
            (long("80", Some("8080"), Some("::1")), "[::1]:8080:80"),
        ] {
            assert_eq!(long_port(&l).unwrap(), want);
        }
    }
}
