"""The diagnostic suite: six checks plus overfit, PASS/FAIL with figures."""

from __future__ import annotations

import pytest

from sign_ctc.cli.diagnose import diagnose, print_table
from tests.helpers import SMALL_CORPUS


def test_all_checks_pass_on_the_default_config(make_cfg, small_corpus, capsys):
    checks = diagnose(make_cfg("logger=none", *SMALL_CORPUS, config_name="diagnose"))
    print_table(checks)
    assert [c.name[0] for c in checks] == list("123456")
    assert all(c.passed for c in checks), [(c.name, c.figures) for c in checks]
    out = capsys.readouterr().out
    assert "after normalization" in out and "PASS" in out
    loss_check = checks[5].figures  # "loss a -> b after 10 iterations (same dropout masks)"
    first, last = (float(v) for v in loss_check.split(" after ")[0].replace("loss ", "").split(" -> "))
    assert last < 0.9 * first


def test_a_signer_level_config_is_diagnosed_with_its_signers_statistics(make_cfg, small_corpus, monkeypatch):
    """normalization.signer_level: every check normalizes the batch as training does, with each sentence's
    signer (whose statistics build_model fitted), and all pass."""
    from sign_ctc.models.normalization import Normalizer

    seen: list[tuple[bool, list[str] | None]] = []
    forward = Normalizer.forward

    def recording(self, *args, **kwargs):
        signers = kwargs.get("signers")
        seen.append((bool(signers) and all(s in self.signer_stats for s in signers), signers))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(Normalizer, "forward", recording)
    checks = diagnose(make_cfg("logger=none", "normalization.signer_level=true", *SMALL_CORPUS, config_name="diagnose"))
    assert [c.name[0] for c in checks] == list("123456")
    assert all(c.passed for c in checks), [(c.name, c.figures) for c in checks]
    assert len(seen) >= 5 and all(known for known, _ in seen), seen  # statistics of every named signer


def test_a_broken_setting_fails_with_figures(make_cfg, small_corpus):
    checks = diagnose(make_cfg("logger=none", "model.optimizer.lr=0.0", *SMALL_CORPUS, config_name="diagnose"))
    by_name = {c.name[0]: c for c in checks}
    assert by_name["5"].passed and not by_name["6"].passed  # no learning rate: loss cannot go down
    first, last = by_name["6"].figures.split(" after ")[0].replace("loss ", "").split(" -> ")
    assert first == last and "same dropout masks" in by_name["6"].figures  # exactly unchanged


def test_double_normalization_fails_the_first_check(make_cfg, small_corpus):
    checks = diagnose(make_cfg("+data.normalize=true", *SMALL_CORPUS, config_name="diagnose"))
    assert len(checks) == 1 and not checks[0].passed
    assert "two places" in checks[0].figures


@pytest.mark.slow
def test_overfit_flag_reaches_zero_wer(make_cfg, small_corpus):
    checks = diagnose(make_cfg("logger=none", "diagnose.overfit=true", *SMALL_CORPUS, config_name="diagnose"))
    assert checks[-1].name == "overfit to 0% WER" and checks[-1].passed, checks[-1].figures
