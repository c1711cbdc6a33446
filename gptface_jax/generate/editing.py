"""Face editing on a pre-trained GPTFace: an edit is which image tokens are masked plus which text is given.

    attribute editing / expression manipulation   region(s) of the aligned face + a caption
    mask removal                                  the occluder region (lower face) + a caption
    inpainting                                    a pixel mask -> token mask (regions.pixel_to_token_mask)

A photo goes through the ingestion face crop (or is taken as already aligned), the masked tokens
are re-decoded with MaskGIT under ITM guidance for every (seed, guidance strength), and the edited
crop is pasted back into the photo: resized to the crop box, blended through the edited region's
mask with a linear fade at its border, so pixels away from the edit keep their original values. Everything
is computed before anything is written, so a bad input leaves no partial output.
"""
from __future__ import annotations

import dataclasses
import os

import cv2
import jax
import numpy as np

from data_pipelines.errors import DataError
from data_pipelines.ingest.errors import DropRecord
from data_pipelines.ingest.faces import CropBox, FaceOptions, decode_image, face_crop
from gptface_jax.generate import decoding, regions
from gptface_jax.generate.decoding import DecodeConfig


@dataclasses.dataclass(frozen=True)
class Photo:
    original: np.ndarray        # (H, W, 3) uint8, as decoded
    crop: np.ndarray            # (S, S, 3) uint8, the aligned face the model sees
    box: CropBox                # where the crop came from in `original`


@dataclasses.dataclass
class EditResult:
    photo: Photo
    token_mask: np.ndarray      # (grid, grid) bool
    text: str
    crops: dict                 # (seed, guidance) -> edited crop (S, S, 3) uint8, original pixels outside the edit
    itm: dict                   # (seed, guidance) -> match log-odds of (text, edited image)
    pasted: dict                # (seed, guidance) -> the whole photo with the edit pasted back


def load_photo(path: str, size: int, aligned: bool = False) -> Photo:
    """Decodes `path`; crops the largest face as ingestion does, or takes the image as aligned."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from e
    try:
        rgb = decode_image(data)
        if aligned:
            h, w = rgb.shape[:2]
            side = min(h, w)
            box = CropBox((w - side) // 2, (h - side) // 2, side)
            square = rgb[box.y:box.y + side, box.x:box.x + side]
            crop = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
            return Photo(rgb, np.ascontiguousarray(crop), box)
        found = face_crop(rgb, FaceOptions(image_size=size))
    except DropRecord as e:
        hint = " (pass --aligned if the image is already a face crop)" if e.reason == "no_face" else ""
        raise DataError(f"{path}: {e}{hint}") from e
    return Photo(rgb, found.image, found.box)


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
         config: DecodeConfig = DecodeConfig()) -> EditResult:
    """Re-decodes the masked tokens of `photo.crop` for `text`, once per (seed, guidance)."""
    text_ids = pretrained.text_ids([text])
    codes = pretrained.image_codes(photo.crop[None])
    mask = np.asarray(token_mask, bool).reshape(1, -1)
    seeds = list(seeds)
    in_crop = Photo(photo.crop, photo.crop, CropBox(0, 0, photo.crop.shape[0]))  # results keep pixels outside the edit
    crops, itm, pasted = {}, {}, {}
    score = jax.jit(lambda p, t, i: decoding.itm_score(pretrained.model, p, t, i))
    for guidance in guidances:
        decoder = decoding.make_decoder(pretrained.model, decoding.IMAGE,
                                        dataclasses.replace(config, guidance=float(guidance)))
        # one call per seed, so a seed's result does not depend on which other seeds were asked for
        out = np.concatenate([np.asarray(decoder(pretrained.params, text_ids, codes, mask, jax.random.PRNGKey(s))[1])
                              for s in seeds])
        decoded = pretrained.images(out)
        scores = np.asarray(score(pretrained.params, np.repeat(text_ids, len(seeds), 0), out))
        for k, s in enumerate(seeds):
            crops[(s, guidance)] = paste_back(in_crop, decoded[k], token_mask)
            itm[(s, guidance)] = float(scores[k])
            pasted[(s, guidance)] = paste_back(photo, decoded[k], token_mask)
    return EditResult(photo, np.asarray(token_mask, bool), text, crops, itm, pasted)


def paste_back(photo: Photo, edited_crop: np.ndarray, token_mask: np.ndarray, feather: float = 0.5) -> np.ndarray:
    """`photo.original` with the edited region of the crop blended in (inverse of the crop).

    The blend weight is the token mask upsampled to the crop box, fading linearly to 0 over
    `feather` token cells outside it: the edit blends in at its border, and every pixel farther
    away keeps its original value exactly.
    """
    out = photo.original.copy()
    h, w = out.shape[:2]
    box, side = photo.box, photo.box.side
    grid = token_mask.shape[0]
    weight = cv2.resize(token_mask.astype(np.float32), (side, side), interpolation=cv2.INTER_NEAREST)
    if feather > 0:  # 1 inside the region, a linear fade over `feather` cells outside it, then exactly 0
        outside = cv2.distanceTransform((weight == 0).astype(np.uint8), cv2.DIST_L2, 5)
        weight = np.clip(1.0 - outside / (feather * side / grid), 0.0, 1.0).astype(np.float32)
    resized = cv2.resize(edited_crop, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    x0, y0 = max(box.x, 0), max(box.y, 0)
    x1, y1 = min(box.x + side, w), min(box.y + side, h)
    if x1 <= x0 or y1 <= y0:
        return out
    sx, sy = x0 - box.x, y0 - box.y
    a = weight[sy:sy + y1 - y0, sx:sx + x1 - x0, None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(a * resized[sy:sy + y1 - y0, sx:sx + x1 - x0] + (1 - a) * region + 0.5, 0,
                                255).astype(np.uint8)
    return out


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
