# Quick start: `make demo` (the main job) and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

# On a CPU-only machine, virtual JAX devices (one per core, up to 8, a power of two so the demo's
# batches divide evenly) let data parallelism use every core.
CPU_DEVICES := $(shell $(PYTHON) -c 'import os; n = os.cpu_count() or 1; print(max(d for d in (1, 2, 4, 8) if d <= n))')

demo: $(STAMP)
	JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface demo --workdir $(WORKDIR)

test: $(STAMP)
	JAX_NUM_CPU_DEVICES=8 $(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python bench/synthfaces.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/train_step.py

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs *.egg-info
