//! The Markdown report of a suite run, with its plots; for the `paper` preset, beside the
//! published figures; for the `scale` preset, a table per sweep (`scale_report`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use fastrand::Rng;

use super::placement::Placement;
use super::plots::{self, Bar};
use super::{scale_report, CellSpec, SuiteOptions};
use crate::meta::{self, Machine};
use crate::output::{self, ResultRow, Status};
use crate::stats::{self, Estimate, Ranked};

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

/// Figures of one server in one cell, over its repetitions.
struct Summary {
    /// Rows with figures (the server was measured).
    measured: Vec<ResultRow>,
    /// The first note worth showing.
    note: String,
    /// Repetitions in all, and how many failed or stopped early.
    reps: usize,
    failures: usize,
}

impl Summary {
    fn values(&self, f: impl Fn(&ResultRow) -> Option<f64>) -> Vec<f64> {
        self.measured.iter().filter_map(f).collect()
    }

    fn estimate(&self, f: impl Fn(&ResultRow) -> Option<f64>, rng: &mut Rng) -> Option<Estimate> {
        stats::estimate(&self.values(f), rng)
    }

    fn median(&self, f: impl Fn(&ResultRow) -> Option<f64>) -> Option<f64> {
        stats::median(&self.values(f))
    }

    /// Client-bound in most repetitions.
    fn client_bound(&self) -> bool {
        let bound = self.measured.iter().filter(|r| r.client_bound).count();
        !self.measured.is_empty() && 2 * bound > self.measured.len()
    }

    fn max_of(&self, f: impl Fn(&ResultRow) -> Option<u64>) -> Option<u64> {
        self.measured.iter().filter_map(f).max()
    }
}

/// Server CPU per request inside the window, in µs.
fn cpu_us(r: &ResultRow) -> Option<f64> {
    Some(r.server_cpu_s.0? * 1e6 / r.server_requests.0.filter(|&n| n > 0)? as f64)
}

fn switches_per_request(r: &ResultRow) -> Option<f64> {
    Some(r.server_ctx_switches.0? as f64 / r.server_requests.0.filter(|&n| n > 0)? as f64)
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
                    reps: 0,
                    failures: 0,
                },
            )
        });
        let sum = &mut entry.1;
        sum.reps += 1;
        if row.status.is_failure() {
            sum.failures += 1;
        }
        let first_problem = row.status != Status::Ok && sum.note.is_empty();
        if (first_problem || (sum.note.is_empty() && !row.notes.is_empty()))
            && !row.notes.is_empty()
        {
            sum.note = row.notes.clone();
        }
        if row.server_cpu_s.0.is_some() {
            sum.measured.push(row.clone());
        }
    }
    let known: Vec<&str> = super::servers().iter().map(|d| d.name).collect();
    order.sort_by_key(|name| known.iter().position(|k| k == name).unwrap_or(usize::MAX));
    order
        .into_iter()
        .filter_map(|name| by_server.remove(&name).map(|(class, s)| (name, class, s)))
        .collect()
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("NA".into(), |v| format!("{v:.digits$}"))
}

fn e(v: Option<Estimate>, digits: usize) -> String {
    v.map_or("NA".into(), |v| v.show(digits))
}

/// The reference row for ratios of server CPU per request: the epoll server.
const RATIO_BASE: &str = "epoll";

/// The cost columns of a row: CPU per request with its interval, the ratio to the epoll
/// server's, context switches per request, memory of the tree, threads and processes.
fn costs(sum: &Summary, base: Option<&Summary>, rng: &mut Rng) -> ([String; 5], Option<Estimate>) {
    let cpu = sum.estimate(cpu_us, rng);
    let ratio = base.and_then(|b| {
        // Paired by repetition: repetition k of both rows ran at about the same moment.
        let pairs: Vec<(f64, f64)> = sum
            .measured
            .iter()
            .filter_map(|r| {
                let other = b.measured.iter().find(|o| o.repetition == r.repetition)?;
                Some((cpu_us(r)?, cpu_us(other)?))
            })
            .collect();
        stats::paired_ratio(&pairs, rng)
    });
    let rss = sum
        .max_of(|r| r.server_peak_rss_kb.0)
        .map(|kb| kb as f64 / 1024.0);
    let tp = match (
        sum.max_of(|r| r.server_threads.0),
        sum.max_of(|r| r.server_processes.0),
    ) {
        (Some(t), Some(p)) => format!("{t} / {p}"),
        _ => "NA".into(),
    };
    (
        [
            e(cpu, 1),
            e(ratio, 2),
            f(sum.median(switches_per_request), 2),
            f(rss, 1),
            tp,
        ],
        cpu,
    )
}

