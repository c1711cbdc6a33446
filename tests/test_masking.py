"""Span masking: exact budgets, the three modes, span and block shapes, determinism."""
import numpy as np
import pytest

from data_pipelines import masking
from data_pipelines.errors import OptionError
from data_pipelines.masking import IMAGE_GENERATION, JOINT, TEXT_GENERATION, MaskingConfig, mask_batch


def _batch(b=512, max_len=32, seed=0, step=0, config=MaskingConfig(), grid=8):
    rng = np.random.default_rng(123)
    lengths = rng.integers(3, max_len + 1, b)
    ids = np.where(np.arange(max_len) < lengths[:, None], rng.integers(5, 1000, (b, max_len)), 0)
    out = mask_batch(ids, lengths, grid, config, seed=seed, step=step, vocab_size=1000, mask_id=4, num_special=5)
    return ids, lengths, out


def test_budgets_are_exact_per_mode():
    config = MaskingConfig()
    ids, lengths, out = _batch(config=config)
    text_n, image_n = out["text_mask"].sum(1), out["image_mask"].sum(1)
    joint = out["mode"] == JOINT
    np.testing.assert_array_equal(text_n[joint], masking.budget(config.text_ratio, lengths[joint]))
    assert (image_n[joint] == int(np.ceil(0.4 * 64))).all()
    assert (text_n[out["mode"] == IMAGE_GENERATION] == 0).all()  # text intact
    assert (image_n[out["mode"] == TEXT_GENERATION] == 0).all()  # image intact
    # never beyond the caption, never on padding
    assert not (out["text_mask"] & (np.arange(32) >= lengths[:, None])).any()


def test_generation_modes_reach_full_masking():
    _, lengths, out = _batch(b=2000)
    image_gen = out["mode"] == IMAGE_GENERATION
    ratios = out["image_mask"][image_gen].mean(1)
    assert ratios.max() == 1.0 and ratios.min() < 0.2
    assert np.mean(ratios) > 0.55  # the cosine schedule favours high ratios (mean 2/pi)
    text_gen = out["mode"] == TEXT_GENERATION
    assert (out["text_mask"][text_gen].sum(1) == lengths[text_gen]).any()


def test_generation_min_ratio_floors_the_schedule():
    config = MaskingConfig(mode_probs=(0.0, 0.5, 0.5), generation_min_ratio=1.0)
    _, lengths, out = _batch(b=400, config=config)
    text_gen, image_gen = out["mode"] == TEXT_GENERATION, out["mode"] == IMAGE_GENERATION
    np.testing.assert_array_equal(out["text_mask"][text_gen].sum(1), lengths[text_gen])  # whole captions
    assert out["image_mask"][image_gen].all()                                              # whole images
    half = _batch(b=400, config=MaskingConfig(mode_probs=(0.0, 1.0, 0.0), generation_min_ratio=0.5))[2]
    assert half["image_mask"].mean(1).min() >= 0.5 and half["image_mask"].mean(1).max() == 1.0


def test_mode_frequencies_follow_the_config():
    _, _, out = _batch(b=4000, config=MaskingConfig(mode_probs=(0.2, 0.5, 0.3)))
    freq = np.bincount(out["mode"], minlength=3) / 4000
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.03)


def test_text_masks_are_spans():
    rng = np.random.default_rng(0)
    lengths = np.full(3000, 64)
    mask = masking.text_span_mask(lengths, np.full(3000, 0.2), 64, rng, span_p=0.2, max_span=10)
    starts = mask & ~np.pad(mask, ((0, 0), (1, 0)))[:, :-1]
    mean_run = mask.sum() / starts.sum()
    assert mean_run > 2.5  # i.i.d. masking at 20% would give runs of 1.25


def test_image_masks_are_blocks():
    rng = np.random.default_rng(0)
    mask = masking.image_block_mask(np.full(2000, 0.4), 16, rng)
    assert (mask.reshape(2000, -1).sum(1) == int(np.ceil(0.4 * 256))).all()
    neighbours = (np.pad(mask, ((0, 0), (1, 0), (0, 0)))[:, :-1] & mask).sum() / mask.sum()
    assert neighbours > 0.6  # i.i.d. cells at 40% would give 0.4


def test_replacement_is_80_10_10():
    ids, _, out = _batch(b=4000)
    masked = out["text_mask"]
    inputs = out["text_inputs"]
    to_mask = (inputs == 4)[masked].mean()
    kept = (inputs == ids)[masked].mean()
    assert abs(to_mask - 0.8) < 0.02 and 0.08 < kept < 0.13  # random ids sometimes equal the original
    assert (inputs[~masked] == ids[~masked]).all()
    assert (inputs[masked & (inputs != 4)] >= 5).all()  # random replacements are never special ids


def test_deterministic_in_seed_and_step():
    _, _, a = _batch(seed=1, step=7)
    _, _, b = _batch(seed=1, step=7)
    _, _, c = _batch(seed=1, step=8)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image_mask"], c["image_mask"])


def test_bad_config_is_rejected():
    with pytest.raises(OptionError, match="mode_probs"):
        MaskingConfig(mode_probs=(0.5, 0.5, 0.5)).validate()
    with pytest.raises(OptionError, match="text_ratio"):
        MaskingConfig(text_ratio=0.0).validate()
