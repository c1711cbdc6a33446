"""Image-informative caption tokens by mutual information, and the salient warm-up they drive."""
import dataclasses

import numpy as np
import pytest

from data_pipelines import informative_tokens
from data_pipelines.errors import DataError
from data_pipelines.masking import IMAGE_GENERATION, TEXT_GENERATION, MaskingConfig, mask_batch
from data_pipelines.pipeline import PretrainBatchConfig, ReaderConfig, pretraining_dataset
from data_pipelines.text_tokenizer import MASK, PAD


def _pairs(n=2000, seed=0):
    """Captions of random filler ids 20..99; id 10 ('beard') appears exactly when the image has code 3,
    id 11 appears at random as often, id 12 is too rare to trust."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(4, 64, (n, 16))
    has = rng.random(n) < 0.4
    codes[has, rng.integers(0, 16, has.sum())] = 3
    text = rng.integers(20, 100, (n, 8))
    text[has, 2] = 10
    text[rng.random(n) < 0.4, 5] = 11
    text[:3, 6] = 12
    text[:, 7] = PAD
    return text, codes


def test_the_token_that_follows_the_image_ranks_first():
    text, codes = _pairs()
    top = informative_tokens.informative_tokens(text, codes, vocab_size=100, codebook_size=64, num_special=5, k=5)
    assert top[0] == 10
    assert 11 not in top[:1] and 12 not in top and PAD not in top
    mi = informative_tokens.mutual_information(text, codes, 100, 64, 5)
    assert mi[10, 3] > 0.5 and mi[10, 3] > 20 * mi[11].max()   # 0.67 nats: the two are one bit apart
    assert (mi >= -1e-9).all()


def test_shuffled_images_have_no_informative_token():
    text, codes = _pairs()
    shuffled = codes[np.random.default_rng(1).permutation(len(codes))]
    mi = informative_tokens.mutual_information(text, shuffled, 100, 64, 5)
    assert mi[10, 3] < 0.01


def test_mismatched_or_empty_examples_are_rejected():
    text, codes = _pairs(10)
    with pytest.raises(DataError, match="matching"):
        informative_tokens.informative_tokens(text, codes[:5], vocab_size=100, codebook_size=64, num_special=5, k=3)


def test_salient_masking_hides_exactly_the_salient_tokens():
    text, _ = _pairs(64)
    lengths = np.full(64, 7)
    out = mask_batch(text, lengths, 4, MaskingConfig(), seed=0, step=0, vocab_size=100, mask_id=MASK,
                     num_special=5, salient_ids=(10, 11))
    np.testing.assert_array_equal(out["text_mask"], np.isin(text, (10, 11)))
    assert (out["mode"] == TEXT_GENERATION).all() and not out["image_mask"].any()
    np.testing.assert_array_equal(out["text_inputs"][~out["text_mask"]], text[~out["text_mask"]])
    assert (out["text_inputs"][out["text_mask"]] == MASK).mean() > 0.6


def test_pipeline_uses_the_warm_up_then_the_full_objective():
    text, codes = _pairs(96)
    records = [{"image_codes": c.astype(np.uint16), "text_ids": t.astype(np.int32), "text_len": 7, "index": i}
               for i, (t, c) in enumerate(zip(text, codes))]
    config = PretrainBatchConfig(image_mask_id=64, text_vocab_size=100, grid=4, seed=3,
                                 salient_tokens=(10,), salient_steps=2)
    batches = [b for b, _ in zip(pretraining_dataset(records, ReaderConfig(batch_size=16, seed=1), config), range(3))]
    for warm in batches[:2]:
        positive = (warm["itm_label"] == 1) & (warm["text_targets"] != PAD).any(1)
        np.testing.assert_array_equal(warm["text_mask"][positive], warm["text_targets"][positive] == 10)
        assert not warm["image_mask"].any()
    after = batches[2]
    assert after["image_mask"].any() and (after["text_targets"][after["text_mask"]] != 10).any()
    assert (after["itm_weight"] > 0).all() or (after["text_targets"] == PAD).all(1).any()
    # the same step without a warm-up draws the ordinary masks
    plain = list(zip(pretraining_dataset(records, ReaderConfig(batch_size=16, seed=1),
                                         dataclasses.replace(config, salient_steps=0)), range(3)))[2][0]
    np.testing.assert_array_equal(plain["text_mask"], after["text_mask"])


def test_salient_mix_keeps_a_share_of_salient_examples_without_itm_weight():
    text, codes = _pairs(256)
    records = [{"image_codes": c.astype(np.uint16), "text_ids": t.astype(np.int32), "text_len": 7, "index": i}
               for i, (t, c) in enumerate(zip(text, codes))]
    config = PretrainBatchConfig(image_mask_id=64, text_vocab_size=100, grid=4, seed=3, caption_dropout=0.0,
                                 salient_tokens=(10,), salient_steps=1, salient_mix=0.5)
    batch = list(zip(pretraining_dataset(records, ReaderConfig(batch_size=128, seed=1), config), range(2)))[1][0]
    salient = (batch["mode"] == TEXT_GENERATION) & (batch["itm_weight"] == 0)
    assert 0.35 < salient.mean() < 0.65
    positive = salient & (batch["itm_label"] == 1)
    np.testing.assert_array_equal(batch["text_mask"][positive], batch["text_targets"][positive] == 10)
    assert not batch["image_mask"][salient].any() and (batch["itm_weight"][~salient] > 0).all()


def _templated(n=600, seed=0):
    """Captions "a <colour> person with <item>": colours 10/11/12 share both neighbours, items 20/21
    share theirs; piece 13 is the head of a two-piece word (13 14), so never a whole word."""
    rng = np.random.default_rng(seed)
    a, person, with_, dot = 30, 31, 32, 33
    text = np.zeros((n, 8), np.int64)
    text[:, 0], text[:, 1], text[:, 2], text[:, 3] = a, rng.choice([10, 11, 12], n), person, with_
    text[:, 4], text[:, 5] = rng.choice([20, 21], n), dot
    sub = rng.random(n) < 0.3
    text[sub, 4], text[sub, 5] = 13, 14
    word_start = np.ones(40, bool)
    word_start[14] = False           # a continuation piece
    word_start[dot] = True           # punctuation ends a word
    return text, np.full(n, 6), word_start


def test_swap_partners_pair_words_of_the_same_contexts_only():
    text, _, word_start = _templated()
    partners = informative_tokens.swap_partners(text, [10, 11, 12, 20, 21, 13], word_start, k=2)
    assert set(partners[10]) == {11, 12} and set(partners[11]) == {10, 12}
    assert partners[20] == (21,) and partners[21] == (20,)
    assert 13 not in partners and all(13 not in ps for ps in partners.values())


def test_symmetric_swap_partners_swap_every_word_in_as_well_as_out():
    text, _, word_start = _templated()
    one_way = informative_tokens.swap_partners(text, [10, 11, 12], word_start, k=1)
    swapped_in = {p for ps in one_way.values() for p in ps}
    assert set(one_way) - swapped_in  # with k = 1 some word is nobody's partner: never a negative
    both = informative_tokens.swap_partners(text, [10, 11, 12], word_start, k=1, symmetric=True)
    assert all(set(one_way[t]) <= set(both[t]) for t in one_way)  # every chosen pair stays
    assert all(t in both[p] for t, ps in both.items() for p in ps)  # and every pair goes both ways
    assert {p for ps in both.values() for p in ps} == set(both)


def test_swap_partners_leave_out_words_that_share_captions():
    """35 and 36 ("wearing", "with") share their contexts but appear together in a caption: they
    answer different questions, so swapping one for the other is no negative. The colours exclude
    each other within a caption and stay partners."""
    text, _, word_start = _templated()
    both = np.tile([30, 31, 35, 20, 36, 21, 0, 0], (300, 1))
    both[::2, [2, 4]] = both[::2, [4, 2]]                          # either order
    text = np.concatenate([text, both])
    partners = informative_tokens.swap_partners(text, [10, 11, 12, 35, 36], word_start, k=2,
                                                max_cooccurrence=informative_tokens.EXCLUSIVE)
    assert set(partners[10]) == {11, 12} and 35 not in partners and 36 not in partners
    loose = informative_tokens.swap_partners(text, [10, 11, 12, 35, 36], word_start, k=2)
    assert loose[35] == (36,) and loose[36] == (35,)               # without the rule they would pair


def test_swap_partners_leave_out_synonyms_when_images_are_given():
    """Colours 10 and 11 name the same faces (image code 1), 12 the other (code 2): with the images,
    10 and 11 are no longer each other's partners, since swapping one for the other is still true."""
    text, _, word_start = _templated()
    rng = np.random.default_rng(1)
    codes = rng.integers(4, 40, (len(text), 16))
    codes[:, 0] = np.where(np.isin(text[:, 1], [10, 11]), 1, 2)
    codes[:, 1] = np.where(text[:, 4] == 20, 3, 0)
    same = informative_tokens.image_lift_similarity(text, codes, [10, 11, 12], codebook_size=40)
    assert same[0, 1] > 0.5 and same[0, 2] < 0 and same[1, 2] < 0
    partners = informative_tokens.swap_partners(text, [10, 11, 12, 20, 21], word_start, k=2,
                                                image_codes=codes, codebook_size=40)
    assert partners[10] == (12,) and partners[11] == (12,) and set(partners[12]) == {10, 11}
    assert partners[20] == (21,) and partners[21] == (20,)


