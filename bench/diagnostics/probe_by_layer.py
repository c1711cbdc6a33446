"""The SynthFaces probes on the image-token states after each block, pre-trained vs random init.

    python bench/diagnostics/probe_by_layer.py WORKDIR SYNTH_DIR [MAX_TRAIN [CELLS | REGION]]

`gptface eval probe` reads the last layer, which masked modelling specialises for predicting
tokens; generative models' linearly readable features often peak in a middle block (iGPT). This
shows, per depth (0 = the embeddings), what pre-training bought over the same model at
initialisation. Same splits, probes and weight-decay choice as `gptface eval probe`.

CELLS (default 1: the mean over the whole grid) pools the states over a CELLS x CELLS grid of
equal cells and concatenates them, so a feature keeps roughly where on the face it is (a smile in
the mouth cells) instead of being averaged with every other position.

REGION (a name of `gptface_jax/generate/regions.py`, e.g. mouth) concatenates the states of that
region's tokens instead, and adds the same tokens' VQ code vectors as a row: what the region's
codes carry before any block reads them, against what each depth keeps of it. The per-attribute
table is printed too.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.text_tokenizer import PAD
from gptface_jax.evals import downstream
from gptface_jax.generate import regions
from gptface_jax.models.transformer import Block, image_hidden
from gptface_jax.runtime import sharding
from gptface_jax.serving import inference

workdir, data = sys.argv[1], sys.argv[2]
max_train = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
pooling = sys.argv[4] if len(sys.argv) > 4 else "1"
pretrained = inference.load(workdir)
model, config = pretrained.model, pretrained.model.config
grid = config.image_grid
region = None if pooling.isdigit() else regions.region_mask(pooling, grid).reshape(-1)
cells = int(pooling) if region is None else 0
if region is None and (cells < 1 or grid % cells):
    sys.exit(f"CELLS must divide the {grid}x{grid} token grid; got {cells}")


def pool_cells(states):
    """(B, grid*grid, D) -> (B, cells*cells*D): the mean state of each cell of a cells x cells grid, or
    with a REGION its tokens' states, concatenated."""
    b, _, d = states.shape
    if region is not None:
        return states[:, region].reshape(b, -1)
    k = grid // cells
    return states.reshape(b, cells, k, cells, k, d).mean((2, 4)).reshape(b, -1)


def pooled_states_by_depth(params, codes):
    """(B, N) codes -> (B, L + 1, cells*cells*D): the pooled image-token states after the embeddings and each block."""
    text = jnp.full((codes.shape[0], config.max_text_len), PAD, jnp.int32)
    # one forward pass, keeping the embeddings and every block's output
    _, state = model.apply(params, text, codes, mutable=["intermediates"],
                           capture_intermediates=lambda m, name: isinstance(m, Block) or name == "embed")
    embedded = state["intermediates"]["embed"][0][0]  # embed returns (sequence, key mask)
    blocks = [state["intermediates"][f"block_{i}"]["__call__"][0] for i in range(config.num_layers)]
    return jnp.stack([pool_cells(image_hidden(x, config)) for x in [embedded] + blocks], 1).astype(jnp.float32)


fn = jax.jit(pooled_states_by_depth)
row = "mean" if cells == 1 else (f"cells{cells}x{cells}" if region is None else pooling)
splits = downstream.dataset_splits(data, pretrained.image_size, max_train)
codes_of = {name: np.asarray(pretrained.image_codes(split["images"]), np.int32) for name, split in splits.items()}
rows = {}
for label, params in (("gptface", pretrained.params), ("random_init", downstream.initial_params(pretrained))):
    for name, codes in codes_of.items():
        (states,) = sharding.run_in_batches(lambda c, params=params: (fn(params, c),), [codes], 256)
        for depth in range(config.num_layers + 1):
            rows.setdefault(f"{label}_{row}_depth{depth}", {})[name] = np.asarray(states[:, depth])
if region is not None:
    print(f"{pooling}: {int(region.sum())} of {grid * grid} tokens")
    for name, codes in codes_of.items():
        vectors = downstream.code_vector_features(pretrained.vq, codes.reshape(-1, grid, grid)).reshape(
            len(codes), grid * grid, -1)
        rows.setdefault(f"vq_code_vectors_{pooling}", {})[name] = vectors[:, region].reshape(len(codes), -1)
table = downstream.markdown(downstream.run_probes(rows, splits), data)
print(table if region is not None else table.split("\n\n| attribute")[0])
