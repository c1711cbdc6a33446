"""The facial-linguistic transformer: one bidirectional stream over `[CLS] text [SEP] image`.

Pure Flax Linen: `init` gives a parameter pytree, `apply` is a pure function of it. Every parameter
and the main activations carry logical axis names ('batch', 'length', 'embed', 'mlp', 'heads',
'kv', 'vocab'); `config.mesh.logical_rules` maps them to mesh axes. Parameters are float32;
matmuls run in `compute_dtype` (bfloat16 by default); layer norms and the softmax run in float32.

The big vocabulary heads are separate methods that take gathered positions, so a loss evaluates
them on masked positions only (`gather_positions`).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.text_tokenizer import CLS, PAD, SEP


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    text_vocab: int
    codebook_size: int
    max_text_len: int
    image_grid: int
    num_layers: int = 4
    width: int = 128
    num_heads: int = 4
    mlp_dim: int = 512
    dropout: float = 0.0
    compute_dtype: str = "bfloat16"
    tie_heads: bool = True
    attention: str = "einsum"     # or "xla" / "cudnn": jax.nn.dot_product_attention (fused on GPU)
    # Dense kernels: "normal" is BERT's N(0, 0.02); "fan_in" is N(0, 1/fan_in), which keeps the
    # attention logits O(1) at any width (at width 128, 0.02 gives logits of std ~0.05: uniform
    # attention and a long plateau before any token attends to another).
    kernel_init: str = "normal"
    # The residual stream between blocks: "float32", or "bfloat16" (as MaxText keeps activations),
    # which halves its memory traffic; layer norms still compute in float32.
    residual_dtype: str = "float32"
    # Memory at scale: "none", "full" (recompute each block in the backward pass) or "dots_saveable"
    # (keep the matmul outputs, recompute the rest); see REMAT_POLICIES.
    remat: str = "none"
    # The blocks as one nn.scan over stacked parameters ('layers' axis): compile time stops growing
    # with depth. Checkpoints convert between both layouts (stack_layers / unstack_layers).
    scan_layers: bool = False
    # Align before fuse: > 0 adds projection heads from the unimodal [CLS] states (a text-only and an
    # image-only pass of the same blocks) to L2-normalised embeddings of this size, for ITC.
    itc_dim: int = 0
    # The match judgement also reads the unimodal embeddings: the match logit gains
    # gain * exp(itc_log_scale) * cos(text, image). The fusion [CLS] head alone stays at chance long
    # after ITC ranks partners (BENCHMARKS.md, "Align before fuse: the recipe"); `match_logits` is
    # the model's judgement, `__call__`'s itm_logits the fusion head's part. Needs itc_dim.
    itm_similarity: bool = False
    # A head from the ITC text embedding to its caption's bag of tokens (loss.itc_word_weight): a
    # contrastive loss alone keeps in each embedding only the facts the other side already matches, so
    # the text side dropped the expression and the smile as the image side had (run ibf1), and neither
    # ever started; with the head the text side holds them (run w1, docs/experiments.md). Needs itc_dim.
    itc_words: bool = False

    def kernel_std(self, fan_in: int) -> float:
        return 0.02 if self.kernel_init == "normal" else fan_in ** -0.5

    @property
    def image_mask_id(self) -> int:  # one extra image-table row: [MASK] for image tokens
        return self.codebook_size

    @property
    def seq_len(self) -> int:
        return 2 + self.max_text_len + self.image_grid ** 2

    @classmethod
    def from_config(cls, config, image_grid: int | None = None) -> ModelConfig:
        m = config.model
        return cls(text_vocab=config.text.vocab_size, codebook_size=config.vq.codebook_size,
                   max_text_len=config.text.max_len,
                   image_grid=image_grid or config.data.image_size // config.vq.downsample,
                   num_layers=m.num_layers, width=m.width, num_heads=m.num_heads, mlp_dim=m.mlp_dim,
                   dropout=m.dropout, compute_dtype=m.compute_dtype, attention=m.attention,
                   tie_heads=m.tie_heads, kernel_init=m.kernel_init, residual_dtype=m.residual_dtype,
                   remat=m.remat, scan_layers=m.scan_layers, itc_dim=m.itc_dim,
                   itm_similarity=m.itm_similarity, itc_words=m.itc_words)


def _init(scale: float = 0.02, axes: tuple = ()):
    return nn.with_logical_partitioning(nn.initializers.normal(scale), axes)


def _constant(value: float, axes: tuple):
    return nn.with_logical_partitioning(nn.initializers.constant(value), axes)


def _zeros(axes: tuple):
    return nn.with_logical_partitioning(nn.initializers.zeros, axes)


def padded(n: int, multiple: int = 128) -> int:
    """Vocabulary tables are padded to a multiple of 128 rows, so any 'vocab' sharding divides them."""
    return -(-n // multiple) * multiple


class Projection(nn.Module):
    """x @ kernel + bias over the last `len(in_axes)` axes of x, with named kernel axes.

    Written out (rather than nn.DenseGeneral, which initialises a flattened kernel) so each kernel
    is created in its real shape and carries one logical name per dimension.
    """

    out_shape: tuple[int, ...]
    in_axes: tuple[str, ...]
    out_axes: tuple[str | None, ...]
    dtype: str = "float32"
    std: float = 0.02

    @nn.compact
    def __call__(self, x):
        n_in = len(self.in_axes)
        in_shape = x.shape[-n_in:]
        kernel = self.param("kernel", _init(self.std, self.in_axes + self.out_axes), in_shape + self.out_shape)
        bias = self.param("bias", _zeros(self.out_axes), self.out_shape)
        letters = "abcdefgh"
        contract, out = letters[:n_in], letters[n_in:n_in + len(self.out_shape)]
        dtype = jnp.dtype(self.dtype)
        y = jnp.einsum(f"...{contract},{contract}{out}->...{out}", x.astype(dtype), kernel.astype(dtype))
        return y + bias.astype(dtype)


class LayerNorm(nn.Module):
    """float32 layer norm whatever the compute dtype."""

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (d,))
        bias = self.param("bias", _zeros(("embed",)), (d,))
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        return (x32 - mean) * jax.lax.rsqrt(var + 1e-6) * scale + bias


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, key_mask, deterministic: bool):
        c = self.config
        dtype = jnp.dtype(c.compute_dtype)
        head_dim = c.width // c.num_heads
        def proj(name):
            return Projection((c.num_heads, head_dim), ("embed",), ("heads", "kv"), c.compute_dtype,
                              c.kernel_std(c.width), name=name)(x)
        q, k, v = proj("query"), proj("key"), proj("value")
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
        if c.attention != "einsum":  # fused kernels: no dropout on the attention weights
            mask = key_mask[:, None, None, :]
            if c.attention == "cudnn":  # cuDNN takes the mask as a bias of full (B, 1, S, S) shape
                mask = jnp.broadcast_to(mask, (x.shape[0], 1, x.shape[1], x.shape[1]))
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=c.attention)
        else:
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim).astype(jnp.float32)
            scores = jnp.where(key_mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
            weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
            weights = nn.Dropout(c.dropout)(weights, deterministic=deterministic)
            out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return Projection((c.width,), ("heads", "kv"), ("embed",), c.compute_dtype, c.kernel_std(c.width),
                          name="out")(out)


class Block(nn.Module):
    config: ModelConfig
    scanned: bool = False  # under nn.scan the block is a scan body: (carry, None) out

    @nn.compact
    def __call__(self, x, key_mask, deterministic: bool):
        c = self.config
        dtype = jnp.dtype(c.compute_dtype)
        h = Attention(c, name="attention")(LayerNorm(name="ln_attention")(x).astype(dtype), key_mask, deterministic)
        x = x + nn.Dropout(c.dropout)(h, deterministic=deterministic).astype(x.dtype)
        h = LayerNorm(name="ln_mlp")(x).astype(dtype)
        h = Projection((c.mlp_dim,), ("embed",), ("mlp",), c.compute_dtype, c.kernel_std(c.width), name="mlp_in")(h)
        h = nn.with_logical_constraint(nn.gelu(h), ("batch", "length", "mlp"))
        h = Projection((c.width,), ("mlp",), ("embed",), c.compute_dtype, c.kernel_std(c.mlp_dim), name="mlp_out")(h)
        x = x + nn.Dropout(c.dropout)(h, deterministic=deterministic).astype(x.dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return (x, None) if self.scanned else x


REMAT_POLICIES = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
                  "dots_saveable": jax.checkpoint_policies.dots_saveable}


def make_blocks(c: ModelConfig):
    """The body: `num_layers` Blocks as a list, or one nn.scan over stacked parameters; each
    block rematerialised by `c.remat`. Either way called as blocks(x, key_mask, deterministic)."""
    block = Block
    if c.remat != "none":  # deterministic (argument 3, counting self) is a Python bool: static
        block = nn.remat(Block, policy=REMAT_POLICIES[c.remat], static_argnums=(3,), prevent_cse=not c.scan_layers)
    if not c.scan_layers:
        return [block(c, name=f"block_{i}") for i in range(c.num_layers)]
    return nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                   in_axes=(nn.broadcast, nn.broadcast), length=c.num_layers,
                   metadata_params={nn.PARTITION_NAME: "layers"})(c, scanned=True, name="blocks")


def _lookup(table, ids):
    """Rows of an embedding table (vocab, embed) as activations (batch, length, embed).

    The table's embed axis is gathered first (FSDP's all-gather of a weight before use): a lookup of
    fsdp-sharded rows by batch-sharded ids made SPMD replicate whole activations (and their
    gradients) on meshes with both data and fsdp axes."""
    rows = nn.with_logical_constraint(table, ("vocab", None))[ids]
    return nn.with_logical_constraint(rows, ("batch", "length", "embed"))


def _l2_normalise(v):
    return v * jax.lax.rsqrt(jnp.sum(jnp.square(v), -1, keepdims=True) + 1e-12)


class GPTFace(nn.Module):
    """Returns hidden states, the [CLS] vector and ITM logits; vocabulary heads are methods."""

    config: ModelConfig

    def setup(self):
        c = self.config
        self.text_embed = self.param("text_embed", _init(axes=("vocab", "embed")), (padded(c.text_vocab), c.width))
        self.image_embed = self.param("image_embed", _init(axes=("vocab", "embed")),
                                      (padded(c.codebook_size + 1), c.width))
        self.text_pos = self.param("text_pos", _init(axes=("length", "embed")), (c.max_text_len + 2, c.width))
        self.image_row = self.param("image_row", _init(axes=("length", "embed")), (c.image_grid, c.width))
        self.image_col = self.param("image_col", _init(axes=("length", "embed")), (c.image_grid, c.width))
        self.segment = self.param("segment", _init(axes=(None, "embed")), (2, c.width))
        self.blocks = make_blocks(c)
        self.final_ln = LayerNorm()
        self.itm_head = Projection((2,), ("embed",), (None,), "float32", c.kernel_std(c.width), name="itm_head")
        self.text_bias = self.param("text_bias", _zeros(("vocab",)), (padded(c.text_vocab),))
        self.image_bias = self.param("image_bias", _zeros(("vocab",)), (padded(c.codebook_size),))
        if c.itc_dim:
            std = c.kernel_std(c.width)
            self.itc_text_proj = self.param("itc_text_proj", _init(std, ("embed", None)), (c.width, c.itc_dim))
            self.itc_image_proj = self.param("itc_image_proj", _init(std, ("embed", None)), (c.width, c.itc_dim))
            # SigLIP's start: logit scale 10, bias -10 (-5, about -log(batch) at batch 128, collapsed alike
            # on the 16-pair check recorded in docs/experiments.md, "Align before fuse")
            self.itc_log_scale = self.param("itc_log_scale", _constant(2.302585, ()), ())
            self.itc_bias = self.param("itc_bias", _constant(-10.0, ()), ())
        if c.itc_words:
            self.itc_word_head = self.param("itc_word_head", _init(c.kernel_std(c.itc_dim), (None, "vocab")),
                                            (c.itc_dim, padded(c.text_vocab)))
        if c.itm_similarity:  # 1: the term starts at the contrastive loss's own scale
            self.itm_similarity_gain = self.param("itm_similarity_gain", _constant(1.0, ()), ())
        if not c.tie_heads:
            self.text_out = self.param("text_out", _init(axes=("vocab", "embed")), (padded(c.text_vocab), c.width))
            self.image_out = self.param("image_out", _init(axes=("vocab", "embed")), (padded(c.codebook_size), c.width))

    def embed_text(self, text_ids):
        """(B, L) text ids -> `[CLS] text [SEP]` embedded (B, L + 2, D) and its key mask."""
        b = text_ids.shape[0]
        tokens = jnp.concatenate([jnp.full((b, 1), CLS, text_ids.dtype), text_ids,
                                  jnp.full((b, 1), SEP, text_ids.dtype)], 1)
        return _lookup(self.text_embed, tokens) + self.text_pos[None] + self.segment[0], tokens != PAD

    def embed_image(self, image_codes):
        """(B, N) image codes -> (B, N, D) with 2-D positions."""
        c = self.config
        rows = jnp.repeat(self.image_row, c.image_grid, axis=0)
        cols = jnp.tile(self.image_col, (c.image_grid, 1))
        return _lookup(self.image_embed, image_codes) + (rows + cols)[None] + self.segment[1]

    def embed(self, text_ids, image_codes):
        """(B, L) text ids with [CLS]/[SEP] added here, (B, N) image codes -> (B, S, D) and key mask."""
        text, text_mask = self.embed_text(text_ids)
        x = jnp.concatenate([text, self.embed_image(image_codes)], axis=1)
        key_mask = jnp.concatenate([text_mask, jnp.ones(image_codes.shape, bool)], axis=1)
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), key_mask

    def encode(self, x, key_mask, deterministic: bool):
        """The blocks and the final norm over any embedded sequence (joint or one modality alone)."""
        x = nn.with_logical_constraint(x, ("batch", "length", "embed")).astype(jnp.dtype(self.config.residual_dtype))
        if self.config.scan_layers:
            x, _ = self.blocks(x, key_mask, deterministic)
        else:
            for block in self.blocks:
                x = block(x, key_mask, deterministic)
        return self.final_ln(x)

    def itc_text(self, text_ids, deterministic: bool = True, inputs_embeds=None):
        """(B, L) text ids -> (B, E) L2-normalised embedding of the text-only pass `[CLS] text [SEP]`.

        `inputs_embeds` (B, L + 2, D), when given, replaces the embedded sequence (guidance relaxes tokens).
        """
        text, text_mask = self.embed_text(text_ids)
        text = text if inputs_embeds is None else inputs_embeds
        cls = self.encode(text, text_mask, deterministic)[:, 0]
        return _l2_normalise(cls.astype(jnp.float32) @ self.itc_text_proj)

    def itc_image(self, image_codes, deterministic: bool = True, inputs_embeds=None):
        """(B, N) image codes -> (B, E) L2-normalised embedding of the image-only pass `[CLS] image`.

        `inputs_embeds` (B, N, D), when given, replaces the embedded image (guidance relaxes tokens).
        """
        image = self.embed_image(image_codes) if inputs_embeds is None else inputs_embeds
        cls = (self.text_embed[CLS] + self.text_pos[0] + self.segment[0])[None, None]
        image = jnp.concatenate([jnp.broadcast_to(cls, (image.shape[0], 1, cls.shape[-1])).astype(image.dtype), image],
                                axis=1)
        cls = self.encode(image, jnp.ones(image.shape[:2], bool), deterministic)[:, 0]
        return _l2_normalise(cls.astype(jnp.float32) @ self.itc_image_proj)

    def itc_embeddings(self, text_ids, image_codes, deterministic: bool = True):
        """Unimodal passes -> (text (B, E), image (B, E)) L2-normalised embeddings.

        The text pass sees `[CLS] text [SEP]` only and the image pass `[CLS] image` only: neither
        sequence holds a token of the other modality, and each costs what its own tokens cost.
        """
        return self.itc_text(text_ids, deterministic), self.itc_image(image_codes, deterministic)

    def __call__(self, text_ids, image_codes, deterministic: bool = True, inputs_embeds=None):
        """`inputs_embeds` (optional) replaces the embedded sequence: guidance relaxes tokens to expected embeddings."""
        x, key_mask = self.embed(text_ids, image_codes)
        if inputs_embeds is not None:
            x = inputs_embeds
        hidden = self.encode(x, key_mask, deterministic)
        itm = self.itm_head(hidden[:, 0]).astype(jnp.float32)
        return {"hidden": hidden, "cls": hidden[:, 0], "itm_logits": itm}

    def similarity_term(self, itc_logit):
        """(B,) ITC logits (exp(itc_log_scale) x cosine) of pairs -> their (B,) share of the match logit."""
        return self.itm_similarity_gain * itc_logit

    def match_logits(self, text_ids, image_codes, deterministic: bool = True, inputs_embeds=None):
        """(B, 2) ITM logits of whole pairs: the fusion head, plus the unimodal similarity with
        `itm_similarity`. `inputs_embeds` (the joint sequence, as in `__call__`) feeds all three passes."""
        itm = self(text_ids, image_codes, deterministic, inputs_embeds)["itm_logits"]
        if not self.config.itm_similarity:
            return itm
        n_text = text_ids.shape[1] + 2  # [CLS] text [SEP]
        relaxed = (lambda part: None) if inputs_embeds is None else (lambda part: inputs_embeds[:, part])
        text = self.itc_text(text_ids, deterministic, relaxed(slice(None, n_text)))
        image = self.itc_image(image_codes, deterministic, relaxed(slice(n_text, None)))
        return itm.at[:, 1].add(self.similarity_term(jnp.exp(self.itc_log_scale) * (text * image).sum(-1)))

    def _vocab_logits(self, hidden, table, bias, size: int):
        dtype = jnp.dtype(self.config.compute_dtype)
        logits = jnp.einsum("...d,vd->...v", hidden.astype(dtype), table[: bias.shape[0]].astype(dtype))
        return (logits.astype(jnp.float32) + bias)[..., :size]  # padding rows are never predicted

    def text_logits(self, hidden):
        """Text-vocabulary logits (float32) of hidden states (…, D), e.g. gathered masked positions."""
        table = self.text_embed if self.config.tie_heads else self.text_out
        return self._vocab_logits(hidden, table, self.text_bias, self.config.text_vocab)

    def image_logits(self, hidden):
        """Codebook logits (float32); the image [MASK] row is never a target."""
        table = self.image_embed if self.config.tie_heads else self.image_out
        return self._vocab_logits(hidden, table, self.image_bias, self.config.codebook_size)


def dropout_rng(seed: int, step):
    """The dropout key of training step `step`: a stream of its own, drawn again identically on resume."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step)


