//! What `load` shows beyond the result row: latency minimum and standard deviation, the
//! percentile spectrum (`--latency`, in wrk2's layout), a terminal histogram (`--histogram`, as
//! oha draws it), bytes and transfer per second, and the status-code distribution.
//!
//! The row's schema (the CSV) stays as it is: these figures go to the terminal and to the JSON
//! document ([`json`]) only (results/README.md, "JSON output").

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::LoadResult;
use crate::output::{Na, ResultRow};
use crate::timeline::Entry;

/// The percentiles of wrk2's "Latency Distribution" block.
pub const SUMMARY_PERCENTILES: [f64; 8] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0];

/// A latency at a percentile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentile {
    /// The percentile, 0 to 100.
    pub percentile: f64,
    /// Latency in ms.
    pub ms: f64,
}

/// The figures of a run that the CSV row does not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Smallest latency in ms (NA: no answer).
    pub lat_min_ms: Na<f64>,
    /// Standard deviation of the latency in ms.
    pub lat_stdev_ms: Na<f64>,
    /// Bytes read from the server.
    pub bytes_read: u64,
    /// Bytes read per second of the measurement.
    pub transfer_bytes_per_s: f64,
    /// The statuses that count as answers (`--expect-status`).
    pub expect_status: String,
    /// Answers by status code (HTTP; empty for the raw protocol).
    pub status_codes: std::collections::BTreeMap<String, u64>,
    /// Latency at wrk2's summary percentiles (empty without answers).
    pub latency_percentiles: Vec<Percentile>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Rounds to `decimals` places: what the figures are worth, without binary noise in the JSON.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl Figures {
    /// The figures of `result`, whose answers counted as ok with a status in `expect`.
    pub fn of(result: &LoadResult, expect: &str) -> Figures {
        let lat = &result.stats.latency;
        let some = !lat.is_empty();
        let latency_percentiles = if some {
            SUMMARY_PERCENTILES
                .iter()
                .map(|&p| Percentile {
                    percentile: p,
                    ms: ms(lat.value_at_percentile(p)),
                })
                .collect()
        } else {
            Vec::new()
        };
        Figures {
            lat_min_ms: Na(some.then(|| ms(lat.min()))),
            lat_stdev_ms: Na(some.then(|| round_to(lat.stdev() / 1000.0, 3))),
            bytes_read: result.stats.bytes_read,
            transfer_bytes_per_s: round_to(
                result.stats.bytes_read as f64 / result.elapsed.as_secs_f64().max(1e-9),
                1,
            ),
            expect_status: expect.to_string(),
            status_codes: result
                .stats
                .statuses
                .iter()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            latency_percentiles,
        }
    }

    /// The summary's lines for these figures: transfer, then the status distribution.
    pub fn summary_lines(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "transfer  {} read, {}/s",
            bytes(self.bytes_read as f64),
            bytes(self.transfer_bytes_per_s)
        );
        if !self.status_codes.is_empty() {
            let codes: Vec<String> = self
                .status_codes
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect();
            let _ = writeln!(
                s,
                "status    {}  (answers: {})",
                codes.join(", "),
                self.expect_status
            );
        }
        s
    }
}

/// Bytes with a binary unit, as wrk prints them (`1.21MB`).
fn bytes(n: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0}{}", units[0])
    } else {
        format!("{value:.2}{}", units[unit])
    }
}

