//! The gate's arithmetic, apart from any measurement: paired ratios with their intervals, the
//! noise floor an A/A calibration gives, and the verdict with its confirmation rule.
//!
//! Every comparison is candidate / baseline of one metric in one unit (a server on a cell),
//! from pairs of short segments run back to back on the same cores (ABBA). Each pair gives one
//! ratio. The estimate is their **median**, and its interval the distribution-free one of the
//! sign test: the pair ratios ranked k-th from either end, k the largest rank for which the
//! interval still covers the true median with at least 95 % probability, whatever the shape of
//! the noise. A slow stretch of the machine lands on both halves of a pair and cancels in its
//! ratio; a burst that hits one half of a few pairs moves those pairs' ratios a long way, and
//! the median does not follow them (a mean does: that was the first version's weakness on a
//! shared host whose cache a neighbour thrashes for a second at a time).

use serde::{Deserialize, Serialize};

use crate::stats::Estimate;

/// A metric the gate compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Server CPU time per answered request over the measured window (all threads and
    /// processes of the server): the primary metric where the client is the limit.
    Cpu,
    /// Requests per second: compared only where neither side was client-bound.
    Rps,
    /// 99th-percentile latency.
    P99,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 3] = [Metric::Cpu, Metric::Rps, Metric::P99];

    /// Whether a larger candidate/baseline ratio is worse.
    pub fn higher_is_worse(self) -> bool {
        !matches!(self, Metric::Rps)
    }

    /// Column name.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Cpu => "server CPU/req",
            Metric::Rps => "req/s",
            Metric::P99 => "p99",
        }
    }

    /// Short key (flags, JSON, cache).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Rps => "rps",
            Metric::P99 => "p99",
        }
    }
}

/// The fewest pairs that give a 95 % interval: with 5, even the widest interval (the smallest
/// and the largest ratio) misses the median 1 time in 16.
pub const MIN_PAIRS: usize = 6;

/// The rank k (from 1) of the sign-test interval \[x(k), x(n+1-k)\] over n sorted values: the
/// largest k with P(Binomial(n, 1/2) < k) at most 2.5 %, so that the interval covers the
/// median with at least 95 % probability. `None` below [`MIN_PAIRS`].
pub fn sign_test_rank(n: usize) -> Option<usize> {
    if n < MIN_PAIRS {
        return None;
    }
    // P(X = j) for X ~ Binomial(n, 1/2), summed from j = 0 until the tail passes 2.5 %.
    let mut p = 0.5f64.powi(n as i32);
    let mut tail = 0.0;
    let mut k = 0;
    for j in 0..n {
        if tail + p > 0.025 {
            break;
        }
        tail += p;
        k = j + 1;
        p *= (n - j) as f64 / (j + 1) as f64;
    }
    Some(k.max(1))
}

/// The median of per-pair ratios with the sign test's 95 % interval; `None` when a ratio is not
/// a finite positive number or there are fewer than [`MIN_PAIRS`] of them.
pub fn ratio_estimate(ratios: &[f64]) -> Option<Estimate> {
    if !ratios.iter().all(|r| r.is_finite() && *r > 0.0) {
        return None;
    }
    let k = sign_test_rank(ratios.len())?;
    let mut logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    logs.sort_by(f64::total_cmp);
    let n = logs.len();
    let middle = crate::stats::median(&logs)?;
    Some(Estimate {
        median: middle.exp(),
        low: logs[k - 1].exp(),
        high: logs[n - k].exp(),
    })
}

/// How far an A/A comparison's estimate lies from 1, as a fraction (0.03: 3 %), in either
/// direction: what identical builds show as a difference on this machine. (Its interval is not
/// added: the gate's own interval already carries the noise within a run; the floor is the
/// difference that identical builds still show.)
pub fn reach(estimate: &Estimate) -> f64 {
    estimate.median.ln().abs().exp() - 1.0
}

/// What one comparison says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// The whole interval is worse than the threshold.
    Regression,
    /// The whole interval is better than the threshold.
    Improvement,
    /// Within the threshold, or the interval reaches inside it.
    Unchanged,
    /// Not judged (req/s of a client-bound unit; a metric not gated).
    NotJudged,
}

/// The verdict on `estimate` (candidate / baseline) for a metric, at `threshold` (0.05: 5 %).
/// A regression needs the whole interval beyond `1 + threshold` in the worse direction: an
/// interval that straddles the threshold passes.
pub fn judge(estimate: &Estimate, threshold: f64, higher_is_worse: bool) -> Change {
    let (worse_low, worse_high) = worse_interval(estimate, higher_is_worse);
    let limit = 1.0 + threshold;
    if worse_low > limit {
        Change::Regression
    } else if worse_high < 1.0 / limit {
        Change::Improvement
    } else {
        Change::Unchanged
    }
}

