//! `redis-cache healthcheck`: asks a running instance on this machine
//! whether it is ready, for container health checks in images without a
//! shell or curl. Exit status 0 when `GET /readyz` (or `--path`) answers
//! 200 within two seconds, 1 otherwise.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// `args`: what follows `healthcheck` on the command line: `--port N`
/// (default `SERVER_PORT`, else 8080) and `--path P` (default `/readyz`).
pub fn run(args: &[String]) -> ExitCode {
    match check(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("redis-cache healthcheck: {why}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &[String]) -> Result<(), String> {
    let mut port = std::env::var("SERVER_PORT")
        .ok()
        .unwrap_or_else(|| "8080".into());
    let mut path = "/readyz".to_owned();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.clone(),
            "--path" if value.starts_with('/') => path = value.clone(),
            _ => return Err(format!("unknown option {flag} (--port N, --path /readyz)")),
        }
    }
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or_default();
    if status == "200" {
        Ok(())
    } else {
        Err(format!("{path} answered {status:?}"))
    }
}
