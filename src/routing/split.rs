//! Weighted choice between an alias's versions: an exact rotation and sticky buckets.
//!
//! Weights are percentages, so one cycle is 100 requests. The rotation is nginx's smooth
//! weighted round-robin unrolled once at compile time into a 100-slot schedule: every
//! window of 100 consecutive requests holds each version exactly its weight, and the
//! picks are spread out (10 % means every tenth request, not ten in a row). Sticky
//! routing hashes a user key into one of 100 buckets instead; the additional versions own
//! the lowest buckets in order, so raising a weight only moves users onto that version.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

/// One cycle of the rotation, in requests (weights are percentages).
pub const CYCLE: usize = 100;

/// Slot 0 is the alias's own version; slot k ≥ 1 is its k-th additional version.
pub type Slot = u8;

/// A compiled split: the shared plan for its weights and this alias's own cursor.
#[derive(Debug)]
pub struct Split {
    plan: Arc<Plan>,
    /// Shared with the previous table of the same alias, so a reload does not restart
    /// the cycle (and skew the split) on every config change.
    cursor: Arc<AtomicU64>,
}

/// The rotation schedule and sticky bucket map of one set of weights.
#[derive(Debug)]
struct Plan {
    schedule: [Slot; CYCLE],
    buckets: [Slot; CYCLE],
}

/// Plans built during one compilation, by weights. Thousands of aliases share a handful
/// of splits (90/10, 50/50, …): each is computed and stored once, not once per alias.
#[derive(Debug, Default)]
pub struct Plans(FxHashMap<Box<[u8]>, Arc<Plan>>);

// === impl Split ===

impl Split {
    /// A split with its own plan (compilation shares plans through [`Plans`]).
    #[cfg(test)]
    pub fn new(additional: &[u8], cursor: Arc<AtomicU64>) -> Self {
        Split { plan: Arc::new(Plan::new(additional)), cursor }
    }

    /// The next slot of the rotation, and its position in the cycle.
    #[inline]
    pub fn next(&self) -> (Slot, u8) {
        let position = (self.cursor.fetch_add(1, Ordering::Relaxed) % CYCLE as u64) as usize;
        (self.plan.schedule[position], position as u8)
    }

    /// The slot for a sticky key: the same key always lands in the same bucket.
    #[inline]
    pub fn for_key(&self, key: &[u8]) -> Slot {
        self.for_bucket(bucket_of(key))
    }

    /// The slot that owns a sticky bucket (0..100).
    #[inline]
    pub fn for_bucket(&self, bucket: usize) -> Slot {
        self.plan.buckets[bucket % CYCLE]
    }

    pub fn cursor(&self) -> &Arc<AtomicU64> {
        &self.cursor
    }
}

// === impl Plan ===

impl Plan {
    /// `additional` holds the weight of slots 1..; slot 0 gets the rest of 100.
    /// The caller has validated that the weights sum to at most 100.
    fn new(additional: &[u8]) -> Self {
        let mut weights = Vec::with_capacity(additional.len() + 1);
        let extra: u32 = additional.iter().map(|w| u32::from(*w)).sum();
        weights.push(CYCLE as u32 - extra.min(CYCLE as u32));
        weights.extend(additional.iter().map(|w| u32::from(*w)));
        Plan { schedule: smooth_schedule(&weights), buckets: bucket_map(&weights) }
    }
}

// === impl Plans ===

impl Plans {
    /// A split with these weights (see [`Plan::new`]), its plan shared with earlier ones.
    pub fn split(&mut self, additional: &[u8], cursor: Arc<AtomicU64>) -> Split {
        let plan = match self.0.get(additional) {
            Some(plan) => Arc::clone(plan),
            None => {
                let plan = Arc::new(Plan::new(additional));
                self.0.insert(additional.into(), Arc::clone(&plan));
                plan
            }
        };
        Split { plan, cursor }
    }
}

/// The bucket (0..100) of a sticky key. xxh3 with seed 0 is a specified, portable hash:
/// every replica and every release puts one key in one bucket.
#[inline]
pub fn bucket_of(key: &[u8]) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) % CYCLE as u64) as usize
}

/// Smooth weighted round-robin over one cycle of 100 picks.
fn smooth_schedule(weights: &[u32]) -> [Slot; CYCLE] {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = [0; CYCLE];
    if total == 0 {
        return schedule;
    }
    for pick in schedule.iter_mut() {
        let mut best = 0;
        for (slot, weight) in weights.iter().enumerate() {
            current[slot] += i64::from(*weight);
            if current[slot] > current[best] {
                best = slot;
            }
        }
        current[best] -= total;
        *pick = best as Slot;
    }
    schedule
}

/// Buckets [0, w1) go to slot 1, the next w2 to slot 2, …; the remainder to slot 0.
fn bucket_map(weights: &[u32]) -> [Slot; CYCLE] {
    let mut buckets = [0; CYCLE];
    let mut next = 0usize;
    for (slot, weight) in weights.iter().enumerate().skip(1) {
        for bucket in buckets.iter_mut().skip(next).take(*weight as usize) {
            *bucket = slot as Slot;
        }
        next += *weight as usize;
    }
    buckets
}

#[cfg(test)]
mod tests;
