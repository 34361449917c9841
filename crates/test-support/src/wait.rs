//! Waiting for something to happen: poll a check until it holds, and fail
//! the test with what was awaited and the last state seen if it never does.
//! One policy; the async and the blocking loop differ only in how they
//! sleep between looks.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits: far beyond what anything takes on an idle
/// machine, so that only a real failure times out on a loaded one.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often a check is repeated.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, PATIENCE, || {
        let look = check();
        async move { if look.await { Ok(()) } else { Err("not yet") } }
    })
    .await
}

/// Polls `check` until it returns `Ok`, failing the test after `limit` with
/// the last state `check` reported.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F)
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), T>>,
{
    let deadline = Deadline::new(what, limit);
    while !deadline.passed(check().await) {
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually_within`] for tests without a runtime: sleeps the thread.
pub fn eventually_blocking<T: Debug>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<(), T>,
) {
    let deadline = Deadline::new(what, limit);
    while !deadline.passed(check()) {
        std::thread::sleep(POLL);
    }
}

struct Deadline<'a> {
    what: &'a str,
    at: Instant,
}

impl<'a> Deadline<'a> {
    fn new(what: &'a str, limit: Duration) -> Self {
        Self {
            what,
            at: Instant::now() + limit,
        }
    }

    /// Whether the check passed; panics if it did not and time is up.
    fn passed<T: Debug>(&self, outcome: Result<(), T>) -> bool {
        match outcome {
            Ok(()) => true,
            Err(state) if Instant::now() >= self.at => {
                panic!(
                    "timed out waiting for {}; last state: {state:#?}",
                    self.what
                )
            }
            Err(_) => false,
        }
    }
}
