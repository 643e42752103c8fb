"""Feature normalization: every mode, its statistics, and the single place it is applied.

The datasets never normalize. The :class:`Normalizer` lives inside the LightningModule and is
called once per batch in its ``forward``; its statistics are buffers, so checkpoints carry them and
evaluation reuses them. :func:`check_single_normalization` refuses a config that would normalize
anywhere else (the double normalization that made the seed's teacher produce NaN/Inf).

Modes: ``per_sample`` (each sequence standardized over its own present frames), ``global``
(train-split mean/std per channel, streamed), ``none``. ``body_relative`` can be combined with any of
them: coordinates are centred on the shoulder midpoint and scaled by the shoulder width (a
per-sequence constant, so the temporal channels, which are differences, are simply scaled).
Missing landmarks are excluded from every statistic and come out as 0; standard deviations are
floored, and outputs clipped, so a constant channel or an outlier never blows up.

``signer_level`` (with ``global``): each sentence is standardized with its own signer's mean/std
instead of the train split's, as speaker-level CMVN is in speech recognition: what stays is how a sign
differs from the signer's usual posture, reach and handedness, not from the train signers'. The
statistics of a signer are fitted from all of that signer's sentences in the split being read
(:meth:`Normalizer.fit_signers`, no labels used: unseen test signers are adapted to, transductively) and
never saved; a sentence whose signer is unknown gets the train split's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import (
    CHANNEL_GROUPS,
    FEATURE_DIM,
    PARTS,
    SLICES,
    STATIC_DIM,
    channel_presence,
    group_presence,
)

if TYPE_CHECKING:
    from sign_ctc.data.batch import Batch

MODES = ("per_sample", "global", "none")
# Landmark features are unit-scale image coordinates and their differences; a magnitude beyond
# this is a corrupt value, limited before any statistic so one outlier cannot overflow float32.
RAW_LIMIT = 1.0e4
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12  # MediaPipe pose indices; pose is first in the layout


class NormalizationConfigError(SignCtcError, ValueError):
    """The config asks for normalization in more than one place."""


def time_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def valid_channels(presence: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, 6516] bool: channel detected and frame inside the sequence."""
    return channel_presence(presence) & time_mask(lengths, presence.shape[1])[..., None]


# Anchors of the body frame, in order of preference (MediaPipe pose indices; the face mesh's cheek points).
# Each gives a centre and a width in shoulder widths: the shoulders themselves, else the ears, the eyes or
# the face's width, with the shoulder midpoint placed below them along the head's own down direction, so
# a skeleton without shoulders (upper body cut off, or never stored, as in pose-format's hand or reduced
# files and RWTH-BOSTON-104's three points) is scaled like one with them instead of by a width of zero.
# Ratios: typical adult breadths (shoulders ~39 cm, ears ~14.5 cm, pupils ~6.3 cm, cheeks ~14 cm) and the
# shoulder line ~0.55 shoulder widths below the ears. The nose alone gives a centre but no scale. Hips are
# not used (off-screen in most signing video, where MediaPipe still guesses them), nor the wrists (they
# move with every sign, so a scale from them would erase the signing).
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 2, 5, 7, 8
FACE_LEFT_CHEEK, FACE_RIGHT_CHEEK = 454, 234  # face-mesh indices of the two cheek extremes
PAIR_ANCHORS: tuple[tuple[str, int, int, float, float], ...] = (
    # (part, point a, point b, shoulder widths per a-b distance, shoulder midpoint below the pair's centre)
    ("pose", LEFT_SHOULDER, RIGHT_SHOULDER, 1.0, 0.0),
    ("pose", LEFT_EAR, RIGHT_EAR, 2.7, 0.55),
    ("pose", LEFT_EYE, RIGHT_EYE, 6.2, 0.62),
    ("face", FACE_LEFT_CHEEK, FACE_RIGHT_CHEEK, 2.8, 0.55),
)
NOSE_DROP = 0.6  # shoulder midpoint below the nose, in shoulder widths (used with a held or default width)
# Before any anchor was ever seen (a stream that starts without a person): the centre of the picture and
# a quarter of its width, the typical framing of a signer facing a webcam.
DEFAULT_CENTRE = (0.5, 0.5)
DEFAULT_WIDTH = 0.25
MIN_WIDTH = 1e-3
FALLBACKS = ("causal", "sequence")