/// A candidate/baseline ratio turned so that above 1 is worse (req/s: its inverse).
pub fn worse_way(ratio: f64, higher_is_worse: bool) -> f64 {
    if higher_is_worse {
        ratio
    } else {
        1.0 / ratio
    }
}

/// An estimate's interval turned so that above 1 is worse: (best end, worst end).
pub fn worse_interval(estimate: &Estimate, higher_is_worse: bool) -> (f64, f64) {
    let (a, b) = (
        worse_way(estimate.low, higher_is_worse),
        worse_way(estimate.high, higher_is_worse),
    );
    (a.min(b), a.max(b))
}

/// The threshold a unit is judged at: the configured minimum effect or the machine's noise
/// floor for that unit and metric, whichever is larger.
pub fn threshold(min_effect: f64, floor: Option<f64>) -> f64 {
    floor.map_or(min_effect, |f| f.max(min_effect))
}

/// The gate's outcome from the first round's regressions and the confirmation round's: a
/// regression fails the gate only when the second, independent round finds it again (same
/// unit, same metric).
pub fn confirmed<K: PartialEq + Clone>(first: &[K], second: &[K]) -> Vec<K> {
    first
        .iter()
        .filter(|k| second.contains(k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(center: f64, spread: f64, n: usize, rng: &mut fastrand::Rng) -> Vec<f64> {
        (0..n)
            .map(|_| center * (1.0 + spread * (rng.f64() * 2.0 - 1.0)))
            .collect()
    }

    #[test]
    fn identical_distributions_pass() {
        let mut rng = fastrand::Rng::with_seed(1);
        // Pairs within 3 % of each other, 8 of them: never a verdict at 5 %.
        for _ in 0..200 {
            let ratios = noisy(1.0, 0.03, 8, &mut rng);
            let est = ratio_estimate(&ratios).unwrap();
            assert_eq!(judge(&est, 0.05, true), Change::Unchanged, "{est:?}");
        }
        // Pairs as noisy as 10 % either way, 6 of them (the fewest allowed): the interval must
        // be wide enough that a threshold of 5 % is rarely crossed. (Judging the point
        // estimate alone crosses it about 1 time in 6.)
        let mut alarms = 0;
        let mut point_alarms = 0;
        for _ in 0..400 {
            let ratios = noisy(1.0, 0.10, 6, &mut rng);
            let est = ratio_estimate(&ratios).unwrap();
            assert!(est.low <= est.median && est.median <= est.high);
            if judge(&est, 0.05, true) == Change::Regression {
                alarms += 1;
            }
            if est.median > 1.05 {
                point_alarms += 1;
            }
        }
        assert!(alarms <= 6, "{alarms} false alarms in 400");
        assert!(
            point_alarms > 20,
            "the test's noise is too small to test anything"
        );
    }

    #[test]
    fn a_shift_beyond_the_threshold_fails_and_the_other_way_improves() {
        let mut rng = fastrand::Rng::with_seed(2);
        let slower = noisy(1.15, 0.02, 8, &mut rng);
        let est = ratio_estimate(&slower).unwrap();
        assert!(est.low > 1.1 && est.high < 1.2, "{est:?}");
        assert_eq!(judge(&est, 0.05, true), Change::Regression);
        // The same ratios read as req/s: the candidate is faster.
        assert_eq!(judge(&est, 0.05, false), Change::Improvement);
        let faster = noisy(0.85, 0.02, 8, &mut rng);
        let est = ratio_estimate(&faster).unwrap();
        assert_eq!(judge(&est, 0.05, true), Change::Improvement);
        assert_eq!(judge(&est, 0.05, false), Change::Regression);
    }

    #[test]
    fn bursts_on_a_few_pairs_do_not_move_the_verdict() {
        // 32 pairs: a 10 % slowdown measured within 1 %, and 6 pairs hit by a burst on one
        // half (a neighbour thrashing the cache), three each way, by up to 3x.
        let mut rng = fastrand::Rng::with_seed(4);
        let mut ratios = noisy(1.10, 0.01, 26, &mut rng);
        ratios.extend([3.0, 2.2, 1.6, 0.4, 0.5, 0.7]);
        let est = ratio_estimate(&ratios).unwrap();
        assert!((est.median - 1.10).abs() < 0.01, "{est:?}");
        assert_eq!(judge(&est, 0.05, true), Change::Regression);
        // The same samples with no change: the bursts make no alarm.
        let mut same = noisy(1.0, 0.01, 26, &mut rng);
        same.extend([3.0, 2.2, 1.6, 1.5, 0.5, 0.7]);
        assert_eq!(
            judge(&ratio_estimate(&same).unwrap(), 0.05, true),
            Change::Unchanged
        );
        // A geometric mean of the same pairs is dragged past the threshold.
        let mean = (same.iter().map(|r| r.ln()).sum::<f64>() / same.len() as f64).exp();
        assert!(mean > 1.05, "{mean}");
    }

    #[test]
    fn the_sign_test_rank_covers_the_median_at_95_percent() {
        // Tabled values of the sign test's 95 % interval.
        assert_eq!(sign_test_rank(5), None);
        assert_eq!(sign_test_rank(6), Some(1));
        assert_eq!(sign_test_rank(8), Some(1));
        assert_eq!(sign_test_rank(9), Some(2));
        assert_eq!(sign_test_rank(12), Some(3));
        assert_eq!(sign_test_rank(20), Some(6));
        assert_eq!(sign_test_rank(28), Some(9));
        assert_eq!(sign_test_rank(32), Some(10));
        assert_eq!(sign_test_rank(64), Some(24));
        // Coverage checked by simulation: a skewed noise, 32 pairs, the true median 1.
        let mut rng = fastrand::Rng::with_seed(5);
        let mut missed = 0;
        for _ in 0..2000 {
            let ratios: Vec<f64> = (0..32)
                .map(|_| {
                    let u = rng.f64();
                    // Median of this mixture is 1: half at or below, half above.
                    if u < 0.5 {
                        1.0 - 0.05 * rng.f64()
                    } else {
                        1.0 + 0.5 * rng.f64().powi(3)
                    }
                })
                .collect();
            let est = ratio_estimate(&ratios).unwrap();
            if est.low > 1.0 || est.high < 1.0 {
                missed += 1;
            }
        }
        assert!(missed <= 100, "missed the median {missed} times in 2000");
    }

    #[test]
    fn an_interval_straddling_the_threshold_passes() {
        let est = Estimate {
            median: 1.06,
            low: 1.04,
            high: 1.08,
        };
        assert_eq!(judge(&est, 0.05, true), Change::Unchanged);
        assert_eq!(judge(&est, 0.03, true), Change::Regression);
        // A noise floor above the minimum effect raises the bar.
        assert_eq!(
            judge(&est, threshold(0.03, Some(0.045)), true),
            Change::Unchanged
        );
        assert_eq!(threshold(0.05, None), 0.05);
        assert_eq!(threshold(0.05, Some(0.02)), 0.05);
    }

    #[test]
    fn the_estimate_is_the_median_pair_and_needs_six_finite_ratios() {
        let est = ratio_estimate(&[2.0, 0.5, 1.0, 1.0, 4.0, 0.25]).unwrap();
        assert!((est.median - 1.0).abs() < 1e-12);
        assert!((est.low - 0.25).abs() < 1e-12 && (est.high - 4.0).abs() < 1e-12);
        let odd = ratio_estimate(&[1.3, 1.1, 1.2, 1.0, 0.9, 1.4, 1.5]).unwrap();
        assert!((odd.median - 1.2).abs() < 1e-12);
        assert!(ratio_estimate(&[1.1; 5]).is_none());
        assert!(ratio_estimate(&[1.0, 1.0, 1.0, 1.0, 1.0, f64::NAN]).is_none());
        assert!(ratio_estimate(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]).is_none());
    }

    #[test]
    fn reach_is_symmetric_in_log_space() {
        let est = |median| Estimate {
            median,
            low: 0.5,
            high: 2.0,
        };
        assert!((reach(&est(1.0 / 1.04)) - 0.04).abs() < 1e-9);
        assert!((reach(&est(1.04)) - 0.04).abs() < 1e-9);
        assert_eq!(reach(&est(1.0)), 0.0);
    }

    #[test]
    fn only_regressions_found_twice_are_confirmed() {
        let first = vec![("epoll", "keep-alive"), ("threads", "per-request")];
        let second = vec![("threads", "per-request"), ("fork", "per-request")];
        assert_eq!(confirmed(&first, &second), vec![("threads", "per-request")]);
        assert!(confirmed(&first, &[]).is_empty());
    }
}
