"""The VQ image tokenizer: conv encoder -> l2-normalised codebook -> conv decoder (Flax Linen).

A face image (B, H, W, 3) in [-1, 1] maps to H/f x W/f discrete codes (f = 8 tiny, 16 base).
Quantisation is nearest-neighbour on the unit sphere (cosine similarity, as in ViT-VQGAN: codes
stay used far better than with raw Euclidean lookup), with a straight-through estimator and the
usual codebook + commitment losses. Dead codes are restarted by the trainer (`restart_dead_codes`)
from encoder outputs of the current batch. Pure functions of the parameter pytree throughout.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class VQConfig:
    # No defaults: experiments/vq.py is the one source of every value (vq_train.vq_config).
    image_size: int
    downsample: int                     # one stride-2 stage per factor of two
    codebook_size: int
    code_dim: int                       # lookup dimension (factorised codes)
    channels: Sequence[int]             # per resolution level; len = log2(downsample) + 1
    res_blocks: int
    patch: int                          # space-to-depth at the input (and back at the output)
    beta: float                         # commitment weight
    dtype: str

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample

    def validate(self) -> None:
        levels = self.downsample.bit_length() - 1
        problems = []
        if self.downsample & (self.downsample - 1) or self.downsample < self.patch:
            problems.append(f"downsample={self.downsample} must be a power of two >= patch={self.patch}")
        if self.image_size % self.downsample:
            problems.append(f"image_size={self.image_size} is not divisible by downsample={self.downsample}")
        if len(self.channels) != levels - (self.patch.bit_length() - 1) + 1:
            problems.append(f"channels={tuple(self.channels)} needs {levels - (self.patch.bit_length() - 1) + 1} "
                            f"entries for downsample={self.downsample} with patch={self.patch}")
        if problems:
            raise ValueError("bad VQ config: " + "; ".join(problems))


def _groups(ch: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if ch % g == 0)


class ResBlock(nn.Module):
    channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = nn.swish(nn.GroupNorm(_groups(x.shape[-1]), dtype=jnp.float32)(x))
        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype)(h)
        h = nn.swish(nn.GroupNorm(_groups(self.channels), dtype=jnp.float32)(h))
        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype)(h)
        if x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1), dtype=self.dtype)(x)
        return x + h


def space_to_depth(x, p: int):
    b, h, w, c = x.shape
    return x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // p, w // p, p * p * c)


def depth_to_space(x, p: int):
    b, h, w, c = x.shape
    return x.reshape(b, h, w, p, p, c // (p * p)).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * p, w * p, c // (p * p))


class Encoder(nn.Module):
    config: VQConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        x = space_to_depth(x, c.patch) if c.patch > 1 else x
        x = nn.Conv(c.channels[0], (3, 3), dtype=dtype)(x)
        for level, ch in enumerate(c.channels):
            for _ in range(c.res_blocks):
                x = ResBlock(ch, dtype)(x)
            if level < len(c.channels) - 1:
                x = nn.Conv(c.channels[level + 1], (4, 4), strides=(2, 2), dtype=dtype)(x)
        x = nn.swish(nn.GroupNorm(_groups(x.shape[-1]), dtype=jnp.float32)(x))
        return nn.Conv(c.code_dim, (1, 1), dtype=jnp.float32)(x)


class Decoder(nn.Module):
    config: VQConfig

    @nn.compact
    def __call__(self, z):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        chans = list(reversed(c.channels))
        x = nn.Conv(chans[0], (3, 3), dtype=dtype)(z)
        for level, ch in enumerate(chans):
            for _ in range(c.res_blocks):
                x = ResBlock(ch, dtype)(x)
            if level < len(chans) - 1:
                b, h, w, d = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, d), "nearest")
                x = nn.Conv(chans[level + 1], (3, 3), dtype=dtype)(x)
        x = nn.swish(nn.GroupNorm(_groups(x.shape[-1]), dtype=jnp.float32)(x))
        x = nn.Conv(3 * c.patch * c.patch, (3, 3), dtype=jnp.float32)(x)
        return depth_to_space(x, c.patch) if c.patch > 1 else x


def l2_normalize(x, axis=-1, eps=1e-6):
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)


class VQModel(nn.Module):
    """encode -> codes, decode_codes -> image, and __call__ for training (returns losses' parts)."""

    config: VQConfig

    def setup(self):
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.codebook = self.param("codebook", nn.initializers.normal(1.0),
                                   (self.config.codebook_size, self.config.code_dim))

    def project(self, images):
        """Unit-norm encoder outputs (B, g, g, code_dim)."""
        return l2_normalize(self.encoder(images))

    def nearest(self, z):
        codebook = l2_normalize(self.codebook)
        scores = jnp.einsum("bhwd,kd->bhwk", z, codebook)
        return jnp.argmax(scores, axis=-1)

    def lookup(self, codes):
        return l2_normalize(self.codebook)[codes]

    def encode(self, images):
        """images (B, H, W, 3) in [-1, 1] -> integer codes (B, H/f, W/f)."""
        return self.nearest(self.project(images))

    def decode_codes(self, codes):
        return self.decoder(self.lookup(codes))

    def __call__(self, images):
        z = self.project(images)
        codes = self.nearest(z)
        zq = self.lookup(codes)
        codebook_loss = jnp.mean(jnp.square(zq - jax.lax.stop_gradient(z)))
        commit_loss = jnp.mean(jnp.square(z - jax.lax.stop_gradient(zq)))
        zq_st = z + jax.lax.stop_gradient(zq - z)  # straight-through: decoder grads reach the encoder
        recon = self.decoder(zq_st)
        return recon, codes, z, codebook_loss + self.config.beta * commit_loss


class PatchDiscriminator(nn.Module):
    """PatchGAN critic: a map of real/fake logits, one per receptive-field patch."""

    channels: Sequence[int] = (32, 64, 128)

    @nn.compact
    def __call__(self, x):
        for i, ch in enumerate(self.channels):
            x = nn.Conv(ch, (4, 4), strides=(2, 2))(x)
            if i:
                x = nn.GroupNorm(_groups(ch))(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.Conv(1, (3, 3))(x)


# Pixels: the model reads and writes images in [-1, 1].

def to_float(images):
    return images.astype(jnp.float32) / 127.5 - 1.0


def quantize_uint8(images):
    """[-1, 1] float images -> uint8 (traceable: exported decoders use it too)."""
    return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def to_uint8(images) -> np.ndarray:
    return np.asarray(quantize_uint8(images))
