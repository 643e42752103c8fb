"""Tuning the beam decoder's LM weight and word bonus on dev (sign_ctc.decoding.tuning, eval.py)."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import hydra
import pytest
import torch

from sign_ctc.decoding.decoders import BeamSearchDecoder
from sign_ctc.checksum import sha256_of
from sign_ctc.decoding.tuning import DevSample, decode_samples, grid_points, read_tuned, tune_grid, tuned_path, write_tuned
from sign_ctc.run.decoding_setup import with_tuned_values
from sign_ctc.scoring.wer import wer
from tests.helpers import SMALL_CORPUS

VOCAB = ["<blank>", "<unk>", "A", "B", "C", "D", "E"]
LM_WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8]
BONUSES = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]


def _frames(*rows: dict[str, float]) -> torch.Tensor:
    """[T, C] log-probs from per-frame {token: prob}; the rest of each frame's mass is shared."""
    out = torch.empty(len(rows), len(VOCAB))
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(VOCAB) - len(row))
        out[t] = torch.tensor([row.get(tok, rest) for tok in VOCAB])
    return out.log()


def _a_b_then(last: dict[str, float]) -> torch.Tensor:
    """Clear A, clear B, then a frame with ``last``'s probabilities."""
    return _frames({"A": 0.9}, {"<blank>": 0.9}, {"B": 0.9}, {"<blank>": 0.9}, last, {"<blank>": 0.9})


def _point(tuning: dict, w: float, b: float) -> dict:
    (p,) = [p for p in tuning["grid"] if (p["lm_weight"], p["word_bonus"]) == (w, b)]
    return p


def test_grid_always_holds_plain_beam_and_ignores_weights_without_lm():
    assert grid_points([0.5], [1.0], with_lm=True) == [(0.0, 0.0), (0.5, 1.0)]
    assert grid_points([0.0, 0.5], [-1.0, 1.0], with_lm=False) == [(0.0, -1.0), (0.0, 0.0), (0.0, 1.0)]
    with pytest.raises(ValueError, match="tune_lm_weights"):
        grid_points([-0.1], [0.0], with_lm=True)


def test_grid_picks_the_lowest_dev_wer_and_never_loses_to_no_lm(abc_lm):
    # s1: acoustics slightly prefer D, the reference is C: the LM fixes it.
    # s2, s3: D is clear (0.6 vs C 0.05) and right: a heavy LM turns it into C.
    samples = [DevSample("s1", _a_b_then({"C": 0.44, "D": 0.46, "<blank>": 0.08}), ["A", "B", "C"]),
               DevSample("s2", _a_b_then({"D": 0.6, "C": 0.05, "<blank>": 0.05}), ["A", "B", "D"]),
               DevSample("s3", _a_b_then({"D": 0.6, "C": 0.05, "<blank>": 0.05}), ["A", "B", "D"])]
    factory = functools.partial(BeamSearchDecoder, beam_width=10, lm_path=abc_lm)
    tuning = tune_grid(factory, VOCAB, samples, LM_WEIGHTS, BONUSES, with_lm=True)

    assert len(tuning["grid"]) == 36 and (tuning["sentences"], tuning["num_ref"]) == (3, 9)
    # without the LM: s1's C -> D, 1 substitution of 9; with lm_weight 0.5 or more: s2's and s3's D -> C
    assert tuning["greedy_dev_wer"] == tuning["plain_beam_dev_wer"] == pytest.approx(100 / 9)
    assert tuning["plain_beam_equals_greedy"] is True
    for b in BONUSES:
        assert _point(tuning, 0.0, b)["wer"] == pytest.approx(100 / 9)
        assert _point(tuning, 0.5, b)["wer"] == _point(tuning, 0.8, b)["wer"] == pytest.approx(200 / 9)
        assert _point(tuning, 0.5, b)["sub"] == pytest.approx(200 / 9)
    # every weight in 0.1..0.3 gets all three right; the tie goes to the smallest weight, bonus 0
    assert (tuning["lm_weight"], tuning["word_bonus"], tuning["dev_wer"]) == (0.1, 0.0, 0.0)
    assert tuning["dev_wer"] == min(p["wer"] for p in tuning["grid"])
    assert tuning["dev_wer"] <= min(p["wer"] for p in tuning["grid"] if p["lm_weight"] == 0.0)
    # the chosen point, decoded afresh, gives the WER the grid recorded
    chosen = BeamSearchDecoder(VOCAB, beam_width=10, lm_path=abc_lm, lm_weight=0.1, word_bonus=0.0)
    hyps = decode_samples(chosen, samples, VOCAB)
    assert hyps == [["A", "B", "C"], ["A", "B", "D"], ["A", "B", "D"]]
    assert wer([s.reference for s in samples], hyps).wer == 0.0

    # an LM that only hurts: the choice stays at plain beam search (lm_weight 0, bonus 0)
    hurt = tune_grid(factory, VOCAB, samples[1:], LM_WEIGHTS, BONUSES, with_lm=True)
    assert (hurt["lm_weight"], hurt["word_bonus"], hurt["dev_wer"]) == (0.0, 0.0, 0.0)
    assert _point(hurt, 0.8, 0.0)["wer"] == pytest.approx(100 / 3)


