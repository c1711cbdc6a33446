"""Named sweeps declared beside `get_config`, run one after another or printed for a scheduler.

A config file may define `get_sweeps(arg) -> {name: variants}`, where variants are built from
    sweep("train.learning_rate", [1e-3, 3e-3])          one override per value
    product(a, b, ...)                                   every combination
    zipit(a, b, ...)                                     element-wise (equal lengths)
Each variant is a dict of config overrides. `gptface sweep --config FILE:ARG --sweep NAME
--workdir W [--config.x=y ...]` validates every variant first (a bad one stops the sweep before
anything runs), then trains each in W/<variant> with `gptface train`, and writes
W/sweep_<NAME>.md / .json comparing the variants' final metrics. `--print` emits the launch
commands instead; `--collect` writes the table once a scheduler has run them.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

from gptface_jax.runtime import config_lib, layout

TABLE_METRICS = ("step", "loss", "text_loss", "image_loss", "text_accuracy", "image_accuracy",
                 "eval_itm_clean_accuracy", "eval_itm_clean_auc", "eval_itm_weak_accuracy", "eval_itm_weak_auc")


def sweep(key: str, values: Sequence) -> list[dict]:
    return [{key: v} for v in values]


def product(*sweeps: list[dict]) -> list[dict]:
    return [{k: v for d in combo for k, v in d.items()} for combo in itertools.product(*sweeps)]


def zipit(*sweeps: list[dict]) -> list[dict]:
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
        raise config_lib.ConfigError(f"zipit needs sweeps of equal length, got lengths {sorted(lengths)}")
    return [{k: v for d in combo for k, v in d.items()} for combo in zip(*sweeps)]


def split_config_flag(flags: Sequence[str]) -> tuple[str, list[str]]:
    """('FILE:ARG', the other flags) from absl-style config flags."""
    flags = list(flags)
    for i, flag in enumerate(flags):
        if flag == "--config" and i + 1 < len(flags):
            return flags[i + 1], flags[:i] + flags[i + 2:]
        if flag.startswith("--config="):
            return flag.split("=", 1)[1], flags[:i] + flags[i + 1:]
    raise config_lib.ConfigError("no config given: pass --config experiments/pretrain.py:tiny")


def declared_sweeps(spec: str) -> dict[str, list[dict]]:
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_sweep_config", path)
    if module_spec is None or not os.path.exists(path):
        raise config_lib.ConfigError(f"config file {path!r} not found")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweeps"):
        raise config_lib.ConfigError(f"{path} declares no sweeps (define get_sweeps(arg) beside get_config)")
    return module.get_sweeps(arg) if arg else module.get_sweeps()


def format_value(v) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(format_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v) if isinstance(v, float) else str(v)


def variant_name(overrides: dict) -> str:
    """Short, filesystem-safe: 'learning_rate=0.001,image_ratio=0.5'."""
    parts = [f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in overrides.items()]
    return re.sub(r"[^\w.,=+-]", "_", ",".join(parts)) or "base"


def plan(flags: Sequence[str], name: str, workdir: str) -> list[dict]:
    """Validated variants: {'name', 'overrides', 'workdir', 'flags'}; every problem raised at once."""
    spec, base = split_config_flag(flags)
    sweeps = declared_sweeps(spec)
    if name not in sweeps:
        raise config_lib.ConfigError(f"{spec} declares no sweep {name!r}; it has {sorted(sweeps)}")
    variants, errors = [], []
    for overrides in sweeps[name]:
        variant_flags = ["--config", spec, *base, *(f"--config.{k}={format_value(v)}" for k, v in overrides.items())]
        vname = variant_name(overrides)
        try:
            config_lib.validate(config_lib.load(variant_flags))
        except config_lib.ConfigError as e:
            errors.append(f"{vname}: {e}")
        variants.append({"name": vname, "overrides": overrides, "workdir": os.path.join(workdir, vname),
                         "flags": variant_flags})
    if len({v["name"] for v in variants}) != len(variants):
        errors.append(f"sweep {name!r} repeats a variant")
    if errors:
        raise config_lib.ConfigError(f"sweep {name!r} has invalid variants:\n" + "\n".join(errors))
    return variants


def launch_command(variant: dict, program: Sequence[str] = ("gptface",)) -> list[str]:
    return [*program, "train", *variant["flags"], "--workdir", variant["workdir"]]


def run(variants: list[dict]) -> dict[str, int]:
    """Trains each variant in turn (a failure is recorded and the sweep goes on); name -> exit code."""
    codes = {}
    for i, v in enumerate(variants):
        print(f"== sweep variant {i + 1}/{len(variants)}: {v['name']}", flush=True)
        codes[v["name"]] = subprocess.call(launch_command(v, (sys.executable, "-m", "gptface_jax.cli")))
    return codes


def comparison(variants: list[dict], codes: dict[str, int] | None = None) -> list[dict]:
    rows = []
    for v in variants:
        path = os.path.join(v["workdir"], layout.FINAL_METRICS)
        row = {"variant": v["name"], **{k: format_value(x) for k, x in v["overrides"].items()}}
        if os.path.exists(path):
            with open(path) as f:
                final = json.load(f)
            row.update({k: final[k] for k in TABLE_METRICS if k in final})
        else:
            code = (codes or {}).get(v["name"])
            row["status"] = "missing" if code is None else f"failed (exit {code})"
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    def cell(x):
        return f"{x:.4g}" if isinstance(x, float) else ("" if x is None else str(x))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_table(workdir: str, name: str, rows: list[dict]) -> str:
    os.makedirs(workdir, exist_ok=True)
    table = markdown(rows)
    with open(os.path.join(workdir, f"sweep_{name}.md"), "w") as f:
        f.write(f"# sweep {name}\n\n{table}\n")
    with open(os.path.join(workdir, f"sweep_{name}.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return table


def main(flags: Sequence[str], name: str, workdir: str, print_only: bool = False, collect: bool = False) -> int:
    variants = plan(flags, name, workdir)
    if print_only:
        for v in variants:
            print(shlex.join(launch_command(v)))
        return 0
    codes = None if collect else run(variants)
    print(write_table(workdir, name, comparison(variants, codes)))
    return 0 if not codes or not any(codes.values()) else 1
