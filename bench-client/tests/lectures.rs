//! The lectures (`docs/lectures/`) cannot rot silently: every file and function a page names
//! exists, every server binary has a page, and every command a page tells a student to run is
//! run here, at a tiny scale, against the debug binaries. The conventions are in
//! `docs/lectures/README.md` ("How make test checks these pages").
//!
//! Needs the workspace's server binaries beside bench-client (`make test` builds them first).
//! Each page runs as a script in a temporary directory, kept with its log when the page fails
//! (or always, with `LECTURES_KEEP=1`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a page's commands may run, all together.
const PAGE_LIMIT: Duration = Duration::from_secs(45);
/// Pages run at once (each starts servers and loads; the machine may have two cores).
const PARALLEL_PAGES: usize = 3;
/// `-n` above this becomes this.
const TINY_REQUESTS: u64 = 20;
/// The models `make syscalls` measures at the tiny scale: one thread, threads and a channel,
/// and processes (each traced differently).
const TINY_MODELS: &str = "epoll pool-handoff prefork";
/// A `cpu:D` or `delay:D` workload above this becomes this.
const TINY_WORK: &str = "10ms";
/// `-d` above this becomes this.
const TINY_DURATION: &str = "0.5s";
/// What a `sh needs=X` block may need.
const NEEDS: [&str; 4] = ["strace", "nginx", "node", "io_uring"];
/// Extensions of the repository paths a page may name in backticks.
const PATH_EXTENSIONS: [&str; 8] = ["rs", "sh", "py", "md", "toml", "csv", "txt", "js"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_bench-client"))
        .parent()
        .expect("the binaries' directory")
        .to_path_buf()
}

/// `docs/lectures/*.md`, by name.
fn pages() -> Vec<PathBuf> {
    let dir = repo_root().join("docs/lectures");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The page's path from the repository root, for messages.
fn shown(page: &Path) -> String {
    page.strip_prefix(repo_root())
        .unwrap_or(page)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Fenced blocks

/// A fenced block: its info string, the line number (1-based) of its first content line, and
/// its lines.
#[derive(Debug)]
struct Block {
    info: String,
    first_line: usize,
    lines: Vec<String>,
}

/// What a block is, by its info string.
#[derive(Debug, PartialEq)]
enum Kind {
    /// `sh`: commands, run by the test.
    Run,
    /// `sh not-run`: commands the test does not run; the first line says why.
    NotRun,
    /// `sh needs=X` (or `needs=X,Y`): run where the machine has them all, else skipped; the
    /// first line says what it needs.
    Needs(Vec<String>),
    /// `text`, `rust`: output or code, not commands.
    Other,
}

fn blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    first_line: i + 2,
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(_)) => out.push(open.take().expect("an open block")),
            (Some(block), None) => block.lines.push(line.to_string()),
            (None, None) => {}
        }
    }
    match open {
        Some(block) => Err(format!(
            "line {}: a fenced block is never closed",
            block.first_line - 1
        )),
        None => Ok(out),
    }
}

