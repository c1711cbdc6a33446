#!/usr/bin/env bash
# One call on a lent GPU machine (H100/H200): GPU numerics, the pre-training quality run at the base
# grid, then the train step vs the reference (and, as a stage of its own, the sampler).
#   carry: .whl (wheels for Python 3.12 of what the machine's image lacks), .gpu (reference_step.py and,
#   for the `quality` stage, the 16x16 corpus); make both here first with
#   `QUALITY_DATA=<pre-tokenized 16x16 corpus> bash bench/prepare_device.sh`.
# Its image has its own jax; our pins of flax/optax/orbax are tried first and dropped if they do not
# import there. Each stage has its own time limit so one slow stage cannot eat the next one's, and
# the defaults fit one 600-s call. STAGES picks stages (default: tests quality train).
# What comes back from $OUT is at most 8 files, two folders down: the stages log into $LOGS, packed into
# $OUT/device_check.tgz after each stage (a stage killed by the call's limit leaves the earlier ones
# packed), and the quality run's last two checkpoints (every QUALITY_CHECKPOINT_EVERY steps and the final one,
# to see overfitting on a small corpus) are $OUT/quality_checkpoint_STEP.tgz, about 13 MB each.
# A dry run on a CPU machine: INSTALL=0 PY=.venv/bin/python JAX_PLATFORMS=cpu STAGES=quality QUALITY_S=20 ...
set -u
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD TF_CPP_MIN_LOG_LEVEL=2
OUT=${OUT:-/tmp/out}; LOGS=${LOGS:-/tmp/device_check}
rm -rf "$LOGS"; mkdir -p "$OUT" "$LOGS"
pack() { tar -czf "$OUT/device_check.tgz" -C "$LOGS" .; }
if [[ ${INSTALL:-1} == 1 ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pins .whl/pins/*.whl
  imports="from gptface_jax.train import trainer; from gptface_jax.generate import decoding"
  if PYTHONPATH=/tmp/pins:$PYTHONPATH "$PY" -c "$imports" 2>"$LOGS/pins_import.txt"; then
    export PYTHONPATH=/tmp/pins:$PYTHONPATH; echo "using pinned flax/optax/orbax"
  else
    echo "pinned flax/optax/orbax do not import here; using the image's ($(tail -1 "$LOGS/pins_import.txt"))"
  fi
fi
"$PY" -c "import jax, flax, optax, orbax.checkpoint as o
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 \
  | tee "$LOGS/versions.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv 2>&1 \
  | tee -a "$LOGS/versions.txt"
nproc | tee -a "$LOGS/versions.txt"
pack
STAGES=" ${STAGES:-tests quality train} "
# Numerics on the GPU (no 8-device mesh tests here: one chip): the decoding loop and the attention paths.
if [[ $STAGES == *" tests "* ]]; then
  JAX_PLATFORMS=${JAX_PLATFORMS:-cuda} timeout "${TESTS_S:-60}" "$PY" -m pytest -q -x -p no:cacheprovider \
    ${TESTS:-tests/test_decoding.py "tests/test_model.py::test_cudnn_attention_matches_einsum_with_padding"} \
    2>&1 | tail -15 | tee "$LOGS/tests.log"
  pack
fi
# The quality run at the base grid: experiments/pretrain.py:quality on the carried 16x16 corpus for
# QUALITY_STEPS steps (the schedule's length) or QUALITY_S seconds, whichever ends first, the last
# QUALITY_COOLDOWN of them a linear cool-down (brought forward when the seconds run out first), its
# held-out evaluators at the end. Evaluate the checkpoint on the development machine with `gptface eval`.
if [[ $STAGES == *" quality "* ]]; then
  data=$(ls -d .gpu/quality_data/pretokenized_faces/*/1.0.0 | head -1)
  workers=$(( $(nproc) > 4 ? $(nproc) - 4 : 0 ))  # grain workers for the host-side masking; 4 cores for the rest
  # QUALITY_S of training, then up to QUALITY_MARGIN_S for the compiles, the final save and the evaluators
  timeout "$(( ${QUALITY_S:-170} + ${QUALITY_MARGIN_S:-130} ))" "$PY" -m gptface_jax.cli train --workdir /tmp/quality \
    --config experiments/pretrain.py:quality --config.vq.downsample=4 --config.data.pretokenized="$data" \
    --config.data.worker_count="${QUALITY_WORKERS:-$workers}" \
    --config.train.steps="${QUALITY_STEPS:-10000}" --config.train.time_budget_s="${QUALITY_S:-170}" \
    --config.train.cooldown_steps="${QUALITY_COOLDOWN:-2000}" \
    --config.train.log_every=500 --config.train.checkpoint_every="${QUALITY_CHECKPOINT_EVERY:-5000}" \
    --config.evals.itm.every=2500 \
    --config.evals.retrieval.every=2500 --config.evals.probe.every=1000000 2>&1 | grep -v "^WARNING" | tail -40 \
    | tee "$LOGS/quality.log"
  mkdir -p "$LOGS/quality"
  cp /tmp/quality/metrics.jsonl /tmp/quality/final_metrics.json /tmp/quality/config.json "$LOGS/quality/" 2>/dev/null
  for step in $(ls /tmp/quality/checkpoints 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -2); do
    tar -czf "$OUT/quality_checkpoint_$step.tgz" -C /tmp/quality "checkpoints/$step" tokenizers.json
  done
  pack
fi
[[ $STAGES == *" train "* ]] && { timeout "${TRAIN_S:-170}" "$PY" bench/train_step.py --layers 12 --batch 256 \
  --mm 8192 --steps 10 --ours "${TRAIN_OURS:-bf16-residual}" --reference .gpu/reference_step.py --out "$LOGS" 2>&1 \
  | tee "$LOGS/train_step.log"; pack; }
[[ $STAGES == *" itc "* ]] && { timeout "${ITC_S:-120}" "$PY" bench/train_step.py --itc --layers 12 --batch 256 \
  --steps 10 --attention cudnn 2>&1 | grep -v "^WARNING" | tee "$LOGS/itc_step.log"; pack; }
[[ $STAGES == *" sample "* ]] && { timeout "${SAMPLE_S:-170}" "$PY" bench/sample.py --layers 12 --batch 64 --repeats 3 \
  --attention "${SAMPLE_ATTENTION:-cudnn}" --out "$LOGS" 2>&1 | grep -v "^WARNING" | tee "$LOGS/sample.log"; pack; }
exit 0
