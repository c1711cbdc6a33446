"""TFDS builder writing a downstream benchmark into the shared schema, with its official splits.

    python -m data_pipelines.benchmarks.builder --name celeba --manual-dir ~/datasets/celeba --out DIR

Nothing is downloaded: the files come from the manual dir in the layout each reader documents.
Faces are cut out by the dataset's protocol (see `crop_face`), resized to --image-size and stored
as JPEG. Images listed but absent or undecodable are skipped and counted in benchmark_report.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from data_pipelines import schema
from data_pipelines.benchmarks import affectnet, celeba, lfwa, rafdb
from data_pipelines.benchmarks.layout import Benchmark, Item
from data_pipelines.errors import OptionError
from data_pipelines.ingest.errors import DropRecord
from data_pipelines.ingest.faces import CropBox, crop, crop_box, decode_image
from data_pipelines.parallel import ordered_map
from data_pipelines.synthfaces.generate import encode_jpeg

READERS = {"celeba": celeba.read, "lfwa": lfwa.read, "rafdb": rafdb.read, "affectnet": affectnet.read}
REPORT_NAME = "benchmark_report.json"


def layouts_help() -> str:
    """This module's description followed by every dataset's expected manual-dir layout."""
    return "\n".join([__doc__] + [m.__doc__ for m in (celeba, lfwa, rafdb, affectnet)])


def crop_face(rgb: np.ndarray, item: Item, protocol: str, size: int) -> np.ndarray:
    """The evaluation crop of each dataset, written down so numbers are reproducible.

    celeba_aligned: the centred square of the aligned 178x218 image (side = width).
    lfw_deepfunneled: the centred square of 70% of the shorter side (the face and some hair).
    full: the whole (already aligned, square) image.
    box: the dataset's face box, squared and widened by the ingestion margin (0.5).
    """
    h, w = rgb.shape[:2]
    if protocol == "box" and item.box is not None:
        box = crop_box(item.box, margin=0.5)
    else:
        side = {"celeba_aligned": min(h, w), "lfw_deepfunneled": int(0.7 * min(h, w))}.get(protocol, min(h, w))
        box = CropBox((w - side) // 2, (h - side) // 2, side)
    return crop(rgb, box, size)


def _encode(item: Item, protocol: str, size: int) -> tuple[Item, bytes | None, str]:
    try:
        with open(item.path, "rb") as f:
            rgb = decode_image(f.read())
        return item, encode_jpeg(crop_face(rgb, item, protocol, size)), ""
    except DropRecord as e:
        return item, None, e.reason
    except OSError as e:
        return item, None, f"unreadable: {e}"


@dataclasses.dataclass
class FaceBenchmarkConfig(tfds.core.BuilderConfig):
    benchmark: str = ""
    manual_dir_path: str = ""
    image_size: int = 64
    classes: int = 8
    workers: int = 0
    report_path: str = ""


class FaceBenchmark(tfds.core.GeneratorBasedBuilder):
    """A face benchmark in the shared schema (attributes and/or expression labels)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [FaceBenchmarkConfig(name="default")]

    def _read(self) -> Benchmark:
        if not hasattr(self, "_benchmark"):
            cfg = self.builder_config
            kwargs = {"classes": cfg.classes} if cfg.benchmark == "affectnet" else {}
            self._benchmark = READERS[cfg.benchmark](cfg.manual_dir_path, **kwargs)
        return self._benchmark

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        bench = self._read() if cfg.benchmark else Benchmark("", (), (), {}, "full")
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=schema.features(cfg.image_size, len(bench.attribute_names)),
            metadata=tfds.core.MetadataDict(
                attribute_names=list(bench.attribute_names), expression_names=list(bench.expression_names),
                hair_colour_names=[], benchmark=cfg.benchmark, crop_protocol=bench.crop))

    def _split_generators(self, dl_manager):
        self._report = {"missing_images": self._read().missing_images, "splits": {}}
        return {split: self._generate_examples(split, items) for split, items in self._read().splits.items() if items}

    def _generate_examples(self, split: str, items: list[Item]):
        cfg, bench = self.builder_config, self._read()
        encode = functools.partial(_encode, protocol=bench.crop, size=cfg.image_size)
        counts = {"listed": len(items), "written": 0, "skipped": {}}
        results = ordered_map(encode, items, workers=cfg.workers, chunksize=32, min_items=64)
        for index, (item, jpeg, problem) in enumerate(tqdm(results, total=len(items), desc=f"{bench.name} {split}",
                                                           mininterval=2, file=sys.stderr)):
            if jpeg is None:
                counts["skipped"][problem] = counts["skipped"].get(problem, 0) + 1
                continue
            counts["written"] += 1
            yield item.key, {
                "image": jpeg, "caption": "", "attributes": item.attributes.astype(np.int8),
                "hair_colour": -1, "expression": item.expression, "index": index,
                "source": f"{bench.name}/{item.key}", "caption_true": -1, "caption_false": -1,
                "caption_noise": -1,
            }
        self._report["splits"][split] = counts
        with open(cfg.report_path, "w") as f:
            json.dump(self._report, f, indent=1)


def build(name: str, manual_dir: str, out_dir: str, *, image_size: int = 64, classes: int = 8,
          workers: int = 0) -> tuple[str, dict]:
    """Writes the benchmark under `out_dir`; returns (dataset folder, report)."""
    if name not in READERS:
        raise OptionError(f"unknown benchmark {name!r}; choose one of {sorted(READERS)}")
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, REPORT_NAME)
        config_name = f"{name}_px{image_size}" + (f"_{classes}class" if name == "affectnet" else "")
        cfg = FaceBenchmarkConfig(name=config_name, benchmark=name, manual_dir_path=manual_dir,
                                  image_size=image_size, classes=classes, workers=workers, report_path=report_path)
        builder = FaceBenchmark(config=cfg, data_dir=out_dir, file_format="array_record")
        builder.download_and_prepare(download_dir=tmp)
        data_path = os.fspath(builder.data_path)
        if os.path.exists(report_path):
            with open(report_path) as f:
                report = json.load(f)
            with open(os.path.join(data_path, REPORT_NAME), "w") as f:
                json.dump(report, f, indent=1)
    with open(os.path.join(data_path, REPORT_NAME)) as f:
        return data_path, json.load(f)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, choices=sorted(READERS))
    p.add_argument("--manual-dir", required=True, help="where you put the official files")
    p.add_argument("--out", required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=8, choices=(7, 8), help="AffectNet: 7 or 8 expressions")
    p.add_argument("--workers", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    path, report = build(args.name, args.manual_dir, args.out, image_size=args.image_size,
                         classes=args.classes, workers=args.workers)
    print(json.dumps(report, indent=1))
    print(f"{args.name} written to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
