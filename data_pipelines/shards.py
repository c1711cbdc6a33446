"""Opening written datasets: find the dataset folder, verify its shards, read records by index.

Any dataset written by this project's TFDS builders (SynthFaces, ingestion, benchmarks) opens here.
Shards are checked against the record counts in dataset_info.json before reading, so a truncated,
empty or missing shard fails at once with an error that names the file; a record that fails its
checksum later (a corrupt shard) names the file and record too.
"""
from __future__ import annotations

import bisect
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module

from data_pipelines.errors import DataError


class ShardError(DataError):
    """A dataset folder or shard that cannot be read as written."""


def find_dataset_dir(root: str | os.PathLike) -> Path:
    """The one dataset folder (holding dataset_info.json) at or under `root`."""
    root = Path(root)
    if not root.exists():
        raise ShardError(f"{root}: no such dataset folder (write one with `gptface data synth --out {root}`)")
    if (root / "dataset_info.json").is_file():
        return root
    found = sorted(p.parent for p in root.rglob("dataset_info.json") if "incomplete" not in str(p))
    if not found:
        raise ShardError(f"{root}: no dataset_info.json found under it; is this a dataset written by "
                         "`gptface data synth` or `gptface data ingest`?")
    if len(found) > 1:
        raise ShardError(f"{root}: holds {len(found)} datasets; pass one of: " + ", ".join(map(str, found)))
    return found[0]


class ShardSource:
    """Random access to one split's records, as dicts with the image left as encoded bytes.

    Pickles as its path only (grain worker processes reopen it), and wraps every read error with
    the shard file and record it came from.
    """

    def __init__(self, dataset_dir: str | os.PathLike, split: str = "train", verify: bool = True):
        self.dataset_dir = find_dataset_dir(dataset_dir)
        self.split = split
        builder = tfds.builder_from_directory(os.fspath(self.dataset_dir))
        if split not in builder.info.splits:
            raise ShardError(f"{self.dataset_dir}: no split {split!r}; it has {sorted(builder.info.splits)}")
        info = builder.info.splits[split]
        self.splits = tuple(sorted(builder.info.splits))
        self.files = [self.dataset_dir / f for f in info.filenames]
        self.shard_lengths = [int(n) for n in info.shard_lengths]
        self._starts = np.cumsum([0] + self.shard_lengths[:-1]).tolist()
        self.metadata = dict(builder.info.metadata or {})
        has_image = "image" in builder.info.features
        self.image_shape = tuple(builder.info.features["image"].shape) if has_image else None
        if verify:
            self.verify()
        # Images stay encoded bytes: decoding is the pipeline's job (pre-tokenized sets have none).
        decoders = {"image": tfds.decode.SkipDecoding()} if has_image else None
        self._source = builder.as_data_source(split=split, decoders=decoders)

    def verify(self) -> None:
        """Checks every shard exists and holds the records dataset_info.json promises."""
        for path, expected in zip(self.files, self.shard_lengths):
            if not path.is_file():
                raise ShardError(f"{path}: shard file is missing ({expected} records expected)")
            try:
                reader = array_record_module.ArrayRecordReader(os.fspath(path), "readahead_buffer_size:0")
                found = reader.num_records()
                reader.close()
            except RuntimeError as e:
                raise ShardError(f"{path}: unreadable ArrayRecord shard: {e}") from e
            if found != expected:
                raise ShardError(f"{path}: shard is truncated or corrupt: holds {found} records, "
                                 f"dataset_info.json expects {expected}")

    def __len__(self) -> int:
        return sum(self.shard_lengths)

    def locate(self, index: int) -> tuple[Path, int]:
        shard = bisect.bisect_right(self._starts, index) - 1
        return self.files[shard], index - self._starts[shard]

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        try:
            return self._source[index]
        except Exception as e:  # array_record raises RuntimeError on checksum failures
            path, local = self.locate(index)
            raise ShardError(f"{path}: record {local} cannot be read: {e}") from e

    def __getstate__(self):
        return {"dataset_dir": self.dataset_dir, "split": self.split}

    def __setstate__(self, state):
        self.__init__(state["dataset_dir"], state["split"], verify=False)

    def __repr__(self) -> str:
        return f"ShardSource({self.dataset_dir}, split={self.split!r}, records={len(self)})"


def label_names(source: ShardSource) -> dict[str, list[str]]:
    """Attribute / class names stored with the dataset."""
    return {k: list(v) for k, v in source.metadata.items() if k.endswith("_names")}
