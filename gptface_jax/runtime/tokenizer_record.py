"""Which tokenizers a workdir's model reads, recorded so that no other pair is silently swapped in.

A model reads token ids. The same shapes (vocabulary size, codebook size, grid) come from any
SentencePiece model or VQ tokenizer of that size, so a workdir pointed at another pre-tokenized
folder, or one whose tokenizers were rebuilt in place, trains on or decodes noise with no error
(on 2026-12-03 run q7's workdir, read through run q6's folder, drew 0 of 15 text-to-face lifts).

A run records the SHA-256 of its data's text tokenizer and codebook (`layout.TOKENIZER`,
`layout.CODEBOOK`) in the workdir (`layout.TOKENIZERS`) when it starts without a checkpoint; a
resume and `inference.load` compare the data's files with that record and refuse a difference.
Workdirs from before the record are checked from their next run on.
"""
from __future__ import annotations

import hashlib
import json
import os

from data_pipelines.errors import DataError
from gptface_jax.runtime import layout

FILES = (layout.TOKENIZER, layout.CODEBOOK)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests(pretokenized_dir: str) -> dict[str, str]:
    """SHA-256 of each of FILES the pre-tokenized folder holds (a folder without a codebook has none)."""
    return {name: _sha256(os.path.join(pretokenized_dir, name)) for name in FILES
            if os.path.isfile(os.path.join(pretokenized_dir, name))}


def recorded(workdir: str) -> dict[str, str] | None:
    path = os.path.join(workdir, layout.TOKENIZERS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return dict(json.load(f)["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is unreadable ({e}); restore it, or delete it to record the data's tokenizers "
                        "anew") from e


def check(workdir: str, pretokenized_dir: str) -> None:
    """Raises DataError when a file the workdir recorded differs from (or is missing in) the data."""
    record = recorded(workdir)
    if record is None:
        return
    found = digests(pretokenized_dir)
    for name, digest in sorted(record.items()):
        if found.get(name) != digest:
            state = "is missing" if name not in found else "differs from the one"
            raise DataError(f"{os.path.join(pretokenized_dir, name)} {state} {workdir} trained with "
                            f"(sha256 {digest[:12]}...): its ids would be read as another tokenizer's. Point "
                            "data.pretokenized at the data the run trained on, or train a new workdir")


def write(workdir: str, pretokenized_dir: str) -> None:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, layout.TOKENIZERS)
    with open(path + ".tmp", "w") as f:
        json.dump({"pretokenized": pretokenized_dir, "sha256": digests(pretokenized_dir)}, f, indent=1)
    os.replace(path + ".tmp", path)


def check_or_write(workdir: str, pretokenized_dir: str, resuming: bool, primary: bool = True) -> None:
    """At a run's start: a resumed run's data must hold the recorded tokenizers; a run without a
    checkpoint (or a resumed one from before the record) records its data's. Only `primary` writes."""
    if resuming and recorded(workdir) is not None:
        check(workdir, pretokenized_dir)
    elif primary:
        write(workdir, pretokenized_dir)
