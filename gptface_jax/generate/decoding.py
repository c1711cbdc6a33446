"""Iterative masked decoding (MaskGIT) of image or text tokens, with ITM-gradient guidance.

One jitted `lax.fori_loop` over T steps serves both modalities. At step t every still-masked
position is sampled; the most confident keep their sample and the rest are masked again, so that
after step t a fraction cos(pi/2 * (t+1)/T) of each example's initially masked positions remains
masked (at least one fewer per step, none after the last; `masked_after`). Confidence = log p(sample) + Gumbel
noise annealed linearly to zero. Positions that were not masked at the start are never touched.
`order="left_to_right"` keeps the leftmost positions instead, an equal share per step
(`masked_after_linear`): one token per step when T equals the positions, as captions are written.
For text, `repeat_penalty` is subtracted from the logit of every token the text already holds.

ITM-gradient guidance (DESIGN.md section 3): the masked positions are relaxed to their expected
embedding softmax(logits / tau) @ E, the pair is scored by the ITM head (match log-odds), and
g = d score / d logits moves the logits by lambda * g / |g| (|g| normalised per example to one
unit per masked position), K times, before sampling. `guide="itc"` scores the pair by the
similarity of the unimodal (ITC) embeddings instead, the relaxed side through its own pass;
"both" adds the two normalised gradients. lambda = 0 skips guidance entirely, so it
reproduces plain decoding bit for bit. With `guidance_contrast` the score is the match log-odds
minus those of the same relaxed sample with the control blanked: the ITM head also rates how
match-like a sample looks whatever the caption, and that part pulls every caption the same way.
Classifier-free guidance mixes in logits computed without
the control signal (empty text for images, a fully masked image for text):
(1 + w) * cond - w * uncond; w = 0 is off.
A negative control (`negative`: a caption to steer an image away from, or an image for text) takes
the blank control's place in both: uncond is computed with it, and guidance follows the score for
the control minus the score for the negative (the match log-odds and, under `guide="itc"`, the
similarity). A caption that negates ("without a mask") is scored by the words it holds ("mask");
steering away from the caption that states the attribute is what removes it.
With `candidates` = n > 1 each example is decoded n times (its rows repeated in one batch) and the
sample with the highest match log-odds against the control (minus those against the negative) is kept:
reranking by the model's own ITM.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from data_pipelines.text_tokenizer import MASK, NUM_SPECIAL, PAD
from gptface_jax.generate.decode_config import DecodeConfig  # noqa: F401  (re-exported: decoding.DecodeConfig)
from gptface_jax.models.transformer import GPTFace, image_hidden, text_hidden

IMAGE, TEXT = "image", "text"


def masked_after(step, total_masked, currently_masked, steps: int):
    """Positions left masked after `step` (0-based), per example.

    floor(total * cos(pi/2 * (step+1)/T)), but at least one fewer than are masked now, and none
    after the last step.
    """
    scheduled = jnp.floor(total_masked * jnp.cos(0.5 * math.pi * (step + 1) / steps)).astype(jnp.int32)
    keep = jnp.clip(jnp.minimum(scheduled, currently_masked - 1), 0, None)
    return jnp.where(step + 1 >= steps, 0, keep)


def masked_after_linear(step, total_masked, steps: int):
    """Positions left masked after `step` when an equal share is revealed per step (ceil)."""
    revealed = -((-(step + 1) * total_masked) // steps)
    return jnp.clip(total_masked - revealed, 0, None).astype(jnp.int32)


def _stream(model: GPTFace, params, modality: str):
    """(logits_fn(text, image) -> (B, N, V) float32, the embedding table slice, the [MASK] id)."""
    c = model.config
    if modality == IMAGE:
        def logits_fn(text, image, embeds=None):
            out = model.apply(params, text, image, inputs_embeds=embeds)
            return model.apply(params, image_hidden(out["hidden"], c), method=GPTFace.image_logits), out
        return logits_fn, params["params"]["image_embed"][: c.codebook_size], c.image_mask_id
    def logits_fn(text, image, embeds=None):
        out = model.apply(params, text, image, inputs_embeds=embeds)
        return model.apply(params, text_hidden(out["hidden"], c), method=GPTFace.text_logits), out
    return logits_fn, params["params"]["text_embed"][: c.text_vocab], MASK


def _relaxed(model: GPTFace, params, modality, base, offset, logits, mask, table, tau):
    """`base` embeddings with the masked positions (from `offset`) moved from the [MASK] row to
    their expected embedding softmax(logits / tau) @ table."""
    p = params["params"]
    mask_row = p["text_embed"][MASK] if modality == TEXT else p["image_embed"][model.config.image_mask_id]
    expected = jax.nn.softmax(logits / tau, axis=-1) @ table.astype(jnp.float32)
    delta = jnp.where(mask[..., None], expected - mask_row, 0.0)
    return base.at[:, offset:offset + mask.shape[1]].add(delta.astype(base.dtype))


def _itm_score_of_logits(model: GPTFace, params, text, image, modality, mask, table, tau):
    """Match log-odds of the pair with masked positions relaxed to their expected embedding."""
    base, _ = model.apply(params, text, image, method=GPTFace.embed)
    offset = 1 if modality == TEXT else 2 + model.config.max_text_len

    def score(logits):
        embeds = _relaxed(model, params, modality, base, offset, logits, mask, table, tau)
        itm = model.apply(params, text, image, inputs_embeds=embeds, method=GPTFace.match_logits)
        return itm[:, 1] - itm[:, 0]

    return score


def _blank_control(model: GPTFace, text, image, modality: str):
    """The inputs with the control signal removed: empty text for images, a fully masked image for text."""
    if modality == IMAGE:
        return jnp.full_like(text, PAD), image
    return text, jnp.full_like(image, model.config.image_mask_id)


def _away_control(model: GPTFace, text, image, modality: str, negative=None):
    """The inputs decoding contrasts with: the negative control in the control's place, or the blank one."""
    if negative is None:
        return _blank_control(model, text, image, modality)
    return (negative, image) if modality == IMAGE else (text, negative)


