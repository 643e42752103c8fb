"""Frame-level knowledge distillation with CTC: the student learns the teacher's per-frame posteriors.

loss = CTC + weight · T² · KL(teacher ‖ student), the KL taken per output frame on the
temperature-softened distributions (optionally without the blank column, renormalized, as VAC
does) and averaged over the real (unpadded) frames. The CTC term stays: frame-level KL alone fails
when the two models' spike timings differ. Teacher and student must emit the same number of frames
for every input length (same total temporal stride), read the same vocabulary and see the same
features: anything else is refused when training starts.

The teacher is loaded with ``weights_only=True``, frozen, in eval mode, and is not part of the
student's module (it is neither trained nor saved in the student's checkpoints). Without
augmentation its outputs are the same every epoch, so they are cached once per training sample
(float16, one file per sample, keyed by the teacher checkpoint's sha256 and the corpus): after the
first epoch distillation costs no teacher forward passes. The rounded values are what the student
learns from in the first epoch too, so a run that fills the cache and a run that reads it train
alike. With augmentation it runs on the fly.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sign_ctc.atomic import write_bytes_atomic
from sign_ctc.data.batch import Batch
from sign_ctc.errors import SignCtcError

log = logging.getLogger(__name__)


class DistillationError(SignCtcError, ValueError):
    """A teacher that cannot teach this student on this data; the message says why."""


def frame_kl(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor, lengths: torch.Tensor | None,
             temperature: float, drop_blank: bool, blank: int = 0) -> torch.Tensor:
    """Mean over frames of KL(teacher ‖ student) at ``temperature`` ([B, T, C] log-probs; a
    log-softmax output divided by T and renormalized is the softmax of the logits / T).
    ``lengths``: average over each sample's first ``lengths`` frames only (None: all frames)."""
    t, s = teacher_log_probs.float(), student_log_probs.float()
    if drop_blank:
        t = torch.cat([t[..., :blank], t[..., blank + 1:]], dim=-1)
        s = torch.cat([s[..., :blank], s[..., blank + 1:]], dim=-1)
    t = torch.log_softmax(t / temperature, dim=-1)
    s = torch.log_softmax(s / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)  # [B, T]
    if lengths is None:
        return kl.mean()
    mask = (torch.arange(kl.shape[1], device=kl.device)[None, :] < lengths.to(kl.device)[:, None]).to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)


def no_distillation() -> None:
    """The ``distillation=none`` option: instantiates to None, the model learns from CTC alone."""
    return None


