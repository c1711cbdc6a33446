"""Does face-to-text state true facts? Captions of held-out SynthFaces faces, read back by the phrase banks.

Each of `faces` held-out faces gets one caption from the text decoder (`gptface caption`'s sampler
and length). The facts a caption states are read back from its words (`captions.mentioned_facts`,
the same phrase banks that wrote the corpus) and judged against the face's labels
(`eval_pairs.visible_verdict`: hair colour is no fact on a bald or hatted face). Reported:
  facts_true_share   true facts / stated facts, over all captions
  stating_share      captions that state at least one fact
  repeat_share       captions with a word repeated back to back ("with with")
  facts_per_caption  stated facts per caption
and a few captions with their verdicts.
"""
from __future__ import annotations

import jax
import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.captions import mentioned_facts
from data_pipelines.synthfaces.eval_pairs import visible_verdict
from data_pipelines.text_tokenizer import PAD
from gptface_jax.evals import itm_eval
from gptface_jax.generate import decoding
from gptface_jax.generate.decode_config import DecodeConfig, default_config


def repeats_a_word(caption: str) -> bool:
    words = caption.lower().split()
    return any(a == b for a, b in zip(words, words[1:]))


def judge(captions: list[str], split: dict) -> dict:
    """The shares above for `captions[i]` describing face i of `split` (an `itm_eval.load_split`)."""
    true = stated = stating = repeated = 0
    verdicts = []
    for i, caption in enumerate(captions):
        facts = mentioned_facts(caption)
        t, f = visible_verdict(facts, split["attributes"][i], split["hair_colour"][i], split["expression"][i])
        true, stated = true + t, stated + t + f
        stating += (t + f) > 0
        repeated += repeats_a_word(caption)
        verdicts.append({"caption": caption, "true_facts": t, "false_facts": f})
    n = max(len(captions), 1)
    return {"faces": len(captions), "facts_true_share": true / stated if stated else float("nan"),
            "stating_share": stating / n, "repeat_share": repeated / n, "facts_per_caption": stated / n,
            "examples": verdicts[:12]}


def evaluate(pretrained, *, faces: int = 200, length: int = 12, seed: int = 0,
             config: DecodeConfig | None = None, batch_size: int = 50) -> dict:
    """Captions `faces` held-out faces of the pre-tokenized data the model trained on, and judges them.

    `config` defaults to `gptface caption`'s sampler (`decode_config.default_config("caption")`).
    """
    config = default_config("caption") if config is None else config
    split = itm_eval.load_split(ShardSource(pretrained.config.data.pretokenized, "test"), faces)
    if "attributes" not in split:
        raise ValueError("the held-out split has no SynthFaces labels to judge captions against")
    max_len = pretrained.model.config.max_text_len
    length = min(length, max_len)
    decoder = decoding.make_decoder(pretrained.model, decoding.TEXT, config, text_vocab=pretrained.tokenizer.vocab_size)
    captions = []
    for start in range(0, len(split["image_codes"]), batch_size):
        codes = split["image_codes"][start:start + batch_size]
        mask = np.broadcast_to(np.arange(max_len)[None] < length, (len(codes), max_len))
        text = np.where(mask, 0, PAD).astype(np.int32)
        out, _ = decoder(pretrained.params, text, codes, mask, jax.random.fold_in(jax.random.PRNGKey(seed), start))
        captions += pretrained.tokenizer.decode(np.asarray(out)[:, :length])
    return {"guidance": config.guidance, "order": config.order, "temperature": config.temperature,
            "repeat_penalty": config.repeat_penalty, "candidates": config.candidates, "length": length,
            **judge(captions, split)}
