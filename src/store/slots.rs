//! Where a name's count lives: the key it belongs to, and the hash slot of that key. Pure
//! functions, tested against the published vectors.
//!
//! Standalone Redis keeps every name in one sorted set, `REDIS_KEY` (`nytimes.names`, so the
//! original's data and readers carry on). A cluster shards by hash slot, and one key is one
//! slot, so one shard: there the names are spread over a family of `REDIS_KEY_SHARDS` keys,
//! `nytimes.names:{0}` … `nytimes.names:{63}`, each with a hash tag of its own, a name's key
//! chosen by a stable hash of the name. The family is fixed for the life of the data and far
//! larger than the number of shards, so that Redis can move slots between shards without the
//! service hashing anything again.

/// Hash slots of a Redis cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection), as the Redis
/// cluster specification defines the key hash.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = match crc & 0x8000 {
                0 => crc << 1,
                _ => (crc << 1) ^ 0x1021,
            };
        }
    }
    crc
}

/// The hash slot of `key`: only the part between the first `{` and the first `}` after it is
/// hashed, when that part is not empty (a hash tag); otherwise the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// FNV-1a, 64 bits: the stable hash that picks a name's key. Written down here, never to
/// change: a name must stay in the key that holds its count.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The keys the names live in, each with its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFamily {
    keys: Vec<String>,
    slots: Vec<u16>,
}

impl KeyFamily {
    /// The one key of standalone Redis.
    pub fn single(key: &str) -> KeyFamily {
        KeyFamily {
            keys: vec![key.to_owned()],
            slots: vec![key_slot(key.as_bytes())],
        }
    }

    /// `shards` keys named after `base`, `base:{i}`: the hash tag of each is its number alone,
    /// so `base` may hold any character but braces. At least one.
    pub fn spread(base: &str, shards: u16) -> KeyFamily {
        let keys: Vec<String> = (0..shards.max(1))
            .map(|i| format!("{base}:{{{i}}}"))
            .collect();
        let slots = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
        KeyFamily { keys, slots }
    }

    pub fn size(&self) -> usize {
        self.keys.len()
    }

    /// The index of the key that holds the count of the name whose bytes are `name`.
    pub fn key_of(&self, name: &[u8]) -> usize {
        match self.keys.len() {
            1 => 0,
            n => (fnv1a(name) % n as u64) as usize,
        }
    }

    pub fn key(&self, index: usize) -> &str {
        &self.keys[index]
    }

    pub fn slot(&self, index: usize) -> u16 {
        self.slots[index]
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_the_xmodem_variant_of_the_cluster_specification() {
        // The check value the Redis cluster specification gives for its CRC16.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn key_slots_match_the_ones_redis_documents() {
        // CLUSTER KEYSLOT's documented examples.
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"bar{hash_tag}"), 2515);
        // The cluster specification's hash tag rules.
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag: the whole key is hashed.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        // From the first { to the first } after it.
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // No closing brace: the whole key.
        assert_eq!(key_slot(b"foo{bar"), crc16(b"foo{bar") % SLOTS);
    }

    #[test]
    fn fnv1a_gives_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_standalone_family_is_the_one_key() {
        let family = KeyFamily::single("nytimes.names");
        assert_eq!(family.size(), 1);
        assert_eq!(family.key(family.key_of(b"Bob")), "nytimes.names");
        assert_eq!(family.slot(0), key_slot(b"nytimes.names"));
    }

    #[test]
    fn a_spread_family_tags_each_key_with_its_number_and_fixes_each_name_in_one() {
        let family = KeyFamily::spread("nytimes.names", 64);
        assert_eq!(family.size(), 64);
        assert_eq!(family.key(0), "nytimes.names:{0}");
        assert_eq!(family.key(63), "nytimes.names:{63}");
        assert_eq!(family.slot(7), key_slot(b"7"));
        // Stable: fixed by the hash above, whatever the process.
        assert_eq!(family.key_of(b"Bob"), (0x16566419b10316b4u64 % 64) as usize);
        // Spread: 64,000 names fill every key, none far from its share.
        let mut per_key = [0u32; 64];
        for i in 0..64_000 {
            per_key[family.key_of(format!("name-{i}").as_bytes())] += 1;
        }
        assert!(
            per_key.iter().all(|n| (800..1200).contains(n)),
            "{per_key:?}"
        );
        // The slots fall on different shards: 64 keys, 64 slots.
        let mut slots: Vec<u16> = (0..64).map(|i| family.slot(i)).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 64);
    }
}
