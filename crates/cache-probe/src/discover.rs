//! Finding, in `/proc`, the processes that already talk to Redis when the
//! probe starts (their connections predate it), and the process behind a
//! local connection's client end.
//!
//! `/proc/net/tcp` shows only the sockets of the reader's network namespace,
//! and the probe usually has its own (a pod with `hostPID` but not
//! `hostNetwork`, a compose service with `pid: host`), as has every Redis
//! container it watches. So the tables are read from one process of each
//! network namespace on the host, the probe's own included. Socket inodes
//! are unique host-wide, so the tables merge; addresses are not (each
//! namespace has its own loopback), so each socket keeps its namespace.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// TCP states of `/proc/net/tcp`.
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// One line of `/proc/<pid>/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// The inode of the network namespace whose table showed it.
    pub netns: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// The TCP sockets of every network namespace some process lives in: one
/// `readlink` per process, and the tables of one process per namespace.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    let own = Path::new("/proc/self");
    // The probe's own namespace first, and read even if its link cannot be.
    let own_netns = net_namespace(own).unwrap_or(0);
    let others = processes().filter_map(|pid| {
        let dir = Path::new("/proc").join(pid.to_string());
        Some((net_namespace(&dir)?, dir))
    });
    let mut read = HashSet::new();
    let mut sockets = Vec::new();
    for (netns, dir) in std::iter::once((own_netns, own.to_path_buf())).chain(others) {
        if read.contains(&netns) {
            continue;
        }
        // A process that has just exited shows no table; the next process
        // of its namespace, if any, is read instead.
        let Ok(v4) = std::fs::read_to_string(dir.join("net/tcp")) else {
            continue;
        };
        read.insert(netns);
        let v6 = std::fs::read_to_string(dir.join("net/tcp6")).unwrap_or_default();
        for table in [v4, v6] {
            sockets.extend(
                table
                    .lines()
                    .skip(1)
                    .filter_map(|line| parse_line(netns, line)),
            );
        }
    }
    sockets
}

