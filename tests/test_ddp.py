"""Multi-process evaluation and mixed precision on CPU: 2 gloo processes give the single-process WER
on the same checkpoint; under bf16-mixed the CTC loss stays float32."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from tests.helpers import ROOT, SMALL_CORPUS
from tests.test_wandb import TINY


def test_sampler_splits_batches_disjointly_over_ranks():
    from sign_ctc.data.sampler import LengthBucketBatchSampler

    lengths = np.random.default_rng(0).integers(20, 200, size=37)
    single = list(LengthBucketBatchSampler(lengths, 4, shuffle=False))
    ranks = [list(LengthBucketBatchSampler(lengths, 4, shuffle=False, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(LengthBucketBatchSampler(lengths, 4, num_replicas=2, rank=0))
    seen = [i for part in ranks for batch in part for i in batch]
    assert sorted(set(seen)) == list(range(37))  # every sample, padding repeats a whole batch at most
    assert len(seen) - 37 <= max(map(len, single))
    shuffled = [list(LengthBucketBatchSampler(lengths, 4, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert not {tuple(b) for b in shuffled[0]} & {tuple(b) for b in shuffled[1][: len(shuffled[1]) - 1]}


def test_lightning_reshuffles_the_length_buckets_every_epoch(small_corpus):
    from sign_ctc.data.datamodule import SignDataModule

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[tuple[str, ...]]] = {}

        def training_step(self, batch, batch_idx):
            self.seen.setdefault(self.current_epoch, []).append(tuple(batch.ids))
            return self.w.sum() * 0.0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = SignDataModule(small_corpus, batch_size=4, num_workers=0, train_subset=16, seed=5)
    model = Recorder()
    pl.Trainer(max_epochs=3, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, use_distributed_sampler=False).fit(model, datamodule=dm)
    ids = [s.id for s in dm.dataset("train").sentences]
    sampler = dm.train_dataloader().batch_sampler
    for epoch in range(3):
        assert sorted(i for b in model.seen[epoch] for i in b) == sorted(ids)
        sampler.set_epoch(epoch)
        assert model.seen[epoch] == [tuple(ids[i] for i in b) for b in sampler]
    assert model.seen[0] != model.seen[1] != model.seen[2]


@pytest.mark.slow  # ~40 s: a training, a single-process and a 2-process evaluation
def test_two_gloo_processes_give_the_single_process_test_wer(make_cfg, small_corpus, tmp_path, cache_dir):
    from sign_ctc.run.evaluate import evaluate
    from sign_ctc.run.train import train

    run = tmp_path / "run"
    train(make_cfg("logger=csv", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "test=false",
                   *SMALL_CORPUS, "data.batch_size=4", *TINY, output_dir=run))
    ckpt = run / "checkpoints" / "best.ckpt"
    # 12 test sentences in batches of 4: 3 batches, padded to 2 per rank (one sentence set seen twice)
    data = ["data=synthetic", *SMALL_CORPUS, "data.eval_batch_size=4", "++seed=1234"]  # data.seed interpolates ${seed}
    single = evaluate(make_cfg(f"ckpt_path={ckpt}", *data, config_name="eval", output_dir=tmp_path / "single"))

    ddp_dir = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "eval.py", f"ckpt_path={ckpt}", "trainer=ddp", "trainer.accelerator=cpu",
                           "trainer.devices=2", f"hydra.run.dir={ddp_dir}", f"paths.cache_dir={cache_dir}", *data],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr and "All distributed processes registered" in (
        proc.stdout + proc.stderr)
    ddp = json.loads((ddp_dir / "test_results.json").read_text())["test"]
    assert ddp["sentences"] == single["sentences"] == 12
    for key in ("wer", "sub", "del", "ins", "num_ref"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-9)
    assert (ddp_dir / "test_predictions.csv").read_text() == (tmp_path / "single" / "test_predictions.csv").read_text()


class LossDtype(pl.Callback):
    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.dtypes.append(outputs["loss"].dtype)


def test_bf16_mixed_keeps_ctc_in_float32(make_cfg, small_corpus):
    from sign_ctc.run.build import build_datamodule, build_model

    cfg = make_cfg(*SMALL_CORPUS, "data.batch_size=2", *TINY)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    probe = LossDtype()
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", max_epochs=1, limit_train_batches=2,
                         limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[probe])
    trainer.fit(model, datamodule=datamodule)
    assert probe.dtypes == [torch.float32, torch.float32]
    assert torch.isfinite(trainer.callback_metrics["train/loss"])

    # inside autocast the net computes in bf16, the log-probs and the CTC loss in float32
    batch = next(iter(datamodule.train_dataloader())).with_features()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model.net(torch.nan_to_num(batch.features), batch.presence, batch.lengths)
        log_probs, out_lengths = model(batch.features, batch.presence, batch.lengths)
        per_sample, _, raw = model.ctc_loss(log_probs, out_lengths, batch)
    assert logits.dtype == torch.bfloat16
    assert log_probs.dtype == per_sample.dtype == raw.dtype == torch.float32