def example_inputs(config: ModelConfig, batch: int = 1):
    """Zero (text ids, image codes) of the model's shapes: what init and shape inference trace."""
    return (jnp.zeros((batch, config.max_text_len), jnp.int32), jnp.zeros((batch, config.image_grid ** 2), jnp.int32))


def abstract_variables(model: GPTFace, boxed: bool = False):
    """The model's variables as ShapeDtypeStructs (no FLOPs, no memory); `boxed` keeps the logical axes."""
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *example_inputs(model.config)))
    return variables if boxed else nn.meta.unbox(variables)


def text_hidden(hidden, config: ModelConfig):
    """The text part (B, L, D) of the sequence: after [CLS], before [SEP]."""
    return hidden[:, 1:1 + config.max_text_len]


def image_hidden(hidden, config: ModelConfig):
    return hidden[:, 2 + config.max_text_len:]


def gather_positions(mask, count: int):
    """Indices (B, count) of up to `count` True positions per row (masked first) and their validity.

    A static `count` keeps shapes fixed under jit; rows with fewer masked positions pad with
    unmasked ones, flagged invalid so the loss ignores them.
    """
    order = jnp.argsort(~mask, axis=-1, stable=True)[:, :count]
    return order, jnp.take_along_axis(mask, order, axis=-1)


