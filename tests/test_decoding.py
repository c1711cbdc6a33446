"""Masked decoding: the schedule's boundaries, given tokens untouched, lambda = 0 is plain decoding,
guidance raises the ITM score, text decoding never emits special ids, seeds reproduce."""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.text_tokenizer import NUM_SPECIAL, PAD
from gptface_jax.generate import decoding
from gptface_jax.generate.decoding import DecodeConfig, masked_after
from gptface_jax.models.transformer import GPTFace, ModelConfig, text_hidden

CONFIG = ModelConfig(text_vocab=64, codebook_size=32, max_text_len=8, image_grid=4, num_layers=2, width=32,
                     num_heads=4, mlp_dim=64, compute_dtype="float32")


@pytest.fixture(scope="module")
def model_and_params():
    model = GPTFace(CONFIG)
    rng = np.random.default_rng(0)
    text = jnp.asarray(rng.integers(5, 64, (4, 8)), jnp.int32)
    image = jnp.asarray(rng.integers(0, 32, (4, 16)), jnp.int32)
    return model, nn.meta.unbox(model.init(jax.random.PRNGKey(0), text, image)), text, image


@pytest.mark.parametrize("total,steps", [(64, 12), (16, 12), (5, 8), (256, 12), (3, 3)])
def test_schedule_boundaries(total, steps):
    counts, current = [], jnp.asarray([total])
    for t in range(steps):
        current = masked_after(t, jnp.asarray([total]), current, steps)
        counts.append(int(current[0]))
    assert counts[0] == min(math.floor(total * math.cos(math.pi / (2 * steps))), total - 1)
    assert counts[-1] == 0
    assert all(b < a for a, b in zip([total] + counts, counts) if a > 0)  # at least one revealed per step


def _region_mask(b=4):
    mask = np.zeros((b, 16), bool)
    mask[:, 5:11] = True
    mask[1] = True  # one example generates the whole image
    return jnp.asarray(mask)


def test_unmasked_tokens_never_change_and_all_masked_are_filled(model_and_params):
    model, params, text, image = model_and_params
    mask = _region_mask()
    _, out = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(steps=6))(params, text, image, mask,
                                                                                 jax.random.PRNGKey(1))
    out = np.asarray(out)
    np.testing.assert_array_equal(out[~np.asarray(mask)], np.asarray(image)[~np.asarray(mask)])
    assert (out < CONFIG.codebook_size).all()  # no [MASK] left
    again = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(steps=6))(params, text, image, mask,
                                                                              jax.random.PRNGKey(1))[1]
    np.testing.assert_array_equal(np.asarray(again), out)  # seeded
    other = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(steps=6))(params, text, image, mask,
                                                                              jax.random.PRNGKey(2))[1]
    assert not np.array_equal(np.asarray(other), out)


def test_zero_guidance_is_plain_decoding_bit_for_bit(model_and_params):
    model, params, text, image = model_and_params
    mask, key = _region_mask(), jax.random.PRNGKey(3)
    plain = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig())(params, text, image, mask, key)[1]
    zero = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(guidance=0.0, guidance_steps=3,
                                                                     guidance_tau=0.5))(params, text, image, mask,
                                                                                        key)[1]
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(zero))
    guided = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(guidance=5.0))(params, text, image, mask, key)[1]
    assert not np.array_equal(np.asarray(plain), np.asarray(guided))


def test_guidance_raises_the_itm_score_of_the_final_sample(model_and_params):
    model, params, text, image = model_and_params
    scores = _final_itm_scores(model, params, jnp.tile(text, (4, 1)), jnp.tile(image, (4, 1)))
    assert scores[8.0] > scores[0.0], scores


def test_contrastive_guidance_raises_what_the_caption_adds(model_and_params):
    """guidance_contrast follows score(caption, x) - score(empty text, x): the final samples gain on
    that difference over unguided decoding, and lambda = 0 stays plain decoding."""
    model, params, text, image = model_and_params
    text, image = jnp.tile(text, (4, 1)), jnp.tile(image, (4, 1))
    mask, key = jnp.ones(image.shape, bool), jax.random.PRNGKey(0)
    empty = jnp.full_like(text, PAD)
    gains = {}
    for lam in (0.0, 8.0):
        config = DecodeConfig(steps=8, guidance=lam, guidance_steps=2, guidance_contrast=True)
        _, out = decoding.make_decoder(model, decoding.IMAGE, config)(params, text, image, mask, key)
        gains[lam] = float((decoding.itm_score(model, params, text, out)
                            - decoding.itm_score(model, params, empty, out)).mean())
        if lam == 0.0:
            plain = decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(steps=8))(params, text, image, mask,
                                                                                        key)[1]
            np.testing.assert_array_equal(np.asarray(plain), np.asarray(out))
    assert gains[8.0] > gains[0.0], gains


