# archbench entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
# Where paper, suite and syscalls find the binaries (the lecture test points it at target/debug
# and sets CARGO=true, so that nothing is built under `cargo test`).
ARCHBENCH_BIN ?= target/release

.PHONY: all build release test lint fmt doc unit bench paper suite report regress syscalls man clean

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

## test: formatting, lints, docs (warnings denied) and every test in the workspace
test: lint doc unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace

# The suite tests start the server binaries beside bench-client: build them all first.
unit:
	$(CARGO) build --workspace
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

## bench: bench-client against wrk and ab (nginx and server-epoll), ratios in results/bench/
bench:
	python3 scripts/bench.py

## paper: the paper's Tables 1 and 2 redone (results/paper/latest.md); PAPER_ARGS="--scale 10" etc.
paper: release
	$(ARCHBENCH_BIN)/bench-client paper $(PAPER_ARGS)

## suite: any preset, e.g. make suite PRESET=hostile (results/<preset>/latest.md and its plots);
## make suite PRESET=scale: where each model stops scaling (about 12 minutes on 2 cores)
PRESET ?= http
suite: release
	$(ARCHBENCH_BIN)/bench-client suite --preset $(PRESET) $(SUITE_ARGS)

## regress: the CI regression gate against a revision: make regress BASE=origin/main
## (exit 0 pass, 1 confirmed regression, 2 could not measure; docs/ci-regression.md)
regress:
	scripts/regress.sh "$(BASE)" $(REGRESS_ARGS)

## syscalls: syscalls per request of every model, kept alive and a connection per request, -c 10
## (strace -c -f; a few minutes): latest.md and raw/ in a scratch directory ($TMPDIR or /tmp,
## archbench-syscalls); make syscalls REFRESH=1 rewrites the committed results/syscalls.
## SYSCALLS_N, MODELS, SYSCALLS_OUT
SYSCALLS_N ?= 2000
SYSCALLS_OUT ?= $(if $(filter 1,$(REFRESH)),results/syscalls,$(or $(TMPDIR),/tmp)/archbench-syscalls)
MODELS ?= iterative fork threads pool pool-handoff prefork epoll select poll busypoll sigio reuseport mio tokio uring
syscalls: release
	@echo "make syscalls: writing $(SYSCALLS_OUT)/latest.md (REFRESH=1: the committed results/syscalls)"
	ARCHBENCH_BIN=$(ARCHBENCH_BIN) LOADS="k10 p10" scripts/syscalls.sh --out $(SYSCALLS_OUT) -n $(SYSCALLS_N) $(MODELS)

## report: every preset's report and plots on one static page, results/report.html (opens
## from disk; a debug build is enough: nothing is measured)
report:
	$(CARGO) run --quiet -p bench-client -- html

## man: bench-client's man pages, from its flags: target/man/bench-client.1 and one per subcommand
## (man -l target/man/bench-client-load.1). Shell completions: bench-client completions bash|zsh|fish
man:
	$(CARGO) run --quiet -p bench-client -- man --out target/man
