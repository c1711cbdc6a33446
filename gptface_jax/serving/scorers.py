"""Jitted held-out scorers of a GPTFace, with outputs replicated so every process can read them."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from data_pipelines.text_tokenizer import MASK
from gptface_jax.models.transformer import GPTFace, image_hidden, text_hidden
from gptface_jax.runtime import sharding


def itm_scorer(model: GPTFace, mesh):
    """ITM logits on whole captions and images."""
    return jax.jit(lambda p, t, i: model.apply(p, t, i, method=GPTFace.match_logits),
                   out_shardings=sharding.replicated(mesh))


def caption_scorer(model: GPTFace, mesh):
    """(summed NLL, token count) per row over the `hidden` caption positions, which are masked."""
    def score(params, text_ids, image_codes, hidden):
        out = model.apply(params, jnp.where(hidden, MASK, text_ids), image_codes)
        logits = model.apply(params, text_hidden(out["hidden"], model.config), method=GPTFace.text_logits)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), text_ids[..., None], -1)[..., 0]
        return jnp.where(hidden, nll, 0.0).sum(-1), hidden.sum(-1).astype(jnp.float32)
    return jax.jit(score, out_shardings=sharding.replicated(mesh))


def image_scorer(model: GPTFace, mesh):
    """(summed NLL, token count) per row of whole images generated from the caption: every image token masked."""
    def score(params, text_ids, image_codes):
        out = model.apply(params, text_ids, jnp.full_like(image_codes, model.config.image_mask_id))
        logits = model.apply(params, image_hidden(out["hidden"], model.config), method=GPTFace.image_logits)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), image_codes[..., None], -1)[..., 0]
        return nll.sum(-1), jnp.full(nll.shape[:1], nll.shape[1], jnp.float32)
    return jax.jit(score, out_shardings=sharding.replicated(mesh))