# --- layer layouts: checkpoints written with scan_layers restore into the loop and back -------

def _is_layer_dict(x) -> bool:
    return isinstance(x, dict) and ("blocks" in x or "block_0" in x)


def has_stacked_layers(tree) -> bool:
    """Does any dict in `tree` hold the scanned body ('blocks') rather than 'block_0', 'block_1', ...?"""
    found = []
    jax.tree.map(lambda x: found.append("blocks" in x) if _is_layer_dict(x) else None, tree, is_leaf=_is_layer_dict)
    return any(found)


def stack_layers(tree, stack=lambda leaves: jnp.stack(leaves)):
    """Every {'block_0': t0, 'block_1': t1, ...} in `tree` (params, optimizer moments) -> {'blocks': stacked}.

    `stack` combines one leaf of each layer (default jnp.stack; abstract targets pass their own).
    """
    def convert(x):
        if not (isinstance(x, dict) and "block_0" in x):
            return x
        n = sum(1 for k in x if k.startswith("block_"))
        rest = {k: v for k, v in x.items() if not k.startswith("block_")}
        layers = [x[f"block_{i}"] for i in range(n)]
        return {**rest, "blocks": jax.tree.map(lambda *leaves: stack(list(leaves)), *layers)}
    return jax.tree.map(convert, tree, is_leaf=_is_layer_dict)


