"""grain reader: exact resume from iterator state, per-process sharding, seeded global shuffle."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from data_pipelines.pipeline import ReaderConfig, decode_jpeg, image_text_dataset
from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.generate import make_example


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["image"], b["image"])
        assert list(a["caption"]) == list(b["caption"])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_restored_iterator_yields_the_batches_that_followed(synth_dir, workers):
    source = ShardSource(synth_dir, "train")
    config = ReaderConfig(batch_size=8, seed=1, worker_count=workers)
    it = iter(image_text_dataset(source, config))
    _take(it, 5)
    state = it.get_state()
    expected = _take(it, 15)  # crosses the 12-batch epoch boundary: reshuffled second epoch
    fresh = iter(image_text_dataset(source, config))
    fresh.set_state(state)
    _same(expected, _take(fresh, 15))
    # a wrong restore would be caught: the stream from the start differs
    with pytest.raises(AssertionError):
        _same(expected, _take(iter(image_text_dataset(source, config)), 15))
    for i in (it, fresh):
        if hasattr(i, "close"):
            i.close()


@pytest.mark.slow
def test_workers_run_in_a_program_that_never_parsed_absl_flags(synth_dir, tmp_path):
    # the `gptface` CLI parses its config with flag values of its own, so grain's flags stay unparsed
    script = tmp_path / "read.py"
    script.write_text(textwrap.dedent(f"""
        from absl import flags
        from data_pipelines.pipeline import ReaderConfig, image_text_dataset
        from data_pipelines.shards import ShardSource
        if __name__ == "__main__":
            assert not flags.FLAGS.is_parsed()
            source = ShardSource({synth_dir!r}, "train")
            it = iter(image_text_dataset(source, ReaderConfig(batch_size=4, worker_count=1)))
            print("batch", next(it)["image"].shape)
            it.close()
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "batch (4, 64, 64, 3)" in proc.stdout


def test_batches_hold_decoded_faces_and_labels(synth_dir):
    source = ShardSource(synth_dir, "train")
    batch = next(iter(image_text_dataset(source, ReaderConfig(batch_size=4, seed=0))))
    assert batch["image"].shape == (4, 64, 64, 3) and batch["image"].dtype == np.uint8
    assert batch["attributes"].shape == (4, 16)
    for k in range(4):
        want = make_example(3, int(batch["index"][k]), 64)
        np.testing.assert_array_equal(batch["image"][k], decode_jpeg(want["image"]))
        assert batch["caption"][k] == want["caption"]


def _epoch_indices(source, **kw):
    config = ReaderConfig(batch_size=1, num_epochs=1, drop_remainder=False, **kw)
    return [int(b["index"][0]) for b in image_text_dataset(source, config)]


def test_processes_read_disjoint_slices_covering_the_epoch(synth_dir):
    source = ShardSource(synth_dir, "train")
    parts = [_epoch_indices(source, seed=4, process_index=p, process_count=3) for p in range(3)]
    flat = [i for part in parts for i in part]
    assert len(flat) == len(set(flat)) == 96
    assert {len(p) for p in parts} == {32}


def test_shuffle_is_global_and_seeded(synth_dir):
    source = ShardSource(synth_dir, "train")
    a, b, c = (_epoch_indices(source, seed=s) for s in (0, 0, 1))
    assert a == b and a != c
    assert sorted(a) == list(range(96))
    stored = [int(source[p]["index"]) for p in range(len(source))]  # on-disk order
    assert _epoch_indices(source, seed=0, shuffle=False) == stored
    # global, not per shard: the first 48 draws mix records of both 48-record shards
    position = {index: p for p, index in enumerate(stored)}
    from_first_shard = sum(position[i] < 48 for i in a[:48])
    assert 10 < from_first_shard < 38


def test_bad_reader_config_is_rejected(synth_dir):
    source = ShardSource(synth_dir, "train")
    with pytest.raises(ValueError, match="process_index"):
        image_text_dataset(source, ReaderConfig(batch_size=2, process_index=2, process_count=2))
