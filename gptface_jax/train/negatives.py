"""ITM negatives mined from the ITC similarities inside the train step (ALBEF's hard negatives).

The input pipeline pairs a share of the images with another row's caption at random. With
`loss.mined_negative_fraction` > 0 that share of the negative rows is re-drawn on the device
from the batch's own unimodal embeddings: half keep their image and get a wrong caption drawn
with probability softmax(similarity) over the batch's captions, the other half keep their own
caption and get a wrong image drawn the same way. The true partner and every caption identical
to it have probability zero. The row's corruption pattern ([MASK] positions) is kept, so a
mined negative looks like any other negative to the ITM head.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from data_pipelines.text_tokenizer import MASK, PAD
from gptface_jax.models.losses import identical_captions


def draw_wrong_partners(key, logits, positive):
    """(B,) index of a wrong partner per row: categorical over `logits` (B, B) with positives excluded.

    A row with no wrong partner at all (every caption of the batch identical to its own) gets -1.
    """
    masked = jnp.where(positive, -jnp.inf, logits.astype(jnp.float32))
    drawn = jax.random.categorical(key, jnp.where(positive.all(1, keepdims=True), 0.0, masked), axis=1)
    return jnp.where(positive.all(1), -1, drawn)


def mine(key, batch: dict, text_emb, image_emb, scale, fraction: float, image_mask_id: int) -> tuple[dict, dict]:
    """The batch with `fraction` of its negative rows re-drawn from the similarities; and mining metrics.

    `text_emb`, `image_emb` (B, E) are every row's own clean caption and image, embedded unimodally.
    """
    k_rows, k_side, k_text, k_image = jax.random.split(key, 4)
    caption_ids, image_codes = batch["caption_ids"], batch["image_targets"]
    b = caption_ids.shape[0]
    positive = identical_captions(caption_ids)
    logits = jax.lax.stop_gradient(scale * (image_emb @ text_emb.T))            # (images, captions)
    wrong_caption = draw_wrong_partners(k_text, logits, positive)                # for each image
    wrong_image = draw_wrong_partners(k_image, logits.T, positive)               # for each caption
    negative = batch["itm_label"] == 0
    chosen = negative & (jax.random.uniform(k_rows, (b,)) < fraction)
    by_caption = jax.random.uniform(k_side, (b,)) < 0.5
    new_caption = chosen & by_caption & (wrong_caption >= 0)
    new_image = chosen & ~by_caption & (wrong_image >= 0)

    text_hidden = batch["text_inputs"] == MASK
    caption = jnp.where(new_caption[:, None], caption_ids[jnp.maximum(wrong_caption, 0)], caption_ids)
    text_inputs = jnp.where(text_hidden & (caption != PAD), MASK, caption)
    image_hidden = batch["image_inputs"] == image_mask_id
    image = image_codes[jnp.maximum(wrong_image, 0)]
    image_inputs = jnp.where(image_hidden, image_mask_id, image)
    rows = jnp.arange(b)
    rewritten = {
        **batch,
        "text_inputs": jnp.where((new_caption | new_image)[:, None], text_inputs, batch["text_inputs"]),
        "image_inputs": jnp.where(new_image[:, None], image_inputs, batch["image_inputs"]),
        # whose caption and image a mined row now shows (-1: not mined), for `shown_rows`
        "mined_caption_row": jnp.where(new_caption, wrong_caption, jnp.where(new_image, rows, -1)),
        "mined_image_row": jnp.where(new_image, wrong_image, -1),
    }
    mined_logit = jnp.where(new_caption, jnp.take_along_axis(logits, jnp.maximum(wrong_caption, 0)[:, None], 1)[:, 0],
                            jnp.take_along_axis(logits.T, jnp.maximum(wrong_image, 0)[:, None], 1)[:, 0])
    n_mined = jnp.maximum((new_caption | new_image).sum(), 1)
    metrics = {"mined_negatives": (new_caption | new_image).mean(),
               "mined_similarity": jnp.where(new_caption | new_image, mined_logit / scale, 0.0).sum() / n_mined}
    return rewritten, metrics


def shown_rows(batch: dict):
    """(caption row, image row) (B,) each: whose clean caption and image each ITM row shows, as rows
    of `caption_ids` / `image_targets` (the unimodal embeddings' rows).

    The pipeline's negatives show another row's caption (found by equality; -1 where none matches:
    a dropped caption) with their own image; mined rows say what they show.
    """
    same = (batch["text_targets"][:, None, :] == batch["caption_ids"][None, :, :]).all(-1)
    caption_row = jnp.where(same.any(1), same.argmax(1), -1)
    image_row = jnp.arange(caption_row.shape[0])
    if "mined_caption_row" in batch:
        caption_row = jnp.where(batch["mined_caption_row"] >= 0, batch["mined_caption_row"], caption_row)
        image_row = jnp.where(batch["mined_image_row"] >= 0, batch["mined_image_row"], image_row)
    return caption_row, image_row
