//! The one percentile definition shared by the guest's cost table (`COST … median= p99=`) and
//! the host's benchmarks, so a "p99" means the same thing on both sides: the nearest-rank
//! sample of a sorted set.

/// The index of the `pct`-th percentile (0–100) in a sorted slice of `n` samples: the
/// nearest rank, `round((n - 1) * pct / 100)`. `None` for no samples.
pub const fn nearest_rank(n: usize, pct: u32) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let pct = if pct > 100 { 100 } else { pct as usize };
    // round(x / 100) for x >= 0 as (x + 50) / 100, in integers (no floating point in the
    // guest).
    Some(((n - 1) * pct + 50) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_the_definition() {
        assert_eq!(nearest_rank(0, 50), None);
        assert_eq!(nearest_rank(1, 99), Some(0));
        // 10,000 samples: the median is index 5000 (4999.5 rounded), p99 index 9899.
        assert_eq!(nearest_rank(10_000, 50), Some(5000));
        assert_eq!(nearest_rank(10_000, 99), Some(9899));
        assert_eq!(nearest_rank(10, 100), Some(9));
        assert_eq!(nearest_rank(10, 0), Some(0));
        assert_eq!(nearest_rank(10, 250), Some(9), "clamped to 100");
        // Agrees with round((n - 1) * p) in floating point.
        for n in 1..200usize {
            for pct in 0..=100u32 {
                let f = ((n - 1) as f64 * f64::from(pct) / 100.0).round() as usize;
                let i = nearest_rank(n, pct).unwrap();
                // Ties (x.5) round up in both.
                assert_eq!(i, f, "n={n} pct={pct}");
            }
        }
    }
}