fn kind(block: &Block) -> Result<Kind, String> {
    let first = block.lines.first().map_or("", |l| l.trim());
    let at = block.first_line - 1;
    match block.info.as_str() {
        "sh" => Ok(Kind::Run),
        "sh not-run" if first.starts_with("# not run by make test: ") => Ok(Kind::NotRun),
        "sh not-run" => Err(format!(
            "line {at}: a `sh not-run` block must start with `# not run by make test: REASON`"
        )),
        "text" | "rust" => Ok(Kind::Other),
        info => match info.strip_prefix("sh needs=") {
            Some(list) if list.split(',').all(|need| NEEDS.contains(&need)) => {
                if first.starts_with("# needs ") {
                    Ok(Kind::Needs(list.split(',').map(str::to_string).collect()))
                } else {
                    Err(format!(
                        "line {at}: a `sh needs={list}` block must start with `# needs ...`, saying what"
                    ))
                }
            }
            _ => Err(format!(
                "line {at}: a ```{info} block: use sh, sh not-run, sh needs=X ({}), text or rust",
                NEEDS.join(", ")
            )),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Commands and the tiny scale

/// One command of a block: its line on the page, its text, and the exit status it must end
/// with (0, or N from a trailing `# exits N`).
#[derive(Debug, PartialEq)]
struct Cmd {
    line: usize,
    text: String,
    expect: i32,
}

/// The commands of a block: one per line, a line ending in `\` joined with the next; blank
/// lines and comments skipped.
fn commands(block: &Block) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in block.lines.iter().enumerate() {
        let (start, mut text) = pending
            .take()
            .unwrap_or((block.first_line + i, String::new()));
        text.push_str(line.trim());
        if let Some(joined) = text.strip_suffix('\\') {
            pending = Some((start, format!("{} ", joined.trim_end())));
            continue;
        }
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let expect = text
            .rsplit_once("# exits ")
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        out.push(Cmd {
            line: start,
            text,
            expect,
        });
    }
    out
}

/// A command as the test runs it (None: not run, a build: make test has built the binaries):
/// `target/release` is the debug binaries' directory, `/tmp/` a private directory, `-n N` at
/// most [`TINY_REQUESTS`], `-d D` at most [`TINY_DURATION`], a `cpu:D` or `delay:D` workload
/// at most [`TINY_WORK`], `--reps R` 1, and `--preset P` and `PRESET=P` the tiny preset.
fn tiny(command: &str, bin: &Path, tmp: &Path) -> Option<String> {
    if command.starts_with("cargo build") {
        return None;
    }
    // `/tmp/` first: the binaries' directory may itself lie under /tmp (a clone there).
    let command = command
        .replace("/tmp/", &format!("{}/", tmp.display()))
        .replace("target/release", &bin.display().to_string());
    let mut tokens: Vec<String> = command.split(' ').map(str::to_string).collect();
    let longer = |text: &str, than: &str| {
        serverkit::cli::parse_duration(text)
            .is_ok_and(|d| d > serverkit::cli::parse_duration(than).unwrap())
    };
    for token in tokens.iter_mut() {
        if token.starts_with("PRESET=") {
            *token = "PRESET=tiny".to_string();
        }
        for kind in ["cpu:", "delay:"] {
            if token
                .strip_prefix(kind)
                .is_some_and(|d| longer(d, TINY_WORK))
            {
                *token = format!("{kind}{TINY_WORK}");
            }
        }
    }
    for i in 1..tokens.len() {
        let value = &tokens[i];
        let replacement = match tokens[i - 1].as_str() {
            "-n" => value
                .parse::<u64>()
                .ok()
                .map(|n| n.min(TINY_REQUESTS).to_string()),
            "-d" if longer(value, TINY_DURATION) => Some(TINY_DURATION.to_string()),
            "--reps" => Some("1".to_string()),
            "--preset" => Some("tiny".to_string()),
            _ => None,
        };
        if let Some(replacement) = replacement {
            tokens[i] = replacement;
        }
    }
    // Fewer requests than connections is refused (as ab refuses it): the connections shrink
    // with the requests.
    let requests = (1..tokens.len())
        .find(|&i| tokens[i - 1] == "-n")
        .and_then(|i| tokens[i].parse::<u64>().ok());
    if let Some(n) = requests {
        for i in 1..tokens.len() {
            if tokens[i - 1] == "-c" {
                if let Ok(c) = tokens[i].parse::<u64>() {
                    tokens[i] = c.min(n).to_string();
                }
            }
        }
    }
    Some(tokens.join(" "))
}

// ---------------------------------------------------------------------------------------------
// Names: files and functions

/// The spans in backticks, outside fenced blocks (their commands are run instead); a span
/// may cross a line break.
fn backticked(text: &str) -> Vec<String> {
    let mut prose = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push(line);
        }
    }
    prose
        .join(" ")
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Backticked repository paths: `crates/epoll/src/lib.rs`, `scripts/lecture.sh`.
fn named_files(text: &str) -> BTreeSet<String> {
    backticked(text)
        .into_iter()
        .filter(|s| {
            s.contains('/')
                && !s.contains(' ')
                && !s.starts_with('/')
                && !s.contains("://")
                && s.rsplit_once('.')
                    .is_some_and(|(_, ext)| PATH_EXTENSIONS.contains(&ext))
        })
        .collect()
}

/// Backticked functions: `run()`, `EventLoop::run()`, `serverkit::blocking::accept()`.
/// (A syscall or a man page is written `accept(2)`.)
fn named_functions(text: &str) -> BTreeSet<String> {
    backticked(text)
        .into_iter()
        .filter_map(|s| s.strip_suffix("()").map(str::to_string))
        .filter(|s| {
            !s.is_empty()
                && s.split("::").all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        })
        .collect()
}

/// Whether `source` defines a function `name`: Rust (`fn name(`), Python (`def name(`),
/// JavaScript (`function name(`) or shell (`name() {` at the start of a line).
fn defines_fn(source: &str, name: &str) -> bool {
    let patterns = [
        format!("fn {name}("),
        format!("fn {name}<"),
        format!("def {name}("),
        format!("function {name}("),
    ];
    patterns.iter().any(|p| source.contains(p.as_str()))
        || source
            .lines()
            .any(|line| line.starts_with(&format!("{name}() {{")))
}

/// Whether `source` has an `impl` block for `ty` (rustfmt'd: `impl` at the start of a line,
/// closed by `}` at the start of a line) that defines `fn name`.
fn impl_defines_fn(source: &str, ty: &str, name: &str) -> bool {
    let mut inside = false;
    for line in source.lines() {
        if !inside {
            let opens_impl = line.starts_with("impl") && {
                let head = line.split('{').next().unwrap_or("");
                head.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|word| word == ty)
            };
            inside = opens_impl;
        } else if line.starts_with('}') {
            inside = false;
        } else if defines_fn(line, name) {
            return true;
        }
    }
    false
}

