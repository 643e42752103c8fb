"""CTCModule: normalization -> net -> log-probs -> CTC loss (fp32), decoding and WER.

The one LightningModule. It owns CTC feasibility: in training, a sample whose output would be
shorter than its target needs is dropped from the batch before the forward pass (so neither its
Inf loss nor its frames reach gradients or BatchNorm statistics) and reported; in evaluation it is
masked out of the loss and still decoded. It reports non-finite inputs, logits and losses by sample
id (the NaN guard callback acts on them), and writes into every checkpoint what inference needs:
vocabulary, feature layout version and the config recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from sign_ctc.data.batch import Batch
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.decoding.decoders import greedy_decode
from sign_ctc.features.layout import FEATURE_DIM, LAYOUT_VERSION
from sign_ctc.models.checkpoint_meta import check_layout
from sign_ctc.models.normalization import Normalizer, time_mask
from sign_ctc.scoring.wer import WERResult, wer



def posterior_entropy(log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The per-frame entropy (nats) of the posteriors [B, T, C], averaged over each sentence's valid
    frames and then over the batch (each sentence weighs the same, as in the per-sample CTC mean)."""
    frames = -(log_probs.exp() * log_probs).sum(-1)  # [B, T]
    valid = time_mask(lengths.to(log_probs.device), log_probs.shape[1])
    per_sample = (frames * valid).sum(1) / valid.sum(1).clamp_min(1)
    return per_sample.mean()


