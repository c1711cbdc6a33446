"""Align before fuse: ITC on unimodal passes of the shared transformer (loss, sharding, isolation)."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from data_pipelines.text_tokenizer import MASK, PAD
from gptface_jax.evals import evaluators
from gptface_jax.models import losses
from gptface_jax.models.transformer import GPTFace
from gptface_jax.runtime import config_lib, sharding
from gptface_jax.train import negatives, trainer
from tests.test_losses import CONFIG, _batch

ITC = dataclasses.replace(CONFIG, itc_dim=16)


def _reference(text, image, captions, scale, bias, kind):
    """numpy: the same loss written pair by pair."""
    n = len(image)
    logits = scale * image @ text.T
    pos = np.array([[bool((captions[i] == captions[j]).all()) for j in range(n)] for i in range(n)])
    if kind == "sigmoid":
        z = logits + bias
        return float(np.mean([sum(-np.log(1 / (1 + np.exp(-(z[i, j] if pos[i, j] else -z[i, j])))) for j in range(n))
                              for i in range(n)]))
    def ce(scores, p):
        logp = scores - np.log(np.exp(scores).sum(1, keepdims=True))
        return float(np.mean([-(logp[i][p[i]]).mean() for i in range(n)]))
    return 0.5 * (ce(logits, pos) + ce(logits.T, pos.T))


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_itc_loss_matches_the_pairwise_reference_and_identical_captions_are_positives(kind):
    rng = np.random.default_rng(0)
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    text, image = unit(rng.normal(size=(6, 8))), unit(rng.normal(size=(6, 8)))
    captions = rng.integers(5, 50, (6, 4))
    captions[4] = captions[1]  # a duplicate caption: rows 1 and 4 are each other's positives
    loss, metrics = losses.itc_loss(jnp.asarray(text), jnp.asarray(image), jnp.asarray(captions), jnp.log(7.0),
                                    jnp.asarray(-2.0), kind)
    np.testing.assert_allclose(float(loss), _reference(text, image, captions, 7.0, -2.0, kind), rtol=1e-5)
    # aligned embeddings: image 1's best caption is caption 4's copy as often as its own, both count
    aligned, _ = losses.itc_loss(jnp.asarray(image), jnp.asarray(image), jnp.asarray(captions), jnp.log(7.0),
                                 jnp.asarray(-2.0), kind)
    assert float(aligned) < float(loss)
    assert 0.0 <= float(metrics["itc_i2t_accuracy"]) <= 1.0


@pytest.mark.slow
def test_unimodal_passes_see_no_token_of_the_other_modality():
    model = GPTFace(ITC)
    batch = _batch()
    text, image = jnp.asarray(batch["caption_ids"]), jnp.asarray(batch["image_targets"])
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), text[:1], image[:1]))
    embed = jax.jit(lambda t, c: model.apply(params, t, c, method=GPTFace.itc_embeddings))
    t1, i1 = embed(text, image)
    t2, _ = embed(text, (image + 7) % CONFIG.codebook_size)   # other images: the text embedding stays
    _, i2 = embed(jnp.roll(text, 1, axis=0), image)            # other captions: the image embedding stays
    np.testing.assert_array_equal(np.asarray(t1), np.asarray(t2))
    np.testing.assert_array_equal(np.asarray(i1), np.asarray(i2))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(t1), axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(np.asarray(i1), np.asarray(embed(text, (image + 7) % CONFIG.codebook_size)[1]))


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 2, 2)])
def test_step_with_itc_on_a_mesh_equals_the_single_device_step(shape, capfd):
    """ITC contrasts the global batch: sharding its rows must not change the loss or the update. The
    partitioner keeps every activation sharded (it warns on stderr where it must replicate one)."""
    config = config_lib.load(["--config", "experiments/pretrain.py:tiny", f"--config.mesh.shape={shape}",
                              "--config.model.itc_dim=16", "--config.loss.itc_weight=1.0",
                              "--config.loss.mined_negative_fraction=1.0"])
    mesh, rules = sharding.make_mesh(config), sharding.logical_rules(config)
    model = GPTFace(dataclasses.replace(ITC, itm_similarity=True))  # the match logit reads the mined rows' cosines
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, eps=1e-4, weight_decay=0.01))
    step = trainer.make_train_step(model, tx, config)
    batch = {k: jnp.asarray(v) for k, v in _batch(16).items()}
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        init, _, shardings = trainer.state_shardings(model, tx, mesh, rules)
        state = jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(0))
        spec = sharding.batch_spec(config)
        def place(v):
            return jax.device_put(v, NamedSharding(mesh, P(*spec, *([None] * (v.ndim - 1)))))
        sharded = {k: place(v) for k, v in batch.items()}
        s_state, s_metrics = jax.jit(step, out_shardings=(shardings, sharding.replicated(mesh)))(state, sharded)
    assert "Involuntary full rematerialization" not in capfd.readouterr().err
    single = jax.device_put(jax.device_get(init(jax.random.PRNGKey(0))), jax.devices()[0])
    new_state, metrics = jax.jit(step)(single, batch)
    assert float(metrics["itc_loss"]) > 0
    assert float(metrics["mined_negatives"]) > 0   # the mined rows are drawn alike on the mesh
    for key in ("loss", "itc_loss", "itc_i2t_accuracy", "grad_norm", "mined_negatives", "mined_similarity"):
        np.testing.assert_allclose(float(s_metrics[key]), float(metrics[key]), rtol=1e-5, err_msg=key)
    # Adam's first update is about lr * sign(g) = 0.01 per element; where |g| is near eps = 1e-4 the
    # summation order of a sharded reduction moves it by up to 1e-5 (0.1% of an update)
    for a, b in zip(jax.tree.leaves(new_state["params"]), jax.tree.leaves(s_state["params"])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=2e-5)


def test_match_logits_add_the_unimodal_similarity_to_the_fusion_head():
    model = GPTFace(dataclasses.replace(ITC, itm_similarity=True))
    batch = _batch()
    text, image = jnp.asarray(batch["caption_ids"]), jnp.asarray(batch["image_targets"])
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), text[:1], image[:1]))
    params["params"]["itm_similarity_gain"] = jnp.float32(0.7)
    match = model.apply(params, text, image, method=GPTFace.match_logits)
    fused = model.apply(params, text, image)["itm_logits"]
    t, i = model.apply(params, text, image, method=GPTFace.itc_embeddings)
    scale = np.exp(float(params["params"]["itc_log_scale"]))
    expected = np.asarray(fused[:, 1]) + 0.7 * scale * (np.asarray(t * i)).sum(1)
    np.testing.assert_allclose(np.asarray(match[:, 1]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(match[:, 0]), np.asarray(fused[:, 0]))
    # relaxed decoding feeds the joint embedding: all three passes must read it as the tokens
    embeds, _ = model.apply(params, text, image, method=GPTFace.embed)
    relaxed = model.apply(params, text, image, inputs_embeds=embeds, method=GPTFace.match_logits)
    np.testing.assert_allclose(np.asarray(relaxed), np.asarray(match), rtol=1e-5, atol=1e-5)


def test_shown_rows_name_the_caption_and_image_each_itm_row_shows():
    captions = jnp.asarray([[5, 6, 0], [7, 8, 9], [10, 11, 0], [12, 13, 0]])
    # row 1 shows row 2's caption; row 2's caption is dropped
    shown = jnp.asarray([[5, 6, 0], [10, 11, 0], [0, 0, 0], [12, 13, 0]])
    batch = {"caption_ids": captions, "text_targets": shown}
    caption_row, image_row = negatives.shown_rows(batch)
    assert caption_row.tolist() == [0, 2, -1, 3] and image_row.tolist() == [0, 1, 2, 3]
    mined = {**batch, "mined_caption_row": jnp.asarray([-1, -1, -1, 3]),
             "mined_image_row": jnp.asarray([-1, -1, -1, 0])}
    caption_row, image_row = negatives.shown_rows(mined)
    assert caption_row.tolist() == [0, 2, -1, 3] and image_row.tolist() == [0, 1, 2, 0]


def test_recall_and_its_chance():
    similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.3, 0.2, 0.1]])  # row 2: its match ranks last
    positive = np.eye(3, dtype=bool)
    assert evaluators.recall_at(similarity, positive, 1) == pytest.approx(1 / 3)
    assert evaluators.recall_at(similarity, positive, 2) == pytest.approx(2 / 3)
    assert evaluators.chance_recall(positive, 1) == pytest.approx(1 / 3)
    assert evaluators.chance_recall(np.ones((3, 3), bool), 1) == 1.0


def _mining_batch(b=32, seed=0):
    rng = np.random.default_rng(seed)
    captions = rng.integers(5, 40, (b, 6)).astype(np.int32)
    captions[:, 4:] = PAD
    captions[7] = captions[3]      # identical captions: never each other's negative
    captions[8] = captions[3]
    images = rng.integers(0, 30, (b, 9)).astype(np.int32)
    text_inputs = np.where(rng.random(captions.shape) < 0.3, MASK, captions[(np.arange(b) + 1) % b])
    image_inputs = np.where(rng.random(images.shape) < 0.4, 30, images)
    return {"caption_ids": captions, "image_targets": images, "text_inputs": text_inputs.astype(np.int32),
            "image_inputs": image_inputs.astype(np.int32), "itm_label": (np.arange(b) % 2).astype(np.int32)}


def _own_caption_of(batch, text_row, image_row):
    """Whether the text shown in `text_row` (its unmasked words) is the caption of the image in `image_row`."""
    shown = batch["text_inputs"][text_row]
    visible = shown != MASK
    return bool((shown[visible] == batch["caption_ids"][image_row][visible]).all())


def test_mined_negatives_are_never_the_true_partner_or_an_identical_caption():
    batch = _mining_batch()
    b = len(batch["itm_label"])
    rng = np.random.default_rng(1)
    text_emb = rng.normal(size=(b, 8)).astype(np.float32)
    image_emb = text_emb + 0.1 * rng.normal(size=(b, 8)).astype(np.float32)   # aligned: partners most alike
    mine = jax.jit(lambda key, batch: negatives.mine(key, batch, jnp.asarray(text_emb), jnp.asarray(image_emb),
                                                     30.0, 1.0, 30))
    mined_rows = 0
    for seed in range(40):
        out, metrics = mine(jax.random.PRNGKey(seed), {k: jnp.asarray(v) for k, v in batch.items()})
        out = {k: np.asarray(v) for k, v in out.items()}
        positive = batch["itm_label"] == 1
        for k in ("text_inputs", "image_inputs"):   # positives are never touched
            np.testing.assert_array_equal(out[k][positive], batch[k][positive])
        changed = ((out["text_inputs"] != batch["text_inputs"]).any(1)
                   | (out["image_inputs"] != batch["image_inputs"]).any(1))
        assert not changed[positive].any()
        # the corruption pattern stays: masked image positions stay masked, and no new [MASK] appears
        np.testing.assert_array_equal(out["image_inputs"] == 30, batch["image_inputs"] == 30)
        assert ((out["text_inputs"] == MASK) <= (batch["text_inputs"] == MASK)).all()
        for row in np.flatnonzero(changed):
            mined_rows += 1
            image_row = [j for j in range(b) if (out["image_inputs"][row] == np.where(
                batch["image_inputs"][row] == 30, 30, batch["image_targets"][j])).all()]
            caption_rows = [j for j in range(b) if _own_caption_of(out, row, j)]
            # whichever image the row now shows, the caption it shows is not that image's own (nor a copy)
            for i in image_row:
                for j in caption_rows:
                    assert not (batch["caption_ids"][i] == batch["caption_ids"][j]).all(), (seed, row, i, j)
        assert 0 < float(metrics["mined_negatives"]) <= 0.5
    assert mined_rows > 100


def test_mining_prefers_the_most_similar_wrong_partner():
    logits = jnp.asarray([[5.0, 4.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    positive = jnp.eye(4, dtype=bool).at[2, 3].set(True).at[3, 2].set(True)
    draws = np.stack([np.asarray(negatives.draw_wrong_partners(jax.random.PRNGKey(s), logits, positive))
                      for s in range(200)])
    assert (draws != np.arange(4)).all()
    assert not (draws[:, 2] == 3).any() and not (draws[:, 3] == 2).any()   # identical captions: never drawn
    assert (draws[:, 0] == 1).mean() > 0.8                                  # e^4 against e^0 + e^0
    none_wrong = negatives.draw_wrong_partners(jax.random.PRNGKey(0), logits[:2, :2], jnp.ones((2, 2), bool))
    np.testing.assert_array_equal(np.asarray(none_wrong), [-1, -1])


def test_caption_word_loss_is_the_cross_entropy_against_the_bag_of_caption_tokens():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 12)).astype(np.float32)
    captions = np.array([[7, 9, 7, PAD], [MASK - 1, 11, PAD, PAD], [PAD, PAD, PAD, PAD]])  # row 2: no token
    loss = float(losses.caption_word_loss(jnp.asarray(logits), jnp.asarray(captions)))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = [-(2 * logp[0, 7] + logp[0, 9]) / 3, -logp[1, 11]]  # counts kept; special ids (up to [MASK]) left out
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-5)
    # at its minimum the logits are the bag's log-frequencies (the loss is then the bag's entropy)
    bag = np.zeros((3, 12))
    bag[0, 7], bag[0, 9], bag[1, 11], bag[2, 5] = 2, 1, 1, 1
    best = float(losses.caption_word_loss(jnp.asarray(np.log(bag / bag.sum(1, keepdims=True) + 1e-9)),
                                          jnp.asarray(captions)))
    np.testing.assert_allclose(best, np.mean([-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)), 0.0]), atol=1e-5)
    # a caption's order does not matter
    np.testing.assert_allclose(float(losses.caption_word_loss(jnp.asarray(logits), jnp.asarray(captions[:, ::-1]))),
                               loss, rtol=1e-6)


def test_step_with_the_word_head_trains_it_and_accumulation_keeps_the_update():
    """The caption-token loss rides on the contrastive part: it reaches the word head and the text
    embedding on one batch and, cached like ITC, gives the same update in micro-batches."""
    args = ["--config", "experiments/pretrain.py:tiny", "--config.model.itc_dim=16", "--config.loss.itc_weight=2.0",
            "--config.model.itc_words=True", "--config.loss.itc_word_weight=1.0"]
    model = GPTFace(dataclasses.replace(ITC, itc_words=True))
    tx = optax.sgd(0.1)
    batch = {k: jnp.asarray(v) for k, v in _batch(8).items()}
    results = []
    for k in (1, 2):
        config = config_lib.load(args + [f"--config.train.accum_steps={k}"])
        init, _, _ = trainer.state_shardings(model, tx, sharding.make_mesh(config, jax.devices()[:1]),
                                             sharding.logical_rules(config))
        state = init(jax.random.PRNGKey(0))
        results.append(jax.jit(trainer.make_train_step(model, tx, config))(state, batch))
    (state, metrics), (accumulated, accumulated_metrics) = results
    assert float(metrics["itc_word_loss"]) > 0
    np.testing.assert_allclose(float(accumulated_metrics["itc_word_loss"]), float(metrics["itc_word_loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(accumulated_metrics["loss"]), float(metrics["loss"]), rtol=1e-5)
    before = init(jax.random.PRNGKey(0))["params"]["params"]["itc_word_head"]
    assert not np.allclose(np.asarray(state["params"]["params"]["itc_word_head"]), np.asarray(before))
    np.testing.assert_allclose(np.asarray(accumulated["params"]["params"]["itc_word_head"]),
                               np.asarray(state["params"]["params"]["itc_word_head"]), rtol=1e-4, atol=1e-6)
