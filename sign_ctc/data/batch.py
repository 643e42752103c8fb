"""The batch: what the loaders give and the module, callbacks and benchmarks read, one typed object.

Loaders carry raw landmarks (``points`` [B, T, 543, 3], float16 from the store: 3.3 KB a frame
instead of the 26 KB of float32 features) and the 6516 features are derived after the transfer
(:meth:`Batch.with_features`): on a GPU the derivation is a few elementwise kernels instead of the
loader workers' main cost. The module calls it in ``on_after_batch_transfer``, so training,
validation, test and predict see the same features; code that reads loader batches outside a
Trainer (the normalization statistics, diagnose, benchmarks) calls it too.

Lightning moves a batch with its ``to`` and the DataLoader pins it with its ``pin_memory``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from sign_ctc.features.layout import features_from_landmarks


def _empty_long() -> torch.Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class Batch:
    """A padded batch of ``B`` sentences of at most ``T`` frames.

    ``features`` or ``points`` holds the inputs (``points`` until the features are derived);
    ``targets`` are the gloss ids of all sentences concatenated (the 1-D form CTC loss takes).
    """

    presence: torch.Tensor  # [B, T, 4] bool: pose / left hand / right hand / face detected
    lengths: torch.Tensor  # [B] real frames of each sentence
    features: torch.Tensor | None = None  # [B, T, 6516] float32
    points: torch.Tensor | None = None  # [B, T, 543, 3] raw landmarks
    targets: torch.Tensor = field(default_factory=_empty_long)  # [sum of target_lengths]
    target_lengths: torch.Tensor = field(default_factory=_empty_long)  # [B]
    ids: list[str] = field(default_factory=list)  # [B] sentence ids
    # [B] who signs each sentence ("" unknown): signer-level normalization (normalization.signer_level) reads it
    signers: list[str] = field(default_factory=list)

    @classmethod
    def unlabelled(cls, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor) -> Batch:
        """Features without glosses (statistics, inference): ids are the row numbers."""
        B = features.shape[0]
        return cls(presence=presence, lengths=lengths, features=features,
                   target_lengths=torch.zeros(B, dtype=torch.long), ids=[str(i) for i in range(B)])

    def __len__(self) -> int:
        return len(self.ids)

    def _tensors(self, fn) -> Batch:
        return dataclasses.replace(self, **{f.name: fn(v) for f in dataclasses.fields(self)
                                            if isinstance(v := getattr(self, f.name), torch.Tensor)})

    def target_lists(self) -> list[list[int]]:
        """Each sentence's gloss ids: ``targets`` split by ``target_lengths``."""
        return [t.tolist() for t in torch.split(self.targets.cpu(), self.target_lengths.tolist())]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        return self._tensors(lambda t: t.pin_memory())

    def with_features(self) -> Batch:
        """``features`` [B, T, 6516] float32 derived from ``points`` on their device (``points`` dropped);
        a batch that has its features already as it is. float16 -> float32 is exact, so the features
        equal those derived from the float32 landmarks."""
        if self.points is None:
            return self
        return dataclasses.replace(self, points=None,
                                   features=features_from_landmarks(self.points.to(torch.float32), self.presence))

    def select(self, keep: torch.Tensor) -> Batch:
        """The samples where ``keep`` [B] is True, padded only to the longest kept one.

        Exactly what ``collate`` gives for those samples (rows kept in order, time axis trimmed; padding
        is zeros / absent), so anything that sees the whole padded batch (BatchNorm statistics) sees the
        same tensors as for a batch that never held the dropped samples.
        """
        idx = torch.nonzero(keep.cpu()).flatten()
        lengths = self.lengths[idx.to(self.lengths.device)]
        T = int(lengths.max()) if len(idx) else 0
        target_lengths = self.target_lengths.cpu()
        starts = torch.cumsum(target_lengths, 0) - target_lengths
        pieces = [torch.arange(int(starts[i]), int(starts[i]) + int(target_lengths[i])) for i in idx.tolist()]
        take = torch.cat(pieces) if pieces else _empty_long()

        def rows(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx.to(t.device), :T]

        return Batch(presence=rows(self.presence), lengths=lengths, features=rows(self.features),
                     points=rows(self.points), targets=self.targets[take.to(self.targets.device)],
                     target_lengths=self.target_lengths[idx.to(self.target_lengths.device)],
                     ids=[self.ids[i] for i in idx.tolist()],
                     signers=[self.signers[i] for i in idx.tolist()] if self.signers else [])
