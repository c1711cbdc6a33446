"""Weakly correlated captions for SynthFaces, written the way crawled alt-text reads.

A caption mentions a random subset of the face's true facts through varied templates; with a
configurable probability it also states one false fact, and with another it is unrelated noise.
`mentioned_facts` parses a caption back into the facts it states, using the same phrase banks:
the tests use it to check the rates from the text itself, and evaluation uses it to build the
clean (strongly correlated) split.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from data_pipelines.errors import OptionError
from data_pipelines.synthfaces.attributes import ATTRIBUTES, EXPRESSIONS, HAIR_COLOURS, Face

# A fact is (key, value): key is an attribute name, "hair_colour" or "expression"; value is a bool
# for attributes and a class index otherwise.
Fact = tuple[str, int]

# Phrases that state attribute=True / attribute=False. Gender and age are carried by the subject.
_ATTRIBUTE_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "smiling": (("smiling", "with a big smile", "grinning", "beaming"),
                ("not smiling", "with a straight face", "unsmiling")),
    "mouth_open": (("with an open mouth", "mouth wide open", "with parted lips"),
                   ("with closed lips", "mouth closed")),
    "eyes_closed": (("with eyes closed", "eyes shut", "with closed eyes"),
                    ("with open eyes", "eyes wide awake")),
    "eyeglasses": (("wearing glasses", "in spectacles", "with eyeglasses", "in specs"),
                   ("without glasses", "no specs")),
    "sunglasses": (("wearing sunglasses", "in shades", "with dark sunglasses"),
                   ("without sunglasses", "no shades")),
    "beard": (("with a beard", "bearded", "with a full beard"), ("clean-shaven", "beardless")),
    "moustache": (("with a moustache", "with a mustache", "moustached"), ("without a moustache",)),
    "bald": (("bald", "with a shaved head", "bald-headed"), ("with a full head of hair",)),
    "bangs": (("with bangs", "with a fringe"), ("without bangs", "with a bare forehead")),
    "wavy_hair": (("with wavy hair", "with curly locks", "with curly hair"),
                  ("with straight hair", "with sleek straight hair")),
    "hat": (("wearing a hat", "in a beanie", "with a cap", "wearing a cap"),
            ("bareheaded", "without a hat")),
    "surgical_mask": (("wearing a face mask", "in a surgical mask", "masked up"),
                      ("without a mask", "unmasked")),
    "earrings": (("wearing earrings", "with earrings", "with hoop earrings"), ("without earrings",)),
    "heavy_makeup": (("wearing heavy makeup", "with lots of makeup", "in full glam makeup"),
                     ("without makeup", "makeup-free")),
}
_SUBJECT_NOUNS = {True: ("man", "guy", "gentleman", "dude"), False: ("woman", "lady", "gal")}
_AGE_WORDS = {True: ("young", "youthful", "twenty-something"),
              False: ("elderly", "older", "middle-aged", "senior")}
_NEUTRAL_SUBJECTS = ("a person", "someone", "this face", "a friend", "my neighbour")
_HAIR_PHRASES = {"black": ("with black hair", "dark-haired"), "brown": ("with brown hair", "brunette"),
                 "blond": ("with blond hair", "blonde"), "red": ("with red hair", "ginger"),
                 "grey": ("with grey hair", "grey-haired", "silver-haired")}
_EXPRESSION_PHRASES = {"neutral": ("with a neutral expression", "expressionless", "calm-faced"),
                       "happy": ("looking happy", "joyful", "cheerful"),
                       "sad": ("looking sad", "gloomy", "in tears"),
                       "surprised": ("looking surprised", "astonished", "shocked"),
                       "angry": ("looking angry", "furious", "scowling")}

_TEMPLATES = (
    "{subj} {desc}", "Portrait of {subj} {desc}", "close-up photo of {subj} {desc}",
    "headshot: {subj}, {desc}", "{Subj} {desc}. {suffix}", "stock photo - {subj} {desc}",
    "{subj} {desc} {hashtags}", "Profile picture of {subj} {desc}", "{Subj}, {desc}, posing for the camera",
    "Image may contain: {subj}, {desc}", "candid shot of {subj} {desc}, {suffix}",
    "{Subj} {desc} | {suffix}",
)
_SUFFIXES = ("Taken in 2019.", "Photo by Ana López", "© studio archive", "IMG_4021.JPG",
             "free for commercial use", "Café portrait series", "summer vibes", "Fotografía: R. Núñez",
             "shot on 50mm", "royalty free")
_HASHTAGS = ("#portrait", "#headshot", "#selfie", "#people", "#faces", "#photography", "#nofilter")
_NOISE = (
    "my favourite photo from the trip", "click here to see more", "DSC_{n:04d}.jpg",
    "Download the full album ({n} photos)", "best deals this weekend, up to {n}% off",
    "untitled-{n}", "view from the hotel balcony", "thumbnail {n}x{n}", "lot #{n} – estate sale",
    "Weekly newsletter no. {n}", "Ünterwegs in Berlin, Tag {n}", "this reminds me of last summer",
    "copyright {n} all rights reserved", "page {n} of the catalogue", "😀 weekend mood",
)


@dataclasses.dataclass(frozen=True)
class CaptionConfig:
    """Rates of the crawled-text noise; the defaults are moderate alt-text quality."""

    noise_rate: float = 0.15        # captions unrelated to the face
    false_rate: float = 0.2         # of the related captions: ones that also state a false fact
    min_facts: int = 1
    max_facts: int = 4

    def validate(self) -> None:
        for name in ("noise_rate", "false_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise OptionError(f"CaptionConfig.{name} must be in [0, 1], got {v}")
        if not 1 <= self.min_facts <= self.max_facts:
            raise OptionError(f"CaptionConfig needs 1 <= min_facts <= max_facts, got "
                             f"{self.min_facts}..{self.max_facts}")


@dataclasses.dataclass(frozen=True)
class Caption:
    text: str
    true_facts: tuple[Fact, ...]
    false_facts: tuple[Fact, ...]
    is_noise: bool


def true_facts(face: Face) -> list[Fact]:
    """Every fact a caption could truthfully state about `face` (gender and age included)."""
    facts: list[Fact] = [("male", int(face.attributes["male"])), ("young", int(face.attributes["young"]))]
    facts += [(a, 1) for a in _ATTRIBUTE_PHRASES if face.attributes[a]]
    if not face.attributes["bald"] and not face.attributes["hat"]:
        facts.append(("hair_colour", face.hair_colour))
    facts.append(("expression", face.expression))
    return facts


def _false_fact(face: Face, r: np.random.Generator) -> Fact:
    kind = r.integers(4)
    if kind == 0:
        return "hair_colour", int((face.hair_colour + 1 + r.integers(len(HAIR_COLOURS) - 1)) % len(HAIR_COLOURS))
    if kind == 1:
        return "expression", int((face.expression + 1 + r.integers(len(EXPRESSIONS) - 1)) % len(EXPRESSIONS))
    if kind == 2:
        return "male", int(not face.attributes["male"])
    absent = [a for a in _ATTRIBUTE_PHRASES if not face.attributes[a]]
    if not absent:
        return "young", int(not face.attributes["young"])
    return absent[r.integers(len(absent))], 1  # claims something that is not there


def _phrase(fact: Fact, r: np.random.Generator) -> str:
    key, value = fact
    if key == "hair_colour":
        bank = _HAIR_PHRASES[HAIR_COLOURS[value]]
    elif key == "expression":
        bank = _EXPRESSION_PHRASES[EXPRESSIONS[value]]
    else:
        bank = _ATTRIBUTE_PHRASES[key][0 if value else 1]
    return bank[r.integers(len(bank))]


def _join(parts: list[str], r: np.random.Generator) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    if r.random() < 0.5:
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    return ", ".join(parts)


def make_caption(face: Face, r: np.random.Generator, config: CaptionConfig = CaptionConfig()) -> Caption:
    """Draws one caption for `face` from the random stream `r`."""
    if r.random() < config.noise_rate:
        text = _NOISE[r.integers(len(_NOISE))].format(n=int(r.integers(2, 9999)))
        return Caption(text, (), (), True)
    facts = true_facts(face)
    k = int(r.integers(config.min_facts, config.max_facts + 1))
    chosen = [facts[i] for i in sorted(r.choice(len(facts), size=min(k, len(facts)), replace=False))]
    false = (_false_fact(face, r),) if r.random() < config.false_rate else ()
    if false and false[0][0] in {key for key, _ in chosen}:
        chosen = [f for f in chosen if f[0] != false[0][0]]  # never state both a fact and its opposite
    # Gender and age live in the subject phrase; everything else becomes a descriptive clause.
    by_key = dict(chosen + list(false))
    noun_bank = _SUBJECT_NOUNS.get(bool(by_key["male"])) if "male" in by_key else None
    noun = noun_bank[r.integers(len(noun_bank))] if noun_bank else None
    age = _AGE_WORDS[bool(by_key["young"])][r.integers(3)] if "young" in by_key else None
    if noun is None and age is None:
        subj = _NEUTRAL_SUBJECTS[r.integers(len(_NEUTRAL_SUBJECTS))]
    else:
        subj = " ".join(w for w in (age, noun or "person") if w)
        subj = ("an " if subj[0] in "aeiou" else "a ") + subj
    clauses = [_phrase(f, r) for f in chosen + list(false) if f[0] not in ("male", "young")]
    r.shuffle(clauses)
    template = _TEMPLATES[r.integers(len(_TEMPLATES))]
    if not clauses:
        template = "{Subj}" if r.random() < 0.5 else "photo of {subj}"
    desc = _join(clauses, r)
    text = template.format(subj=subj, Subj=subj[0].upper() + subj[1:], desc=desc,
                           suffix=_SUFFIXES[r.integers(len(_SUFFIXES))],
                           hashtags=" ".join(r.choice(_HASHTAGS, size=2, replace=False)))
    if r.random() < 0.15:
        text = text.lower()
    return Caption(text, tuple(chosen), false, False)


def _phrase_index() -> list[tuple[str, Fact]]:
    """(phrase, fact) pairs, longest phrase first so 'no sunglasses' wins over 'sunglasses'."""
    pairs: list[tuple[str, Fact]] = []
    for key, (pos, neg) in _ATTRIBUTE_PHRASES.items():
        pairs += [(p, (key, 1)) for p in pos] + [(p, (key, 0)) for p in neg]
    for i, c in enumerate(HAIR_COLOURS):
        pairs += [(p, ("hair_colour", i)) for p in _HAIR_PHRASES[c]]
    for i, e in enumerate(EXPRESSIONS):
        pairs += [(p, ("expression", i)) for p in _EXPRESSION_PHRASES[e]]
    for value, nouns in _SUBJECT_NOUNS.items():
        pairs += [(n, ("male", int(value))) for n in nouns]
    for value, words in _AGE_WORDS.items():
        pairs += [(w, ("young", int(value))) for w in words]
    return sorted(pairs, key=lambda p: -len(p[0]))


_PHRASES = _phrase_index()


def mentioned_facts(text: str) -> set[Fact]:
    """The facts a caption states, read back from its words (phrase-bank matching)."""
    rest = " " + re.sub(r"[^\w\s-]", " ", text.lower()) + " "
    found: set[Fact] = set()
    for phrase, fact in _PHRASES:
        pattern = r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])"
        if re.search(pattern, rest):
            found.add(fact)
            rest = re.sub(pattern, " ", rest)
    return found


def judge_labels(attributes, hair_colour: int, expression: int, facts) -> tuple[int, int]:
    """(true, false) counts of `facts` against one face's labels (attribute vector in ATTRIBUTES order)."""
    truth = {"hair_colour": int(hair_colour), "expression": int(expression),
             **{a: int(v) for a, v in zip(ATTRIBUTES, attributes)}}
    n_true = sum(truth[k] == v for k, v in facts)
    return n_true, len(facts) - n_true
