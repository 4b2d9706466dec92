//! The scale preset's report: where each model stops scaling, a table per sweep and figure
//! (a column per level), and the plots against the level. Figures are medians over the
//! repetitions (the preset runs one); the per-cell tables with their intervals follow in the
//! report, as in every preset.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::plots::{self, Axes, Series};
use super::scale::{thousands, Step, Sweep};
use crate::output::{ResultRow, Status};
use crate::stats;

/// What became of one server at one level.
enum State {
    /// Held: measured, within the tolerance.
    Held,
    /// Measured, and could not hold it (why).
    Limit(String),
    /// Not run, because a lower level was not held.
    NotRun,
    /// Not measured for another reason: unavailable here, failed (why).
    Other(String),
}

struct Cell<'a> {
    rows: Vec<&'a ResultRow>,
    state: State,
}

impl Cell<'_> {
    /// The median of `f` over the rows with figures.
    fn median(&self, f: impl Fn(&ResultRow) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.server_cpu_s.0.is_some())
            .filter_map(|r| f(r))
            .collect();
        stats::median(&values)
    }
}

/// One sweep: its servers (in the suite's order, with their model), levels and cells.
struct Grid<'a> {
    sweep: Sweep,
    servers: Vec<(String, String)>,
    levels: Vec<usize>,
    cells: HashMap<(String, usize), Cell<'a>>,
}

fn state_of(rows: &[&ResultRow]) -> State {
    let first_note = |r: &ResultRow| r.notes.split("; ").next().unwrap_or_default().to_string();
    if let Some(r) = rows.iter().find(|r| r.status == Status::Limit) {
        if r.notes.starts_with("not run") {
            return State::NotRun;
        }
        let why = first_note(r);
        let why = why.strip_prefix(super::scale::NOT_HELD).unwrap_or(&why);
        return State::Limit(why.to_string());
    }
    match rows.iter().find(|r| !r.status.measured()) {
        Some(r) => State::Other(format!("{:?}: {}", r.status, first_note(r)).to_lowercase()),
        None => State::Held,
    }
}

fn grid(rows: &[ResultRow], sweep: Sweep) -> Option<Grid<'_>> {
    let mut by_cell: HashMap<(String, usize), Vec<&ResultRow>> = HashMap::new();
    let mut servers: Vec<(String, String)> = Vec::new();
    let mut levels: Vec<usize> = Vec::new();
    for row in rows.iter().filter(|r| Sweep::of_row(r) == Some(sweep)) {
        let Some(level) = Step::level_of_row(row) else {
            continue;
        };
        if !servers.iter().any(|(n, _)| n == &row.server) {
            servers.push((row.server.clone(), row.model_class.clone()));
        }
        if !levels.contains(&level) {
            levels.push(level);
        }
        by_cell
            .entry((row.server.clone(), level))
            .or_default()
            .push(row);
    }
    if levels.is_empty() {
        return None;
    }
    levels.sort_unstable();
    let known: Vec<&str> = super::servers().iter().map(|d| d.name).collect();
    servers.sort_by_key(|(name, _)| known.iter().position(|k| k == name).unwrap_or(usize::MAX));
    let cells = by_cell
        .into_iter()
        .map(|(key, rows)| {
            let state = state_of(&rows);
            (key, Cell { rows, state })
        })
        .collect();
    Some(Grid {
        sweep,
        servers,
        levels,
        cells,
    })
}

