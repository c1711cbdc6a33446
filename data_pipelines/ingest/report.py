"""The ingestion report: what was seen, kept and dropped (and why), faces per image, caption lengths."""
from __future__ import annotations

import collections
import json

from data_pipelines.ingest.process import Outcome

_WORD_BUCKETS = (0, 1, 3, 5, 10, 20, 40, 80)
_EXAMPLES_PER_REASON = 5


def _bucket(words: int) -> str:
    lo = max(b for b in _WORD_BUCKETS if b <= words)
    later = [b for b in _WORD_BUCKETS if b > words]
    return f"{lo}-{later[0] - 1}" if later else f"{lo}+"


class IngestReport:
    def __init__(self) -> None:
        self.seen = 0
        self.kept = 0
        self.dropped: collections.Counter = collections.Counter()
        self.notes: collections.Counter = collections.Counter()
        self.faces_per_image: collections.Counter = collections.Counter()
        self.caption_words: collections.Counter = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, outcome: Outcome, kept: bool | None = None) -> None:
        """Counts one outcome; `kept=False` overrides a record dropped after processing (dedup)."""
        self.seen += 1
        kept = outcome.record is not None if kept is None else kept
        if kept:
            self.kept += 1
        else:
            reason = outcome.reason or "unknown"
            self.dropped[reason] += 1
            if len(self.examples[reason]) < _EXAMPLES_PER_REASON:
                self.examples[reason].append(f"{outcome.key}{': ' + outcome.detail if outcome.detail else ''}")
        self.notes.update(outcome.notes)
        if outcome.num_faces >= 0:
            self.faces_per_image[str(outcome.num_faces)] += 1
        if outcome.caption_words >= 0:
            self.caption_words[_bucket(outcome.caption_words)] += 1

    def to_dict(self) -> dict:
        def order(c):
            return dict(sorted(c.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+"))))
        return {
            "seen": self.seen, "kept": self.kept, "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "fixed_on_the_way": dict(sorted(self.notes.items())),
            "faces_per_image": order(self.faces_per_image),
            "caption_words": order(self.caption_words),
            "examples_by_reason": {k: v for k, v in sorted(self.examples.items())},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    @classmethod
    def merge_dicts(cls, reports: list[dict]) -> dict:
        """Sums report dicts (Beam combines per-worker reports with this)."""
        total: dict = {"seen": 0, "kept": 0, "dropped": 0}
        for key in ("dropped_by_reason", "fixed_on_the_way", "faces_per_image", "caption_words"):
            total[key] = collections.Counter()
        examples: dict[str, list[str]] = collections.defaultdict(list)
        for r in reports:
            for key in ("seen", "kept", "dropped"):
                total[key] += r[key]
            for key in ("dropped_by_reason", "fixed_on_the_way", "faces_per_image", "caption_words"):
                total[key].update(r[key])
            for reason, keys in r["examples_by_reason"].items():
                examples[reason] = (examples[reason] + keys)[:_EXAMPLES_PER_REASON]
        for key in ("dropped_by_reason", "fixed_on_the_way", "faces_per_image", "caption_words"):
            total[key] = dict(sorted(total[key].items()))
        total["examples_by_reason"] = dict(sorted(examples.items()))
        return total
