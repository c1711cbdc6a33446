"""Pre-training losses: MILM (masked text + image modelling) and ITM, with their accuracies.

The vocabulary heads run on masked positions only: masked positions of the whole batch are
gathered into a fixed-capacity buffer (`capacity` x all positions), so shapes stay static under jit
while the cost follows the masking ratio. Positions beyond the capacity are dropped and counted
(`*_overflow`); size the capacity above the expected masked fraction.

Each loss is a sum over its rows divided by a normaliser (rows counted). By default the normaliser
is this batch's own count; under gradient accumulation the step passes the whole batch's counts
(`normalisers`), so the micro-batch losses add up to exactly the loss of the whole batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from data_pipelines.text_tokenizer import MASK


def capacity_rows(batch: int, positions: int, capacity: float) -> int:
    """How many rows the masked-position buffer holds: `capacity` x all positions, at least 1."""
    return max(1, min(batch * positions, int(round(capacity * batch * positions))))


def gather_masked(hidden, mask, capacity: float):
    """hidden (B, N, D), mask (B, N) -> rows (C, D), flat indices (C,), valid (C,), overflow count."""
    b, n, d = hidden.shape
    c = capacity_rows(b, n, capacity)
    flat = mask.reshape(-1)
    idx = jnp.argsort(~flat, stable=True)[:c]
    valid = flat[idx]
    overflow = jnp.maximum(flat.sum() - c, 0)
    return hidden.reshape(b * n, d)[idx], idx, valid, overflow


def masked_cross_entropy(logits, targets, valid, normaliser=None):
    """Cross-entropy and accuracy summed over valid rows / `normaliser` (default: the valid rows)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    n = jnp.maximum(valid.sum(), 1) if normaliser is None else normaliser
    loss = jnp.where(valid, nll, 0.0).sum() / n
    acc = jnp.where(valid, logits.argmax(-1) == targets, False).sum() / n
    return loss, acc


def itm_loss(itm_logits, labels, weights=None, normaliser=None):
    """2-way cross-entropy on [CLS], averaged with per-example `weights` (default all 1).

    Returns loss, accuracy and the match probability. Caption-dropped examples carry weight 0.
    """
    logp = jax.nn.log_softmax(itm_logits.astype(jnp.float32), axis=-1)
    w = jnp.ones(labels.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0) if normaliser is None else normaliser
    loss = -(w * jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]).sum() / n
    acc = (w * (itm_logits.argmax(-1) == labels)).sum() / n
    return loss, acc, jnp.exp(logp[:, 1])


