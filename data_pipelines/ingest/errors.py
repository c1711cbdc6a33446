"""Why a crawled record is dropped. Each reason is a report key; the run goes on."""
from __future__ import annotations

# Reader-level problems.
MISSING_IMAGE = "missing_image"            # caption without an image (tar pair member, table cell, file)
MISSING_CAPTION = "missing_caption"        # image without any caption source
TRUNCATED_ARCHIVE = "truncated_archive"    # tar ends mid-member: the rest of that tar is lost
UNREADABLE_METADATA = "unreadable_metadata"  # a .json sidecar that is not JSON
# Image problems.
EMPTY_FILE = "empty_file"
CORRUPT_IMAGE = "corrupt_image"            # not decodable, or truncated data
IMAGE_TOO_LARGE = "image_too_large"        # over the pixel guard and not reducible while decoding
IMAGE_TOO_SMALL = "image_too_small"
# Face problems.
NO_FACE = "no_face"
TOO_MANY_FACES = "too_many_faces"
FACE_TOO_SMALL = "face_too_small"
TOO_BLURRY = "too_blurry"
DUPLICATE = "duplicate"                    # perceptual hash within the threshold of a kept image
# Caption problems.
CAPTION_NOT_UTF8 = "caption_not_utf8"
EMPTY_CAPTION = "empty_caption"
CAPTION_TOO_SHORT = "caption_too_short"


class DropRecord(Exception):
    """Raised inside the per-record pipeline; caught, counted under `reason`, and skipped."""

    def __init__(self, reason: str, detail: str = "", faces: int = -1):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.faces = faces  # faces found before the drop (-1: detection never ran)
