//! `bench-client html` (`make report`): every preset's report (`results/*/latest.md`) on one
//! static page, `results/report.html`, that opens from disk: no server, no network, no script,
//! no external style or font. Each report is rendered from its Markdown (pulldown-cmark); its
//! plots are linked relatively (`paper/cpu-paper-1.svg`), so the page and the results
//! directory travel together. A table at the top gives each run's machine and provenance,
//! read from the first row of the run's CSV.
//!
//! The page is well-formed XML (XHTML syntax in an HTML5 document), which a test checks.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{html, CowStr, Event, HeadingLevel, Options, Parser, Tag};

use crate::output::{self, ResultRow};

/// Presets shown first, in this order; any other results directory with a `latest.md`
/// follows, by name.
const ORDER: [&str; 7] = [
    "paper",
    "paper-shared",
    "http",
    "models",
    "hostile",
    "scale",
    "bench",
];

/// One results directory with a report.
#[derive(Debug, Clone)]
pub struct Section {
    /// Directory name (the preset).
    pub name: String,
    /// Its `latest.md`.
    pub markdown: String,
    /// The first row of the run the report covers, when its CSV is in the row schema.
    pub first_row: Option<ResultRow>,
    /// Plots the report embeds that are not beside it.
    pub missing: Vec<String>,
}