impl Grid<'_> {
    fn cell(&self, server: &str, level: usize) -> Option<&Cell<'_>> {
        self.cells.get(&(server.to_string(), level))
    }

    /// The highest level held before the first one that was not, and that one with why.
    fn reach(&self, server: &str) -> (Option<usize>, Option<(usize, String)>) {
        let mut held = None;
        for &level in &self.levels {
            match self.cell(server, level).map(|c| &c.state) {
                Some(State::Held) => held = Some(level),
                Some(State::Limit(why) | State::Other(why)) => {
                    return (held, Some((level, why.clone())))
                }
                Some(State::NotRun) | None => {}
            }
        }
        (held, None)
    }

    /// The level of most req/s among those held.
    fn best_level(&self, server: &str) -> Option<usize> {
        self.levels
            .iter()
            .filter_map(|&level| {
                let cell = self.cell(server, level)?;
                matches!(cell.state, State::Held)
                    .then(|| Some((level, cell.median(|r| Some(r.rps))?)))
                    .flatten()
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(level, _)| level)
    }

    /// A table: a row per server, a column per level, `show` formatting each held or
    /// not-held cell's figures.
    fn table(&self, s: &mut String, heading: &str, show: impl Fn(&Cell) -> Option<String>) {
        let _ = writeln!(s, "{heading}\n");
        let heads: Vec<String> = self.levels.iter().map(|&l| thousands(l)).collect();
        let _ = writeln!(s, "| server | {} |", heads.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(heads.len()));
        for (server, _) in &self.servers {
            let cells: Vec<String> = self
                .levels
                .iter()
                .map(|&level| match self.cell(server, level) {
                    None => String::new(),
                    Some(cell) => match &cell.state {
                        State::Held => show(cell).unwrap_or_else(|| "NA".into()),
                        State::Limit(_) => format!("✗ {}", show(cell).unwrap_or_default())
                            .trim_end()
                            .to_string(),
                        State::NotRun => "—".into(),
                        State::Other(_) => "n/a".into(),
                    },
                })
                .collect();
            let _ = writeln!(s, "| {server} | {} |", cells.join(" | "));
        }
        s.push('\n');
    }

    /// Each server's line of `f` over the levels it held.
    fn series(&self, f: impl Fn(&ResultRow) -> Option<f64>) -> Vec<Series> {
        self.servers
            .iter()
            .map(|(server, _)| Series {
                name: server.clone(),
                points: self
                    .levels
                    .iter()
                    .filter_map(|&level| {
                        let cell = self.cell(server, level)?;
                        matches!(cell.state, State::Held)
                            .then(|| Some((level as f64, cell.median(&f)?)))
                            .flatten()
                    })
                    .collect(),
            })
            .collect()
    }
}

fn cpu_us(r: &ResultRow) -> Option<f64> {
    Some(r.server_cpu_s.0? * 1e6 / r.server_requests.0.filter(|&n| n > 0)? as f64)
}

fn bound(cell: &Cell) -> &'static str {
    let bound = cell.rows.iter().filter(|r| r.client_bound).count();
    if 2 * bound > cell.rows.len() {
        " ‡"
    } else {
        ""
    }
}

fn threads_procs(cell: &Cell) -> Option<String> {
    let t = cell.rows.iter().filter_map(|r| r.server_threads.0).max()?;
    let p = cell
        .rows
        .iter()
        .filter_map(|r| r.server_processes.0)
        .max()?;
    Some(format!(
        "{} / {}",
        thousands(t as usize),
        thousands(p as usize)
    ))
}

fn bytes(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", thousands((-v).round() as usize))
    } else {
        thousands(v.round() as usize)
    }
}

/// The sweeps' sections of the scale report, their plots added to `plots`.
pub fn sweeps(s: &mut String, plots: &mut Vec<(String, String)>, rows: &[ResultRow]) {
    let grids: Vec<Grid> = Sweep::ALL
        .into_iter()
        .filter_map(|w| grid(rows, w))
        .collect();
    let _ = writeln!(
        s,
        "Each server is started afresh for every cell, with `--max-conns` above the cell's \
         connections and a 120 s idle timeout (nginx: `worker_connections`; Node: \
         `maxConnections`, `keepAliveTimeout`). A level is **held** when at most a hundredth \
         of its connections failed (refused, reset, closed or timed out; one below 200) and, \
         for idle \
         connections, at least 99 % of them got their answer and stayed open. ✗ marks a level \
         not held (its figures, where it has any, follow the mark; why is listed under the \
         sweep), — a level not run because a lower one was not held, n/a one not measured \
         here. ‡: client-bound. Memory per connection is the growth of the server's process \
         tree (PSS, summed over its processes) over its baseline after the warm-up, divided \
         among the connections open; see docs/method.md.\n"
    );
    let _ = writeln!(s, "## Where each model stops scaling\n");
    let heads: Vec<String> = grids.iter().map(|g| g.sweep.id().to_string()).collect();
    let _ = writeln!(
        s,
        "Highest level held in each sweep, then the first not held; for the concurrency \
         sweeps, the level of most req/s among those held.\n"
    );
    let _ = writeln!(s, "| server | model | {} |", heads.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(heads.len()));
    let mut servers: Vec<(String, String)> = Vec::new();
    for g in &grids {
        for entry in &g.servers {
            if !servers.iter().any(|(n, _)| n == &entry.0) {
                servers.push(entry.clone());
            }
        }
    }
    let known: Vec<&str> = super::servers().iter().map(|d| d.name).collect();
    servers.sort_by_key(|(name, _)| known.iter().position(|k| k == name).unwrap_or(usize::MAX));
    for (server, class) in &servers {
        let cells: Vec<String> = grids
            .iter()
            .map(|g| {
                let (held, first_not) = g.reach(server);
                let mut text = match (held, &first_not) {
                    (Some(l), None) => format!("all, to {}", thousands(l)),
                    (Some(l), Some((b, _))) => {
                        format!("{} (not {})", thousands(l), thousands(*b))
                    }
                    (None, Some((b, _))) => format!("none (not {})", thousands(*b)),
                    (None, None) => "—".into(),
                };
                if g.sweep != Sweep::Idle {
                    if let Some(best) = g.best_level(server) {
                        let _ = write!(text, "; most req/s at {}", thousands(best));
                    }
                }
                text
            })
            .collect();
        let _ = writeln!(s, "| {server} | {class} | {} |", cells.join(" | "));
    }
    s.push('\n');
    for g in &grids {
        sweep_section(s, plots, g);
    }
}

