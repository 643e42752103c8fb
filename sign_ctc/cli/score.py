"""Score a system's CTM against an STM the way the PHOENIX evaluation does, optionally with sclite too.

    sign-ctc-score --hyp HYP.ctm --ref REF.stm --rules phoenix2014 [--sclite] [--json]

Pipeline (mirrors evaluatePhoenix2014.sh): clean hypothesis glosses (and, for 2014-T, the
references) with the named rules (:mod:`sign_ctc.scoring.phoenix_rules`), sort by id, give every
reference id a hypothesis (``[EMPTY]`` if none is left), then align with sclite's weights.
With ``--sclite`` the same cleaned files are handed to NIST sclite and both results are printed;
a failing sclite is an error (exit 2), never a number.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sign_ctc.cli import guarded, report_error
from sign_ctc.scoring.official import format_report, score_files
from sign_ctc.scoring.phoenix_rules import DEFAULT_RULES, RULES
from sign_ctc.scoring.sclite import SCLiteError
from sign_ctc.scoring.wer import ALIGNERS


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sign-ctc-score", description=__doc__.split("\n")[0])
    p.add_argument("--hyp", required=True, help="hypothesis CTM (id channel start duration gloss)")
    p.add_argument("--ref", required=True, help="reference STM (e.g. phoenix2014-groundtruth-dev.stm)")
    p.add_argument("--rules", default=DEFAULT_RULES, choices=RULES,
                   help="gloss clean-up; phoenix2014 reproduces published PHOENIX-2014 numbers")
    p.add_argument("--align", default="sclite", choices=ALIGNERS,
                   help="sclite: sclite's weighted alignment (default); jiwer: minimum edit distance")
    p.add_argument("--sclite", action="store_true", help="also run NIST sclite and print both")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--keep", metavar="DIR", help="write the cleaned, sorted hyp.ctm/ref.stm here")
    p.add_argument("--allow-extra", action="store_true", help="ignore hypothesis ids missing from the STM")
    return guarded("score", _score, p.parse_args(argv))


def _score(args: argparse.Namespace) -> int:
    """Exit 2 when sclite fails, 1 for an unreadable or malformed CTM/STM (the file and line named)."""
    try:
        report = score_files(args.hyp, args.ref, rules=args.rules, align=args.align, use_sclite=args.sclite,
                             workdir=args.keep, allow_extra=args.allow_extra)
    except SCLiteError as e:
        return report_error("score (sclite)", e, code=2)
    except (OSError, ValueError) as e:
        return report_error("score", e, code=1)
    print(json.dumps(report.to_dict()) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