def test_word_bonus_recovers_a_weak_gloss_without_lm():
    # E at 0.3 under a blank at 0.6: best path drops it (a deletion); a bonus >= ln 2 emits it
    samples = [DevSample("w1", _frames({"A": 0.9}, {"<blank>": 0.9}, {"E": 0.3, "<blank>": 0.6}, {"<blank>": 0.9}),
                         ["A", "E"]),
               DevSample("w2", _frames({"D": 0.9}, {"<blank>": 0.9}), ["D"])]
    tuning = tune_grid(functools.partial(BeamSearchDecoder, beam_width=10), VOCAB, samples, LM_WEIGHTS, BONUSES,
                       with_lm=False)
    assert [(p["lm_weight"], p["word_bonus"]) for p in tuning["grid"]] == [(0.0, b) for b in BONUSES]
    assert _point(tuning, 0.0, 0.0)["del"] == _point(tuning, 0.0, 0.5)["del"] == pytest.approx(100 / 3)
    assert _point(tuning, 0.0, 1.0)["wer"] == _point(tuning, 0.0, 2.0)["wer"] == 0.0
    assert (tuning["lm_weight"], tuning["word_bonus"], tuning["dev_wer"]) == (0.0, 1.0, 0.0)  # nearest 0 of the ties


def _tuning(lm_weight: float, word_bonus: float) -> dict:
    grid = [{"lm_weight": 0.0, "word_bonus": 0.0, "wer": 30.0, "sub": 10.0, "del": 15.0, "ins": 5.0, "errors": 6},
            {"lm_weight": lm_weight, "word_bonus": word_bonus, "wer": 25.0, "sub": 10.0, "del": 10.0, "ins": 5.0,
             "errors": 5}]
    return {"lm_weight": lm_weight, "word_bonus": word_bonus, "dev_wer": 25.0, "plain_beam_dev_wer": 30.0,
            "greedy_dev_wer": 30.0, "plain_beam_equals_greedy": True, "sentences": 4, "num_ref": 20, "grid": grid}