def test_swap_negatives_change_one_whole_word_to_a_partner():
    from data_pipelines.itm import make_pairs, partner_table
    text, lengths, word_start = _templated(256)
    table = partner_table(informative_tokens.swap_partners(text, [10, 11, 12, 20, 21], word_start), 40)
    pairs = make_pairs(text, lengths, np.random.default_rng(0), negative_fraction=1.0, swap_fraction=1.0,
                       swap_table=table, word_start=word_start)
    assert pairs["swapped"].all() and (pairs["itm_label"] == 0).all()  # every caption has a colour word
    np.testing.assert_array_equal(pairs["caption_from"], np.arange(256))
    diff = pairs["text_ids"] != text
    assert (diff.sum(1) == 1).all()
    rows, cols = np.nonzero(diff)
    for r, c in zip(rows, cols):
        assert pairs["text_ids"][r, c] in table[text[r, c]]
    assert not diff[:, 4][text[:, 4] == 13].any()       # the head of "13 14" is never swapped
    # half swap, half shifted: the shifted ones are other examples' captions, unchanged
    half = make_pairs(text, lengths, np.random.default_rng(1), negative_fraction=1.0, swap_fraction=0.5,
                      swap_table=table, word_start=word_start)
    assert 0.3 < half["swapped"].mean() < 0.7
    shifted = ~half["swapped"]
    assert (half["caption_from"][shifted] != np.arange(256)[shifted]).all()
    np.testing.assert_array_equal(half["text_ids"][shifted], text[half["caption_from"][shifted]])


