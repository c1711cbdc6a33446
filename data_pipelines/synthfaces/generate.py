"""SynthFaces examples: (seed, index) -> one record of the shared schema, deterministically."""
from __future__ import annotations

import cv2
import numpy as np

from data_pipelines.synthfaces.attributes import rng_for, sample_face
from data_pipelines.synthfaces.captions import CaptionConfig, make_caption
from data_pipelines.synthfaces.render import render

JPEG_QUALITY = 95


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


def make_example(seed: int, index: int, image_size: int,
                 caption_config: CaptionConfig = CaptionConfig()) -> dict:
    """One SynthFaces record: JPEG bytes, caption, labels and the caption's ground truth."""
    face = sample_face(seed, index)
    caption = make_caption(face, rng_for(seed, index, 2), caption_config)
    return {
        "image": encode_jpeg(render(face, image_size)),
        "caption": caption.text,
        "attributes": face.attribute_vector(),
        "hair_colour": face.hair_colour,
        "expression": face.expression,
        "index": index,
        "source": "synthfaces",
        "caption_true": len(caption.true_facts),
        "caption_false": len(caption.false_facts),
        "caption_noise": int(caption.is_noise),
    }
