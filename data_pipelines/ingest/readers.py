"""Readers for what crawlers write, each yielding raw (key, image bytes, caption) pairs.

- webdataset: img2dataset / WebDataset tars: KEY.jpg|jpeg|png|webp + KEY.txt and/or KEY.json
- table: Parquet or CSV with an image column (a path, relative to the table, or the bytes) and a
  caption column; column names are options
- folder: image files with sidecar KEY.txt captions, searched recursively

Inputs are split into work units (a tar, a Parquet row group, a CSV file, a slice of a folder) so
local processes or Beam workers read them independently. Readers never decode images: a problem a
reader can see (missing pair member, truncated tar) is passed on as the pair's `problem`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
import json
import os
import tarfile
from collections.abc import Iterator

from data_pipelines.errors import DataError, OptionError
from data_pipelines.ingest.errors import MISSING_CAPTION, MISSING_IMAGE, TRUNCATED_ARCHIVE, UNREADABLE_METADATA

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
FORMATS = ("webdataset", "table", "folder")
_FOLDER_UNIT = 256


class InputError(DataError):
    """Inputs that cannot be read as the chosen format (nothing found, wrong columns)."""


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    format: str
    image_column: str = "image"          # table: a path or bytes column
    caption_column: str = "caption"      # table column, or the field of a WebDataset .json
    key_column: str = ""                 # table: optional id column (default: file + row)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise OptionError(f"unknown input format {self.format!r}; choose one of {FORMATS}")


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    path: str
    part: int = 0          # Parquet row group, or folder slice
    files: tuple[str, ...] = ()


@dataclasses.dataclass
class RawPair:
    key: str               # unique within the crawl: source file + member or row
    image: bytes | None
    caption: bytes | str | None
    problem: str | None = None
    detail: str = ""


def _walk(root: str, patterns: tuple[str, ...]) -> list[str]:
    """Files under `root` matching `patterns`, hidden ones skipped. Linked folders are followed once
    each: a crawled tree is untrusted, and a link back up (`sub/loop -> ..`) must not loop."""
    seen, files = set(), []
    for here, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(here, n) for n in names
                  if not n.startswith(".") and any(fnmatch.fnmatch(n, p) for p in patterns)]
    return files


def _expand(inputs: list[str], patterns: tuple[str, ...]) -> list[str]:
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            files += _walk(item, patterns)
        else:
            matched = sorted(glob.glob(item))
            if not matched:
                raise InputError(f"input {item!r} matches no file")
            files += matched
    return sorted(set(files))


def list_units(inputs: list[str], options: ReaderOptions) -> list[WorkUnit]:
    """Every independent piece of work in `inputs` (files, globs or folders)."""
    options.validate()
    if options.format == "webdataset":
        units = [WorkUnit(p) for p in _expand(inputs, ("*.tar", "*.tar.gz", "*.tgz"))]
    elif options.format == "table":
        units = []
        for path in _expand(inputs, ("*.parquet", "*.csv")):
            if path.endswith(".parquet"):
                import pyarrow.parquet as pq
                groups = pq.ParquetFile(path).num_row_groups
                units += [WorkUnit(path, g) for g in range(max(groups, 1))]
            else:
                units.append(WorkUnit(path))
    else:
        files = _expand(inputs, ("*",))
        images = [p for p in files if p.lower().endswith(IMAGE_EXTENSIONS)]
        stems = {os.path.splitext(p)[0] for p in images}
        orphans = tuple(p for p in files if p.endswith(".txt") and os.path.splitext(p)[0] not in stems)
        root = os.path.commonpath([os.path.dirname(p) for p in images + list(orphans)]) if files else ""
        units = [WorkUnit(root, i // _FOLDER_UNIT, tuple(images[i:i + _FOLDER_UNIT]))
                 for i in range(0, len(images), _FOLDER_UNIT)]
        if orphans:  # captions whose image is missing: counted, not silently ignored
            units.append(WorkUnit(root, -1, orphans))
    if not units:
        raise InputError(f"no {options.format} input found in {inputs}")
    return units


def read_unit(unit: WorkUnit, options: ReaderOptions) -> Iterator[RawPair]:
    if options.format == "webdataset":
        yield from _read_tar(unit.path, options)
    elif options.format == "table":
        yield from _read_table(unit, options)
    else:
        yield from _read_folder(unit)


# --- WebDataset tars ------------------------------------------------------------------------------

def _split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the path up to the first dot of the file name."""
    directory, base = os.path.split(name)
    stem, dot, ext = base.partition(".")
    return os.path.join(directory, stem), ext.lower()


