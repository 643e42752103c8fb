"""``sign-ctc-extract input=... output=...``: Hydra wiring for landmark extraction.

All logic lives in :mod:`sign_ctc.extraction` (discover, frames, tracker, worker, run, merge); this only maps the config
onto it and turns bad inputs into a one-line message and a non-zero exit instead of a traceback.

Shards over a Hydra launcher, merged by the last one to finish (:mod:`sign_ctc.extraction.merge`):
    sign-ctc-extract -m input=... output=... shard=0/4,1/4,2/4,3/4 hydra/launcher=submitit_local
    sign-ctc-extract output=... merge=true    # merge the shard summaries present now
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR, report_error, run_command
from sign_ctc.extraction.discover import ExtractInputError, discover, parse_shard
from sign_ctc.extraction.merge import MergeError, merge_if_complete, merge_summaries
from sign_ctc.extraction.run import extract, summary_name_for_shard
from sign_ctc.extraction.tracker import HolisticOptions, TrackerSetupError

EXIT_FAILURES = 1


def holistic_options(cfg: DictConfig) -> HolisticOptions:
    """The extraction settings of a config (extract, predict, render share these keys)."""
    return HolisticOptions(model_complexity=int(cfg.get("model_complexity", 1)),
                           refine_face=bool(cfg.get("refine_face", False)),
                           frames_fps=float(cfg.get("frames_fps", 25.0)),
                           backend=str(cfg.get("tracker") or "auto"),
                           model_asset=str(cfg.model_asset) if cfg.get("model_asset") else None)


def merge(cfg: DictConfig) -> int:
    """``merge=true``: merge the shard summaries in ``output``; 1 while shards are missing."""
    try:
        if not cfg.get("output"):
            raise ExtractInputError("no output folder given: set output=<folder>")
        merged = merge_summaries(cfg.output, cfg.summary or "extract_summary.json")
    except (ExtractInputError, MergeError) as exc:
        return report_error("extract", exc)
    _print_merged(cfg, merged)
    if merged["missing_shards"]:
        print(f"extract: shard(s) {', '.join(merged['missing_shards'])} have no summary yet", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_FAILURES if merged["counts"]["failed"] else 0


def _print_merged(cfg: DictConfig, merged: dict) -> None:
    c = merged["counts"]
    print(f"extract: merged {merged['shards']} shards: {c['extracted']} extracted, {c['skipped']} already done, "
          f"{c['failed']} failed, {c['not_run']} not run; {merged['frames']} frames; "
          f"summary {cfg.output}/{cfg.summary or 'extract_summary.json'}")


def run(cfg: DictConfig) -> int:
    """Run one extraction (or ``merge=true``) from a config; returns the process exit code."""
    if cfg.get("merge"):
        return merge(cfg)
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
        return report_error("extract", exc)
    counts = report["counts"]
    rates = ", ".join(f"{p} {v:.1%}" for p, v in report["detection_rate"].items())
    where = f"{cfg.output}/{summary_name_for_shard(cfg.summary, k, n)}" if cfg.summary else "(no summary)"
    print(f"extract: shard {k}/{n}: {counts['extracted']} extracted, {counts['skipped']} already done, "
          f"{counts['failed']} failed; {report['frames']} frames; detection {rates}; summary {where}")
    for failure in report["failures"]:
        print(f"extract: FAILED {failure['id']}: {failure['reason']}", file=sys.stderr)
    if cfg.summary and n > 1:
        try:
            merged = merge_if_complete(cfg.output, cfg.summary, n)
        except MergeError as exc:  # e.g. a corrupt shard summary: this shard's own work is done
            print(f"extract: cannot merge the shard summaries: {exc}", file=sys.stderr)
            merged = None
        if merged is not None:
            _print_merged(cfg, merged)
    return EXIT_FAILURES if counts["failed"] else 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="extract")
def main(cfg: DictConfig) -> None:
    run_command("extract", run, cfg)


if __name__ == "__main__":
    main()
