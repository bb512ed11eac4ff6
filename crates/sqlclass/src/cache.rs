//! `Classifier`: the shared, bounded, sharded classification cache.
//!
//! Keyed by the FULL fingerprint string, never by a hash alone: a hash
//! collision must not hand a DDL statement a cached "read". The hash only
//! picks the shard. Each shard is an `RwLock<HashMap>` so hits from many
//! threads share read locks, and there are up to 64 shards so writers to
//! different shapes rarely meet. Hit/miss counters live per shard (padded to
//! a cache line) so 256 threads do not fight over one counter.
//!
//! Only parsable text is cached. Text the parser refuses can still hit the
//! entry of a valid statement of the same shape (`DO 1` and `DO 'x'` both
//! read `do ?`); that is harmless because the server refuses it as well.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::{Classification, classify, fingerprint};

/// Statements longer than this are classified without the cache: keys this
/// big would crowd out the many small shapes that make up the hot path.
pub const MAX_CACHED_LEN: usize = 16 * 1024;

const MAX_SHARDS: usize = 64;

#[repr(align(64))]
struct Shard {
    map: RwLock<HashMap<Box<str>, Arc<Classification>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Thread-safe classifier shared by all sessions.
pub struct Classifier {
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: RandomState,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (hits, misses) = self.stats();
        f.debug_struct("Classifier")
            .field("capacity", &(self.per_shard * self.shards.len()))
            .field("len", &self.len())
            .field("hits", &hits)
            .field("misses", &misses)
            .finish()
    }
}

impl Classifier {
    /// A classifier caching at most `capacity` shapes (0: no caching).
    pub fn new(capacity: usize) -> Self {
        // Power-of-two shard count no larger than capacity, so that
        // shards * per_shard <= capacity always holds.
        let mut shards = 1;
        while shards * 2 <= capacity.min(MAX_SHARDS) {
            shards *= 2;
        }
        let per_shard = capacity / shards;
        let shards = (0..shards)
            .map(|_| Shard {
                map: RwLock::new(HashMap::new()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            })
            .collect();
        Classifier {
            shards,
            per_shard,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key) as usize;
        // shards.len() is a power of two and at least 1.
        &self.shards[h & (self.shards.len() - 1)]
    }

    /// Classifies `sql`; a shape seen before costs a fingerprint and a lookup.
    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        // A NUL byte makes the text unparsable (and unsendable over the wire
        // protocol), yet the lexer would drop it inside a comment: never let
        // such text borrow a valid statement's cache entry.
        if sql.len() > MAX_CACHED_LEN || self.per_shard == 0 || sql.contains('\0') {
            // Still a parse, so still a miss.
            if let Some(s) = self.shards.first() {
                s.misses.fetch_add(1, Ordering::Relaxed);
            }
            return Arc::new(classify(sql));
        }
        let key = fingerprint(sql);
        let shard = self.shard(&key);
        {
            let map = shard.map.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(key.as_str()) {
                shard.hits.fetch_add(1, Ordering::Relaxed);
                return Arc::clone(c);
            }
        }
        shard.misses.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(classify(sql));
        // Unparsable text is not cached: its error message quotes the text
        // (a literal from one session must never show up in another's), and
        // garbage is not the hot path.
        if c.error.is_none() {
            let mut map = shard.map.write().unwrap_or_else(|e| e.into_inner());
            if map.len() >= self.per_shard && !map.contains_key(key.as_str()) {
                // Evict one arbitrary entry: cheap, and the hash order makes
                // it effectively random.
                if let Some(victim) = map.keys().next().cloned() {
                    map.remove(&victim);
                }
            }
            map.insert(key.into_boxed_str(), Arc::clone(&c));
        }
        c
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(h, m), s| {
            (h + s.hits.load(Ordering::Relaxed), m + s.misses.load(Ordering::Relaxed))
        })
    }

    /// Number of cached shapes.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.map.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most shapes this classifier will hold.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}
