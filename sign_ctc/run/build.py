"""Instantiating the data and the model from a composed config, as train.py and diagnose share."""

from __future__ import annotations

import logging

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from sign_ctc.data.datamodule import SignDataModule
from sign_ctc.errors import ConfigError
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.models.normalization import Normalizer

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> SignDataModule:
    datamodule: SignDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    return datamodule


def build_model(cfg: DictConfig, datamodule: SignDataModule, normalizer: Normalizer | None = None) -> CTCModule:
    """Normalizer (fitted on the train split when global) + net + CTC module (with the test-split
    decoder of the `decoding` group), and the recipe that lets a checkpoint rebuild it.

    ``normalizer``: one already fitted for this config (benchmarks build several models on one fit)."""
    normalizer = normalizer if normalizer is not None else hydra.utils.instantiate(cfg.normalization)
    decoder = hydra.utils.instantiate(cfg.decoding) if cfg.get("decoding") else None
    model: CTCModule = hydra.utils.instantiate(cfg.model, normalizer=normalizer, vocab=datamodule.vocab.tokens,
                                               test_decoder=decoder)
    model.recipe = {"model": OmegaConf.to_container(cfg.model, resolve=True),
                    "normalization": OmegaConf.to_container(cfg.normalization, resolve=True),
                    "features": {"missing": datamodule.missing},
                    # The corpus it was trained on: eval.py scores it when no other is named.
                    "data": OmegaConf.to_container(cfg.data, resolve=True)}
    log.info("model %s: %.2fM parameters, temporal stride %d, vocabulary %d (blank + <unk> + %d glosses)",
             type(model.net).__name__, model.num_parameters() / 1e6, model.net.total_stride,
             len(datamodule.vocab), len(datamodule.vocab) - 2)
    warn_infeasible(model, datamodule)
    check_augmentation_stride(model, datamodule)
    if normalizer.needs_fit:
        stats = normalizer.fit(datamodule.split_batches("train"))
        log.info("global normalization statistics from the train split: %s", stats)
    if normalizer.signer_level:
        fit_signer_statistics(normalizer, datamodule, ("train", datamodule.val_split, "test"))
    distillation = hydra.utils.instantiate(cfg.distillation) if cfg.get("distillation") else None
    if distillation is not None:  # after the fit: the teacher's statistics must equal the student's
        distillation.attach(model, datamodule)
        model.distillation = distillation
        model.recipe["distillation"] = OmegaConf.to_container(cfg.distillation, resolve=True)
    return model


def fit_signer_statistics(normalizer: Normalizer, datamodule: SignDataModule, splits: tuple[str, ...]) -> None:
    """Signer-level normalization: every signer's statistics from their sentences in ``splits`` (features
    only; the dev and test signers' too, as speaker-level CMVN adapts to a new speaker)."""
    for split in dict.fromkeys(splits):
        frames = normalizer.fit_signers(datamodule.split_batches(split))
        if not frames:
            raise ConfigError(f"normalization.signer_level=true, but the {split} split names no signer (its "
                              "annotation's signer column is empty): use normalization.signer_level=false")
        log.info("signer-level normalization: %s split, %d signer(s) (%s)", split, len(frames),
                 ", ".join(f"{s}: {n} frames" for s, n in list(frames.items())[:8]))


def warn_infeasible(model: CTCModule, datamodule: SignDataModule, split: str = "train") -> list[str]:
    """Warn once, before training, how many sentences are too short for CTC at this stride."""
    from sign_ctc.models.ctc_module import ctc_required_lengths

    ds = datamodule.dataset(split)
    targets = [datamodule.vocab.encode(s.glosses) for s in ds.sentences]
    flat = torch.tensor([t for seq in targets for t in seq], dtype=torch.long)
    need = ctc_required_lengths(flat, torch.tensor([len(t) for t in targets]))
    have = model.net.output_lengths(torch.tensor(ds.lengths()))
    bad = [s.id for s, ok in zip(ds.sentences, (have >= need).tolist()) if not ok]
    if bad:
        log.warning("%d of %d %s sentences (%.1f%%) are too short for their glosses at temporal stride %d and "
                    "will be left out of the CTC loss, e.g. %s", len(bad), len(ds), split,
                    100.0 * len(bad) / len(ds), model.net.total_stride, ", ".join(bad[:5]))
    return bad


def check_augmentation_stride(model: CTCModule, datamodule: SignDataModule, split: str = "train") -> None:
    """Refuse a training augmentation whose length floor the net cannot align.

    The augmentation never resamples a sentence below ``need * temporal_stride + length_margin``
    frames; that floor must give every train sentence's CTC minimum through the net's exact output
    lengths (e.g. augmentation.temporal_stride=8 for model.net.temporal_strides=[2,1,2,2]).
    """
    from sign_ctc.data.augment import ctc_min_outputs

    augmentation = getattr(datamodule, "augmentation", None)
    if augmentation is None:
        return
    ds = datamodule.dataset(split)
    needs = torch.tensor(sorted({ctc_min_outputs(datamodule.vocab.encode(s.glosses)) for s in ds.sentences}))
    floors = torch.tensor([augmentation.min_frames(int(n)) for n in needs])
    short = model.net.output_lengths(floors) < needs
    if bool(short.any()):
        need = int(needs[short][0])
        raise ConfigError(f"augmentation.temporal_stride={augmentation.temporal_stride} (length_margin="
                          f"{augmentation.length_margin}) is too small for the model's total temporal stride "
                          f"{model.net.total_stride}: a sentence needing {need} CTC frames may be resampled to "
                          f"{augmentation.min_frames(need)} frames, which the net reduces to "
                          f"{int(model.net.output_lengths(torch.tensor([augmentation.min_frames(need)]))[0])}; "
                          f"set augmentation.temporal_stride={model.net.total_stride}")