/// The bars of a cell's CPU plot: each server's CPU per request as its table gives it.
type Bars = Vec<Bar>;

fn push_bar(bars: &mut Bars, name: &str, cpu: Option<Estimate>) {
    if let Some(estimate) = cpu {
        bars.push(Bar {
            name: name.to_string(),
            estimate,
        });
    }
}

const COST_HEAD: &str = "server CPU µs/req [interval] | CPU/req vs epoll | ctx sw/req | peak MiB (tree) | threads / procs";

/// Marks for the last column: client-bound, failures, steal.
fn flags(sum: &Summary) -> String {
    let mut out: Vec<String> = Vec::new();
    if sum.client_bound() {
        out.push("‡ client-bound".into());
    }
    let with = |status| sum.measured.iter().filter(|r| r.status == status).count();
    let errors = with(Status::Errors);
    if errors > 0 {
        out.push(format!("errors in {errors}/{}", sum.reps));
    }
    if sum.failures > 0 {
        out.push(format!("**failed {}/{}**", sum.failures, sum.reps));
    }
    let not_held = with(Status::Limit);
    if not_held > 0 {
        out.push(format!("✗ level not held in {not_held}/{}", sum.reps));
    }
    if sum.measured.is_empty() {
        let unavailable = sum.note.is_empty() || sum.failures == 0;
        out.push(
            if unavailable {
                "not measured"
            } else {
                "**not measured**"
            }
            .into(),
        );
    }
    let steal = sum
        .measured
        .iter()
        .filter(|r| r.steal_pct.0.is_some_and(|p| p > meta::HIGH_STEAL_PCT))
        .count();
    if steal > 0 {
        out.push(format!("high steal in {steal}"));
    }
    out.join(", ")
}

fn base_of(summaries: &[(String, String, Summary)]) -> Option<&Summary> {
    summaries
        .iter()
        .find(|(n, _, s)| n == RATIO_BASE && !s.measured.is_empty())
        .map(|(_, _, s)| s)
}

/// A report: its Markdown and the plots it embeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The text of `latest.md`.
    pub markdown: String,
    /// The plots, as (file name beside `latest.md`, SVG text).
    pub plots: Vec<(String, String)>,
}

impl Written {
    /// Writes the plots, then `latest.md`, into `dir`, each atomically; returns the path of
    /// `latest.md`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        self.write_as(&dir.join("latest.md"))
    }

    /// As [`Written::write`], the Markdown to `markdown` and the plots beside it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_as(&self, markdown: &Path) -> io::Result<PathBuf> {
        let dir = markdown.parent().unwrap_or(Path::new("."));
        for (name, svg) in &self.plots {
            output::write_atomic(&dir.join(name), svg.as_bytes())?;
        }
        output::write_atomic(markdown, self.markdown.as_bytes())?;
        Ok(markdown.to_path_buf())
    }
}

/// Embeds a plot in the report: an image line, and the plot to write beside it.
pub(super) fn embed_plot(
    s: &mut String,
    plots: &mut Vec<(String, String)>,
    file: String,
    alt: &str,
    svg: String,
) {
    let _ = writeln!(s, "\n![{}]({file})", alt.replace(['[', ']'], ""));
    plots.push((file, svg));
}

/// The report for a finished run; `csv_name` is the file its rows went to.
pub fn markdown(
    opts: &SuiteOptions,
    machine: &Machine,
    rows: &[ResultRow],
    csv_name: &str,
) -> String {
    render(opts, machine, rows, csv_name).markdown
}

