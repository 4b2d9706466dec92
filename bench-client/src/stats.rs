//! Small-sample statistics for the reports: medians, bootstrap intervals, and the rule for
//! when one figure may be called larger than another.
//!
//! A cell has a handful of repetitions (3 to 5), so the interval of a median is wide and the
//! report says so: a 95 % percentile-bootstrap interval of the median (2,000 resamples), and
//! for a ratio of two rows the interval of the ratio of their medians (each row resampled on
//! its own). Two figures are ordered only when their intervals do not overlap; otherwise they
//! are "tied within noise". The resampling is seeded, so a report is reproducible from its
//! rows and the seed it prints.

/// Resamples per interval.
pub const RESAMPLES: usize = 2000;

/// The median (the mean of the middle two for an even count), or `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A figure with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The median of the samples.
    pub median: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

impl Estimate {
    /// `12.3 [11.9-12.8]`, with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} [{:.digits$}-{:.digits$}]",
            self.median, self.low, self.high
        )
    }
}

fn resampled_median(values: &[f64], rng: &mut fastrand::Rng, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend((0..values.len()).map(|_| values[rng.usize(..values.len())]));
    median(scratch).unwrap_or(f64::NAN)
}

fn percentiles(mut draws: Vec<f64>) -> (f64, f64) {
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// The median of `values` with a bootstrap 95 % interval; `None` when empty.
pub fn estimate(values: &[f64], rng: &mut fastrand::Rng) -> Option<Estimate> {
    let median = median(values)?;
    let mut scratch = Vec::with_capacity(values.len());
    let draws = (0..RESAMPLES)
        .map(|_| resampled_median(values, rng, &mut scratch))
        .collect();
    let (low, high) = percentiles(draws);
    Some(Estimate { median, low, high })
}

/// The ratio of the medians of two rows measured in the same repetitions, with a bootstrap
/// interval: `pairs` holds, per repetition, the two rows' values. Repetitions are resampled
/// as pairs, because repetition k of every row ran at about the same moment: a slow minute of
/// the machine moves both sides together and cancels in the ratio (a row against itself is
/// exactly 1). `None` when empty or the second median is not positive.
pub fn paired_ratio(pairs: &[(f64, f64)], rng: &mut fastrand::Rng) -> Option<Estimate> {
    let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let (ma, mb) = (median(&a)?, median(&b)?);
    if mb <= 0.0 {
        return None;
    }
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let draws: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            sa.clear();
            sb.clear();
            for _ in 0..pairs.len() {
                let (x, y) = pairs[rng.usize(..pairs.len())];
                sa.push(x);
                sb.push(y);
            }
            median(&sa).unwrap_or(f64::NAN) / median(&sb).unwrap_or(f64::NAN)
        })
        .filter(|r| r.is_finite())
        .collect();
    if draws.is_empty() {
        return None;
    }
    let (low, high) = percentiles(draws);
    Some(Estimate {
        median: ma / mb,
        low,
        high,
    })
}

/// How two figures compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first is larger: its interval lies wholly above the second's.
    Greater,
    /// The first is smaller: its interval lies wholly below.
    Less,
    /// The intervals overlap.
    Tied,
}

/// Compares two estimates by their intervals.
pub fn compare(a: &Estimate, b: &Estimate) -> Verdict {
    if a.low > b.high {
        Verdict::Greater
    } else if a.high < b.low {
        Verdict::Less
    } else {
        Verdict::Tied
    }
}

/// A named figure in a ranking. `limited` marks a figure that is not the server's own (the
/// client was the limit): two limited figures are never ordered against each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Row name.
    pub name: String,
    /// Its figure.
    pub estimate: Estimate,
    /// The figure is a limit of the measurement, not of the server.
    pub limited: bool,
}

fn verdict(a: &Ranked, b: &Ranked) -> Verdict {
    if a.limited && b.limited {
        Verdict::Tied
    } else {
        compare(&a.estimate, &b.estimate)
    }
}

/// Sorts the items by median (highest first when `descending`) and writes them in tiers,
/// `a > b ≈ c`: `>` (or `<`) where an item separates from the first of the tier before it
/// (and they are not both limited), `≈` where it does not.
pub fn ranking(items: &mut [Ranked], descending: bool) -> String {
    items.sort_by(|x, y| {
        let o = x.estimate.median.total_cmp(&y.estimate.median);
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    // Tiers: an item joins the current tier (`≈`) while its interval overlaps the tier's
    // first item's; otherwise it starts the next tier (`>` or `<`). So `a ≈ b < c` says that
    // b is tied with a, and c is separated from a.
    let mut out = String::new();
    let mut head = 0;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            let sep = match verdict(&items[head], item) {
                Verdict::Tied => " ≈ ",
                _ => {
                    head = i;
                    if descending {
                        " > "
                    } else {
                        " < "
                    }
                }
            };
            out.push_str(sep);
        }
        out.push_str(&item.name);
    }
    out
}

/// True when no pair that `reference` (names, best first) orders one way is separated the
/// other way by the measurement: the measurement does not contradict the reference.
pub fn consistent_with(reference: &[String], items: &[Ranked], descending: bool) -> bool {
    let find = |n: &String| items.iter().find(|r| &r.name == n);
    for (i, first) in reference.iter().enumerate() {
        for second in &reference[i + 1..] {
            let (Some(a), Some(b)) = (find(first), find(second)) else {
                continue;
            };
            let contradicts = match verdict(a, b) {
                Verdict::Greater => !descending,
                Verdict::Less => descending,
                Verdict::Tied => false,
            };
            if contradicts {
                return false;
            }
        }
    }
    true
}