/// Problems with the names on a page: named files that do not exist, functions that no named
/// source file (or, for `serverkit::module::f()`, that module's file) defines, and relative
/// links that lead nowhere. `read` reads a file by its path from the repository root.
fn check_names(text: &str, page_dir: &str, read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let files = named_files(text);
    let mut sources = Vec::new();
    for file in &files {
        match read(file) {
            None => problems.push(format!("`{file}` does not exist")),
            Some(source)
                if [".rs", ".sh", ".py", ".js"]
                    .iter()
                    .any(|x| file.ends_with(x)) =>
            {
                sources.push(source)
            }
            Some(_) => {}
        }
    }
    for function in named_functions(text) {
        let parts: Vec<&str> = function.split("::").collect();
        let name = parts[parts.len() - 1];
        let found = match parts.as_slice() {
            ["serverkit", module, .., _] => {
                let file = format!("crates/serverkit/src/{module}.rs");
                read(&file).is_some_and(|source| match parts.len() {
                    3 => defines_fn(&source, name),
                    _ => impl_defines_fn(&source, parts[parts.len() - 2], name),
                })
            }
            [_] => sources.iter().any(|s| defines_fn(s, name)),
            [.., ty, _] => sources.iter().any(|s| impl_defines_fn(s, ty, name)),
            [] => false,
        };
        if !found {
            problems.push(format!(
                "`{function}()` is defined in none of the files the page names"
            ));
        }
    }
    // Relative links: [text](../../crates/epoll/src/lib.rs) or [text](02-fork.md#anchor).
    for link in text.split("](").skip(1) {
        let target = link.split(')').next().unwrap_or("");
        let path = target.split('#').next().unwrap_or("");
        if path.is_empty() || path.contains("://") {
            continue;
        }
        let joined = normalize(&format!("{page_dir}/{path}"));
        if read(&joined).is_none() && !repo_root().join(&joined).is_dir() {
            problems.push(format!("the link ({target}) leads nowhere"));
        }
    }
    problems
}

/// `docs/lectures/../../crates/x` -> `crates/x`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn read_repo_file(path: &str) -> Option<String> {
    std::fs::read_to_string(repo_root().join(path)).ok()
}

// ---------------------------------------------------------------------------------------------
// Running a page

/// Whether strace is installed and may attach to a process that is not its child, as
/// `scripts/syscalls.sh` does (Yama's `ptrace_scope` 1 allows that to root only).
fn strace_can_attach() -> bool {
    let Ok(mut target) = Command::new("sleep").arg("5").spawn() else {
        return false;
    };
    let attached = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "-p", &target.id().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .is_ok_and(|mut strace| {
            // Refused, strace exits at once; attached, it runs until the target ends.
            std::thread::sleep(Duration::from_millis(300));
            let running = strace.try_wait().is_ok_and(|status| status.is_none());
            let _ = strace.kill();
            let _ = strace.wait();
            running
        });
    let _ = target.kill();
    let _ = target.wait();
    attached
}

