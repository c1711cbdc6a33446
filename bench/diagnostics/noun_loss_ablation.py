"""Which loss drowns the image signal? Real captions with one subject noun, every caption token masked.

'noun': the loss scores only the subject noun's position; 'all': every caption token (text
generation from the image, as pre-training does). Same examples, model, optimizer and seed; prints
the held-out subject-noun AUC (true vs shuffled images) every 100 steps. 'half': a random half of
each caption's other tokens stays visible and every masked token is scored (context lowers the
noise of the template words; the noun is always masked). 'idf': every caption token masked and
scored, each weighted by its inverse document frequency over the training captions.
'salient_then_all': as 'mi_then_all', but in the warm-up only
those tokens are masked and the rest of the caption stays visible (salient-span masking): the
template then fixes where an attribute word goes, and only the image tells which one.
'noun_then_all': the noun alone for the first half of the steps, then every token. 'mi_then_all':
the same, but the first half scores the 40 tokens whose presence shares the most information with
the image's codes (found from the data, no word list), wherever they occur. Every report also gives
the held-out informative-token gain: log p of those 40 tokens with the own image minus with another
face's image (nats per token, all caption tokens masked), which measures every attribute at once.

    python bench/diagnostics/noun_loss_ablation.py PRETOKENIZED_DIR noun|all|half|idf|noun_then_all|mi_then_all|salient_then_all STEPS
"""
import os, sys, time
import jax, jax.numpy as jnp, numpy as np, optax, flax.linen as nn
from gptface_jax.model import GPTFace, ModelConfig, text_hidden
from gptface_jax.itm_eval import auc
from data_pipelines.shards import ShardSource
from data_pipelines.informative_tokens import informative_tokens
from data_pipelines.text_tokenizer import MASK, NUM_SPECIAL, TextTokenizer
P, which, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = TextTokenizer(f"{P}/text_tokenizer.model")
M = [tok.sp.encode(w)[0] for w in ("man", "guy", "gentleman", "dude")]; F = [tok.sp.encode(w)[0] for w in ("woman", "lady", "gal")]
def load(split, n):
    s = ShardSource(P, split); T, I, Y, POS = [], [], [], []
    for i in range(min(n, len(s))):
        r = s[i]; t = np.asarray(r["text_ids"]).astype(np.int32); h = np.flatnonzero(np.isin(t, M + F))
        if len(h) == 1:
            T.append(t); I.append(np.asarray(r["image_codes"]).astype(np.int32)); Y.append(int(r["attributes"][0])); POS.append(h[0])
    return np.stack(T), np.stack(I), np.array(Y), np.array(POS)
T, I, Y, POS = load("train", 20000); Tt, It, Yt, POSt = load("test", 500)
print(len(T), "train captions with one subject noun", flush=True)
_df = np.zeros(1000)
for r in T:
    _df[np.unique(r[r > 0])] += 1
IDF = jnp.asarray(np.log(len(T) / np.maximum(_df, 1)), jnp.float32)


INFORMATIVE = informative_tokens(T, I, vocab_size=1000, codebook_size=1024, num_special=NUM_SPECIAL, k=int(os.environ.get('SALIENT_K', 40)))
print("image-informative tokens:", [tok.sp.id_to_piece(int(v)) for v in INFORMATIVE[:25]], flush=True)
INFORMATIVE_MASK = jnp.zeros(1000, bool).at[jnp.asarray(INFORMATIVE)].set(True)
cfg = ModelConfig(text_vocab=1000, codebook_size=1024, max_text_len=32, image_grid=8, compute_dtype="float32",
                  kernel_init=os.environ.get("KERNEL_INIT", "normal"))
m = GPTFace(cfg)
params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), jnp.asarray(T[:1]), jnp.asarray(I[:1])))
tx = optax.adamw(1e-3, weight_decay=0.01); o = tx.init(params)
def lp(p, t, img, shown=None):
    masked = jnp.where(t > 0, MASK, 0) if shown is None else jnp.where(shown, t, jnp.where(t > 0, MASK, 0))
    out = m.apply(p, masked, img)
    return jax.nn.log_softmax(m.apply(p, text_hidden(out["hidden"], cfg), method=GPTFace.text_logits), -1)