def test_tuned_file_round_trip_and_staleness(make_cfg, abc_lm, tmp_path, caplog):
    ckpt = tmp_path / "run" / "best.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights of run A")
    record = write_tuned(ckpt, _tuning(0.3, 1.0), abc_lm, beam_width=10)
    assert record["file"] == str(tmp_path / "run" / "best.decoding.json") == str(tuned_path(ckpt))
    on_disk = json.loads(tuned_path(ckpt).read_text())
    assert on_disk == {k: v for k, v in record.items() if k != "file"}
    assert on_disk["checkpoint"]["sha256"] == sha256_of(ckpt) and on_disk["checkpoint"]["size"] == 16
    assert (on_disk["lm_path"], on_disk["lm_sha256"], on_disk["beam_width"]) == (abc_lm, sha256_of(abc_lm), 10)
    assert read_tuned(ckpt) == on_disk

    # decoding=beam, nothing set: the tuned LM, weight and bonus
    cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", config_name="eval")
    decoding, used = with_tuned_values(cfg.decoding, ckpt)
    assert (decoding.lm_path, decoding.lm_weight, decoding.word_bonus) == (abc_lm, 0.3, 1.0)
    assert used["file"] == record["file"] and used["dev_wer"] == 25.0
    decoder = hydra.utils.instantiate(decoding)(vocab_tokens=VOCAB)
    assert (decoder.lm_path, decoder.lm_weight, decoder.word_bonus) == (abc_lm, 0.3, 1.0)
    # ... and with the same LM named on the command line
    cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", f"decoding.lm_path={abc_lm}", config_name="eval")
    assert with_tuned_values(cfg.decoding, ckpt)[0].lm_weight == 0.3
    # greedy decoding never reads it
    cfg = make_cfg(f"ckpt_path={ckpt}", config_name="eval")
    assert with_tuned_values(cfg.decoding, ckpt) == (cfg.decoding, None)

    # the command line's lm_weight / word_bonus win
    for override in ("decoding.lm_weight=0.7", "decoding.word_bonus=-0.5"):
        cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", override, config_name="eval")
        assert with_tuned_values(cfg.decoding, ckpt) == (cfg.decoding, None)

    # another LM on the command line: ignored, with a warning
    other_lm = tmp_path / "other.arpa"
    shutil.copy(abc_lm, other_lm)
    cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", f"decoding.lm_path={other_lm}", config_name="eval")
    with caplog.at_level(logging.WARNING, logger="sign_ctc.run.decoding_setup"):
        assert with_tuned_values(cfg.decoding, ckpt) == (cfg.decoding, None)
    assert f"tuned with lm_path={abc_lm}" in caplog.text

    # a different checkpoint (same size, other bytes) with this file beside it: ignored, with a warning
    stale = tmp_path / "retrained" / "best.ckpt"
    stale.parent.mkdir()
    stale.write_bytes(b"weights of run B")
    shutil.copy(tuned_path(ckpt), tuned_path(stale))
    caplog.clear()
    cfg = make_cfg(f"ckpt_path={stale}", "decoding=beam", config_name="eval")
    with caplog.at_level(logging.WARNING, logger="sign_ctc.decoding.tuning"):
        assert read_tuned(stale) is None
        assert with_tuned_values(cfg.decoding, stale) == (cfg.decoding, None)
    assert "tuned for another checkpoint" in caplog.text and str(ckpt.resolve()) in caplog.text

    # the checkpoint replaced in place (another size): stale too
    ckpt.write_bytes(b"weights of run A, retrained")
    assert read_tuned(ckpt) is None


def _tiny_checkpoint(make_cfg, tmp_path: Path) -> Path:
    """An untrained model's checkpoint, saved as train.py saves it (vocabulary, statistics, recipe
    with the corpus). No training: a training step takes >10 s on a loaded 2-core machine, and the
    tuning only needs log-probs. The blank bias of -1 makes it emit glosses (not only blanks), so
    the grid's WERs differ; a few epochs of training would still give blanks only (100% everywhere)."""
    from sign_ctc.run.build import build_datamodule, build_model

    torch.manual_seed(1234)
    cfg = make_cfg("logger=none", *SMALL_CORPUS, "model.net.blank_bias=-1", output_dir=tmp_path / "run")
    model = build_model(cfg, build_datamodule(cfg))
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(checkpoint, ckpt)
    return ckpt


