//! Redis and its clients in a network namespace other than the probe's (a
//! pod or container, the probe running with the host's pids but its own
//! network): connections that predate the probe are found all the same.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Probe, eventually_blocking};

/// A `redis-cli` repeating `GET` over one connection to a Redis of its own
/// network namespace, connected before the probe starts in this process's
/// namespace: the probe follows that Redis, counts the connection's
/// commands, and names its client.
#[test]
fn a_connection_in_another_network_namespace_opened_before_the_probe_is_counted() {
    // Held in this namespace so that no other test gets the port from
    // `free_port` (its probe would count this namespace's traffic). The
    // probe follows this listener too; nothing connects to it.
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port().to_string();
    let mut namespace = Namespace::create(&port);
    namespace.redis_server(&port);
    namespace.spawn(
        "redis-cli",
        &["-p", &port, "-r", "-1", "-i", "0.01", "GET", "key"],
    );
    eventually_blocking(
        "the client's first GET, before the probe starts",
        Duration::from_secs(10),
        || {
            let stats = namespace.output("redis-cli", &["-p", &port, "INFO", "commandstats"]);
            if stats.contains("cmdstat_get:calls=") {
                Ok(())
            } else {
                Err(stats)
            }
        },
    );

    let probe = Probe::start(&["--redis-port", &port]);

    eventually_blocking(
        "the old connection's GETs, named after its client",
        Duration::from_secs(20),
        || {
            let gets = probe.sum(
                "obi_redis_commands_total",
                &[
                    ("command", "GET"),
                    ("server_port", &port),
                    ("service_name", "redis-cli"),
                ],
            );
            if gets > 0.0 {
                Ok(())
            } else {
                Err(probe
                    .samples()
                    .into_iter()
                    .filter(|s| s.name == "obi_redis_commands_total")
                    .collect::<Vec<_>>())
            }
        },
    );
}

/// A network namespace of the test's own, its loopback up, and what runs
/// in it; dropped (also when the test fails), its processes are killed and
/// it is deleted.
struct Namespace {
    name: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Namespace {
    fn create(tag: &str) -> Namespace {
        let name = format!("cache-probe-{}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let namespace = Namespace {
            name,
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        run(namespace.command("ip").args(["link", "set", "lo", "up"]));
        namespace
    }

    /// `program`, run inside (`ip netns exec` execs it: its pid is ours).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Starts `redis-server` on `port` and returns once it accepts
    /// connections.
    fn redis_server(&mut self, port: &str) {
        let mut child = self
            .command("redis-server")
            .args(["--port", port, "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                "no",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        self.children.push(child);
        assert!(
            lines
                .by_ref()
                .map_while(Result::ok)
                .any(|line| line.contains("Ready to accept connections")),
            "redis-server did not start in {}",
            self.name
        );
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
    }

    fn spawn(&mut self, program: &str, args: &[&str]) {
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn output(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("iproute2 is installed");
    assert!(status.success(), "{command:?} failed ({status})");
}
