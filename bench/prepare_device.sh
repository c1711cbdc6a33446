#!/usr/bin/env bash
# Prepares what `bench/device_check.sh` needs on a lent GPU machine, run here (with a package
# registry) before the device call:
#   .whl/       Python 3.12 manylinux wheels of what the machine's image lacks (grain, tfds, ...)
#   .whl/pins/  our pins of flax / optax / orbax (device_check.sh falls back to the image's if they fail)
#   .gpu/       a copy of ../shared/bench/reference_step.py (../shared does not travel)
# Both folders are ignored through .git/info/exclude; name them in the call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .whl/pins .gpu
cp ../shared/bench/reference_step.py .gpu/
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
get() { "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
          "${PLATFORMS[@]}" -d "$@"; }
# what the trainer's imports need beyond the image (KINDS.md lists the image's packages)
for p in grain==0.2.18 array-record==0.8.6 tensorflow-datasets==4.9.10 ml-collections==1.1.0 immutabledict \
         toml portpicker tensorflow-metadata tensorboardX dm-tree termcolor simple_parsing docstring_parser; do
  get .whl "$p"
done
"$PY" -m pip wheel -q --no-deps -w .whl promise   # sdist only: built here (pure Python)
for p in flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8; do get .whl/pins "$p"; done
# the quality stage's corpus: a `gptface data pretokenize` output on 16x16 codes (about 41 MB for 60k faces)
if [[ -n "${QUALITY_DATA:-}" ]]; then
  rm -rf .gpu/quality_data && mkdir -p .gpu/quality_data && cp -r "$QUALITY_DATA"/pretokenized_faces .gpu/quality_data/
fi
du -sh .whl .gpu
