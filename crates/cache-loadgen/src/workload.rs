//! What each request does: the operation mix, and which item it is about
//! (uniformly, or skewed as real traffic is, with a Zipf law).

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// `GET /items/{id}`.
    Get,
    /// `PUT /items/{id}`: a partial update (stock and price).
    Put,
    /// `POST /items` of a new item.
    Create,
    /// `DELETE /items/{id}` of an item this run created (or, when none is
    /// left, of one that does not exist: the prepared items stay).
    Delete,
    /// `POST /items/batch` of `--batch-size` ids.
    Batch,
    /// `POST /cache/invalidate` of one key.
    InvalidateKey,
    /// `POST /cache/invalidate` of a pattern (the ids sharing a prefix).
    InvalidatePattern,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::Get,
        Op::Put,
        Op::Create,
        Op::Delete,
        Op::Batch,
        Op::InvalidateKey,
        Op::InvalidatePattern,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::Batch => "batch",
            Op::InvalidateKey => "invalidate-key",
            Op::InvalidatePattern => "invalidate-pattern",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the operations: `get=80,put=20` (the default).
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Cumulative weights, in [`Op::ALL`] order.
    cumulative: Vec<(Op, f64)>,
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let mut weights = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected operation=weight"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<_> = Op::ALL.iter().map(|op| op.name()).collect();
                    format!("unknown operation {name:?} (one of {})", names.join(", "))
                })?;
            let weight: f64 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| format!("{part:?}: the weight must be a number ≥ 0"))?;
            if weights.iter().any(|(seen, _)| *seen == op) {
                return Err(format!("{name} is given twice"));
            }
            weights.push((op, weight));
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return Err("the mix needs at least one operation with a weight above 0".into());
        }
        let mut running = 0.0;
        let cumulative = weights
            .into_iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(op, w)| {
                running += w / total;
                (op, running)
            })
            .collect();
        Ok(Mix { cumulative })
    }
}

impl Mix {
    pub fn pick(&self, rng: &mut impl Rng) -> Op {
        let u: f64 = rng.random();
        self.cumulative
            .iter()
            .find(|(_, edge)| u < *edge)
            .or(self.cumulative.last())
            .map(|(op, _)| *op)
            .expect("a mix has an operation")
    }

    /// Each operation's share, for the report.
    pub fn shares(&self) -> Vec<(Op, f64)> {
        let mut last = 0.0;
        self.cumulative
            .iter()
            .map(|(op, edge)| {
                let share = edge - last;
                last = *edge;
                (*op, share)
            })
            .collect()
    }
}

/// Which of the `keys` prepared items a request is about: index 0 is the
/// hottest under a Zipf law.
#[derive(Debug, Clone)]
pub enum Keys {
    Uniform(usize),
    /// The cumulative distribution of ranks, for a binary search.
    Zipf(Vec<f64>),
}

impl Keys {
    /// `exponent` 0 is uniform; 0.99 is the classic skew of caches' traffic.
    pub fn new(keys: usize, exponent: f64) -> Keys {
        if exponent <= 0.0 {
            return Keys::Uniform(keys);
        }
        let mut cumulative = Vec::with_capacity(keys);
        let mut total = 0.0;
        for rank in 1..=keys {
            total += 1.0 / (rank as f64).powf(exponent);
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Keys::Zipf(cumulative)
    }

    pub fn count(&self) -> usize {
        match self {
            Keys::Uniform(n) => *n,
            Keys::Zipf(cdf) => cdf.len(),
        }
    }

    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        match self {
            Keys::Uniform(n) => rng.random_range(0..*n),
            Keys::Zipf(cdf) => {
                let u: f64 = rng.random();
                cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
            }
        }
    }
}

/// The id of prepared item `index`.
pub fn item_id(index: usize) -> String {
    format!("lg-{index}")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn mixes_parse_and_pick_in_proportion() {
        let mix: Mix = "get=80,put=20".parse().unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let gets = (0..100_000)
            .filter(|_| mix.pick(&mut rng) == Op::Get)
            .count();
        assert!((79_000..81_000).contains(&gets), "{gets}");
        assert_eq!(mix.shares().len(), 2);
        for bad in [
            "",
            "get=0",
            "get=-1",
            "get",
            "brew=1",
            "get=1,get=2",
            "get=x",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} accepted");
        }
        let all: Mix =
            "get=1,put=1,create=1,delete=1,batch=1,invalidate-key=1,invalidate-pattern=1"
                .parse()
                .unwrap();
        assert_eq!(all.shares().len(), 7);
    }

    #[test]
    fn zipf_favours_the_first_keys_as_the_law_says() {
        let keys = Keys::new(1000, 0.99);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        let draws = 200_000;
        for _ in 0..draws {
            counts[keys.pick(&mut rng)] += 1;
        }
        // P(rank 1) = 1 / H(1000, 0.99) ≈ 0.134; rank 2 gets about half that.
        let first = f64::from(counts[0]) / draws as f64;
        assert!((0.125..0.145).contains(&first), "{first}");
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
        let uniform = Keys::new(1000, 0.0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            seen.insert(uniform.pick(&mut rng));
        }
        assert_eq!(seen.len(), 1000);
    }
}
