//! Finding, in `/proc`, the processes that already talk to Redis when the
//! probe starts (their connections predate it), and the process behind a
//! local connection's client end.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// TCP states of `/proc/net/tcp`.
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// One line of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

pub fn tcp_sockets() -> Vec<TcpSocket> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(parse_line)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn parse_line(line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(TcpSocket {
        local: parse_address(fields.get(1)?)?,
        remote: parse_address(fields.get(2)?)?,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// `0100007F:18EB` (IPv4) or 32 hex digits (IPv6): the kernel prints each
/// 32-bit word in host (little-endian) order.
fn parse_address(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.swap_bytes())),
        [a, b, c, d] => {
            let v6 = Ipv6Addr::from(
                (u128::from(a.swap_bytes()) << 96)
                    | (u128::from(b.swap_bytes()) << 64)
                    | (u128::from(c.swap_bytes()) << 32)
                    | u128::from(d.swap_bytes()),
            );
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Socket inode → process id, for every process we may look at.
pub fn socket_owners() -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse().ok())
            {
                owners.insert(inode, pid);
            }
        }
    }
    owners
}

pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// Processes that listen on, or are connected to, one of `ports` now,
/// optionally only those named `name`. A client whose only such
/// connections go to a server of this host that is followed itself is left
/// out: the server's side shows its commands.
pub fn redis_processes(ports: &[u16], name: Option<&str>) -> HashSet<u32> {
    let sockets = tcp_sockets();
    let owners = socket_owners();
    let wanted = |inode: &u64| {
        owners
            .get(inode)
            .filter(|pid| name.is_none_or(|name| comm(**pid).as_deref() == Some(name)))
            .copied()
    };
    let mut pids = HashSet::new();
    let mut followed_ports = HashSet::new();
    for socket in sockets
        .iter()
        .filter(|s| s.state == LISTEN && ports.contains(&s.local.port()))
    {
        if let Some(pid) = wanted(&socket.inode) {
            pids.insert(pid);
            followed_ports.insert(socket.local.port());
        }
    }
    for socket in sockets.iter().filter(|s| s.state == ESTABLISHED) {
        let server_side = ports.contains(&socket.local.port());
        let client_side = ports.contains(&socket.remote.port())
            && !(followed_ports.contains(&socket.remote.port())
                && (socket.remote.ip().is_loopback() || socket.remote.ip() == socket.local.ip()));
        if (server_side || client_side)
            && let Some(pid) = wanted(&socket.inode)
        {
            pids.insert(pid);
        }
    }
    pids
}

/// Ports on which a process among `pids` listens now.
pub fn listening_ports(ports: &[u16], pids: &HashSet<u32>) -> HashSet<u16> {
    let owners = socket_owners();
    tcp_sockets()
        .into_iter()
        .filter(|s| s.state == LISTEN && ports.contains(&s.local.port()))
        .filter(|s| owners.get(&s.inode).is_some_and(|pid| pids.contains(pid)))
        .map(|s| s.local.port())
        .collect()
}

/// Who owns the local client end of connections, looked up in `/proc` at
/// most ten times a second (a busy server sees many connections open).
#[derive(Default)]
pub struct Owners {
    owners: HashMap<u64, u32>,
    sockets: Vec<TcpSocket>,
    read_at: Option<Instant>,
}

impl Owners {
    /// The process whose socket goes from `client` to `server`.
    pub fn client_process(&mut self, client: SocketAddr, server: SocketAddr) -> Option<u32> {
        if self.find(client, server).is_none()
            && self
                .read_at
                .is_none_or(|at| at.elapsed() > Duration::from_millis(100))
        {
            self.owners = socket_owners();
            self.sockets = tcp_sockets();
            self.read_at = Some(Instant::now());
        }
        self.find(client, server)
    }

    fn find(&self, client: SocketAddr, server: SocketAddr) -> Option<u32> {
        let socket = self
            .sockets
            .iter()
            .find(|s| s.local == client && s.remote == server)?;
        self.owners.get(&socket.inode).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:18EB 0100007F:B9F2 01 00000000:00000000 00:00000000 00000000   999        0 123456 1 0000000000000000 20 4 30 10 -1";
        let s = parse_line(v4).unwrap();
        assert_eq!(s.local, "127.0.0.1:6379".parse().unwrap());
        assert_eq!(s.remote, "127.0.0.1:47602".parse().unwrap());
        assert_eq!((s.state, s.inode), (ESTABLISHED, 123456));
        let v6 = "   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 7 1 0000000000000000 100 0 0 10 0";
        let s = parse_line(v6).unwrap();
        assert_eq!(s.local, "[::1]:6379".parse().unwrap());
        assert_eq!(s.state, LISTEN);
        let mapped = "   0: 0000000000000000FFFF00000100007F:18EB 0000000000000000FFFF00000100007F:B9F2 01 0 0 0 0 0 8 1";
        assert_eq!(
            parse_line(mapped).unwrap().local,
            "127.0.0.1:6379".parse().unwrap()
        );
    }

    #[test]
    fn this_process_is_found_by_its_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pids = redis_processes(&[port], None);
        assert!(pids.contains(&std::process::id()));
        assert!(listening_ports(&[port], &pids).contains(&port));
        let name = comm(std::process::id()).unwrap();
        assert!(redis_processes(&[port], Some(&name)).contains(&std::process::id()));
        assert!(redis_processes(&[port], Some("no-such-name")).is_empty());
    }
}
