"""`gptface serve --workdir W`: a local editing page for a pre-trained GPTFace (FastAPI + one static page).

The model is loaded once and every decoding config is compiled once (a decoder cache shared by all
requests). Uploads pass the same guards as the command line (`editing.photo_from_bytes`: size,
format, pixel count, a face found); any bad input comes back as a JSON `{"error": ...}` with status
400, which the page shows as a message. Nothing is fetched from outside: the page is one file
served from here, with no analytics.

    GET  /                    the page (web_page.html)
    GET  /api/info            regions, held-out faces, default settings
    GET  /api/held_out/{i}    a held-out face (PNG), the model's own tokens decoded
    POST /api/align           the aligned crop of an upload or held-out face (for painting a mask)
    POST /api/edit            regions and/or a painted mask + text (+ a negative caption) -> grid and pasted photos
    POST /api/generate        text (+ a negative caption) -> faces
    POST /api/caption         a face -> captions
"""
from __future__ import annotations

import base64
import dataclasses
import io
import os
import threading

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, UploadFile  # the [serve] extra
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from data_pipelines.errors import DataError
from data_pipelines.shards import ShardSource
from gptface_jax.generate import captioning, editing, regions
from gptface_jax.generate.decode_config import default_config, default_guidances
from gptface_jax.serving import inference

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
PAGE = os.path.join(os.path.dirname(__file__), "web_page.html")


