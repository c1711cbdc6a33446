"""One run per workdir: an exclusive lock on <workdir>/.lock while a trainer writes there.

Two runs on one workdir would interleave their checkpoints, config and metrics and both report
success, so the second one refuses, naming the holder. The lock is `fcntl.flock`: the kernel drops
it when the holding process ends however it ends (kill -9 included), so a dead run's lock is simply
taken over; the file keeps the last holder's pid, host and start time for the message.

In a multi-process job process 0 holds the lock for the job (`for_job`) and tells every process
whether it got it, so a refused job stops on every host instead of leaving the others waiting
for process 0 at their first collective.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

import jax
import numpy as np

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


@contextlib.contextmanager
def for_job(workdir: str):
    """`exclusive` for a whole (multi-process) job: process 0 takes the lock, every process learns the
    outcome, and every process raises WorkdirBusy when it was refused."""
    if jax.process_count() == 1:
        with exclusive(workdir):
            yield
        return
    from jax.experimental import multihost_utils
    with contextlib.ExitStack() as stack:
        refusal = ""
        if jax.process_index() == 0:
            try:
                stack.enter_context(exclusive(workdir))
            except WorkdirBusy as e:
                refusal = str(e)
        held = multihost_utils.broadcast_one_to_all(np.int32(not refusal))
        if not int(held):
            raise WorkdirBusy(refusal or f"{os.path.abspath(workdir)} is in use by another run "
                                         "(process 0 of this job was refused its lock)")
        yield