fn sweep_section(s: &mut String, plots: &mut Vec<(String, String)>, g: &Grid) {
    let id = g.sweep.id();
    let _ = writeln!(s, "## {}\n", g.sweep.title());
    let what = if g.sweep == Sweep::Idle {
        "idle connections"
    } else {
        "connections"
    };
    if g.sweep == Sweep::Idle {
        g.table(
            s,
            "Idle connections held (each answered once, then open through the window):",
            |c| {
                let held = c.rows.iter().filter_map(|r| r.idle_held.0).min()?;
                Some(thousands(held as usize))
            },
        );
    } else {
        g.table(s, &format!("req/s, by {what}:"), |c| {
            Some(format!(
                "{}{}",
                thousands(c.median(|r| Some(r.rps))?.round() as usize),
                bound(c)
            ))
        });
    }
    let load = if g.sweep == Sweep::Idle {
        " (the light load beside them)"
    } else {
        ""
    };
    g.table(s, &format!("p99 latency, ms{load}, by {what}:"), |c| {
        Some(format!("{:.3}", c.median(|r| r.lat_p99_ms.0)?))
    });
    g.table(
        s,
        &format!("Server CPU per request, µs{load}, by {what}:"),
        |c| Some(format!("{:.1}", c.median(cpu_us)?)),
    );
    g.table(
        s,
        &format!("Memory per connection, bytes (PSS over the baseline), by {what}:"),
        |c| Some(bytes(c.median(|r| r.mem_per_conn_b.0)?)),
    );
    g.table(
        s,
        &format!("Threads / processes of the server (most seen), by {what}:"),
        threads_procs,
    );
    let notes: Vec<String> = g
        .servers
        .iter()
        .filter_map(|(server, _)| {
            let (_, first_not) = g.reach(server);
            let (level, why) = first_not?;
            Some(format!("- **{server}** at {}: {why}", thousands(level)))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "Levels not held:\n\n{}\n", notes.join("\n"));
    }
    let x_desc = if g.sweep == Sweep::Idle {
        "idle connections (log)"
    } else {
        "connections (log)"
    };
    // (file name part, y axis, logarithmic y, the figure of a row)
    type Figure = (
        &'static str,
        &'static str,
        bool,
        fn(&ResultRow) -> Option<f64>,
    );
    let figures: [Figure; 2] = if g.sweep == Sweep::Idle {
        [
            (
                "memory",
                "memory per idle connection, bytes (log)",
                true,
                |r| r.mem_per_conn_b.0,
            ),
            (
                "cpu",
                "server CPU per request of the light load, µs (log)",
                true,
                cpu_us,
            ),
        ]
    } else {
        [
            ("rps", "req/s", false, |r| Some(r.rps)),
            ("p99", "p99 latency, ms (log)", true, |r| r.lat_p99_ms.0),
        ]
    };
    for (short, y_desc, log_y, f) in figures {
        let title = format!("{}: {y_desc}", g.sweep.title());
        let svg = plots::lines(
            Axes {
                title: &title,
                x_desc,
                y_desc,
                log_y,
            },
            &g.series(f),
        );
        super::report::embed_plot(
            s,
            plots,
            format!("scale-{short}-{id}.svg"),
            &format!("{title} (levels held)"),
            svg,
        );
    }
    s.push('\n');
}
