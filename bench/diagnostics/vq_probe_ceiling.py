"""What the VQ image tokens can carry, linearly: the downstream probes on pixels before and after the
tokenizer, and on the quantised code vectors the transformer's image tokens stand for.

    python bench/diagnostics/vq_probe_ceiling.py VQ_WORKDIR SYNTH_DIR [MAX_TRAIN]

A pre-trained model's image-only features start from these tokens, so where the tokenizer drops a
label (expression at 64 px, 8x8 codes), no amount of pre-training brings it back into the probe
table (gptface eval probe). Same splits, probes and weight-decay choice as `gptface eval probe`.
"""
import sys

from gptface_jax.evals import downstream
from gptface_jax.serving import image_tokenizer

vq_dir, data = sys.argv[1], sys.argv[2]
max_train = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
vq = image_tokenizer.load(vq_dir)
splits = downstream.dataset_splits(data, vq.config.image_size, max_train)


rows = {"pixels_16x16": {}, "vq_reconstruction_pixels_16x16": {}, "vq_code_vectors": {}}
for name, split in splits.items():
    codes = vq.encode(split["images"])
    recon = vq.decode(codes)
    rows["pixels_16x16"][name] = downstream.pixel_features(split["images"])
    rows["vq_reconstruction_pixels_16x16"][name] = downstream.pixel_features(recon)
    rows["vq_code_vectors"][name] = downstream.code_vector_features(vq, codes)
print(downstream.markdown(downstream.run_probes(rows, splits), data))