def test_a_negative_caption_takes_the_blank_controls_place(model_and_params):
    """The blank caption as the negative is contrastive guidance and classifier-free guidance bit for
    bit; another caption as the negative moves the samples toward the caption and away from it, and
    without guidance or w it changes nothing."""
    model, params, text, image = model_and_params
    text, image = jnp.tile(text, (4, 1)), jnp.tile(image, (4, 1))
    mask, key = jnp.ones(image.shape, bool), jax.random.PRNGKey(0)
    empty = jnp.full_like(text, PAD)
    negative = jnp.roll(text, 1, axis=0)  # another example's caption

    def decode(config, away=None):
        return np.asarray(decoding.make_decoder(model, decoding.IMAGE, config)(params, text, image, mask, key,
                                                                                away)[1])
    contrast = DecodeConfig(steps=8, guidance=8.0, guidance_steps=2, guidance_contrast=True)
    np.testing.assert_array_equal(decode(contrast), decode(DecodeConfig(steps=8, guidance=8.0, guidance_steps=2),
                                                           empty))
    np.testing.assert_array_equal(decode(DecodeConfig(steps=8, cfg_scale=2.0)),
                                  decode(DecodeConfig(steps=8, cfg_scale=2.0), empty))
    np.testing.assert_array_equal(decode(DecodeConfig(steps=8)), decode(DecodeConfig(steps=8), negative))

    def margin(out):
        return float((decoding.itm_score(model, params, text, out) - decoding.itm_score(model, params, negative,
                                                                                        out)).mean())
    guided = decode(DecodeConfig(steps=8, guidance=8.0, guidance_steps=2), negative)
    assert margin(guided) > margin(decode(DecodeConfig(steps=8)))


@pytest.mark.slow
@pytest.mark.parametrize("modality", [decoding.IMAGE, decoding.TEXT])
def test_itc_guidance_at_zero_is_plain_decoding_and_raises_the_similarity(modality):
    """guide='itc' follows the unimodal embeddings' similarity: lambda = 0 is bit-exact plain decoding,
    and guided samples are more alike their control signal; guide='both' runs too."""
    import dataclasses
    model = GPTFace(dataclasses.replace(CONFIG, itc_dim=8))
    rng = np.random.default_rng(0)
    text = jnp.asarray(np.tile(rng.integers(5, 64, (4, 8)), (4, 1)), jnp.int32)
    image = jnp.asarray(np.tile(rng.integers(0, 32, (4, 16)), (4, 1)), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), text, image))
    mask = jnp.ones(image.shape if modality == decoding.IMAGE else text.shape, bool)
    key = jax.random.PRNGKey(0)
    plain = decoding.make_decoder(model, modality, DecodeConfig(steps=6), text_vocab=64)(params, text, image, mask, key)
    zero = decoding.make_decoder(model, modality, DecodeConfig(steps=6, guide="itc"), text_vocab=64)(
        params, text, image, mask, key)
    for a, b in zip(plain, zero):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def similarity(t, i):
        te, ie = model.apply(params, t, i, method=GPTFace.itc_embeddings)
        return float(jnp.sum(te * ie, -1).mean())
    guided = {g: decoding.make_decoder(model, modality, DecodeConfig(steps=6, guidance=8.0, guidance_steps=2,
                                                                     guide=g), text_vocab=64)(
        params, text, image, mask, key) for g in ("itc", "both")}
    assert similarity(*guided["itc"]) > similarity(*plain)
    assert not np.array_equal(np.asarray(guided["both"][1]), np.asarray(plain[1])) or modality == decoding.TEXT


def test_itc_guidance_needs_itc_heads(model_and_params):
    model, params, text, image = model_and_params
    with pytest.raises(ValueError, match="itc_dim"):
        decoding.make_decoder(model, decoding.IMAGE, DecodeConfig(guidance=1.0, guide="itc"))(
            params, text, image, _region_mask(), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="guide"):
        DecodeConfig(guide="clip").validate()


