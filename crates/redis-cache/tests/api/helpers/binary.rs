//! The `redis-cache` binary as a child process: started with an environment
//! of the test's choosing, JSON logs read until it reports its port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::kill_with_parent;

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-cache"));
    command.env_clear();
    command
}

pub fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = binary();
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the binary with JSON logs and returns it with the port it reports.
pub fn start(env: &[(&str, String)]) -> (Child, u16) {
    start_in(std::env::temp_dir().as_path(), env)
}

pub fn start_in(dir: &std::path::Path, env: &[(&str, String)]) -> (Child, u16) {
    let (child, port, _) = start_logging(dir, env);
    (child, port)
}

/// Like [`start_in`], but also returns every log line printed, collected
/// until the process exits.
pub fn start_logging(
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    listening(spawn_in(dir, env))
}

/// Starts the binary with JSON logs, without waiting for it.
pub fn spawn_in(dir: &std::path::Path, env: &[(&str, String)]) -> Child {
    command_in(dir, env).spawn().unwrap()
}

/// The binary, to run in `dir` with JSON logs on stdout and `env`.
pub fn command_in(dir: &std::path::Path, env: &[(&str, String)]) -> Command {
    let mut command = binary();
    command.current_dir(dir);
    command
        .env("SERVER_PORT", "0")
        .env("BIND_ADDR", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug,hyper=info,h2=info,rustls=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    kill_with_parent(&mut command, libc::SIGKILL);
    command
}

/// The binary in `dir` on Redis `redis_url` and `database`, with `env`.
pub fn service_command(
    dir: &std::path::Path,
    redis_url: String,
    database: &super::TestDatabase,
    env: &[(&str, &str)],
) -> Command {
    let mut vars = vec![
        ("REDIS_URL", redis_url),
        ("DATABASE_URL", database.url.clone()),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    command_in(dir, &vars)
}

/// Sets the child's `resource` limit (soft and hard) to `value`. With
/// `RLIMIT_FSIZE`, a write past the size fails with `EFBIG`, as on a full
/// disk (`SIGXFSZ` is ignored: a full disk raises no signal either).
pub fn limit(command: &mut Command, resource: libc::__rlimit_resource_t, value: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit and signal are async-signal-safe and change only the
    // child's own limit and signal disposition (both survive exec).
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &limit) == -1
                || (resource == libc::RLIMIT_FSIZE
                    && libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reads `child`'s log until it reports listening; returns its port and the
/// log lines, collected until it exits.
pub fn listening(mut child: Child) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let event = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default();
        let _ = tx.send(line);
        if event["message"] == "listening" {
            let address = event["address"].as_str().unwrap();
            let port = address.rsplit(':').next().unwrap().parse().unwrap();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            return (child, port, rx);
        }
    }
    panic!("redis-cache exited before listening: {:?}", child.wait());
}

/// Source-of-truth reads so far, as the service's `/stats` reports them.
pub async fn upstream_fetches(http: &reqwest::Client, base: &str) -> u64 {
    let stats: serde_json::Value = http
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["upstream_fetches"].as_u64().unwrap()
}

pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

pub async fn exit_code(mut child: Child) -> Option<i32> {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
        .code()
}
