"""Image features of a GPTFace: the [CLS] vector and the mean of the image-token states.

The image is read alone (the text is all PAD, so [CLS] attends to [SEP] and the image only), as
downstream probes and fine-tuning see it. One jitted function of (params, codes); `extract` feeds
it fixed-size batches so it compiles once for any number of images.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.text_tokenizer import PAD
from gptface_jax.models.transformer import GPTFace, image_hidden
from gptface_jax.runtime import config_lib, sharding

FEATURES = config_lib.IMAGE_FEATURES


def image_features(model: GPTFace, params, image_codes):
    """(B, N) codes -> {'cls': (B, D), 'mean': (B, D)} float32 (final layer-normed states)."""
    text = jnp.full((image_codes.shape[0], model.config.max_text_len), PAD, jnp.int32)
    out = model.apply(params, text, image_codes)
    return {"cls": out["cls"].astype(jnp.float32),
            "mean": image_hidden(out["hidden"], model.config).mean(axis=1).astype(jnp.float32)}


def make_feature_fn(model: GPTFace):
    return jax.jit(lambda params, codes: image_features(model, params, codes))


def extract(feature_fn, params, image_codes: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Features of every row of `image_codes`, in order; the last batch is padded and cut back."""
    n = len(image_codes)
    if n == 0:
        raise ValueError("no images to extract features from")
    out = sharding.run_in_batches(lambda codes: feature_fn(params, codes), [np.asarray(image_codes, np.int32)],
                                  min(batch_size, n))
    return {name: out[name] for name in FEATURES}