/// Which of [`NEEDS`] this machine has.
fn available_needs(bin: &Path) -> BTreeSet<String> {
    let runs = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut have = BTreeSet::new();
    if strace_can_attach() {
        have.insert("strace".to_string());
    }
    if runs("nginx", &["-v"]) || runs("/usr/sbin/nginx", &["-v"]) {
        have.insert("nginx".to_string());
    }
    if runs("node", &["--version"]) {
        have.insert("node".to_string());
    }
    // io_uring: the server says `listening on` where the kernel lets it, else exits 1.
    if let Ok(mut child) = Command::new(bin.join("server-uring"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = child.kill();
        let _ = child.wait();
        if line.starts_with("listening on ") {
            have.insert("io_uring".to_string());
        }
    }
    have
}

/// A page's commands as one bash script, each followed by a check of its exit status; the
/// line it is at goes to `progress` first. Returns the script and the blocks skipped.
fn page_script(
    page: &Path,
    text: &str,
    have: &BTreeSet<String>,
    tmp: &Path,
    progress: &Path,
) -> Result<(String, Vec<String>), String> {
    let bin = bin_dir();
    let mut script = String::from(
        "set -x\n__fail() { echo \"LECTURE CHECK FAILED at line $1: exit status $2, expected $3\" >&2; exit 1; }\n",
    );
    let mut skipped = Vec::new();
    for block in blocks(text)? {
        let commands = match kind(&block)? {
            Kind::Run => commands(&block),
            Kind::Needs(needs) if needs.iter().all(|need| have.contains(need)) => commands(&block),
            Kind::Needs(needs) => {
                skipped.push(format!(
                    "{}:{}: needs {}",
                    shown(page),
                    block.first_line,
                    needs.join(", ")
                ));
                continue;
            }
            Kind::NotRun | Kind::Other => continue,
        };
        for cmd in commands {
            let Some(text) = tiny(&cmd.text, &bin, tmp) else {
                continue;
            };
            script.push_str(&format!(
                "echo {line} > '{progress}'\n{text}\n__s=$?; [ $__s = {expect} ] || __fail {line} $__s {expect}\n",
                line = cmd.line,
                progress = progress.display(),
                expect = cmd.expect,
            ));
        }
    }
    script.push_str(
        "if [ -n \"${SERVER:-}\" ]; then echo 'LECTURE CHECK FAILED: the page leaves a server running (no stop)' >&2; exit 1; fi\n",
    );
    Ok((script, skipped))
}

/// The flags `make paper` and `make suite` get: one server, one repetition, a private
/// results directory.
fn tiny_suite_args(out: &Path) -> String {
    format!("--servers epoll --reps 1 --out {}", out.display())
}

/// Runs a page's commands; Err with what failed and the end of the output.
fn run_page(page: &Path, have: &BTreeSet<String>) -> Result<Vec<String>, String> {
    let name = page.file_stem().unwrap().to_string_lossy().to_string();
    let tmp = std::env::temp_dir().join(format!("archbench-lecture-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let progress = tmp.join("at");
    let text = read(page);
    let (script, skipped) = page_script(page, &text, have, &tmp, &progress)?;
    std::fs::write(tmp.join("page.sh"), &script).unwrap();
    let log = std::fs::File::create(tmp.join("log")).unwrap();
    let mut child = Command::new("bash")
        .arg(tmp.join("page.sh"))
        .current_dir(repo_root())
        .env("ARCHBENCH_BIN", bin_dir())
        .env("CARGO", "true")
        .env("SYSCALLS_N", TINY_REQUESTS.to_string())
        .env("SYSCALLS_OUT", tmp.join("syscalls"))
        .env("MODELS", TINY_MODELS)
        .env("PAPER_ARGS", tiny_suite_args(&tmp.join("paper")))
        .env("SUITE_ARGS", tiny_suite_args(&tmp.join("suite")))
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("bash");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > PAGE_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the page left behind (a server it did not stop, a load cut short) goes too.
    // SAFETY: kill(2) on the process group this test made for the page.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    eprintln!("{}: {:.1} s", shown(page), start.elapsed().as_secs_f64());
    let output = std::fs::read_to_string(tmp.join("log")).unwrap_or_default();
    let at = std::fs::read_to_string(&progress).unwrap_or_default();
    let tail: Vec<&str> = output.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let result = match status {
        Some(status) if status.success() => Ok(skipped),
        Some(_) => Err(format!(
            "{}: the command at line {} failed; the end of its output ({}):\n{}",
            shown(page),
            at.trim(),
            tmp.join("log").display(),
            tail.join("\n")
        )),
        None => Err(format!(
            "{}: still running after {PAGE_LIMIT:?}, at line {}; the end of its output ({}):\n{}",
            shown(page),
            at.trim(),
            tmp.join("log").display(),
            tail.join("\n")
        )),
    };
    if result.is_ok() && std::env::var_os("LECTURES_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// The checks

#[test]
fn every_block_on_every_page_is_run_or_says_why_not() {
    let mut problems = Vec::new();
    let mut run = 0;
    for page in pages() {
        match blocks(&read(&page)) {
            Err(e) => problems.push(format!("{}: {e}", shown(&page))),
            Ok(blocks) => {
                for block in blocks {
                    match kind(&block) {
                        Err(e) => problems.push(format!("{}: {e}", shown(&page))),
                        Ok(Kind::Run | Kind::Needs(_)) => run += commands(&block).len(),
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(run > 0, "no page has a command the test runs");
}

#[test]
fn every_file_and_function_a_page_names_exists() {
    let mut problems = Vec::new();
    for page in pages() {
        let text = read(&page);
        for p in check_names(&text, "docs/lectures", read_repo_file) {
            problems.push(format!("{}: {p}", shown(&page)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_server_binary_has_a_page() {
    let root = repo_root();
    let named: BTreeSet<String> = pages()
        .iter()
        .flat_map(|page| named_files(&read(page)))
        .collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        let manifest = read(&entry.path().join("Cargo.toml"));
        let crate_dir = entry.file_name().to_string_lossy().to_string();
        if !manifest.contains("name = \"server-") || !entry.path().join("src/main.rs").is_file() {
            continue;
        }
        let lesson = ["src/main.rs", "src/lib.rs"].map(|file| format!("crates/{crate_dir}/{file}"));
        if !lesson.iter().any(|file| named.contains(file)) {
            missing.push(format!("crates/{crate_dir}"));
        }
    }
    assert!(
        missing.is_empty(),
        "no lecture page names the lesson file of: {}",
        missing.join(", ")
    );
}

#[test]
fn every_command_on_every_page_runs_at_a_tiny_scale() {
    let bin = bin_dir();
    assert!(
        bin.join("server-epoll").is_file(),
        "the server binaries are not built in {}: run `cargo build --workspace` (make test does)",
        bin.display()
    );
    let have = available_needs(&bin);
    let queue = Mutex::new(pages());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_PAGES {
            scope.spawn(|| loop {
                let Some(page) = queue.lock().unwrap().pop() else {
                    return;
                };
                match run_page(&page, &have) {
                    Ok(skipped) => {
                        for s in skipped {
                            eprintln!("skipped (not on this machine): {s}");
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// The checker's own rules

#[test]
fn blocks_must_say_whether_they_are_run() {
    let page = "text\n```sh\nserve server-epoll\nstop\n```\n```bash\nls\n```\n```sh not-run\nmake paper\n```\n\
                ```sh not-run\n# not run by make test: four minutes\nmake paper\n```\n\
                ```sh needs=nginx\n# needs nginx (apt-get install nginx-light)\nnginx -v\n```\n";
    let kinds: Vec<Result<Kind, String>> = blocks(page).unwrap().iter().map(kind).collect();
    assert_eq!(kinds[0], Ok(Kind::Run));
    assert!(kinds[1].as_ref().unwrap_err().contains("```bash"));
    assert!(kinds[2]
        .as_ref()
        .unwrap_err()
        .contains("# not run by make test"));
    assert_eq!(kinds[3], Ok(Kind::NotRun));
    assert_eq!(kinds[4], Ok(Kind::Needs(vec!["nginx".into()])));
    assert!(blocks("```sh\nls\n").is_err(), "an unclosed block");
}

#[test]
fn commands_join_continuations_and_read_the_expected_status() {
    let block = &blocks("```sh\n# a comment\n\nserve server-epoll \\\n  --workload delay:100ms\nbench-client load $ADDR  # exits 1: errors\n```\n").unwrap()[0];
    assert_eq!(
        commands(block),
        vec![
            Cmd {
                line: 4,
                text: "serve server-epoll --workload delay:100ms".into(),
                expect: 0
            },
            Cmd {
                line: 6,
                text: "bench-client load $ADDR  # exits 1: errors".into(),
                expect: 1
            },
        ]
    );
}

#[test]
fn the_tiny_scale_shrinks_counts_and_durations_and_keeps_the_rest() {
    let (bin, tmp) = (Path::new("/b"), Path::new("/t"));
    assert_eq!(tiny("cargo build --release", bin, tmp), None);
    for (command, as_run) in [
        (
            "bench-client load -n 20000 -c 10 -d 10s $ADDR",
            "bench-client load -n 20 -c 10 -d 0.5s $ADDR",
        ),
        (
            "bench-client load -n 5 -d 100ms $ADDR",
            "bench-client load -n 5 -d 100ms $ADDR",
        ),
        (
            "bench-client load -k -n 20000 -c 100 $ADDR",
            "bench-client load -k -n 20 -c 20 $ADDR",
        ),
        (
            "target/release/bench-client suite --preset models --reps 5 --out /tmp/m",
            "/b/bench-client suite --preset tiny --reps 1 --out /t/m",
        ),
        ("make suite PRESET=models", "make suite PRESET=tiny"),
        (
            "serve server-epoll --workload cpu:50ms",
            "serve server-epoll --workload cpu:10ms",
        ),
        (
            "serve server-epoll --workload delay:2ms",
            "serve server-epoll --workload delay:2ms",
        ),
    ] {
        assert_eq!(tiny(command, bin, tmp).as_deref(), Some(as_run));
    }
    // A repository cloned under /tmp: its binaries' directory is not moved with /tmp/.
    let under_tmp = Path::new("/tmp/clone/target/debug");
    assert_eq!(
        tiny("target/release/server-epoll > /tmp/x", under_tmp, tmp).as_deref(),
        Some("/tmp/clone/target/debug/server-epoll > /t/x")
    );
}

#[test]
fn a_renamed_function_or_file_fails_the_name_check() {
    let page = "The loop is `crates/epoll/src/lib.rs`: `EventLoop::run()` calls `on_listener()`; \
                the blocking models share `serverkit::blocking::serve_connection()`. \
                `epoll_wait(2)` is a syscall. [The file](../../crates/epoll/src/lib.rs).";
    assert_eq!(
        check_names(page, "docs/lectures", read_repo_file),
        Vec::<String>::new()
    );
    for (renamed, problem) in [
        ("EventLoop::run()", "EventLoop::runs()"),
        ("on_listener()", "on_listen()"),
        ("serve_connection()", "serve_connections()"),
        ("crates/epoll/src/lib.rs`", "crates/epoll/src/loop.rs`"),
        (
            "../../crates/epoll/src/lib.rs)",
            "../crates/epoll/src/lib.rs)",
        ),
    ] {
        let page = page.replacen(renamed, problem, 1);
        assert!(
            !check_names(&page, "docs/lectures", read_repo_file).is_empty(),
            "renaming {renamed} to {problem} went unnoticed"
        );
    }
    // A method named on the wrong type.
    let wrong_type = "`crates/epoll/src/lib.rs`: `Timers::on_listener()`";
    assert_eq!(
        check_names(wrong_type, "docs/lectures", read_repo_file).len(),
        1
    );
}

#[test]
fn the_runner_fails_a_page_whose_command_fails_or_leaves_a_server() {
    let dir = std::env::temp_dir().join(format!("archbench-lecture-self-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let have = BTreeSet::new();
    let run = |name: &str, text: &str| {
        let page = dir.join(format!("{name}.md"));
        std::fs::write(&page, text).unwrap();
        run_page(&page, &have)
    };
    assert!(run("ok", "```sh\ntrue\nfalse  # exits 1\n```\n").is_ok());
    let failed = run("fails", "```sh\ntrue\nfalse\ntrue\n```\n").unwrap_err();
    assert!(failed.contains("line 3 failed"), "{failed}");
    let wrong = run("wrong", "```sh\ntrue  # exits 1\n```\n").unwrap_err();
    assert!(wrong.contains("line 2 failed"), "{wrong}");
    let left = run(
        "left",
        "```sh\n. scripts/lecture.sh\nserve server-epoll\n```\n",
    )
    .unwrap_err();
    assert!(left.contains("leaves a server running"), "{left}");
    let skipped = run("skipped", "```sh needs=nginx\n# needs nginx\nfalse\n```\n").unwrap();
    assert_eq!(
        skipped.len(),
        1,
        "a block whose needs are missing is skipped, and said so"
    );
    // The failed pages' scripts and logs are kept for a person to read; not these.
    for name in ["fails", "wrong", "left"] {
        let kept = format!("archbench-lecture-{name}-{}", std::process::id());
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(kept));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
