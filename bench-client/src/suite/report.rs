//! The Markdown report of a suite run; for the `paper` preset, beside the published figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{CellSpec, SuiteOptions};
use crate::meta::Machine;
use crate::output::ResultRow;

/// The paper's figures (bench-client/data/paper-tables.csv, source in data/README.md).
pub const PAPER_TABLES: &str = include_str!("../../data/paper-tables.csv");

/// One published row.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PaperRow {
    /// 1 or 2.
    pub table: u32,
    /// Workload.
    pub workload: String,
    /// Requests.
    pub requests: u64,
    /// Concurrency.
    pub concurrency: u64,
    /// Server name in the paper.
    pub server: String,
    /// Model.
    pub model: String,
    /// Time for the whole test, seconds.
    pub total_s: f64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// ab's mean time per request (Table 2 only).
    pub ms_per_request: Option<f64>,
}

/// The published rows.
///
/// # Panics
/// If the embedded data file does not parse (a test guards it).
pub fn paper_rows() -> Vec<PaperRow> {
    csv::Reader::from_reader(PAPER_TABLES.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("embedded paper tables parse")
}

/// Which of our rows stands for a paper row.
fn ours_for(paper_model: &str) -> Option<&'static str> {
    match paper_model {
        "iterative" => Some("iterative"),
        "fork-per-connection" => Some("fork"),
        "thread-per-connection" => Some("threads"),
        "event-loop" => Some("node"),
        _ => None,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Figures of one server in one cell, over its repetitions.
struct Summary {
    measured: Vec<ResultRow>,
    note: String,
}

impl Summary {
    fn stat(&self, f: impl Fn(&ResultRow) -> Option<f64>) -> Option<f64> {
        median(self.measured.iter().filter_map(&f).collect())
    }

    fn spread(&self, f: impl Fn(&ResultRow) -> f64) -> Option<(f64, f64)> {
        let v: Vec<f64> = self.measured.iter().map(f).collect();
        let min = v.iter().copied().reduce(f64::min)?;
        let max = v.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }

    fn per_request(&self, f: impl Fn(&ResultRow) -> Option<f64>) -> Option<f64> {
        self.stat(|r| Some(f(r)? / r.server_requests.0? as f64))
    }

    fn max_of(&self, f: impl Fn(&ResultRow) -> Option<u64>) -> Option<u64> {
        self.measured.iter().filter_map(f).max()
    }
}

fn summarize(rows: &[ResultRow], table: &str) -> Vec<(String, String, Summary)> {
    let mut order: Vec<String> = Vec::new();
    let mut by_server: BTreeMap<String, (String, Summary)> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.table == table) {
        if !by_server.contains_key(&row.server) {
            order.push(row.server.clone());
        }
        let entry = by_server.entry(row.server.clone()).or_insert_with(|| {
            (
                row.model_class.clone(),
                Summary {
                    measured: Vec::new(),
                    note: String::new(),
                },
            )
        });
        if row.notes.starts_with("not measured") || row.partial {
            if entry.1.note.is_empty() {
                entry.1.note = row.notes.clone();
            }
            if row.notes.starts_with("not measured") {
                continue;
            }
        } else if !row.notes.is_empty() && entry.1.note.is_empty() {
            entry.1.note = row.notes.clone();
        }
        entry.1.measured.push(row.clone());
    }
    order
        .into_iter()
        .filter_map(|name| by_server.remove(&name).map(|(class, s)| (name, class, s)))
        .collect()
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("NA".into(), |v| format!("{v:.digits$}"))
}

fn costs(s: &Summary) -> [String; 5] {
    let cpu_us = s
        .per_request(|r| Some(r.server_cpu_user_s.0? + r.server_cpu_sys_s.0?))
        .map(|v| v * 1e6);
    let vol = s.per_request(|r| r.server_ctx_voluntary.0.map(|v| v as f64));
    let invol = s.per_request(|r| r.server_ctx_involuntary.0.map(|v| v as f64));
    let rss = s
        .max_of(|r| r.server_peak_rss_kb.0)
        .map(|kb| kb as f64 / 1024.0);
    let tp = match (
        s.max_of(|r| r.server_threads.0),
        s.max_of(|r| r.server_processes.0),
    ) {
        (Some(t), Some(p)) => format!("{t} / {p}"),
        _ => "NA".into(),
    };
    [
        f(cpu_us, 1),
        format!("{} / {}", f(vol, 2), f(invol, 2)),
        f(rss, 1),
        tp,
        String::new(),
    ]
}

const COST_HEAD: &str =
    "server CPU us/req | ctx sw/req (vol / invol) | peak RSS MiB | threads / procs";

/// The report for a finished run.
pub fn markdown(opts: &SuiteOptions, machine: &Machine, rows: &[ResultRow]) -> String {
    let mut s = String::new();
    let paper = opts.preset.name == "paper";
    let title = if paper {
        "The paper's tables, redone".to_string()
    } else {
        format!("Suite: {}", opts.preset.name)
    };
    let _ = writeln!(s, "# {title}\n");
    let when = rows.first().map(|r| r.time.as_str()).unwrap_or("NA");
    let rev = rows.first().map(|r| r.git_rev.as_str()).unwrap_or("NA");
    let _ =
        writeln!(
        s,
        "Measured {when} on `{}` ({}, {} cores, Linux {}), git {rev}: {} repetitions per cell, \
         request counts x{}, client and servers on the same machine over loopback. Generated \
         by `bench-client {}`; the rows are in the CSV beside this file (columns: \
         results/README.md).\n",
        machine.host,
        machine.cpu_model,
        machine.cores,
        machine.kernel,
        opts.reps,
        opts.scale,
        if paper { "paper".to_string() } else { format!("suite --preset {}", opts.preset.name) },
    );
    if !opts.server_args.is_empty() {
        let _ = writeln!(
            s,
            "The archbench servers ran with `{}` (the reference servers as always).\n",
            opts.server_args.join(" ")
        );
    }
    if paper {
        let _ = writeln!(
            s,
            "Each request is a new TCP connection; the server answers `HelloWorld\\n` and closes \
             (the paper's protocol, `--protocol raw`); bench-client plays ab. Figures are medians \
             over the repetitions, with the spread (min-max). Server costs are per request, \
             from the server's `wait4` rusage (its reaped children included) over its whole \
             life in a repetition. What agrees with the paper and what does not, and why: \
             docs/reproducing-the-paper.md.\n"
        );
    }
    if opts.preset.name == "hostile" {
        hostile_summary(&mut s, opts, rows);
    }
    for cell in &opts.preset.cells {
        let summaries = summarize(rows, cell.table);
        let _ = writeln!(s, "## {}\n", cell.title);
        let requests = cell.requests * opts.scale;
        match cell.table {
            "paper-1" if paper => paper_table_1(&mut s, &summaries, requests),
            "paper-2" if paper => paper_table_2(&mut s, &summaries, cell, requests),
            _ => generic_table(&mut s, &summaries),
        }
        let notes: Vec<String> = summaries
            .iter()
            .filter(|(_, _, sum)| !sum.note.is_empty())
            .map(|(name, _, sum)| format!("- {name}: {}", sum.note))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\n{}", notes.join("\n"));
        }
        s.push('\n');
    }
    s
}

