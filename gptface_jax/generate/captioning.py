"""Face-to-text: a caption for an aligned face crop, one per (guidance strength, seed).

The caption's positions are all [MASK]ed and decoded with the text decoder of `decoding.py` under
the caption task's defaults (`decode_config.py`: left to right, temperature 0.5, ITM guidance 3,
a repeat penalty), reading only the ids the text tokenizer has.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from data_pipelines.text_tokenizer import PAD
from gptface_jax.generate import decoding
from gptface_jax.generate.decode_config import DecodeConfig


def caption(pretrained, crop: np.ndarray, config: DecodeConfig, guidances=(3.0,), seeds=(0,), length: int = 12,
            cache: dict | None = None) -> list[tuple[float, int, str]]:
    """[(guidance, seed, caption)] for one (S, S, 3) uint8 face; `length` caption tokens at most."""
    codes = pretrained.image_codes(crop[None])
    length = min(length, pretrained.model.config.max_text_len)
    mask = np.arange(pretrained.model.config.max_text_len)[None] < length
    text = np.where(mask, 0, PAD).astype(np.int32)
    out = []
    for g in guidances:
        decoder = decoding.cached_decoder(cache, pretrained.model, decoding.TEXT,
                                          dataclasses.replace(config, guidance=g),
                                          text_vocab=pretrained.tokenizer.vocab_size)
        for seed in seeds:
            ids, _ = decoder(pretrained.params, text, codes, mask, jax.random.PRNGKey(seed))
            out.append((float(g), int(seed), pretrained.tokenizer.decode(np.asarray(ids)[0, :length])[0]))
    return out
