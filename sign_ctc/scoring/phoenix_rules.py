"""The PHOENIX gloss clean-up applied before scoring, as the corpora's own evaluation scripts do it.

Published PHOENIX numbers are not plain WER on the raw annotation: the release's evaluation
script runs a sed/perl chain over the hypothesis CTM before sclite. Which rule set you pick
changes the number by up to a point or two, so it is a named, explicit choice:

``phoenix2014`` (default; matches published PHOENIX-2014 numbers)
    ``evaluatePhoenix2014.sh``: the chain runs on the *CTM*, one gloss per line, on hypotheses
    only. Per gloss, in order: delete the substrings ``loc-``, ``cl-``, ``qu-``, ``poss-``,
    ``lh-``; ``S0NNE``->``SONNE``, ``HABEN2``->``HABEN``; delete ``__EMOTION__``, ``__PU__``,
    ``__LEFTHAND__``; a gloss ending in ``ZEIGEN`` gets ``-BILDSCHIRM``; ``([A-Z][A-Z])RAUM``->``\\1``;
    delete ``-PLUSPLUS``; drop glosses still containing ``__LEFTHAND__``, ``__EPENTHESIS__`` or
    ``__EMOTION__`` and glosses left empty. The script's multi-word rules (``WIE AUSSEHEN``,
    spelled letters ``A B``->``A+B``, repeat collapsing) need two glosses on one line, so on a CTM
    they never fire. References (the official STM) are used unchanged: ``__ON__``/``__OFF__``
    stay and are scored.
``phoenix2014_string``
    The same chain applied to the whole hypothesis sentence (as SignJoey/SLT's
    ``clean_phoenix_2014`` and code derived from it do), so the multi-word rules *do* fire:
    ``WIE AUSSEHEN``->``WIE-AUSSEHEN``, spelled letters joined with ``+``, immediate repeats
    collapsed. Usually a little lower than the official number; not comparable to it.
``phoenix2014t`` (matches published PHOENIX-2014-T recognition numbers)
    ``evaluatePHOENIX-2014-T-signrecognition.sh``: hypothesis CTM lines containing
    ``__LEFTHAND__``/``__EPENTHESIS__``/``__EMOTION__`` or being a ``__X__`` token are dropped,
    a leading ``loc-``/``cl-`` and a trailing ``-PLUSPLUS`` removed, ``XRAUM``->``X`` at the
    gloss end, then immediate repeats collapsed. Unlike 2014, the *references* are cleaned too
    (whole sentences): those three markers and every ``__X__`` token deleted, ``loc-``/``cl-``/
    ``-PLUSPLUS``/``RAUM`` stripped, ``WIE AUSSEHEN`` and spelled letters joined, repeats collapsed.
``phoenix2014t_strip``
    ``phoenix2014t`` and then every remaining token of the form ``__...__`` deleted from both
    sides (the official expression ``__[^_ ]*__`` misses markers with an inner underscore).
``none``
    Tokens scored as given.

An utterance left without a gloss is scored as the single token ``[EMPTY]`` (see
:mod:`sign_ctc.scoring.ctm`), as the official scripts do, so a silent hypothesis costs one substitution
plus deletions rather than disappearing from the alignment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RULES: tuple[str, ...] = ("phoenix2014", "phoenix2014_string", "phoenix2014t", "phoenix2014t_strip", "none")
#: The rule set that reproduces published PHOENIX-2014 numbers.
DEFAULT_RULES = "phoenix2014"

_DROP_MARKERS = ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__")
# perl's \w on bytes is ASCII; the repeat rule is perl in the official scripts.
_REPEAT = re.compile(r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])", re.ASCII)
# Spelled-letter joining, in the scripts' order (each one a separate sed pass, all /g).
_LETTERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"),
        (r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),
        (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
        (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
        (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
        (r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),
        (r"([ +]NN) ([A-Z][ +])", r"\1+\2"),
        (r"([ +][A-Z]) (NN[ +])", r"\1+\2"),
        (r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),
    )
)


def check_rules(rules: str) -> str:
    if rules not in RULES:
        raise ValueError(f"unknown scoring rules {rules!r}; choose one of {', '.join(RULES)}")
    return rules


# ---------------------------------------------------------------- PHOENIX-2014


def _phoenix2014_substitutions(text: str) -> str:
    """The single-token part of evaluatePhoenix2014.sh, on a gloss or on a sentence."""
    for s in ("loc-", "cl-", "qu-", "poss-", "lh-"):
        text = text.replace(s, "")
    text = text.replace("S0NNE", "SONNE").replace("HABEN2", "HABEN")
    for s in ("__EMOTION__", "__PU__", "__LEFTHAND__"):
        text = text.replace(s, "")
    return text


def clean_phoenix2014_gloss(gloss: str) -> str | None:
    """One CTM gloss through evaluatePhoenix2014.sh; ``None`` when the script drops the line."""
    g = _phoenix2014_substitutions(gloss)
    if g.endswith("ZEIGEN"):
        g += "-BILDSCHIRM"
    g = re.sub(r"([A-Z][A-Z])RAUM", r"\1", g)
    g = g.replace("-PLUSPLUS", "")
    if any(m in g for m in _DROP_MARKERS):
        return None
    g = g.strip()
    return g or None


def _join_letters(text: str) -> str:
    for pat, rep in _LETTERS:
        text = pat.sub(rep, text)
    return text


def _collapse_repeats(text: str) -> str:
    for _ in range(4):  # the scripts run the perl rule four times
        text = _REPEAT.sub(r"\1", text)
    return text


def _collapse_adjacent(tokens: list[str]) -> list[str]:
    """A token equal to the one before it is dropped (the 2014-T script's awk pass over CTM lines, and
    the last step of the 2014 sentence chain)."""
    return [t for k, t in enumerate(tokens) if k == 0 or t != tokens[k - 1]]


def clean_phoenix2014_sentence(glosses: Sequence[str]) -> list[str]:
    """evaluatePhoenix2014.sh's chain on a whole sentence (the ``phoenix2014_string`` variant)."""
    text = _phoenix2014_substitutions(" ".join(glosses))
    text = text.replace("WIE AUSSEHEN", "WIE-AUSSEHEN")
    text = re.sub(r"ZEIGEN ", "ZEIGEN-BILDSCHIRM ", text)
    text = re.sub(r"ZEIGEN$", "ZEIGEN-BILDSCHIRM", text)
    text = _join_letters(text)
    text = re.sub(r"([A-Z][A-Z])RAUM", r"\1", text)
    text = text.replace("-PLUSPLUS", "")
    text = _collapse_repeats(re.sub(r" +", " ", text))
    return _collapse_adjacent([t for t in text.split() if not any(m in t for m in _DROP_MARKERS)])


