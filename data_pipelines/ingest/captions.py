"""Caption cleaning for crawled alt-text: HTML, URLs, whitespace and length, any language kept."""
from __future__ import annotations

import dataclasses
import html
import re
import unicodedata

from data_pipelines.errors import OptionError
from data_pipelines.ingest.errors import CAPTION_NOT_UTF8, CAPTION_TOO_SHORT, EMPTY_CAPTION, MISSING_CAPTION, DropRecord

_TAG = re.compile(r"<[^>]{0,200}>")
# Script and style elements: their text is code, not caption (dropped with the tags)
_CODE = re.compile(r"<(script|style)\b[^>]{0,200}>.*?(</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
# ANSI terminal escapes (colour codes), also when the ESC byte itself was lost on the way: "[31m"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[@-_]|\[[0-9;]{1,12}m")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class CaptionOptions:
    min_chars: int = 3
    max_chars: int = 300        # longer captions are cut at a word boundary, not dropped
    strip_urls: bool = True

    def validate(self) -> None:
        if not 0 <= self.min_chars <= self.max_chars:
            raise OptionError("caption limits need 0 <= min_chars <= max_chars, "
                              f"got {self.min_chars}, {self.max_chars}")


def clean_caption(raw: bytes | str | None, options: CaptionOptions = CaptionOptions()) -> str:
    """Cleaned caption text, or DropRecord with the reason it cannot be used."""
    if raw is None:
        raise DropRecord(MISSING_CAPTION)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DropRecord(CAPTION_NOT_UTF8, str(e)) from None
    # Entities are decoded first, then markup is removed, twice: "&lt;script&gt;" is markup too, and
    # decoding after stripping would turn it into a literal tag.
    text = raw
    for _ in range(2):
        text = _TAG.sub(" ", _CODE.sub(" ", html.unescape(text)))
    text = unicodedata.normalize("NFC", _ANSI.sub(" ", text))
    if options.strip_urls:
        text = _URL.sub(" ", text)
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C" or c in "\t\n")
    text = _SPACE.sub(" ", text).strip()
    if not text:
        raise DropRecord(EMPTY_CAPTION)
    if len(text) < options.min_chars:
        raise DropRecord(CAPTION_TOO_SHORT, repr(text))
    if len(text) > options.max_chars:
        cut = text[: options.max_chars + 1]
        text = cut[: cut.rfind(" ")] if " " in cut else cut[: options.max_chars]
    return text
