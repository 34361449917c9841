//! The Prometheus text exposition format (0.0.4), written by hand: families
//! with `# HELP` and `# TYPE`, samples with escaped label values, and
//! lock-free histograms with fixed buckets. Shared by `redis-cache` and
//! `cache-probe`, whose registries own their series and label sets.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed buckets; lock-free to record.
pub struct Histogram {
    bounds: &'static [f64],
    /// The same bounds in nanoseconds: observations are durations, and a
    /// bucket is found with integer comparisons.
    bounds_ns: Box<[u64]>,
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let nanos = nanos(value);
        self.counts[self.bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// [`Histogram::observe`], for a histogram that one thread alone
    /// observes (others only read it): plain loads and stores instead of
    /// locked read-modify-writes, several times cheaper. Observations made
    /// from two threads at once could be lost.
    pub fn observe_from_one_thread(&self, value: Duration) {
        let nanos = nanos(value);
        add_from_one_thread(&self.counts[self.bucket(nanos)], 1);
        add_from_one_thread(&self.sum_nanos, nanos);
    }

    fn bucket(&self, nanos: u64) -> usize {
        self.bounds_ns
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(self.bounds_ns.len())
    }

    /// Cumulative counts per upper bound (`None`: `+Inf`), and the sum.
    fn read(&self) -> (Vec<(Option<f64>, u64)>, f64) {
        let mut cumulative = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (self.bounds.get(i).copied(), cumulative)
            })
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (buckets, sum)
    }
}

/// Adds `n` to a counter that one thread alone writes (others only read
/// it), without a locked read-modify-write; see
/// [`Histogram::observe_from_one_thread`].
pub fn add_from_one_thread(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

fn nanos(value: Duration) -> u64 {
    u64::try_from(value.as_nanos()).unwrap_or(u64::MAX)
}

/// A text exposition being written: `# HELP`/`# TYPE` lines and samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// A family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value as f64);
    }

    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let (buckets, sum) = histogram.read();
        self.histogram_from(name, labels, &buckets, sum);
    }

    /// A histogram from cumulative `(upper bound, count)` pairs, the last one
    /// `+Inf` (`None`).
    pub fn histogram_from(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[(Option<f64>, u64)],
        sum: f64,
    ) {
        let count = buckets.last().map_or(0, |(_, n)| *n);
        for (bound, cumulative) in buckets {
            let le = bound.map_or("+Inf".to_owned(), number);
            let _ = write!(self.text, "{name}_bucket");
            write_labels(&mut self.text, labels, Some(&le));
            let _ = writeln!(self.text, " {cumulative}");
        }
        let _ = write!(self.text, "{name}_sum");
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", number(sum));
        let _ = write!(self.text, "{name}_count");
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {count}");
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        static BOUNDS: [f64; 2] = [0.001, 0.01];
        let histogram = Histogram::new(&BOUNDS);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(1));
        let mut out = Exposition::default();
        out.histogram("h", &[("a", "b")], &histogram);
        let text = out.finish();
        assert!(text.contains("h_bucket{a=\"b\",le=\"0.001\"} 1\n"));
        assert!(text.contains("h_bucket{a=\"b\",le=\"0.01\"} 2\n"));
        assert!(text.contains("h_bucket{a=\"b\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("h_count{a=\"b\"} 3\n"));
    }

    #[test]
    fn one_threads_observations_land_where_shared_ones_do() {
        static BOUNDS: [f64; 3] = [0.000025, 0.001, 0.01];
        let (shared, single) = (Histogram::new(&BOUNDS), Histogram::new(&BOUNDS));
        for micros in [1, 25, 26, 999, 1000, 5000, 20_000] {
            shared.observe(Duration::from_micros(micros));
            single.observe_from_one_thread(Duration::from_micros(micros));
        }
        assert_eq!(shared.read(), single.read());
        let (buckets, _) = single.read();
        assert_eq!(
            buckets,
            vec![
                (Some(0.000025), 2),
                (Some(0.001), 5),
                (Some(0.01), 6),
                (None, 7)
            ],
            "a bound is inclusive"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("x", &[("a", "q\"b\\c\nd")], 1.0);
        assert_eq!(out.finish(), "x{a=\"q\\\"b\\\\c\\nd\"} 1\n");
    }
}
