"""``sign-ctc-extract input=... output=...``: Hydra wiring for landmark extraction.

All logic lives in :mod:`sign_ctc.extraction` (discover, frames, worker, run); this only maps the config onto it and turns
bad inputs into a one-line message and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR
from sign_ctc.extraction.discover import ExtractInputError, discover, parse_shard
from sign_ctc.extraction.run import extract, summary_name_for_shard
from sign_ctc.extraction.tracker import HolisticOptions, TrackerSetupError

EXIT_BAD_INPUT = 2
EXIT_FAILURES = 1


def holistic_options(cfg: DictConfig) -> HolisticOptions:
    """The extraction settings of a config (extract, predict, render share these keys)."""
    return HolisticOptions(model_complexity=int(cfg.get("model_complexity", 1)),
                           refine_face=bool(cfg.get("refine_face", False)),
                           frames_fps=float(cfg.get("frames_fps", 25.0)),
                           backend=str(cfg.get("tracker") or "legacy"),
                           model_asset=str(cfg.model_asset) if cfg.get("model_asset") else None)


def run(cfg: DictConfig) -> int:
    """Run one extraction from a config; returns the process exit code."""
    try:
        if not cfg.get("output"):
            raise ExtractInputError("no output folder given: set output=<folder>")
        k, n = parse_shard(cfg.shard)
        items = discover(cfg.get("input"), annotation=cfg.get("annotation"), split=cfg.get("split"),
                         frames_root=cfg.get("frames_root"))
        options = holistic_options(cfg)
        report = extract(items, cfg.output, options=options, workers=int(cfg.workers), shard=f"{k}/{n}",
                         summary=cfg.summary, progress=bool(cfg.progress))
    except (ExtractInputError, TrackerSetupError, FileNotFoundError, ValueError) as exc:
        print(f"extract: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts = report["counts"]
    rates = ", ".join(f"{p} {v:.1%}" for p, v in report["detection_rate"].items())
    where = f"{cfg.output}/{summary_name_for_shard(cfg.summary, k, n)}" if cfg.summary else "(no summary)"
    print(f"extract: shard {k}/{n}: {counts['extracted']} extracted, {counts['skipped']} already done, "
          f"{counts['failed']} failed; {report['frames']} frames; detection {rates}; summary {where}")
    for failure in report["failures"]:
        print(f"extract: FAILED {failure['id']}: {failure['reason']}", file=sys.stderr)
    return EXIT_FAILURES if counts["failed"] else 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="extract")
def main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
