# Quick start: `make demo` (the main job) and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

# On a CPU-only machine, one virtual JAX device per core lets data parallelism use every core.
demo: $(STAMP)
	JAX_NUM_CPU_DEVICES=$$(nproc) $(BIN)/gptface demo --workdir $(WORKDIR)

test: $(STAMP)
	JAX_NUM_CPU_DEVICES=8 $(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python bench/synthfaces.py
	$(BIN)/python bench/ingest.py

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs *.egg-info