/// `--latency`: wrk2's "Latency Distribution" block and its detailed percentile spectrum
/// (values in ms; 5 ticks per half distance, as wrk2 prints it).
pub fn spectrum(lat: &Histogram<u64>) -> String {
    let mut s = String::new();
    if lat.is_empty() {
        let _ = writeln!(s, "  Latency Distribution: no answers");
        return s;
    }
    let _ = writeln!(
        s,
        "  Latency Distribution (HdrHistogram - Recorded Latency)"
    );
    for p in SUMMARY_PERCENTILES {
        let _ = writeln!(s, "{:>7.3}%  {:>9.3}ms", p, ms(lat.value_at_percentile(p)));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  Detailed Percentile spectrum:");
    let _ = writeln!(s, "       Value   Percentile   TotalCount 1/(1-Percentile)");
    let _ = writeln!(s);
    let mut total = 0;
    for v in lat.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inverse = if q < 1.0 {
            format!("{:>12.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>12}", "inf")
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>12.6} {:>12} {inverse}",
            ms(v.value_iterated_to()),
            q,
            total
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        lat.mean() / 1000.0,
        lat.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(lat.max()),
        lat.len()
    );
    s
}

/// `--histogram`: the latencies in 11 equal buckets from the minimum to the maximum, one bar
/// each, as oha draws its response-time histogram.
pub fn histogram(lat: &Histogram<u64>) -> String {
    const BUCKETS: usize = 11;
    const WIDTH: u64 = 40;
    let mut s = String::new();
    if lat.is_empty() {
        return s;
    }
    let (low, high) = (lat.min(), lat.max());
    let step = ((high - low) as f64 / (BUCKETS - 1) as f64).max(1.0);
    let mut counts = [0u64; BUCKETS];
    for v in lat.iter_recorded() {
        let index = ((v.value_iterated_to() - low) as f64 / step).round() as usize;
        counts[index.min(BUCKETS - 1)] += v.count_at_value();
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    let _ = writeln!(s, "Response time histogram (ms):");
    for (i, &n) in counts.iter().enumerate() {
        let at = low as f64 + step * i as f64;
        let bar = "■".repeat((n * WIDTH).div_ceil(most) as usize);
        let _ = writeln!(s, "  {:>10.3} [{n:>8}] |{bar}", at / 1000.0);
    }
    s
}

/// The JSON document of a load run: the row's fields (missing numbers as `null`), the figures
/// above, and the per-second `timeline`.
///
/// # Errors
/// If serialization fails.
pub fn json(row: &ResultRow, figures: &Figures, timeline: &[Entry]) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Document<'a> {
        #[serde(flatten)]
        row: &'a ResultRow,
        #[serde(flatten)]
        figures: &'a Figures,
        timeline: &'a [Entry],
    }
    crate::output::with_na_as_null(|| {
        serde_json::to_string_pretty(&Document {
            row,
            figures,
            timeline,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(values: &[u64]) -> Histogram<u64> {
        let mut h = crate::engine::new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn the_spectrum_has_wrk2s_blocks_and_ends_at_the_maximum() {
        let h = latencies(&(1..=1000).collect::<Vec<_>>());
        let text = spectrum(&h);
        for line in [
            "  Latency Distribution (HdrHistogram - Recorded Latency)",
            " 50.000%      0.500ms",
            "100.000%      1.000ms",
            "       Value   Percentile   TotalCount 1/(1-Percentile)",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        let last = text
            .lines()
            .rfind(|l| l.contains("inf"))
            .expect("a last line at 100 %");
        assert!(last.contains("1.000") && last.contains("1000"), "{last}");
    }

    #[test]
    fn the_histogram_puts_every_latency_in_a_bucket() {
        let h = latencies(&[1000, 1000, 1000, 5000, 11000]);
        let text = histogram(&h);
        let counts: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|l| {
                let inside = l.split('[').nth(1).unwrap().split(']').next().unwrap();
                inside.trim().parse().unwrap()
            })
            .collect();
        assert_eq!(counts.len(), 11);
        assert_eq!(counts.iter().sum::<u64>(), 5);
        assert_eq!((counts[0], counts[4], counts[10]), (3, 1, 1), "{text}");
        assert!(histogram(&crate::engine::new_histogram()).is_empty());
    }

    #[test]
    fn bytes_read_as_wrk_prints_them() {
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(bytes(1536.0), "1.50KB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.00MB");
    }
}