def test_swap_draws_are_uniform_over_positions_and_partners():
    from data_pipelines.itm import partner_table, swap_words
    text = np.tile([5, 10, 20, 6, 0], (2000, 1))                      # two swappable words, then PAD
    lengths = np.full(2000, 4)
    table = partner_table({10: (11, 12), 20: (21,)}, 40)
    rows = np.arange(2000) % 4 != 0                                   # a quarter of the rows not asked
    out, changed = swap_words(text, lengths, rows, table, np.ones(40, bool), np.random.default_rng(0))
    np.testing.assert_array_equal(changed, rows)
    np.testing.assert_array_equal(out[~rows], text[~rows])
    at_colour = out[rows, 1] != 10
    assert (at_colour != (out[rows, 2] != 20)).all()                 # exactly one word per row
    assert 0.45 < at_colour.mean() < 0.55
    assert 0.45 < (out[rows, 1][at_colour] == 11).mean() < 0.55 and set(out[rows, 1][at_colour]) == {11, 12}
    assert (out[rows, 2][~at_colour] == 21).all()


def test_informative_codes_are_the_ones_the_word_makes_more_likely():
    text, codes = _pairs()
    out = informative_tokens.informative_codes(text, codes, [10, 11], vocab_size=100, codebook_size=64,
                                               num_special=5, top_codes=3)
    assert out[10][0] == 3
    # codes made *less* likely by the token are never chosen, however much information they carry
    has = (text == 10).any(1)
    inverse = np.where(codes == 4, 5, codes)
    inverse[~has, 0] = 4                       # code 4 is present exactly when token 10 is absent
    assert informative_tokens.mutual_information(text, inverse, 100, 64, 5)[10, 4] > 0.5
    assert 4 not in informative_tokens.informative_codes(text, inverse, [10], vocab_size=100, codebook_size=64,
                                                         num_special=5, top_codes=3).get(10, ())