def loss(p, t, img, pos, shown, noun_only):
    salient = which == "salient_then_all"
    visible = shown if which == "half" else jnp.where(noun_only, shown, False) if salient else None
    nll = -jnp.take_along_axis(lp(p, t, img, visible), t[..., None], -1)[..., 0]
    noun = (jnp.arange(32)[None] == pos[:, None]) if which not in ("mi_then_all", "salient_then_all") else INFORMATIVE_MASK[t] & (t > 0)
    w = jnp.where(noun_only, noun, (t > 0) & ~shown if which == "half" else t > 0)
    if which == "idf":  # rarer tokens weigh more: log(N / document frequency), from the training captions
        w = w * IDF[t]
    return (nll * w).sum() / w.sum()
@jax.jit
def step(p, o, t, img, pos, shown, noun_only):
    l, g = jax.value_and_grad(loss)(p, t, img, pos, shown, noun_only); u, o = tx.update(g, o, p); return optax.apply_updates(p, u), o, l
EVAL_SHOWN = None
@jax.jit
def score(p, t, img, pos):
    l = lp(p, t, img, EVAL_SHOWN)[jnp.arange(t.shape[0]), pos]
    return jax.scipy.special.logsumexp(l[:, jnp.asarray(M)], -1) - jax.scipy.special.logsumexp(l[:, jnp.asarray(F)], -1)
@jax.jit
def informative_gain(p, t, img, img_other, shown):
    """Nats per informative token: log p with the own image - with another face's (`shown` stays visible)."""
    pick = lambda l: jnp.take_along_axis(l, t[..., None], -1)[..., 0]
    w = INFORMATIVE_MASK[t] & (t > 0)
    return ((pick(lp(p, t, img, shown)) - pick(lp(p, t, img_other, shown))) * w).sum() / w.sum()
if which == "half":  # held-out captions shown as in training: a fixed random half, the noun masked
    EVAL_SHOWN = jnp.asarray((np.random.default_rng(2).random(Tt.shape) < 0.5) & (np.arange(32)[None] != POSt[:, None]))
rng = np.random.default_rng(0); t0 = time.time()
for i in range(steps + 1):
    r = rng.integers(0, len(T), 64)
    # 'half': a random half of the caption stays visible (never the noun, so every example has its label)
    shown = (rng.random((64, 32)) < 0.5) & (np.arange(32)[None] != POS[r][:, None]) if which == "half" else np.zeros((64, 32), bool)
    if which == "salient_then_all":  # warm-up: only the informative tokens are hidden, the rest of the caption shows
        shown = ~np.asarray(INFORMATIVE_MASK)[T[r]] & (T[r] > 0)
    noun_only = which == "noun" or (which in ("noun_then_all", "mi_then_all", "salient_then_all") and i < steps // 2)
    params, o, l = step(params, o, jnp.asarray(T[r]), jnp.asarray(I[r]), jnp.asarray(POS[r]), jnp.asarray(shown),
                        jnp.asarray(noun_only))
    if i % 100 == 0:
        s = np.asarray(score(params, jnp.asarray(Tt), jnp.asarray(It), jnp.asarray(POSt)))
        sh = np.asarray(score(params, jnp.asarray(Tt), jnp.asarray(It[np.random.default_rng(1).permutation(len(It))]), jnp.asarray(POSt)))
        other = jnp.asarray(It[np.random.default_rng(1).permutation(len(It))])
        gain = float(informative_gain(params, jnp.asarray(Tt), jnp.asarray(It), other, jnp.zeros(Tt.shape, bool)))
        # the salient task: only the informative tokens hidden, the rest of the caption visible
        salient = float(informative_gain(params, jnp.asarray(Tt), jnp.asarray(It), other,
                                         jnp.asarray(~np.asarray(INFORMATIVE_MASK)[Tt] & (Tt > 0))))
        print(which, i, round(float(l), 3), "AUC", round(auc(s, Yt), 3), "shuffled", round(auc(sh, Yt), 3),
              "informative gain", round(gain, 4), "salient gain", round(salient, 4), round(time.time() - t0), flush=True)
