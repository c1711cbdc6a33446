"""Metrics: JSON lines + TensorBoard, and FLOPs / MFU from the compiled step's cost analysis."""
from __future__ import annotations

import json
import os
import time

import jax

from gptface_jax.runtime import layout

# Dense bf16 peak FLOP/s per device, for MFU. CPUs have no meaningful entry: MFU is left out there.
PEAK_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def device_peak_flops(device=None) -> float | None:
    kind = (device or jax.devices()[0]).device_kind
    return next((v for k, v in PEAK_FLOPS.items() if kind.startswith(k)), None)


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled (lowered + compiled) function, summed over devices."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def transformer_train_flops(*, layers: int, width: int, mlp: int, seq: int, batch: int, text_vocab: int,
                            codebook: int, text_rows: int, image_rows: int) -> float:
    """Training FLOPs of one step by the model count (forward + backward = 3 x forward), as MFU is
    usually defined: 6 x matmul weights x tokens, attention scores and values (12 L S^2 D per
    sequence), and the vocabulary heads over the gathered masked rows (`*_rows`, whole batch).

    XLA's cost analysis is exact on a CPU but leaves out library calls on a GPU (cuBLAS GEMMs,
    cuDNN attention: 16 against 322 TFLOP/s on an H200, BENCHMARKS.md), so MFU uses this count."""
    matmul_weights = layers * (4 * width * width + 2 * width * mlp)
    heads = 6 * width * (text_vocab * text_rows + codebook * image_rows)
    return float(6 * matmul_weights * batch * seq + 12 * layers * seq * seq * width * batch + heads)


def throughput(flops_per_step: float, seconds_per_step: float, num_devices: int) -> dict:
    per_device = flops_per_step / max(seconds_per_step, 1e-9) / num_devices
    out = {"tflops_per_device": per_device / 1e12}
    peak = device_peak_flops()
    if peak:
        out["mfu"] = per_device / peak
    return out


class MetricWriter:
    """Appends one JSON object per call to <workdir>/metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, workdir: str, tensorboard: bool = True, start_step: int | None = None):
        """`start_step`: the step the run starts (or resumes) from; rows a killed run wrote past it are
        dropped, so every step appears once, from the run that carried on."""
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, layout.METRICS)
        if start_step is not None and jax.process_index() == 0 and os.path.exists(self.path):
            self._truncate_after(start_step)
        self._tb = None
        if tensorboard and jax.process_index() == 0:
            try:
                from tensorboardX import SummaryWriter
                self._tb = SummaryWriter(os.path.join(workdir, layout.TENSORBOARD))
            except ImportError:  # TensorBoard is optional; JSON lines are the record
                self._tb = None

    def _truncate_after(self, step: int) -> None:
        with open(self.path) as f:
            lines = f.readlines()
        keep = []
        for line in lines:
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError, TypeError):  # a row cut short by the kill
                continue
        if len(keep) != len(lines):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(keep)
            os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> None:
        if jax.process_index() != 0:
            return
        row = {"step": int(step), "time": time.time(), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "time") and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _plain(v):
    try:
        return float(v) if not isinstance(v, (str, bool, int)) else v
    except (TypeError, ValueError):
        return str(v)


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, layout.METRICS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
