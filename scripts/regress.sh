#!/usr/bin/env bash
# The CI regression gate against a git revision (`make regress BASE=<rev>`, issue 10).
#
#   scripts/regress.sh BASE [bench-client compare flags...]
#   make regress BASE=origin/main REGRESS_ARGS="--servers epoll,threads"
#
# Builds BASE in a worktree under target/regress/base-src (its own target directory,
# target/regress/base-target: two trees must never share one, cargo would take one tree's
# binaries for the other's), builds the working tree as the candidate (target/release), then
# runs `bench-client compare` (the candidate's) on the two. Its report goes to
# target/regress/report/ (report.md, report.json, segments.csv).
#
# Exit codes: 0 no regression; 1 a regression confirmed by a second round; 2 could not measure
# (a bad revision, a build that fails, a server that does not start or dies).
set -uo pipefail
cd "$(dirname "$0")/.."
base=${1:-}
if [ -z "$base" ]; then
  echo "error: no baseline: make regress BASE=<git rev> (e.g. BASE=origin/main)" >&2
  exit 2
fi
shift
if ! rev=$(git rev-parse --verify --quiet "$base^{commit}"); then
  echo "error: '$base' is not a revision of this repository (git fetch it first?)" >&2
  exit 2
fi
root=$PWD
src=target/regress/base-src
mkdir -p target/regress
# No report from an earlier run may stand beside this run's exit code.
rm -rf target/regress/report
git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"
git worktree prune
if ! git worktree add --detach --quiet "$src" "$rev"; then
  echo "error: cannot check out $rev into $src" >&2
  exit 2
fi
trap 'git worktree remove --force "$root/$src" >/dev/null 2>&1; git worktree prune' EXIT

echo "== building the baseline: $base ($rev)" >&2
if ! (cd "$src" && CARGO_TARGET_DIR="$root/target/regress/base-target" cargo build --release --workspace --bins); then
  echo "error: the baseline $base ($rev) does not build (see above): no comparison" >&2
  exit 2
fi
echo "== building the candidate: the working tree" >&2
if ! cargo build --release --workspace --bins; then
  echo "error: the candidate (the working tree) does not build (see above): no comparison" >&2
  exit 2
fi
target/release/bench-client compare \
  --baseline target/regress/base-target/release \
  --candidate target/release \
  --out target/regress/report "$@"
