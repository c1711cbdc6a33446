"""ArrayRecord shards written through TFDS: exact round trip, and damaged shards named in errors."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import schema
from data_pipelines.shards import ShardError, ShardSource, find_dataset_dir
from data_pipelines.synthfaces.attributes import ATTRIBUTES
from data_pipelines.synthfaces.generate import make_example


@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip_preserves_every_field(synth_dir, split):
    source = ShardSource(synth_dir, split)
    assert len(source) == {"train": 96, "test": 16}[split]
    seen = set()
    for i in range(len(source)):
        record = source[i]
        assert set(record) == set(schema.FIELDS)
        expected = make_example(3, int(record["index"]), 64)
        for field in schema.FIELDS:
            got, want = record[field], expected[field]
            if isinstance(got, bytes) and isinstance(want, str):
                got = got.decode("utf-8")
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=field)
        seen.add(int(record["index"]))
    # train holds indices [0, 96), test the next 16: disjoint faces
    assert seen == (set(range(96)) if split == "train" else set(range(96, 112)))


def test_tfds_data_source_reads_without_tensorflow(synth_dir):
    path = Path(synth_dir)
    version, config, name = path.name, path.parent.name, path.parent.parent.name
    ds = tfds.data_source(f"{name}/{config}:{version}", data_dir=str(path.parents[2]),
                          decoders={"image": tfds.decode.SkipDecoding()})
    ours = ShardSource(synth_dir, "train")
    assert len(ds["train"]) == len(ours)
    assert ds["train"][5]["image"] == ours[5]["image"]
    assert "tensorflow" not in sys.modules
    assert ours.metadata["attribute_names"] == list(ATTRIBUTES)
    assert len(ours.files) == 2  # the builder honoured the shard count


def _copy(synth_dir, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(synth_dir, dst)
    return dst


def test_truncated_shard_is_named(synth_dir, tmp_path):
    dst = _copy(synth_dir, tmp_path)
    shard = sorted(dst.glob("*train.array_record-00001-*"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=shard.name):
        ShardSource(dst, "train")


def test_empty_and_missing_shards_are_named(synth_dir, tmp_path):
    dst = _copy(synth_dir, tmp_path)
    shard = sorted(dst.glob("*train.array_record-00000-*"))[0]
    shard.write_bytes(b"")
    with pytest.raises(ShardError, match=shard.name):
        ShardSource(dst, "train")
    shard.unlink()
    with pytest.raises(ShardError, match=f"{shard.name}: shard file is missing"):
        ShardSource(dst, "train")


def test_corrupt_shard_is_named_when_read(synth_dir, tmp_path):
    dst = _copy(synth_dir, tmp_path)
    shard = sorted(dst.glob("*train.array_record-00001-*"))[0]
    data = bytearray(shard.read_bytes())
    for i in range(300, 400):  # inside the first chunk's payload
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    source = ShardSource(dst, "train")  # counts still match: damage shows at read time
    first_of_shard = source.shard_lengths[0]
    with pytest.raises(ShardError, match=shard.name):
        for i in range(first_of_shard, len(source)):
            source[i]
    source[0]  # the intact shard still reads


def test_missing_folder_and_split_errors(tmp_path, synth_dir):
    with pytest.raises(ShardError, match="no such dataset folder"):
        find_dataset_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="no dataset_info.json"):
        find_dataset_dir(tmp_path / "empty")
    with pytest.raises(ShardError, match="no split 'validation'"):
        ShardSource(synth_dir, "validation")


def test_found_from_the_output_root(synth_dir):
    root = Path(synth_dir).parents[2]
    assert find_dataset_dir(root) == Path(synth_dir)
