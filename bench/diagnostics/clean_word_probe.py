"""Can the model read an attribute from the image codes through a text position? (a capability check)

Clean cross-modal masked-language modelling: the text is one [MASK] (rest PAD); its target is one of
two word ids standing for the face's sex; the model (tiny shape, random init) learns only this, from
the pre-tokenized codes. Prints held-out accuracy every 200 steps.

    python bench/diagnostics/clean_word_probe.py PRETOKENIZED_DIR [float32|bfloat16] [steps]
"""
import sys, time
import jax, jax.numpy as jnp, numpy as np, optax, flax.linen as nn
from gptface_jax.model import GPTFace, ModelConfig, text_hidden
from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.attributes import ATTRIBUTES
from data_pipelines.text_tokenizer import MASK
p = sys.argv[1]
DTYPE = sys.argv[2] if len(sys.argv) > 2 else "float32"
STEPS = int(sys.argv[3]) if len(sys.argv) > 3 else 800
def load(split, n):
    s = ShardSource(p, split); rs = [s[i] for i in range(min(n, len(s)))]
    return (np.stack([np.asarray(r["image_codes"]).astype(np.int32) for r in rs]), np.stack([np.asarray(r["attributes"]) for r in rs]))
X, A = load("train", 20000); Xt, At = load("test", 500)
k = ATTRIBUTES.index("male")
WORDS = np.array([500, 501])  # two arbitrary text ids stand for gal / guy
cfg = ModelConfig(text_vocab=1000, codebook_size=1024, max_text_len=32, image_grid=8, num_layers=4, width=128, num_heads=4, mlp_dim=512, compute_dtype=DTYPE)
m = GPTFace(cfg)
T = np.zeros((1, 32), np.int32); T[:, 0] = MASK
params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), jnp.asarray(T), jnp.asarray(X[:1])))
tx = optax.adamw(1e-3, weight_decay=0.01); o = tx.init(params)
def logits(p, img):
    text = jnp.zeros((img.shape[0], 32), jnp.int32).at[:, 0].set(MASK)
    out = m.apply(p, text, img)
    return m.apply(p, text_hidden(out["hidden"], cfg)[:, 0], method=GPTFace.text_logits)
def loss(p, img, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits(p, img)), jnp.asarray(WORDS)[y][:, None], -1).mean()
@jax.jit
def step(p, o, img, y):
    l, g = jax.value_and_grad(loss)(p, img, y); u, o = tx.update(g, o, p); return optax.apply_updates(p, u), o, l
@jax.jit
def pred(p, img):
    lg = logits(p, img); return (lg[:, WORDS[1]] > lg[:, WORDS[0]]).astype(jnp.int32)
rng = np.random.default_rng(0); t0 = time.time()
for i in range(STEPS + 1):
    idx = rng.integers(0, len(X), 64)
    params, o, l = step(params, o, jnp.asarray(X[idx]), jnp.asarray(A[idx, k].astype(np.int32)))
    if i % 200 == 0:
        acc = float((np.asarray(pred(params, jnp.asarray(Xt))) == At[:, k]).mean())
        print(i, round(float(l), 3), "test acc", acc, round(time.time() - t0), flush=True)
