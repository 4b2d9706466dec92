//! The gate's outputs: a Markdown summary (for a CI log or a pull-request comment), JSON for
//! machines, and every segment in CSV.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::verdict::{Change, Metric};
use super::{Comparison, Outcome, Segment};
use crate::output::write_atomic;

/// The three files of a run, written atomically into `dir`: `report.md`, `report.json` and
/// `segments.csv`. Returns their paths.
///
/// # Errors
/// When a file cannot be written.
pub fn write_all(dir: &Path, outcome: &Outcome, segments: &[Segment]) -> io::Result<[PathBuf; 3]> {
    std::fs::create_dir_all(dir)?;
    let md = dir.join("report.md");
    let json = dir.join("report.json");
    let csv = dir.join("segments.csv");
    write_atomic(&md, markdown(outcome).as_bytes())?;
    write_atomic(
        &json,
        &serde_json::to_vec_pretty(outcome).map_err(io::Error::other)?,
    )?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    for s in segments {
        writer.serialize(s).map_err(io::Error::other)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    write_atomic(&csv, &bytes)?;
    Ok([md, json, csv])
}

fn unit_text(metric: Metric, value: f64) -> String {
    match metric {
        Metric::Cpu => format!("{value:.2} µs"),
        Metric::Rps => format!("{value:.0}"),
        Metric::P99 => format!("{value:.3} ms"),
    }
}

/// Which round a table shows: a suspect of round 1 is labelled with what the confirmation
/// round made of it; a regression in the confirmation round fails the gate.
#[derive(Clone, Copy)]
enum Round {
    /// The confirmation round: its regressions are the gate's.
    Deciding,
    /// Round 1: its regressions are suspects for the confirmation round.
    Screen,
}

fn change_text(c: &Comparison, round: Round, o: &Outcome) -> &'static str {
    let key = super::unit_key(&c.server, &c.cell, c.metric);
    match (c.change, c.gated) {
        (Change::Regression, true) if matches!(round, Round::Screen) => {
            if o.confirmed.contains(&key) {
                "suspected; **confirmed**"
            } else if o.unconfirmed.contains(&key) {
                "suspected; cleared by the confirmation"
            } else {
                "suspected"
            }
        }
        (Change::Regression, true) => "**regression**",
        (Change::Regression, false) => "worse (not gated)",
        (Change::Improvement, _) => "improvement",
        (Change::Unchanged, _) if !c.resolved() => "unresolved (too noisy)",
        (Change::Unchanged, _) => "unchanged",
        (Change::NotJudged, _) => "not judged (client-bound)",
    }
}

fn table(out: &mut String, comparisons: &[Comparison], round: Round, o: &Outcome) {
    out.push_str(
        "| server | cell | metric | baseline | candidate | candidate / baseline [95% interval] | threshold (noise floor) | verdict |\n\
         |---|---|---|---:|---:|---|---:|---|\n",
    );
    for c in comparisons {
        let _ = writeln!(
            out,
            "| {} | {} | {}{} | {} | {} | {:.3} [{:.3}-{:.3}] | {:.1}% ({}) | {} |",
            c.server,
            c.cell,
            c.metric.label(),
            if c.change == Change::NotJudged && c.metric == Metric::Rps {
                " ‡"
            } else {
                ""
            },
            unit_text(c.metric, c.baseline),
            unit_text(c.metric, c.candidate),
            c.ratio,
            c.low,
            c.high,
            c.threshold * 100.0,
            c.floor
                .map_or("none".into(), |f| format!("{:.1}%", f * 100.0)),
            change_text(c, round, o)
        );
    }
}

