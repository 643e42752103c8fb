"""Gloss vocabulary: blank = 0, ``<unk>`` = 1, then the train glosses sorted."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

BLANK = "<blank>"
UNK = "<unk>"


class Vocabulary:
    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tokens[:2] != [BLANK, UNK]:
            raise ValueError(f"vocabulary must start with {BLANK!r}, {UNK!r}; got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    blank_id = 0
    unk_id = 1

    @classmethod
    def from_glosses(cls, sequences: Iterable[Sequence[str]]) -> "Vocabulary":
        glosses = sorted({g for seq in sequences for g in seq})
        return cls([BLANK, UNK, *glosses])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, glosses: Sequence[str]) -> list[int]:
        return [self.index.get(g, self.unk_id) for g in glosses]

    def unknown(self, sequences: Iterable[Sequence[str]]) -> Counter[str]:
        """Gloss tokens outside the vocabulary, counted: they encode as ``<unk>`` and score as errors."""
        return Counter(g for seq in sequences for g in seq if g not in self.index)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids if i != self.blank_id]

    def save(self, path: str | Path) -> None:
        from sign_ctc.atomic import write_bytes_atomic

        write_bytes_atomic(Path(path), json.dumps(self.tokens, ensure_ascii=False, indent=0).encode())

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))
