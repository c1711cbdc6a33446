"""GPTFace pre-training configs: `--config experiments/pretrain.py:VARIANT` (tiny, tiny16, base, large,
and the recipes tiny_paper, quality and demo).

Shapes follow DESIGN.md: base is the paper's BERT-base body over 256 px faces (16x16 VQ codes,
1024-entry codebook); tiny trains end to end on a 2-core CPU over 64 px SynthFaces. tiny16 is tiny
over 16x16 codes (experiments/vq.py:tiny16), base's token grid: 288 positions instead of 96, about
2.4x tiny's step time on 2 cores, and the only tiny tokenizer whose codes keep the expression.
Override any field on the command line, e.g. `--config.train.steps=100`.
"""
import ml_collections

# name: (layers, width, heads, mlp, image px, VQ downsampling, codebook, text length, vocab)
VARIANTS = {
    "tiny": (4, 128, 4, 512, 64, 8, 1024, 32, 1000),
    "tiny16": (4, 128, 4, 512, 64, 4, 1024, 32, 1000),
    "base": (12, 768, 12, 3072, 256, 16, 1024, 64, 32000),
    "large": (24, 1024, 16, 4096, 256, 16, 1024, 64, 32000),
}

# Recipes: a shape above plus the fields that make the recipe, each measured in BENCHMARKS.md
# ("Align before fuse: the recipe table").
RECIPES = {
    # DESIGN.md's objective as the paper states it: MILM + ITM on the fusion [CLS], nothing added
    # (the tiny shape's own objective; kept by name as the recipe table's first row)
    "tiny_paper": ("tiny", {}),
    # Align before fuse on the tiny shape: ITC on the unimodal passes (fan_in kernels, float32 compute;
    # see the fixed-batch table), a quarter of the ITM negatives mined from its similarities (half
    # set the match threshold for harder pairs than held-out ones: run q3 0.697 clean ITM at AUC 0.872,
    # run q4 0.779 at 0.882), the match logit reading the unimodal similarity, batch 128, under an hour
    # on 2 cores. Needs data.pretokenized: 60k faces (docs/model.md, "The quality run"). Without the
    # demo's caption-token head: over 1,600 steps it cut the caption's gain on the image tokens (0.080
    # to 0.034 nats) and guided edits fell from 0.498 to 0.387 (run qw1, docs/experiments.md).
    "quality": ("tiny", {
        "model.kernel_init": "fan_in", "model.compute_dtype": "float32",
        "model.itc_dim": 128, "model.itm_similarity": True, "loss.itc_weight": 1.0,
        "loss.mined_negative_fraction": 0.25,
        "train.batch_size": 128, "train.steps": 1600, "train.warmup_steps": 100,
        # an hour on any machine, ending cooled down: a machine slower than 2.2 s per step starts the
        # last 200 steps' linear cool-down early, when the budget leaves only them
        "train.time_budget_s": 3600.0, "train.cooldown_steps": 200,
        "train.log_every": 50, "train.checkpoint_every": 400,
        "evals.itm.every": 400, "evals.probe.every": 400, "evals.retrieval.every": 400,
    }),
}
# The demo's pre-training (`gptface demo`, stage 8): the quality recipe's first 200 steps, on its
# schedule, with the contrastive loss weighted 3x. At weight 1 the ITC loss sits at log(128) for about
# 200 steps (run q4) and a 200-step run ends where it starts; at weight 3 it leaves by step 100 at
# equal masked-modelling losses (runs p3 / p4, docs/experiments.md, "The ITC plateau"). Over all 1,600
# steps weight 3 gives that lead back (run q5), so the quality recipe keeps weight 1.
RECIPES["demo"] = ("tiny", {
    **RECIPES["quality"][1], "loss.itc_weight": 3.0, "train.steps": 200, "train.schedule_steps": 1600,
    # the text embedding keeps every caption token (model.itc_words; run w1 against w0: clean ITM 0.742
    # against 0.688, recall@5 0.078 / 0.048 against 0.052 / 0.024 in 12 minutes on the demo's data)
    "model.itc_words": True, "loss.itc_word_weight": 1.0,
    # the last 50 updates cool down to the end rate (run cd50 over seeds 0-2: clean ITM 0.682 / AUC 0.763
    # against 0.659 / 0.736, higher AUC on every seed, recall@5 0.048 / 0.040 against 0.042 / 0.038)
    "train.time_budget_s": 0.0, "train.cooldown_steps": 50, "train.log_every": 20, "train.checkpoint_every": 100,
    "evals.itm.every": 10**9, "evals.probe.every": 10**9, "evals.retrieval.every": 10**9,  # once, at the end
})


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    if arg in RECIPES:
        shape, fields = RECIPES[arg]
        config = get_config(shape)
        with config.unlocked():
            config.variant = arg
            for path, value in fields.items():
                *parents, leaf = path.split(".")
                node = config
                for name in parents:
                    node = node[name]
                node[leaf] = value
        return config
    if arg not in VARIANTS:
        raise ValueError(f"unknown pretrain variant {arg!r}; choose one of {sorted(VARIANTS) + sorted(RECIPES)}")
    layers, width, heads, mlp, image_size, downsample, codebook, text_len, vocab = VARIANTS[arg]
    tiny = arg.startswith("tiny")
    c = ml_collections.ConfigDict()
    c.variant = arg                       # a label: which variant a workdir's config.json started from
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    # output of `gptface data pretokenize` (what `gptface train` reads; SynthFaces or an ingested crawl)
    c.data.pretokenized = ""
    c.data.image_size = image_size
    c.data.worker_count = 0 if tiny else 8
    c.data.shuffle_seed = 0
    # Logical data shards (0: one per process). Fixing it makes the global batches independent of
    # the process count: a run can resume on another number of hosts and see the same data.
    c.data.num_shards = 0

    c.text = ml_collections.ConfigDict()
    c.text.vocab_size = vocab
    c.text.max_len = text_len

    c.vq = ml_collections.ConfigDict()
    c.vq.downsample = downsample
    c.vq.codebook_size = codebook

    c.model = ml_collections.ConfigDict()
    c.model.num_layers = layers
    c.model.width = width
    c.model.num_heads = heads
    c.model.mlp_dim = mlp
    c.model.dropout = 0.0 if tiny else 0.1
    c.model.compute_dtype = "bfloat16"
    # "einsum" (portable, attention-weight dropout) or "xla" / "cudnn" (jax.nn.dot_product_attention;
    # the fused GPU kernels; residual dropout only). On a GPU use "cudnn": 23% faster per step on
    # an H200 at base shape (BENCHMARKS.md)
    c.model.attention = "einsum"
    # "codebook": image-token embeddings start as a random projection of the VQ code vectors
    # (data.pretokenized/codebook.npy), so look-alike codes start close; "random": N(0, 0.02).
    c.model.image_embed_init = "codebook"
    # Dense kernels: "normal" (BERT's N(0, 0.02)) or "fan_in" (N(0, 1/fan_in): attention logits O(1) at
    # any width; at the tiny width 0.02 leaves attention uniform for hundreds of steps)
    c.model.kernel_init = "normal"
    # Residual stream between blocks: "float32", or "bfloat16" (half the activation traffic; the
    # layer norms still compute in float32). Base and large use bf16, as MaxText does.
    c.model.residual_dtype = "float32" if tiny else "bfloat16"
    c.model.tie_heads = True              # vocabulary heads share the input embedding tables
    # Memory and compile time at depth (BENCHMARKS.md, "Remat and scan"): remat "none" / "full" /
    # "dots_saveable"; scan_layers runs the blocks as one nn.scan. Checkpoints convert between layouts.
    c.model.remat = "none"
    c.model.scan_layers = False
    # Align before fuse (DESIGN.md 2): > 0 adds ITC projection heads of this size on the unimodal
    # [CLS] states; loss.itc_weight switches the contrastive loss on.
    c.model.itc_dim = 0
    # The match logit also reads the unimodal similarity (gain * ITC scale * cosine; model.ModelConfig):
    # ITM then follows what ITC has learnt. Needs loss.itc_weight > 0.
    c.model.itm_similarity = False
    # A head from the ITC text embedding to its caption's bag of tokens, trained by loss.itc_word_weight
    # (model.ModelConfig). Needs loss.itc_weight > 0.
    c.model.itc_words = False

    c.masking = ml_collections.ConfigDict()
    # Per-example masking mode probabilities: joint / image-generation / text-generation.
    c.masking.mode_probs = (0.5, 0.3, 0.2)
    c.masking.text_ratio = 0.2
    c.masking.image_ratio = 0.4
    c.masking.span_p = 0.2                # SpanBERT geometric span lengths
    c.masking.max_span = 10
    c.masking.replace_probs = (0.8, 0.1, 0.1)  # [MASK] / random token / keep
    c.masking.generation_min_ratio = 0.0  # 1.0: generation modes mask the whole generated modality
    # Examples left whole (no MILM targets): ITM also learns to judge complete pairs, as evaluation
    # and guided decoding (expected embeddings, no [MASK]) present them.
    c.masking.unmasked_fraction = 0.0

    c.loss = ml_collections.ConfigDict()
    c.loss.text_weight = 1.0
    c.loss.image_weight = 1.0
    c.loss.itm_weight = 1.0
    # Fraction of a batch whose caption is swapped (ITM negatives; no masked-modelling targets).
    c.loss.negative_fraction = 0.5
    c.loss.hard_negative_fraction = 0.0
    c.loss.caption_dropout = 0.1
    # Image-text contrastive loss on unimodal passes (needs model.itc_dim > 0): "softmax" (InfoNCE)
    # or "sigmoid" (SigLIP); captions identical to an image's own count as its positives. Softmax:
    # at batch 128 the sigmoid loss did not even fit one fixed batch through the blocks (docs/experiments.md,
    # "Align before fuse: what lets ITC learn", 2026-12-02).
    c.loss.itc_weight = 0.0
    c.loss.itc_kind = "softmax"
    # Weight of the caption-token loss on the ITC text embedding (needs model.itc_words).
    c.loss.itc_word_weight = 0.0
    # This share of the ITM negatives is re-drawn in the step from the ITC similarities: a wrong
    # caption for the image or a wrong image for the caption, likelier the more alike (gptface_jax/train/negatives.py)
    c.loss.mined_negative_fraction = 0.0
    # Vocabulary heads run on at most this fraction of a batch's text / image positions (masked
    # ones first). Expected masked fractions are ~0.12 / ~0.2 (positives only); overflow is logged.
    c.loss.text_capacity = 0.5
    c.loss.image_capacity = 0.5

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300 if tiny else 500_000
    c.train.batch_size = 32 if tiny else 4096
    c.train.accum_steps = 1
    c.train.learning_rate = 1e-3 if tiny else 1e-4
    c.train.warmup_steps = 30 if tiny else 10_000
    # > 0: the warm-up + cosine spans this many steps instead of train.steps (a run stopped early on a
    # longer run's schedule: the demo is the first 200 steps of a 1,600-step schedule)
    c.train.schedule_steps = 0
    # > 0: the run's last cooldown_steps updates take the rate linearly from where the cosine stands to
    # its end value; a time budget that would stop the run first starts them earlier, at run time
    # (gptface_jax/runtime/optimizer.py, gptface_jax/train/train_loop.py)
    c.train.cooldown_steps = 0
    c.train.weight_decay = 0.01
    c.train.grad_clip = 1.0
    c.train.b1 = 0.9                      # AdamW moments
    c.train.b2 = 0.98
    c.train.end_lr_fraction = 0.1          # the cosine ends at this fraction of learning_rate
    c.train.log_every = 10 if tiny else 100
    c.train.checkpoint_every = 100 if tiny else 5_000
    c.train.keep_checkpoints = 3
    c.train.time_budget_s = 0.0           # > 0: stop when this wall-clock budget is spent (saved, evaluated;
    #                                       a resumed run counts on from its checkpoint's training time)
    # Divergence guard (gptface_jax/train/train_loop.py): stop, unsaved, when the loss passes k x its recent
    # median or the parameter norm k x its start (0: off). Learning rates that diverge fast stay finite
    # for a while; this keeps them out of the checkpoints.
    c.train.divergence_factor = 10.0

    # Evaluators in the loop (gptface_jax/evals/evaluators.py): each runs every `every` steps and at the end;
    # every = 0 switches one off (--config.evals.probe.every=0).
    every = 500 if tiny else 10_000
    c.evals = ml_collections.ConfigDict()
    # held-out ITM on clean and weak pairs, and the cross-modal gains
    c.evals.itm = ml_collections.ConfigDict(dict(type="itm", every=every, max_examples=1000 if tiny else 10_000))
    # linear probes of the image-only [CLS] on held-out labels: representation quality as it trains
    c.evals.probe = ml_collections.ConfigDict(dict(type="probe", every=every, max_examples=1000 if tiny else 5000,
                                                   feature="cls"))
    # held-out image <-> text recall@1/@5 among 500 faces by the ITC embeddings (runs when model.itc_dim > 0)
    c.evals.retrieval = ml_collections.ConfigDict(dict(type="retrieval", every=every, max_examples=500))

    c.mesh = ml_collections.ConfigDict()
    c.mesh.axes = ("data", "fsdp", "tensor")
    c.mesh.shape = (-1, 1, 1)             # -1: all remaining devices
    # Logical axis name -> mesh axis (or None: replicated). Every array dimension is named.
    c.mesh.logical_rules = (
        ("batch", ("data", "fsdp")),
        ("embed", "fsdp"),
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("kv", None),
        ("vocab", "tensor"),
        ("length", None),
        ("layers", None),                 # the stacked axis of scan_layers
    )
    c.lock()
    return c


def get_sweeps(arg: str = "tiny") -> dict:
    """Named sweeps for `gptface sweep --config experiments/pretrain.py:ARG --sweep NAME`."""
    from gptface_jax.sweeps import product, sweep, zipit
    lr = [1e-3, 3e-3] if arg.startswith("tiny") else [5e-5, 1e-4, 2e-4]
    return {
        "lr": sweep("train.learning_rate", lr),
        # masking budgets move together: a harder text task goes with a harder image task
        "masking": zipit(sweep("masking.text_ratio", [0.15, 0.25]), sweep("masking.image_ratio", [0.3, 0.5])),
        "itm": product(sweep("loss.itm_weight", [0.5, 1.0]), sweep("loss.hard_negative_fraction", [0.0, 0.5])),
    }
