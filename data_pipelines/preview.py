"""Contact sheets: a grid of faces from a written dataset, each with its caption underneath.

    python -m data_pipelines.preview DIR --out grid.png
"""
from __future__ import annotations

import argparse
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data_pipelines.pipeline import decode_jpeg
from data_pipelines.shards import ShardSource

_TILE = 128
_TEXT_LINES = 4


def contact_sheet(images: list[np.ndarray], captions: list[str], cols: int = 8, tile: int = _TILE) -> Image.Image:
    """Images (H, W, 3 uint8) with wrapped captions below, `cols` per row."""
    font = ImageFont.load_default(size=max(9, tile // 12))
    line_h = font.size + 2
    cell_h = tile + _TEXT_LINES * line_h + 6
    rows = -(-len(images) // cols)
    sheet = Image.new("RGB", (cols * tile, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    chars = max(8, int(tile / (font.size * 0.52)))
    for k, (img, caption) in enumerate(zip(images, captions)):
        x, y = (k % cols) * tile, (k // cols) * cell_h
        sheet.paste(Image.fromarray(img).resize((tile, tile), Image.NEAREST), (x, y))
        lines = textwrap.wrap(caption, chars)[:_TEXT_LINES] or ["(empty caption)"]
        for j, line in enumerate(lines):
            draw.text((x + 2, y + tile + 2 + j * line_h), line, fill="black", font=font)
    return sheet


def preview(dataset_dir: str, out: str, *, split: str = "train", num: int = 48, cols: int = 8,
            tile: int = _TILE) -> str:
    source = ShardSource(dataset_dir, split)
    take = range(min(num, len(source)))
    records = [source[i] for i in take]
    images = [decode_jpeg(r["image"]) for r in records]
    captions = [r["caption"].decode("utf-8") if isinstance(r["caption"], bytes) else r["caption"]
                for r in records]
    contact_sheet(images, captions, cols=cols, tile=tile).save(out)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset folder written by `gptface data synth` (or its --out root)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--split", default="train")
    p.add_argument("--num", type=int, default=48)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--tile", type=int, default=_TILE, help="pixels per face in the sheet")


def run(args: argparse.Namespace) -> None:
    path = preview(args.dataset, args.out, split=args.split, num=args.num, cols=args.cols, tile=args.tile)
    print(f"contact sheet written to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
