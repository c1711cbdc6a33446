"""Face editing on a pre-trained GPTFace: an edit is which image tokens are masked plus which text is given.

    attribute editing / expression manipulation   region(s) of the aligned face + a caption
    mask removal                                  the occluder region (lower face) + a caption
    inpainting                                    a pixel mask -> token mask (regions.pixel_to_token_mask)

A photo goes through the ingestion face crop (a Haar box, or BlazeFace keypoints with the face aligned
to SynthFaces' eye and mouth positions; or it is taken as already aligned), the masked tokens are
re-decoded with MaskGIT under ITM guidance for every (seed, guidance strength), and the edited crop is
pasted back into the photo through the inverse of the crop's transform, at the photo's resolution:
blended through the edited region's mask with a linear fade at its border, so pixels away from the
edit keep their original values exactly. Everything is computed before anything is written, so a bad
input leaves no partial output.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os

import cv2
import jax
import numpy as np

from data_pipelines.errors import DataError
from data_pipelines.ingest.errors import DropRecord
from data_pipelines.ingest.faces import CropBox, FaceOptions, box_transform, decode_image, face_crop
from gptface_jax.generate import decoding, regions
from gptface_jax.generate.decoding import DecodeConfig


@dataclasses.dataclass(frozen=True)
class Photo:
    original: np.ndarray        # (H, W, 3) uint8, as decoded
    crop: np.ndarray            # (S, S, 3) uint8, the aligned face the model sees
    transform: np.ndarray       # (2, 3): pixels of `original` -> pixels of `crop`

    @classmethod
    def of_crop(cls, crop: np.ndarray) -> Photo:
        """An aligned face on its own: the photo is the crop."""
        return cls(crop, crop, box_transform(CropBox(0, 0, crop.shape[0]), crop.shape[0]))


@dataclasses.dataclass
class EditResult:
    photo: Photo
    token_mask: np.ndarray      # (grid, grid) bool
    text: str
    crops: dict                 # (seed, guidance) -> edited crop (S, S, 3) uint8, original pixels outside the edit
    itm: dict                   # (seed, guidance) -> match log-odds of (text, edited image)
    pasted: dict                # (seed, guidance) -> the whole photo with the edit pasted back


def load_photo(path: str, size: int, aligned: bool = False, detector: str = "haar") -> Photo:
    """Decodes `path`; crops the largest face as ingestion does (`detector` 'blazeface' aligns it by its
    eyes and mouth), or takes the image as aligned."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from e
    return photo_from_bytes(data, size, aligned, detector, name=path)


def photo_from_bytes(data: bytes, size: int, aligned: bool = False, detector: str = "haar",
                     name: str = "the image") -> Photo:
    """`load_photo` on an encoded image's bytes (an upload): the same decode guards, the same crop."""
    try:
        rgb = decode_image(data)
        if aligned:
            h, w = rgb.shape[:2]
            side = min(h, w)
            box = CropBox((w - side) // 2, (h - side) // 2, side)
            square = rgb[box.y:box.y + side, box.x:box.x + side]
            crop = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
            return Photo(rgb, np.ascontiguousarray(crop), box_transform(box, size))
        options = FaceOptions(image_size=size, detector=detector, align=detector == "blazeface")
        options.validate()
        found = face_crop(rgb, options)
    except DropRecord as e:
        hint = " (pass --aligned if the image is already a face crop)" if e.reason == "no_face" else ""
        raise DataError(f"{name}: {e}{hint}") from e
    return Photo(rgb, found.image, found.transform)


def mask_from_bytes(data: bytes, size: int) -> np.ndarray:
    """A painted mask (PNG or JPEG; white, or opaque where it has alpha, = re-draw) resized to the crop."""
    from PIL import Image, UnidentifiedImageError
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"the mask is not an image ({type(e).__name__})") from None
    plane = np.asarray(image.getchannel("A") if "A" in image.getbands() else image.convert("L"))
    return cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA)


def token_mask_for(region_names=(), pixel_mask: np.ndarray | None = None, *, grid: int, size: int) -> np.ndarray:
    """Union of named regions and/or a pixel mask (which must match the crop size) as a token mask."""
    mask = regions.union(region_names, grid)
    if pixel_mask is not None:
        if pixel_mask.shape[:2] != (size, size):
            raise regions.RegionError(f"the mask is {pixel_mask.shape[1]}x{pixel_mask.shape[0]} but the face crop is "
                                      f"{size}x{size}: draw the mask on the aligned crop")
        mask |= regions.pixel_to_token_mask(pixel_mask, grid)
    if not mask.any():
        raise regions.RegionError("the edit masks no token: name a region or draw a larger mask")
    return mask


