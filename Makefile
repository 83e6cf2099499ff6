# dsrconform: the two commands are `make demo` and `make test`, as root (see README.md).
# Every target bootstraps first (scripts/bootstrap.sh: Debian packages, .venv, editable install),
# which does nothing when the checkout is already set up.

VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test lint bench

bootstrap:
	bash scripts/bootstrap.sh

# Check the machine, push the recorded demo capture through the reference MUX
# (BPF_PROG_TEST_RUN, no interfaces touched) into results/, bring labs/basic.yaml up in
# namespaces, fetch through the VIP, show the lab and tear it down (scripts/demo-lab.sh), then
# the conformance suites against the reference stack (`dsrconform run`: every MUST requirement,
# results in a new results/<UTC>-reference-<seed>/, linked as results/latest), the HTML report
# of that run, and the CI gate on it, whose exit status is the demo's (docs/reports.md). A run
# that could not run its tests (exit 2 or more: bad input, interrupted) stops the demo there:
# results/latest would still name an earlier run.
demo: bootstrap
	$(BIN)/dsrconform doctor
	mkdir -p results
	$(BIN)/dsrconform-ref mux-run --config examples/mux-demo.yaml --in examples/demo.pcap --out results/demo-out.pcap
	bash scripts/demo-lab.sh
	$(BIN)/dsrconform run || [ $$? -eq 1 ]
	$(BIN)/dsrconform report results/latest -o results/latest/report.html
	$(BIN)/dsrconform gate results/latest

# The docker backend's tests need an engine: start one if none runs (scripts/start-dockerd.sh).
# Without one they skip, except under CI (CI=true), where they must run.
test: bootstrap lint
	bash scripts/start-dockerd.sh || { [ -z "$$CI" ] && echo "make: no Docker engine: the docker backend's tests will skip"; }
	$(BIN)/pytest -q --durations=25 -m "not proof" tests

# Long proofs kept out of `make test`'s 25 minutes: every shipped chaos scenario gives the
# verdicts its comment promises (~8 minutes, as root).
proof: bootstrap
	$(BIN)/pytest -q --durations=25 -m proof tests

# mypy's settings (which libraries have no types) are pyproject.toml's [tool.mypy].
lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dsrconform reference_impl examples/template_target katran_target

bench: bootstrap
	$(BIN)/dsrconform bench mux