fn generic_table(s: &mut String, summaries: &[(String, String, Summary)]) {
    let _ = writeln!(
        s,
        "| server | model | req/s (min-max) | total s | p50 ms | p99 ms | errors | {COST_HEAD} |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (name, class, sum) in summaries {
        let spread = sum
            .spread(|r| r.rps)
            .map_or("".into(), |(a, b)| format!(" ({a:.0}-{b:.0})"));
        let errors = sum.stat(|r| Some(super::errors(r) as f64));
        let c = costs(sum);
        let _ = writeln!(
            s,
            "| {name} | {class} | {}{spread} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(sum.stat(|r| Some(r.rps)), 0),
            f(sum.stat(|r| Some(r.elapsed_s)), 3),
            f(sum.stat(|r| r.lat_p50_ms.0), 3),
            f(sum.stat(|r| r.lat_p99_ms.0), 3),
            f(errors, 0),
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
}

/// The hostile preset at a glance: throughput kept beside each adversary, as a share of the
/// same server's clean run, and whether the server was still standing afterwards.
fn hostile_summary(s: &mut String, opts: &SuiteOptions, rows: &[ResultRow]) {
    let cells = &opts.preset.cells;
    let _ = writeln!(
        s,
        "## Throughput kept\n\nreq/s of the normal load beside each adversary, as a share of the same \
         server's clean run (medians); then errors of the normal load (median), and whether the \
         server answered a request afterwards and stopped cleanly (all repetitions).\n"
    );
    let heads: Vec<String> = cells.iter().skip(1).map(|c| c.adversary.label()).collect();
    let _ = writeln!(s, "| server | clean req/s | {} |", heads.join(" | "));
    let _ = writeln!(s, "|---|---:|{}", "---|".repeat(heads.len()));
    let clean = summarize(rows, cells[0].table);
    for (name, _, sum) in &clean {
        let base = sum.stat(|r| Some(r.rps));
        let mut line = format!("| {name} | {} |", f(base, 0));
        for cell in cells.iter().skip(1) {
            let cell_rows = summarize(rows, cell.table);
            let Some((_, _, other)) = cell_rows.iter().find(|(n, _, _)| n == name) else {
                line.push_str(" NA |");
                continue;
            };
            let kept = match (other.stat(|r| Some(r.rps)), base) {
                (Some(r), Some(b)) if b > 0.0 => format!("{:.0}%", 100.0 * r / b),
                _ => "NA".into(),
            };
            let errors = other.stat(|r| Some(super::errors(r) as f64));
            let standing = rows
                .iter()
                .filter(|r| r.table == cell.table && &r.server == name)
                .all(|r| r.server_ok_after.0 == Some(true));
            let _ = write!(
                line,
                " {kept}, {} err, {} |",
                f(errors, 0),
                if standing { "ok" } else { "**down**" }
            );
            let _ = cell_rows;
        }
        let _ = writeln!(s, "{line}");
    }
    s.push('\n');
}

fn paper_for(table: u32, ours: &str) -> Option<PaperRow> {
    paper_rows()
        .into_iter()
        .find(|p| p.table == table && ours_for(&p.model) == Some(ours))
}

fn paper_table_1(s: &mut String, summaries: &[(String, String, Summary)], requests: u64) {
    let _ = writeln!(
        s,
        "| server | model | paper total s | paper req/s | total s (min-max) | req/s | x paper req/s | {COST_HEAD} |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (name, class, sum) in summaries {
        let p = paper_for(1, name);
        let rps = sum.stat(|r| Some(r.rps));
        let total = sum.stat(|r| Some(r.elapsed_s));
        let spread = sum
            .spread(|r| r.elapsed_s)
            .map_or("".into(), |(a, b)| format!(" ({a:.3}-{b:.3})"));
        let ratio = match (&p, rps) {
            (Some(p), Some(r)) => format!("{:.1}", r / p.requests_per_s),
            _ => "-".into(),
        };
        let c = costs(sum);
        let _ = writeln!(
            s,
            "| {name} | {class} | {} | {} | {}{spread} | {} | {ratio} | {} | {} | {} | {} |",
            p.as_ref()
                .map_or("-".into(), |p| format!("{:.3}", p.total_s)),
            p.as_ref()
                .map_or("-".into(), |p| format!("{:.0}", p.requests_per_s)),
            f(total, 3),
            f(rps, 0),
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
    let _ = writeln!(s, "\nEach repetition sends {requests} requests.");
    ordering_note(
        s,
        summaries,
        1,
        |sum| sum.stat(|r| Some(r.rps)),
        true,
        "req/s, highest first",
    );
}

fn paper_table_2(
    s: &mut String,
    summaries: &[(String, String, Summary)],
    cell: &CellSpec,
    requests: u64,
) {
    let serverkit::Workload::Delay(delay) = cell.workload else {
        return generic_table(s, summaries);
    };
    let rounds = requests.div_ceil(cell.concurrency as u64) as f64;
    let ideal_concurrent = rounds * delay.as_secs_f64();
    let ideal_iterative = requests as f64 * delay.as_secs_f64();
    let _ = writeln!(
        s,
        "| server | model | paper total s | paper ms/req | total s (min-max) | x ideal | within 1.01 x | mean ms/req | {COST_HEAD} |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
    );
    let _ = writeln!(s, "| ideal, concurrent | {} / {} x {:.0} ms | 2.0 | | {ideal_concurrent:.3} | 1.000 | | | | | | |", requests, cell.concurrency, delay.as_secs_f64() * 1e3);
    let _ = writeln!(
        s,
        "| ideal, iterative | {} x {:.0} ms | 10.0 | | {ideal_iterative:.3} | 1.000 | | | | | | |",
        requests,
        delay.as_secs_f64() * 1e3
    );
    for (name, class, sum) in summaries {
        let p = paper_for(2, name);
        let total = sum.stat(|r| Some(r.elapsed_s));
        let spread = sum
            .spread(|r| r.elapsed_s)
            .map_or("".into(), |(a, b)| format!(" ({a:.3}-{b:.3})"));
        let ideal = if name == "iterative" {
            ideal_iterative
        } else {
            ideal_concurrent
        };
        let x = total.map(|t| t / ideal);
        let within = match x {
            Some(x) if x <= 1.01 => "yes",
            Some(_) => "**no**",
            None => "NA",
        };
        let c = costs(sum);
        let _ =
            writeln!(
            s,
            "| {name} | {class} | {} | {} | {}{spread} | {} | {within} | {} | {} | {} | {} | {} |",
            p.as_ref().map_or("-".into(), |p| format!("{:.3}", p.total_s)),
            p.as_ref().and_then(|p| p.ms_per_request).map_or("-".into(), |m| format!("{m:.1}")),
            f(total, 3),
            f(x, 3),
            f(sum.stat(|r| r.lat_mean_ms.0), 1),
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
    ordering_note(
        s,
        summaries,
        2,
        |sum| sum.stat(|r| Some(r.elapsed_s)),
        false,
        "total time, shortest first",
    );
}

/// States the paper's ordering of its four servers and ours, and says whether they differ.
fn ordering_note(
    s: &mut String,
    summaries: &[(String, String, Summary)],
    table: u32,
    figure: impl Fn(&Summary) -> Option<f64>,
    descending: bool,
    what: &str,
) {
    let mut paper: Vec<(String, f64)> = paper_rows()
        .into_iter()
        .filter(|p| p.table == table)
        .filter_map(|p| {
            Some((
                ours_for(&p.model)?.to_string(),
                if table == 1 {
                    p.requests_per_s
                } else {
                    p.total_s
                },
            ))
        })
        .collect();
    let mut ours: Vec<(String, f64)> = paper
        .iter()
        .filter_map(|(name, _)| {
            let (_, _, sum) = summaries.iter().find(|(n, _, _)| n == name)?;
            Some((name.clone(), figure(sum)?))
        })
        .collect();
    let sort = |v: &mut Vec<(String, f64)>| {
        v.sort_by(|a, b| {
            if descending {
                b.1.total_cmp(&a.1)
            } else {
                a.1.total_cmp(&b.1)
            }
        });
    };
    sort(&mut paper);
    sort(&mut ours);
    let separator = if descending { " > " } else { " < " };
    let names = |v: &[(String, f64)]| {
        v.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(separator)
    };
    if ours.len() < paper.len() {
        let _ = writeln!(
            s,
            "\nOrdering ({what}): not all of the paper's servers were measured here."
        );
    } else if names(&ours) == names(&paper) {
        let _ = writeln!(
            s,
            "\nOrdering ({what}) agrees with the paper: {}.",
            names(&ours)
        );
    } else {
        let _ = writeln!(
            s,
            "\n**Ordering ({what}) differs from the paper's.** Paper: {}. Here: {}. \
             docs/reproducing-the-paper.md discusses why.",
            names(&paper),
            names(&ours)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_data_parses_and_maps_to_our_servers() {
        let rows = paper_rows();
        assert_eq!(rows.len(), 8);
        assert!(rows.iter().all(|r| ours_for(&r.model).is_some()));
        let t2_iter = rows
            .iter()
            .find(|r| r.table == 2 && r.model == "iterative")
            .unwrap();
        assert_eq!(
            (t2_iter.total_s, t2_iter.ms_per_request),
            (10.461, Some(104.606))
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
