# archbench entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: all build release test lint fmt doc unit bench paper suite report clean

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
	./target/release/bench-client paper $(PAPER_ARGS)

## suite: any preset, e.g. make suite PRESET=hostile (results/<preset>/latest.md and its plots);
## make suite PRESET=scale: where each model stops scaling (about 10 minutes on 2 cores)
PRESET ?= http
suite: release
	./target/release/bench-client suite --preset $(PRESET) $(SUITE_ARGS)

## report: every preset's report and plots on one static page, results/report.html (opens
## from disk; a debug build is enough: nothing is measured)
report:
	$(CARGO) run --quiet -p bench-client -- html
