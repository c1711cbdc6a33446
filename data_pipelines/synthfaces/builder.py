"""TFDS builder that writes SynthFaces as ArrayRecord shards (readable without TensorFlow).

    python -m data_pipelines.synthfaces.builder --num 2000 --image-size 64 --out DIR

Train and test splits hold disjoint example indices, so test faces are never seen in training.
Rendering fans out over local processes; the written examples depend only on (seed, index).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import tempfile
from collections.abc import Iterator

import tensorflow_datasets as tfds

from data_pipelines import schema
from data_pipelines.errors import OptionError
from data_pipelines.parallel import ordered_map
from data_pipelines.synthfaces.attributes import ATTRIBUTES, EXPRESSIONS, HAIR_COLOURS
from data_pipelines.synthfaces.captions import CaptionConfig
from data_pipelines.synthfaces.generate import make_example

_CHUNK = 64


@dataclasses.dataclass
class SynthFacesConfig(tfds.core.BuilderConfig):
    num_train: int = 2000
    num_test: int = 100
    image_size: int = 64
    seed: int = 0
    caption: CaptionConfig = dataclasses.field(default_factory=CaptionConfig)
    workers: int = 0  # 0: one per local core

    @classmethod
    def create(cls, num_train: int, num_test: int, image_size: int, seed: int,
               caption: CaptionConfig = CaptionConfig(), workers: int = 0) -> SynthFacesConfig:
        if num_train < 1 or num_test < 0:
            raise OptionError(f"SynthFaces needs num_train >= 1 and num_test >= 0, got {num_train}, {num_test}")
        if image_size < 16:
            raise OptionError(f"SynthFaces renders at >= 16 pixels, got --image-size {image_size}")
        caption.validate()
        name = (f"px{image_size}_n{num_train}_t{num_test}_seed{seed}"
                f"_noise{caption.noise_rate:g}_false{caption.false_rate:g}")
        return cls(name=name, num_train=num_train, num_test=num_test, image_size=image_size,
                   seed=seed, caption=caption, workers=workers)


class SynthFaces(tfds.core.GeneratorBasedBuilder):
    """Procedural faces with weakly correlated alt-text captions."""

    VERSION = tfds.core.Version("1.0.0")
    # Registered for TFDS's catalogue only; `build` always passes a config named after its sizes.
    BUILDER_CONFIGS = [SynthFacesConfig(name="default")]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=schema.features(cfg.image_size, len(ATTRIBUTES)),
            metadata=tfds.core.MetadataDict(
                attribute_names=list(ATTRIBUTES), hair_colour_names=list(HAIR_COLOURS),
                expression_names=list(EXPRESSIONS), seed=cfg.seed,
                caption_noise_rate=cfg.caption.noise_rate, caption_false_rate=cfg.caption.false_rate),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        splits = {"train": self._generate_examples(0, cfg.num_train)}
        if cfg.num_test:
            splits["test"] = self._generate_examples(cfg.num_train, cfg.num_train + cfg.num_test)
        return splits

    def _generate_examples(self, start: int, stop: int) -> Iterator[tuple[int, dict]]:
        cfg = self.builder_config
        make = functools.partial(make_example, cfg.seed, image_size=cfg.image_size, caption_config=cfg.caption)
        indices = range(start, stop)
        yield from zip(indices, ordered_map(make, indices, workers=cfg.workers, chunksize=_CHUNK, min_items=2 * _CHUNK))


def build(out_dir: str, *, num: int, image_size: int, seed: int = 0, num_test: int | None = None,
          caption: CaptionConfig = CaptionConfig(), workers: int = 0, num_shards: int | None = None) -> str:
    """Writes SynthFaces under `out_dir`; returns the dataset directory (the one to read)."""
    num_test = max(1, num // 20) if num_test is None else num_test
    cfg = SynthFacesConfig.create(num, num_test, image_size, seed, caption, workers)
    builder = SynthFaces(config=cfg, data_dir=out_dir, file_format="array_record")
    shards = num_shards or max(1, math.ceil(num / 1024))
    with tempfile.TemporaryDirectory() as downloads:  # nothing is downloaded; keep out_dir clean
        builder.download_and_prepare(
            download_dir=downloads,
            download_config=tfds.download.DownloadConfig(num_shards=shards))
    return os.fspath(builder.data_path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num", type=int, required=True, help="training examples")
    p.add_argument("--num-test", type=int, default=None, help="held-out examples (default num/20)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output root; the dataset lands in a subfolder")
    p.add_argument("--noise-rate", type=float, default=CaptionConfig.noise_rate)
    p.add_argument("--false-rate", type=float, default=CaptionConfig.false_rate)
    p.add_argument("--workers", type=int, default=0, help="render processes (0: one per core)")
    p.add_argument("--shards", type=int, default=None, help="ArrayRecord shards per split")


def run(args: argparse.Namespace) -> None:
    path = build(args.out, num=args.num, image_size=args.image_size, seed=args.seed,
                 num_test=args.num_test, workers=args.workers, num_shards=args.shards,
                 caption=CaptionConfig(noise_rate=args.noise_rate, false_rate=args.false_rate))
    print(f"SynthFaces written to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
