"""The sha256 of a file, read in 1 MiB chunks (checkpoints and LMs are too large to read whole).

Why a module of its own: a tuned decoding file names its checkpoint and LM by hash
(:mod:`sign_ctc.decoding.tuning`) and distillation keys its teacher-output cache by the teacher's
hash (:mod:`sign_ctc.models.distillation`); neither should import the other for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: str | Path) -> str:
    """The file's sha256 as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
