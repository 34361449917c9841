//! One throwaway PostgreSQL cluster per test process (`initdb` into a temp
//! dir, own port and socket, gone with the process), and a fresh database
//! per test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};

use sqlx::Connection;

use crate::{free_port, kill_with_parent};

struct Cluster {
    port: u16,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A new, empty database in the shared test cluster; returns its URL.
pub async fn create_database() -> String {
    let cluster = CLUSTER
        .get_or_init(start_cluster)
        .as_ref()
        .unwrap_or_else(|e| panic!("test PostgreSQL cluster unavailable: {e}"));
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port)
}

/// Runs `sql` as the superuser against the cluster's `postgres` database.
pub async fn admin_execute(sql: String) {
    let cluster = CLUSTER.get().unwrap().as_ref().unwrap();
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Takes a test database down as an outage would: new connections are
/// refused and open ones are terminated. Returns its name for
/// [`allow_connections`].
pub async fn refuse_connections(database_url: &str) -> String {
    let database = database_url.rsplit('/').next().unwrap().to_owned();
    admin_execute(format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false")).await;
    admin_execute(format!(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .await;
    database
}

/// Ends the outage begun by [`refuse_connections`].
pub async fn allow_connections(database: &str) {
    admin_execute(format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true")).await;
}

/// A single number from a superuser query on the cluster's `postgres` database.
pub async fn admin_count(sql: &'static str) -> i64 {
    let cluster = CLUSTER.get().unwrap().as_ref().unwrap();
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(dir.into());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL server binaries not found (install postgresql)".to_owned())?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".to_owned())
}

/// `initdb` and `postgres` refuse to run as root: as root, run them as the
/// `postgres` system user on a directory it owns.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres system user")
    };
    Some((id("-u"), id("-g")))
}

fn start_cluster() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    remove_stale_clusters();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let owner = run_as();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_user(&mut initdb, owner);
    let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    // The server must outlive every test, so it is spawned from a thread that
    // never exits: its parent-death signal then fires only when the test
    // process itself ends, and takes the cluster down with it.
    let (tx, rx) = mpsc::channel();
    let postgres = bin.join("postgres");
    std::thread::spawn(move || {
        let result = spawn_server(&postgres, &data, &dir, port, owner);
        let _ = tx.send(result);
        loop {
            std::thread::park();
        }
    });
    rx.recv().map_err(|e| e.to_string())??;
    Ok(Cluster { port })
}

fn spawn_server(
    postgres: &Path,
    data: &Path,
    socket_dir: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let mut command = Command::new(postgres);
    command
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(socket_dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=300", "-c", "logging_collector=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_user(&mut command, owner);
    // SIGQUIT: immediate shutdown; backends notice and exit too.
    kill_with_parent(&mut command, libc::SIGQUIT);
    let mut child = command.spawn().map_err(|e| format!("postgres: {e}"))?;
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.map_err(|e| e.to_string())?;
        if line.contains("ready to accept connections") {
            std::thread::spawn(move || lines.for_each(drop));
            std::mem::forget(child);
            return Ok(());
        }
    }
    Err("postgres exited before accepting connections".into())
}

const DIR_PREFIX: &str = "redis-cache-test-pg-";

/// Clusters of test processes that have ended (their server died with them).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn as_user(command: &mut Command, owner: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
}
