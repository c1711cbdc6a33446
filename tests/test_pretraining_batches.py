"""MILM + ITM batches from pre-tokenized examples: masks on positives only, exact resume."""
import numpy as np

from data_pipelines.masking import TEXT_GENERATION
from data_pipelines.pipeline import PretrainBatchConfig, ReaderConfig, pretraining_dataset
from data_pipelines.text_tokenizer import MASK, PAD


def _records(n=96, max_len=8, grid=4, codebook=32):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        length = int(rng.integers(2, max_len + 1))
        ids = np.full(max_len, PAD, np.int32)
        ids[:length] = rng.integers(5, 64, length)
        out.append({"image_codes": rng.integers(0, codebook, grid * grid).astype(np.uint16), "text_ids": ids,
                    "text_len": length, "index": i})
    return out


CONFIG = PretrainBatchConfig(image_mask_id=32, text_vocab_size=64, grid=4, seed=3)


def _it(source, **kw):
    return iter(pretraining_dataset(source, ReaderConfig(batch_size=16, seed=1, **kw), CONFIG))


def test_batches_mask_positives_only():
    source = _records()
    batch = next(_it(source))
    assert batch["text_inputs"].shape == (16, 8) and batch["image_inputs"].shape == (16, 16)
    negative = batch["itm_label"] == 0
    assert negative.any() and (~negative).any()
    # losses score positives only ...
    assert not batch["text_mask"][negative].any() and not batch["image_mask"][negative].any()
    pos = ~negative
    np.testing.assert_array_equal(batch["image_inputs"][pos] == 32, batch["image_mask"][pos])
    np.testing.assert_array_equal(batch["image_inputs"][pos][~batch["image_mask"][pos]],
                                  batch["image_targets"][pos][~batch["image_mask"][pos]])
    # ... but negatives are corrupted alike, so masking cannot reveal the ITM label
    def masked_fraction(rows):
        return (batch["image_inputs"][rows] == 32).mean()
    assert masked_fraction(negative) > 0.1 and masked_fraction(pos) > 0.1
    # unmasked text positions show the (paired) caption
    shown = ~batch["text_mask"][pos]
    assert (batch["text_inputs"][pos][shown] == batch["text_targets"][pos][shown]).all()
    by_index = {r["index"]: r for r in source}
    for k in np.flatnonzero(~negative):  # positives keep their own caption
        np.testing.assert_array_equal(batch["text_targets"][k], by_index[int(batch["index"][k])]["text_ids"])


def test_resume_redraws_identical_batches():
    source = _records()
    it = _it(source)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(8)]  # crosses the epoch boundary (6 batches per epoch)
    resumed = _it(source)
    resumed.set_state(state)
    for a, b in zip(expected, [next(resumed) for _ in range(8)]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_processes_draw_different_masks_on_disjoint_examples():
    source = _records()
    a = next(_it(source, process_index=0, process_count=2))
    b = next(_it(source, process_index=1, process_count=2))
    assert not set(a["index"].tolist()) & set(b["index"].tolist())
    assert not np.array_equal(a["image_inputs"] == 32, b["image_inputs"] == 32)  # masks seeded per shard
    assert (a["text_inputs"] == MASK).any()


def test_caption_dropout_empties_text_and_its_itm_weight():
    import dataclasses
    source = _records()
    config = dataclasses.replace(CONFIG, caption_dropout=0.5)
    batches = [b for b, _ in zip(pretraining_dataset(source, ReaderConfig(batch_size=16, seed=1), config), range(4))]
    dropped = np.concatenate([b["itm_weight"] == 0 for b in batches])
    assert 0.3 < dropped.mean() < 0.7
    for b in batches:
        gone = b["itm_weight"] == 0
        assert (b["text_inputs"][gone] == PAD).all() and (b["text_targets"][gone] == PAD).all()
        assert not b["text_mask"][gone].any()
        modelled = gone & (b["itm_label"] == 1) & (b["mode"] != TEXT_GENERATION)
        assert (b["image_mask"][modelled].sum(1) > 0).all()  # images are still modelled, now without text
        assert (b["text_targets"][~gone] != PAD).any(1).all()
    plain = next(_it(source))
    np.testing.assert_array_equal(plain["itm_weight"], 1.0)


def test_global_batches_do_not_depend_on_the_process_count():
    source = _records()
    one = iter(pretraining_dataset(source, ReaderConfig(batch_size=16, seed=1), CONFIG, num_shards=2))
    halves = [iter(pretraining_dataset(source, ReaderConfig(batch_size=8, seed=1, process_index=p, process_count=2),
                                       CONFIG, num_shards=2)) for p in range(2)]
    for _ in range(3):
        whole = next(one)
        parts = [next(h) for h in halves]
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]), err_msg=key)
    assert len(set(whole["index"].tolist())) == 16


def test_unmasked_examples_show_whole_pairs():
    import dataclasses
    source = _records()
    config = dataclasses.replace(CONFIG, unmasked_fraction=0.5)
    batch = next(iter(pretraining_dataset(source, ReaderConfig(batch_size=32, seed=1), config)))
    whole = ~batch["text_mask"].any(1) & ~batch["image_mask"].any(1) & (batch["itm_label"] == 1)
    assert 0.1 < whole.mean() < 0.6
    np.testing.assert_array_equal(batch["text_inputs"][whole], batch["text_targets"][whole])
    np.testing.assert_array_equal(batch["image_inputs"][whole], batch["image_targets"][whole])
    everything = next(iter(pretraining_dataset(source, ReaderConfig(batch_size=32, seed=1),
                                               dataclasses.replace(CONFIG, unmasked_fraction=1.0))))
    assert not everything["text_mask"].any() and not (everything["image_inputs"] == 32).any()


def test_fewer_negatives_leave_more_positives_and_itm_stays_balanced():
    import dataclasses
    config = dataclasses.replace(CONFIG, negative_fraction=0.25)
    batches = [b for b,
               _ in zip(pretraining_dataset(_records(), ReaderConfig(batch_size=16, seed=1), config), range(6))]
    label = np.concatenate([b["itm_label"] for b in batches])
    weight = np.concatenate([b["itm_weight"] for b in batches])
    assert 0.15 < (label == 0).mean() < 0.35
    np.testing.assert_allclose(weight[label == 1], 0.5 / 0.75)
    np.testing.assert_allclose(weight[label == 0], 0.5 / 0.25)
    # in expectation each class carries half of the ITM loss
    assert abs(weight[label == 1].sum() / weight.sum() - 0.5) < 0.15