def _final_itm_scores(model, params, text, image) -> dict:
    """Mean ITM score of whole images decoded from scratch, unguided (0) and guided (8)."""
    mask = jnp.ones(image.shape, bool)
    scores = {}
    for lam in (0.0, 8.0):
        config = DecodeConfig(steps=8, guidance=lam, guidance_steps=2)
        _, out = decoding.make_decoder(model, decoding.IMAGE, config)(params, text, image, mask, jax.random.PRNGKey(0))
        scores[lam] = float(decoding.itm_score(model, params, text, out).mean())
    return scores


@pytest.mark.slow
def test_text_decoding_fills_captions_without_special_ids(model_and_params):
    model, params, text, image = model_and_params
    mask = jnp.asarray(np.arange(8)[None] < np.array([[8], [5], [3], [1]]))
    text_in = jnp.where(mask, text, PAD)
    for cfg in (DecodeConfig(steps=4), DecodeConfig(steps=4, guidance=2.0, cfg_scale=1.0)):
        out, same_image = decoding.make_decoder(model, decoding.TEXT, cfg)(params, text_in, image, mask,
                                                                            jax.random.PRNGKey(0))
        out = np.asarray(out)
        assert (out[np.asarray(mask)] >= NUM_SPECIAL).all()
        # a tokenizer smaller than the table: its missing ids are never drawn (at a temperature that
        # would draw every id of the table many times over otherwise)
        hot = DecodeConfig(steps=4, temperature=100.0, guidance=cfg.guidance, cfg_scale=cfg.cfg_scale)
        short, _ = decoding.make_decoder(model, decoding.TEXT, hot, text_vocab=12)(
            params, jnp.tile(text_in, (16, 1)), jnp.tile(image, (16, 1)), jnp.tile(mask,
                                                                                   (16, 1)), jax.random.PRNGKey(0))
        drawn = np.asarray(short)[np.tile(np.asarray(mask), (16, 1))]
        assert ((drawn >= NUM_SPECIAL) & (drawn < 12)).all() and len(np.unique(drawn)) == 12 - NUM_SPECIAL
        assert (out[~np.asarray(mask)] == PAD).all()
        np.testing.assert_array_equal(np.asarray(same_image), np.asarray(image))


def test_left_to_right_at_low_temperature_is_greedy_one_position_per_step(model_and_params):
    """Reference: a Python loop that reveals position i as the argmax given positions < i, the rest masked."""
    model, params, text, image = model_and_params
    mask = jnp.asarray(np.arange(8)[None] < np.array([[8], [6], [3], [8]]))
    start = jnp.where(mask, text, PAD)
    config = DecodeConfig(steps=8, order="left_to_right", temperature=1e-4)
    out = np.asarray(decoding.make_decoder(model, decoding.TEXT, config)(params, start, image, mask,
                                                                         jax.random.PRNGKey(0))[0])
    tokens = np.where(np.asarray(mask), 4, np.asarray(start))   # 4 = [MASK]
    for i in range(8):
        logits = np.array(model.apply(params, text_hidden(model.apply(params, jnp.asarray(tokens), image)["hidden"],
                                                            CONFIG), method=GPTFace.text_logits))
        logits[..., :NUM_SPECIAL] = -np.inf
        tokens[:, i] = np.where(np.asarray(mask)[:, i], logits[:, i].argmax(-1), tokens[:, i])
    np.testing.assert_array_equal(out, tokens)


