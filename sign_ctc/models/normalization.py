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
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

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


class NormalizationConfigError(ValueError):
    """The config asks for normalization in more than one place."""


def time_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def valid_channels(presence: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, 6516] bool: channel detected and frame inside the sequence."""
    return channel_presence(presence) & time_mask(lengths, presence.shape[1])[..., None]


def body_frame(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
               per_frame: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Shoulder midpoint (z set to 0) and shoulder width: per sequence ([B, 3], [B]) from its present
    pose frames, or ``per_frame`` ([B, T, 3], [B, T]; frames without a pose take the sequence's)."""
    pose_ok = presence[..., 0].bool() & time_mask(lengths, features.shape[1])
    ls = features[..., 3 * LEFT_SHOULDER : 3 * LEFT_SHOULDER + 3]
    rs = features[..., 3 * RIGHT_SHOULDER : 3 * RIGHT_SHOULDER + 3]
    w = pose_ok.to(features.dtype)[..., None]
    count = w.sum(1).clamp_min(1.0)
    centre = (((ls + rs) / 2) * w).sum(1) / count
    centre[..., 2] = 0.0
    width = (((ls - rs)[..., :2].norm(dim=-1, keepdim=True)) * w).sum(1) / count
    has_pose = pose_ok.any(1)
    centre = torch.where(has_pose[:, None], centre, torch.zeros_like(centre))
    width = torch.where(has_pose, width.squeeze(-1), torch.ones_like(width.squeeze(-1))).clamp_min(1e-3)
    if not per_frame:
        return centre, width
    frame_centre = (ls + rs) / 2
    frame_centre[..., 2] = 0.0
    frame_width = (ls - rs)[..., :2].norm(dim=-1)
    ok = pose_ok & (frame_width > 1e-3)
    return (torch.where(ok[..., None], frame_centre, centre[:, None, :]),
            torch.where(ok, frame_width, width[:, None]))


