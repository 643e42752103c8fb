"""The diagnostic suite: the seed's six checks plus its overfit run, as one command.

    sign-ctc-diagnose [train.py overrides] [diagnose.overfit=true]

Prints a PASS/FAIL table with figures and exits non-zero when any check fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sign_ctc.callbacks.feature_diagnostics import modality_stats, render_table
from sign_ctc.cli import CONF_DIR, run_command
from sign_ctc.data.batch import Batch
from sign_ctc.data.collate import collate
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.models.normalization import check_single_normalization, valid_channels
from sign_ctc.run.backend import apply_backend
from sign_ctc.run.build import build_datamodule, build_model


@dataclass
class Check:
    name: str
    passed: bool
    figures: str


def _run(checks: list[Check], name: str, fn: Callable[[], tuple[bool, str]]) -> bool:
    try:
        ok, figures = fn()
    except Exception as exc:  # a diagnostic reports every failure instead of stopping at the first
        ok, figures = False, f"{type(exc).__name__}: {exc}"
    checks.append(Check(name, ok, figures))
    return ok


def _fmt(stats: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{k} mean {v['mean']:.2f} std {v['std']:.2f} [{v['min']:.1f},{v['max']:.1f}] "
                     f"nonfinite {v['nonfinite_pct']:.1f}% missing {v['missing_pct']:.0f}%" for k, v in stats.items())


def _train_steps(model: CTCModule, batch: Batch, steps: int, lr: float | None = None) -> list[float]:
    optimizer = model.optimizer_factory(params=model.parameters())
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    model.train()
    losses = []
    for _ in range(steps):
        log_probs, out_lengths = model(batch.features, batch.presence, batch.lengths, batch.signers)
        per_sample, feasible, _ = model.ctc_loss(log_probs, out_lengths, batch)
        loss = per_sample[feasible].mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def _wer(model: CTCModule, batch: Batch) -> float:
    from sign_ctc.decoding.decoders import greedy_decode
    from sign_ctc.scoring.wer import wer

    model.eval()
    with torch.no_grad():
        log_probs, out_lengths = model(batch.features, batch.presence, batch.lengths, batch.signers)
    hyps = [model.vocab.decode(h) for h in greedy_decode(log_probs, out_lengths)]
    refs = [model.vocab.decode(t) for t in batch.target_lists()]
    return wer(refs, hyps).wer


def diagnose(cfg: DictConfig) -> list[Check]:
    checks: list[Check] = []
    state: dict[str, Any] = {}

    def load() -> tuple[bool, str]:
        check_single_normalization(cfg)
        apply_backend(cfg, announce=False)
        dm = build_datamodule(cfg)
        state["model"] = build_model(cfg, dm)
        state["batch"] = next(iter(dm.train_dataloader())).with_features()
        state["dm"] = dm
        b = state["batch"]
        return True, (f"{len(dm.dataset('train'))} train samples; batch {tuple(b.features.shape)}; "
                      f"normalization {state['model'].normalizer.describe()}")

    if not _run(checks, "1 dataset loads", load):
        return checks
    model: CTCModule = state["model"]
    batch = state["batch"]

    def stats() -> tuple[bool, str]:
        valid = valid_channels(batch.presence, batch.lengths)
        before = modality_stats(batch.features, valid)
        with torch.no_grad():
            normalized = model.normalizer(batch.features, batch.presence, batch.lengths, signers=batch.signers)
            after = modality_stats(normalized, valid)
        print(render_table("features before normalization", before))
        print(render_table("features after normalization", after))
        finite = all(v["nonfinite_pct"] == 0 and math.isfinite(v["std"]) for v in after.values())
        sane = all(v["std"] < 10 and max(abs(v["min"]), abs(v["max"])) <= model.normalizer.clip + 1e-6
                   for v in after.values())
        return finite and sane, "after: " + _fmt(after)

    _run(checks, "2 feature statistics", stats)

    def forward() -> tuple[bool, str]:
        model.eval()
        with torch.no_grad():
            log_probs, out_lengths = model(batch.features, batch.presence, batch.lengths, batch.signers)
        expected = model.net.output_lengths(batch.lengths)
        state["fwd"] = (log_probs, out_lengths)
        ok = (bool(torch.isfinite(log_probs).all()) and torch.equal(out_lengths.cpu(), expected.cpu())
              and log_probs.shape[0] == batch.features.shape[0] and log_probs.shape[2] == len(model.vocab))
        return ok, f"log-probs {tuple(log_probs.shape)}, lengths {out_lengths.tolist()[:6]}... = output_lengths()"

    _run(checks, "3 forward finite, shape and length", forward)

    def loss() -> tuple[bool, str]:
        log_probs, out_lengths = state["fwd"]
        per_sample, feasible, _ = model.ctc_loss(log_probs, out_lengths, batch)
        value = per_sample[feasible].mean()
        return bool(torch.isfinite(value)), f"CTC loss {float(value):.3f}; {int((~feasible).sum())} infeasible sample(s)"

    _run(checks, "4 loss finite", loss)

    def backward() -> tuple[bool, str]:
        model.train()
        model.zero_grad()
        log_probs, out_lengths = model(batch.features, batch.presence, batch.lengths, batch.signers)
        per_sample, feasible, _ = model.ctc_loss(log_probs, out_lengths, batch)
        per_sample[feasible].mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        model.zero_grad()
        return bool(torch.isfinite(norm)), f"gradient norm {float(norm):.3f} over {len(grads)} tensors"

    _run(checks, "5 backward finite", backward)

    def probe_loss() -> float:
        """The batch's loss with fixed dropout masks: before and after differ only by the updates."""
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            model.train()
            log_probs, out_lengths = model(batch.features, batch.presence, batch.lengths, batch.signers)
            per_sample, feasible, _ = model.ctc_loss(log_probs, out_lengths, batch)
            return float(per_sample[feasible].mean())

    def iterations() -> tuple[bool, str]:
        before = probe_loss()
        losses = _train_steps(model, batch, int(cfg.diagnose.iterations))
        after = probe_loss()
        ok = all(math.isfinite(x) for x in [before, after, *losses]) and after < before
        return ok, f"loss {before:.3f} -> {after:.3f} after {len(losses)} iterations (same dropout masks)"

    _run(checks, "6 training iterations lower the loss", iterations)

    if cfg.diagnose.overfit:
        def overfit() -> tuple[bool, str]:
            ds = state["dm"].dataset("train")
            small = collate([ds[i] for i in range(int(cfg.diagnose.overfit_samples))]).with_features()
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
            steps, wer_value = 0, 100.0
            while steps < int(cfg.diagnose.overfit_max_steps):
                _train_steps(model, small, 10)
                steps += 10
                wer_value = _wer(model, small)
                if wer_value == 0.0:
                    break
            return wer_value == 0.0, f"{len(small.ids)} samples: WER {wer_value:.1f}% after {steps} steps"

        _run(checks, "overfit to 0% WER", overfit)
    return checks


def print_table(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sign_ctc diagnostics")
    table.add_column("check")
    table.add_column("result")
    table.add_column("figures", overflow="fold")
    for c in checks:
        table.add_row(c.name, "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]", c.figures)
    Console(width=140).print(table)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="diagnose")
def main(cfg: DictConfig) -> None:
    run_command("diagnose", _diagnose, cfg)


def _diagnose(cfg: DictConfig) -> int:
    """Exit 1 when a check fails (each failure, a refused config included, is a FAIL row saying why)."""
    checks = diagnose(cfg)
    print_table(checks)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    main()
