"""One run per workdir: an exclusive lock on <workdir>/.lock while a trainer writes there.

Two runs on one workdir would interleave their checkpoints, config and metrics and both report
success, so the second one refuses, naming the holder. The lock is `fcntl.flock`: the kernel drops
it when the holding process ends however it ends (kill -9 included), so a dead run's lock is simply
taken over; the file keeps the last holder's pid, host and start time for the message.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

from data_pipelines.errors import DataError
from gptface_jax.runtime import layout


class WorkdirBusy(DataError):
    """Another live process holds the workdir."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, OSError):
        return "a process that left no record"


@contextlib.contextmanager
def exclusive(workdir: str):
    """Holds the workdir's lock for the `with` block; raises WorkdirBusy at once if another process has it."""
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(os.path.join(workdir, layout.LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(f"{os.path.abspath(workdir)} is in use by another run ({_holder(fd)}); "
                              "wait for it to finish or choose another --workdir") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
