"""VQ image-tokenizer configs: `--config experiments/vq.py:VARIANT` (tiny, tiny16, base).

tiny: 64 px SynthFaces -> 8x8 codes from a 1024-entry codebook, sized to train on a 2-core CPU in
about 10 minutes (the input is cut into 4x4 patches first, so every conv runs at 16x16 or 8x8).
DESIGN.md's tiny sketch says 256 codes; at 8x8 tokens that capped held-out PSNR near 22.5 dB in the
10-minute budget, and 1024 codes cost nothing measurable (BENCHMARKS.md has both runs).
tiny16: the same 64 px faces -> 16x16 codes (one level of 128 channels after the 4x4 patches), the
base shape's token grid. In the same 10-minute budget it reaches 26.45 dB against 24.13 dB, and
expression survives its reconstructions (a reader trained on them gets 0.75 on 5 classes, 0.49
through 8x8 codes; docs/experiments.md, "16x16 codes keep expression").
base: 256 px faces -> 16x16 codes from 1024 entries, the DESIGN.md base shape.
"""
import ml_collections

VARIANTS = {
    # name: image px, downsample, codebook, code dim, channels per level, res blocks, patch, steps, batch
    "tiny": (64, 8, 1024, 32, (64, 128), 1, 4, 1550, 64),
    "tiny16": (64, 4, 1024, 32, (128,), 1, 4, 1550, 64),
    "base": (256, 16, 1024, 32, (128, 128, 256, 256, 512), 2, 1, 400_000, 256),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    if arg not in VARIANTS:
        raise ValueError(f"unknown vq variant {arg!r}; choose one of {sorted(VARIANTS)}")
    size, down, codebook, code_dim, channels, res_blocks, patch, steps, batch = VARIANTS[arg]
    tiny = arg.startswith("tiny")
    c = ml_collections.ConfigDict()
    c.variant = arg
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""                   # empty: SynthFaces written to <workdir>/data
    c.data.num_train = 20_000 if tiny else 1_000_000
    c.data.num_test = 500 if tiny else 10_000
    c.data.image_size = size
    c.data.worker_count = 0 if tiny else 8

    c.vq = ml_collections.ConfigDict()
    c.vq.downsample = down
    c.vq.codebook_size = codebook
    c.vq.code_dim = code_dim
    c.vq.channels = channels
    c.vq.res_blocks = res_blocks
    c.vq.patch = patch
    c.vq.beta = 0.25
    c.vq.compute_dtype = "float32" if tiny else "bfloat16"
    c.vq.restart_every = 100          # steps between dead-code restarts
    c.vq.dead_usage = 0.03            # restart codes used less than this x the uniform rate (EMA)
    c.vq.usage_decay = 0.99

    c.loss = ml_collections.ConfigDict()
    c.loss.l1_weight = 0.0 if tiny else 0.1  # PSNR is an L2 measure; L1 (sharper edges) cost 0.4 dB on tiny
    c.loss.l2_weight = 1.0
    # Reconstruction weight inside named face regions (gptface_jax/generate/regions.py, comma-separated),
    # 1 elsewhere, renormalised to mean 1: spends the codes' capacity where the facts are, e.g.
    # region="expression" (brows, eyes, mouth), which an unweighted 8x8 tokenizer blurs away.
    c.loss.region = ""
    c.loss.region_weight = 1.0
    c.loss.gan_weight = 0.0           # > 0: patch-GAN hinge loss after gan_start steps
    c.loss.gan_start = 2000

    c.train = ml_collections.ConfigDict()
    c.train.steps = steps
    c.train.time_budget_s = 600.0 if tiny else 0.0  # stop early when the wall-clock budget is spent (0: off)
    # Divergence guard (gptface_jax/train/train_loop.py): stop, unsaved, when the loss passes k x its recent
    # median or the parameter norm k x its start (0: off). Learning rates that diverge fast stay finite
    # for a while; this keeps them out of the checkpoints.
    c.train.divergence_factor = 10.0
    c.train.batch_size = batch
    c.train.learning_rate = 4e-3 if tiny else 4e-4
    c.train.warmup_steps = 200 if tiny else 5000
    c.train.weight_decay = 0.0
    c.train.grad_clip = 1.0
    c.train.b1 = 0.9                      # AdamW moments
    c.train.b2 = 0.99
    c.train.end_lr_fraction = 0.05          # the cosine ends at this fraction of learning_rate
    c.train.cooldown_steps = 0              # > 0: a linear cool-down over the last updates (see pretrain.py)
    c.train.log_every = 50 if tiny else 100
    c.train.checkpoint_every = 500 if tiny else 5000
    c.train.keep_checkpoints = 2

    # held-out reconstruction (PSNR, codebook use; reconstructions.png) every `every` steps and at the end
    c.evals = ml_collections.ConfigDict()
    c.evals.reconstruction = ml_collections.ConfigDict(dict(type="reconstruction", every=1000 if tiny else 5000))

    c.mesh = ml_collections.ConfigDict()
    c.mesh.axes = ("data", "fsdp", "tensor")
    c.mesh.shape = (-1, 1, 1)
    c.mesh.logical_rules = (("batch", ("data", "fsdp")),)
    c.lock()
    return c
