"""Train a gloss n-gram LM (ARPA) from corpus CSVs, for beam search decoding.

    sign-ctc-lm --corpus-csv /data/my_corpus/train.corpus.csv --order 3 --out gloss.arpa
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sign_ctc.cli import guarded
from sign_ctc.decoding.lm import train_kneser_ney, write_arpa


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sign-ctc-lm", description="Train a gloss n-gram LM (ARPA).")
    p.add_argument("--corpus-csv", required=True, nargs="+",
                   help="PHOENIX-2014 id|folder|signer|annotation file(s), e.g. train.corpus.csv")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", required=True, help="ARPA file to write")
    return guarded("lm", _train, p.parse_args(argv))


def _train(args: argparse.Namespace) -> int:
    from sign_ctc.data.corpus import read_phoenix2014

    sentences = [s.glosses for path in args.corpus_csv for s in read_phoenix2014(path)]
    lm = train_kneser_ney(sentences, args.order)
    write_arpa(lm, args.out)
    counts = ", ".join(f"{n}-grams {len(lm.log10_probs[n - 1])}" for n in range(1, lm.order + 1))
    print(f"wrote {args.out}: order {lm.order}, {len(sentences)} sentences, {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