/// Order of `n` items for a repetition, shuffled by `rng`.
pub fn shuffled_order(n: usize, rng: &mut fastrand::Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(values: &[f64]) -> Estimate {
        estimate(values, &mut fastrand::Rng::with_seed(7)).unwrap()
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_interval_holds_the_median_and_stays_inside_the_samples() {
        let e = est(&[10.0, 11.0, 12.0, 13.0, 30.0]);
        assert_eq!(e.median, 12.0);
        assert!(e.low >= 10.0 && e.low <= 12.0 && e.high >= 12.0 && e.high <= 30.0);
        assert!(
            e.high > e.low,
            "five different samples give an interval: {e:?}"
        );
        let one = est(&[5.0]);
        assert_eq!((one.low, one.median, one.high), (5.0, 5.0, 5.0));
    }

    #[test]
    fn separated_samples_order_and_overlapping_ones_tie() {
        let fast = est(&[100.0, 101.0, 102.0, 103.0, 104.0]);
        let slow = est(&[90.0, 91.0, 92.0, 93.0, 94.0]);
        let close = est(&[99.0, 101.5, 103.5, 105.0, 98.0]);
        assert_eq!(compare(&fast, &slow), Verdict::Greater);
        assert_eq!(compare(&slow, &fast), Verdict::Less);
        assert_eq!(compare(&fast, &close), Verdict::Tied);
        let ranked = |name: &str, estimate: Estimate, limited: bool| Ranked {
            name: name.into(),
            estimate,
            limited,
        };
        let mut items = vec![
            ranked("slow", slow, false),
            ranked("fast", fast, false),
            ranked("close", close, false),
        ];
        assert_eq!(ranking(&mut items, true), "fast ≈ close > slow");
        assert_eq!(ranking(&mut items, false), "slow < close ≈ fast");
        // Tiers: b ties a and c ties b, but c is apart from a: a new tier.
        let x = est(&[10.0, 10.5, 11.0]);
        let y = est(&[10.8, 11.5, 12.0]);
        let z = est(&[11.9, 12.5, 13.0]);
        let mut chain = vec![
            ranked("x", x, false),
            ranked("y", y, false),
            ranked("z", z, false),
        ];
        assert_eq!(ranking(&mut chain, false), "x ≈ y < z");
        // Both at the client's limit: never ordered, however far apart.
        let mut items = vec![ranked("fast", fast, true), ranked("slow", slow, true)];
        assert_eq!(ranking(&mut items, true), "fast ≈ slow");
        let mut items = vec![ranked("fast", fast, true), ranked("slow", slow, false)];
        assert_eq!(ranking(&mut items, true), "fast > slow");
    }

    #[test]
    fn a_paired_ratio_carries_its_interval_and_a_row_against_itself_is_one() {
        let mut rng = fastrand::Rng::with_seed(1);
        let a = [20.0, 21.0, 22.0, 20.5, 21.5];
        let b = [10.0, 10.5, 11.0, 10.2, 10.8];
        let pairs: Vec<(f64, f64)> = a.iter().copied().zip(b.iter().copied()).collect();
        let r = paired_ratio(&pairs, &mut rng).unwrap();
        assert!((r.median - 21.0 / 10.5).abs() < 1e-12);
        assert!(r.low > 1.5 && r.high < 2.5 && r.low <= r.median && r.median <= r.high);
        assert!(r.low > 1.0, "the interval excludes 1: {r:?}");
        // A slow repetition moves both rows: it cancels in the ratio.
        let slow: Vec<(f64, f64)> = [(10.0, 5.0), (20.0, 10.0), (12.0, 6.0)].to_vec();
        let r = paired_ratio(&slow, &mut rng).unwrap();
        assert_eq!((r.low, r.median, r.high), (2.0, 2.0, 2.0));
        let itself: Vec<(f64, f64)> = a.iter().map(|&x| (x, x)).collect();
        let r = paired_ratio(&itself, &mut rng).unwrap();
        assert_eq!((r.low, r.median, r.high), (1.0, 1.0, 1.0));
        assert!(paired_ratio(&[(1.0, 0.0)], &mut rng).is_none());
    }

    #[test]
    fn a_reference_order_is_contradicted_only_by_separated_intervals() {
        let hi = est(&[10.0, 10.1, 10.2]);
        let lo = est(&[5.0, 5.1, 5.2]);
        let mid = est(&[5.1, 10.1, 7.0]);
        let items: Vec<Ranked> = [("a", hi), ("b", lo), ("c", mid)]
            .into_iter()
            .map(|(name, estimate)| Ranked {
                name: name.into(),
                estimate,
                limited: false,
            })
            .collect();
        let order = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(consistent_with(&order(&["a", "c", "b"]), &items, true));
        assert!(
            consistent_with(&order(&["c", "a", "b"]), &items, true),
            "c ties a"
        );
        assert!(!consistent_with(&order(&["b", "a"]), &items, true));
        assert!(consistent_with(&order(&["b", "a"]), &items, false));
    }

    #[test]
    fn the_order_is_a_seeded_permutation() {
        let a = shuffled_order(9, &mut fastrand::Rng::with_seed(42));
        let b = shuffled_order(9, &mut fastrand::Rng::with_seed(42));
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..9).collect::<Vec<_>>());
    }
}
