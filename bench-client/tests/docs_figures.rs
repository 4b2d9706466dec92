//! Figures quoted in the docs come from committed results: every number between
//! `<!-- figures: results/PATH -->` and `<!-- /figures -->` must occur in that result file
//! (docs/method.md, "Figures in the docs").

use std::path::{Path, PathBuf};

const OPEN: &str = "<!-- figures: ";
const CLOSE: &str = "<!-- /figures -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The numbers in a text: runs of digits with at most one decimal point inside.
fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let decimal_point = c == '.'
            && !current.is_empty()
            && !current.contains('.')
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || decimal_point {
            current.push(c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Problems in one document: blocks citing a missing file, or numbers not in the cited file.
fn check(doc: &str, read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end_of_tag) = after.find("-->") else {
            problems.push("an unclosed figures tag".into());
            break;
        };
        let cited = after[..end_of_tag].trim().to_string();
        let body_and_rest = &after[end_of_tag + 3..];
        let Some(close) = body_and_rest.find(CLOSE) else {
            problems.push(format!("figures from {cited}: no {CLOSE}"));
            break;
        };
        let body = &body_and_rest[..close];
        match read(&cited) {
            None => problems.push(format!("figures from {cited}: the file does not exist")),
            Some(source) => {
                for n in numbers(body) {
                    if !source.contains(&n) {
                        problems.push(format!("{n} is not in {cited}"));
                    }
                }
            }
        }
        rest = &body_and_rest[close + CLOSE.len()..];
    }
    problems
}

#[test]
fn the_checker_finds_drifted_figures() {
    let source = "| epoll | 23.7 | 1.00 |\n| fork | 198.6 | 8.38 |";
    let read = |p: &str| (p == "results/x.md").then(|| source.to_string());
    let good = "<!-- figures: results/x.md -->fork costs 198.6 µs, 8.38 x epoll<!-- /figures -->";
    assert!(check(good, read).is_empty());
    let drifted = "<!-- figures: results/x.md -->fork costs 199 µs<!-- /figures -->";
    assert_eq!(check(drifted, read), vec!["199 is not in results/x.md"]);
    let missing = "<!-- figures: results/y.md -->1<!-- /figures -->";
    assert_eq!(check(missing, read).len(), 1);
    assert_eq!(numbers("v1.2.3, 45 and 6.5."), ["1.2", "3", "45", "6.5"]);
}

#[test]
fn every_figure_quoted_in_the_docs_is_in_its_result() {
    let root = repo_root();
    let mut docs: Vec<PathBuf> = vec![root.join("README.md")];
    for dir in ["docs", "docs/lectures"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            docs.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "md")),
            );
        }
    }
    let mut problems = Vec::new();
    let mut blocks = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("a readable doc");
        blocks += text.matches(OPEN).count();
        for p in check(&text, |cited| {
            std::fs::read_to_string(root.join(cited)).ok()
        }) {
            problems.push(format!("{}: {p}", doc.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(blocks > 0, "the docs quote no figures through the check");
}
