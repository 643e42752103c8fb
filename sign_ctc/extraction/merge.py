"""One run summary from the shards' summaries (``extract_summary.shard-k-of-n.json`` -> ``extract_summary.json``).

Shards of one extraction (``shard=k/n``, e.g. spread over a cluster by a Hydra launcher:
``sign-ctc-extract -m shard=0/4,1/4,2/4,3/4 hydra/launcher=submitit_local``) share an output
folder and each write their own summary. Every shard merges them when it finishes and finds all
``n`` present, so whichever shard ends last leaves the merged summary, with no extra step and no
job that waits on the others; ``merge=true`` merges on demand (e.g. after rerunning one failed
shard on another machine, or to see the state so far), naming the shards still missing. Merging
is cheap and idempotent: it only reads the shards' JSON, which already hold every sentence.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sign_ctc.atomic import write_text_atomic
from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import PARTS


class MergeError(SignCtcError, ValueError):
    """Shard summaries that cannot be merged (none, unreadable, from differently sharded runs)."""


def _shard_pattern(summary: str) -> re.Pattern[str]:
    stem, dot, ext = summary.rpartition(".")
    if dot:
        return re.compile(re.escape(stem) + r"\.shard-(\d+)-of-(\d+)\." + re.escape(ext))
    return re.compile(re.escape(summary) + r"\.shard-(\d+)-of-(\d+)")


def shard_summaries(output_dir: str | os.PathLike, summary: str = "extract_summary.json") -> dict[int, dict[int, Path]]:
    """The shard summaries in ``output_dir``: ``{n: {k: path}}``."""
    found: dict[int, dict[int, Path]] = {}
    pattern = _shard_pattern(summary)
    folder = Path(output_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            m = pattern.fullmatch(path.name)
            if m:
                found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    return found


def merge_summaries(output_dir: str | os.PathLike, summary: str = "extract_summary.json",
                    n: int | None = None) -> dict[str, Any]:
    """Merge the ``n`` shard summaries of ``output_dir`` into ``<output_dir>/<summary>``; returns it.

    ``n`` (the shard count) is read from the file names when not given; the merged summary lists
    ``missing_shards`` (empty when complete). Counts, frames and failures add up; detection rates
    are frame-weighted over the sentences, as one unsharded run computes them.
    """
    found = shard_summaries(output_dir, summary)
    if n is None:
        if not found:
            raise MergeError(f"{output_dir}: no shard summaries ({summary} with .shard-k-of-n) to merge")
        if len(found) > 1:
            raise MergeError(f"{output_dir}: shard summaries of differently sharded runs (n = "
                             f"{', '.join(map(str, sorted(found)))}); remove the stale ones or pass the shard count")
        n = next(iter(found))
    shards = found.get(n, {})
    if not shards:
        raise MergeError(f"{output_dir}: no summary of any of the {n} shards")
    reports = []
    for k in sorted(shards):
        try:
            reports.append(json.loads(shards[k].read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise MergeError(f"{shards[k]}: unreadable shard summary ({type(exc).__name__}: {exc})") from exc

    sentences: dict[str, dict[str, Any]] = {}
    for r in reports:
        sentences.update(r.get("sentences", {}))
    done = [s for s in sentences.values() if s["status"] != "failed"]
    frames = sum(s["frames"] for s in done)
    rates = {p: round(sum(s["detection_rate"].get(p, 0.0) * s["frames"] for s in done) / frames, 6) if frames else 0.0
             for p in PARTS}
    keys = ("total", "extracted", "skipped", "failed", "not_run")
    counts = {key: sum(r["counts"][key] for r in reports) for key in keys}
    extractors = {json.dumps(r.get("extractor"), sort_keys=True) for r in reports}
    extracted_frames = sum(r.get("extracted_frames", 0) for r in reports)
    busy = sum(r.get("wall_seconds", 0.0) for r in reports)
    merged = {
        "merged": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "output_dir": str(output_dir),
        "shards": f"{len(shards)} of {n}",
        "missing_shards": [f"{k}/{n}" for k in range(n) if k not in shards],
        "shard_summaries": [str(shards[k].name) for k in sorted(shards)],
        "started": min(r.get("started", "") for r in reports),
        "finished": max(r.get("finished", "") for r in reports),
        "interrupted": any(r.get("interrupted") for r in reports),
        "options": reports[0].get("options"),
        "extractor": (reports[0].get("extractor") if len(extractors) == 1
                      else [r.get("extractor") for r in reports]),
        # wall time of the slowest shard (they run side by side) and throughput per shard-second
        "wall_seconds": max(r.get("wall_seconds", 0.0) for r in reports),
        "shard_seconds": round(busy, 3),
        "counts": counts,
        "frames": frames,
        "extracted_frames": extracted_frames,
        "frames_per_shard_second": round(extracted_frames / busy, 3) if busy > 0 else 0.0,
        "detection_rate": rates,
        "sentences": dict(sorted(sentences.items(), key=lambda kv: kv[1]["output"])),
        "failures": sorted((f for r in reports for f in r.get("failures", [])), key=lambda f: f["output"]),
    }
    write_text_atomic(Path(output_dir) / summary, json.dumps(merged, indent=2) + "\n")
    return merged


def merge_if_complete(output_dir: str | os.PathLike, summary: str, n: int) -> dict[str, Any] | None:
    """Merge when all ``n`` shard summaries are present (the last shard to finish does it), else None."""
    if n > 1 and len(shard_summaries(output_dir, summary).get(n, {})) == n:
        return merge_summaries(output_dir, summary, n)
    return None
