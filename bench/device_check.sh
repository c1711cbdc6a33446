#!/usr/bin/env bash
# One call on a lent GPU machine (H100/H200): train step vs the reference, then the sampler.
#   carry: .whl (wheels for Python 3.12 of what the machine's image lacks), .gpu (reference_step.py);
#   make both here first with `bash bench/prepare_device.sh`; for the `quality` stage also carry
#   .gpu/quality_data (QUALITY_DATA=<pre-tokenized 16x16 corpus> bash bench/prepare_device.sh)
# Its image has its own jax; our pins of flax/optax/orbax are tried first and dropped if they do not
# import there. Everything is logged under $OUT; each stage has its own time limit so one slow
# stage cannot eat the next one's. STAGES picks stages (default: train sample tests).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD TF_CPP_MIN_LOG_LEVEL=2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pins .whl/pins/*.whl
if PYTHONPATH=/tmp/pins:$PYTHONPATH python3 -c "from gptface_jax.train import trainer; from gptface_jax.generate import decoding" 2>"$OUT/pins_import.txt"; then
  export PYTHONPATH=/tmp/pins:$PYTHONPATH; echo "using pinned flax/optax/orbax"
else
  echo "pinned flax/optax/orbax do not import here; using the image's ($(tail -1 "$OUT/pins_import.txt"))"
fi
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee "$OUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv | tee -a "$OUT/versions.txt"
STAGES=" ${STAGES:-train sample tests} "
[[ $STAGES == *" train "* ]] && timeout "${TRAIN_S:-330}" python3 bench/train_step.py --layers 12 --batch 256 --mm 8192 --steps 10 \
  --reference .gpu/reference_step.py --out "$OUT" 2>&1 | tee "$OUT/train_step.log"
[[ $STAGES == *" sample "* ]] && timeout "${SAMPLE_S:-170}" python3 bench/sample.py --layers 12 --batch 64 --repeats 3 \
  --attention "${SAMPLE_ATTENTION:-cudnn}" --out "$OUT" 2>&1 \
  | grep -v "^WARNING" | tee "$OUT/sample.log"
# The quality run at the base grid (not a default stage; STAGES=quality): experiments/pretrain.py:quality on
# the carried 16x16 corpus for QUALITY_STEPS steps or QUALITY_S seconds, its held-out evaluators at the
# end; $OUT/quality gets the metrics, config and last checkpoint, to evaluate here with `gptface eval`.
# A call of its own (STAGES=quality): with the default stages it would pass the 600-s limit of one call.
if [[ $STAGES == *" quality "* ]]; then
  data=$(ls -d .gpu/quality_data/pretokenized_faces/*/1.0.0 | head -1)
  # QUALITY_S of training, then up to QUALITY_MARGIN_S for the compiles, the final save and the evaluators
  timeout "$(( ${QUALITY_S:-240} + ${QUALITY_MARGIN_S:-200} ))" python3 -m gptface_jax.cli train --workdir /tmp/quality \
    --config experiments/pretrain.py:quality --config.vq.downsample=4 --config.data.pretokenized="$data" \
    --config.train.steps="${QUALITY_STEPS:-10000}" --config.train.time_budget_s="${QUALITY_S:-240}" \
    --config.train.log_every=500 --config.train.checkpoint_every=100000 --config.evals.itm.every=2500 \
    --config.evals.retrieval.every=2500 --config.evals.probe.every=100000 2>&1 | grep -v "^WARNING" | tail -40 \
    | tee "$OUT/quality.log"
  mkdir -p "$OUT/quality" && cp -r /tmp/quality/metrics.jsonl /tmp/quality/final_metrics.json /tmp/quality/config.json /tmp/quality/checkpoints \
    "$OUT/quality/" 2>/dev/null
fi
# Numerics on the GPU (no 8-device mesh tests here: one chip): the decoding loop and the attention paths.
[[ $STAGES == *" tests "* ]] && JAX_PLATFORMS=cuda timeout "${TESTS_S:-60}" python3 -m pytest -q -x -p no:cacheprovider \
  ${TESTS:-tests/test_decoding.py "tests/test_model.py::test_cudnn_attention_matches_einsum_with_padding"} \
  2>&1 | tail -15 | tee "$OUT/tests.log"
