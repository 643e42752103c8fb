"""``python -m sign_ctc.pack [data=...] [data.root=...] [+splits=[train,dev]] [+force=true]``: pack landmark stores.

Packs each split's `.pose` files into the float16 landmark store that training reads
(``sign_ctc.data.store``), at the location training will look for it: the same data config and
rules (``data.store_dir``, else beside the landmarks, else under ``data.store_cache_dir``). Training
packs on first use anyway; this command does it ahead of time (e.g. once on a shared machine) and
reports each store. A store whose sources and settings are unchanged is reused, not rebuilt.

    python -m sign_ctc.pack data=phoenix2014 data.root=/data/phoenix2014 data.landmarks_dir=/data/landmarks
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sign_ctc.data.corpus import SPLITS
from sign_ctc.data.store import BYTES_PER_FRAME, StoreError, fingerprint, is_current, pack, store_location
from sign_ctc.features.pose_io import PoseFileError

EXIT_BAD_INPUT = 2


def run(cfg: DictConfig) -> int:
    """Pack the configured corpus' splits; returns the process exit code."""
    try:
        corpus = hydra.utils.instantiate(cfg.data.corpus)
        corpus.prepare()
        loc = store_location(corpus, cfg.data.get("store_dir"), cfg.data.get("store_cache_dir"))
        splits = list(cfg.get("splits") or SPLITS)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise StoreError(f"unknown split(s) {unknown}: choose from {list(SPLITS)}")
        print(f"pack: stores in {loc.root} ({loc.reason})")
        for split in splits:
            fresh = bool(cfg.get("force")) or not is_current(loc.root / split, fingerprint(corpus, split, corpus.sentences(split)))
            store = pack(corpus, split, loc.root, progress=True, force=bool(cfg.get("force")))
            state = f"packed in {store.manifest['pack_seconds']:.1f} s" if fresh else "up to date, reused"
            print(f"pack: {split}: {len(store)} sentences, {store.total_frames} frames, "
                  f"{store.nbytes / 1e6:.1f} MB ({BYTES_PER_FRAME} B/frame), {state}: {store.path}")
    except (StoreError, PoseFileError, FileNotFoundError, ValueError) as exc:
        print(f"pack: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    if not any(a.startswith("task_name=") for a in sys.argv[1:]):
        sys.argv.append("task_name=pack")  # its Hydra run folder: outputs/pack/runs/...
    main()
