# archbench entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: all build release test lint fmt doc unit bench paper clean

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

unit:
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

## bench: bench-client against wrk and ab (nginx and server-epoll), ratios in results/bench/
bench:
	python3 scripts/bench.py
