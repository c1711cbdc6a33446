"""Held-out reconstruction of the VQ image tokenizer: PSNR, L1/MSE and codebook use over a whole
split, and a grid of originals beside their reconstructions (the `reconstruction` evaluator)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from data_pipelines.pipeline import ReaderConfig, image_text_dataset
from data_pipelines.shards import ShardSource
from gptface_jax.models.vq import VQModel, to_float, to_uint8
from gptface_jax.runtime import sharding


def psnr(recon, target):
    """Per-image PSNR in dB of images in [-1, 1], measured on [0, 1] after clipping."""
    mse = jnp.mean(jnp.square((jnp.clip(recon, -1, 1) - target) / 2.0), axis=(1, 2, 3))
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))



def make_eval_step(model: VQModel):
    def evaluate(params, images_uint8):
        images = to_float(images_uint8)
        codes = model.apply({"params": params}, images, method=VQModel.encode)
        recon = model.apply({"params": params}, codes, method=VQModel.decode_codes)
        return codes, recon, psnr(recon, images), jnp.mean(jnp.abs(jnp.clip(recon, -1, 1) - images), axis=(1, 2, 3)), \
            jnp.mean(jnp.square((jnp.clip(recon, -1, 1) - images) / 2.0), axis=(1, 2, 3))
    return evaluate


def evaluate(eval_fn, params, source: ShardSource, batch_size: int, codebook_size: int, mesh, config):
    """Held-out reconstruction quality and codebook use over a whole split, streamed batch by batch."""
    it = image_text_dataset(source, ReaderConfig(batch_size=batch_size, shuffle=False, num_epochs=1,
                                                 drop_remainder=False))
    put = sharding.global_batch_put(mesh, config)
    parts, grid = [], None
    for batch in it:
        out = sharding.run_in_batches(lambda x: eval_fn(params, x), [batch["image"]], batch_size, put)
        parts.append(out)
        if grid is None:
            grid = (batch["image"][:16], to_uint8(out[1])[:16])
    codes, _, psnrs, l1s, mses = (np.concatenate(column) for column in zip(*parts))
    counts = np.bincount(codes.reshape(-1), minlength=codebook_size)
    probs = counts / counts.sum()
    nz = probs[probs > 0]
    return {"eval_psnr": float(psnrs.mean()), "eval_l1": float(l1s.mean()), "eval_mse": float(mses.mean()),
            "eval_code_usage": float((counts > 0).mean()), "eval_perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
            "eval_images": int(len(codes))}, grid


def save_grid(pairs, path: str) -> None:
    """Rows of original | reconstruction pairs."""
    from PIL import Image
    originals, recons = pairs
    tiles = [np.concatenate([o, r], axis=1) for o, r in zip(originals, recons)]
    cols = 4
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles) - len(tiles) % cols or len(tiles),
                                                                     cols)]
    grid = np.concatenate([r for r in rows if r.shape == rows[0].shape], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