def test_eval_tunes_on_dev_writes_beside_the_checkpoint_and_reuses(make_cfg, small_corpus, tmp_path, caplog):
    from sign_ctc.cli.lm import main as lm_main
    from sign_ctc.run.evaluate import evaluate

    ckpt = _tiny_checkpoint(make_cfg, tmp_path)
    arpa = tmp_path / "gloss.arpa"
    assert lm_main(["--corpus-csv", str(small_corpus.annotation_path("train")), "--order", "3",
                    "--out", str(arpa)]) == 0
    tuned_cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", f"decoding.lm_path={arpa}", "decoding.tune=true",
                         config_name="eval", output_dir=tmp_path / "tuned")
    summary = evaluate(tuned_cfg)

    path = ckpt.with_name("best.decoding.json")
    record = json.loads(path.read_text())
    assert record["checkpoint"]["sha256"] == sha256_of(ckpt) and record["lm_path"] == str(arpa)
    assert (record["split"], record["sentences"], record["beam_width"]) == ("dev", 12, 10)
    grid = {(w, b) for w in tuned_cfg.decoding.tune_lm_weights for b in tuned_cfg.decoding.tune_word_bonuses}
    assert {(p["lm_weight"], p["word_bonus"]) for p in record["grid"]} == grid | {(0.0, 0.0)}
    assert len({p["wer"] for p in record["grid"]}) > 1  # the grid points decode differently
    no_lm = [p["wer"] for p in record["grid"] if p["lm_weight"] == 0.0]
    assert record["dev_wer"] <= min(no_lm) and record["dev_wer"] == min(p["wer"] for p in record["grid"])
    assert record["plain_beam_dev_wer"] == pytest.approx(
        next(p["wer"] for p in record["grid"] if (p["lm_weight"], p["word_bonus"]) == (0.0, 0.0)))
    assert record["plain_beam_equals_greedy"] is True and record["plain_beam_dev_wer"] == record["greedy_dev_wer"]
    # the cached dev pass is the module's own: greedy on the cache = eval.py split=dev (greedy)
    greedy_dev = evaluate(make_cfg(f"ckpt_path={ckpt}", "split=dev", config_name="eval",
                                   output_dir=tmp_path / "greedy_dev"))
    assert greedy_dev["wer"] == pytest.approx(record["greedy_dev_wer"]) and greedy_dev["num_ref"] == record["num_ref"]
    # the test split was decoded with the chosen values, and the results file says so
    assert summary["split"] == "test" and summary["sentences"] == 12
    decoder = summary["decoder"]
    assert (decoder["lm_weight"], decoder["word_bonus"], decoder["lm_path"]) == (
        record["lm_weight"], record["word_bonus"], str(arpa))
    assert decoder["source"] == "tuned on dev (this run)"
    results = json.loads((tmp_path / "tuned" / "test_results.json").read_text())["test"]
    assert results["tuning"]["grid"] == record["grid"] and results["tuning"]["file"] == str(path)
    assert results["wer"] == pytest.approx(summary["wer"])

    # a later decoding=beam without tune: the tuned values, from the file beside the checkpoint
    reuse_cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", f"decoding.lm_path={arpa}", config_name="eval",
                         output_dir=tmp_path / "reused")
    reused = evaluate(reuse_cfg)
    assert reused["decoder"]["source"] == str(path)
    assert (reused["decoder"]["lm_weight"], reused["decoder"]["word_bonus"]) == (record["lm_weight"],
                                                                                  record["word_bonus"])
    assert reused["tuning"]["dev_wer"] == record["dev_wer"]
    assert reused["wer"] == pytest.approx(summary["wer"])  # same decoder, same test hypotheses
    assert (tmp_path / "reused" / "test_predictions.csv").read_text() == \
        (tmp_path / "tuned" / "test_predictions.csv").read_text()

    # predict reads the same file through the same function
    from sign_ctc.cli.predict import run as predict_run

    sentence = small_corpus.sentences("test")[0]
    pose = small_corpus.landmark_path("test", sentence)
    pred_cfg = make_cfg(f"ckpt_path={ckpt}", f"pose={pose}", "decoding=beam", config_name="predict",
                        output_dir=tmp_path / "pred")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sign_ctc.run.decoding_setup"):
        (prediction,) = predict_run(pred_cfg)
    assert f"values tuned on dev in {path}" in caplog.text
    lines = (tmp_path / "reused" / "test_predictions.csv").read_text().splitlines()
    (row,) = [ln for ln in lines[1:] if ln.split(",")[0] == sentence.id]
    assert prediction["glosses"] == row.split(",")[2]
