"""Small corpora in each release's on-disk layout, made from the synthetic corpus' `.pose` files.

The front-door tests run the README's commands on these: our own ``{split}.corpus.csv`` form,
PHOENIX-2014 (``annotations/manual/{split}.corpus.csv`` + ``evaluation/*.stm``), PHOENIX-2014-T
(``annotations/manual/PHOENIX-2014-T.{split}.corpus.csv``) and CSL-Daily
(``sentence_label/csl2020ct_v2.pkl`` + ``split_1.txt``). Landmarks are real pose-format files.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from sign_ctc.data.corpus import SPLITS, Corpus, Sentence, write_phoenix2014

SIZES = {"train": 16, "dev": 4, "test": 4}


def pick(source: Corpus, sizes: dict[str, int] = SIZES) -> dict[str, list[Sentence]]:
    return {split: source.sentences(split)[: sizes[split]] for split in SPLITS}


def copy_landmarks(source: Corpus, chosen: dict[str, list[Sentence]], landmarks_dir: Path) -> None:
    for split, sentences in chosen.items():
        (landmarks_dir / split).mkdir(parents=True, exist_ok=True)
        for s in sentences:
            shutil.copy(source.landmark_path(split, s), landmarks_dir / split / f"{s.id}.pose")


def write_stm(path: Path, sentences: list[Sentence]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{s.id} 1 signer{s.signer or '01'} 0.0 1.79769e+308 {' '.join(s.glosses)}" for s in sentences]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def own_corpus(source: Corpus, root: Path) -> dict[str, list[Sentence]]:
    """``root/{split}.corpus.csv`` + ``root/{split}/{id}.pose`` (data=mediapipe_full)."""
    chosen = pick(source)
    for split, sentences in chosen.items():
        write_phoenix2014(root / f"{split}.corpus.csv", sentences)
    copy_landmarks(source, chosen, root)
    return chosen


def phoenix2014(source: Corpus, root: Path, landmarks_dir: Path) -> dict[str, list[Sentence]]:
    """The PHOENIX-2014 release root (annotations, STM references) + landmarks elsewhere."""
    chosen = pick(source)
    for split, sentences in chosen.items():
        write_phoenix2014(root / "annotations" / "manual" / f"{split}.corpus.csv",
                          [Sentence(s.id, s.glosses, s.signer, f"{s.id}/1/*.png") for s in sentences])
        if split != "train":
            write_stm(root / "evaluation" / f"phoenix2014-groundtruth-{split}.stm", sentences)
    copy_landmarks(source, chosen, landmarks_dir)
    return chosen


def phoenix2014t(source: Corpus, root: Path, landmarks_dir: Path) -> dict[str, list[Sentence]]:
    chosen = pick(source)
    for split, sentences in chosen.items():
        path = root / "annotations" / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = ["name|video|start|end|speaker|orth|translation"]
        rows += [f"{s.id}|{s.id}/1/*.png|-1|-1|{s.signer}|{' '.join(s.glosses)}|ein satz ." for s in sentences]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    copy_landmarks(source, chosen, landmarks_dir)
    return chosen


def csl_daily_labels(chosen: dict[str, list[Sentence]], root: Path) -> None:
    """``sentence_label/csl2020ct_v2.pkl`` and ``split_1.txt`` in the release's structure."""
    info = [{"name": s.id, "length": 0, "signer": int("".join(c for c in s.signer if c.isdigit()) or 0),
             "label_gloss": list(s.glosses), "label_char": list("".join(s.glosses))[:8],
             "label_word": list(s.glosses), "label_postag": ["n"] * len(s.glosses)}
            for sentences in chosen.values() for s in sentences]
    glosses = sorted({g for sentences in chosen.values() for s in sentences for g in s.glosses})
    data = {"info": info, "gloss_map": glosses, "char_map": [], "word_map": glosses, "postag_map": ["n"]}
    labels = root / "sentence_label"
    labels.mkdir(parents=True, exist_ok=True)
    (labels / "csl2020ct_v2.pkl").write_bytes(pickle.dumps(data, protocol=4))
    lines = ["name|split"] + [f"{s.id}|{split}" for split, sentences in chosen.items() for s in sentences]
    (labels / "split_1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def csl_daily(source: Corpus, root: Path, landmarks_dir: Path) -> dict[str, list[Sentence]]:
    chosen = pick(source)
    csl_daily_labels(chosen, root)
    copy_landmarks(source, chosen, landmarks_dir)
    return chosen
