"""Which facts the ITM score reads: held-out clean-split accuracy per contradicted fact.

    python bench/diagnostics/itm_by_fact.py W [STEP]

The clean split's negatives each contradict one or more facts of the image (expression, sex, hair
colour, ...; `eval_pairs.clean_pairs`). A negative counts under every fact it contradicts; one
that contradicts only that fact counts under "only". P(match) < 0.5 is a correct rejection, as in
the trainer's held-out accuracy. Says where the overall accuracy comes from, and what a model
must read to go further.
"""
import collections
import sys

import jax
import numpy as np

from data_pipelines.shards import ShardSource
from data_pipelines.synthfaces.captions import mentioned_facts
from data_pipelines.synthfaces.eval_pairs import clean_pairs, visible_verdict
from gptface_jax.evals import itm_eval
from gptface_jax.runtime import sharding
from gptface_jax.serving import inference, scorers

workdir = sys.argv[1]
config, model, params = inference.load_params(workdir, int(sys.argv[2]) if len(sys.argv) > 2 else None)
split = itm_eval.load_split(ShardSource(config.data.pretokenized, "test", verify=False), config.evals.itm.max_examples)
pairs = clean_pairs(split["captions"], split["attributes"], split["hair_colour"], split["expression"])
mesh = sharding.make_mesh(config, jax.devices()[:1])
params = jax.device_put(params, sharding.replicated(mesh))
# the project's match logit (the fusion head plus, with model.itm_similarity, the unimodal similarity)
prob = itm_eval.match_probabilities(scorers.itm_scorer(model, mesh), params, split["text_ids"][pairs["caption"]],
                                    split["image_codes"][pairs["image"]], mesh, config, batch_size=100)
correct = (prob > 0.5) == (pairs["label"] == 1)
hits, totals, only_hits, only_totals = (collections.Counter() for _ in range(4))
for row in np.flatnonzero(pairs["label"] == 0):
    i, j = pairs["image"][row], pairs["caption"][row]
    wrong = {f[0] for f in mentioned_facts(split["captions"][j])
             if visible_verdict([f], split["attributes"][i], split["hair_colour"][i], split["expression"][i])[1]}
    for fact in wrong:
        totals[fact] += 1
        hits[fact] += int(correct[row])
        if len(wrong) == 1:
            only_totals[fact] += 1
            only_hits[fact] += int(correct[row])
positive = pairs["label"] == 1
print(f"clean accuracy {correct.mean():.3f} ({len(correct)} pairs): positives {correct[positive].mean():.3f}, "
      f"negatives {correct[~positive].mean():.3f}")
print("| contradicted fact | negatives | rejected | contradicting only this fact | rejected |")
print("| --- | --- | --- | --- | --- |")
for fact, n in totals.most_common():
    only = f"{only_hits[fact] / only_totals[fact]:.3f}" if only_totals[fact] else "-"
    print(f"| {fact} | {n} | {hits[fact] / n:.3f} | {only_totals[fact]} | {only} |")
