"""Which extractor made a `.pose` file: a JSON sidecar beside it (``clip.pose`` -> ``clip.pose.json``).

The `.pose` header has no free-text field: it holds a version, the frame size and the components,
whose point-format string (``XYZC``) also gives the number of dimensions (pose-format reads it as
``len(format) - 1``), so it cannot carry a backend name; an extra component would change the header
that other pose-format tools read. The sidecar leaves the file byte-identical to pose-format's own
output and is written before the `.pose` (an interrupted run leaves at most a sidecar, redone with
its file). Files without a sidecar (older runs, other tools) read as "unrecorded".

Backends differ in models (the Tasks ``.task`` bundle vs the legacy graph's), so a split mixing them
gets a warning when it is packed (:func:`backend_mix`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sign_ctc.atomic import write_text_atomic

UNRECORDED = "unrecorded"


def sidecar_path(pose_path: str | os.PathLike) -> Path:
    path = Path(pose_path)
    return path.with_name(path.name + ".json")


def write_provenance(pose_path: str | os.PathLike, info: dict[str, Any]) -> None:
    """Write the sidecar of ``pose_path`` atomically (``info``: backend, mediapipe, model, ...)."""
    write_text_atomic(sidecar_path(pose_path), json.dumps(info, indent=1, sort_keys=True) + "\n")


def read_provenance(pose_path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar's record, or None where there is none or it cannot be read as a JSON object."""
    try:
        info = json.loads(sidecar_path(pose_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def backend_of(pose_path: str | os.PathLike) -> str:
    info = read_provenance(pose_path)
    backend = info.get("backend") if info else None
    return str(backend) if backend else UNRECORDED


def backend_mix(paths: Iterable[str | os.PathLike], examples: int = 3) -> str | None:
    """A one-line description of the backends of ``paths`` when they are more than one, else None.

    Only files that record a backend can reveal a mix: a corpus with no sidecars at all (another
    tool's files) is not reported; recorded and unrecorded files together are.
    """
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(backend_of(p), []).append(str(p))
    if len(groups) < 2 or set(groups) == {UNRECORDED}:
        return None
    parts = []
    for backend, files in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(Path(f).name for f in files[:examples]) + (", ..." if len(files) > examples else "")
        parts.append(f"{backend}: {len(files)} file(s) ({shown})")
    return "; ".join(parts)