def _itc_score_of_logits(model: GPTFace, params, text, image, modality, mask, table, tau, negative=None):
    """Scaled cosine similarity of the unimodal embeddings, the generated side relaxed.

    The control side is embedded once, as it is (minus the negative control's embedding, if given);
    the generated side's masked positions take their expected embedding, so the gradient reaches the
    logits through the unimodal pass alone.
    """
    scale = jnp.exp(params["params"]["itc_log_scale"])
    if modality == IMAGE:
        control = model.apply(params, text, method=GPTFace.itc_text)
        if negative is not None:
            control = control - model.apply(params, negative, method=GPTFace.itc_text)
        base = model.apply(params, image, method=GPTFace.embed_image)
        offset, method, generated = 0, GPTFace.itc_image, image
    else:
        control = model.apply(params, image, method=GPTFace.itc_image)
        if negative is not None:
            control = control - model.apply(params, negative, method=GPTFace.itc_image)
        base, _ = model.apply(params, text, method=GPTFace.embed_text)
        offset, method, generated = 1, GPTFace.itc_text, text

    def score(logits):
        embeds = _relaxed(model, params, modality, base, offset, logits, mask, table, tau)
        relaxed = model.apply(params, generated, inputs_embeds=embeds, method=method)
        return scale * jnp.sum(relaxed * control, -1)

    return score


def _guidance_scores(model, params, text, image, modality, mask, table, config: DecodeConfig, negative=None):
    """The scores whose gradients guide: ITM match log-odds (contrasted with the blank control under
    `guidance_contrast`, always with a negative control), ITC similarity, or both."""
    scores = []
    if config.guide in ("itm", "both"):
        matched = _itm_score_of_logits(model, params, text, image, modality, mask, table, config.guidance_tau)
        if config.guidance_contrast or negative is not None:
            away = _itm_score_of_logits(model, params, *_away_control(model, text, image, modality, negative),
                                        modality, mask, table, config.guidance_tau)
            scores.append(lambda lg, matched=matched, away=away: matched(lg) - away(lg))
        else:
            scores.append(matched)
    if config.guide in ("itc", "both"):
        if not model.config.itc_dim:
            raise ValueError("guide='itc' needs a model with ITC heads (model.itc_dim > 0)")
        scores.append(_itc_score_of_logits(model, params, text, image, modality, mask, table, config.guidance_tau,
                                           negative))
    return scores


def guide_logits(model, params, text, image, modality, mask, logits, config: DecodeConfig, negative=None):
    """K guidance steps on the logits of masked positions: each score's gradient, normalised, times lambda."""
    _, table, _ = _stream(model, params, modality)
    scores = _guidance_scores(model, params, text, image, modality, mask, table, config, negative)
    n_masked = jnp.maximum(mask.sum(1), 1).astype(jnp.float32)
    for _ in range(config.guidance_steps):
        step = jnp.zeros_like(logits)
        for score in scores:
            g = jax.grad(lambda lg, score=score: score(lg).sum())(logits)
            g = jnp.where(mask[..., None], g, 0.0)
            norm = jnp.sqrt(jnp.sum(g * g, axis=(1, 2)) / n_masked)[:, None, None]
            step = step + g / jnp.maximum(norm, 1e-12)
        logits = logits + config.guidance * step
    return logits


