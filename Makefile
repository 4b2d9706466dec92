# archbench entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: all build release test lint fmt doc unit bench paper suite regress clean

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

## suite: any preset, e.g. make suite PRESET=hostile (results/<preset>/latest.md)
PRESET ?= http
suite: release
	./target/release/bench-client suite --preset $(PRESET) $(SUITE_ARGS)

## regress: the CI regression gate against a revision: make regress BASE=origin/main
## (exit 0 pass, 1 confirmed regression, 2 could not measure; docs/ci-regression.md)
regress:
	scripts/regress.sh "$(BASE)" $(REGRESS_ARGS)
