"""Stable-prefix policy for live partial transcripts (LocalAgreement-2).

A word is *confirmed* once two consecutive hypotheses agree on it (and on everything before it).
Confirmed words are emitted once and never retracted, so live text grows without flickering.
Words are compared case- and punctuation-insensitively; the emitted form is the newest spelling.
"""

from __future__ import annotations

import re

_PUNCT = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _PUNCT.sub("", word.lower())


class StablePrefix:
    def __init__(self) -> None:
        self._previous: list[str] = []
        self.confirmed: list[str] = []

    def update(self, hypothesis: str) -> str:
        """Feed a new hypothesis; return the newly confirmed text (possibly empty) to append."""
        words = hypothesis.split()
        agree = 0
        for a, b in zip(self._previous, words):
            if _key(a) != _key(b):
                break
            agree += 1
        self._previous = words
        if agree <= len(self.confirmed):
            return ""
        # Confirmed words must extend the already-confirmed prefix, never rewrite it.
        if [_key(w) for w in words[: len(self.confirmed)]] != [_key(w) for w in self.confirmed]:
            return ""
        new = words[len(self.confirmed):agree]
        self.confirmed.extend(new)
        return (" " if len(self.confirmed) > len(new) else "") + " ".join(new)

    def remainder(self, final: str) -> str:
        """What to append so the emitted deltas end as ``final`` (when it extends the prefix)."""
        words = final.split()
        if [_key(w) for w in words[: len(self.confirmed)]] != [_key(w) for w in self.confirmed]:
            return ""  # the final disagrees with what was shown; .completed carries the truth
        rest = words[len(self.confirmed):]
        if not rest:
            return ""
        return (" " if self.confirmed else "") + " ".join(rest)
