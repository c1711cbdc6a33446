"""Does the caption steer image generation where it should? Text -> image, on the informed tokens.

Held-out faces, every image token masked, the caption shown. Scored: only the image positions whose
codes the caption's salient words inform (the run's `salient_tokens.json`, "image_codes"), as the
salient image examples (`curriculum.salient_image_mix`) train. Gain = NLL there with another face's
caption - with the own caption (nats per informed token; 0 when generation ignores the text).
Also per salient word, over the captions that contain it.

    python bench/diagnostics/informed_image_gain.py WORKDIR [STEP [SALIENT_JSON]]

SALIENT_JSON (default WORKDIR/salient_tokens.json) lets a run without salient image examples be
measured on another run's informed codes, as a baseline.
"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from data_pipelines.shards import ShardSource
from gptface_jax import inference
from gptface_jax.model import GPTFace, image_hidden

workdir = sys.argv[1]
step = int(sys.argv[2]) if len(sys.argv) > 2 else None
config, model, params = inference.load_params(workdir, step); mc = model.config
info = json.load(open(sys.argv[3] if len(sys.argv) > 3 else f"{workdir}/salient_tokens.json"))
if not info.get("image_codes"):
    sys.exit(f"{workdir}/salient_tokens.json has no image_codes (a run without curriculum.salient_image_mix)")
piece_id = dict(zip(info["pieces"], info["ids"]))
informs = {piece_id[p]: np.array(c) for p, c in info["image_codes"].items()}
test = ShardSource(config.data.pretokenized, "test")
n = min(len(test), 1000)
text = np.stack([np.asarray(test[i]["text_ids"], np.int32) for i in range(n)])
image = np.stack([np.asarray(test[i]["image_codes"], np.int32) for i in range(n)])
informed = np.zeros(image.shape, bool)
for t, codes in informs.items():
    informed |= (text == t).any(1)[:, None] & np.isin(image, codes)


@jax.jit
def nll(txt, img):
    out = model.apply(params, txt, jnp.full_like(img, mc.image_mask_id))
    lp = jax.nn.log_softmax(model.apply(params, image_hidden(out["hidden"], mc), method=GPTFace.image_logits), -1)
    return -jnp.take_along_axis(lp, img[..., None], -1)[..., 0]


def batched(txt):
    return np.concatenate([np.asarray(nll(jnp.asarray(txt[i:i + 100]), jnp.asarray(image[i:i + 100])))
                           for i in range(0, n, 100)])


own, other = batched(text), batched(np.roll(text, 1, axis=0))
gain = other - own
print(f"step {step or 'latest'}: {informed.sum()} informed image tokens in {informed.any(1).sum()} of {n} faces; "
      f"gain {gain[informed].mean():+.4f} nats per informed token, {gain.mean():+.4f} over all tokens")
rows = []
for t, codes in informs.items():
    at = (text == t).any(1)[:, None] & np.isin(image, codes)
    if at.sum():
        rows.append((float(gain[at].mean()), int(at.sum()), [p for p, i in piece_id.items() if i == t][0]))
for g, k, p in sorted(rows, reverse=True):
    print(f"  {p:>14s}  informed tokens {k:5d}  gain {g:+.3f}")