def edit(pretrained, photo: Photo, token_mask: np.ndarray, text: str, seeds=(0, 1, 2), guidances=(0.0, 2.0),
         config: DecodeConfig = DecodeConfig(), cache: dict | None = None, negative: str | None = None) -> EditResult:
    """Re-decodes the masked tokens of `photo.crop` for `text`, once per (seed, guidance), steered away
    from the `negative` caption where one is given (decoding's negative control). A long-lived caller
    passes `cache` (a dict) so each decoding config compiles once."""
    text_ids = pretrained.text_ids([text])
    negative_ids = None if negative is None else pretrained.text_ids([negative])
    codes = pretrained.image_codes(photo.crop[None])
    mask = np.asarray(token_mask, bool).reshape(1, -1)
    seeds = list(seeds)
    in_crop = Photo.of_crop(photo.crop)  # results keep pixels outside the edit
    crops, itm, pasted = {}, {}, {}
    score = (cache if cache is not None else {}).setdefault(
        "itm_score", jax.jit(lambda p, t, i: decoding.itm_score(pretrained.model, p, t, i)))
    for guidance in guidances:
        decoder = decoding.cached_decoder(cache, pretrained.model, decoding.IMAGE,
                                          dataclasses.replace(config, guidance=float(guidance)))
        # one call per seed, so a seed's result does not depend on which other seeds were asked for
        out = np.concatenate([np.asarray(decoder(pretrained.params, text_ids, codes, mask, jax.random.PRNGKey(s),
                                                 negative_ids)[1]) for s in seeds])
        decoded = pretrained.images(out)
        scores = np.asarray(score(pretrained.params, np.repeat(text_ids, len(seeds), 0), out))
        for k, s in enumerate(seeds):
            crops[(s, guidance)] = paste_back(in_crop, decoded[k], token_mask)
            itm[(s, guidance)] = float(scores[k])
            pasted[(s, guidance)] = paste_back(photo, decoded[k], token_mask)
    return EditResult(photo, np.asarray(token_mask, bool), text, crops, itm, pasted)


def paste_back(photo: Photo, edited_crop: np.ndarray, token_mask: np.ndarray, feather: float = 0.5) -> np.ndarray:
    """`photo.original` with the edited region of the crop blended in, through the crop's inverse transform.

    The region is the token mask carried into the photo; the blend weight is 1 inside it and fades
    linearly to 0 over `feather` token cells outside it, so every pixel farther away keeps its
    original value exactly. Where the photo is finer than the crop, the upscaled edit is sharpened
    towards the detail of the photo around it (`match_sharpness`).
    """
    out = photo.original.copy()
    h, w = out.shape[:2]
    size, grid = edited_crop.shape[0], token_mask.shape[0]
    to_photo = cv2.invertAffineTransform(np.asarray(photo.transform, np.float64))
    cell = size / grid / math.sqrt(abs(np.linalg.det(np.asarray(photo.transform)[:, :2])))  # a cell in photo px
    cells = cv2.resize(token_mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    region = cv2.warpAffine(cells, to_photo, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    if not region.any():
        return out
    outside = cv2.distanceTransform((region == 0).astype(np.uint8), cv2.DIST_L2, 5)
    weight = np.clip(1.0 - outside / max(feather * cell, 1e-6), 0.0, 1.0) if feather > 0 else region.astype(float)
    ys, xs = np.nonzero(weight > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])  # warp only the bounding box of the blend
    warped = cv2.warpAffine(edited_crop, _compose(shift, to_photo), (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
    a = weight[y0:y1, x0:x1, None].astype(np.float32)
    before = out[y0:y1, x0:x1].astype(np.float32)
    if cell > 1.5 * size / grid:  # the edit is upscaled: give it the surrounding photo's sharpness
        warped = match_sharpness(warped, before, a[..., 0], cell)
    out[y0:y1, x0:x1] = np.clip(a * warped + (1 - a) * before + 0.5, 0, 255).astype(np.uint8)
    return out


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine `outer` after 2x3 affine `inner`."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def _detail(image: np.ndarray) -> np.ndarray:
    grey = image.mean(-1) if image.ndim == 3 else image
    return cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F)


def match_sharpness(upscaled: np.ndarray, photo: np.ndarray, weight: np.ndarray, cell: float,
                    max_amount: float = 3.0) -> np.ndarray:
    """Unsharp-masks an upscaled edit so the detail inside the region (std of the Laplacian) approaches
    the photo's in the ring around it, at most `max_amount`. Detail finer than the model's tokens
    cannot come back; this restores the edge contrast that upscaling spreads out."""
    inside, ring = weight >= 1.0, (weight == 0)
    if inside.sum() < 16 or ring.sum() < 16:
        return upscaled
    target, have = _detail(photo)[ring].std(), _detail(upscaled)[inside].std()
    if have <= 0 or target <= have:
        return upscaled
    blurred = cv2.GaussianBlur(upscaled, (0, 0), sigmaX=max(cell / 8, 0.5))
    high = upscaled - blurred
    gain = _detail(high)[inside].std()
    amount = min(max_amount, (target - have) / gain) if gain > 0 else 0.0
    return upscaled + amount * high


def mask_overlay(crop: np.ndarray, token_mask: np.ndarray) -> np.ndarray:
    size = crop.shape[0]
    up = cv2.resize(token_mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = crop.astype(np.float32)
    out[up] = 0.45 * out[up] + 0.55 * np.array([255, 0, 255], np.float32)
    return out.astype(np.uint8)


def result_grid(result: EditResult, scale: int = 2) -> np.ndarray:
    """Rows = guidance strengths; columns = input | mask | one result per seed."""
    seeds = sorted({s for s, _ in result.crops})
    guidances = sorted({g for _, g in result.crops})
    size = result.photo.crop.shape[0]
    rows = []
    for g in guidances:
        cells = [result.photo.crop, mask_overlay(result.photo.crop, result.token_mask)]
        cells += [result.crops[(s, g)] for s in seeds]
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], 1))
    grid = np.concatenate(rows, 0)
    return cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST) \
        if size < 128 else grid


def write_result(result: EditResult, out_dir: str, name: str) -> list[str]:
    """grid PNG + the pasted photo for the first seed at the strongest guidance; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"{name}_grid.png")]
    cv2.imwrite(paths[0], cv2.cvtColor(result_grid(result), cv2.COLOR_RGB2BGR))
    for (s, g), photo in sorted(result.pasted.items()):
        path = os.path.join(out_dir, f"{name}_seed{s}_guidance{g:g}.png")
        cv2.imwrite(path, cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths
