"""`Conv`: nn.Conv's SAME-padded convolution (same parameters, same names) with a GEMM kernel gradient.

XLA:CPU computes a convolution's kernel gradient as a convolution over the batch, which is slow where
the output has many positions and few channels: for 64 faces at 32x32 px, 32 -> 32 channels, 500 ms
against 27 ms for the forward pass on a Zen 3 EPYC. `conv_same` keeps XLA's forward pass and input
gradient, and computes the kernel gradient as one matrix product of every input window (im2col) with the
output gradient. Same function; the kernel gradient's float summation order differs. The judge
(gptface_jax/evals/attribute_classifier.py) trains with it: 0.41 s per step of 64 faces against 1.06 s
(2026-12-08, BENCHMARKS.md, "The judge's convolutions"). The VQ's convolutions (16x16 and smaller
outputs, 48-128 channels) gain nothing from it (bench/conv_gradients.py), so it keeps nn.Conv.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's SAME padding along one axis: (low, high), the odd pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def windows(x, kernel: Sequence[int], strides: Sequence[int]):
    """(N, H, W, C) -> (N, H', W', kh * kw * C): every output pixel's SAME-padded input window, ordered
    (row, column, channel) like an HWIO kernel's first three axes."""
    (kh, kw), (sh, sw) = kernel, strides
    _, h, w, _ = x.shape
    pad_h, pad_w = same_padding(h, kh, sh), same_padding(w, kw, sw)
    out_h, out_w = -(-h // sh), -(-w // sw)
    padded = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    return jnp.concatenate([padded[:, i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw]
                            for i in range(kh) for j in range(kw)], axis=-1)


def _xla_conv(x, kernel, strides):
    return jax.lax.conv_general_dilated(x, kernel, strides, "SAME", dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_same(x, kernel, strides: tuple[int, int]):
    """SAME convolution of NHWC `x` with an HWIO `kernel`: XLA's forward pass and input gradient, a GEMM
    kernel gradient."""
    return _xla_conv(x, kernel, strides)


def _forward(x, kernel, strides):
    return conv_same(x, kernel, strides), (x, kernel)


def _backward(strides, saved, grad):
    x, kernel = saved
    # the input's gradient: XLA's transposed convolution, as fast as the forward pass
    grad_x = jax.vjp(lambda a: _xla_conv(a, kernel, strides), x)[1](grad)[0]
    # the kernel's: every window against the output gradient, one product over batch x positions
    rows = windows(x, kernel.shape[:2], strides).reshape(-1, kernel[..., 0].size)
    grad_kernel = (rows.T @ grad.reshape(-1, grad.shape[-1])).reshape(kernel.shape)
    return grad_x, grad_kernel.astype(kernel.dtype)


conv_same.defvjp(_forward, _backward)


class Conv(nn.Module):
    """nn.Conv(features, kernel_size, strides, padding="SAME") on NHWC inputs, its `kernel` and `bias`
    parameters (same names, same initialisers), computed by `conv_same`."""
    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
        return conv_same(x, kernel, tuple(self.strides)) + bias
