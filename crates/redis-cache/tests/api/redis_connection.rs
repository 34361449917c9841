//! Reaching Redis the ways users configure it: ACL users in the URL, the
//! original's REDIS_ADDR + REDIS_PASSWORD, and TLS.

use reqwest::StatusCode;

use redis_cache::config::{RedisTarget, RedisTls};

use crate::helpers::RedisOptions;
use crate::helpers::{Backend, Redis, TestApp, header};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// An app on its own SQLite database, pointed at `redis` with `configure`.
async fn app_on(
    redis: Redis,
    configure: impl FnOnce(&mut redis_cache::Config) + Send + 'static,
) -> TestApp {
    TestApp::builder(Backend::Sqlite)
        .with_redis(redis)
        .config(configure)
        .without_waiting_for_cache()
        .spawn()
        .await
}

async fn caches(app: &TestApp) -> bool {
    app.get_item("1").await;
    header(&app.get_item("1").await, "x-cache-status") == Some("HIT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_from_the_url_is_used() {
    let redis = Redis::start_with(RedisOptions {
        extra_args: args(&[
            "--user",
            "cache-svc",
            "on",
            ">pa55-word",
            "~item:*",
            "&cache:invalidate",
            "+@all",
        ]),
        ..RedisOptions::default()
    });
    let url = format!("redis://cache-svc:pa55-word@127.0.0.1:{}", redis.port());
    let app = app_on(redis, move |c| {
        c.redis.target = RedisTarget::from_url(&url).unwrap();
    })
    .await;
    app.wait_until_cache_ready().await;
    assert!(caches(&app).await);
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut app.redis.conn().await)
        .await
        .unwrap();
    assert!(clients.contains("user=cache-svc"), "{clients}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_redis_addr_and_password_are_honoured_and_never_leaked() {
    let redis = Redis::start_with(RedisOptions {
        extra_args: args(&["--requirepass", "right-pass"]),
        password: Some("right-pass".into()),
        ..RedisOptions::default()
    });
    let addr = format!("127.0.0.1:{}", redis.port());
    let target = move |password: &str| RedisTarget::from_addr(&addr, Some(password)).unwrap();
    let right = target("right-pass");
    let app = app_on(redis, move |c| c.redis.target = right).await;
    app.wait_until_cache_ready().await;
    assert!(caches(&app).await);

    let wrong = target("wrong-pass");
    let refused = app
        .peer()
        .config(move |c| c.redis.target = wrong)
        .without_waiting_for_cache()
        .spawn()
        .await;
    let response = refused.get_item("1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-cache-status"), Some("BYPASS"));
    let (status, health) = refused.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "degraded");
    assert!(!health.to_string().contains("-pass"), "{health}");
}

/// PEM files of a test CA, a Redis server certificate for 127.0.0.1 and a
/// client certificate, all signed by that CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        // Distinct subject names: OpenSSL takes a certificate whose subject
        // equals its issuer for a self-signed one.
        let named = |sans: Vec<String>, name: &str| {
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params
        };
        let mut ca_params = named(Vec::new(), "redis-cache test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca.pem());
        for (name, san) in [("server", "127.0.0.1"), ("client", "cache-client")] {
            let key = KeyPair::generate().unwrap();
            let cert = named(vec![san.to_owned()], san)
                .signed_by(&key, &ca)
                .unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn tls_redis(pki: &Pki) -> Redis {
    let path = |name: &str| pki.path(name).display().to_string();
    Redis::start_with(RedisOptions {
        extra_args: vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            "{port}".into(),
            "--tls-cert-file".into(),
            path("server.pem"),
            "--tls-key-file".into(),
            path("server-key.pem"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            "yes".into(),
        ],
        tls: true,
        ..RedisOptions::default()
    })
}

fn tls_config(pki: &Pki, ca: bool, client_cert: bool) -> RedisTls {
    let read = |name: &str| std::fs::read(pki.path(name)).unwrap();
    RedisTls {
        root_cert: ca.then(|| read("ca.pem")),
        client: client_cert.then(|| (read("client.pem"), read("client-key.pem"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_private_ca() {
    let pki = Pki::new();
    let redis = tls_redis(&pki);
    let port = redis.port();
    let url = format!("rediss://127.0.0.1:{port}");
    let target = RedisTarget::from_url(&url).unwrap();
    let tls = tls_config(&pki, true, true);
    let app = app_on(redis, {
        let target = target.clone();
        move |c| {
            c.redis.target = target;
            c.redis.tls = Some(tls);
        }
    })
    .await;
    app.wait_until_cache_ready().await;
    assert!(caches(&app).await);

    // Without our CA the server certificate is not trusted; without a client
    // certificate the server refuses us. Both degrade, neither fails.
    for (ca, client_cert) in [(false, true), (true, false)] {
        let tls = tls_config(&pki, ca, client_cert);
        let target = target.clone();
        let refused = app
            .peer()
            .config(move |c| {
                c.redis.target = target;
                c.redis.tls = Some(tls);
            })
            .without_waiting_for_cache()
            .spawn()
            .await;
        let (status, health) = refused.health().await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            health["redis"], "disconnected",
            "ca={ca} client_cert={client_cert}"
        );
        assert_eq!(
            header(&refused.get_item("1").await, "x-cache-status"),
            Some("BYPASS")
        );
    }
}
