"""Error plots of a split: which glosses are substituted, deleted and inserted most, counted over
the scorer's alignment of every sentence (:func:`sign_ctc.viz.figures.edit_ops`, as the WER uses).

matplotlib's ``Figure`` on the Agg canvas, imported inside the functions that draw; files are
written atomically (:func:`sign_ctc.viz.figures.save_figure`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_text_atomic
from sign_ctc.viz.figures import FigureStyle, edit_ops, save_figure

@dataclass
class ErrorStatistics:
    """What went wrong over a corpus split, gloss by gloss (the data behind the error plots)."""

    substitutions: Counter = field(default_factory=Counter)  # (ref, hyp) -> count
    occurrences: Counter = field(default_factory=Counter)  # reference gloss -> count
    substituted: Counter = field(default_factory=Counter)
    deleted: Counter = field(default_factory=Counter)
    inserted: Counter = field(default_factory=Counter)  # hypothesis gloss -> count
    by_length: dict[int, list[int]] = field(default_factory=dict)  # ref length -> [sentences, errors, ref glosses]

    def gloss_rows(self) -> list[tuple[str, int, int, int, float]]:
        """(gloss, occurrences, substituted, deleted, error rate %) sorted by errors, then by name."""
        rows = [(g, n, self.substituted[g], self.deleted[g], 100.0 * (self.substituted[g] + self.deleted[g]) / n)
                for g, n in self.occurrences.items()]
        return sorted(rows, key=lambda r: (-(r[2] + r[3]), -r[4], r[0]))


def error_statistics(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> ErrorStatistics:
    """Per-gloss errors, substitution pairs and WER by reference length of (reference, hypothesis) pairs."""
    stats = ErrorStatistics()
    for ref, hyp in pairs:
        ref_ops, hyp_ops, subs = edit_ops(ref, hyp)
        stats.substitutions.update(subs)
        stats.occurrences.update(ref)
        stats.substituted.update(g for g, op in zip(ref, ref_ops) if op == "substitution")
        stats.deleted.update(g for g, op in zip(ref, ref_ops) if op == "deletion")
        stats.inserted.update(g for g, op in zip(hyp, hyp_ops) if op == "insertion")
        row = stats.by_length.setdefault(len(ref), [0, 0, 0])
        row[0] += 1
        row[1] += sum(op != "correct" for op in ref_ops) + sum(op == "insertion" for op in hyp_ops)
        row[2] += len(ref)
    return stats


def _barh(title: str, labels: list[str], values: list[float], xlabel: str, dpi: int, notes: list[str] | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 1.2 + 0.24 * max(len(labels), 1)), dpi=dpi)
    ax = fig.add_subplot()
    if not labels:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        y = np.arange(len(labels))
        ax.barh(y, values, color="#4c72b0")
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        for yi, v, note in zip(y, values, notes or [""] * len(labels)):
            ax.text(v, yi, f" {note or (f'{v:g}')}", va="center", fontsize=6)
        ax.margins(x=0.15)
    ax.set_title(title, fontsize=9, loc="left")
    return fig


def write_error_plots(stats: ErrorStatistics, folder: str | os.PathLike, split: str,
                      style: FigureStyle | None = None) -> dict[str, Path]:
    """substitutions.png, gloss_errors.png (+ .csv with every gloss) and wer_by_length.png in ``folder``."""
    from matplotlib.figure import Figure

    style = style or FigureStyle()
    folder = Path(folder)
    out: dict[str, Path] = {}
    top = stats.substitutions.most_common(style.top_pairs)
    out["substitutions"] = save_figure(_barh(
        f"{split}: most frequent substitutions (reference -> hypothesis)", [f"{r} -> {h}" for (r, h), _ in top],
        [c for _, c in top], "count", style.dpi), folder / "substitutions.png")
    rows = [r for r in stats.gloss_rows() if r[2] + r[3] > 0][: style.top_glosses]
    out["gloss_errors"] = save_figure(_barh(
        f"{split}: per-gloss error rate (substituted + deleted / occurrences)", [r[0] for r in rows],
        [r[4] for r in rows], "error rate (%)", style.dpi,
        [f"{r[4]:.0f}% ({r[2]}S {r[3]}D / {r[1]})" for r in rows]), folder / "gloss_errors.png")
    csv = ["gloss,occurrences,substituted,deleted,inserted,error_rate"] + [
        f"{g},{n},{s},{d},{stats.inserted[g]},{rate:.2f}" for g, n, s, d, rate in stats.gloss_rows()]
    write_text_atomic(folder / "gloss_errors.csv", "\n".join(csv) + "\n")
    out["gloss_errors_csv"] = folder / "gloss_errors.csv"
    lengths = sorted(stats.by_length)
    fig = Figure(figsize=(6.5, 3.2), dpi=style.dpi)
    ax = fig.add_subplot()
    if lengths:
        wer = [100.0 * stats.by_length[n][1] / max(stats.by_length[n][2], 1) for n in lengths]
        ax.bar(lengths, wer, color="#dd8452")
        for n, w in zip(lengths, wer):
            ax.text(n, w, f"{w:.0f}%\n({stats.by_length[n][0]})", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(lengths)
        ax.margins(y=0.2)
    ax.set_xlabel("reference length (glosses)", fontsize=8)
    ax.set_ylabel("WER (%)", fontsize=8)
    ax.set_title(f"{split}: WER by sentence length (sentences in brackets)", fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    out["wer_by_length"] = save_figure(fig, folder / "wer_by_length.png")
    return out
