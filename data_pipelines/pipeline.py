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
from absl import flags

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
    return _iterate(ds, config)


def _iterate(ds: grain.MapDataset, reader: ReaderConfig) -> grain.IterDataset:
    """The dataset as an iterator, its maps run in `reader.worker_count` processes when > 0."""
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=reader.read_threads, prefetch_buffer_size=4))
    if reader.worker_count == 0:
        return it
    # grain's workers read its absl flags, and a program that never parsed absl's flags (the `gptface`
    # CLI parses its config with flag values of its own) fails in the first worker: take the defaults
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return it.mp_prefetch(grain.MultiprocessingOptions(num_workers=reader.worker_count,
                                                       per_worker_buffer_size=reader.worker_buffer_size))


# --- pre-training batches over pre-tokenized shards ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainBatchConfig:
    """What turns pre-tokenized examples into a MILM + ITM batch."""

    image_mask_id: int                  # the model's image [MASK] id (= codebook size)
    text_vocab_size: int
    grid: int
    masking: object = None              # a data_pipelines.masking.MaskingConfig; None: its defaults
    negative_fraction: float = 0.5
    hard_fraction: float = 0.0
    caption_dropout: float = 0.0        # examples whose text is emptied (classifier-free guidance)
    unmasked_fraction: float = 0.0      # examples left uncorrupted: they teach ITM on whole inputs only
    seed: int = 0
    shard: int = 0                      # the data shard: shards draw different masks (set by pretraining_dataset)


class DecodePretokenized(grain.transforms.Map):
    def map(self, record: dict) -> dict:
        return {"image_codes": np.asarray(record["image_codes"], np.int32),
                "text_ids": np.asarray(record["text_ids"], np.int32),
                "text_len": np.int32(record["text_len"]),
                "index": np.int64(record["index"])}


class PretrainingBatch(grain.transforms.MapWithIndex):
    """Batch n -> ITM pairs + span masks drawn from (seed, n, shard): a resumed run redraws them.

    Caption dropout empties an example's text (all PAD) and leaves its image masking as drawn, so
    the model also learns p(image tokens | no text) for classifier-free guidance. A dropped
    example has no ITM label to learn: its `itm_weight` is 0. Fewer negatives leave more positives
    for masked modelling (which scores positives only); ITM weights keep the two classes balanced.
    """

    def __init__(self, config: PretrainBatchConfig):
        self.config = config

    def map_with_index(self, step: int, batch: dict) -> dict:
        from data_pipelines.itm import make_pairs
        from data_pipelines.masking import MaskingConfig, mask_batch
        from data_pipelines.text_tokenizer import MASK, NUM_SPECIAL, PAD
        c = self.config
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, int(step), c.shard, 0x69746d]))
        pairs = make_pairs(batch["text_ids"], batch["text_len"], rng, c.negative_fraction, c.hard_fraction)
        masks = mask_batch(pairs["text_ids"], pairs["text_lengths"], c.grid, c.masking or MaskingConfig(),
                           seed=c.seed, step=step, shard=c.shard, vocab_size=c.text_vocab_size, mask_id=MASK,
                           num_special=NUM_SPECIAL)
        # Every example is corrupted alike (else "has [MASK] tokens" would give the ITM label away),
        # but masked modelling is scored on positives only: the loss masks exclude negatives.
        whole = (rng.random(len(pairs["itm_label"])) < c.unmasked_fraction)[:, None]
        if whole.any():
            masks = {**masks, "text_inputs": np.where(whole, pairs["text_ids"], masks["text_inputs"]),
                     "text_mask": masks["text_mask"] & ~whole, "image_mask": masks["image_mask"] & ~whole}
        positive = pairs["itm_label"].astype(bool)[:, None]
        dropped = (rng.random(len(positive)) < c.caption_dropout)[:, None]
        # Class-balanced ITM: whatever the negative fraction, positives and negatives weigh half each.
        balance = np.where(positive[:, 0], 0.5 / max(1.0 - c.negative_fraction, 1e-6),
                           0.5 / max(c.negative_fraction, 1e-6))
        return {
            "text_inputs": np.where(dropped, PAD, masks["text_inputs"]).astype(np.int32),
            "image_inputs": np.where(masks["image_mask"], c.image_mask_id, batch["image_codes"]).astype(np.int32),
            "text_targets": np.where(dropped, PAD, pairs["text_ids"]).astype(np.int32),
            "image_targets": batch["image_codes"],
            "caption_ids": batch["text_ids"].astype(np.int32),   # each image's own clean caption (ITC)
            "text_mask": masks["text_mask"] & positive & ~dropped, "image_mask": masks["image_mask"] & positive,
            "itm_label": pairs["itm_label"], "itm_weight": np.where(dropped[:, 0], 0.0, balance).astype(np.float32),
            "mode": masks["mode"], "index": batch["index"],
        }


class _ConcatShardBatches(grain.MapDataset):
    """Batch i of this process = batch i of each of its data shards, concatenated in shard order."""

    def __init__(self, shards: list[grain.MapDataset]):
        super().__init__(shards)
        self._shards = shards

    def __len__(self) -> int:
        return min(len(s) for s in self._shards)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        parts = [s[index] for s in self._shards]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def __str__(self) -> str:
        return f"ConcatShardBatches({len(self._shards)} shards)"


def pretraining_dataset(source: ShardSource, reader: ReaderConfig, batch: PretrainBatchConfig,
                        num_shards: int = 0) -> grain.IterDataset:
    """Pre-tokenized shards -> shuffled, process-sliced MILM + ITM batches (resumable).

    The data is cut into `num_shards` logical shards (0: one per process). Each shard reads every
    num_shards-th record of the global order, and draws its own ITM pairs and masks from (seed,
    batch, shard); a process serves a contiguous run of shards. So the global batch depends on
    `num_shards` only, not on how many processes serve it: a 2-process run sees exactly the
    batches of a 1-process run with the same `num_shards`, and a run can resume on another
    process count.
    """
    reader.validate()
    shards = num_shards or reader.process_count
    if shards % reader.process_count or reader.batch_size % (shards // reader.process_count):
        raise OptionError(f"num_shards={shards} must be a multiple of the {reader.process_count} processes, and "
                          f"the process batch {reader.batch_size} a multiple of the shards per process")
    per_process = shards // reader.process_count
    datasets = []
    for shard in range(reader.process_index * per_process, (reader.process_index + 1) * per_process):
        view = dataclasses.replace(reader, process_index=shard, process_count=shards)
        ds = process_records(source, view).map(DecodePretokenized())
        ds = ds.batch(reader.batch_size // per_process, drop_remainder=True)
        datasets.append(ds.map_with_index(PretrainingBatch(dataclasses.replace(batch, shard=shard))))
    ds = datasets[0] if per_process == 1 else _ConcatShardBatches(datasets)
    return _iterate(ds, reader)
