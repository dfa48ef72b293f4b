# galley's two commands: `make demo` runs the whole thing, `make test` runs
# every test against a real Kafka and a real CQL database. Both start the
# local stack (scripts/stack) themselves.

CARGO ?= cargo

.PHONY: demo test faults bench fuzz build lint fmt stack-up stack-down stack-status prereqs

demo: prereqs
	scripts/demo

test: prereqs
	scripts/test

# The fault suite (broker and database outages, zombies, replay, bad input)
# against a stack of its own; see README "Faults".
faults: prereqs
	scripts/faults

# Throughput, CPU, memory, latency and query figures against the local
# stack, written to bench-results/; see README "Performance".
bench: prereqs
	scripts/bench

# Fuzzes the wire-format decoder for FUZZ_SECONDS (default 120); needs nightly.
fuzz:
	scripts/fuzz

prereqs:
	scripts/prereqs

build:
	$(CARGO) build --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --test faults -- -D warnings

fmt:
	$(CARGO) fmt --all

stack-up:
	scripts/stack up

stack-down:
	scripts/stack down

stack-status:
	scripts/stack status