/// The inode of `/proc/<pid>/ns/net` (`net:[4026531840]`).
fn net_namespace(process: &Path) -> Option<u64> {
    std::fs::read_link(process.join("ns/net"))
        .ok()?
        .to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The ids of the processes in `/proc`.
fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

fn parse_line(netns: u64, line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(TcpSocket {
        netns,
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
    for pid in processes() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
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

/// Processes that listen on, or are connected to, one of `ports` now, in
/// any network namespace, optionally only those named `name`. A client
/// whose only such connections go to a followed server of its own namespace
/// is left out: the server's side shows its commands.
pub fn redis_processes(ports: &[u16], name: Option<&str>) -> HashSet<u32> {
    let owners = socket_owners();
    select(&tcp_sockets(), ports, |inode| {
        owners
            .get(&inode)
            .copied()
            .filter(|pid| name.is_none_or(|name| comm(*pid).as_deref() == Some(name)))
    })
}

/// The processes, by `wanted` (socket inode → process, if it is to be
/// followed), behind `sockets` on `ports`. A loopback address, or the
/// client's own, is a server of the client's network namespace: a followed
/// server on that port in another namespace (another pod's `127.0.0.1:6379`)
/// is another server, which never sees this client's commands.
fn select(
    sockets: &[TcpSocket],
    ports: &[u16],
    wanted: impl Fn(u64) -> Option<u32>,
) -> HashSet<u32> {
    let mut pids = HashSet::new();
    let mut followed_servers = HashSet::new();
    for socket in sockets
        .iter()
        .filter(|s| s.state == LISTEN && ports.contains(&s.local.port()))
    {
        if let Some(pid) = wanted(socket.inode) {
            pids.insert(pid);
            followed_servers.insert((socket.netns, socket.local.port()));
        }
    }
    for socket in sockets.iter().filter(|s| s.state == ESTABLISHED) {
        let server_side = ports.contains(&socket.local.port());
        let client_side = ports.contains(&socket.remote.port())
            && !(followed_servers.contains(&(socket.netns, socket.remote.port()))
                && (socket.remote.ip().is_loopback() || socket.remote.ip() == socket.local.ip()));
        if (server_side || client_side)
            && let Some(pid) = wanted(socket.inode)
        {
            pids.insert(pid);
        }
    }
    pids
}

/// Ports on which a process among `pids` listens now, in any network
/// namespace.
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

    /// Each network namespace has its own loopback, so the same pair of
    /// addresses can be established in two at once (two pods, each with a
    /// local client of its own Redis on 6379 that picked the same ephemeral
    /// port). Only sockets with a known owner are candidates (a closing
    /// socket has none). When owned sockets of different processes match,
    /// which of them the caller's server holds the other end of is not known
    /// here (it names no server process), so there is no answer rather than
    /// another pod's client.
    fn find(&self, client: SocketAddr, server: SocketAddr) -> Option<u32> {
        let mut owners = self
            .sockets
            .iter()
            .filter(|s| s.local == client && s.remote == server)
            .filter_map(|s| self.owners.get(&s.inode).copied());
        let owner = owners.next()?;
        owners.all(|other| other == owner).then_some(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:18EB 0100007F:B9F2 01 00000000:00000000 00:00000000 00000000   999        0 123456 1 0000000000000000 20 4 30 10 -1";
        let s = parse_line(7, v4).unwrap();
        assert_eq!(s.local, "127.0.0.1:6379".parse().unwrap());
        assert_eq!(s.remote, "127.0.0.1:47602".parse().unwrap());
        assert_eq!((s.state, s.inode, s.netns), (ESTABLISHED, 123456, 7));
        let v6 = "   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 7 1 0000000000000000 100 0 0 10 0";
        let s = parse_line(7, v6).unwrap();
        assert_eq!(s.local, "[::1]:6379".parse().unwrap());
        assert_eq!(s.state, LISTEN);
        let mapped = "   0: 0000000000000000FFFF00000100007F:18EB 0000000000000000FFFF00000100007F:B9F2 01 0 0 0 0 0 8 1";
        assert_eq!(
            parse_line(7, mapped).unwrap().local,
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

    fn socket(netns: u64, local: &str, remote: &str, state: u8, inode: u64) -> TcpSocket {
        TcpSocket {
            netns,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode,
        }
    }

    #[test]
    fn a_local_client_is_left_out_only_where_its_server_is_followed() {
        let sockets = [
            // Namespace 1: a followed server (pid 100) and its local client (101).
            socket(1, "127.0.0.1:6379", "0.0.0.0:0", LISTEN, 10),
            socket(1, "127.0.0.1:6379", "127.0.0.1:50000", ESTABLISHED, 11),
            socket(1, "127.0.0.1:50000", "127.0.0.1:6379", ESTABLISHED, 12),
            // Namespace 2: the same addresses, with a server not followed
            // (no owner found); its client (201) is followed.
            socket(2, "127.0.0.1:6379", "0.0.0.0:0", LISTEN, 20),
            socket(2, "127.0.0.1:6379", "127.0.0.1:50000", ESTABLISHED, 21),
            socket(2, "127.0.0.1:50000", "127.0.0.1:6379", ESTABLISHED, 22),
        ];
        let owners = HashMap::from([(10, 100), (11, 100), (12, 101), (22, 201)]);
        let pids = select(&sockets, &[6379], |inode| owners.get(&inode).copied());
        assert_eq!(pids, HashSet::from([100, 201]));
    }

    #[test]
    fn a_client_end_in_two_namespaces_is_named_only_when_unambiguous() {
        const TIME_WAIT: u8 = 0x06;
        let (client, server) = ("127.0.0.1:50000", "127.0.0.1:6379");
        let mut owners = Owners {
            owners: HashMap::from([(11, 100), (12, 101), (32, 301)]),
            sockets: vec![
                socket(1, server, client, ESTABLISHED, 11),
                socket(1, client, server, ESTABLISHED, 12),
                // Closing, in another namespace: no inode, no owner.
                socket(2, client, server, TIME_WAIT, 0),
            ],
            read_at: None,
        };
        let (client, server) = (client.parse().unwrap(), server.parse().unwrap());
        assert_eq!(owners.find(client, server), Some(101));
        owners.sockets.push(TcpSocket {
            netns: 3,
            inode: 32,
            ..owners.sockets[1].clone()
        });
        assert_eq!(owners.find(client, server), None);
    }
}