def accumulation_normalisers(batch, accum_steps: int, capacity_text: float, capacity_image: float) -> dict:
    """The rows each loss of a whole batch averages over, counted as its `accum_steps` micro-batches
    (every `accum_steps`-th row) will gather them: the `normalisers` of milm_itm_loss."""
    def rows(mask, capacity):
        micro = mask.reshape(mask.shape[0] // accum_steps, accum_steps, -1).swapaxes(0, 1).reshape(accum_steps, -1)
        cap = capacity_rows(micro.shape[1] // mask.shape[1], mask.shape[1], capacity)
        return jnp.maximum(jnp.minimum(micro.sum(1), cap).sum(), 1)
    weight = batch["itm_weight"] if "itm_weight" in batch else jnp.ones(batch["itm_label"].shape)
    return {"text": rows(batch["text_mask"], capacity_text), "image": rows(batch["image_mask"], capacity_image),
            "itm": jnp.maximum(weight.astype(jnp.float32).sum(), 1.0)}


def milm_itm_loss(text_logits_fn, image_logits_fn, out, batch, *, max_text_len: int, capacity_text: float,
                  capacity_image: float, weights=(1.0, 1.0, 1.0), normalisers: dict | None = None):
    """Total loss and metrics for one batch.

    `batch` holds `text_targets` (B, L), `image_targets` (B, N), `text_mask`, `image_mask` (bool,
    already cleared on ITM negatives), `itm_label` (B,) and optionally `itm_weight` (B,).
    `text_logits_fn` / `image_logits_fn` map gathered hidden rows to float32 logits (the model's head
    methods). `normalisers` ({'text', 'image', 'itm'}: row counts) replace this batch's own counts
    (accumulation_normalisers).
    """
    norm = normalisers or {}
    hidden = out["hidden"]
    text_h, image_h = hidden[:, 1:1 + max_text_len], hidden[:, 2 + max_text_len:]
    rows, idx, valid, t_over = gather_masked(text_h, batch["text_mask"], capacity_text)
    t_loss, t_acc = masked_cross_entropy(text_logits_fn(rows), batch["text_targets"].reshape(-1)[idx], valid,
                                         norm.get("text"))
    rows, idx, valid, i_over = gather_masked(image_h, batch["image_mask"], capacity_image)
    i_loss, i_acc = masked_cross_entropy(image_logits_fn(rows), batch["image_targets"].reshape(-1)[idx], valid,
                                         norm.get("image"))
    m_loss, m_acc, p_match = itm_loss(out["itm_logits"], batch["itm_label"], batch.get("itm_weight"), norm.get("itm"))
    wt, wi, wm = weights
    total = wt * t_loss + wi * i_loss + wm * m_loss
    metrics = {"loss": total, "text_loss": t_loss, "image_loss": i_loss, "itm_loss": m_loss,
               "text_accuracy": t_acc, "image_accuracy": i_acc, "itm_accuracy": m_acc,
               "text_overflow": t_over, "image_overflow": i_over}
    return total, (metrics, p_match)



def identical_captions(caption_ids):
    """(B, B) bool: caption i equals caption j (diagonal True); such pairs are never each other's negatives."""
    return (caption_ids[:, None, :] == caption_ids[None, :, :]).all(-1)


def itc_loss(text_emb, image_emb, caption_ids, log_scale, bias, kind: str = "sigmoid"):
    """Image-text contrastive loss over the whole (global) batch, and its retrieval accuracy.

    `text_emb`, `image_emb` (B, E) L2-normalised; pair (i, j) is positive when caption j is
    identical to caption i (every row's own pair included), so duplicates are never pushed apart.
    'sigmoid' (SigLIP): each of the B x B pairs is a binary problem, logit = e^log_scale * cos + bias,
    summed per image and averaged over images. 'softmax' (InfoNCE, CLIP): cross-entropy both ways
    against the positives (bias unused). Under jit the arrays are global, so on any mesh the loss
    sees every pair of the batch.
    """
    logits = jnp.exp(log_scale) * (image_emb @ text_emb.T)                    # (images, texts)
    positive = identical_captions(caption_ids)
    if kind == "sigmoid":
        logits = logits + bias
        loss = -jnp.sum(jax.nn.log_sigmoid(jnp.where(positive, logits, -logits)), axis=1).mean()
    else:
        targets = positive / positive.sum(1, keepdims=True)
        loss = 0.5 * (-(targets * jax.nn.log_softmax(logits, 1)).sum(1).mean()
                      - (targets * jax.nn.log_softmax(logits.T, 1)).sum(1).mean())
    hit_text = jnp.take_along_axis(positive, logits.argmax(1)[:, None], 1)[:, 0]   # image -> its caption
    hit_image = jnp.take_along_axis(positive, logits.argmax(0)[:, None], 1)[:, 0]  # caption -> its image
    return loss, {"itc_loss": loss, "itc_i2t_accuracy": hit_text.mean(), "itc_t2i_accuracy": hit_image.mean(),
                  "itc_scale": jnp.exp(log_scale), "itc_bias": bias}


def word_logits(text_emb, word_head):
    """(B, E) L2-normalised text embeddings -> (B, V) token logits through `itc_word_head` (E, V);
    the embeddings are scaled to unit variance per dimension first."""
    return (text_emb * text_emb.shape[-1] ** 0.5) @ word_head


def caption_word_loss(word_logits, caption_ids):
    """Cross-entropy of (B, V) logits against each caption's bag of tokens (counted; the special ids
    up to [MASK] left out): the text embedding must keep every token the caption holds."""
    words = caption_ids > MASK
    bag = jnp.zeros(word_logits.shape, jnp.float32).at[jnp.arange(len(caption_ids))[:, None], caption_ids].add(words)
    has = bag.sum(1) > 0
    target = bag / jnp.maximum(bag.sum(1, keepdims=True), 1)
    nll = -(target * jax.nn.log_softmax(word_logits.astype(jnp.float32), -1)).sum(1)
    return jnp.where(has, nll, 0.0).sum() / jnp.maximum(has.sum(), 1)
