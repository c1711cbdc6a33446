"""How well can the clean ITM split be judged at all from what the image tokens keep?

    python bench/diagnostics/itm_ceiling.py VQ_WORKDIR SYNTH_DIR [MAX_TRAIN] [STEPS]

A reader that knew the captions' grammar perfectly and only had to look at the face: the pixel
judge (gptface_jax.attribute_classifier) predicts every fact, and a pair is scored by
sum over the caption's stated facts of log P(fact holds | image). The judge is fitted twice, on the
rendered faces and on their VQ reconstructions (what the transformer's image tokens stand for), and
scored on the same held-out clean pairs that `gptface train` evaluates (eval_pairs.clean_pairs over
the first 1000 test faces). Accuracy uses a threshold chosen on the other half of the pairs.
"""
import sys

import numpy as np

from data_pipelines.synthfaces.attributes import ATTRIBUTES, HAIR_COLOURS
from data_pipelines.synthfaces.captions import mentioned_facts
from data_pipelines.synthfaces.eval_pairs import clean_pairs
from data_pipelines.shards import ShardSource
from gptface_jax import attribute_classifier, downstream, itm_eval, vq_train

_BALD, _HAT = ATTRIBUTES.index("bald"), ATTRIBUTES.index("hat")


def fact_log_probability(fact, attributes: np.ndarray, expression: np.ndarray, hair: np.ndarray) -> float:
    """log P(fact holds) under one face's judge probabilities; hair colour counts as true when hidden."""
    key, value = fact
    if key == "expression":
        p = expression[value]
    elif key == "hair_colour":
        hidden = 1.0 - (1.0 - attributes[_BALD]) * (1.0 - attributes[_HAT])
        p = hidden + (1.0 - hidden) * hair[value]
    else:
        q = attributes[ATTRIBUTES.index(key)]
        p = q if value else 1.0 - q
    return float(np.log(max(p, 1e-6)))


def pair_scores(judged: dict, facts: list, pairs: dict) -> np.ndarray:
    return np.array([sum(fact_log_probability(f, judged["attributes"][i], judged["expression"][i],
                                              judged["hair_colour"][i]) for f in facts[j])
                     for i, j in zip(pairs["image"], pairs["caption"])])


def held_out_accuracy(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Two-fold: each half is thresholded where the other half's accuracy is best."""
    order = np.random.default_rng(seed).permutation(len(scores))
    halves, correct = (order[::2], order[1::2]), 0
    for fit, test in (halves, halves[::-1]):
        candidates = np.unique(scores[fit])
        best = max(candidates, key=lambda t: ((scores[fit] >= t) == labels[fit]).mean())
        correct += int(((scores[test] >= best) == labels[test]).sum())
    return correct / len(scores)


def main(vq_dir: str, data: str, max_train: int, steps: int) -> None:
    vq = vq_train.load(vq_dir)
    size = vq.config.image_size
    train = downstream.load_labelled(data, "train", size, max_train)
    test = downstream.load_labelled(data, "test", size, 1000)
    source = ShardSource(data, "test")
    captions = [source[i]["caption"] for i in range(len(test["images"]))]
    captions = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in captions]
    pairs = clean_pairs(captions, test["attributes"], test["hair_colour"], test["expression"])
    facts = [sorted(mentioned_facts(c)) for c in captions]

    def reconstruct(images):
        return np.concatenate([vq.decode(vq.encode(images[i:i + 256])) for i in range(0, len(images), 256)])

    views = {"rendered faces": (train["images"], test["images"]),
             "VQ reconstructions": (reconstruct(train["images"]), reconstruct(test["images"]))}
    print(f"{len(pairs['label'])} clean pairs from {len(captions)} held-out faces; judges fitted on "
          f"{len(train['images'])} faces, {steps} steps\n")
    print("| judge trained and scored on | clean ITM accuracy (held-out threshold) | AUC | "
          "male | young | smiling | expression | hair colour |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (fit_images, test_images) in views.items():
        judge = attribute_classifier.fit(fit_images, train["attributes"], train["expression"], train["hair_colour"],
                                         train["attribute_names"], train["expression_names"], list(HAIR_COLOURS), steps)
        judged = judge.predict_all(test_images)
        acc = judge.accuracy(test_images, test["attributes"], test["expression"], test["hair_colour"])
        scores = pair_scores(judged, facts, pairs)
        print(f"| {name} | {held_out_accuracy(scores, pairs['label']):.3f} | "
              f"{itm_eval.auc(scores, pairs['label']):.3f} | {acc['attributes']['male']:.3f} | "
              f"{acc['attributes']['young']:.3f} | {acc['attributes']['smiling']:.3f} | "
              f"{acc['expression_accuracy']:.3f} | {acc['hair_colour_accuracy']:.3f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20000,
         int(sys.argv[4]) if len(sys.argv) > 4 else 1500)
