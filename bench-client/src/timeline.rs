//! The per-second timeline of a load run: for every whole second of the measurement, the
//! requests answered and failed in it and the latency percentiles of those answered in it.
//!
//! Each load thread records into one [`Second`] (a small auto-sized HdrHistogram, reset and
//! reused: no allocation per request) and, when its clock moves to the next second, merges it
//! into the run's shared list under a lock: once per thread and second. The list is turned
//! into [`Entry`] rows at the end, when the measured time is known: the last interval may be
//! shorter than a second, and says so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::output::Na;

/// What happened in one second of a run, from one thread or merged from all.
#[derive(Debug, Clone)]
pub struct Second {
    /// Whole, valid responses.
    pub ok: u64,
    /// Requests that failed (any kind).
    pub errors: u64,
    /// Latency of the answered requests in µs: 2 significant digits, sized to what it holds.
    pub latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            ok: 0,
            errors: 0,
            latency: Histogram::new(2).expect("2 significant digits are valid"),
        }
    }
}

impl Second {
    fn add(&mut self, other: &Second) {
        self.ok += other.ok;
        self.errors += other.errors;
        // Auto-resizing: adding never fails for want of range.
        let _ = self.latency.add(&other.latency);
    }

    fn is_empty(&self) -> bool {
        self.ok == 0 && self.errors == 0
    }

    fn reset(&mut self) {
        self.ok = 0;
        self.errors = 0;
        self.latency.reset();
    }
}

/// One thread's recorder: the current second, handed to the shared list when the next begins.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    index: usize,
    current: Second,
    sink: Arc<Mutex<Vec<Second>>>,
}

impl Recorder {
    pub(crate) fn new(start: Instant, sink: Arc<Mutex<Vec<Second>>>) -> Self {
        Recorder {
            start,
            index: 0,
            current: Second::default(),
            sink,
        }
    }

    /// The second `now` falls in (the current one, after handing over the previous).
    fn at(&mut self, now: Instant) -> &mut Second {
        let index = now.saturating_duration_since(self.start).as_secs() as usize;
        if index != self.index {
            self.flush();
            self.index = index;
        }
        &mut self.current
    }

    pub(crate) fn ok(&mut self, now: Instant, latency_us: u64) {
        let second = self.at(now);
        second.ok += 1;
        crate::engine::record(&mut second.latency, latency_us);
    }

    pub(crate) fn errors(&mut self, now: Instant, n: u64) {
        self.at(now).errors += n;
    }

    /// Merges the current second into the shared list.
    pub(crate) fn flush(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let mut seconds = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if seconds.len() <= self.index {
            seconds.resize_with(self.index + 1, Second::default);
        }
        seconds[self.index].add(&self.current);
        self.current.reset();
    }
}

/// One interval of the timeline, as written in the JSON (`timeline`) and the `--timeline` CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Start of the interval, in whole seconds from the start of the measurement.
    pub second: u64,
    /// Its length in seconds: 1, except the last interval of a run that did not last a whole
    /// number of seconds.
    pub duration_s: f64,
    /// True when the interval is shorter than a second (the last one).
    pub partial: bool,
    /// Whole, valid responses that arrived in it.
    pub ok: u64,
    /// Requests that failed in it.
    pub errors: u64,
    /// `ok / duration_s` (NA for an empty interval).
    pub rps: Na<f64>,
    /// Median latency of the requests answered in it, ms.
    pub p50_ms: Na<f64>,
    /// 99th percentile latency of the requests answered in it, ms.
    pub p99_ms: Na<f64>,
}

/// The timeline of a run that measured `elapsed`: one entry per started second. Anything
/// recorded after `elapsed` (an answer read just after a duration's deadline) joins the last
/// entry, so the entries' counts add up to the run's.
pub fn entries(seconds: &[Second], elapsed: Duration) -> Vec<Entry> {
    let started = elapsed.as_nanos().div_ceil(1_000_000_000) as usize;
    let count = started.max(usize::from(seconds.iter().any(|s| !s.is_empty())));
    let mut merged: Vec<Second> = (0..count).map(|_| Second::default()).collect();
    for (i, second) in seconds.iter().enumerate() {
        if let Some(last) = count.checked_sub(1) {
            merged[i.min(last)].add(second);
        }
    }
    merged
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let from = Duration::from_secs(i as u64);
            let duration = elapsed.saturating_sub(from).min(Duration::from_secs(1));
            let secs = duration.as_secs_f64();
            let ms = |q: f64| {
                Na((!s.latency.is_empty()).then(|| s.latency.value_at_quantile(q) as f64 / 1000.0))
            };
            Entry {
                second: i as u64,
                duration_s: secs,
                partial: duration < Duration::from_secs(1),
                ok: s.ok,
                errors: s.errors,
                rps: Na((secs > 0.0).then(|| s.ok as f64 / secs)),
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            }
        })
        .collect()
}