def _exporting() -> bool:
    """A trace for ONNX / TorchScript export is running: ops the exporters handle, not the fastest eager ones."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


@functools.lru_cache(maxsize=8)
def _point_tile(device: torch.device) -> torch.Tensor:
    """[3, 1629] float32: x, y, z copied to every one of the 543 points (built once per device)."""
    return torch.eye(3, device=device).repeat(1, STATIC_DIM // 3)


def body_relative(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                  per_frame: bool = False) -> torch.Tensor:
    """Static coordinates centred on the shoulder midpoint, every channel in shoulder widths (a new
    tensor). The temporal channels are differences, so a per-sequence centre cancels there (per frame,
    they are only rescaled: differences of the raw coordinates in that frame's shoulder widths).

    One pass over the features, then the centre off the 1629 static channels (not a [B, T, 6516] offset
    added everywhere): at batch 1 on a CPU these passes are most of the normalizer's time.
    """
    centre, width = body_frame(features, presence, lengths, per_frame)
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
                 clip: float = 10.0, body_per_frame: bool = True):
        """``body_per_frame``: with ``body_relative``, centre and scale each frame on its own
        shoulders (the signer moving in the picture is removed) instead of the sequence's mean."""
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.body_relative = body_relative
        self.body_per_frame = body_per_frame
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
                f"std_floor={self.std_floor}, clip={self.clip}")

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "body_relative": self.body_relative, "body_per_frame": self.body_per_frame,
                "std_floor": self.std_floor, "clip": self.clip}

    def _relative(self, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                  limit: bool) -> torch.Tensor:
        """The features in the body frame when ``body_relative``; ``limit`` clamps raw values first (before
        statistics are taken from them: the per-sample ones, or ``fit``'s)."""
        x = features.clamp(-RAW_LIMIT, RAW_LIMIT) if limit else features
        return body_relative(x, presence, lengths, self.body_per_frame) if self.body_relative else x

    def forward(self, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``features``: the whole layout [B, T, 6516] or its leading blocks (static only: [B, T, 1629]),
        for a net that reads only those; each channel is normalized exactly as in the whole layout."""
        if self.needs_fit:
            raise RuntimeError("global normalization has no statistics: call Normalizer.fit on the train split "
                               "(train.py does) or load a checkpoint that carries them")
        width = features.shape[-1]
        if width % STATIC_DIM or not 0 < width <= FEATURE_DIM:
            raise ValueError(f"features must be the whole layout ({FEATURE_DIM} channels) or its leading blocks "
                             f"(a multiple of {STATIC_DIM}), got {width} channels")
        n_blocks = width // STATIC_DIM
        # Masks per (block, part) group instead of per channel: a few [B, T] masks, not [B, T, 6516].
        groups = group_presence(presence)[..., :n_blocks, :] & time_mask(lengths, presence.shape[1])[..., None, None]
        groups = groups.to(features.dtype)
        out = self._relative(features, presence, lengths, limit=self.mode == "per_sample")
        if self.mode == "global":  # (x - mean) / std as one pass, in place when out is already a new tensor
            inv_std = 1.0 / self.std[:width]
            inplace = out is not features and out.is_contiguous() and not _exporting()  # (ONNX: no addcmul out=)
            out = torch.addcmul(-self.mean[:width] * inv_std, out, inv_std, out=out if inplace else None)
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

    @torch.no_grad()
    def fit(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Stream mean/std per channel over batches (train split), excluding missing values.

        Sums are taken around a reference (the first batch's mean) so the variance does not
        cancel catastrophically, per (block, part) group as matrix products, and accumulated in
        float64 across batches.
        """
        total = torch.zeros(FEATURE_DIM, dtype=torch.float64)
        total_sq = torch.zeros(FEATURE_DIM, dtype=torch.float64)
        count = torch.zeros(FEATURE_DIM, dtype=torch.float64)
        ref: torch.Tensor | None = None
        frames = 0
        for batch in batches:
            feats, presence, lengths = batch.features, batch.presence, batch.lengths
            x = self._relative(feats, presence, lengths, limit=True)
            groups = (group_presence(presence) & time_mask(lengths, x.shape[1])[..., None, None]).to(x.dtype)
            groups = groups.flatten(0, 1)  # [B*T, 4, 4]
            x = x.flatten(0, 1)  # [B*T, 6516]
            finite = torch.isfinite(x)
            all_finite = bool(finite.all())
            if not all_finite:
                x = torch.where(finite, x, torch.zeros_like(x))
            if ref is None:
                ref = torch.zeros(FEATURE_DIM)
                for block, part, sl in CHANNEL_GROUPS:
                    w = groups[:, block, part]
                    ref[sl] = (w @ x[:, sl]) / w.sum().clamp_min(1.0)
            x = x - ref
            for block, part, sl in CHANNEL_GROUPS:
                w = groups[:, block, part]
                if all_finite:
                    total[sl] += (w @ x[:, sl]).double()
                    total_sq[sl] += (w @ (x[:, sl] * x[:, sl])).double()
                    count[sl] += float(w.sum())
                else:
                    wf = w[:, None] * finite[:, sl]
                    total[sl] += (wf * x[:, sl]).sum(0).double()
                    total_sq[sl] += (wf * x[:, sl] * x[:, sl]).sum(0).double()
                    count[sl] += wf.sum(0).double()
            frames += int(lengths.sum())
        if frames == 0 or ref is None:
            raise ValueError("cannot fit global normalization statistics on an empty split")
        shifted_mean = total / count.clamp_min(1.0)
        var = (total_sq / count.clamp_min(1.0) - shifted_mean**2).clamp_min(0.0)
        mean = shifted_mean + ref.double()
        std = var.sqrt().clamp_min(self.std_floor)
        never = count == 0
        mean[never], std[never] = 0.0, 1.0
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.fitted.fill_(True)
        return {"frames": frames, "channels_never_present": int(never.sum()),
                "channels_floored": int((var.sqrt() < self.std_floor).sum())}


NORMALIZATION_KEYS = ("normaliz", "normalis", "standardiz", "standardis")


def _find_second_places(node: Any, path: str) -> list[str]:
    """Config keys, outside the `normalization` group, that would normalize features again."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            child_path = f"{path}.{key}" if path else str(key)
            if child_path in ("normalization", "hydra"):
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
