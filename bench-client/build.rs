//! Records bench-client's provenance at build time, for every result row: the compiler, the
//! build profile, and the git revision of the source it was built from (`+dirty` with
//! uncommitted changes to the code), as `vergen` and `built` do. Read at run time from the
//! binary, not from whatever directory the binary happens to run in.
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the revision's `+dirty` covers: the code that is built and measured (results/ and the
/// docs are rewritten by runs and edits that change nothing measured).
const CODE: [&str; 4] = ["crates", "bench-client", "Cargo.toml", "Cargo.lock"];

fn run(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(&rustc, &["--version"], Path::new("."))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "rustc NA".into());
    println!("cargo:rustc-env=ARCHBENCH_RUSTC={version}");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "NA".into());
    println!("cargo:rustc-env=ARCHBENCH_PROFILE={profile}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let git = |args: &[&str]| run("git", args, &manifest).filter(|s| !s.is_empty());
    let revision = match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["rev-parse", "--show-toplevel"]),
    ) {
        (Some(rev), Some(top)) => {
            let top = PathBuf::from(top);
            let mut args = vec!["status", "--porcelain", "--untracked-files=no", "--"];
            args.extend(CODE);
            let dirty = run("git", &args, &top).is_some_and(|s| !s.is_empty());
            // Rerun when HEAD moves, a commit lands, the index changes or the code is edited.
            let mut watched: Vec<PathBuf> = CODE.iter().map(|p| top.join(p)).collect();
            for (flag, files) in [
                ("--git-dir", &["HEAD", "index"][..]),
                ("--git-common-dir", &["packed-refs", "refs/heads"][..]),
            ] {
                if let Some(dir) = git(&["rev-parse", flag]) {
                    let dir = manifest.join(dir);
                    watched.extend(files.iter().map(|f| dir.join(f)));
                }
            }
            for path in watched.iter().filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            if dirty {
                format!("{rev}+dirty")
            } else {
                rev
            }
        }
        _ => "NA".into(),
    };
    println!("cargo:rustc-env=ARCHBENCH_GIT_REV={revision}");
}
