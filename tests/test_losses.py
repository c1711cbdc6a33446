"""MILM + ITM losses: masked-only heads equal the dense reference, ITM pairing, and a sharded step
that equals the single-device step."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding

from data_pipelines.itm import make_pairs, token_overlap
from data_pipelines.masking import MaskingConfig, mask_batch
from gptface_jax.models import losses
from gptface_jax.models.transformer import GPTFace, ModelConfig
from gptface_jax.runtime import config_lib, sharding
from gptface_jax.train import trainer

CONFIG = ModelConfig(text_vocab=64, codebook_size=32, max_text_len=8, image_grid=4, num_layers=2, width=32,
                     num_heads=4, mlp_dim=64, compute_dtype="float32")


def test_masked_heads_equal_the_dense_reference():
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.normal(size=(4, 16, 8)), jnp.float32)
    mask = jnp.asarray(rng.random((4, 16)) < 0.3)
    targets = jnp.asarray(rng.integers(0, 10, (4, 16)))
    w = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)
    rows, idx, valid, overflow = losses.gather_masked(hidden, mask, capacity=0.6)
    loss, acc = losses.masked_cross_entropy(rows @ w, targets.reshape(-1)[idx], valid)
    dense = -jnp.take_along_axis(jax.nn.log_softmax(hidden @ w), targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss, dense[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(acc, ((hidden @ w).argmax(-1) == targets)[mask].mean(), rtol=1e-6)
    assert int(overflow) == 0
    _, _, valid, overflow = losses.gather_masked(hidden, mask, capacity=0.1)
    assert int(overflow) == int(mask.sum()) - 6 and int(valid.sum()) == 6


def test_itm_pairs():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, (256, 8))
    pairs = make_pairs(ids, np.full(256, 8), rng, negative_fraction=0.5)
    neg = pairs["itm_label"] == 0
    assert 0.4 < neg.mean() < 0.6
    assert (pairs["caption_from"][neg] != np.arange(256)[neg]).all()
    np.testing.assert_array_equal(pairs["text_ids"][~neg], ids[~neg])
    # hard negatives: the in-batch caption sharing the most tokens
    ids = np.array([[5, 6, 7, 8], [5, 6, 7, 9], [20, 21, 22, 23], [20, 21, 30, 31]])
    hard = make_pairs(ids, np.full(4, 4), np.random.default_rng(1), negative_fraction=1.0, hard_fraction=1.0)
    np.testing.assert_array_equal(hard["caption_from"], [1, 0, 3, 2])
    assert token_overlap(ids)[0, 1] == 3


def _batch(b=8):
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, b)
    text = np.where(np.arange(8) < lengths[:, None], rng.integers(5, 64, (b, 8)), 0).astype(np.int32)
    image = rng.integers(0, 32, (b, 16)).astype(np.int32)
    pairs = make_pairs(text, lengths, rng)
    masks = mask_batch(pairs["text_ids"], pairs["text_lengths"], 4, MaskingConfig(), seed=0, step=0, vocab_size=64,
                       mask_id=4, num_special=5)
    positive = pairs["itm_label"].astype(bool)[:, None]
    image_mask = masks["image_mask"] & positive
    return {"text_inputs": np.where(positive, masks["text_inputs"], pairs["text_ids"]),
            "image_inputs": np.where(image_mask, CONFIG.image_mask_id, image).astype(np.int32),
            "text_targets": pairs["text_ids"], "image_targets": image,
            "text_mask": masks["text_mask"] & positive, "image_mask": image_mask, "itm_label": pairs["itm_label"],
            "caption_ids": text}


def _loss_fn(model):
    def loss_fn(params, batch):
        out = model.apply(params, batch["text_inputs"], batch["image_inputs"])
        def text_fn(h):
            return model.apply(params, h, method=GPTFace.text_logits)
        def image_fn(h):
            return model.apply(params, h, method=GPTFace.image_logits)
        total, (metrics, _) = losses.milm_itm_loss(text_fn, image_fn, out, batch, max_text_len=8,
                                                   capacity_text=1.0, capacity_image=1.0)
        return total, metrics
    return loss_fn


@pytest.mark.slow
def test_losses_fall_on_a_fixed_batch():
    model = GPTFace(CONFIG)
    batch = {k: jnp.asarray(v) for k, v in _batch().items()}
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch["text_inputs"], batch["image_inputs"]))
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    grad_fn = jax.jit(jax.value_and_grad(_loss_fn(model), has_aux=True))
    first = None
    for _ in range(30):
        (loss, metrics), grads = grad_fn(params, batch)
        first = float(loss) if first is None else first
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
    assert float(loss) < 0.5 * first
    assert float(metrics["itm_accuracy"]) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 4, 2)])
def test_sharded_train_step_equals_single_device_step(shape):
    """The trainer's step (loss, clipping, AdamW update) on a mesh == the same step on one device. (Pure data
    parallelism, (8, 1, 1), is what the trainer's own tests run on.)"""
    config = config_lib.load(["--config", "experiments/pretrain.py:tiny", f"--config.mesh.shape={shape}"])
    mesh = sharding.make_mesh(config)
    rules = sharding.logical_rules(config)
    model = GPTFace(CONFIG)
    # eps well above the gradient round-off, so Adam does not amplify summation-order noise
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, eps=1e-4, weight_decay=0.01))
    step = trainer.make_train_step(model, tx, config)
    batch = {k: jnp.asarray(v) for k, v in _batch().items()}
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        init, _, shardings = trainer.state_shardings(model, tx, mesh, rules)
        sharded_state = jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(0))
        assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded_state["params"]))
        spec = sharding.batch_spec(config)
        sharded_batch = {k: jax.device_put(v,
                                           NamedSharding(mesh,
                                                         jax.sharding.PartitionSpec(*spec, *([None] * (v.ndim - 1)))))
                         for k, v in batch.items()}
        s_state, s_metrics = jax.jit(step, out_shardings=(shardings, sharding.replicated(mesh)))(sharded_state,
                                                                                                 sharded_batch)
    state = jax.device_put(jax.device_get(init(jax.random.PRNGKey(0))), jax.devices()[0])
    new_state, metrics = jax.jit(step)(state, batch)
    np.testing.assert_allclose(float(s_metrics["loss"]), float(metrics["loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(s_metrics["grad_norm"]), float(metrics["grad_norm"]), rtol=1e-4)
    for a, b in zip(jax.tree.leaves(new_state["params"]), jax.tree.leaves(s_state["params"])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    assert int(s_state["step"]) == 1


def test_itm_loss_weights_drop_examples():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    labels = jnp.asarray([1, 0, 1, 1, 0, 0])
    weights = jnp.asarray([1, 1, 0, 1, 0, 1], jnp.float32)
    loss, acc, _ = losses.itm_loss(logits, labels, weights)
    keep = np.asarray(weights) > 0
    ref_loss, ref_acc, _ = losses.itm_loss(logits[keep], labels[keep])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(acc, ref_acc, rtol=1e-6)