def test_salient_image_examples_hide_the_whole_image_and_score_the_informed_codes():
    text, codes = _pairs(256)
    records = [{"image_codes": c.astype(np.uint16), "text_ids": t.astype(np.int32), "text_len": 7, "index": i}
               for i, (t, c) in enumerate(zip(text, codes))]
    config = PretrainBatchConfig(image_mask_id=64, text_vocab_size=100, grid=4, seed=3, caption_dropout=0.0,
                                 negative_fraction=0.25, salient_codes=((10, (3,)),), salient_image_mix=1.0)
    batch = list(zip(pretraining_dataset(records, ReaderConfig(batch_size=128, seed=1), config), range(1)))[0][0]
    has_word = (batch["text_targets"] == 10).any(1)
    picked = has_word & (batch["itm_label"] == 1)
    assert picked.sum() > 20
    assert (batch["image_inputs"][picked] == 64).all()                       # nothing of the image shows
    np.testing.assert_array_equal(batch["image_mask"][picked], batch["image_targets"][picked] == 3)
    assert not batch["text_mask"][picked].any()
    np.testing.assert_array_equal(batch["text_inputs"][picked], batch["text_targets"][picked])
    assert (batch["mode"][picked] == IMAGE_GENERATION).all() and (batch["itm_weight"][picked] == 0).all()
    # examples without the word, and negatives, keep their ordinary masks
    others = ~has_word & (batch["itm_label"] == 1)
    assert (batch["image_inputs"][others] != 64).any() and (batch["itm_weight"][~picked] > 0).all()


def test_corrective_targets_score_the_swapped_word_with_the_original():
    from data_pipelines.masking import salient_mask
    text, lengths, word_start = _templated(256)
    partners = informative_tokens.swap_partners(text, [10, 11, 12, 20, 21], word_start)
    records = [{"image_codes": np.zeros(16, np.uint16), "text_ids": t.astype(np.int32), "text_len": 6, "index": i}
               for i, t in enumerate(text)]
    config = PretrainBatchConfig(image_mask_id=64, text_vocab_size=40, grid=4, seed=3, caption_dropout=0.0,
                                 negative_fraction=0.5, swap_fraction=1.0, swap_pairs=tuple(partners.items()),
                                 word_start=tuple(word_start), salient_tokens=(10, 11, 12, 20, 21),
                                 swap_corrective=True)
    batch = list(zip(pretraining_dataset(records, ReaderConfig(batch_size=128, seed=1), config), range(1)))[0][0]
    own = text[batch["index"]]
    swapped = (batch["itm_label"] == 0) & ((batch["text_inputs"] != own) & (batch["text_inputs"] != MASK)).any(1)
    assert swapped.sum() > 30
    np.testing.assert_array_equal(batch["text_targets"][swapped], own[swapped])       # targets: the true words
    scored = batch["text_mask"][swapped]
    assert (scored.sum(1) == 1).all()                                                # only the swapped word,
    assert np.isin(own[swapped][scored], (10, 11, 12, 20, 21)).all()                 # a salient one,
    assert (batch["text_inputs"][swapped][scored] != own[swapped][scored]).all()     # shown changed
    positive = batch["itm_label"] == 1
    visible = salient_mask(own, np.full(len(own), 6), (10, 11, 12, 20, 21)) & (batch["text_inputs"] == own)
    assert (batch["text_mask"][positive] | ~visible[positive]).all()                  # visible salient words scored


def test_corrective_tokens_widen_the_words_checked_in_positives():
    text, _, word_start = _templated(256)
    partners = informative_tokens.swap_partners(text, [10, 11, 12, 20, 21], word_start)
    records = [{"image_codes": np.zeros(16, np.uint16), "text_ids": t.astype(np.int32), "text_len": 6, "index": i}
               for i, t in enumerate(text)]

    def positives_scored_at(word: int, corrective: tuple) -> np.ndarray:
        config = PretrainBatchConfig(image_mask_id=64, text_vocab_size=40, grid=4, seed=3, caption_dropout=0.0,
                                     negative_fraction=0.5, swap_fraction=1.0, swap_pairs=tuple(partners.items()),
                                     word_start=tuple(word_start), salient_tokens=(10, 11, 12),
                                     swap_corrective=True, corrective_tokens=corrective,
                                     masking=MaskingConfig(replace_probs=(1.0, 0.0, 0.0)))  # shown = not masked
        batch = list(zip(pretraining_dataset(records, ReaderConfig(batch_size=128, seed=1), config), range(1)))[0][0]
        own = text[batch["index"]]
        shown = (batch["itm_label"] == 1)[:, None] & (own == word) & (batch["text_inputs"] == own)
        assert shown.sum() >= 5
        return batch["text_mask"][shown]

    assert not positives_scored_at(20, ()).any()                  # salient words only by default
    assert positives_scored_at(20, (10, 11, 12, 20, 21)).all()    # swap words are checked where true too
    assert positives_scored_at(10, (10, 11, 12, 20, 21)).all()
