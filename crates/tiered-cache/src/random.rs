//! A uniform random number for jitter, without a dedicated RNG dependency.

/// Uniform in `[0, 1)`.
pub fn unit() -> f64 {
    // The low 62 bits of a v4 UUID are random (its version and variant bits
    // sit higher); 53 of them are exactly an f64 mantissa.
    const MANTISSA: u64 = 1 << 53;
    (uuid::Uuid::new_v4().as_u128() as u64 % MANTISSA) as f64 / MANTISSA as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn stays_in_the_unit_interval_and_varies() {
        let samples: Vec<f64> = (0..1000).map(|_| super::unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
