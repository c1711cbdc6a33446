"""One raw crawled pair -> a kept record of the shared schema, or the reason it was dropped.

Pure and picklable, so it runs unchanged in local worker processes and in Beam workers.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.errors import OptionError
from data_pipelines.ingest.captions import CaptionOptions, clean_caption
from data_pipelines.ingest.dedup import phash
from data_pipelines.ingest.errors import DropRecord
from data_pipelines.ingest.faces import FaceOptions, decode_image, face_crop
from data_pipelines.ingest.readers import RawPair, ReaderOptions, WorkUnit, read_unit
from data_pipelines.synthfaces.generate import encode_jpeg


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    reader: ReaderOptions
    faces: FaceOptions = FaceOptions()
    captions: CaptionOptions = CaptionOptions()
    dedup_threshold: int = 4      # Hamming bits; -1 disables de-duplication
    jpeg_quality: int = 95

    def validate(self) -> None:
        self.reader.validate()
        self.faces.validate()
        self.captions.validate()
        if not -1 <= self.dedup_threshold < 32:
            raise OptionError(f"dedup_threshold must be in [-1, 32), got {self.dedup_threshold}")


@dataclasses.dataclass
class Outcome:
    key: str
    record: dict | None          # schema record (index filled in by the writer) when kept
    reason: str | None           # drop reason when not kept
    detail: str = ""
    notes: tuple[str, ...] = ()  # fixes applied on the way (alpha flattened, reduced decode, ...)
    num_faces: int = -1          # -1: never got as far as detection
    caption_words: int = -1
    phash: int = 0


def process_pair(pair: RawPair, options: IngestOptions) -> Outcome:
    if pair.problem:
        return Outcome(pair.key, None, pair.problem, pair.detail)
    notes: set[str] = set()
    words = -1
    try:
        caption = clean_caption(pair.caption, options.captions)
        words = len(caption.split())
        rgb = decode_image(pair.image, options.faces.max_pixels, notes)
        crop = face_crop(rgb, options.faces)
    except DropRecord as e:
        return Outcome(pair.key, None, e.reason, e.detail, tuple(sorted(notes)), e.faces, words)
    faces = crop.num_faces
    record = {
        "image": encode_jpeg(crop.image, options.jpeg_quality),
        "caption": caption,
        "attributes": np.zeros((0,), np.int8),
        "hair_colour": -1, "expression": -1, "index": -1,
        "source": pair.key,
        "caption_true": -1, "caption_false": -1, "caption_noise": -1,
    }
    return Outcome(pair.key, record, None, "", tuple(sorted(notes)), faces, words, phash(crop.image))


def process_unit(unit: WorkUnit, options: IngestOptions) -> list[Outcome]:
    """All outcomes of one work unit, in reading order (what a worker process returns)."""
    return [process_pair(pair, options) for pair in read_unit(unit, options.reader)]
