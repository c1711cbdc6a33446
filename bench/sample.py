"""Sampler throughput at base shape: text-to-face and editing, guided vs unguided, in one run.

    python bench/sample.py                 # CPU: batch 2, 2 layers (reduced depth)
    python bench/sample.py --layers 12 --batch 64 --out DIR     # one H100

Parameters are random (throughput does not depend on them). Prints images/s per setting of the
two guidance switches (ITM lambda, with and without the contrast; classifier-free w), its ratio
to plain decoding, and the number of transformer passes per image next to an
autoregressive decoder of the same tokens (one pass per token, KV-cached).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def passes_per_image(cfg) -> int:
    """Transformer forward-pass equivalents: per step one pass, one more for the unconditional
    logits of classifier-free guidance, and per ITM refinement a forward and a backward (about 3
    passes), twice with the contrast (the blank control is scored too)."""
    guided = 3 * cfg.guidance_steps * (2 if cfg.guidance_contrast else 1) if cfg.guidance > 0 else 0
    return cfg.steps * (1 + (1 if cfg.cfg_scale > 0 else 0) + guided)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attention", default="einsum", choices=("einsum", "xla", "cudnn"),
                        help="model.attention: 'cudnn' is the fast path on a GPU")
    parser.add_argument("--out")
    args = parser.parse_args()

    import dataclasses

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments import pretrain
    from gptface_jax.generate import decoding, regions
    from gptface_jax.models.transformer import GPTFace, ModelConfig

    config = pretrain.get_config("base")
    mc = dataclasses.replace(ModelConfig.from_config(config), num_layers=args.layers, dropout=0.0,
                             attention=args.attention)
    model = GPTFace(mc)
    n_image, b = mc.image_grid ** 2, args.batch
    rng = np.random.default_rng(0)
    text = jnp.asarray(rng.integers(5, 1000, (b, mc.max_text_len)), jnp.int32)
    image = jnp.asarray(rng.integers(0, mc.codebook_size, (b, n_image)), jnp.int32)
    params = jax.jit(lambda k: nn.meta.unbox(model.init(k, text[:1], image[:1])))(jax.random.PRNGKey(0))
    masks = {"text-to-face": np.ones((b, n_image), bool),
             "edit (mouth)": np.repeat(regions.region_mask("mouth", mc.image_grid).reshape(1, -1), b, 0)}
    # (label, switches): each switch alone, and text-to-face's defaults (lambda 2 with w 3)
    settings = [("plain", {}), ("lambda 2", {"guidance": 2.0}),
                ("lambda 2 contrast", {"guidance": 2.0, "guidance_contrast": True}),
                ("w 3", {"cfg_scale": 3.0}), ("lambda 2, w 3", {"guidance": 2.0, "cfg_scale": 3.0})]
    rows = []
    for task, mask in masks.items():
        for label, switches in settings:
            cfg = decoding.DecodeConfig(steps=args.steps, **switches)
            decoder = decoding.make_decoder(model, decoding.IMAGE, cfg)
            out = decoder(params, text, image, jnp.asarray(mask), jax.random.PRNGKey(0))
            jax.block_until_ready(out)
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(decoder(params, text, image, jnp.asarray(mask), jax.random.PRNGKey(r + 1)))
                times.append(time.perf_counter() - start)
            t = float(np.median(times))
            rows.append({"task": task, "setting": label, "images_per_s": round(b / t, 3), "s_per_batch": round(t, 3),
                         "forward_pass_equivalents": passes_per_image(cfg),
                         "autoregressive_passes": int(mask[0].sum())})
            print(json.dumps(rows[-1]), flush=True)  # as measured: a time limit keeps what is done
    print(f"device: {jax.devices()[0].device_kind}; base width {mc.width}, {args.layers} layers, batch {b}, "
          f"{mc.attention} attention, {mc.residual_dtype} residual, "
          f"T = {args.steps}, {n_image} image tokens")
    print(f"{'task':14s} {'setting':18s} {'images/s':>9s} {'x plain':>8s} {'passes':>7s} {'AR passes':>9s}")
    for r in rows:
        plain = next(p for p in rows if p["task"] == r["task"] and p["setting"] == "plain")
        ratio = r["images_per_s"] / plain["images_per_s"]
        print(f"{r['task']:14s} {r['setting']:18s} {r['images_per_s']:9.3f} {ratio:8.2f} "
              f"{r['forward_pass_equivalents']:7d} {r['autoregressive_passes']:9d}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        record = {"device": jax.devices()[0].device_kind, "layers": args.layers, "batch": b, "rows": rows}
        (Path(args.out) / "sample.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
