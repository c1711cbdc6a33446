"""The one record schema that every source writes and every reader reads.

A record is a face crop with its caption and whatever labels the source knows; unknown labels are
-1 so SynthFaces, crawled shards and benchmark datasets share one layout. What the label indices
mean (attribute names, class names) is stored in the dataset's metadata, not in each record.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

UNKNOWN = -1
FIELDS = ("image", "caption", "attributes", "hair_colour", "expression", "index", "source",
          "caption_true", "caption_false", "caption_noise")


def features(image_size: int, num_attributes: int) -> tfds.features.FeaturesDict:
    """TFDS features of a record. Images are stored as the JPEG bytes the writer encoded."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(image_size, image_size, 3), encoding_format="jpeg"),
        "caption": tfds.features.Text(),
        "attributes": tfds.features.Tensor(shape=(num_attributes,), dtype=np.int8),
        "hair_colour": tfds.features.Scalar(dtype=np.int8),
        "expression": tfds.features.Scalar(dtype=np.int8),
        "index": tfds.features.Scalar(dtype=np.int64),
        "source": tfds.features.Text(),
        # Caption quality where the source knows it (SynthFaces): number of true and false facts
        # the caption states, and whether it is unrelated noise.
        "caption_true": tfds.features.Scalar(dtype=np.int8),
        "caption_false": tfds.features.Scalar(dtype=np.int8),
        "caption_noise": tfds.features.Scalar(dtype=np.int8),
    })
