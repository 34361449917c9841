//! Live progress on stderr: on a terminal, one line redrawn every second
//! with a bar, the rate of the last second, its p99 and the errors so far;
//! otherwise a plain line every five seconds.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::report::Outcome;

pub struct Progress {
    started: Instant,
    total: Duration,
    terminal: bool,
    done: AtomicU64,
    errors: AtomicU64,
    /// Latencies since the last line, in microseconds.
    window: Mutex<Histogram<u64>>,
}

impl Progress {
    pub fn new(total: Duration) -> Progress {
        Progress {
            started: Instant::now(),
            total,
            terminal: std::io::stderr().is_terminal(),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            window: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds"),
            ),
        }
    }

    pub fn record(&self, latency: Duration, outcome: &Outcome) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let failed = match outcome {
            Outcome::Failed(_) => true,
            Outcome::Answered { status, .. } => *status >= 500,
        };
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(micros.clamp(1, 600_000_000));
    }

    /// Prints until aborted.
    pub async fn run(&self) {
        let every = if self.terminal {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        let mut last_done = 0;
        loop {
            tick.tick().await;
            let done = self.done.load(Ordering::Relaxed);
            let rate = (done - last_done) as f64 / every.as_secs_f64();
            last_done = done;
            let p99_ms = {
                let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
                let p99 = window.value_at_quantile(0.99) as f64 / 1000.0;
                window.reset();
                p99
            };
            self.line(rate, p99_ms);
        }
    }

    fn line(&self, rate: f64, p99_ms: f64) {
        let elapsed = self.started.elapsed().min(self.total);
        let fraction = elapsed.as_secs_f64() / self.total.as_secs_f64().max(1e-9);
        let errors = self.errors.load(Ordering::Relaxed);
        let text = format!(
            "{:>5.1}/{:.0} s  {rate:>9.1} req/s  p99 {p99_ms:>8.3} ms  errors {errors}",
            elapsed.as_secs_f64(),
            self.total.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = (fraction * 30.0).round() as usize;
            let _ = write!(
                err,
                "\r[{}{}] {text}",
                "#".repeat(filled),
                ".".repeat(30 - filled.min(30))
            );
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}
