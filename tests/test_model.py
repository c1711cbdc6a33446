"""The transformer: shapes, logical axes on every parameter, padding, and sharded == single-device."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from data_pipelines.text_tokenizer import PAD
from gptface_jax.models.transformer import GPTFace, ModelConfig, gather_positions, image_hidden, text_hidden
from gptface_jax.runtime import config_lib, sharding

CONFIG = ModelConfig(text_vocab=64, codebook_size=32, max_text_len=8, image_grid=4, num_layers=2, width=32,
                     num_heads=4, mlp_dim=64, compute_dtype="float32")


def _inputs(b=4):
    rng = np.random.default_rng(0)
    lengths = np.array([8, 5, 3, 1])[:b]
    text = np.where(np.arange(8) < lengths[:, None], rng.integers(5, 64, (b, 8)), PAD).astype(np.int32)
    image = rng.integers(0, 33, (b, 16)).astype(np.int32)  # 32 is the image [MASK]
    return jnp.asarray(text), jnp.asarray(image)


def test_shapes_and_heads():
    model = GPTFace(CONFIG)
    text, image = _inputs()
    variables = model.init(jax.random.PRNGKey(0), text, image)
    out = model.apply(variables, text, image)
    assert out["hidden"].shape == (4, CONFIG.seq_len, 32) and out["itm_logits"].shape == (4, 2)
    assert text_hidden(out["hidden"], CONFIG).shape == (4, 8, 32)
    assert image_hidden(out["hidden"], CONFIG).shape == (4, 16, 32)
    idx, valid = gather_positions(jnp.asarray([[False, True, True, False], [True, False, False, False]]), 2)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 1]])
    np.testing.assert_array_equal(valid, [[True, True], [True, False]])
    picked = jnp.take_along_axis(text_hidden(out["hidden"], CONFIG)[:2, :4], idx[..., None], axis=1)
    logits = model.apply(variables, picked, method=GPTFace.text_logits)
    assert logits.shape == (2, 2, 64) and logits.dtype == jnp.float32
    assert model.apply(variables, picked, method=GPTFace.image_logits).shape == (2, 2, 32)


def test_every_parameter_has_logical_axes():
    variables = GPTFace(CONFIG).init(jax.random.PRNGKey(0), *_inputs())
    specs = nn.get_partition_spec(variables)["params"]
    values = nn.meta.unbox(variables)["params"]
    flat_specs = jax.tree_util.tree_leaves_with_path(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    flat_values = jax.tree.leaves(values)
    assert len(flat_specs) == len(flat_values)
    for (path, spec), value in zip(flat_specs, flat_values):
        assert isinstance(spec, jax.sharding.PartitionSpec) and len(spec) == value.ndim, path


def test_padding_is_invisible():
    model = GPTFace(CONFIG)
    text, image = _inputs()
    variables = model.init(jax.random.PRNGKey(0), text, image)
    x, _ = model.apply(variables, text, image, method=GPTFace.embed)
    pad = jnp.concatenate([jnp.zeros((4, 1), bool), text == PAD, jnp.zeros((4, 1 + 16), bool)], 1)
    noisy = jnp.where(pad[..., None], x + jax.random.normal(jax.random.PRNGKey(1), x.shape), x)
    a = model.apply(variables, text, image, inputs_embeds=x)["hidden"]
    b = model.apply(variables, text, image, inputs_embeds=noisy)["hidden"]
    np.testing.assert_allclose(a[~pad], b[~pad], atol=1e-5)
    assert not np.allclose(a[pad], b[pad])


def test_sharded_forward_equals_single_device():
    config = config_lib.load(["--config", "experiments/pretrain.py:tiny", "--config.mesh.shape=(2,2,2)"])
    mesh = sharding.make_mesh(config)
    rules = sharding.logical_rules(config)
    model = GPTFace(CONFIG)
    text, image = _inputs()
    variables = model.init(jax.random.PRNGKey(0), text, image)
    expected = model.apply(variables, text, image)
    specs = nn.get_partition_spec(variables)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    params = jax.device_put(nn.meta.unbox(variables), shardings)
    assert any(len(leaf.sharding.device_set) > 1 and not leaf.sharding.is_fully_replicated
               for leaf in jax.tree.leaves(params))  # really split across devices
    batch = NamedSharding(mesh, sharding.batch_spec(config))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        got = jax.jit(lambda v, t, i: model.apply(v, t, i))(params, jax.device_put(text, batch),
                                                               jax.device_put(image, batch))
    for k in expected:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(expected[k]), rtol=1e-5, atol=1e-5)


def test_fused_attention_path_equals_einsum():
    import dataclasses
    text, image = _inputs()
    variables = GPTFace(CONFIG).init(jax.random.PRNGKey(0), text, image)
    a = GPTFace(CONFIG).apply(variables, text, image)
    b = GPTFace(dataclasses.replace(CONFIG, attention="xla")).apply(variables, text, image)
    for k in a:
        np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=1e-5, atol=1e-5)


def test_bfloat16_residual_stream_stays_close_to_float32():
    """The bf16 residual option is applied (outputs differ) and stays within bf16 rounding of float32."""
    import dataclasses
    text, image = _inputs()
    variables = GPTFace(CONFIG).init(jax.random.PRNGKey(0), text, image)
    a = GPTFace(CONFIG).apply(variables, text, image)["hidden"]
    b = GPTFace(dataclasses.replace(CONFIG, residual_dtype="bfloat16")).apply(variables, text, image)["hidden"]
    assert b.dtype == jnp.float32  # the final layer norm computes in float32
    err = float(jnp.abs(a - b).max())
    assert 0 < err < 0.05, err


@pytest.mark.gpu  # cuDNN fused attention
def test_cudnn_attention_matches_einsum_with_padding():
    """On a GPU: cuDNN attention (bf16, padded captions) gives the einsum path's outputs and gradients."""
    import dataclasses
    config = dataclasses.replace(CONFIG, width=128, num_heads=2, compute_dtype="bfloat16")
    text, image = _inputs()
    variables = GPTFace(config).init(jax.random.PRNGKey(0), text, image)

    def loss(v, attention):
        out = GPTFace(dataclasses.replace(config, attention=attention)).apply(v, text, image)
        return jnp.square(out["hidden"]).mean() + out["itm_logits"].sum()

    (la, ga), (lb, gb) = (jax.value_and_grad(loss)(variables, a) for a in ("einsum", "cudnn"))
    np.testing.assert_allclose(float(lb), float(la), rtol=2e-2)
    # one relative error over the whole gradient: per leaf, near-zero leaves (|g| ~ 1e-4) are all bf16 noise
    def flat(g):
        return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(g)])
    assert float(jnp.linalg.norm(flat(ga) - flat(gb)) / jnp.linalg.norm(flat(ga))) < 5e-2