def ctc_required_lengths(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Frames CTC needs per sample: target length + adjacent repeats (a blank must separate them).

    Vectorized on the targets' device: no per-sample host round trip (one per sample and step on a GPU).
    """
    target_lengths = target_lengths.to(device=targets.device, dtype=torch.long)
    sample = torch.repeat_interleave(torch.arange(len(target_lengths), device=targets.device), target_lengths,
                                     output_size=targets.numel())
    repeat = (targets[1:] == targets[:-1]) & (sample[1:] == sample[:-1])  # not across two samples
    repeats = torch.zeros_like(target_lengths).index_add_(0, sample[1:], repeat.long())
    return target_lengths + repeats


def nonfinite_samples(x: torch.Tensor) -> torch.Tensor:
    """[B] flags: which samples hold a NaN or Inf.

    One float32 sum per sample finds them (NaN and Inf survive a sum); the elementwise pass runs
    only when a sum is not finite, and then decides (finite values that overflow the sum are not
    flagged). Checking a [B, T, 6516] batch elementwise every step cost ~10% of a CPU step.
    """
    suspect = ~torch.isfinite(x.flatten(1).sum(1, dtype=torch.float32))
    if not bool(suspect.any()):
        return suspect
    return ~torch.isfinite(x).flatten(1).all(1)


@dataclass
class NonFiniteEvent:
    """Where a value first became non-finite in a step, and which samples carried it."""

    where: str  # "input" | "forward" | "loss" | "backward"
    ids: list[str]
    step: int
    detail: dict[str, Any] = field(default_factory=dict)


class CTCModule(pl.LightningModule):
    def __init__(self, net: Callable[..., nn.Module], normalizer: Normalizer, vocab: Sequence[str],
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, zero_infinity: bool = False,
                 test_decoder: Callable[..., Any] | None = None, aux_ctc_weight: float = 1.0,
                 scheduler_interval: str = "epoch", compile_net: bool | dict[str, Any] = False,
                 entropy_weight: float = 0.0):
        """``aux_ctc_weight``: weight of the net's auxiliary CTC head (``net.aux_ctc``) in the loss.
        ``entropy_weight``: entropy regularization of the CTC posteriors (a confidence penalty, Pereyra et
        al., 2017): the loss minus this weight times each sentence's mean per-frame entropy. CTC left to
        itself grows peaky, blank-dominated posteriors; on unseen signers the doubtful glosses then drown
        in the blank and come out as deletions (issue 26), which a flatter posterior may keep.
        ``scheduler_interval``: ``epoch``, or ``step`` (the scheduler factory then also receives
        ``total_steps``, e.g. OneCycleLR: warm-up and annealing per optimizer step).
        ``compile_net``: ``torch.compile`` the net (True, or a dict of torch.compile options such as
        ``{mode: max-autotune}``), always ``dynamic=False``; pair it with ``data.pad_to_multiple``."""
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.save_hyperparameters(ignore=["net", "normalizer", "optimizer", "scheduler", "test_decoder"])
        self.vocab = Vocabulary(vocab)
        self.normalizer = normalizer
        self.net = net(num_classes=len(self.vocab))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.zero_infinity = zero_infinity
        self.aux_ctc_weight = float(aux_ctc_weight)
        if entropy_weight < 0:
            raise ValueError(f"model.entropy_weight must be >= 0 (a weight on the entropy bonus), got {entropy_weight}")
        self.entropy_weight = float(entropy_weight)
        if self.aux_ctc_weight and getattr(self.net, "aux_classifier", None) is None:
            raise ValueError("model.aux_ctc_weight > 0 needs a net with an auxiliary head (model.net.aux_ctc=true)")
        self.scheduler_interval = scheduler_interval
        self.compile_options = ({} if compile_net is True else dict(compile_net)) if compile_net else None
        self.test_decoder = test_decoder(vocab_tokens=self.vocab.tokens) if test_decoder else None
        self.nonfinite_event: NonFiniteEvent | None = None
        # This step's total gradient norm, when the NaN guard has measured it: clipping reuses it.
        self.grad_norm: torch.Tensor | None = None
        self.infeasible_ids: list[str] = []
        self._eval_outputs: list[tuple[str, list[str], list[str]]] = []
        self.best_wer = float("inf")
        self.last_result: WERResult | None = None
        self.predictions: list[dict[str, Any]] = []
        # The resolved model + normalization configs, set by train.py; eval rebuilds from it.
        self.recipe: dict[str, Any] = {}
        # A teacher to learn from (sign_ctc.models.distillation), set by build_model; not a submodule, so it
        # is neither trained nor saved with this module.
        self.distillation: Any = None
        self.net_compiled = False  # compiled in place by configure_model (once)

    # ---- forward -------------------------------------------------------------------------
    def configure_model(self) -> None:
        """``compile_net``: compiled in place (``nn.Module.compile``), so the state-dict keys, and with
        them the checkpoints, are those of the plain net. Static shapes: each padded length compiles
        once (``data.pad_to_multiple`` keeps them few); dynamo's cache is raised to hold them."""
        if self.compile_options is None or self.net_compiled:  # Lightning calls this hook for every fit and test
            return
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        self.net.compile(**{**self.compile_options, "dynamic": False})
        self.net_compiled = True

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Loaders carry raw landmarks; the features are derived here, on the training device."""
        return batch.with_features()

    def forward(self, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                signers: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw features -> (log-probs [B, T', C] in float32, output lengths). ``signers``: each
        sentence's signer, for signer-level normalization."""
        x = self.normalized(features, presence, lengths, signers)
        logits, out_lengths = self.net(x, presence, lengths)
        return logits.float().log_softmax(-1), out_lengths

    def normalized(self, features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                   signers: Sequence[str] | None = None) -> torch.Tensor:
        """The net's input: only the leading feature blocks it reads are normalized (a net without the
        temporal block skips three quarters of the work)."""
        return self.normalizer(features[..., : self.net.input_dim], presence, lengths, signers=signers)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # ---- loss ----------------------------------------------------------------------------
    def _report(self, where: str, batch: Batch, bad: torch.Tensor, **detail: Any) -> None:
        ids = [batch.ids[i] for i in torch.nonzero(bad).flatten().tolist()]
        self.nonfinite_event = NonFiniteEvent(where, ids, int(self.global_step), detail)

    def ctc_loss(self, log_probs: torch.Tensor, out_lengths: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample CTC loss (fp32, divided by target length) and the feasibility mask."""
        targets, target_lengths = batch.targets, batch.target_lengths
        feasible = out_lengths.to(target_lengths.device) >= ctc_required_lengths(targets, target_lengths)
        with torch.autocast(device_type=log_probs.device.type, enabled=False):
            losses = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths,
                                blank=self.vocab.blank_id, reduction="none", zero_infinity=self.zero_infinity)
        return losses / target_lengths.clamp_min(1).to(losses.dtype), feasible, losses

    def feasible(self, batch: Batch) -> torch.Tensor:
        """[B] flags, decided from lengths alone (before any forward): can CTC align each sample?

        The net's exact output lengths must cover the target plus a blank between adjacent repeats.
        """
        out_lengths = torch.as_tensor(self.net.output_lengths(batch.lengths))
        return out_lengths.to(batch.target_lengths.device) >= ctc_required_lengths(batch.targets,
                                                                                     batch.target_lengths)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        """Drop CTC-infeasible samples, check the inputs, forward, per-sample CTC, mean.

        An infeasible sample is removed before the forward pass, not masked after it: masking its
        Inf loss out of the mean still sends NaN (0 * Inf) into every gradient, and the NaN guard then
        discards the whole batch; its padded frames would also shift BatchNorm's batch statistics.
        """
        self.nonfinite_event = None
        feasible = self.feasible(batch)
        if not bool(feasible.all()):
            self.infeasible_ids += [batch.ids[i] for i in torch.nonzero(~feasible).flatten().tolist()]
            if not bool(feasible.any()):
                return None
            batch = batch.select(feasible)
        feats = batch.features
        bad = nonfinite_samples(feats)
        if bad.any():
            self._report("input", batch, bad)
            return None
        aux_log_probs = None
        if self.aux_ctc_weight:
            x = self.normalized(feats, batch.presence, batch.lengths, batch.signers)
            logits, out_lengths, aux = self.net(x, batch.presence, batch.lengths, return_aux=True)
            log_probs, aux_log_probs = logits.float().log_softmax(-1), aux.float().log_softmax(-1)
        else:
            log_probs, out_lengths = self(feats, batch.presence, batch.lengths, batch.signers)
        bad = nonfinite_samples(log_probs)
        if aux_log_probs is not None:
            bad |= nonfinite_samples(aux_log_probs)
        if bad.any():
            self._report("forward", batch, bad)
            return None
        per_sample, feasible, _ = self.ctc_loss(log_probs, out_lengths, batch)
        if aux_log_probs is not None:
            aux_per_sample, _, _ = self.ctc_loss(aux_log_probs, out_lengths, batch)
            self.log("train/aux_loss", aux_per_sample.mean(), batch_size=len(batch.ids))
            per_sample = per_sample + self.aux_ctc_weight * aux_per_sample
        # All feasible by construction (output_lengths is exact). A net whose output_lengths
        # disagreed with its forward would show up here: reported as a loss event, never trained on.
        bad = ~feasible | ~torch.isfinite(per_sample)
        if bad.any():
            self._report("loss", batch, bad, infeasible=int((~feasible).sum()))
            return None
        loss = per_sample.mean()
        if self.entropy_weight:
            entropy = posterior_entropy(log_probs, out_lengths)
            self.log("train/entropy", entropy, batch_size=len(batch.ids))
            loss = loss - self.entropy_weight * entropy
        if self.distillation is not None:
            kd = self.distillation.loss(log_probs, out_lengths, batch)
            if not bool(torch.isfinite(kd)):
                self._report("loss", batch, torch.ones(len(batch.ids), dtype=torch.bool), distillation=float(kd))
                return None
            self.log("train/ctc_loss", loss, batch_size=len(batch.ids))
            self.log("train/kd_loss", kd, batch_size=len(batch.ids))
            loss = loss + kd
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.ids))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/infeasible", float(len(self.infeasible_ids)), sync_dist=True)
        if self.infeasible_ids:
            shown = ", ".join(self.infeasible_ids[:10])
            more = f" (+{len(self.infeasible_ids) - 10} more)" if len(self.infeasible_ids) > 10 else ""
            self.print(f"epoch {self.current_epoch}: {len(self.infeasible_ids)} sample(s) too short for "
                       f"their glosses at stride {self.net.total_stride}, left out of the loss: {shown}{more}")
        self.infeasible_ids = []

    # ---- evaluation ----------------------------------------------------------------------
    def _eval_step(self, batch: Batch, stage: str, decoder: Any) -> None:
        log_probs, out_lengths = self(batch.features, batch.presence, batch.lengths, batch.signers)
        per_sample, feasible, _ = self.ctc_loss(log_probs, out_lengths, batch)
        ok = feasible & torch.isfinite(per_sample)
        if ok.any():
            self.log(f"{stage}/loss", per_sample[ok].mean(), batch_size=int(ok.sum()), sync_dist=True)
        hyps = decoder.decode(log_probs, out_lengths) if decoder else greedy_decode(log_probs, out_lengths, self.vocab.blank_id)
        for sid, target, hyp in zip(batch.ids, batch.target_lists(), hyps, strict=True):
            self._eval_outputs.append((sid, self.vocab.decode(target), self.vocab.decode(hyp)))

    def _gathered_outputs(self) -> list[tuple[str, list[str], list[str]]]:
        outputs = self._eval_outputs
        self._eval_outputs = []
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, outputs)
            outputs = [o for part in gathered for o in part]
        unique = {sid: (sid, ref, hyp) for sid, ref, hyp in outputs}  # DDP pads with repeats
        return [unique[k] for k in sorted(unique)]

    def _eval_epoch_end(self, stage: str) -> WERResult | None:
        outputs = self._gathered_outputs()
        if not outputs:
            return None
        result = wer([o[1] for o in outputs], [o[2] for o in outputs])
        for name, value in result.rates().items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "wer")
        self.last_result = result
        self.predictions = [
            {"id": sid, "reference": " ".join(ref), "hypothesis": " ".join(hyp), "errors": s.errors}
            for (sid, ref, hyp), s in zip(outputs, result.sentences)
        ]
        return result

    def on_validation_epoch_start(self) -> None:
        self._eval_outputs = []

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", None)

    def on_validation_epoch_end(self) -> None:
        result = self._eval_epoch_end("val")
        if result is not None and not self.trainer.sanity_checking:
            self.best_wer = min(self.best_wer, result.wer)
            self.log("val/wer_best", self.best_wer)

    def on_test_epoch_start(self) -> None:
        self._eval_outputs = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_decoder)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ---- optimization --------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        if self.scheduler_interval == "step":
            scheduler = self.scheduler_factory(optimizer=optimizer,
                                               total_steps=int(self.trainer.estimated_stepping_batches))
        else:
            scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by norm with the norm the NaN guard measured this step: one pass over 7M gradients, not two."""
        norm, self.grad_norm = self.grad_norm, None
        if norm is None or not gradient_clip_val or gradient_clip_algorithm not in (None, "norm"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)

    # ---- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sign_ctc"] = {
            "vocab": list(self.vocab.tokens),
            "layout_version": LAYOUT_VERSION,
            "feature_dim": FEATURE_DIM,
            "normalization": self.normalizer.describe(),
            "best_wer": self.best_wer,
            "recipe": self.recipe,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("sign_ctc", {})
        if meta:
            check_layout(meta, "the checkpoint")
        self.best_wer = float(meta.get("best_wer", self.best_wer))
        self.recipe = meta.get("recipe", self.recipe)
