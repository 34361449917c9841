//! Our glob matcher against Redis' own: for random patterns over a small
//! alphabet full of special characters, the keys we say match are exactly
//! the keys `SCAN … MATCH` returns.

use std::collections::BTreeSet;

use redis_cache::cache::glob_matches;

use crate::helpers::Redis;

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn string(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
        let len = self.next() % (max_len + 1);
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}

#[tokio::test]
async fn matches_exactly_what_redis_scan_matches() {
    let redis = Redis::start();
    let mut conn = redis.conn().await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let key_alphabet = b"ab-]^\\\\*?[";
    let mut keys = BTreeSet::new();
    while keys.len() < 300 {
        let key = rng.string(key_alphabet, 4);
        if !key.is_empty() {
            keys.insert(key);
        }
    }
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("SET").arg(key).arg(1).ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();

    let pattern_alphabet = b"ab*?[]^-\\\\";
    for _ in 0..2000 {
        let pattern = rng.string(pattern_alphabet, 8);
        let (_, from_redis): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(100_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let from_redis: BTreeSet<Vec<u8>> = from_redis.into_iter().collect();
        let ours: BTreeSet<Vec<u8>> = keys
            .iter()
            .filter(|key| glob_matches(&pattern, key))
            .cloned()
            .collect();
        let show = |set: BTreeSet<&Vec<u8>>| -> Vec<String> {
            set.into_iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect()
        };
        assert!(
            ours == from_redis,
            "pattern {:?}: only ours {:?}, only redis {:?}",
            String::from_utf8_lossy(&pattern),
            show(ours.difference(&from_redis).collect()),
            show(from_redis.difference(&ours).collect()),
        );
    }
}
