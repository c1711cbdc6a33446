"""Sampler throughput at base shape: text-to-face and editing, guided vs unguided, in one run.

    python bench/sample.py                 # CPU: batch 2, 2 layers (reduced depth)
    python bench/sample.py --layers 12 --batch 64 --out DIR     # one H100

Parameters are random (throughput does not depend on them). Prints images/s per setting, the
ratio guided / unguided, and the number of transformer passes per image next to an
autoregressive decoder of the same tokens (one pass per token, KV-cached).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


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
    from gptface_jax import decoding, regions
    from gptface_jax.model import GPTFace, ModelConfig

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
    rows = []
    for task, mask in masks.items():
        for guidance in (0.0, 2.0):
            cfg = decoding.DecodeConfig(steps=args.steps, guidance=guidance)
            decoder = decoding.make_decoder(model, decoding.IMAGE, cfg)
            out = decoder(params, text, image, jnp.asarray(mask), jax.random.PRNGKey(0))
            jax.block_until_ready(out)
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(decoder(params, text, image, jnp.asarray(mask), jax.random.PRNGKey(r + 1)))
                times.append(time.perf_counter() - start)
            t = float(np.median(times))
            # a guided step adds K ITM passes, each a forward and a backward (~2 forward passes)
            passes = args.steps * (1 + (3 * cfg.guidance_steps if guidance else 0))
            rows.append({"task": task, "guidance": guidance, "images_per_s": round(b / t, 3), "s_per_batch": round(t, 3),
                         "forward_pass_equivalents": passes, "autoregressive_passes": int(mask[0].sum())})
            print(json.dumps(rows[-1]), flush=True)  # as measured: a time limit keeps what is done
    print(f"device: {jax.devices()[0].device_kind}; base width {mc.width}, {args.layers} layers, batch {b}, "
          f"{mc.attention} attention, {mc.residual_dtype} residual, "
          f"T = {args.steps}, {n_image} image tokens")
    print(f"{'task':14s} {'lambda':>6s} {'images/s':>9s} {'passes':>7s} {'AR passes':>9s}")
    for r in rows:
        print(f"{r['task']:14s} {r['guidance']:6g} {r['images_per_s']:9.3f} {r['forward_pass_equivalents']:7d} "
              f"{r['autoregressive_passes']:9d}")
    for task in masks:
        plain, guided = [r for r in rows if r["task"] == task]
        print(f"{task}: guided runs at {guided['images_per_s'] / plain['images_per_s']:.2f}x the unguided speed")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sample.json").write_text(json.dumps({"device": jax.devices()[0].device_kind,
                                                               "layers": args.layers, "batch": b, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
