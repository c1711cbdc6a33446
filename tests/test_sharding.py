"""Running a function over fixed-size batches of rows: padding, order, cut-back, global placement."""
import jax
import jax.numpy as jnp
import numpy as np

from experiments import pretrain
from gptface_jax.runtime import sharding


def test_run_in_batches_pads_keeps_order_and_cuts_back():
    calls = []

    def fn(a, b):
        calls.append(a.shape)
        return {"sum": a + b, "first": a[:, 0]}

    a, b = np.arange(23 * 2).reshape(23, 2), np.ones((23, 2), int)
    out = sharding.run_in_batches(fn, [a, b], 8)
    assert calls == [(8, 2)] * 3       # one shape: fn compiles once
    np.testing.assert_array_equal(out["sum"], a + 1)
    np.testing.assert_array_equal(out["first"], a[:, 0])


def test_global_batches_are_sharded_on_the_batch_axis():
    config = pretrain.get_config("tiny")
    mesh = sharding.make_mesh(config)
    seen = []

    @jax.jit
    def fn(x):
        return x * 2

    def traced(x):
        seen.append(x.sharding)
        return fn(x)

    x = np.arange(37, dtype=np.float32)[:, None]
    with jax.set_mesh(mesh):
        out = sharding.run_in_batches(traced, [x], 16, sharding.global_batch_put(mesh, config))
    np.testing.assert_array_equal(out, x * 2)
    assert all(s.spec[0] == ("data", "fsdp") for s in seen) and len(seen) == 3
    assert isinstance(out, np.ndarray) and jnp.asarray(out).shape == (37, 1)
