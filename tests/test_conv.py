"""conv.Conv against nn.Conv: the same parameters, outputs and gradients (the kernel's by a GEMM)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptface_jax.models import conv


@pytest.mark.parametrize("size,channels,features,kernel,stride", [
    (32, 8, 8, 3, 1),     # the judge's stride-1 layers
    (16, 3, 6, 3, 2),     # stride 2 on an even size: SAME pads (0, 1)
    (13, 4, 5, 4, 2),     # odd size, even kernel: uneven padding on both sides
    (9, 5, 3, 1, 1),      # 1x1
    (10, 2, 4, (3, 1), (1, 2)),  # rectangular kernel and strides
])
def test_conv_matches_flax_conv(size, channels, features, kernel, stride):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    stride = (stride, stride) if isinstance(stride, int) else stride
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, size, size, channels)), jnp.float32)
    ours, flax_conv = conv.Conv(features, kernel, stride), nn.Conv(features, kernel, stride)
    params = flax_conv.init(jax.random.PRNGKey(0), x)
    jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.PRNGKey(0), x), params)
    params = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)  # nonzero bias
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), rtol=1e-6, atol=1e-6)

    weights = jnp.asarray(rng.normal(size=flax_conv.apply(params, x).shape), jnp.float32)

    def loss(module):
        return lambda p, a: (module.apply(p, a) ** 2 * weights).sum()
    got = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    want = jax.grad(loss(flax_conv), argnums=(0, 1))(params, x)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(jnp.abs(w).max())),
                 got, want)


def test_windows_are_the_padded_neighbourhoods():
    x = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
    patches = conv.windows(x, (3, 3), (2, 2))  # SAME, stride 2 on 5 px: 3 outputs, padding (1, 1)
    assert patches.shape == (2, 3, 3, 9)
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    np.testing.assert_array_equal(patches[1, 2, 1], padded[1, 4:7, 2:5, 0].reshape(-1))
    assert conv.same_padding(64, 3, 2) == (0, 1) and conv.same_padding(5, 3, 1) == (1, 1)