@pytest.mark.parametrize("total,steps", [(12, 12), (12, 5), (3, 8), (0, 4)])
def test_linear_schedule_reveals_an_equal_share(total, steps):
    counts = [int(decoding.masked_after_linear(t, jnp.asarray([total]), steps)[0]) for t in range(steps)]
    assert counts[-1] == 0 and all(b <= a for a, b in zip([total] + counts, counts))
    assert all(a - b <= -(-total // steps) for a, b in zip([total] + counts, counts))


def test_repeat_penalty_keeps_every_token_of_a_caption_distinct(model_and_params):
    model, params, text, image = model_and_params
    mask = jnp.ones((64, 8), bool)
    texts, images = jnp.full((64, 8), PAD, jnp.int32), jnp.tile(image, (16, 1))

    def captions(penalty, order):
        config = DecodeConfig(steps=8, temperature=100.0, order=order, repeat_penalty=penalty)
        return np.asarray(decoding.make_decoder(model, decoding.TEXT, config, text_vocab=NUM_SPECIAL + 9)(
            params, texts, images, mask, jax.random.PRNGKey(0))[0])

    def rows_with_repeats(out):
        return sum(len(set(row)) < len(row) for row in out.tolist())

    assert rows_with_repeats(captions(0.0, "left_to_right")) > 32   # 8 draws from 9 ids: repeats are the rule
    assert rows_with_repeats(captions(1e4, "left_to_right")) == 0
    assert rows_with_repeats(captions(1e4, "confidence")) < rows_with_repeats(captions(0.0, "confidence"))


@pytest.mark.parametrize("modality,with_negative", [(decoding.TEXT, False), (decoding.IMAGE, False),
                                                   (decoding.IMAGE, True)])
def test_candidates_keep_the_sample_the_model_matches_best(model_and_params, modality, with_negative):
    """Reference: the n samples per example decoded at once (rows repeated, candidates=1), scored outside the
    decoder by the ITM log-odds (minus those with the negative caption); the kept sample is each example's
    argmax, and not always sample 0."""
    model, params, text, image = model_and_params
    mask = jnp.ones((4, 8), bool) if modality == decoding.TEXT else _region_mask()
    negative = jnp.roll(text, 1, axis=0) if with_negative else None
    config, key = DecodeConfig(steps=4, temperature=3.0), jax.random.PRNGKey(1)
    kept = decoding.make_decoder(model, modality, dataclasses.replace(config, candidates=5), text_vocab=64)(
        params, text, image, mask, key, negative)
    rows = [jnp.repeat(x, 5, axis=0) for x in (text, image, mask)]
    negatives = None if negative is None else jnp.repeat(negative, 5, axis=0)
    samples = decoding.make_decoder(model, modality, config, text_vocab=64)(params, *rows, key, negatives)

    def log_odds(t, i):
        logits = np.asarray(model.apply(params, t, i, method=GPTFace.match_logits))
        return logits[:, 1] - logits[:, 0]
    score = log_odds(*samples) - (0 if negative is None else log_odds(negatives, samples[1]))
    best = score.reshape(4, 5).argmax(1)
    for got, every in zip(kept, samples):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(every)[np.arange(4) * 5 + best])
    assert (best > 0).any()
    with pytest.raises(ValueError, match="candidates"):
        DecodeConfig(candidates=0).validate()


def test_sampling_defaults_reach_the_cli():
    from gptface_jax.cli import build_parser
    from gptface_jax.generate.decode_config import default_config
    args = build_parser().parse_args(["caption", "--workdir", "w", "--image", "x.png"])
    assert (args.order, args.temperature, args.repeat_penalty, args.guidance, args.candidates) == (
        "left_to_right", 0.5, default_config("caption").repeat_penalty, [3.0], 4)
    edit = build_parser().parse_args(["generate", "--workdir", "w", "--text", "a man"])
    assert (edit.order, edit.repeat_penalty, edit.cfg_scale, edit.guidance, edit.candidates) == (
        "confidence", 0.0, 3.0, [0.0, 2.0], 1)
    # edits: w = 8 and the best of 4 by ITM, in `gptface edit` and in the edit rows `gptface eval edits` measures;
    # mask removal draws once
    face = ["--workdir", "w", "--text", "a man", "--image", "x.png"]
    edit = build_parser().parse_args(["edit", *face, "--region", "mouth"])
    measured = build_parser().parse_args(["eval", "edits", "--workdir", "w"])
    removal = build_parser().parse_args(["remove-mask", *face])
    assert (edit.cfg_scale, edit.candidates, measured.candidates, max(measured.cfg_scale)) == (8.0, 4, 4, 8.0)
    # ... and text-to-face is measured with `gptface generate`'s sampler, not the editor's
    assert (measured.text_to_face_cfg_scale, measured.text_to_face_candidates) == ([3.0], 1)
    assert (removal.cfg_scale, removal.candidates) == (8.0, 1)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="steps"):
        DecodeConfig(steps=0).validate()
    with pytest.raises(ValueError, match=">= 0"):
        DecodeConfig(guidance=-1.0).validate()
    with pytest.raises(ValueError, match=">= 0"):
        DecodeConfig(repeat_penalty=-1.0).validate()
    with pytest.raises(ValueError, match="order"):
        DecodeConfig(order="random").validate()
