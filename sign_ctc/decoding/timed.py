"""A recognized gloss with its time span: what every front end (predict, live, the Python API) returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TimedGloss:
    """A gloss and the time span of its frames, in seconds from the input's start (``end`` exclusive).
    Not frozen: a streaming decoder extends ``end`` while the gloss's frames go on."""

    gloss: str
    start: float
    end: float

    def as_dict(self) -> dict[str, float | str]:
        return {"gloss": self.gloss, "start": round(self.start, 4), "end": round(self.end, 4)}
