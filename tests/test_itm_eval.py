"""Held-out ITM evaluation: the clean split's pairs are what its definition says, AUC is right."""
import numpy as np
import pytest
from scipy import stats

from data_pipelines.synthfaces.attributes import rng_for, sample_face
from data_pipelines.synthfaces.captions import CaptionConfig, make_caption, mentioned_facts
from data_pipelines.synthfaces.eval_pairs import clean_pairs, visible_verdict, weak_pairs
from gptface_jax.evals.itm_eval import auc


def _split(n=300):
    faces = [sample_face(7, i) for i in range(n)]
    captions = [make_caption(f, rng_for(7, i, 2), CaptionConfig()).text for i, f in enumerate(faces)]
    return (captions, np.stack([f.attribute_vector() for f in faces]), np.array([f.hair_colour for f in faces]),
            np.array([f.expression for f in faces]))


def test_clean_pairs_follow_their_definition():
    captions, attributes, hair, expression = _split()
    pairs = clean_pairs(captions, attributes, hair, expression, seed=1)
    label = pairs["label"]
    assert (label == 1).sum() == (label == 0).sum() > 50
    for i, j, y in zip(pairs["image"], pairs["caption"], label):
        n_true, n_false = visible_verdict(mentioned_facts(captions[j]), attributes[i], hair[i], expression[i])
        if y:
            assert i == j and n_true >= 2 and n_false == 0
        else:
            assert i != j and n_false >= 1
    np.testing.assert_array_equal(clean_pairs(captions, attributes, hair, expression, seed=1)["caption"],
                                  pairs["caption"])


def test_weak_pairs_cover_every_image_twice():
    pairs = weak_pairs(50, seed=3)
    assert sorted(pairs["image"].tolist()) == sorted(list(range(50)) * 2)
    neg = pairs["label"] == 0
    assert (pairs["image"][neg] != pairs["caption"][neg]).all()
    assert (pairs["image"][~neg] == pairs["caption"][~neg]).all()


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_the_mann_whitney_statistic(ties):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(size=400) + labels
    if ties:
        scores = np.round(scores)
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    np.testing.assert_allclose(auc(scores, labels), u / ((labels == 1).sum() * (labels == 0).sum()), rtol=1e-12)
    assert auc(labels.astype(float), labels) == 1.0


def test_caption_image_gain_is_zero_for_an_image_blind_model_and_positive_for_one_that_reads_it():
    import jax
    import jax.numpy as jnp

    from experiments import pretrain
    from gptface_jax.evals.itm_eval import caption_image_gain
    from gptface_jax.runtime import sharding
    config = pretrain.get_config("tiny")
    mesh = sharding.make_mesh(config)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 16, (37, 4))          # 37 rows: padding and cutting back are exercised
    text = np.where(np.arange(6) < 4, image[:, :1] + 5, 0)  # the caption names the image's first code
    def count(hidden):
        return hidden.sum(-1).astype(jnp.float32)

    def reads_image(params, t, i, hidden):  # NLL 0.1 per token when the caption matches the image, 2.0 otherwise
        return jnp.where(t[:, 0] == i[:, 0] + 5, 0.1, 2.0) * count(hidden), count(hidden)

    def blind(params, t, i, hidden):
        return 0.7 * count(hidden), count(hidden)

    with jax.set_mesh(mesh):
        blind_scores = caption_image_gain(jax.jit(blind), None, {"text_ids": text, "image_codes": image}, mesh, config,
                                          16)
        reading = caption_image_gain(jax.jit(reads_image), None, {"text_ids": text, "image_codes": image}, mesh, config,
                                     16)
    assert blind_scores["eval_caption_image_gain"] == 0.0
    np.testing.assert_allclose(reading["eval_caption_nll"], 0.1, rtol=1e-6)
    shifted = (np.roll(image, 1, axis=0)[:, 0] != image[:, 0]).mean()  # rows whose shifted image differs
    np.testing.assert_allclose(reading["eval_caption_image_gain"], 1.9 * shifted, rtol=1e-5)
    # a chosen subset of positions is scored under its own name
    with jax.set_mesh(mesh):
        first = caption_image_gain(jax.jit(reads_image), None, {"text_ids": text, "image_codes": image}, mesh, config,
                                   16,
                                   hidden=np.arange(6)[None].repeat(37, 0) == 0, name="first")
    np.testing.assert_allclose(first["eval_first_image_gain"], 1.9 * shifted, rtol=1e-5)
    assert set(first) == {"eval_first_nll", "eval_first_nll_other_image", "eval_first_image_gain"}


def test_image_caption_gain_reads_the_other_direction():
    import jax
    import jax.numpy as jnp

    from experiments import pretrain
    from gptface_jax.evals.itm_eval import image_caption_gain
    from gptface_jax.runtime import sharding
    config = pretrain.get_config("tiny")
    mesh = sharding.make_mesh(config)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 16, (29, 4))
    text = np.where(np.arange(6) < 4, image[:, :1] + 5, 0)

    def reads_caption(params, t, i):  # NLL 0.2 per image token when the caption names the image, 3.0 otherwise
        n = jnp.full((t.shape[0],), i.shape[1], jnp.float32)
        return jnp.where(t[:, 0] == i[:, 0] + 5, 0.2, 3.0) * n, n

    with jax.set_mesh(mesh):
        scores = image_caption_gain(jax.jit(reads_caption), None, {"text_ids": text, "image_codes": image}, mesh,
                                    config, 16)
    shifted = (np.roll(text, 1, axis=0)[:, 0] != text[:, 0]).mean()
    np.testing.assert_allclose(scores["eval_image_nll"], 0.2, rtol=1e-6)
    np.testing.assert_allclose(scores["eval_image_caption_gain"], 2.8 * shifted, rtol=1e-5)