def test_kernel_init_scales():
    """'normal': every dense kernel N(0, 0.02); 'fan_in': N(0, 1/fan_in), so attention logits start O(1)."""
    import dataclasses
    text, image = _inputs()
    wide = dataclasses.replace(CONFIG, width=128, mlp_dim=512)
    stds = {}
    for init in ("normal", "fan_in"):
        params = nn.meta.unbox(GPTFace(dataclasses.replace(wide, kernel_init=init)).init(jax.random.PRNGKey(0), text,
                                                                                         image))
        block = params["params"]["block_0"]
        stds[init] = {"query": float(jnp.std(block["attention"]["query"]["kernel"])),
                      "mlp_out": float(jnp.std(block["mlp_out"]["kernel"]))}
    np.testing.assert_allclose(list(stds["normal"].values()), [0.02, 0.02], rtol=0.05)
    np.testing.assert_allclose([stds["fan_in"]["query"], stds["fan_in"]["mlp_out"]], [128 ** -0.5, 512 ** -0.5],
                               rtol=0.05)


@pytest.mark.slow
def test_model_flop_count_matches_xla_on_cpu():
    """The MFU count (metrics.transformer_train_flops) against XLA's exact CPU cost analysis of the
    same forward + backward: matmuls dominate at this width, so the two agree within 15%."""
    import dataclasses

    from gptface_jax.models import losses
    from gptface_jax.runtime.metrics import compiled_flops, transformer_train_flops
    config = dataclasses.replace(CONFIG, num_layers=2, width=256, num_heads=4, mlp_dim=1024, text_vocab=512,
                                 codebook_size=256, max_text_len=16, image_grid=8)
    model, b = GPTFace(config), 8
    rng = np.random.default_rng(0)
    text = jnp.asarray(rng.integers(5, 512, (b, 16)), jnp.int32)
    image = jnp.asarray(rng.integers(0, 256, (b, 64)), jnp.int32)
    text_mask, image_mask = jnp.asarray(rng.random((b, 16)) < 0.25), jnp.asarray(rng.random((b, 64)) < 0.5)
    params = model.init(jax.random.PRNGKey(0), text, image)

    def loss(p):
        out = model.apply(p, text, image)
        total, _ = losses.milm_itm_loss(
            lambda h: model.apply(p, h, method=GPTFace.text_logits), lambda h: model.apply(p, h,
                                                                                           method=GPTFace.image_logits),
            out, {"text_targets": text, "image_targets": image, "text_mask": text_mask, "image_mask": image_mask,
                  "itm_label": jnp.ones(b, jnp.int32)}, max_text_len=16, capacity_text=0.25, capacity_image=0.5)
        return total

    xla = compiled_flops(jax.jit(jax.grad(loss)).lower(params).compile())
    counted = transformer_train_flops(layers=2, width=256, mlp=1024, seq=config.seq_len, batch=b, text_vocab=512,
                                      codebook=256, text_rows=losses.capacity_rows(b, 16, 0.25),
                                      image_rows=losses.capacity_rows(b, 64, 0.5))
    assert 0.85 < counted / xla < 1.15, (counted, xla)
