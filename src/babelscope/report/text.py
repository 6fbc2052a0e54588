"""Tokens as readable text for the HTML pages, text direction, and JSON that is safe inside <script>.

Byte-level BPE splits a non-Latin character over several tokens; decoding each token alone shows U+FFFD (or
mojibake, if one shows the raw vocabulary string). `pieces()` decodes a window incrementally instead: a token
whose bytes end mid-character contributes nothing, and the token that completes the character carries it,
so the pieces concatenate to exactly the decoded text.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from babelscope.files import strict

_REPLACEMENT = "\ufffd"


class TokenText:
    """Decoding through the tokenizer, with a cache for single tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._one = lru_cache(maxsize=200_000)(self._decode_one)

    def _decode_one(self, token_id: int) -> str:
        text = self.tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if _REPLACEMENT in text:  # part of a character: show its bytes (\xd8) when the vocabulary is byte-level
            raw = self.tokenizer.convert_ids_to_tokens(int(token_id))
            table = _byte_decoder()
            if isinstance(raw, str) and raw and all(c in table for c in raw):
                return bytes(table[c] for c in raw).decode("utf-8", errors="backslashreplace")
        return text

    def token(self, token_id: int) -> str:
        """One token's text; a token holding part of a character shows its bytes, e.g. `\\xd8`."""
        return self._one(int(token_id))

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Per-token text of a window whose concatenation is the window's decoded text."""
        out: list[str] = []
        done = ""
        ids = [int(i) for i in ids]
        for n in range(1, len(ids) + 1):
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            if text.endswith(_REPLACEMENT) and n < len(ids):
                out.append("")  # mid-character: wait for the token that completes it
                continue
            if not text.startswith(done):  # a decoder that rewrites earlier text: fall back to single tokens
                return [self.token(i) for i in ids]
            out.append(text[len(done):])
            done = text
        return out


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character for each byte, inverted (char -> byte)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def visible(text: str) -> str:
    """Text with control characters made visible: newline as ↵, tab as ⇥, others as \\xNN."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif unicodedata.category(ch) == "Cc":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def direction(text: str) -> str:
    """'rtl' or 'ltr' from the first strongly directional character (Unicode bidi class), else 'auto'."""
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "auto"


def script_json(obj: Any) -> str:
    """JSON for a <script type="application/json"> block: `<`, `>`, `&` and U+2028/9 escaped, so corpus text
    such as `</script>` cannot end the block."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_default)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


clean_floats = strict  # the name report code used before `files.strict` (NaN and inf as None)
