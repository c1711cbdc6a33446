"""Crawl-like fixtures built from real photos that registry packages ship (no downloads).

Faces: scikit-image's astronaut and LFW subset (upscaled), matplotlib's Grace Hopper.
Non-faces: scikit-image's coffee, cat, rocket. Plus every kind of broken input a crawl contains.
"""
from __future__ import annotations

import io
import json
import os
import tarfile

import cv2
import matplotlib
import numpy as np
from PIL import Image
from skimage import data as skdata


def jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def lfw_faces_and_non_faces(size: int = 128) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The 100 faces and 100 non-faces of skimage's LFW subset, upscaled from 25 px to RGB `size`."""
    x = (skdata.lfw_subset() * 255).astype(np.uint8)
    up = [cv2.cvtColor(cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2RGB) for g in x]
    return up[:100], up[100:]


def astronaut() -> np.ndarray:
    return skdata.astronaut()


def grace_hopper() -> np.ndarray:
    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    return np.asarray(Image.open(path).convert("RGB"))


def non_faces() -> list[np.ndarray]:
    return [skdata.coffee(), skdata.chelsea(), skdata.rocket()]


def cmyk_jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def rgba_png(rgb: np.ndarray) -> bytes:
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, : rgb.shape[1] // 8] = 0  # a transparent strip
    return png(np.dstack([rgb, alpha]))


def exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    """Pixels stored rotated by 90 degrees, with EXIF orientation 6 telling viewers to turn them back."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


def huge_jpeg(rgb: np.ndarray, side: int = 12000) -> bytes:
    big = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def write_tar(path: str, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def messy_crawl_members(include_huge: bool = True) -> tuple[list[tuple[str, bytes]], dict[str, str], dict[str, str]]:
    """WebDataset members of a crawl with good and broken pairs.

    Returns (members, kept: key -> caption after cleaning, dropped: key -> expected reason).
    """
    faces, _ = lfw_faces_and_non_faces()
    astro, hopper = astronaut(), grace_hopper()
    good_jpeg = jpeg(astro)
    members: list[tuple[str, bytes]] = []
    kept: dict[str, str] = {}
    dropped: dict[str, str] = {}

    def add(key, image=None, image_ext="jpg", caption=None, caption_ext="txt", keep=None, reason=None):
        if image is not None:
            members.append((f"{key}.{image_ext}", image))
        if caption is not None:
            payload = caption if isinstance(caption, bytes) else caption.encode("utf-8")
            members.append((f"{key}.{caption_ext}", payload))
        if keep is not None:
            kept[key] = keep
        if reason is not None:
            dropped[key] = reason

    add("000001", good_jpeg, caption="An astronaut in her <b>orange</b> suit  https://nasa.example/x.jpg",
        keep="An astronaut in her orange suit")
    add("000002", jpeg(hopper), caption=json.dumps({"caption": "Rear Admiral Grace Hopper &amp; her uniform",
                                                     "url": "http://example.org"}), caption_ext="json",
        keep="Rear Admiral Grace Hopper & her uniform")
    for i in range(3):
        add(f"00001{i}", jpeg(faces[i]), caption=f"Portrait n°{i} — café au lait",
            keep=f"Portrait n°{i} — café au lait")
    add("000020", cmyk_jpeg(faces[6]), caption="CMYK print scan", keep="CMYK print scan")
    add("000021", rgba_png(faces[7]), image_ext="png", caption="logo-like PNG with alpha",
        keep="logo-like PNG with alpha")
    add("000022", exif_rotated_jpeg(faces[8]), caption="phone photo, rotated by EXIF",
        keep="phone photo, rotated by EXIF")
    if include_huge:
        add("000023", huge_jpeg(faces[9]), caption="a 12000 x 12000 scan", keep="a 12000 x 12000 scan")
    add("000030", good_jpeg[: len(good_jpeg) // 2], caption="truncated download", reason="corrupt_image")
    add("000031", b"", caption="zero-byte file", reason="empty_file")
    add("000032", jpeg(faces[3]), caption=b"caf\xe9 latin-1 bytes \xff", reason="caption_not_utf8")
    add("000033", jpeg(faces[4]), caption="   ", reason="empty_caption")
    add("000034", jpeg(faces[5]), reason="missing_caption")
    add("000035", jpeg(skdata.coffee()), caption="my morning coffee", reason="no_face")
    add("000036", caption="a caption whose image never downloaded", reason="missing_image")
    add("000037", good_jpeg, caption="the astronaut photo again, re-uploaded", reason="duplicate")
    return members, kept, dropped