def png_data_url(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Studio:
    """The model, its held-out faces and a decoder cache; every method is one request's work."""

    def __init__(self, workdir: str, detector: str = "haar", held_out: int = 8):
        self.pretrained = inference.load(workdir)
        self.detector = detector
        self.cache: dict = {}
        self.lock = threading.Lock()  # one decode at a time: jitted calls share the CPU anyway
        source = ShardSource(self.pretrained.config.data.pretokenized, "test", verify=False)
        codes = np.stack([np.asarray(source[i]["image_codes"]) for i in range(min(held_out, len(source)))])
        self.held_out = self.pretrained.images(codes)

    @property
    def size(self) -> int:
        return self.pretrained.image_size

    def photo(self, upload: bytes | None, held_out: int | None, aligned: bool = False) -> editing.Photo:
        if upload:
            if len(upload) > MAX_UPLOAD_BYTES:
                raise DataError(f"the upload is {len(upload) / 2**20:.0f} MiB; at most {MAX_UPLOAD_BYTES >> 20} MiB")
            return editing.photo_from_bytes(upload, self.size, aligned, self.detector, name="the upload")
        if held_out is None:
            raise DataError("choose a photo to upload or a held-out face")
        if not 0 <= held_out < len(self.held_out):
            raise DataError(f"held-out face {held_out} does not exist (0..{len(self.held_out) - 1})")
        return editing.Photo.of_crop(self.held_out[held_out])

    def info(self) -> dict:
        edit = default_config("edit")
        return {"regions": regions.region_names(), "held_out": len(self.held_out), "image_size": self.size,
                "grid": self.pretrained.grid, "detector": self.detector,
                "defaults": {"steps": edit.steps, "cfg_scale": edit.cfg_scale,
                             "guidance": default_guidances("edit")}}

    def edit(self, photo: editing.Photo, region_names: list[str], painted: bytes | None, text: str, seeds: list[int],
             guidances: list[float], cfg_scale: float, steps: int, negative: str = "") -> dict:
        self.pretrained.text_ids([text])
        pixels = None
        if painted:
            pixels = editing.mask_from_bytes(painted, self.size)
        mask = editing.token_mask_for(region_names, pixels, grid=self.pretrained.grid, size=self.size)
        config = dataclasses.replace(default_config("edit"), steps=steps, cfg_scale=cfg_scale)
        config.validate()
        with self.lock:
            result = editing.edit(self.pretrained, photo, mask, text, seeds=seeds, guidances=guidances,
                                  config=config, cache=self.cache, negative=negative or None)
        return {"grid": png_data_url(editing.result_grid(result)),
                "pasted": [{"seed": s, "guidance": g, "itm": round(result.itm[(s, g)], 3), "image": png_data_url(p)}
                           for (s, g), p in sorted(result.pasted.items())]}

    def generate(self, text: str, seeds: list[int], guidances: list[float], cfg_scale: float, steps: int,
                 negative: str = "") -> dict:
        blank = np.full((self.size, self.size, 3), 127, np.uint8)
        grid = self.pretrained.grid
        config = dataclasses.replace(default_config("generate"), steps=steps, cfg_scale=cfg_scale)
        config.validate()
        with self.lock:
            result = editing.edit(self.pretrained, editing.Photo.of_crop(blank), np.ones((grid, grid), bool), text,
                                  seeds=seeds, guidances=guidances, config=config, cache=self.cache,
                                  negative=negative or None)
        return {"faces": [{"seed": s, "guidance": g, "itm": round(result.itm[(s, g)], 3), "image": png_data_url(c)}
                          for (s, g), c in sorted(result.crops.items())]}

    def caption(self, photo: editing.Photo, seeds: list[int], guidances: list[float]) -> dict:
        with self.lock:
            lines = captioning.caption(self.pretrained, photo.crop, default_config("caption"), guidances, seeds,
                                       cache=self.cache)
        return {"face": png_data_url(photo.crop),
                "captions": [{"guidance": g, "seed": s, "text": t} for g, s, t in lines]}


def numbers(text: str, kind=float, name: str = "value", lo: float | None = None, hi: float | None = None) -> list:
    """'0, 2' -> [0.0, 2.0]; anything else is a DataError naming the field."""
    try:
        values = [kind(v) for v in str(text).replace(",", " ").split()]
    except ValueError:
        raise DataError(f"{name}: {text!r} is not a list of numbers") from None
    if not values:
        raise DataError(f"{name}: give at least one value")
    if any((lo is not None and v < lo) or (hi is not None and v > hi) for v in values):
        raise DataError(f"{name}: every value must lie in [{lo}, {hi}]")
    return values


def make_app(studio: Studio):
    """The FastAPI app around one Studio."""
    app = FastAPI(title="GPTFace", docs_url=None, redoc_url=None, openapi_url=None)

    def guarded(work):
        try:
            return work()
        except (DataError, regions.RegionError, ValueError) as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    async def read(upload: UploadFile | None) -> bytes | None:
        if upload is None:
            return None
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        return data or None

    @app.get("/")
    def page():
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/api/info")
    def info():
        return studio.info()

    @app.get("/api/held_out/{index}")
    def held_out(index: int):
        def work():
            crop = studio.photo(None, index).crop
            return Response(cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes(),
                            media_type="image/png")
        return guarded(work)

    @app.post("/api/align")
    async def align(photo: UploadFile | None = File(None), held_out: int | None = Form(None)):
        data = await read(photo)
        return guarded(lambda: {"face": png_data_url(studio.photo(data, held_out).crop)})

    @app.post("/api/edit")
    async def edit(text: str = Form(""), regions_: str = Form("", alias="regions"), seeds: str = Form("0 1 2"),
                   guidance: str = Form("0 2"), cfg_scale: float = Form(0.0), steps: int = Form(12),
                   held_out: int | None = Form(None), photo: UploadFile | None = File(None),
                   mask: UploadFile | None = File(None), negative: str = Form("")):
        data, painted = await read(photo), await read(mask)
        names = [r for r in regions_.replace(",", " ").split() if r]
        return await run_in_threadpool(guarded, lambda: studio.edit(
            studio.photo(data, held_out), names, painted, text, numbers(seeds, int, "seeds", 0),
            numbers(guidance, float, "lambda", 0, 20), cfg_scale, steps, negative))

    @app.post("/api/generate")
    async def generate(text: str = Form(""), seeds: str = Form("0 1 2"), guidance: str = Form("0 2"),
                       cfg_scale: float = Form(3.0), steps: int = Form(12), negative: str = Form("")):
        return await run_in_threadpool(guarded, lambda: studio.generate(
            text, numbers(seeds, int, "seeds", 0), numbers(guidance, float, "lambda", 0, 20), cfg_scale, steps,
            negative))

    @app.post("/api/caption")
    async def caption(seeds: str = Form("0 1 2"), guidance: str = Form("3"), held_out: int | None = Form(None),
                      photo: UploadFile | None = File(None)):
        data = await read(photo)
        return await run_in_threadpool(guarded, lambda: studio.caption(
            studio.photo(data, held_out), numbers(seeds, int, "seeds", 0), numbers(guidance, float, "lambda", 0, 20)))

    return app


def serve(workdir: str, host: str = "127.0.0.1", port: int = 8321, detector: str = "haar") -> None:
    import uvicorn
    studio = Studio(workdir, detector)
    print(f"GPTFace studio on http://{host}:{port}/ (model {workdir}, faces found by {detector})", flush=True)
    uvicorn.run(make_app(studio), host=host, port=port, log_level="warning")