class FrameKLDistillation:
    """``teacher_ckpt``: a sign_ctc checkpoint. ``temperature``/``weight``: T and λ of the loss.
    ``drop_blank``: KL over the gloss columns only. ``mask_padding``: average over real frames only.
    ``cache_dir``: where teacher outputs are cached (null: never cached)."""

    def __init__(self, teacher_ckpt: str, temperature: float = 8.0, weight: float = 10.0, drop_blank: bool = True,
                 mask_padding: bool = True, cache_dir: str | None = None):
        if not teacher_ckpt:
            raise DistillationError("distillation.teacher_ckpt is not set: give the teacher's checkpoint, e.g. "
                                    "distillation.teacher_ckpt=outputs/train/runs/<run>/checkpoints/best.ckpt")
        if temperature <= 0 or weight < 0:
            raise DistillationError(f"distillation needs temperature > 0 and weight >= 0, got {temperature}, {weight}")
        self.teacher_ckpt = Path(teacher_ckpt)
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.drop_blank = bool(drop_blank)
        self.mask_padding = bool(mask_padding)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache: Path | None = None  # this teacher + corpus's folder, set by attach() when caching
        self.teacher: Any = None
        self.teacher_forwards = 0  # samples the teacher has run on (cache misses); tests and logs read it
        # Cached outputs once read or computed in this process: the disk is read once per sample, not per step.
        self._memory: dict[str, torch.Tensor] = {}

    # ---- setup ---------------------------------------------------------------------------
    def attach(self, student: Any, datamodule: Any) -> None:
        """Load the teacher and refuse it unless it matches the student's vocabulary, features,
        normalization and temporal stride; decide whether its outputs can be cached."""
        from sign_ctc.models.checkpoint import CheckpointError, load_module

        try:
            teacher = load_module(self.teacher_ckpt)  # its vocabulary and recipe come with it
        except CheckpointError as e:
            raise DistillationError(f"distillation.teacher_ckpt: {e}") from e
        where = f"teacher {self.teacher_ckpt}"
        tokens = list(teacher.vocab.tokens)
        if tokens != list(student.vocab.tokens):
            diff = sorted(set(tokens) ^ set(student.vocab.tokens))[:5]
            raise DistillationError(f"{where} has a vocabulary of {len(tokens)} tokens, the student's data "
                                    f"{len(student.vocab)} (in one only: {diff}): train both on the same corpus")
        trained_missing = teacher.recipe.get("features", {}).get("missing")
        if trained_missing not in (None, datamodule.missing):
            raise DistillationError(f"{where} was trained with data.missing={trained_missing}, the student's data "
                                    f"uses {datamodule.missing}: set data.missing={trained_missing}")
        t_norm, s_norm = teacher.normalizer, student.normalizer
        if t_norm.describe() != s_norm.describe():
            raise DistillationError(f"{where} normalizes with {t_norm.describe()}, the student with "
                                    f"{s_norm.describe()}: use the teacher's normalization settings")
        if not (torch.allclose(t_norm.mean, s_norm.mean, atol=1e-5) and torch.allclose(t_norm.std, s_norm.std, atol=1e-5)):
            raise DistillationError(f"{where} has other normalization statistics than the student's train split: "
                                    "it was trained on other data")
        if s_norm.signer_level:  # never saved: the teacher reads the signers' statistics the student's data gave
            t_norm.signer_stats = s_norm.signer_stats
        probe = torch.arange(1, 2049)
        if not torch.equal(torch.as_tensor(teacher.net.output_lengths(probe)), torch.as_tensor(student.net.output_lengths(probe))):
            raise DistillationError(f"{where} has total temporal stride {teacher.net.total_stride}, the student "
                                    f"{student.net.total_stride}: their output frames do not align")
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher.eval()
        if self.cache_dir is not None and getattr(datamodule, "augmentation", None) is None:
            from sign_ctc.checksum import sha256_of

            corpus = hashlib.sha256(f"{Path(datamodule.corpus.root).resolve()}|{datamodule.missing}".encode()).hexdigest()
            self.cache = self.cache_dir / f"{sha256_of(self.teacher_ckpt)[:16]}_{corpus[:8]}"
            self.cache.mkdir(parents=True, exist_ok=True)
            log.info("distillation: teacher outputs cached in %s", self.cache)
        else:
            log.info("distillation: teacher runs on every batch (%s)",
                     "augmentation on" if self.cache_dir is not None else "cache_dir=null")

    # ---- teacher outputs -----------------------------------------------------------------
    def _cache_file(self, sample_id: str) -> Path:
        assert self.cache is not None
        return self.cache / f"{sample_id.replace('/', '__')}.npy"

    def _read_cached(self, sample_id: str, frames: int, classes: int) -> torch.Tensor | None:
        held = self._memory.get(sample_id)
        if held is not None and held.shape == (frames, classes):
            return held
        path = self._cache_file(sample_id)
        if not path.exists():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.shape != (frames, classes):
            return None
        self._memory[sample_id] = torch.from_numpy(arr.astype(np.float32))
        return self._memory[sample_id]

    @torch.no_grad()
    def teacher_log_probs(self, batch: Batch, out_lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """[B, frames, C] teacher log-probs for the batch (cached ones read, the rest computed)."""
        if self.teacher is None:
            raise DistillationError("FrameKLDistillation.attach() was not called")
        device = batch.features.device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        classes = len(self.teacher.vocab)
        out = torch.zeros(len(batch.ids), frames, classes, device=device)
        todo = list(range(len(batch.ids)))
        if self.cache is not None:
            todo = []
            for i, sample_id in enumerate(batch.ids):
                n = int(out_lengths[i])
                cached = self._read_cached(sample_id, n, classes)
                if cached is None:
                    todo.append(i)
                else:
                    out[i, :n] = cached.to(device)
        if todo:
            idx = torch.tensor(todo, device=batch.lengths.device)
            n_max = int(batch.lengths[idx].max())
            signers = [batch.signers[i] for i in todo] if batch.signers else None
            log_probs, lengths = self.teacher(batch.features[idx, :n_max], batch.presence[idx, :n_max],
                                              batch.lengths[idx], signers)
            self.teacher_forwards += len(todo)
            for j, i in enumerate(todo):
                n = int(lengths[j])
                if self.cache is None:
                    out[i, :n] = log_probs[j, :n]
                    continue
                # The float16 values the cache keeps are used now too, so the run that fills the cache
                # learns from the same targets as every later run that reads it (same figures either way).
                rounded = log_probs[j, :n].cpu().numpy().astype(np.float16)
                buf = io.BytesIO()
                np.save(buf, rounded, allow_pickle=False)
                write_bytes_atomic(self._cache_file(batch.ids[i]), buf.getvalue())
                out[i, :n] = torch.from_numpy(rounded.astype(np.float32)).to(device)
        return out

    # ---- loss ----------------------------------------------------------------------------
    def loss(self, student_log_probs: torch.Tensor, out_lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
        """weight · T² · KL(teacher ‖ student), averaged over the (real) output frames."""
        teacher = self.teacher_log_probs(batch, out_lengths, student_log_probs.shape[1])
        kl = frame_kl(teacher, student_log_probs, out_lengths if self.mask_padding else None,
                      self.temperature, self.drop_blank)
        return self.weight * self.temperature ** 2 * kl
