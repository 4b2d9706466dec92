//! The gate's arithmetic, apart from any measurement: paired ratios with their intervals, the
//! noise floor an A/A calibration gives, and the verdict with its confirmation rule.
//!
//! Every comparison is candidate / baseline of one metric in one unit (a server on a cell),
//! from pairs of segments run back to back on the same cores (ABBA). Each pair gives one ratio;
//! the estimate is their geometric mean, and its interval a percentile bootstrap over the pairs
//! (2,000 resamples, seeded). A slow second of the machine lands on both halves of a pair and
//! cancels in its ratio.

use serde::{Deserialize, Serialize};

use crate::stats::{Estimate, RESAMPLES};

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

/// The geometric mean of per-pair ratios with a percentile-bootstrap 95 % interval; `None`
/// when there is no finite positive ratio.
pub fn ratio_estimate(ratios: &[f64], rng: &mut fastrand::Rng) -> Option<Estimate> {
    let logs: Vec<f64> = ratios
        .iter()
        .filter(|r| r.is_finite() && **r > 0.0)
        .map(|r| r.ln())
        .collect();
    if logs.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut draws: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sum: f64 = (0..logs.len()).map(|_| logs[rng.usize(..logs.len())]).sum();
            sum / logs.len() as f64
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize].exp();
    Some(Estimate {
        median: mean(&logs).exp(),
        low: at(0.025),
        high: at(0.975),
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
    let (worse_low, worse_high) = if higher_is_worse {
        (estimate.low, estimate.high)
    } else {
        (1.0 / estimate.high, 1.0 / estimate.low)
    };
    let limit = 1.0 + threshold;
    if worse_low > limit {
        Change::Regression
    } else if worse_high < 1.0 / limit {
        Change::Improvement
    } else {
        Change::Unchanged
    }
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
        // Pairs as noisy as 10 % either way, 4 of them (the default): the interval must be
        // wide enough that a threshold of 5 % is rarely crossed. (Judging the point estimate
        // alone, or a zero-width interval, crosses it about 4 % of the time: 16 in 400.)
        let mut alarms = 0;
        for _ in 0..400 {
            let ratios = noisy(1.0, 0.10, 4, &mut rng);
            let est = ratio_estimate(&ratios, &mut rng).unwrap();
            assert!(est.low <= est.median && est.median <= est.high);
            if judge(&est, 0.05, true) == Change::Regression {
                alarms += 1;
            }
        }
        assert!(alarms <= 6, "{alarms} false alarms in 400");
    }

    #[test]
    fn a_shift_beyond_the_threshold_fails_and_the_other_way_improves() {
        let mut rng = fastrand::Rng::with_seed(2);
        let slower = noisy(1.15, 0.02, 8, &mut rng);
        let est = ratio_estimate(&slower, &mut rng).unwrap();
        assert!(est.low > 1.1 && est.high < 1.2, "{est:?}");
        assert_eq!(judge(&est, 0.05, true), Change::Regression);
        // The same ratios read as req/s: the candidate is faster.
        assert_eq!(judge(&est, 0.05, false), Change::Improvement);
        let faster = noisy(0.85, 0.02, 8, &mut rng);
        let est = ratio_estimate(&faster, &mut rng).unwrap();
        assert_eq!(judge(&est, 0.05, true), Change::Improvement);
        assert_eq!(judge(&est, 0.05, false), Change::Regression);
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
    fn the_interval_is_of_the_geometric_mean_of_pairs() {
        let mut rng = fastrand::Rng::with_seed(3);
        let est = ratio_estimate(&[2.0, 0.5], &mut rng).unwrap();
        assert!((est.median - 1.0).abs() < 1e-12);
        assert!((est.low - 0.5).abs() < 1e-12 && (est.high - 2.0).abs() < 1e-12);
        let one = ratio_estimate(&[1.1], &mut rng).unwrap();
        assert!((one.low - 1.1).abs() < 1e-12 && (one.high - 1.1).abs() < 1e-12);
        assert!(ratio_estimate(&[f64::NAN, 0.0], &mut rng).is_none());
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
