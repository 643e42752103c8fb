"""Greedy and beam-search CTC decoding, and the gloss n-gram LM they use."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sign_ctc.data.corpus import Sentence, write_phoenix2014
from sign_ctc.decoding.decoders import BeamSearchDecoder, greedy_decode
from sign_ctc.decoding.lm import BOS, EOS, UNK, format_arpa, read_arpa, train_kneser_ney, write_arpa
from sign_ctc.scoring.ctm import read_stm

REPO = Path(__file__).resolve().parent.parent
DEV_STM = Path(__file__).parent / "data" / "phoenix2014" / "phoenix2014-groundtruth-dev.stm"
VOCAB = ["<blank>", "<unk>", "A", "B", "C", "D", "E"]


def _frames(*rows: dict[str, float]) -> torch.Tensor:
    """[1, T, C] log-probs from per-frame {token: prob}; the rest of each frame's mass is shared."""
    out = torch.empty(len(rows), len(VOCAB))
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(VOCAB) - len(row))
        out[t] = torch.tensor([row.get(tok, rest) for tok in VOCAB])
    return out.log().unsqueeze(0)


def _random_batch(seed: int, peaked: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 60, 40, generator=g)
    if peaked:  # confident frames with long blank runs, like a trained CTC model
        ids = torch.randint(0, 40, (4, 60), generator=g)
        ids[torch.rand(4, 60, generator=g) < 0.6] = 0
        logits = logits + 12.0 * torch.nn.functional.one_hot(ids, 40)
    return logits.log_softmax(-1), torch.tensor([60, 47, 1, 0])


def test_greedy_collapses_repeats_and_drops_blanks():
    ids = torch.tensor([[2, 2, 0, 2, 3, 3, 0, 0, 4, 1]])
    lp = torch.nn.functional.one_hot(ids, 6).float().log_softmax(-1)
    assert greedy_decode(lp, torch.tensor([10])) == [[2, 2, 3, 4, 1]]
    assert greedy_decode(lp, torch.tensor([3])) == [[2]]


@pytest.mark.parametrize("peaked", [False, True])
@pytest.mark.parametrize("beam_width", [1, 8])
def test_beam_search_without_lm_is_the_best_path(peaked, beam_width):
    # beam 1 is greedy by construction; with no LM the best path is greedy at any width
    lp, lengths = _random_batch(seed=3 + peaked, peaked=peaked)
    dec = BeamSearchDecoder([f"G{i}" for i in range(40)], beam_width=beam_width, lm_path=None)
    got = dec.decode(lp, lengths)
    assert got == greedy_decode(lp, lengths)
    assert got[3] == [] and len(got[2]) <= 1 and len(got[0]) > 5


# A B then a frame where D is acoustically slightly more likely than C.
AMBIGUOUS = _frames({"A": 0.9}, {"<blank>": 0.9}, {"B": 0.9}, {"<blank>": 0.9},
                    {"C": 0.44, "D": 0.46, "<blank>": 0.08}, {"<blank>": 0.9})


def test_lm_resolves_acoustic_ambiguity_in_its_direction(abc_lm):
    n = torch.tensor([AMBIGUOUS.shape[1]])
    no_lm = BeamSearchDecoder(VOCAB, beam_width=5).decode(AMBIGUOUS, n)
    assert no_lm == greedy_decode(AMBIGUOUS, n) == [[2, 3, 5]]  # A B D
    with_lm = BeamSearchDecoder(VOCAB, beam_width=5, lm_path=abc_lm, lm_weight=0.5).decode(AMBIGUOUS, n)
    assert with_lm == [[2, 3, 4]]  # A B C: the LM has only seen C after "A B"


def test_lm_weight_zero_equals_no_lm(abc_lm):
    n = torch.tensor([AMBIGUOUS.shape[1]])
    assert BeamSearchDecoder(VOCAB, beam_width=5, lm_path=abc_lm, lm_weight=0.0).decode(AMBIGUOUS, n) == [[2, 3, 5]]
    lp, lengths = _random_batch(seed=5, peaked=True)
    vocab = VOCAB + [f"G{i}" for i in range(40 - len(VOCAB))]
    plain = BeamSearchDecoder(vocab, beam_width=6).decode(lp, lengths)
    assert BeamSearchDecoder(vocab, beam_width=6, lm_path=abc_lm, lm_weight=0.0).decode(lp, lengths) == plain


def test_word_bonus_trades_against_blank():
    # frame 3: E (0.4) against blank (0.55): emitting E costs ln(0.55/0.4) = 0.318 nats
    lp = _frames({"A": 0.9}, {"<blank>": 0.9}, {"E": 0.4, "<blank>": 0.55})
    n = torch.tensor([3])
    assert BeamSearchDecoder(VOCAB, beam_width=4, word_bonus=0.0).decode(lp, n) == [[2]]
    assert BeamSearchDecoder(VOCAB, beam_width=4, word_bonus=0.3).decode(lp, n) == [[2]]
    assert BeamSearchDecoder(VOCAB, beam_width=4, word_bonus=0.34).decode(lp, n) == [[2, 6]]


def test_beam_decoder_checks_shapes():
    dec = BeamSearchDecoder(VOCAB, beam_width=2)
    with pytest.raises(ValueError, match="classes"):
        dec.decode(torch.zeros(1, 3, 5), torch.tensor([3]))
    with pytest.raises(ValueError, match="beam_width"):
        BeamSearchDecoder(VOCAB, beam_width=0)
    with pytest.raises(FileNotFoundError):
        BeamSearchDecoder(VOCAB, lm_path="/nonexistent.arpa")


