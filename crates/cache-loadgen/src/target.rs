//! The service under load: its base URL, refused when it is not on this
//! machine unless `--allow-remote` says so (a load test aimed at the wrong
//! host is an attack).

use std::net::IpAddr;

use anyhow::{Context, bail};
use reqwest::Url;

/// A checked base URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    base: String,
}

impl Target {
    pub async fn parse(raw: &str, allow_remote: bool) -> anyhow::Result<Target> {
        let url = Url::parse(raw).with_context(|| format!("--target {raw:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--target {raw:?}: only http and https are supported");
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("--target {raw:?}: give the service's base URL, without a query");
        }
        let host = url
            .host_str()
            .with_context(|| format!("--target {raw:?} has no host"))?;
        if !allow_remote && !is_loopback(host, url.port_or_known_default().unwrap_or(80)).await {
            bail!("--target {raw:?} is not this machine; pass --allow-remote to load another host");
        }
        Ok(Target {
            base: url.as_str().trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Whether every address `host` resolves to is a loopback address.
async fn is_loopback(host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addresses) => {
            let addresses: Vec<_> = addresses.collect();
            !addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_this_machine_unless_allowed() {
        for local in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            let target = Target::parse(local, false).await.unwrap();
            assert!(!target.base().ends_with('/'));
        }
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/", false)
                .await
                .unwrap()
                .url("/items/1"),
            "http://127.0.0.1:8080/items/1"
        );
        for remote in ["http://10.1.2.3:8080", "http://192.0.2.1"] {
            let refused = Target::parse(remote, false).await.unwrap_err();
            assert!(refused.to_string().contains("--allow-remote"), "{refused}");
            assert!(Target::parse(remote, true).await.is_ok());
        }
        for bad in ["127.0.0.1:8080", "ftp://127.0.0.1", "http://127.0.0.1/?a=1"] {
            assert!(Target::parse(bad, true).await.is_err(), "{bad}");
        }
    }
}
