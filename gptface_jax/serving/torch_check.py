"""`gptface export --torch-check`: how far the PyTorch reference (`torch_model.py`) is from JAX.

Both read the same export directory. On one fixed batch (captions with padding and [MASK]
positions, an all-PAD caption, image codes with masked cells, random uint8 faces) every function
of the reference is compared with the training package's model, both in float32. A difference is
relative to the reference output's largest magnitude: max |torch - jax| / max |jax|.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.text_tokenizer import MASK, PAD
from gptface_jax.models.transformer import GPTFace, image_hidden, text_hidden
from gptface_jax.models.vq import VQModel, l2_normalize, to_float
from gptface_jax.serving import export, features

TOLERANCE = 1e-5  # float32 on the tiny config (tests/test_torch_model.py)


def fixed_batch(model_config, image_size: int, batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Text ids (padding after a random length, one caption all PAD, some [MASK]s), image codes (some
    cells the image [MASK]), uint8 faces: every kind of position the functions meet."""
    rng = np.random.default_rng(seed)
    length, cells = model_config.max_text_len, model_config.image_grid ** 2
    text = rng.integers(5, model_config.text_vocab, (batch, length))
    lengths = rng.integers(1, length + 1, batch)
    lengths[-1] = 0
    text = np.where(np.arange(length)[None] < lengths[:, None], text, PAD)
    text = np.where((rng.random(text.shape) < 0.2) & (text != PAD), MASK, text)
    codes = rng.integers(0, model_config.codebook_size, (batch, cells))
    codes = np.where(rng.random(codes.shape) < 0.25, model_config.image_mask_id, codes)
    images = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
    return {"text": text.astype(np.int32), "codes": codes.astype(np.int32), "images": images}


def jax_outputs(directory: str, batch: dict) -> dict[str, np.ndarray]:
    """What the training package's model computes for `batch` from the export's parameters, in float32."""
    loaded = export.load(directory, devices=jax.devices()[:1])
    model = GPTFace(dataclasses.replace(loaded.model.config, compute_dtype="float32"))
    mc, params = model.config, loaded.params
    text, codes = jnp.asarray(batch["text"]), jnp.asarray(batch["codes"])
    image_codes = jnp.where(codes == mc.image_mask_id, 0, codes)  # the unimodal passes see real codes only

    @jax.jit
    def transformer(params):
        out = model.apply(params, text, codes)
        feats = features.image_features(model, params, image_codes)
        itm = model.apply(params, text, image_codes, method=GPTFace.match_logits)
        result = {"features.cls": feats["cls"], "features.mean": feats["mean"], "itm_score": itm[:, 1] - itm[:, 0],
                  "token_logits.text": model.apply(params, text_hidden(out["hidden"], mc), method=GPTFace.text_logits),
                  "token_logits.image": model.apply(params, image_hidden(out["hidden"], mc),
                                                    method=GPTFace.image_logits)}
        if mc.itc_dim:
            t, i = model.apply(params, text, image_codes, method=GPTFace.itc_embeddings)
            result.update({"itc_text": t, "itc_image": i, "itc_similarity": (t * i).sum(-1)})
        return result

    vq_model = VQModel(dataclasses.replace(loaded.vq_config, dtype="float32"))
    vq = {"params": loaded.vq_params}

    @jax.jit
    def tokenizer(images, codes):
        z = vq_model.apply(vq, to_float(images), method=VQModel.project)
        scores = jnp.einsum("bhwd,kd->bhwk", z, l2_normalize(vq["params"]["codebook"]))
        g = vq_model.config.grid
        return {"vq.code_scores": scores, "vq.decode_float": vq_model.apply(vq, codes.reshape(-1, g, g),
                                                                            method=VQModel.decode_codes)}

    out = transformer(params)
    out.update(tokenizer(jnp.asarray(batch["images"]), image_codes))
    return {name: np.asarray(value, np.float32) for name, value in jax.device_get(out).items()}


def torch_outputs(directory: str, batch: dict) -> dict[str, np.ndarray]:
    import torch

    from gptface_jax.serving import torch_model
    m = torch_model.load(directory)
    text, codes = torch.from_numpy(batch["text"]).long(), torch.from_numpy(batch["codes"]).long()
    image_codes = torch.where(codes == m.model.image_mask_id, 0, codes)
    with torch.no_grad():
        feats = m.model.features(image_codes)
        logits = m.model.token_logits(text, codes)
        out = {"features.cls": feats["cls"], "features.mean": feats["mean"],
               "itm_score": m.model.itm_score(text, image_codes),
               "token_logits.text": logits["text"], "token_logits.image": logits["image"],
               "vq.code_scores": m.vq.code_scores(torch.from_numpy(batch["images"])),
               "vq.decode_float": m.vq.decode_float(image_codes)}
        if m.model.itc_dim:
            t, i = m.model.itc_text(text), m.model.itc_image(image_codes)
            out.update({"itc_text": t, "itc_image": i, "itc_similarity": m.model.itc_similarity(text, image_codes)})
    return {name: value.numpy() for name, value in out.items()}


def compare(directory: str, batch_size: int = 4, seed: int = 0) -> dict[str, float]:
    """{function output: max |torch - jax| / max |jax|} on the fixed batch."""
    loaded = export.load(directory, devices=jax.devices()[:1])
    batch = fixed_batch(loaded.model.config, loaded.vq_config.image_size, batch_size, seed)
    want, got = jax_outputs(directory, batch), torch_outputs(directory, batch)
    if set(want) != set(got):
        raise AssertionError(f"outputs differ: jax {sorted(want)}, torch {sorted(got)}")
    return {name: float(np.abs(got[name] - want[name]).max() / max(np.abs(want[name]).max(), 1e-30))
            for name in sorted(want)}


def report(differences: dict[str, float], tolerance: float = TOLERANCE) -> str:
    width = max(map(len, differences))
    rows = [f"{name:<{width}}  {value:.2e}{'' if value <= tolerance else '  ABOVE ' + format(tolerance, '.0e')}"
            for name, value in differences.items()]
    return "\n".join([f"{'PyTorch vs JAX':<{width}}  max relative difference", *rows])
