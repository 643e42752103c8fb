"""The typed batch (sign_ctc.data.batch): each sentence's targets, before and after selecting samples."""

from __future__ import annotations

import torch

from sign_ctc.data.batch import Batch


def _batch() -> Batch:
    return Batch(presence=torch.ones(3, 5, 4, dtype=torch.bool), lengths=torch.tensor([5, 4, 5]),
                 features=torch.zeros(3, 5, 6516), targets=torch.tensor([2, 3, 3, 4, 5]),
                 target_lengths=torch.tensor([2, 0, 3]), ids=["a", "b", "c"])


def test_target_lists_split_the_concatenated_targets() -> None:
    assert _batch().target_lists() == [[2, 3], [], [3, 4, 5]]


def test_select_keeps_each_kept_sentence_its_own_targets() -> None:
    kept = _batch().select(torch.tensor([True, False, True]))
    assert kept.ids == ["a", "c"] and kept.target_lists() == [[2, 3], [3, 4, 5]]
    assert kept.lengths.tolist() == [5, 5] and kept.features.shape == (2, 5, 6516)


def test_select_keeps_each_kept_sentence_its_signer() -> None:
    batch = _batch()
    batch.signers = ["S1", "S2", "S3"]
    assert batch.select(torch.tensor([False, True, True])).signers == ["S2", "S3"]
    assert _batch().select(torch.tensor([True, False, True])).signers == []  # none named: none invented
