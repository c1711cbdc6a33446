"""Does the MILM head already tell matching pairs apart? A generative ITM score, held out.

For each held-out pair of the clean and the weak ITM splits, the caption's salient tokens are
hidden (the rest shown) and scored twice: with the pair's image, and with an all-[MASK] image.
Score = summed NLL without the image - with it (the pointwise mutual information between the
salient words and the image; > 0 when the image makes the caption's attribute words likelier).
A second score needs one pass per image and no masking: the log-probability of the visible salient
words at their own positions, with the image minus with an all-[MASK] image (what corrective
targets, `loss.swap_corrective`, train). Prints AUC, and accuracy with the threshold fitted on one
half and applied to the other, beside the [CLS] ITM head's.

    python bench/diagnostics/generative_itm.py WORKDIR [STEP]
"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from data_pipelines.masking import salient_mask
from data_pipelines.shards import ShardSource
from data_pipelines.text_tokenizer import MASK
from gptface_jax import inference, itm_eval
from gptface_jax.model import GPTFace, text_hidden

workdir = sys.argv[1]
step = int(sys.argv[2]) if len(sys.argv) > 2 else None
config, model, params = inference.load_params(workdir, step); mc = model.config
salient = np.array(json.load(open(f"{workdir}/salient_tokens.json"))["ids"])
sets = itm_eval.eval_sets(ShardSource(config.data.pretokenized, "test"), config.evals.itm.max_examples)


@jax.jit
def scores(text, image, hidden):
    def word_logp(shown, img):  # summed log p of the true words at the hidden positions
        out = model.apply(params, shown, img)
        lp = jax.nn.log_softmax(model.apply(params, text_hidden(out["hidden"], mc), method=GPTFace.text_logits), -1)
        return jnp.where(hidden, jnp.take_along_axis(lp, text[..., None], -1)[..., 0], 0.0).sum(-1), out["itm_logits"]
    blank = jnp.full_like(image, mc.image_mask_id)
    masked = jnp.where(hidden, MASK, text)
    (own, itm), (blind, _) = word_logp(masked, image), word_logp(masked, blank)
    # visible: nothing masked, is the shown word what the image says?
    (seen, _), (seen_blind, _) = word_logp(text, image), word_logp(text, blank)
    return own - blind, itm[:, 1] - itm[:, 0], seen - seen_blind


def held_out_accuracy(score, label):
    """Threshold fitted on one half (best accuracy there), applied to the other; both ways, averaged."""
    idx = np.random.default_rng(0).permutation(len(label))
    halves = idx[: len(idx) // 2], idx[len(idx) // 2:]
    accs = []
    for fit, apply in (halves, halves[::-1]):
        cands = np.unique(score[fit])
        best = max(cands, key=lambda t: ((score[fit] >= t) == label[fit]).mean())
        accs.append(((score[apply] >= best) == label[apply]).mean())
    return float(np.mean(accs))


for name in ("clean", "weak"):
    if name not in sets:
        continue
    s = sets[name]
    text, image, label = s["text_ids"], s["image_codes"], s["label"]
    hidden = salient_mask(text, (text != 0).sum(1), salient)
    out = [scores(jnp.asarray(text[i:i + 128]), jnp.asarray(image[i:i + 128]), jnp.asarray(hidden[i:i + 128]))
           for i in range(0, len(text), 128)]
    pmi, head, visible = (np.concatenate([np.asarray(o[j]) for o in out]) for j in range(3))
    print(f"step {step or 'latest'} {name}: {len(label)} pairs, {hidden.any(1).mean():.2f} with a salient word | "
          f"masked PMI AUC {itm_eval.auc(pmi, label):.3f} acc {held_out_accuracy(pmi, label):.3f} | "
          f"visible PMI AUC {itm_eval.auc(visible, label):.3f} acc {held_out_accuracy(visible, label):.3f} | "
          f"[CLS] head AUC {itm_eval.auc(head, label):.3f} acc {held_out_accuracy(head, label):.3f}")
