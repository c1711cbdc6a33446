"""The SynthFaces probes on the mean image-token state after each block, pre-trained vs random init.

    python bench/diagnostics/probe_by_layer.py WORKDIR SYNTH_DIR [MAX_TRAIN]

`gptface eval probe` reads the last layer, which masked modelling specialises for predicting
tokens; generative models' linearly readable features often peak in a middle block (iGPT). This
shows, per depth (0 = the embeddings), what pre-training bought over the same model at
initialisation. Same splits, probes and weight-decay choice as `gptface eval probe`.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.text_tokenizer import PAD
from gptface_jax import downstream, inference, sharding
from gptface_jax.model import Block, image_hidden

workdir, data = sys.argv[1], sys.argv[2]
max_train = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
pretrained = inference.load(workdir)
model, config = pretrained.model, pretrained.model.config


def mean_states_by_depth(params, codes):
    """(B, N) codes -> (B, L + 1, D): the mean image-token state after the embeddings and each block."""
    text = jnp.full((codes.shape[0], config.max_text_len), PAD, jnp.int32)
    # one forward pass, keeping the embeddings and every block's output
    _, state = model.apply(params, text, codes, mutable=["intermediates"],
                           capture_intermediates=lambda m, name: isinstance(m, Block) or name == "embed")
    embedded = state["intermediates"]["embed"][0][0]  # embed returns (sequence, key mask)
    blocks = [state["intermediates"][f"block_{i}"]["__call__"][0] for i in range(config.num_layers)]
    return jnp.stack([image_hidden(x, config).mean(1) for x in [embedded] + blocks], 1).astype(jnp.float32)


fn = jax.jit(mean_states_by_depth)
splits = downstream.dataset_splits(data, pretrained.image_size, max_train)
rows = {}
for label, params in (("gptface", pretrained.params), ("random_init", downstream.initial_params(pretrained))):
    for name, split in splits.items():
        codes = np.asarray(pretrained.image_codes(split["images"]), np.int32)
        (states,) = sharding.run_in_batches(lambda c: (fn(params, c),), [codes], 256)
        for depth in range(config.num_layers + 1):
            rows.setdefault(f"{label}_mean_depth{depth}", {})[name] = np.asarray(states[:, depth])
print(downstream.markdown(downstream.run_probes(rows, splits), data).split("\n\n| attribute")[0])