# ---------------------------------------------------------------- PHOENIX-2014-T


def clean_phoenix2014t_gloss(gloss: str) -> str | None:
    """One CTM gloss through evaluatePHOENIX-2014-T-signrecognition.sh; ``None`` when dropped."""
    if any(m in gloss for m in _DROP_MARKERS) or re.fullmatch(r"__[^_ ]*__", gloss):
        return None
    g = re.sub(r"^loc-([^ ]*)$", r"\1", gloss)
    g = re.sub(r"-PLUSPLUS$", "", g)
    g = re.sub(r"^cl-([^ ]*)$", r"\1", g)
    g = re.sub(r"\b([A-Z][A-Z]*)RAUM$", r"\1", g)
    g = g.strip()
    return g or None


def clean_phoenix2014t_reference(glosses: Sequence[str]) -> list[str]:
    """The 2014-T script's cleaning of the reference STM sentence."""
    # A leading space stands for the STM header fields the script's line-wide sed sees first,
    # so the ``^`` letter rule (which only ever meets the utterance id there) does not fire.
    text = " " + " ".join(glosses)
    for m in ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__"):
        text = text.replace(f"{m} ", "").replace(f" {m}", "")
    text = re.sub(r"\b__[^_ ]*__\b", "", text)
    text = re.sub(r"\bloc-([^ ]*)\b", r"\1", text)
    text = re.sub(r"\bcl-([^ ]*)\b", r"\1", text)
    text = re.sub(r"\b([^ ]*)-PLUSPLUS\b", r"\1", text)
    text = re.sub(r"\b([A-Z][A-Z]*)RAUM\b", r"\1", text)
    text = text.replace("WIE AUSSEHEN", "WIE-AUSSEHEN")
    text = _collapse_repeats(_join_letters(text))
    return text.split()


def _strip_markers(tokens: list[str]) -> list[str]:
    """Delete every ``__X__`` token (``phoenix2014t_strip``)."""
    return [t for t in tokens if not (len(t) > 4 and t.startswith("__") and t.endswith("__"))]


# ---------------------------------------------------------------- entry points


def clean_hypothesis(glosses: Sequence[str], rules: str = DEFAULT_RULES) -> list[str]:
    """A hypothesis utterance (its CTM glosses in order) as the chosen script scores it.

    May return ``[]``; the scorer turns that into ``[EMPTY]``.
    """
    check_rules(rules)
    if rules == "none":
        return list(glosses)
    if rules == "phoenix2014":
        return [c for g in glosses if (c := clean_phoenix2014_gloss(g)) is not None]
    if rules == "phoenix2014_string":
        return clean_phoenix2014_sentence(glosses)
    if rules == "phoenix2014t_strip":
        glosses = _strip_markers(list(glosses))
    return _collapse_adjacent([c for g in glosses if (c := clean_phoenix2014t_gloss(g)) is not None])


def clean_reference(glosses: Sequence[str], rules: str = DEFAULT_RULES) -> list[str]:
    """A reference utterance as the chosen script scores it (2014: unchanged, the official STM)."""
    check_rules(rules)
    if rules == "phoenix2014t":
        return clean_phoenix2014t_reference(glosses)
    if rules == "phoenix2014t_strip":
        return clean_phoenix2014t_reference(_strip_markers(list(glosses)))
    return list(glosses)
