//! Scheduling, the pure part: the round-robin choice and the fairness judgement.

/// The task to run after `current` in round-robin order: the first runnable one after it in
/// table order, wrapping around, `current` itself last. `None` if nothing is runnable (the
/// CPU goes idle).
pub fn round_robin(
    current: usize,
    tasks: usize,
    runnable: impl Fn(usize) -> bool,
) -> Option<usize> {
    (1..=tasks)
        .map(|step| (current + step) % tasks.max(1))
        .find(|&i| i < tasks && runnable(i))
}

/// Each share of `runtimes` in permille of their sum.
pub fn share_permille(part: u64, total: u64) -> u64 {
    ((u128::from(part) * 1000) / u128::from(total.max(1))) as u64
}

/// The first of `runtimes` that is more than `tolerance_pct` percent away from their mean,
/// as (index, its runtime in permille of the mean); `None` when all are within it.
pub fn unfair(runtimes: &[u64], tolerance_pct: u64) -> Option<(usize, u64)> {
    let n = runtimes.len() as u128;
    if n == 0 {
        return None;
    }
    let sum: u128 = runtimes.iter().map(|&r| u128::from(r)).sum();
    if sum == 0 {
        return None;
    }
    runtimes.iter().enumerate().find_map(|(i, &r)| {
        // r / mean = r * n / sum, in permille.
        let permille = (u128::from(r) * n * 1000 / sum) as u64;
        (permille.abs_diff(1000) > tolerance_pct * 10).then_some((i, permille))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_wraps_and_skips_blocked_tasks() {
        let runnable = [true, false, true, true];
        let r = |i: usize| runnable[i];
        assert_eq!(round_robin(0, 4, r), Some(2));
        assert_eq!(round_robin(2, 4, r), Some(3));
        assert_eq!(round_robin(3, 4, r), Some(0));
        assert_eq!(round_robin(1, 4, |i| i == 1), Some(1));
        assert_eq!(round_robin(1, 4, |_| false), None);
        assert_eq!(round_robin(0, 0, |_| true), None);
    }

    #[test]
    fn fairness_is_judged_against_the_mean() {
        assert_eq!(unfair(&[100, 100, 100], 5), None);
        assert_eq!(unfair(&[100, 110, 90], 10), None);
        assert_eq!(unfair(&[100, 130, 70], 20), Some((1, 1300)));
        assert_eq!(unfair(&[0, 0, 0], 5), None);
        assert_eq!(unfair(&[], 5), None);
        assert_eq!(share_permille(1, 3), 333);
        assert_eq!(share_permille(5, 0), 5000);
    }
}