def _point(features: torch.Tensor, part_offset: int, index: int) -> torch.Tensor:
    return features[..., part_offset + 3 * index : part_offset + 3 * index + 2]


def frame_anchors(features: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each frame's own body frame from its first usable anchor: centre [.., T, 2], width [.., T], and
    whether each was found ([.., T] bool each; the nose gives a centre without a width). A point is
    usable when its part is present and it is not at the exact origin (where readers put points a
    skeleton lacks)."""
    offsets = {"pose": SLICES["pose"].start, "face": SLICES["face"].start}
    part_ok = {"pose": presence[..., 0].bool(), "face": presence[..., 3].bool()}
    shape = features.shape[:-1]
    centre = features.new_zeros(*shape, 2)
    width = features.new_zeros(shape)
    found = torch.zeros(shape, dtype=torch.bool, device=features.device)
    for part, a, b, ratio, drop in PAIR_ANCHORS:
        pa, pb = _point(features, offsets[part], a), _point(features, offsets[part], b)
        span = pa - pb
        dist = span.norm(dim=-1)
        ok = part_ok[part] & (pa != 0).any(-1) & (pb != 0).any(-1) & (dist * ratio > MIN_WIDTH) & ~found
        w = dist * ratio
        # The head's down direction: the pair's line turned by 90 degrees, pointing down the picture (+y).
        down = torch.stack([-span[..., 1], span[..., 0]], dim=-1) / dist.clamp_min(1e-12)[..., None]
        down = torch.where(down[..., 1:2] < 0, -down, down)
        c = (pa + pb) / 2 + down * (drop * w)[..., None]
        centre = torch.where(ok[..., None], c, centre)
        width = torch.where(ok, w, width)
        found = found | ok
    nose = _point(features, offsets["pose"], NOSE)
    nose_ok = part_ok["pose"] & (nose != 0).any(-1) & ~found
    return centre, width, found, nose_ok


def _forward_fill(values: torch.Tensor, ok: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """values [B, T, *] where ok [B, T], else the last ok value before (``initial`` [B, *] before any)."""
    B, T = ok.shape
    idx = torch.where(ok, torch.arange(T, device=ok.device)[None, :], torch.full_like(ok, -1, dtype=torch.long))
    if _exporting():  # ONNX has no cummax: the running max as a max over the lower triangle ([B, T, T])
        earlier = torch.ones(T, T, dtype=torch.bool, device=ok.device).tril()
        last = torch.where(earlier[None], idx[:, None, :], torch.full_like(idx[:, None, :], -1)).amax(-1)
    else:
        last = torch.cummax(idx, dim=1).values  # [B, T]
    flat = values.reshape(B, T, -1)
    held = flat.gather(1, last.clamp_min(0)[..., None].expand(-1, -1, flat.shape[-1]))
    held = torch.where((last >= 0)[..., None], held, initial.reshape(B, 1, -1).to(flat.dtype))
    return held.reshape(values.shape)


BodyFrame = tuple[torch.Tensor, torch.Tensor]  # centre [B, 2], width [B]: the last anchored frame seen
PRESENCE_HISTORY = 4  # frames the temporal channels look back on (layout.TEMPORAL_LAGS)


@dataclass
class NormalizerState:
    """What a stream carries between calls of :meth:`Normalizer.stream`."""

    body: BodyFrame
    presence: torch.Tensor  # [B, <= PRESENCE_HISTORY, 4] the last frames' part presence


def default_body_frame(batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> BodyFrame:
    return (torch.tensor(DEFAULT_CENTRE, device=device, dtype=dtype).expand(batch, 2).clone(),
            torch.full((batch,), DEFAULT_WIDTH, device=device, dtype=dtype))


def body_frame(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
               per_frame: bool = False, fallback: str = "causal",
               initial: BodyFrame | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The body frame: centre (z = 0) and width in shoulder-width units (:data:`PAIR_ANCHORS`).

    Per sequence ([B, 3], [B]): the mean over its anchored frames. ``per_frame`` ([B, T, 3], [B, T]):
    each frame's own anchor; frames without one take, with ``fallback="causal"``, the last anchored
    frame before them (``initial`` before the first: the state a stream carries, else the picture's
    centre and :data:`DEFAULT_WIDTH`), so a frame never depends on a later one and a stream normalizes
    exactly as the whole sequence; with ``fallback="sequence"``, the sequence's mean (what checkpoints
    from before 2026-12-06 were trained with; not streamable).
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"body frame fallback must be one of {FALLBACKS}, got {fallback!r}")
    valid = time_mask(lengths, features.shape[1])
    centre2, width, found, nose_ok = frame_anchors(features, presence)
    found, nose_ok = found & valid, nose_ok & valid
    B = features.shape[0]
    if initial is None and fallback == "sequence":  # as before 2026-12-06: a sequence without a pose stays put
        initial = (features.new_zeros(B, 2), features.new_ones(B))
    elif initial is None:
        initial = default_body_frame(B, features.device, features.dtype)
    w = found.to(features.dtype)
    count = w.sum(1).clamp_min(1.0)
    has = found.any(1)
    mean_width = torch.where(has, (width * w).sum(1) / count, initial[1])
    with_centre = found | nose_ok
    # The nose: a centre below it by NOSE_DROP widths of the frame's scale (held, or the sequence's).
    if fallback == "causal":
        scale = _forward_fill(width, found, initial[1])
    else:
        scale = mean_width[:, None].expand_as(width)
    nose = _point(features, SLICES["pose"].start, NOSE)
    nose_centre = nose + torch.stack([torch.zeros_like(scale), NOSE_DROP * scale], dim=-1)
    centre2 = torch.where(nose_ok[..., None], nose_centre, centre2)
    wc = with_centre.to(features.dtype)[..., None]
    has_centre = with_centre.any(1)
    mean_centre = torch.where(has_centre[:, None], (centre2 * wc).sum(1) / wc.sum(1).clamp_min(1.0), initial[0])
    z = features.new_zeros(*centre2.shape[:-1], 1)
    if not per_frame:
        return torch.cat([mean_centre, z[:, 0]], -1), mean_width.clamp_min(MIN_WIDTH)
    if fallback == "causal":
        centre_f = _forward_fill(centre2, with_centre, initial[0])
        width_f = scale
    else:
        centre_f = torch.where(with_centre[..., None], centre2, mean_centre[:, None, :])
        width_f = torch.where(found, width, mean_width[:, None])
    return torch.cat([centre_f, z], -1), width_f.clamp_min(MIN_WIDTH)


class NoBodyAnchorError(SignCtcError, ValueError):
    """Sequences whose skeleton gives the body frame nothing to stand on; the message names them."""


def without_anchor(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                   ids: list[str]) -> list[str]:
    """The ids of sequences in which something was detected but no frame has a body anchor."""
    _, _, found, nose_ok = frame_anchors(features, presence)
    valid = time_mask(lengths, features.shape[1])
    anchored = ((found | nose_ok) & valid).any(1)
    detected = (presence.bool().any(-1) & valid).any(1)
    return [ids[i] for i in torch.nonzero(detected & ~anchored).flatten().tolist()]


def _exporting() -> bool:
    """A trace for ONNX / TorchScript export is running: ops the exporters handle, not the fastest eager ones."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


@functools.lru_cache(maxsize=8)
def _point_tile(device: torch.device) -> torch.Tensor:
    """[3, 1629] float32: x, y, z copied to every one of the 543 points (built once per device)."""
    return torch.eye(3, device=device).repeat(1, STATIC_DIM // 3)


def body_relative(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                  per_frame: bool = False, fallback: str = "causal", initial: BodyFrame | None = None,
                  frame: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Static coordinates centred on the shoulder midpoint, every channel in shoulder widths (a new
    tensor). The temporal channels are differences, so a per-sequence centre cancels there (per frame,
    they are only rescaled: differences of the raw coordinates in that frame's shoulder widths).

    One pass over the features, then the centre off the 1629 static channels (not a [B, T, 6516] offset
    added everywhere): at batch 1 on a CPU these passes are most of the normalizer's time. ``frame``: the
    body frame :func:`body_frame` gives for these arguments, when the caller has it already (a stream).
    """
    centre, width = frame if frame is not None else body_frame(features, presence, lengths, per_frame, fallback, initial)
    if not per_frame:
        centre, width = centre[:, None, :], width[:, None]
    scale = (1.0 / width)[..., None]  # [B, 1|T, 1]
    out = features * scale
    # The scaled centre tiled over the 543 points as a [.., 3] x [3, 1629] product (a repeat of 3-wide
    # rows is a slow copy), in float32 under a bf16 autocast too, subtracted from the static channels.
    with torch.autocast(features.device.type, enabled=False):
        offset = (centre * scale).float() @ _point_tile(features.device)
    out[..., :STATIC_DIM] -= offset
    return out


class Normalizer(nn.Module):
    """The one place features are normalized; statistics are buffers saved in checkpoints."""

    def __init__(self, mode: str = "global", body_relative: bool = True, std_floor: float = 1e-4,
                 clip: float = 10.0, body_per_frame: bool = True, body_fallback: str = "causal",
                 signer_level: bool = False):
        """``body_per_frame``: with ``body_relative``, centre and scale each frame on its own
        shoulders (the signer moving in the picture is removed) instead of the sequence's mean.
        ``body_fallback``: what a frame without an anchor takes (:func:`body_frame`): ``causal``, the
        last anchored frame (streamable), or ``sequence``, the sequence's mean. ``signer_level``: the
        mean/std of each sentence's signer instead of the train split's (module docstring; ``global``
        only)."""
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
        if signer_level and mode != "global":
            raise ValueError(f"normalization.signer_level=true replaces the global statistics by each signer's: "
                             f"it needs mode=global, got {mode!r}")
        self.signer_level = bool(signer_level)
        # signer id -> (mean [6516], std [6516]), from fit_signers; not a buffer: refitted on the split read
        self.signer_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode = mode
        self.body_relative = body_relative
        self.body_per_frame = body_per_frame
        if body_fallback not in FALLBACKS:
            raise ValueError(f"body_fallback must be one of {FALLBACKS}, got {body_fallback!r}")
        self.body_fallback = body_fallback
        self.std_floor = std_floor
        self.clip = clip
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))
        self.register_buffer("fitted", torch.tensor(mode != "global"))

    @property
    def needs_fit(self) -> bool:
        return not bool(self.fitted)

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, body_relative={self.body_relative}, body_per_frame={self.body_per_frame}, "
                f"body_fallback={self.body_fallback}, signer_level={self.signer_level}, "
                f"std_floor={self.std_floor}, clip={self.clip}")

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "body_relative": self.body_relative, "body_per_frame": self.body_per_frame,
                "body_fallback": self.body_fallback, "signer_level": self.signer_level,
                "std_floor": self.std_floor, "clip": self.clip}

    def _relative(self, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                  limit: bool, initial: BodyFrame | None = None,
                  frame: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The features in the body frame when ``body_relative``; ``limit`` clamps raw values first (before
        statistics are taken from them: the per-sample ones, or ``fit``'s)."""
        x = features.clamp(-RAW_LIMIT, RAW_LIMIT) if limit else features
        if not self.body_relative:
            return x
        return body_relative(x, presence, lengths, self.body_per_frame, self.body_fallback, initial, frame)

    @property
    def streamable(self) -> str | None:
        """Why this normalizer cannot normalize a stream frame by frame exactly as the whole sequence,
        or None when it can."""
        if self.mode == "per_sample":
            return "normalization mode per_sample uses the whole sequence's statistics (use normalization=global)"
        if self.signer_level:
            return ("normalization.signer_level=true needs statistics of the signer's whole recording set, which a "
                    "live signer does not have yet (use false)")
        if self.body_relative and not self.body_per_frame:
            return "normalization.body_per_frame=false centres on the whole sequence's mean (use true)"
        if self.body_relative and self.body_fallback != "causal":
            return ("normalization.body_fallback=sequence gives frames without a body anchor the sequence's "
                    "mean (use causal)")
        return None

    def stream(self, features: torch.Tensor, presence: torch.Tensor,
               state: NormalizerState | None) -> tuple[torch.Tensor, NormalizerState]:
        """Normalize the next frames [B, k, C] of streams whose earlier frames left ``state`` (None at the
        start): the same values as the whole sequence's :meth:`forward`, and the state to carry on (the
        body frame, and the last presence rows the temporal channels' masks look back on)."""
        if self.streamable:
            raise ValueError(f"cannot normalize a stream: {self.streamable}")
        B, k = features.shape[:2]
        if state is None:
            state = NormalizerState(default_body_frame(B, features.device, features.dtype),
                                    presence.new_zeros(B, 0, presence.shape[-1]))
        history = torch.cat([state.presence, presence], 1)
        groups = group_presence(history)[:, -k:] if k else group_presence(presence)
        lengths = torch.full((B,), k, dtype=torch.long, device=features.device)
        frame, body = None, state.body
        if self.body_relative:  # once: it normalizes these frames, and its last frame is carried on
            frame = body_frame(features, presence, lengths, per_frame=True, fallback="causal", initial=state.body)
            if k:  # causal widths are held anchor widths (each > MIN_WIDTH) or the initial one: no floor acted
                body = (frame[0][:, -1, :2], frame[1][:, -1])
        out = self.forward(features, presence, lengths, initial=state.body, groups=groups, frame=frame)
        return out, NormalizerState(body, history[:, -PRESENCE_HISTORY:])

    def forward(self, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                initial: BodyFrame | None = None, groups: torch.Tensor | None = None,
                frame: tuple[torch.Tensor, torch.Tensor] | None = None,
                signers: Sequence[str] | None = None) -> torch.Tensor:
        """``features``: the whole layout [B, T, 6516] or its leading blocks (static only: [B, T, 1629]),
        for a net that reads only those; each channel is normalized exactly as in the whole layout.
        ``initial``, ``groups``: the body frame and the (block, part) presence a stream carries over from
        earlier frames; ``frame``: these frames' body frame, already computed (:meth:`stream`).
        ``signers``: each sentence's signer, for ``signer_level`` (an unknown one, or none given: the train
        split's statistics)."""
        if self.needs_fit:
            raise RuntimeError("global normalization has no statistics: call Normalizer.fit on the train split "
                               "(train.py does) or load a checkpoint that carries them")
        width = features.shape[-1]
        if width % STATIC_DIM or not 0 < width <= FEATURE_DIM:
            raise ValueError(f"features must be the whole layout ({FEATURE_DIM} channels) or its leading blocks "
                             f"(a multiple of {STATIC_DIM}), got {width} channels")
        n_blocks = width // STATIC_DIM
        # Masks per (block, part) group instead of per channel: a few [B, T] masks, not [B, T, 6516].
        if groups is None:
            groups = group_presence(presence)
        groups = groups[..., :n_blocks, :] & time_mask(lengths, presence.shape[1])[..., None, None]
        groups = groups.to(features.dtype)
        out = self._relative(features, presence, lengths, limit=self.mode == "per_sample", initial=initial, frame=frame)
        if self.mode == "global":  # (x - mean) / std as one pass, in place when out is already a new tensor
            mean, std = self._statistics(signers, features.shape[0], width)
            inv_std = 1.0 / std
            inplace = out is not features and out.is_contiguous() and not _exporting()  # (ONNX: no addcmul out=)
            out = torch.addcmul(-mean * inv_std, out, inv_std, out=out if inplace else None)
        elif self.mode == "per_sample":
            out = self._standardize_per_sample(out, groups)
        out = out.clamp(-self.clip, self.clip) if out is features else out.clamp_(-self.clip, self.clip)
        if _exporting() or not out.is_contiguous():  # exporters mis-trace in-place ops on a reshaped view
            for block, part, sl in CHANNEL_GROUPS[: n_blocks * len(PARTS)]:
                out[..., sl] *= groups[..., block, part, None]
            return out
        blocks = out.view(*out.shape[:-1], n_blocks, STATIC_DIM)  # [.., T, blocks, 1629]
        for part, name in enumerate(PARTS):  # absent (block, part) groups to 0: one op per part
            blocks[..., SLICES[name]].mul_(groups[..., part, None])
        return out

    def _statistics(self, signers: Sequence[str] | None, batch: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global mean/std ([width]), or with ``signer_level`` and signers named, each sentence's
        signer's ([B, 1, width]; the global ones for a signer without statistics)."""
        if not (self.signer_level and signers and any(s in self.signer_stats for s in signers)):
            return self.mean[:width], self.std[:width]
        if len(signers) != batch:
            raise ValueError(f"{len(signers)} signers given for a batch of {batch} sentences")
        pairs = [self.signer_stats.get(s, (self.mean, self.std)) for s in signers]
        mean = torch.stack([m[:width] for m, _ in pairs]).to(self.mean.device)[:, None, :]
        std = torch.stack([s[:width] for _, s in pairs]).to(self.std.device)[:, None, :]
        return mean, std

    def _standardize_per_sample(self, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Mean/std of each sequence's channels over its present frames (masked sums as bmm)."""
        B, width = x.shape[0], x.shape[-1]
        mean = x.new_zeros(B, 1, width)
        sq = x.new_zeros(B, 1, width)
        count = x.new_zeros(B, 1, width)
        for block, part, sl in CHANNEL_GROUPS[: groups.shape[-2] * len(PARTS)]:
            w = groups[..., block, part][:, None, :]  # [B, 1, T]
            mean[..., sl] = torch.bmm(w, x[..., sl])
            sq[..., sl] = torch.bmm(w, x[..., sl] * x[..., sl])
            count[..., sl] = w.sum(-1, keepdim=True)
        count = count.clamp_min(1.0)
        mean = mean / count
        std = (sq / count - mean * mean).clamp_min(0.0).sqrt().clamp_min(self.std_floor)
        return (x - mean) / std

    def _fit_inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """What the statistics are taken over: the features in the body frame (raw values limited)
        [B, T, 6516] with non-finite values set to 0, the (block, part) presence of the valid frames
        [B, T, 4, 4], and where the values are finite (None when all are)."""
        x = self._relative(batch.features, batch.presence, batch.lengths, limit=True)
        groups = (group_presence(batch.presence) & time_mask(batch.lengths, x.shape[1])[..., None, None]).to(x.dtype)
        finite = torch.isfinite(x)
        if bool(finite.all()):
            return x, groups, None
        return torch.where(finite, x, torch.zeros_like(x)), groups, finite

    @torch.no_grad()
    def fit(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Stream mean/std per channel over batches (train split), excluding missing values.

        Sums are taken around a reference (the first batch's mean) so the variance does not
        cancel catastrophically, per (block, part) group as matrix products, and accumulated in
        float64 across batches.
        """
        moments: _Moments | None = None
        frames = 0
        anchorless: list[str] = []
        for batch in batches:
            if self.body_relative:
                anchorless += without_anchor(batch.features, batch.presence, batch.lengths, batch.ids)
            x, groups, finite = self._fit_inputs(batch)
            x, groups = x.flatten(0, 1), groups.flatten(0, 1)  # [B*T, 6516], [B*T, 4, 4]
            if moments is None:
                moments = _Moments(_group_mean(x, groups))
            moments.add(x, groups, None if finite is None else finite.flatten(0, 1))
            frames += int(batch.lengths.sum())
        if anchorless:
            raise NoBodyAnchorError(
                f"{len(anchorless)} training sample(s) have no body anchor in any frame (no shoulders, ears, eyes, face "
                f"or nose: e.g. a hands-only skeleton), so normalization.body_relative=true cannot place them: "
                f"{', '.join(anchorless[:10])}{' ...' if len(anchorless) > 10 else ''}. Train such a corpus with "
                "normalization.body_relative=false, or extract a skeleton with the upper body")
        if frames == 0 or moments is None:
            raise ValueError("cannot fit global normalization statistics on an empty split")
        mean, std, never, floored = moments.result(self.std_floor)
        mean[never], std[never] = 0.0, 1.0
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.fitted.fill_(True)
        return {"frames": frames, "channels_never_present": int(never.sum()), "channels_floored": floored}

    @torch.no_grad()
    def fit_signers(self, batches: Iterable[Batch]) -> dict[str, int]:
        """Each named signer's mean/std per channel over their sentences in ``batches`` (one split, no
        labels read), kept in :attr:`signer_stats` for ``signer_level``; channels a signer never shows
        keep the global statistics, which must be fitted first. Returns the frames per signer."""
        if self.needs_fit:
            raise RuntimeError("fit the global statistics (Normalizer.fit) before the signers'")
        moments: dict[str, _Moments] = {}
        frames: dict[str, int] = {}
        for batch in batches:
            named = [s for s in dict.fromkeys(batch.signers) if s]
            if not named:
                continue
            x, groups, finite = self._fit_inputs(batch)
            for signer in named:
                rows = [i for i, s in enumerate(batch.signers) if s == signer]
                m = moments.setdefault(signer, _Moments(self.mean.clone()))
                m.add(x[rows].flatten(0, 1), groups[rows].flatten(0, 1),
                      None if finite is None else finite[rows].flatten(0, 1))
                frames[signer] = frames.get(signer, 0) + int(batch.lengths[rows].sum())
        for signer, m in moments.items():
            mean, std, never, _ = m.result(self.std_floor)
            mean[never], std[never] = self.mean.double()[never], self.std.double()[never]
            self.signer_stats[signer] = (mean.float(), std.float())
        return frames


def _group_mean(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """[6516] each channel's mean over the rows [N, 6516] where its (block, part) group is present."""
    ref = torch.zeros(FEATURE_DIM)
    for block, part, sl in CHANNEL_GROUPS:
        w = groups[:, block, part]
        ref[sl] = (w @ x[:, sl]) / w.sum().clamp_min(1.0)
    return ref


class _Moments:
    """Per-channel count, sum and sum of squares of present values, taken around ``ref`` [6516] (so
    the variance does not cancel catastrophically) as matrix products per (block, part) group, in
    float64 across batches."""

    def __init__(self, ref: torch.Tensor):
        self.ref = ref
        self.total = torch.zeros(FEATURE_DIM, dtype=torch.float64)
        self.total_sq = torch.zeros(FEATURE_DIM, dtype=torch.float64)
        self.count = torch.zeros(FEATURE_DIM, dtype=torch.float64)

    def add(self, x: torch.Tensor, groups: torch.Tensor, finite: torch.Tensor | None) -> None:
        """Rows ``x`` [N, 6516] with their group presence [N, 4, 4] and finiteness (None: all finite)."""
        x = x - self.ref.to(x.dtype)
        for block, part, sl in CHANNEL_GROUPS:
            w = groups[:, block, part]
            if finite is None:
                self.total[sl] += (w @ x[:, sl]).double()
                self.total_sq[sl] += (w @ (x[:, sl] * x[:, sl])).double()
                self.count[sl] += float(w.sum())
            else:
                wf = w[:, None] * finite[:, sl]
                self.total[sl] += (wf * x[:, sl]).sum(0).double()
                self.total_sq[sl] += (wf * x[:, sl] * x[:, sl]).sum(0).double()
                self.count[sl] += wf.sum(0).double()

    def result(self, std_floor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """mean and std [6516] (float64; std floored), the channels never present, how many were floored."""
        shifted_mean = self.total / self.count.clamp_min(1.0)
        var = (self.total_sq / self.count.clamp_min(1.0) - shifted_mean**2).clamp_min(0.0)
        mean = shifted_mean + self.ref.double()
        std = var.sqrt().clamp_min(std_floor)
        return mean, std, self.count == 0, int((var.sqrt() < std_floor).sum())


NORMALIZATION_KEYS = ("normaliz", "normalis", "standardiz", "standardis")
# The config groups that build what features pass through (the loader and its augmentation, the model): only
# there can a setting normalize them a second time. A key elsewhere that merely names normalization (e.g.
# `callbacks.feature_diagnostics.after_normalization`, a diagnostic switch) normalizes nothing.
FEATURE_GROUPS = ("data", "model", "augmentation")


def _find_second_places(node: Any, path: str) -> list[str]:
    """Config keys in the groups features pass through, outside the `normalization` group, that would
    normalize features again."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            child_path = f"{path}.{key}" if path else str(key)
            if not path and child_path not in FEATURE_GROUPS:
                continue
            named = any(k in str(key).lower() for k in NORMALIZATION_KEYS)
            if named and value not in (None, False, "none", "None", "", 0):
                found.append(child_path)
            found += _find_second_places(value, child_path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _find_second_places(value, f"{path}[{i}]")
    return found


def check_single_normalization(cfg: Any) -> None:
    """Refuse a config that normalizes anywhere but the `normalization` group."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    others = _find_second_places(tree, "")
    group = tree.get("normalization") or {}
    chosen = group.get("mode", "?")
    if chosen == "none" and not group.get("body_relative") and len(others) == 1:
        return  # features normalized on disk (e.g. `prenormalized: true`), none in the model: once
    if others:
        raise NormalizationConfigError(
            f"features would be normalized in two places: `normalization` (mode={chosen}) and "
            f"`{'`, `'.join(others)}`. sign_ctc normalizes exactly once, in the model, from the "
            "`normalization` config group. Remove the other setting and pick one mode with "
            "`normalization=per_sample|global|none` (add `normalization.body_relative=true` to centre "
            "on the shoulders); for features that were already normalized on disk use `normalization=none`."
        )
