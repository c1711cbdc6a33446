"""The names of the files a workdir or dataset holds, in one place.

    pre-training workdir   config.json, checkpoints/, metrics.jsonl, tensorboard/, final_metrics.json,
                           .lock, judge/ (the attribute classifier `gptface eval edits` trains),
                           edits_eval.{json,md}, captions_eval.json
    VQ workdir             vq_config.json, checkpoints/, vq_eval.json, reconstructions.png, data/
    pre-tokenized dataset  text_tokenizer.model, codebook.npy, the shards (gptface_jax/train/pretokenize.py)

An export directory's names belong to its standalone reader (gptface_jax/serving/exported.py).
"""
CONFIG = "config.json"                  # the run's config, as resolved (inference and export read it back)
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"               # one row per logged step
TENSORBOARD = "tensorboard"
FINAL_METRICS = "final_metrics.json"    # the last step's metrics and evaluations (sweeps collect it)
LOCK = ".lock"                          # held while a run writes the workdir (runtime/workdir_lock.py)
JUDGE = "judge"
EDITS_EVAL = "edits_eval"               # .json and .md
CAPTIONS_EVAL = "captions_eval.json"

VQ_CONFIG = "vq_config.json"
VQ_EVAL = "vq_eval.json"
RECONSTRUCTIONS = "reconstructions.png"
VQ_DATA = "data"                        # SynthFaces built for a VQ run that was given no dataset

TOKENIZER = "text_tokenizer.model"      # the SentencePiece model the shards' text ids come from
CODEBOOK = "codebook.npy"               # the VQ code vectors (l2-normalised): image embeddings may start from them
