"""``sign-ctc-pack [data=...] [data.root=...] [splits=[train,dev]] [force=true]``: pack landmark stores.

Packs each split's `.pose` files into the float16 landmark store that training reads
(``sign_ctc.data.store``), at the location training will look for it: the same data config and
rules (``data.store_dir``, else beside the landmarks, else under ``data.store_cache_dir``). Training
packs on first use anyway; this command does it ahead of time (e.g. once on a shared machine) and
reports each store. A store whose sources and settings are unchanged is reused, not rebuilt.

Every split is checked in full before the command fails: each bad sample (missing, empty, truncated
or unreadable file; no glosses; fewer frames than glosses) is printed with its reason and written to
``<store root>/<split>.bad_files.json``, and the command exits 2. With ``data.skip_bad_files=true``
the splits are packed without them (listed, exit 0). Files whose non-finite coordinates were read as
missing points are listed too.

    sign-ctc-pack data=phoenix2014 data.root=/data/phoenix2014 data.landmarks_dir=/data/landmarks
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR, EXIT_BAD_INPUT, report_error, run_command
from sign_ctc.data.corpus import SPLITS
from sign_ctc.data.sources import BadFilesError, StoreError
from sign_ctc.data.store import (
    BYTES_PER_FRAME,
    LandmarkStore,
    fingerprint,
    is_current,
    pack,
    store_location,
)
from sign_ctc.features.pose_io import PoseFileError



def _report(split: str, store: LandmarkStore) -> None:
    """Print what the store left out (skip_bad_files) and which files had non-finite points."""
    if store.skipped:
        print(f"pack: {split}: {len(store.skipped)} bad sample(s) left out (skip_bad_files=true):")
        for b in store.skipped:
            print(f"  {b.file}: {b.reason} (sample {b.id})")
    if store.backend_mix:
        print(f"pack: {split}: WARNING: files from different extraction backends: {store.backend_mix}")
    if store.nonfinite:
        print(f"pack: {split}: {len(store.nonfinite)} file(s) with non-finite coordinates, read as missing points:")
        for c in store.nonfinite:
            print(f"  {c['file']}: {c['points']} point(s)")


def run(cfg: DictConfig) -> int:
    """Pack the configured corpus' splits; returns the process exit code."""
    failed = False
    try:
        datamodule = hydra.utils.instantiate(cfg.data)  # cheap: it builds the corpus object only
        corpus = datamodule.corpus
        corpus.prepare()
        loc = store_location(corpus, cfg.data.get("store_dir"), cfg.data.get("store_cache_dir"))
        splits = list(cfg.get("splits") or SPLITS)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise StoreError(f"unknown split(s) {unknown}: choose from {list(SPLITS)}")
        print(f"pack: stores in {loc.root} ({loc.reason})")
        for split in splits:
            fresh = bool(cfg.get("force")) or not is_current(loc.root / split, fingerprint(corpus, split, corpus.sentences(split)))
            try:
                store = pack(corpus, split, loc.root, progress=True, force=bool(cfg.get("force")),
                             skip_bad_files=datamodule.skip_bad_files)
            except BadFilesError as exc:  # report it and check the other splits too: one pass finds all
                print(f"pack: error: {exc}", file=sys.stderr)
                failed = True
                continue
            state = f"packed in {store.manifest['pack_seconds']:.1f} s" if fresh else "up to date, reused"
            print(f"pack: {split}: {len(store)} sentences, {store.total_frames} frames, "
                  f"{store.nbytes / 1e6:.1f} MB ({BYTES_PER_FRAME} B/frame), {state}: {store.path}")
            _report(split, store)
    except (StoreError, PoseFileError, FileNotFoundError, ValueError) as exc:
        return report_error("pack", exc)
    return EXIT_BAD_INPUT if failed else 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pack")
def main(cfg: DictConfig) -> None:
    run_command("pack", run, cfg)


if __name__ == "__main__":
    main()
