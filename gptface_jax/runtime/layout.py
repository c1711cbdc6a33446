"""The names of the files a workdir or dataset holds, in one place.

    pre-training workdir   config.json, checkpoints/, metrics.jsonl, tensorboard/, final_metrics.json,
                           .lock, judge/ (the attribute classifier `gptface eval edits` trains),
                           edits_eval.{json,md}, captions_eval.json, tokenizers.json
    VQ workdir             vq_config.json, checkpoints/, vq_eval.json, reconstructions.png, data/
    pre-tokenized dataset  text_tokenizer.model, codebook.npy, the shards (gptface_jax/train/pretokenize.py)

An export directory's names belong to its standalone reader (gptface_jax/serving/exported.py).
Workdirs and datasets record where their inputs were (`config.json`'s data.pretokenized, the shards'
vq_workdir and source_dataset); `locate` finds them again after the whole tree was moved or copied.
"""
import os

CONFIG = "config.json"                  # the run's config, as resolved (inference and export read it back)
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"               # one row per logged step
TENSORBOARD = "tensorboard"
FINAL_METRICS = "final_metrics.json"    # the last step's metrics and evaluations (sweeps collect it)
LOCK = ".lock"                          # held while a run writes the workdir (runtime/workdir_lock.py)
JUDGE = "judge"
EDITS_EVAL = "edits_eval"               # .json and .md
CAPTIONS_EVAL = "captions_eval.json"
TOKENIZERS = "tokenizers.json"          # digests of the data's tokenizers (runtime/tokenizer_record.py)

VQ_CONFIG = "vq_config.json"
VQ_EVAL = "vq_eval.json"
RECONSTRUCTIONS = "reconstructions.png"
VQ_DATA = "data"                        # SynthFaces built for a VQ run that was given no dataset

TOKENIZER = "text_tokenizer.model"      # the SentencePiece model the shards' text ids come from
CODEBOOK = "codebook.npy"               # the VQ code vectors (l2-normalised): image embeddings may start from them


def _ancestors(path: str):
    here = os.path.abspath(path)
    while True:
        yield here
        parent = os.path.dirname(here)
        if parent == here:
            return
        here = parent


def locate(recorded: str, near: str) -> str:
    """A path a workdir or dataset recorded, found again from `near` (that workdir or dataset).

    - As recorded, when it is absolute and exists.
    - A relative path (older workdirs stored them relative to where training ran) is looked for
      from `near` and each of its ancestors.
    - An absolute path that is gone is looked for by its trailing components, longest first,
      from `near`'s ancestors, nearest first: the workdir was moved or copied together with its
      data, e.g. `/old/runs/demo/pretokenized/...` recorded by `/old/runs/demo/pretrain` is
      `/new/mine/pretokenized/...` beside `/new/mine/pretrain`.
    What cannot be found is returned as recorded, for the caller's error to name.
    """
    if not recorded or (os.path.isabs(recorded) and os.path.exists(recorded)):
        return recorded
    parts = [p for p in recorded.split(os.sep) if p]
    if not os.path.isabs(recorded):
        tails = [os.path.join(*parts)]
    else:
        tails = [os.path.join(*parts[-k:]) for k in range(len(parts) - 1, 0, -1)]
    for tail in tails:
        for base in _ancestors(near):
            candidate = os.path.join(base, tail)
            if os.path.exists(candidate):
                return candidate
    return recorded if os.path.isabs(recorded) else os.path.abspath(recorded)
