//! Host ports: is one free, pick a free one, and who holds a taken one (a pid and its command,
//! read from /proc). Checks only; it never takes a port away from anyone.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use crate::config::Protocol;

/// Whether `ip:port` can be bound now. An unspecified or loopback address is checked as given.
pub(crate) fn is_free(ip: IpAddr, port: u16, protocol: Protocol) -> bool {
    let addr = SocketAddr::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

/// A port the kernel reports free on `ip` right now, avoiding `taken` (ports already handed out
/// in this run). There is a window before it is used; callers bind soon after.
pub(crate) fn pick_free(ip: IpAddr, taken: &HashSet<u16>) -> std::io::Result<u16> {
    for _ in 0..64 {
        let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let port = l.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port found",
    ))
}

/// Who listens on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: u32,
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} `{}`", self.pid, self.command)
    }
}

/// Socket inodes listening on `port` (TCP) or bound to it (UDP), from /proc/net.
fn listening_inodes(port: u16, protocol: Protocol) -> HashSet<u64> {
    let files: &[&str] = match protocol {
        Protocol::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let mut out = HashSet::new();
    for f in files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        out.extend(parse_proc_net(&text, port, protocol));
    }
    out
}

/// Parses /proc/net/{tcp,udp}[6]: `sl local_address rem_address st ... inode`. Pure.
fn parse_proc_net(text: &str, port: u16, protocol: Protocol) -> Vec<u64> {
    const TCP_LISTEN: &str = "0A";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let state = cols.get(3)?;
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let (_, port_hex) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(port_hex, 16).ok()?;
            let listening = protocol == Protocol::Udp || *state == TCP_LISTEN;
            (p == port && listening && inode != 0).then_some(inode)
        })
        .collect()
}

/// The process holding `port`, if it is visible to us (same user, or root).
pub(crate) fn holder(port: u16, protocol: Protocol) -> Option<Holder> {
    let inodes = listening_inodes(port, protocol);
    if inodes.is_empty() {
        return None;
    }
    let procs = fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) else {
                continue;
            };
            if inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                return Some(Holder {
                    pid,
                    command: command_line(pid),
                });
            }
        }
    }
    None
}

/// `/proc/PID/cmdline` as one line (arguments joined by spaces), or `comm` for kernel threads.
pub(crate) fn command_line(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if cmd.is_empty() {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".to_string())
    } else {
        cmd
    }
}

/// The address to bind-test for a mapping: Docker publishes on the given address.
pub(crate) fn check_addr(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_NET_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn proc_net_parsing_finds_listeners_only() {
        assert_eq!(
            parse_proc_net(PROC_NET_TCP, 5432, Protocol::Tcp),
            vec![4242]
        );
        assert_eq!(parse_proc_net(PROC_NET_TCP, 6379, Protocol::Tcp), vec![777]);
        assert!(parse_proc_net(PROC_NET_TCP, 80, Protocol::Tcp).is_empty());
        assert!(parse_proc_net("garbage\nmore garbage", 80, Protocol::Tcp).is_empty());
    }

    #[test]
    fn a_listener_in_this_process_is_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!is_free(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            Protocol::Tcp
        ));
        let h = holder(port, Protocol::Tcp).expect("our own listener is visible");
        assert_eq!(h.pid, std::process::id());
        drop(l);
        assert!(is_free(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            Protocol::Tcp
        ));
        assert_eq!(holder(port, Protocol::Tcp), None);
    }

    #[test]
    fn picked_ports_are_free_and_avoid_taken_ones() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = pick_free(ip, &HashSet::new()).unwrap();
        let b = pick_free(ip, &HashSet::from([a])).unwrap();
        assert_ne!(a, b);
        assert!(is_free(ip, b, Protocol::Tcp));
    }
}
