"""XLA's convolution gradients beside gptface_jax/models/conv.py's GEMM kernel gradient, one run.

    python bench/conv_gradients.py

Per layer shape of the judge and of the tiny VQ (batch 64): milliseconds for the forward pass plus both
gradients, nn.Conv's lax convolution against `conv_same`, and their ratio. Then the judge's whole
training step (FaceCNN, 64 faces, AdamW) both ways. A ratio above 1 means conv_same is faster.
"""
from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gptface_jax.evals import attribute_classifier
from gptface_jax.models import conv

BATCH, REPEATS = 64, 5
# (input px, in channels, out channels, kernel, stride): the judge's six layers, then the tiny VQ's
LAYERS = {
    "judge": [(64, 3, 32, 3, 2), (32, 32, 32, 3, 1), (32, 32, 64, 3, 2), (16, 64, 64, 3, 1), (16, 64, 64, 3, 2),
              (8, 64, 64, 3, 1)],
    "vq": [(16, 48, 64, 3, 1), (16, 64, 64, 3, 1), (16, 64, 128, 4, 2), (8, 128, 128, 3, 1), (16, 64, 48, 3, 1)],
}


def _lax(x, kernel, strides):
    return jax.lax.conv_general_dilated(x, kernel, strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _ms(fn, *args) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(REPEATS):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / REPEATS * 1000


def layer_rows() -> None:
    rng = np.random.default_rng(0)
    print("model  input       kernel  stride   XLA ms  GEMM ms  ratio")
    for model, shapes in LAYERS.items():
        for size, cin, cout, k, stride in shapes:
            x = jnp.asarray(rng.normal(size=(BATCH, size, size, cin)), jnp.float32)
            kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
            times = [_ms(jax.jit(jax.grad(lambda a, w, f=f, s=(stride, stride): (f(a, w, s) ** 2).sum(),
                                          argnums=(0, 1))), x, kernel) for f in (_lax, conv.conv_same)]
            print(f"{model:6s} {size:2d}x{size:<2d}x{cin:<4d} {k}x{k}x{cout:<4d} {stride:6d} {times[0]:8.1f} "
                  f"{times[1]:8.1f} {times[0] / times[1]:6.2f}")


def judge_step_ms(conv_module) -> float:
    """The judge's training step with `conv_module` as its convolution (the module's class swapped in)."""
    images = np.random.default_rng(0).integers(0, 255, (BATCH, 64, 64, 3), dtype=np.uint8)
    attributes, labels = np.zeros((BATCH, 16), np.int32), np.zeros(BATCH, np.int32)
    saved, attribute_classifier.Conv = attribute_classifier.Conv, conv_module
    try:
        model = attribute_classifier.FaceCNN(16, 5, 5)
        params = model.init(jax.random.PRNGKey(0), images[:1])
        tx = optax.adamw(1e-3)

        @jax.jit
        def step(params, opt):
            loss, grads = jax.value_and_grad(lambda p: attribute_classifier._loss(
                model.apply(p, images), attributes, labels, labels, 16, 5))(params)
            updates, opt = tx.update(grads, opt, params)
            return optax.apply_updates(params, updates), opt
        return _ms(step, params, tx.init(params))
    finally:
        attribute_classifier.Conv = saved


def main() -> int:
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}, batch {BATCH}")
    layer_rows()
    xla, gemm = judge_step_ms(nn.Conv), judge_step_ms(conv.Conv)
    print(f"judge training step: XLA {xla:.0f} ms, GEMM kernel gradient {gemm:.0f} ms, ratio {xla / gemm:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
