"""grain input pipeline over written face-text shards.

    source -> global shuffle (seed, reshuffled each epoch) -> repeat -> this process's slice
           -> decode JPEG -> batch -> to_iter_dataset -> multiprocessing prefetch

The iterator's `get_state()` / `set_state()` round-trip exactly: a restored iterator yields the
same batches the original would have yielded after the save. Later stages (tokenization, span
masking, ITM pairing) slot in as further maps before `batch`.
"""
from __future__ import annotations

import dataclasses

import cv2
import grain
import numpy as np

from data_pipelines.errors import OptionError
from data_pipelines.shards import ShardError, ShardSource


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None     # None: repeat forever
    process_index: int = 0            # jax.process_index() in multi-host runs
    process_count: int = 1
    worker_count: int = 0             # grain worker processes; 0 decodes in this process
    worker_buffer_size: int = 2
    read_threads: int = 2
    drop_remainder: bool = True

    def validate(self) -> None:
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.process_index < self.process_count:
            raise OptionError(f"process_index {self.process_index} not in [0, {self.process_count})")
        if self.worker_count < 0:
            raise OptionError(f"worker_count must be >= 0, got {self.worker_count}")


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3)."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OptionError(f"undecodable image ({len(data)} bytes)")
    return np.ascontiguousarray(bgr[..., ::-1])


class DecodeRecord(grain.transforms.Map):
    """Stored record -> numpy example: image pixels, caption text, integer labels."""

    def map(self, record: dict) -> dict:
        caption = record["caption"]
        try:
            image = decode_jpeg(record["image"])
        except ValueError as e:
            raise ShardError(f"record with index {int(record['index'])}: {e}") from e
        return {
            "image": image,
            "caption": caption.decode("utf-8") if isinstance(caption, bytes) else str(caption),
            "attributes": np.asarray(record["attributes"], np.int8),
            "hair_colour": np.int8(record["hair_colour"]),
            "expression": np.int8(record["expression"]),
            "index": np.int64(record["index"]),
        }


def process_records(source, config: ReaderConfig) -> grain.MapDataset:
    """This process's view of the globally shuffled, repeated record order."""
    ds = grain.MapDataset.source(source)
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)  # before repeat: each epoch gets a fresh permutation
    ds = ds.repeat(config.num_epochs)
    return ds[config.process_index::config.process_count]


def image_text_dataset(source: ShardSource, config: ReaderConfig) -> grain.IterDataset:
    """Batches of decoded face-text examples for this process."""
    config.validate()
    ds = process_records(source, config).map(DecodeRecord())
    ds = ds.batch(config.batch_size, drop_remainder=config.drop_remainder)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads, prefetch_buffer_size=4))
    if config.worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size))
    return it
