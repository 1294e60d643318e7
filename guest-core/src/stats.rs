//! Summary statistics of the cost experiments: min, median and 99th percentile by the
//! nearest-rank method ([`irqlab_abi::stats::nearest_rank`]), in integers only.

use irqlab_abi::stats::nearest_rank;

/// The summary of one experiment's samples (TSC cycles per iteration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The smallest sample.
    pub min: u32,
    /// The median (nearest rank, ties rounded up).
    pub median: u32,
    /// The 99th percentile (nearest rank).
    pub p99: u32,
}

impl Stats {
    /// Sorts `samples` in place and summarises them; `None` when there are none.
    pub fn of(samples: &mut [u32]) -> Option<Stats> {
        samples.sort_unstable();
        let n = samples.len();
        let at = |pct: u32| nearest_rank(n, pct).map(|i| samples[i]);
        Some(Stats {
            min: *samples.first()?,
            median: at(50)?,
            p99: at(99)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(samples: &[u32]) -> Option<Stats> {
        Stats::of(&mut samples.to_vec())
    }

    fn stats(min: u32, median: u32, p99: u32) -> Option<Stats> {
        Some(Stats { min, median, p99 })
    }

    #[test]
    fn no_samples_no_statistics() {
        assert_eq!(of(&[]), None);
    }

    #[test]
    fn one_sample_is_every_statistic() {
        assert_eq!(of(&[7]), stats(7, 7, 7));
        assert_eq!(of(&[0]), stats(0, 0, 0));
        assert_eq!(of(&[u32::MAX]), stats(u32::MAX, u32::MAX, u32::MAX));
    }

    #[test]
    fn odd_counts_take_the_middle() {
        assert_eq!(of(&[1, 2, 3]), stats(1, 2, 3));
        assert_eq!(of(&[10, 20, 30, 40, 50]), stats(10, 30, 50));
        // 101 samples 0..=100: median index 50, p99 index 99.
        let v: Vec<u32> = (0..=100).collect();
        assert_eq!(of(&v), stats(0, 50, 99));
    }

    #[test]
    fn even_counts_round_the_median_up() {
        // n = 2: index round(0.5) = 1; p99 index round(0.99) = 1.
        assert_eq!(of(&[4, 8]), stats(4, 8, 8));
        // n = 4: median index round(1.5) = 2, p99 index round(2.97) = 3.
        assert_eq!(of(&[1, 2, 3, 4]), stats(1, 3, 4));
        // n = 100: median index round(49.5) = 50, p99 index round(98.01) = 98.
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(of(&v), stats(1, 51, 99));
        // n = 200 (the guest's minimum is 100): median index 100, p99 index round(197.01) = 197.
        let v: Vec<u32> = (0..200).map(|i| i * 10).collect();
        assert_eq!(of(&v), stats(0, 1000, 1970));
        // n = 10,000 (the default): median index 5000, p99 index 9899.
        let v: Vec<u32> = (0..10_000).collect();
        assert_eq!(of(&v), stats(0, 5000, 9899));
    }

    #[test]
    fn unsorted_samples_are_sorted_in_place() {
        let mut v = [9, 1, 8, 2, 7, 3, 6, 4, 5];
        assert_eq!(Stats::of(&mut v), stats(1, 5, 9));
        assert_eq!(v, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // Reversed, with duplicates and an outlier.
        let mut v = [1_000_000, 30, 30, 20, 20, 20, 10];
        assert_eq!(Stats::of(&mut v), stats(10, 20, 1_000_000));
        assert_eq!(v, [10, 20, 20, 20, 30, 30, 1_000_000]);
        // 1000 samples in a scrambled order (i * 7919 mod 1000 is a permutation of 0..1000):
        // median index round(499.5) = 500, p99 index round(989.01) = 989.
        let mut v: Vec<u32> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        assert_eq!(Stats::of(&mut v), stats(0, 500, 989));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn one_outlier_in_a_hundred_is_the_p99() {
        // 99 fast iterations and one slow one: p99 index round(98.01) = 98 is still fast.
        let mut v = vec![100u32; 99];
        v.push(90_000);
        assert_eq!(Stats::of(&mut v), stats(100, 100, 100));
        // Two slow ones of a hundred reach it.
        v[0] = 90_000;
        assert_eq!(Stats::of(&mut v), stats(100, 100, 90_000));
    }
}