/// Reads every `latest.md` under `results`, in the order of `ORDER` (the presets first, then by name).
///
/// # Errors
/// `results` cannot be read, or holds no report.
pub fn sections(results: &Path) -> Result<Vec<Section>, String> {
    let entries = std::fs::read_dir(results)
        .map_err(|e| format!("cannot read {}: {e}", results.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("latest.md").is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    names.sort_by_key(|n| {
        (
            ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
            n.clone(),
        )
    });
    if names.is_empty() {
        return Err(format!(
            "no results/*/latest.md under {}",
            results.display()
        ));
    }
    names
        .into_iter()
        .map(|name| {
            let dir = results.join(&name);
            let markdown = std::fs::read_to_string(dir.join("latest.md"))
                .map_err(|e| format!("cannot read {}/latest.md: {e}", dir.display()))?;
            let first_row = csv_named_in(&markdown)
                .and_then(|csv| output::read_csv(&dir.join(csv)).ok())
                .and_then(|rows| {
                    let last = rows.last()?.run_id.clone();
                    rows.into_iter().find(|r| r.run_id == last)
                });
            let missing = images(&markdown)
                .into_iter()
                .filter(|file| !dir.join(file).is_file())
                .collect();
            Ok(Section {
                name,
                markdown,
                first_row,
                missing,
            })
        })
        .collect()
}

/// The CSV a report names (`every row is in `NAME.csv` beside this file`).
fn csv_named_in(markdown: &str) -> Option<&str> {
    let at = markdown.find("every row is in `")? + "every row is in `".len();
    let name = &markdown[at..];
    let name = &name[..name.find('`')?];
    (name.ends_with(".csv") && !name.contains('/')).then_some(name)
}

/// The relative image files a report embeds.
pub fn images(markdown: &str) -> Vec<String> {
    Parser::new(markdown)
        .filter_map(|event| match event {
            Event::Start(Tag::Image { dest_url, .. }) if is_local(&dest_url) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

fn is_local(url: &str) -> bool {
    !url.contains(':') && !url.starts_with('/') && !url.contains("..")
}

/// `to` as a path relative to the directory `from` (both absolute or both relative to the
/// same place), with `/` separators.
pub fn relative(from: &Path, to: &Path) -> String {
    let parts = |p: &Path| -> Vec<String> {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    let (from, to) = (parts(from), parts(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out: Vec<String> = vec!["..".to_string(); from.len() - common];
    out.extend(to[common..].iter().cloned());
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report of one section as HTML: headings one level down (the page has the `h1`),
/// images pointed at `prefix/FILE`.
fn render(markdown: &str, prefix: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Start(Tag::Heading {
            level,
            id,
            classes,
            attrs,
        }) => Event::Start(Tag::Heading {
            level: lower(level),
            id,
            classes,
            attrs,
        }),
        Event::End(pulldown_cmark::TagEnd::Heading(level)) => {
            Event::End(pulldown_cmark::TagEnd::Heading(lower(level)))
        }
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if is_local(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: CowStr::from(format!("{prefix}/{dest_url}")),
            title,
            id,
        }),
        // Raw HTML in a report is shown as text: the page stays well-formed whatever it holds.
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

fn lower(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H2,
        HeadingLevel::H2 => HeadingLevel::H3,
        HeadingLevel::H3 => HeadingLevel::H4,
        HeadingLevel::H4 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-top: 3px solid #444; padding-top: 0.6em; margin-top: 2.5em; }
h3 { margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2em; }
.missing { color: #a00; }
";

/// The whole page for `results`, with links relative to `out_dir` (where the page goes).
///
/// # Errors
/// As [`sections`].
pub fn page(results: &Path, out_dir: &Path) -> Result<String, String> {
    let sections = sections(results)?;
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    s.push_str("<title>archbench results</title>\n<style>");
    s.push_str(STYLE);
    s.push_str("</style>\n</head>\n<body>\n<h1>archbench results</h1>\n");
    s.push_str(
        "<p>Every preset's report (<code>results/*/latest.md</code>) with its plots, written by \
         <code>bench-client html</code> (<code>make report</code>). The method behind every \
         figure: docs/method.md; the columns of the CSVs: results/README.md.</p>\n<nav>",
    );
    for section in &sections {
        let _ = write!(s, "<a href=\"#{0}\">{0}</a>", escape(&section.name));
    }
    s.push_str("</nav>\n<h2 id=\"machines\">Machines and provenance</h2>\n<table>\n");
    s.push_str(
        "<thead><tr><th>results</th><th>measured (UTC)</th><th>host</th><th>CPU</th>\
         <th>cores</th><th>kernel</th><th>git</th><th>bench-client</th><th>cores used</th>\
         </tr></thead>\n<tbody>\n",
    );
    for section in &sections {
        let cells = match &section.first_row {
            Some(r) => [
                r.time.clone(),
                r.host.clone(),
                r.cpu_model.clone(),
                r.cores.to_string(),
                r.kernel.clone(),
                r.git_rev.clone(),
                r.build.clone(),
                r.cpus.clone(),
            ]
            .map(|c| format!("<td>{}</td>", escape(&c)))
            .join(""),
            None => "<td colspan=\"8\">see the report (its CSV has another schema)</td>".into(),
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"#{0}\">{0}</a></td>{cells}</tr>",
            escape(&section.name)
        );
    }
    s.push_str("</tbody>\n</table>\n");
    for section in &sections {
        let prefix = relative(out_dir, &results.join(&section.name));
        let _ = writeln!(s, "<section id=\"{}\">", escape(&section.name));
        s.push_str(&render(&section.markdown, &prefix));
        for file in &section.missing {
            let _ = writeln!(
                s,
                "<p class=\"missing\">plot missing: {}/{}</p>",
                escape(&section.name),
                escape(file)
            );
        }
        s.push_str("</section>\n");
    }
    s.push_str("</body>\n</html>\n");
    Ok(s)
}

/// Writes the page for `results` to `out` atomically.
///
/// # Errors
/// A message saying what could not be read or written.
pub fn write(results: &Path, out: &Path) -> Result<PathBuf, String> {
    let out_dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let text = page(&absolute(results), &absolute(out_dir))?;
    output::write_atomic(out, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_and_descend() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(relative(&p("/r/results"), &p("/r/results/paper")), "paper");
        assert_eq!(
            relative(&p("/tmp/x"), &p("/r/results/paper")),
            "../../r/results/paper"
        );
        assert_eq!(relative(&p("/r"), &p("/r")), ".");
    }

    #[test]
    fn reports_render_with_their_images_moved_and_headings_lowered() {
        let md = "# Suite: x\n\nMeasured on `vm`, every row is in `2026-01-01-vm.csv` beside \
                  this file.\n\n| a | b |\n|---|---:|\n| 1 < 2 | x & y |\n\n![CPU](cpu-x.svg)\n\n\
                  <b>raw</b>\n";
        assert_eq!(csv_named_in(md), Some("2026-01-01-vm.csv"));
        assert_eq!(images(md), ["cpu-x.svg"]);
        let html = render(md, "x");
        assert!(html.contains("<h2>Suite: x</h2>"), "{html}");
        assert!(
            html.contains("<img src=\"x/cpu-x.svg\" alt=\"CPU\" />"),
            "{html}"
        );
        assert!(html.contains("<td>1 &lt; 2</td>") && html.contains("x &amp; y"));
        assert!(
            html.contains("&lt;b&gt;raw&lt;/b&gt;"),
            "raw HTML is shown as text"
        );
    }
}