/// The report for a finished run, with its plots; `csv_name` is the file its rows went to.
pub fn render(
    opts: &SuiteOptions,
    machine: &Machine,
    rows: &[ResultRow],
    csv_name: &str,
) -> Written {
    let mut rng = Rng::with_seed(opts.seed);
    let mut plots = Vec::new();
    let mut s = String::new();
    let paper = opts.preset.name == "paper";
    let title = if paper {
        "The paper's tables, redone".to_string()
    } else {
        format!("Suite: {}", opts.preset.name)
    };
    let _ = writeln!(s, "# {title}\n");
    let first = rows.first();
    let when = first.map_or("NA", |r| r.time.as_str());
    let rev = first.map_or("NA", |r| r.git_rev.as_str());
    let build = first.map_or("NA", |r| r.build.as_str());
    let mut sources: Vec<&str> = rows
        .iter()
        .map(|r| r.cost_source.as_str())
        .filter(|c| *c != "NA")
        .collect();
    sources.sort_unstable();
    sources.dedup();
    let peers: Vec<String> = rows
        .iter()
        .filter(|r| (r.server == "node" || r.server == "nginx") && r.server_build != "NA")
        .map(|r| format!("{} {}", r.server, r.server_build))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = writeln!(
        s,
        "Measured {when} on `{}` ({}, {} cores, Linux {}), git `{rev}`, bench-client {build}. \
         Generated by `bench-client {}`; every row is in `{csv_name}` beside this file (columns: \
         results/README.md).\n",
        machine.host,
        machine.cpu_model,
        machine.cores,
        machine.kernel,
        if paper {
            "paper".to_string()
        } else {
            format!("suite --preset {}", opts.preset.name)
        },
    );
    let scale = opts.preset.cells.iter().any(|c| c.scale.is_some());
    let placement = match &opts.placement {
        Placement::Shared => "`shared`: client and servers share every core".to_string(),
        split => format!(
            "`{}`: each server on its own cores, the client (and any hostile clients) on the others",
            split.label()
        ),
    };
    let _ = writeln!(
        s,
        "- **Method:** {} repetitions per cell, each in a new random order (seed {}), {}. \
         Cores: {placement}. Server costs cover the measured window only, the whole \
         process tree (source: {}); see docs/method.md.\n\
         - **Reading the tables:** a figure is the median of the repetitions with its bootstrap \
         interval in brackets (95 % percentile bootstrap of the median; with 5 repetitions or \
         fewer that is the range of the repetitions, which holds the true median with about 94 % \
         confidence at 5 and 75 % at 3). A ratio to epoll is paired by repetition. ‡ marks a client-bound server (the client used at least \
         80 % of the cores its threads could use): its req/s and latency are the client's ceiling, so no ordering is \
         claimed between two such rows; server CPU per request separates them better. In a \
         ranking, `≈` means tied within noise with the first server of its tier (the intervals \
         overlap), and `<` or `>` starts a new tier.{}\n",
        opts.reps,
        opts.seed,
        if scale {
            "each cell measured for a fixed window (the rows' `duration_s`)".to_string()
        } else {
            format!("request counts x{}", opts.scale)
        },
        if sources.is_empty() {
            "none".to_string()
        } else {
            sources.join(", ")
        },
        if peers.is_empty() {
            String::new()
        } else {
            format!("\n- **Peers:** {}.", peers.join("; "))
        }
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
             (the paper's protocol, `--protocol raw`); bench-client plays ab. What agrees with \
             the paper and what does not, and why: docs/reproducing-the-paper.md.\n"
        );
    }
    if opts.preset.name == "hostile" {
        hostile_summary(&mut s, opts, rows);
    }
    if scale {
        scale_report::sweeps(&mut s, &mut plots, rows);
        let _ = writeln!(s, "## Every cell\n");
    }
    let heading = if scale { "###" } else { "##" };
    for cell in &opts.preset.cells {
        let summaries = summarize(rows, &cell.table);
        if scale && summaries.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{heading} {}\n", cell.title);
        let requests = cell.requests * opts.scale;
        let mut bars = Vec::new();
        match cell.table.as_str() {
            "paper-1" if paper => {
                paper_table_1(&mut s, &summaries, requests, &mut rng, &mut bars);
            }
            "paper-2" if paper => {
                paper_table_2(&mut s, &summaries, cell, requests, &mut rng, &mut bars);
            }
            _ => generic_table(&mut s, &summaries, &mut rng, &mut bars),
        }
        cost_ranking(&mut s, &summaries, &mut rng);
        let notes: Vec<String> = summaries
            .iter()
            .filter(|(_, _, sum)| !sum.note.is_empty())
            .map(|(name, _, sum)| format!("- {name}: {}", sum.note))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\n{}", notes.join("\n"));
        }
        if !bars.is_empty() {
            let title = format!("Server CPU per request: {}", cell.title);
            let svg = plots::cpu_bars(&title, &bars);
            embed_plot(
                &mut s,
                &mut plots,
                format!("cpu-{}.svg", cell.table),
                &title,
                svg,
            );
        }
        s.push('\n');
    }
    Written { markdown: s, plots }
}

