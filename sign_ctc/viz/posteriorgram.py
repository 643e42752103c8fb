"""Posteriorgrams: a sentence's per-frame gloss probabilities, the glosses that matter, with the
decoded glosses and the frames where nobody is in view marked.

matplotlib's ``Figure`` on the Agg canvas (no pyplot, no display), imported inside the functions that
draw; the style and the sentence view are shared with the other figures (:mod:`sign_ctc.viz.figures`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sign_ctc.viz.figures import FigureStyle, SentenceView, save_figure

def posteriorgram_glosses(view: SentenceView, limit: int = 16, floor: float = 0.1) -> list[int]:
    """Token ids worth a row: the reference's and hypothesis' glosses, then any other gloss whose
    probability reaches ``floor`` somewhere (most probable first), at most ``limit``."""
    index = {tok: i for i, tok in enumerate(view.vocab)}
    chosen: list[int] = []
    for g in [*(view.reference or []), *view.hypothesis]:
        if index.get(g) is not None and index[g] not in chosen and index[g] != 0:
            chosen.append(index[g])
    peak = np.exp(view.log_probs).max(0)
    for tok in np.argsort(-peak):
        if len(chosen) >= limit:
            break
        if int(tok) != 0 and int(tok) not in chosen and peak[tok] >= floor:
            chosen.append(int(tok))
    return chosen[:limit]


def posteriorgram_figure(view: SentenceView, style: FigureStyle | None = None):
    """A matplotlib Figure: P(blank) on top (shaded), gloss probabilities over output frames below,
    the greedy path (x) and the reference's forced alignment (boxes) drawn over them."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    style = style or FigureStyle()
    probs = np.exp(view.log_probs)
    Tp = probs.shape[0]
    rows = posteriorgram_glosses(view, style.max_glosses)
    fig = Figure(figsize=(max(6.0, min(16.0, 2.5 + Tp * 0.12)), 2.2 + 0.28 * max(len(rows), 1)), dpi=style.dpi)
    gs = fig.add_gridspec(2, 1, height_ratios=[1, max(len(rows), 1) * 0.45 + 0.5], hspace=0.08)
    ax_blank = fig.add_subplot(gs[0])
    ax = fig.add_subplot(gs[1], sharex=ax_blank)
    t = np.arange(Tp)
    greedy = probs.argmax(-1)
    ax_blank.fill_between(t, probs[:, 0], step="mid", color="0.6", alpha=0.8, label="P(blank)")
    ax_blank.set_ylim(0, 1.05)
    ax_blank.set_ylabel("blank", fontsize=8)
    ax_blank.tick_params(labelbottom=False, labelsize=7)
    title = f"{view.id}"
    if view.reference is not None:
        title += f"\nREF: {' '.join(view.reference)}"
    title += f"\nHYP: {' '.join(view.hypothesis)}"
    ax_blank.set_title(title, fontsize=8, loc="left", pad=22)
    image = probs[:, rows].T if rows else np.zeros((1, Tp))
    im = ax.imshow(image, aspect="auto", origin="upper", interpolation="nearest", cmap="magma", vmin=0, vmax=1,
                   extent=(-0.5, Tp - 0.5, len(rows) - 0.5 if rows else 0.5, -0.5))
    # Blank frames of the greedy path: shaded columns.
    for a, b in _runs(greedy == 0):
        ax.axvspan(a - 0.5, b - 0.5, color="white", alpha=0.12, lw=0)
    ax.set_yticks(range(len(rows)), [view.vocab[r] for r in rows], fontsize=7)
    row_of = {tok: k for k, tok in enumerate(rows)}
    gx = [i for i in range(Tp) if greedy[i] != 0 and int(greedy[i]) in row_of]
    ax.scatter(gx, [row_of[int(greedy[i])] for i in gx], marker="x", s=18, color="#00e5ff", lw=1.2,
               label="greedy path", zorder=3)
    if view.ref_alignment is not None:
        for k, span in enumerate(view.ref_alignment.spans):
            if span.token in row_of:
                ax.add_patch(Rectangle((span.start - 0.5, row_of[span.token] - 0.5), span.end - span.start, 1.0,
                                       fill=False, lw=1.6, ec="#7CFC00", zorder=4,
                                       label="reference alignment" if k == 0 else None))
    ax.set_xlim(-0.5, Tp - 0.5)
    ax.set_xlabel(f"output frame (x{view.stride} input frames; {view.fps:g} fps input)", fontsize=8)
    ax.tick_params(labelsize=7)
    secs = ax_blank.secondary_xaxis("top", functions=(lambda x: x * view.stride / view.fps,
                                                lambda s: s * view.fps / view.stride))
    secs.set_xlabel("seconds", fontsize=7)
    secs.tick_params(labelsize=6)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2, fontsize=7, frameon=False)
    fig.colorbar(im, ax=[ax_blank, ax], fraction=0.025, pad=0.01).ax.tick_params(labelsize=6)
    return fig


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def write_posteriorgram(view: SentenceView, path: str | os.PathLike, style: FigureStyle | None = None) -> Path:
    return save_figure(posteriorgram_figure(view, style), path)