/// The timeline as CSV, a header and one row per entry.
///
/// # Errors
/// If serialization fails.
pub fn to_csv(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(vec![]);
    for entry in entries {
        writer.serialize(entry).map_err(std::io::Error::other)?;
    }
    if entries.is_empty() {
        writer
            .write_record(CSV_COLUMNS)
            .map_err(std::io::Error::other)?;
    }
    writer
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 8] = [
    "second",
    "duration_s",
    "partial",
    "ok",
    "errors",
    "rps",
    "p50_ms",
    "p99_ms",
];

/// The spread of req/s over the whole seconds: `(seconds, min, median, max)`; `None` with
/// fewer than two whole seconds.
pub fn spread(entries: &[Entry]) -> Option<(usize, f64, f64, f64)> {
    let rates: Vec<f64> = entries
        .iter()
        .filter(|e| !e.partial)
        .filter_map(|e| e.rps.0)
        .collect();
    if rates.len() < 2 {
        return None;
    }
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let median = crate::stats::median(&rates)?;
    Some((rates.len(), min, median, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(ok: u64, errors: u64, latencies_us: &[u64]) -> Second {
        let mut s = Second {
            ok,
            errors,
            ..Second::default()
        };
        for &l in latencies_us {
            s.latency.record(l).unwrap();
        }
        s
    }

    #[test]
    fn threads_merge_by_second_and_the_last_partial_second_says_so() {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut a = Recorder::new(start, Arc::clone(&sink));
        let mut b = Recorder::new(start, Arc::clone(&sink));
        a.ok(at(100), 1000);
        a.ok(at(900), 3000);
        b.ok(at(500), 2000);
        b.errors(at(1500), 2);
        a.ok(at(2100), 10_000); // moves a to second 2: second 0 is handed over
        a.flush();
        b.flush();
        let seconds = sink.lock().unwrap().clone();
        let timeline = entries(&seconds, Duration::from_millis(2500));
        assert_eq!(timeline.len(), 3);
        let counts: Vec<_> = timeline.iter().map(|e| (e.ok, e.errors)).collect();
        assert_eq!(counts, [(3, 0), (0, 2), (1, 0)]);
        let p50 = timeline[0].p50_ms.0.unwrap();
        assert!(
            (p50 - 2.0).abs() < 0.03,
            "p50 {p50} ms (2 significant digits)"
        );
        assert_eq!(timeline[1].p50_ms, Na(None), "no answers in second 1");
        assert_eq!(timeline[1].rps, Na(Some(0.0)));
        assert!(!timeline[0].partial && !timeline[1].partial);
        assert!(timeline[2].partial);
        assert!((timeline[2].duration_s - 0.5).abs() < 1e-9);
        assert_eq!(timeline[2].rps, Na(Some(2.0)), "1 answer in half a second");
    }

    #[test]
    fn what_was_recorded_after_the_end_joins_the_last_second() {
        let seconds = [
            second(5, 0, &[100]),
            second(4, 1, &[200]),
            second(2, 0, &[]),
        ];
        let timeline = entries(&seconds, Duration::from_secs(2));
        assert_eq!(timeline.len(), 2);
        assert_eq!((timeline[1].ok, timeline[1].errors), (6, 1));
        assert!(timeline.iter().all(|e| !e.partial));
        assert_eq!(timeline.iter().map(|e| e.ok).sum::<u64>(), 11);
        // A run too short to measure still keeps what it recorded.
        let timeline = entries(&seconds[..1], Duration::ZERO);
        assert_eq!((timeline.len(), timeline[0].ok), (1, 5));
        assert_eq!(timeline[0].rps, Na(None));
        assert!(entries(&[], Duration::ZERO).is_empty());
    }

    #[test]
    fn the_csv_has_a_header_and_a_row_per_second() {
        let timeline = entries(&[second(3, 1, &[1500])], Duration::from_millis(400));
        let text = String::from_utf8(to_csv(&timeline).unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), CSV_COLUMNS.join(","));
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let back: Vec<Entry> = reader.deserialize().map(Result::unwrap).collect();
        assert_eq!(back, timeline);
        let empty = String::from_utf8(to_csv(&[]).unwrap()).unwrap();
        assert_eq!(empty.trim_end(), CSV_COLUMNS.join(","));
    }

    #[test]
    fn the_spread_covers_whole_seconds_only() {
        let seconds = [second(10, 0, &[]), second(30, 0, &[]), second(20, 0, &[])];
        let timeline = entries(&seconds, Duration::from_millis(2100));
        assert_eq!(spread(&timeline), Some((2, 10.0, 20.0, 30.0)));
        assert_eq!(spread(&timeline[..1]), None);
    }
}