/// Every measured server ordered by CPU per request, cheapest first, ties marked.
fn cost_ranking(s: &mut String, summaries: &[(String, String, Summary)], rng: &mut Rng) {
    let mut items: Vec<Ranked> = summaries
        .iter()
        .filter_map(|(name, _, sum)| {
            Some(Ranked {
                name: name.clone(),
                estimate: sum.estimate(cpu_us, rng)?,
                limited: false,
            })
        })
        .collect();
    if items.len() > 1 {
        let _ = writeln!(
            s,
            "\nServer CPU per request, cheapest first: {}.",
            stats::ranking(&mut items, false)
        );
    }
}

fn generic_table(
    s: &mut String,
    summaries: &[(String, String, Summary)],
    rng: &mut Rng,
    bars: &mut Bars,
) {
    let _ = writeln!(
        s,
        "| server | model | req/s [interval] | p50 ms | p99 ms | errors | {COST_HEAD} | client CPU % | flags |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
    );
    let base = base_of(summaries);
    for (name, class, sum) in summaries {
        let rps = sum.estimate(|r| Some(r.rps), rng);
        let errors = sum.median(|r| Some(super::errors(r) as f64));
        let (c, cpu) = costs(sum, base, rng);
        push_bar(bars, name, cpu);
        let bound = if sum.client_bound() { " ‡" } else { "" };
        let _ = writeln!(
            s,
            "| {name} | {class} | {}{bound} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e(rps, 0),
            f(sum.median(|r| r.lat_p50_ms.0), 3),
            f(sum.median(|r| r.lat_p99_ms.0), 3),
            f(errors, 0),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            f(sum.median(|r| Some(r.client_cpu_pct)), 0),
            flags(sum)
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
    let clean = summarize(rows, &cells[0].table);
    for (name, _, sum) in &clean {
        let base = sum.median(|r| Some(r.rps));
        let mut line = format!("| {name} | {} |", f(base, 0));
        for cell in cells.iter().skip(1) {
            let cell_rows = summarize(rows, &cell.table);
            let Some((_, _, other)) = cell_rows.iter().find(|(n, _, _)| n == name) else {
                line.push_str(" NA |");
                continue;
            };
            let kept = match (other.median(|r| Some(r.rps)), base) {
                (Some(r), Some(b)) if b > 0.0 => format!("{:.0}%", 100.0 * r / b),
                _ => "NA".into(),
            };
            let errors = other.median(|r| Some(super::errors(r) as f64));
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

fn paper_table_1(
    s: &mut String,
    summaries: &[(String, String, Summary)],
    requests: u64,
    rng: &mut Rng,
    bars: &mut Bars,
) {
    let _ = writeln!(
        s,
        "| server | model | paper total s | paper req/s | total s [interval] | req/s [interval] | x paper req/s | {COST_HEAD} | flags |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    let base = base_of(summaries);
    for (name, class, sum) in summaries {
        let p = paper_for(1, name);
        let rps = sum.estimate(|r| Some(r.rps), rng);
        let total = sum.estimate(|r| Some(r.elapsed_s), rng);
        let ratio = match (&p, rps) {
            (Some(p), Some(r)) => format!("{:.1}", r.median / p.requests_per_s),
            _ => "-".into(),
        };
        let (c, cpu) = costs(sum, base, rng);
        push_bar(bars, name, cpu);
        let bound = if sum.client_bound() { " ‡" } else { "" };
        let _ = writeln!(
            s,
            "| {name} | {class} | {} | {} | {} | {}{bound} | {ratio} | {} | {} | {} | {} | {} | {} |",
            p.as_ref()
                .map_or("-".into(), |p| format!("{:.3}", p.total_s)),
            p.as_ref()
                .map_or("-".into(), |p| format!("{:.0}", p.requests_per_s)),
            e(total, 3),
            e(rps, 0),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            flags(sum)
        );
    }
    let _ = writeln!(s, "\nEach repetition sends {requests} requests.");
    ordering_note(
        s,
        summaries,
        1,
        |sum, rng| sum.estimate(|r| Some(r.rps), rng),
        true,
        "req/s, highest first",
        rng,
    );
}

fn paper_table_2(
    s: &mut String,
    summaries: &[(String, String, Summary)],
    cell: &CellSpec,
    requests: u64,
    rng: &mut Rng,
    bars: &mut Bars,
) {
    let serverkit::Workload::Delay(delay) = cell.workload else {
        return generic_table(s, summaries, rng, bars);
    };
    let rounds = requests.div_ceil(cell.concurrency as u64) as f64;
    let ideal_concurrent = rounds * delay.as_secs_f64();
    let ideal_iterative = requests as f64 * delay.as_secs_f64();
    let _ = writeln!(
        s,
        "| server | model | paper total s | paper ms/req | total s [interval] | x ideal | within 1.01 x | mean ms/req | {COST_HEAD} | flags |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|"
    );
    let _ = writeln!(s, "| ideal, concurrent | {} / {} x {:.0} ms | 2.0 | | {ideal_concurrent:.3} | 1.000 | | | | | | | | |", requests, cell.concurrency, delay.as_secs_f64() * 1e3);
    let _ = writeln!(
        s,
        "| ideal, iterative | {} x {:.0} ms | 10.0 | | {ideal_iterative:.3} | 1.000 | | | | | | | | |",
        requests,
        delay.as_secs_f64() * 1e3
    );
    let base = base_of(summaries);
    for (name, class, sum) in summaries {
        let p = paper_for(2, name);
        let total = sum.estimate(|r| Some(r.elapsed_s), rng);
        let ideal = if name == "iterative" {
            ideal_iterative
        } else {
            ideal_concurrent
        };
        let x = total.map(|t| t.median / ideal);
        let within = match x {
            Some(x) if x <= 1.01 => "yes",
            Some(_) => "**no**",
            None => "NA",
        };
        let (c, cpu) = costs(sum, base, rng);
        push_bar(bars, name, cpu);
        let _ = writeln!(
            s,
            "| {name} | {class} | {} | {} | {} | {} | {within} | {} | {} | {} | {} | {} | {} | {} |",
            p.as_ref().map_or("-".into(), |p| format!("{:.3}", p.total_s)),
            p.as_ref().and_then(|p| p.ms_per_request).map_or("-".into(), |m| format!("{m:.1}")),
            e(total, 3),
            f(x, 3),
            f(sum.median(|r| r.lat_mean_ms.0), 1),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            flags(sum)
        );
    }
    ordering_note(
        s,
        summaries,
        2,
        |sum, rng| sum.estimate(|r| Some(r.elapsed_s), rng),
        false,
        "total time, shortest first",
        rng,
    );
}

/// States the paper's ordering of its four servers and ours (with ties), and says whether
/// the measurement contradicts the paper: only intervals that separate can.
fn ordering_note(
    s: &mut String,
    summaries: &[(String, String, Summary)],
    table: u32,
    figure: impl Fn(&Summary, &mut Rng) -> Option<Estimate>,
    descending: bool,
    what: &str,
    rng: &mut Rng,
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
    paper.sort_by(|a, b| {
        if descending {
            b.1.total_cmp(&a.1)
        } else {
            a.1.total_cmp(&b.1)
        }
    });
    let mut ours: Vec<Ranked> = paper
        .iter()
        .filter_map(|(name, _)| {
            let (_, _, sum) = summaries.iter().find(|(n, _, _)| n == name)?;
            Some(Ranked {
                name: name.clone(),
                estimate: figure(sum, rng)?,
                // Table 1's req/s of a client-bound row is the client's figure.
                limited: table == 1 && sum.client_bound(),
            })
        })
        .collect();
    let separator = if descending { " > " } else { " < " };
    let paper_names: Vec<String> = paper.iter().map(|(n, _)| n.clone()).collect();
    if ours.len() < paper.len() {
        let _ = writeln!(
            s,
            "\nOrdering ({what}): not all of the paper's servers were measured here."
        );
        return;
    }
    let consistent = stats::consistent_with(&paper_names, &ours, descending);
    let here = stats::ranking(&mut ours, descending);
    if consistent {
        let _ = writeln!(
            s,
            "\nOrdering ({what}): the paper's is {}; here {here}, which does not contradict it \
             (only intervals that separate, between rows not both client-bound, count).",
            paper_names.join(separator)
        );
    } else {
        let _ = writeln!(
            s,
            "\n**Ordering ({what}) differs from the paper's.** Paper: {}. Here: {here} (at least \
             one pair the paper orders one way is separated the other way here). \
             docs/reproducing-the-paper.md discusses why.",
            paper_names.join(separator)
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
}