# ------------------------------------------------------------------ the gloss LM


def test_beam_search_without_flashlight_is_one_clear_error(monkeypatch, tmp_path):
    """Python 3.13 has no flashlight-text wheel (pyproject installs it on 3.11/3.12): decoding=beam says so, once,
    before a checkpoint is read; greedy decoding needs nothing. Here the import is blocked to be that Python."""
    from omegaconf import OmegaConf

    from sign_ctc.decoding.decoders import BeamSearchUnavailableError, require_decoding

    beam, greedy = (OmegaConf.load(REPO / "sign_ctc" / "conf" / "decoding" / f"{n}.yaml") for n in ("beam", "greedy"))
    require_decoding(beam)  # installed here
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder", None)
    with pytest.raises(BeamSearchUnavailableError, match=r"decoding=beam needs flashlight-text.*decoding=greedy"):
        BeamSearchDecoder(VOCAB)
    with pytest.raises(BeamSearchUnavailableError):
        require_decoding(beam)
    require_decoding(greedy)
    require_decoding(None)
    blocked = ("import sys; sys.modules['flashlight.lib.text.decoder'] = None; sys.argv = ['eval.py', *sys.argv[1:]]; "
               "from sign_ctc.cli.eval import main; main()")
    proc = subprocess.run([sys.executable, "-c", blocked, "decoding=beam", f"ckpt_path={tmp_path / 'none.ckpt'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("eval: error: decoding=beam needs flashlight-text"), proc.stderr


def test_kneser_ney_unigram_numbers():
    # counts A:2 B:1 </s>:3, total 6; too sparse for estimated discounts -> D = 0.5, 1.0, 1.5
    lm = train_kneser_ney([["A"], ["A"], ["B"]], order=1)
    p = {w: 10 ** lm.log10_prob([], w) for w in ("A", "B", EOS, UNK)}
    gamma = (0.5 + 1.0 + 1.5) / 6  # leftover mass, spread over |V| = 4 (A, B, </s>, <unk>)
    assert p["A"] == pytest.approx((2 - 1.0) / 6 + gamma / 4)
    assert p["B"] == pytest.approx((1 - 0.5) / 6 + gamma / 4)
    assert p[EOS] == pytest.approx((3 - 1.5) / 6 + gamma / 4)
    assert p[UNK] == pytest.approx(gamma / 4)
    assert 10 ** lm.log10_prob([], "ZZZ") == pytest.approx(p[UNK])  # unknown glosses score as <unk>


@pytest.fixture(scope="module")
def phoenix_lm():
    sentences = [r.tokens for r in read_stm(DEV_STM)]
    return train_kneser_ney(sentences, order=3), sentences


def test_kneser_ney_distributions_sum_to_one(phoenix_lm, tmp_path):
    lm, sentences = phoenix_lm
    write_arpa(lm, tmp_path / "g.arpa")
    back = read_arpa(tmp_path / "g.arpa")
    vocab = sorted(back.vocabulary - {BOS})
    assert len(vocab) == len({t for s in sentences for t in s}) + 2  # + </s>, <unk>
    for ctx in [(), (BOS,), (BOS, "__ON__"), ("REGEN", "REGEN"), ("NORD", "WIND"), ("NEVER-SEEN",)]:
        assert sum(10 ** back.log10_prob(ctx, w) for w in vocab) == pytest.approx(1.0, abs=1e-5)
    # the written ARPA keeps the model (7 significant digits)
    s = sentences[0]
    assert back.sentence_log10(s) == pytest.approx(lm.sentence_log10(s), abs=1e-4)
    seen = sum(lm.sentence_log10(x) for x in sentences) / sum(len(x) + 1 for x in sentences)
    assert 10 ** -seen < 20.0  # perplexity on its own training text is low


def test_arpa_loads_in_kenlm_with_the_same_scores(phoenix_lm, tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    lm, sentences = phoenix_lm
    path = tmp_path / "g.arpa"
    write_arpa(lm, path)
    assert format_arpa(lm).splitlines()[1:5] == ["\\data\\", f"ngram 1={len(lm.log10_probs[0])}",
                                                 f"ngram 2={len(lm.log10_probs[1])}",
                                                 f"ngram 3={len(lm.log10_probs[2])}"]
    tokens = ["<blank>", UNK] + sorted(lm.vocabulary - {BOS, EOS, UNK})
    kenlm = KenLM(str(path), Dictionary(tokens))
    for sent in sentences[:20] + [["NORD", "UNBEKANNT-GLOSS", "REGEN"]]:
        state, total = kenlm.start(False), 0.0
        for g in sent:
            state, s = kenlm.score(state, tokens.index(g) if g in tokens else 1)
            total += s
        total += kenlm.finish(state)[1]
        assert total == pytest.approx(lm.sentence_log10(sent), abs=1e-4)


def test_lm_cli_trains_from_corpus_csv(tmp_path):
    csv = tmp_path / "train.corpus.csv"
    write_phoenix2014(csv, [Sentence(f"s{i}", tuple(r.tokens), "Signer01") for i, r in enumerate(read_stm(DEV_STM))])
    out = tmp_path / "gloss.arpa"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "sign_ctc.cli.lm", "--corpus-csv", str(csv), "--order", "2",
                          "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "540 sentences" in res.stdout
    lm = read_arpa(out)
    assert lm.order == 2
    assert math.isclose(sum(10 ** lm.log10_prob(["NORD"], w) for w in lm.vocabulary - {BOS}), 1.0, abs_tol=1e-5)