def _pair_from_members(tar_path: str, key: str, members: dict[str, bytes], options: ReaderOptions) -> RawPair:
    image = next((members[e] for e in ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff") if e in members), None)
    caption = members.get("txt")
    problem, detail = None, ""
    if caption is None and "json" in members:
        try:
            meta = json.loads(members["json"])
            value = meta.get(options.caption_column) if isinstance(meta, dict) else None
            caption = value if isinstance(value, str) else None
        except (ValueError, UnicodeDecodeError) as e:
            problem, detail = UNREADABLE_METADATA, str(e)[:100]
    if image is None:
        problem, detail = MISSING_IMAGE, f"members: {sorted(members)}"
    elif caption is None and problem is None:
        problem, detail = MISSING_CAPTION, f"members: {sorted(members)}"
    return RawPair(f"{os.path.basename(tar_path)}/{key}", image, caption, problem, detail)


def _read_tar(path: str, options: ReaderOptions) -> Iterator[RawPair]:
    key, members = None, {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                k, ext = _split_key(info.name)
                if k != key and key is not None:
                    yield _pair_from_members(path, key, members, options)
                    members = {}
                key = k
                members[ext] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        # Pairs read before the damage are kept; the damaged tail (including a pair that may have
        # lost members) is one counted problem.
        complete = _pair_from_members(path, key, members, options) if key is not None else None
        if complete is not None and complete.problem is None:
            yield complete
        yield RawPair(f"{os.path.basename(path)}/<truncated>", None, None, TRUNCATED_ARCHIVE, str(e)[:200])
        return
    if key is not None:
        yield _pair_from_members(path, key, members, options)


# --- Parquet / CSV tables ---------------------------------------------------------------------------

def _read_table(unit: WorkUnit, options: ReaderOptions) -> Iterator[RawPair]:
    if unit.path.endswith(".parquet"):
        import pyarrow.parquet as pq
        table = pq.ParquetFile(unit.path).read_row_group(unit.part)
    else:
        import pyarrow.csv as pcsv
        table = pcsv.read_csv(unit.path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    missing = [c for c in (options.image_column, options.caption_column, options.key_column)
               if c and c not in table.column_names]
    if missing:
        raise InputError(f"{unit.path}: no column {missing}; columns are {table.column_names} "
                         "(set --image-column / --caption-column / --key-column)")
    images = table.column(options.image_column).to_pylist()
    captions = table.column(options.caption_column).to_pylist()
    keys = table.column(options.key_column).to_pylist() if options.key_column else None
    base = os.path.dirname(unit.path)
    for row, (image, caption) in enumerate(zip(images, captions)):
        key = f"{os.path.basename(unit.path)}/{unit.part}/{keys[row] if keys else row}"
        if isinstance(image, str):  # a path, relative to the table's folder
            path = image if os.path.isabs(image) else os.path.join(base, image)
            try:
                with open(path, "rb") as f:
                    image = f.read()
            except OSError as e:
                yield RawPair(key, None, caption, MISSING_IMAGE, str(e)[:200])
                continue
        if image is None:
            yield RawPair(key, None, caption, MISSING_IMAGE, "empty cell")
            continue
        yield RawPair(key, image, caption, None if caption is not None else MISSING_CAPTION)


# --- folders with sidecar captions ----------------------------------------------------------------------

def _read_folder(unit: WorkUnit) -> Iterator[RawPair]:
    for path in unit.files:
        key = os.path.relpath(path, unit.path) if unit.path else path
        if unit.part == -1:
            yield RawPair(key, None, None, MISSING_IMAGE, "caption file without an image")
            continue
        sidecar = os.path.splitext(path)[0] + ".txt"
        caption = None
        if os.path.isfile(sidecar):
            with open(sidecar, "rb") as f:
                caption = f.read()
        with open(path, "rb") as f:
            image = f.read()
        yield RawPair(key, image, caption, None if caption is not None else MISSING_CAPTION)