def unstack_layers(tree, take=lambda leaf, i: leaf[i]):
    """The inverse of stack_layers: {'blocks': stacked} -> {'block_0': ..., 'block_1': ...}."""
    def convert(x):
        if not (isinstance(x, dict) and "blocks" in x):
            return x
        n = jax.tree.leaves(x["blocks"])[0].shape[0]
        rest = {k: v for k, v in x.items() if k != "blocks"}
        return {**rest, **{f"block_{i}": jax.tree.map(lambda leaf, i=i: take(leaf, i), x["blocks"]) for i in range(n)}}
    return jax.tree.map(convert, tree, is_leaf=_is_layer_dict)


def codebook_embeddings(codebook: np.ndarray, width: int, seed: int, scale: float = 0.02) -> np.ndarray:
    """Initial image-token embeddings from the VQ code vectors: a random projection to `width`.

    Codes that look alike start close together, so what an image shows (hair colour, glasses,
    a beard) is linearly readable from its tokens at step 0 instead of being learned code by code
    from 1024 unrelated random vectors. Rows get the same scale as the random init.
    """
    unit = codebook / np.maximum(np.linalg.norm(codebook, axis=1, keepdims=True), 1e-12)
    projection = np.random.default_rng(seed).normal(0.0, scale, (codebook.shape[1], width))
    return (unit @ projection).astype(np.float32)
