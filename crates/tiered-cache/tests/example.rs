//! The crate's example, run as its README says, against a `redis-server`
//! of the test's own: it checks its own answers (a miss, a near-cache hit,
//! a write seen by the next read) and fails otherwise.

use std::path::PathBuf;
use std::process::Command;

use test_support::Redis;

/// Where cargo puts this package's examples: `examples/` beside `deps/`,
/// where this test runs from (`cargo test` builds the examples first).
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .expect("the test's own path")
        .parent()
        .expect("deps/")
        .to_path_buf();
    deps.parent()
        .expect("the profile's directory")
        .join("examples")
        .join(name)
}

#[test]
fn the_profiles_example_runs_against_a_local_redis() {
    let redis = Redis::start();
    let output = Command::new(example("profiles"))
        .env("REDIS_URL", redis.url())
        .output()
        .expect("the example runs (cargo test builds it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("HIT from L1"), "{stdout}");
    assert!(
        stdout.contains("after the write: Some(\"Ada Lovelace\")"),
        "{stdout}"
    );
}
