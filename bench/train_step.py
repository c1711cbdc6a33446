"""Our pre-training step beside ../shared/bench/reference_step.py, same shapes, same machine, one run.

    python bench/train_step.py                      # CPU: 1 layer, batch 2 (reduced depth)
    python bench/train_step.py --layers 12 --batch 256 --mm 8192 --out DIR   # one H100
    python bench/train_step.py --memory --layers 4 --batch 8   # remat x scan_layers: memory, compile, step time
    python bench/train_step.py --itc --layers 2 --batch 8      # the step with ITC (and mined negatives) vs without

The reference (a plain-JAX step of GPTFace's base shape: 1 + 64 text + 256 image tokens, text
vocab 32000, codebook 8192, width 768) runs first in a subprocess and prints its variants. Then our
`trainer.make_train_step` (Flax model, masked-position heads, AdamW + clipping: the reference uses
SGD with momentum, so ours does strictly more optimizer work) runs at the same shapes. FLOPs: the
compiled step's cost analysis (XLA) and the reference's model count, so MFU compares like with
like. Printed: ms/step, TFLOP/s, MFU against the measured bf16 matmul peak and against the device's
dense bf16 peak (989 TFLOP/s on H100), and our speed relative to the reference's best variant.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "reference_step.py"
T_TXT, T_IMG, V_TXT, V_IMG, D, F = 64, 256, 32000, 8192, 768, 3072
TEXT_FRACTION, IMAGE_FRACTION = 0.25, 0.5  # the reference's masked-head budgets


def run_reference(layers: int, batch: int, mm: int, script: Path) -> tuple[float | None, list[dict]]:
    env = {**os.environ, "L": str(layers), "BATCH": str(batch), "MM": str(mm)}
    env.pop("OUT", None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True).stdout
    print(out, end="", flush=True)  # the reference's own lines, as it printed them
    peak, rows = None, []
    for line in out.splitlines():
        if line.startswith("matmul bf16"):
            peak = float(line.split()[-2])
        elif line.startswith("{"):
            rows.append(json.loads(line))
    return peak, rows


def model_flops(layers: int, batch: int, seq: int, masked_heads: bool) -> float:
    """The reference's own count (6 N tokens + attention + vocabulary heads), for a like-for-like MFU:
    the trainer's MFU count (metrics.transformer_train_flops) with the reference's head rows."""
    from gptface_jax.runtime.metrics import transformer_train_flops
    text_rows = (int(T_TXT * TEXT_FRACTION) if masked_heads else T_TXT) * batch
    image_rows = (int(T_IMG * IMAGE_FRACTION) if masked_heads else T_IMG) * batch
    return transformer_train_flops(layers=layers, width=D, mlp=F, seq=seq, batch=batch, text_vocab=V_TXT,
                                   codebook=V_IMG, text_rows=text_rows, image_rows=image_rows)


def compiled_step(layers: int, batch: int, dtype: str, attention: str, residual: str, remat: str = "none",
                  scan: bool = False, itc_weight: float = 0.0, mined: float = 0.0):
    """(compiled step, state, batch, seconds to compile) of trainer.make_train_step at the base shape."""
    import flax.linen as nn
    import jax
    import numpy as np

    from experiments import pretrain
    from gptface_jax.models.transformer import GPTFace, ModelConfig
    from gptface_jax.runtime import optimizer, sharding
    from gptface_jax.train import trainer

    config = pretrain.get_config("base")
    with config.unlocked():
        config.model.num_layers, config.model.compute_dtype, config.model.attention = layers, dtype, attention
        config.model.residual_dtype, config.model.remat, config.model.scan_layers = residual, remat, scan
        config.model.dropout = 0.0
        config.text.vocab_size, config.text.max_len, config.vq.codebook_size = V_TXT, T_TXT, V_IMG
        config.train.batch_size = batch
        config.loss.text_capacity, config.loss.image_capacity = TEXT_FRACTION, IMAGE_FRACTION
        config.mesh.shape = (-1, 1, 1)
        config.model.itc_dim = 256 if itc_weight else 0
        config.loss.itc_weight, config.loss.mined_negative_fraction = itc_weight, mined
    mesh = sharding.make_mesh(config)
    rules = sharding.logical_rules(config)
    model = GPTFace(ModelConfig.from_config(config))
    tx = optimizer.make_optimizer(config)
    rng = np.random.default_rng(0)
    text_mask, image_mask = rng.random((batch, T_TXT)) < TEXT_FRACTION, rng.random((batch, T_IMG)) < IMAGE_FRACTION
    text, image = rng.integers(5, V_TXT, (batch, T_TXT)), rng.integers(0, V_IMG, (batch, T_IMG))
    host = {"text_inputs": np.where(text_mask, 4, text), "image_inputs": np.where(image_mask, V_IMG, image),
            "text_targets": text, "image_targets": image, "text_mask": text_mask, "image_mask": image_mask,
            "itm_label": rng.integers(0, 2, batch), "caption_ids": text}
    host = {k: v.astype(np.int32) if v.dtype != bool else v for k, v in host.items()}
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        init, _, shardings = trainer.state_shardings(model, tx, mesh, rules)
        state = jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(0))
        batch_arrays = sharding.to_global(host, mesh, config)
        step = jax.jit(trainer.make_train_step(model, tx, config), out_shardings=(shardings, sharding.replicated(mesh)),
                       donate_argnums=(0,))
        start = time.perf_counter()
        compiled = step.lower(state, batch_arrays).compile()
        return compiled, state, batch_arrays, time.perf_counter() - start


def time_steps(compiled, state, batch_arrays, steps: int) -> float:
    """Median seconds per step after two warm-up steps."""
    import jax
    import numpy as np
    for _ in range(2):
        state, metrics = compiled(state, batch_arrays)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch_arrays)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def our_step(layers: int, batch: int, dtype: str, attention: str, residual: str, steps: int) -> dict:
    from gptface_jax.runtime.metrics import compiled_flops
    compiled, state, batch_arrays, _ = compiled_step(layers, batch, dtype, attention, residual)
    flops = compiled_flops(compiled)
    t = time_steps(compiled, state, batch_arrays, steps)
    return {"variant": f"ours {dtype} {attention} {residual[:4]}-residual adamw", "ms": round(t * 1e3, 2),
            "xla_tflops": round(flops / t / 1e12, 3),
            "model_tflops": round(model_flops(layers, batch, 1 + T_TXT + T_IMG + 1, True) / t / 1e12, 3),
            "samples_per_s": round(batch / t, 1)}


def memory_table(layers: int, batch: int, steps: int, attention: str, out: str | None) -> int:
    """Remat policy x scan-over-layers at the base shape: XLA's memory analysis of the compiled step
    (temporaries = activations kept for the backward pass), compile time and step time, side by side."""
    import jax
    rows = []
    for remat in ("none", "dots_saveable", "full"):
        for scan in (False, True):
            compiled, state, batch_arrays, compile_s = compiled_step(layers, batch, "bfloat16", attention, "bfloat16",
                                                                     remat, scan)
            memory = compiled.memory_analysis()
            t = time_steps(compiled, state, batch_arrays, steps)
            rows.append({"remat": remat, "scan_layers": scan, "temp_mib": round(memory.temp_size_in_bytes / 2**20, 1),
                         "argument_mib": round(memory.argument_size_in_bytes / 2**20, 1),
                         "compile_s": round(compile_s, 2), "ms": round(t * 1e3, 1)})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; base shape, {layers} layers, batch {batch}")
    print(f"{'remat':14s} {'scan':5s} {'temp MiB':>9s} {'vs none':>8s} {'compile s':>9s} {'ms/step':>9s} "
          f"{'vs none':>8s}")
    for r in rows:
        print(f"{r['remat']:14s} {str(r['scan_layers']):5s} {r['temp_mib']:9.1f} "
              f"{r['temp_mib'] / base['temp_mib']:8.2f} "
              f"{r['compile_s']:9.2f} {r['ms']:9.1f} {r['ms'] / base['ms']:8.2f}")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "remat_scan.json").write_text(json.dumps(
            {"device": jax.devices()[0].device_kind, "layers": layers, "batch": batch, "rows": rows}, indent=1))
    return 0


def itc_table(layers: int, batch: int, steps: int, attention: str) -> int:
    """The step's cost with the ITC loss (two unimodal passes) and with mined ITM negatives, as ratios
    to the step without them, at the base shape in one run."""
    import jax
    rows = []
    for name, itc, mined in (("MILM + ITM", 0.0, 0.0), ("+ ITC", 1.0, 0.0), ("+ ITC + mined negatives", 1.0, 0.5)):
        compiled, state, batch_arrays, _ = compiled_step(layers, batch, "bfloat16", attention, "bfloat16",
                                                         itc_weight=itc, mined=mined)
        rows.append({"step": name, "ms": round(time_steps(compiled, state, batch_arrays, steps) * 1e3, 2)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; base shape, {layers} layers, batch {batch}")
    for r in rows:
        print(f"{r['step']:26s} {r['ms']:9.2f} ms/step  {r['ms'] / rows[0]['ms']:5.2f}x")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--mm", type=int, default=1024, help="matmul size for the reference's peak probe")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", help="folder for train_step.json")
    parser.add_argument("--reference", type=Path, default=REFERENCE,
                        help="reference_step.py (a copy travels with the tree to a device machine)")
    parser.add_argument("--memory", action="store_true",
                        help="instead: remat x scan_layers (memory analysis, compile and step time)")
    parser.add_argument("--attention", default="einsum", help="attention of the --memory table (cudnn on a GPU)")
    parser.add_argument("--itc", action="store_true", help="instead: the step with ITC / mined negatives vs without")
    parser.add_argument("--ours", choices=("all", "bf16-residual"), default="all",
                        help="our variants: all, or only the base config's bf16 residual stream (a shorter run)")
    args = parser.parse_args()
    if args.itc:
        return itc_table(args.layers, args.batch, args.steps, args.attention)
    if args.memory:
        return memory_table(args.layers, args.batch, args.steps, args.attention, args.out)
    if not args.reference.is_file():
        parser.error(f"--reference: no file at {args.reference}")
    import jax
    gpu = jax.devices()[0].platform == "gpu"
    peak, reference = run_reference(args.layers, args.batch, args.mm, args.reference)
    ours = []
    # (compute dtype, attention, residual stream). The base config's choice (bf16 residual) beside
    # the float32 residual; fp32 compute only where it can win (CPU); cuDNN's fused attention on a GPU.
    variants = [("bfloat16", "einsum", "float32"), ("bfloat16", "einsum", "bfloat16")] + (
        [("bfloat16", "cudnn", "bfloat16"), ("bfloat16", "cudnn", "float32")] if gpu else
        [("bfloat16", "xla", "bfloat16"), ("float32", "einsum", "float32")])
    if args.ours == "bf16-residual":
        variants = [v for v in variants if v[2] == "bfloat16"]
    for dtype, attention, residual in variants:
        try:
            ours.append(our_step(args.layers, args.batch, dtype, attention, residual, args.steps))
            print(json.dumps(ours[-1]), flush=True)
        except Exception as e:  # e.g. a fused kernel this device lacks
            ours.append({"variant": f"ours {dtype} {attention} {residual[:4]}-residual", "error": repr(e)[:300]})
    from gptface_jax.runtime.metrics import device_peak_flops
    device_peak = device_peak_flops()
    for r in reference:  # the reference rounds TFLOP/s to 0.1: recount from its step time (same formula)
        if "ms" in r:
            flops = model_flops(args.layers, args.batch, 1 + T_TXT + T_IMG, "masked-heads" in r["variant"])
            r["model_tflops"] = round(flops / (r["ms"] / 1e3) / 1e12, 3)
    rows = [dict(r, source="reference") for r in reference] + [dict(r, source="ours") for r in ours]
    for r in rows:
        if "ms" in r and peak:
            r["mfu_vs_matmul"] = round(r["model_tflops"] / peak, 4)
        if "ms" in r and device_peak:
            r["mfu_vs_device_peak"] = round(r["model_tflops"] * 1e12 / device_peak, 4)
    ok_ref = [r for r in reference if "ms" in r]
    ok_ours = [r for r in ours if "ms" in r]
    best_ref = min(ok_ref, key=lambda r: r["ms"]) if ok_ref else None
    best_ours = min(ok_ours, key=lambda r: r["ms"]) if ok_ours else None
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; layers {args.layers}, batch {args.batch}; "
          f"measured bf16 matmul peak {peak} TFLOP/s")
    print(f"{'source':10s} {'variant':44s} {'ms':>9s} {'xla TF/s':>9s} {'model TF/s':>10s} "
          f"{'MFU(mm)':>8s} {'MFU(dev)':>8s}")
    for r in rows:
        if "ms" not in r:
            print(f"{r['source']:10s} {r['variant']:44s} error: {r['error'][:80]}")
            continue
        print(f"{r['source']:10s} {r['variant']:44s} {r['ms']:9.2f} {r['xla_tflops']:9.3f} {r['model_tflops']:10.3f} "
              f"{r.get('mfu_vs_matmul', float('nan')):8.3f} {r.get('mfu_vs_device_peak', float('nan')):8.3f}")
    summary = {}
    if best_ref and best_ours:
        summary = {"best_reference": best_ref["variant"], "best_ours": best_ours["variant"],
                   "speed_vs_reference": round(best_ref["ms"] / best_ours["ms"], 3)}
        print(f"ours ({best_ours['variant']}) runs at {summary['speed_vs_reference']:.3f}x the reference's best "
              f"({best_ref['variant']}): {best_ours['ms']:.2f} vs {best_ref['ms']:.2f} ms/step")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "train_step.json").write_text(json.dumps(
            {"device": jax.devices()[0].device_kind, "layers": args.layers, "batch": args.batch,
             "matmul_peak_tflops": peak, "rows": rows, **summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