def decode(model: GPTFace, params, text, image, mask, rng, modality: str = IMAGE,
           config: DecodeConfig = DecodeConfig(), text_vocab: int | None = None, negative=None):
    """Fills the masked positions of `image` (B, N) or `text` (B, L); returns (text, image).

    `mask` (B, N or L) marks the positions to generate in `modality`; the other modality is the
    control signal, and `negative` (shaped like it, optional) the control to steer away from. Text
    is drawn from ids [NUM_SPECIAL, text_vocab): the tokenizer's own size, which may be below the
    model's table (SentencePiece can stop short of the size asked for).
    Jit with `modality`, `config` and `text_vocab` static (see `make_decoder`).
    """
    config.validate()
    if config.candidates > 1:
        return _best_of_candidates(model, params, text, image, mask, rng, modality, config, text_vocab, negative)
    vocab = model.config.text_vocab if text_vocab is None else min(text_vocab, model.config.text_vocab)
    logits_fn, _, mask_id = _stream(model, params, modality)
    tokens = image if modality == IMAGE else text
    tokens = jnp.where(mask, mask_id, tokens)
    total = mask.sum(1).astype(jnp.int32)

    def inputs(tok):
        return (text, tok) if modality == IMAGE else (tok, image)

    def uncond_inputs(tok):
        return _away_control(model, *inputs(tok), modality, negative)

    def body(step, carry):
        tok, still_masked, key = carry
        key, k_sample, k_noise = jax.random.split(key, 3)
        logits, _ = logits_fn(*inputs(tok))
        if config.cfg_scale > 0:
            uncond, _ = logits_fn(*uncond_inputs(tok))
            logits = (1 + config.cfg_scale) * logits - config.cfg_scale * uncond
        if modality == TEXT:  # special ids ([PAD], [CLS], [MASK], ...) and ids past the tokenizer: never drawn
            ids = jnp.arange(logits.shape[-1])
            logits = jnp.where((ids >= NUM_SPECIAL) & (ids < vocab), logits, -1e9)
            if config.repeat_penalty > 0:
                held = jnp.where(still_masked, PAD, tok)   # PAD is never drawn: no penalty from it
                present = jax.nn.one_hot(held, logits.shape[-1], dtype=jnp.bool_).any(1)   # (B, V)
                logits = logits - config.repeat_penalty * present[:, None, :]
        if config.guidance > 0:  # after the mask, so that the relaxation is the distribution sampled from
            t_in, i_in = inputs(tok)
            logits = guide_logits(model, params, t_in, i_in, modality, still_masked, logits, config, negative)
        logits = logits / config.temperature
        sampled = jax.random.categorical(k_sample, logits, axis=-1)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), sampled[..., None], -1)[..., 0]
        anneal = config.confidence_noise * (1.0 - (step + 1) / config.steps)
        if config.order == "left_to_right":
            confidence = -jnp.broadcast_to(jnp.arange(logp.shape[1], dtype=logp.dtype), logp.shape)
            keep_masked = masked_after_linear(step, total, config.steps)
        else:
            confidence = logp + anneal * jax.random.gumbel(k_noise, logp.shape)
            keep_masked = masked_after(step, total, still_masked.sum(1).astype(jnp.int32), config.steps)
        confidence = jnp.where(still_masked, confidence, jnp.inf)  # revealed/given positions stay
        rank = jnp.argsort(jnp.argsort(confidence, axis=1), axis=1)  # 0 = least confident
        remask = still_masked & (rank < keep_masked[:, None])
        tok = jnp.where(still_masked & ~remask, sampled, tok)
        return tok, remask, key

    tokens, _, _ = jax.lax.fori_loop(0, config.steps, body, (tokens, mask, rng))
    return (text, tokens) if modality == IMAGE else (tokens, image)


def _best_of_candidates(model, params, text, image, mask, rng, modality, config, text_vocab, negative):
    """`config.candidates` samples per example (its rows repeated, decoded at once under one rng) and the
    one with the highest match log-odds against the control signal (minus those against `negative`)."""
    n, batch = config.candidates, mask.shape[0]

    def repeat(x):
        return None if x is None else jnp.repeat(x, n, axis=0)   # example-major: rows i*n .. i*n+n-1

    text, image = decode(model, params, repeat(text), repeat(image), repeat(mask), rng, modality,
                         dataclasses.replace(config, candidates=1), text_vocab, repeat(negative))
    score = itm_score(model, params, text, image)
    if negative is not None:
        score = score - itm_score(model, params, *_away_control(model, text, image, modality, repeat(negative)))
    best = score.reshape(batch, n).argmax(1)
    return tuple(x.reshape(batch, n, *x.shape[1:])[jnp.arange(batch), best] for x in (text, image))


def make_decoder(model: GPTFace, modality: str, config: DecodeConfig, text_vocab: int | None = None):
    """jit(decode) for one modality and config: (params, text, image, mask, rng, negative=None) -> (text, image)."""
    return jax.jit(lambda params, text, image, mask, rng, negative=None: decode(
        model, params, text, image, mask, rng, modality, config, text_vocab, negative))


def cached_decoder(cache: dict | None, model: GPTFace, modality: str, config: DecodeConfig,
                   text_vocab: int | None = None):
    """`make_decoder`, kept in `cache` (a long-lived server's dict) so each (modality, config) compiles once."""
    if cache is None:
        return make_decoder(model, modality, config, text_vocab)
    key = (modality, config, text_vocab)
    if key not in cache:
        cache[key] = make_decoder(model, modality, config, text_vocab)
    return cache[key]


def itm_score(model: GPTFace, params, text, image):
    """Match log-odds of whole pairs."""
    itm = model.apply(params, text, image, method=GPTFace.match_logits)
    return itm[:, 1] - itm[:, 0]
