use super::*;
use proptest::prelude::*;

fn split(additional: &[u8]) -> Split {
    Split::new(additional, Arc::new(AtomicU64::new(0)))
}

fn counts(picks: &[Slot], slots: usize) -> Vec<usize> {
    let mut counts = vec![0; slots];
    for pick in picks {
        counts[*pick as usize] += 1;
    }
    counts
}

#[test]
fn ninety_ten_is_exact_per_hundred_and_spread_out() {
    let s = split(&[10]);
    let picks: Vec<Slot> = (0..100).map(|_| s.next().0).collect();
    assert_eq!(counts(&picks, 2), vec![90, 10]);
    // Spread: never two canary picks within 5 requests of each other.
    let positions: Vec<usize> = picks.iter().enumerate().filter(|(_, p)| **p == 1).map(|(i, _)| i).collect();
    assert!(positions.windows(2).all(|w| w[1] - w[0] >= 5), "{positions:?}");
}

#[test]
fn no_additional_version_always_picks_the_primary() {
    let s = split(&[]);
    assert!((0..250).all(|_| s.next().0 == 0));
    assert!((0..250u32).all(|k| s.for_key(&k.to_le_bytes()) == 0));
}

#[test]
fn full_weight_moves_everything_to_the_additional_version() {
    let s = split(&[100]);
    assert!((0..250).all(|_| s.next().0 == 1));
}

#[test]
fn sticky_key_is_stable_and_matches_a_known_vector() {
    let s = split(&[50]);
    assert_eq!(s.for_key(b"user-42"), s.for_key(b"user-42"));
    // Pinned: the bucket of a key must never change between releases or replicas.
    assert_eq!(bucket_of(b"user-42"), (xxhash_rust::xxh3::xxh3_64(b"user-42") % 100) as usize);
    assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
}

#[test]
fn a_shared_cursor_continues_the_cycle_across_tables() {
    let cursor = Arc::new(AtomicU64::new(0));
    let first = Split::new(&[10], cursor.clone());
    let mut picks: Vec<Slot> = (0..37).map(|_| first.next().0).collect();
    let second = Split::new(&[10], cursor);
    picks.extend((0..63).map(|_| second.next().0));
    assert_eq!(counts(&picks, 2), vec![90, 10]);
}

proptest! {
    /// Any 100 consecutive picks hold each slot exactly its weight, from any start.
    #[test]
    fn every_window_of_a_hundred_is_exact(
        weights in proptest::collection::vec(1u8..=100, 0..4)
            .prop_filter("sum at most 100", |w| w.iter().map(|x| u32::from(*x)).sum::<u32>() <= 100),
        start in 0u64..10_000,
    ) {
        let s = Split::new(&weights, Arc::new(AtomicU64::new(start)));
        let picks: Vec<Slot> = (0..100).map(|_| s.next().0).collect();
        let got = counts(&picks, weights.len() + 1);
        let extra: usize = weights.iter().map(|w| *w as usize).sum();
        prop_assert_eq!(got[0], 100 - extra);
        for (k, w) in weights.iter().enumerate() {
            prop_assert_eq!(got[k + 1], *w as usize);
        }
    }

    /// Over any number of requests, each slot's count is within 1 of its exact share.
    #[test]
    fn every_prefix_is_within_one(weight in 1u8..=99, n in 1usize..400) {
        let s = split(&[weight]);
        let picks: Vec<Slot> = (0..n).map(|_| s.next().0).collect();
        let canary = counts(&picks, 2)[1] as f64;
        let ideal = n as f64 * f64::from(weight) / 100.0;
        prop_assert!((canary - ideal).abs() <= 1.0, "n={} canary={} ideal={}", n, canary, ideal);
    }

    /// Raising the weight never moves a sticky user back to the primary.
    #[test]
    fn sticky_is_monotonic_in_the_weight(low in 1u8..=99, raise in 1u8..=99, key in any::<u64>()) {
        let high = low.saturating_add(raise).min(100);
        let before = split(&[low]).for_key(&key.to_le_bytes());
        let after = split(&[high]).for_key(&key.to_le_bytes());
        prop_assert!(!(before == 1 && after == 0));
    }

    /// Sticky buckets give each version its share of the 100 buckets exactly.
    #[test]
    fn sticky_buckets_follow_the_weights(weight in 0u8..=100) {
        let s = split(if weight == 0 { &[] } else { std::slice::from_ref(&weight) });
        let in_canary = s.plan.buckets.iter().filter(|b| **b == 1).count();
        prop_assert_eq!(in_canary, weight as usize);
    }
}

#[test]
fn splits_of_equal_weights_share_one_plan_and_keep_their_own_cursors() {
    let mut plans = Plans::default();
    let first = plans.split(&[10], Arc::new(AtomicU64::new(0)));
    let second = plans.split(&[10], Arc::new(AtomicU64::new(5)));
    let other = plans.split(&[20], Arc::new(AtomicU64::new(0)));
    assert!(Arc::ptr_eq(&first.plan, &second.plan));
    assert!(!Arc::ptr_eq(&first.plan, &other.plan));
    let alone = Split::new(&[10], Arc::new(AtomicU64::new(0)));
    assert_eq!(first.plan.schedule, alone.plan.schedule);
    assert_eq!(first.plan.buckets, alone.plan.buckets);
    let picks = |split: &Split| (0..100).map(|_| split.next().0).collect::<Vec<_>>();
    assert_ne!(picks(&first)[..5], picks(&second)[..5], "each alias rotates from its own position");
    assert_eq!(picks(&other).iter().filter(|s| **s == 1).count(), 20);
}