/// The Markdown summary.
pub fn markdown(o: &Outcome) -> String {
    let mut out = String::new();
    let headline = match o.verdict.as_str() {
        "pass" => "PASS: no confirmed regression".to_string(),
        "regression" => format!(
            "REGRESSION: {} confirmed in a second round",
            o.confirmed.join(", ")
        ),
        _ => format!(
            "COULD NOT MEASURE: {}",
            o.error.as_deref().unwrap_or("unknown error")
        ),
    };
    let _ = writeln!(
        out,
        "# archbench regression gate\n\n**{headline}** (exit code {})\n",
        o.exit_code
    );
    let gate: Vec<&str> = o.gate.iter().map(|m| m.key()).collect();
    let _ = writeln!(
        out,
        "- baseline: `{}`; candidate: `{}`\n\
         - machine: {}\n\
         - method: per server and cell, {} ABBA pairs of {} ms segments (each side's server on the \
           same cores, the idle side stopped; orders from seed {}); ratio = the median of the pairs' \
           candidate/baseline, with the sign test's distribution-free 95% interval\n\
         - a regression: round 1 suspects a gated metric ({}) whose interval lies beyond the \
           threshold = max(minimum effect {:.1}%, the unit's noise floor), or reaches past it with the \
           estimate on the worse side; a confirmation round on fresh servers, {} pairs per suspected \
           unit, decides: the gate fails where its whole interval lies beyond the threshold\n\
         - noise floor: `{}` ({})\n\
         - wall time: {:.0} s{}",
        o.baseline,
        o.candidate,
        o.machine,
        o.pairs,
        o.segment_ms,
        o.seed,
        gate.join(", "),
        o.min_effect * 100.0,
        o.confirm_pairs,
        o.noise_file,
        if o.calibrated_now {
            "measured in this run by an A/A calibration"
        } else {
            "read from the cache"
        },
        o.wall_s,
        if o.calibrated_now {
            format!(" (calibration {:.0} s of it)", o.calibration_s)
        } else {
            String::new()
        }
    );
    for note in &o.notes {
        let _ = writeln!(out, "- {note}");
    }
    if o.stalls != [0, 0] {
        let _ = writeln!(
            out,
            "- stalled segments (no answer and no error), measured again: {} on the baseline's \
             side, {} on the candidate's. A stalled machine hits both sides alike; a server that \
             freezes shows up on its own side",
            o.stalls[0], o.stalls[1]
        );
    }
    let changed: Vec<&Comparison> = o
        .round
        .iter()
        .filter(|c| matches!(c.change, Change::Regression | Change::Improvement))
        .collect();
    if !o.unconfirmed.is_empty() {
        let _ = writeln!(
            out,
            "\nSuspected in round 1, not found by the confirmation round: {}.",
            o.unconfirmed.join(", ")
        );
    }
    // Unresolved after both rounds: a unit the confirmation round measured again is judged by
    // that round.
    let unresolved: Vec<String> = o
        .round
        .iter()
        .map(|c| {
            o.confirmation
                .iter()
                .find(|d| d.server == c.server && d.cell == c.cell && d.metric == c.metric)
                .unwrap_or(c)
        })
        .filter(|c| c.gated && !c.resolved())
        .map(|c| super::unit_key(&c.server, &c.cell, c.metric))
        .collect();
    if !unresolved.is_empty() {
        let _ = writeln!(
            out,
            "\nUnresolved: the interval reaches past the threshold, so the gate cannot rule out a \
             regression there (the unit is too noisy on this machine; more `--pairs` narrow it): \
             {}.",
            unresolved.join(", ")
        );
    }
    if !changed.is_empty() {
        out.push_str("\n## Changes beyond the threshold (round 1)\n\n");
        table(
            &mut out,
            &changed.into_iter().cloned().collect::<Vec<_>>(),
            Round::Screen,
            o,
        );
    }
    if !o.confirmation.is_empty() {
        out.push_str("\n## Confirmation round\n\n");
        table(&mut out, &o.confirmation, Round::Deciding, o);
    }
    if !o.round.is_empty() {
        out.push_str("\n## Round 1, every unit\n\n");
        table(&mut out, &o.round, Round::Screen, o);
        out.push_str(
            "\n‡ client-bound: both sides had segments where the load generator used its core \
             to the full, so req/s is the client's and is not judged; server CPU per request \
             is.\n",
        );
    }
    out
}
