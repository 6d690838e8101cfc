# The two commands in the README. Each runs the idempotent set-up first.
.PHONY: setup demo vm-demo test bench lint
SHELL := /bin/bash

setup:
	@scripts/setup.sh

# Main job: build a real EIF from Debian binaries, then the offline preview of the dev stack.
demo: setup
	@scripts/demo.sh

# VM image example: build a UKI + dm-verity disk, measure it, boot it and compare PCR 11.
vm-demo: setup
	@scripts/vm-demo.sh

# Every test (unit, oracle, integration boot). In CI (CI=true) a missing tool fails instead of skipping.
test: setup
	@.venv/bin/python -m pytest

bench: setup
	@.venv/bin/python benchmarks/verity_vs_veritysetup.py

lint: setup
	@.venv/bin/ruff check .
