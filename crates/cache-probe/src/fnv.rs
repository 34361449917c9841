//! The hasher of the probe's hot maps (sockets by cookie, command names,
//! series by name): FNV-1a, a few instructions per byte where the standard
//! SipHash, built to resist chosen keys, costs tens of nanoseconds. Keys are
//! socket cookies and command names, neither chosen by a peer in a way that
//! could degrade a map beyond its few thousand entries.

#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn write_u64(&mut self, n: u64) {
        // A cookie or an address: spread its bits (cookies count up from a
        // boot-time value).
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

pub type FastHash = std::hash::BuildHasherDefault<Fnv>;
