# dsrconform: the two commands are `sudo make demo` and `sudo make test` (see README.md).
# Every target bootstraps first (scripts/bootstrap.sh: Debian packages, .venv, editable install),
# which does nothing when the checkout is already set up.

VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test lint bench

bootstrap:
	bash scripts/bootstrap.sh

# Check the machine, then push the recorded demo capture through the reference MUX
# (BPF_PROG_TEST_RUN, no interfaces touched) and write what the MUX emitted to results/.
demo: bootstrap
	$(BIN)/dsrconform doctor
	mkdir -p results
	$(BIN)/dsrconform-ref mux-run --config examples/mux-demo.yaml --in examples/demo.pcap --out results/demo-out.pcap

test: bootstrap lint
	$(BIN)/pytest -q tests

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: bootstrap
	$(BIN)/dsrconform bench mux
