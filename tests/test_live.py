"""sign-ctc-live's parts that need no camera: pacing and drops, clear errors, the refusal of a model
that cannot stream (the README command itself runs in tests/test_front_door.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sign_ctc.cli.live import Stats, frames_paced, run
from tests.helpers import DATA, SMALL_CORPUS, compose_cfg


class FakeCapture:
    """cv2.VideoCapture's read() over n small BGR frames."""

    def __init__(self, n: int):
        self.n, self.i = n, 0

    def read(self):
        if self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((4, 4, 3), self.i, np.uint8)


def test_a_slow_tracker_drops_frames_in_order_and_counts_them():
    """A file paced at 100 fps read by a consumer that takes 35 ms a frame: frames it could not take in
    time come out as dropped, every index once and in order, and the pace is the file's."""
    stats = Stats()
    start = time.perf_counter()
    seen = []
    for frame in frames_paced(FakeCapture(40), 100.0, False, stats, threading.Event()):
        seen.append((frame.index, frame.rgb is not None))
        if frame.rgb is not None:
            time.sleep(0.035)
    wall = time.perf_counter() - start
    assert [i for i, _ in seen] == list(range(40))
    dropped = sum(not kept for _, kept in seen)
    assert dropped == stats.dropped and 15 <= dropped <= 35
    assert wall >= 0.39  # 40 frames at 100 fps


def test_a_backlog_absorbs_slow_frames_that_the_average_pace_makes_up():
    """A tracker that takes 5 ms a frame with every fourth frame at 60 ms, on a 40 fps file (25 ms a
    frame; 19 ms on average): with only the newest frame kept, each slow frame lets two frames arrive and
    drops the older; with a backlog of 3 frames the average pace makes them up and nothing is dropped."""
    def consume(backlog: int) -> tuple[Stats, list[int]]:
        stats, order, tracked = Stats(), [], 0
        for frame in frames_paced(FakeCapture(40), 40.0, False, stats, threading.Event(), backlog):
            order.append(frame.index)
            if frame.rgb is not None:
                tracked += 1
                time.sleep(0.060 if tracked % 4 == 0 else 0.005)
        return stats, order

    newest, order_newest = consume(1)
    kept, order_kept = consume(3)
    assert order_newest == order_kept == list(range(40))
    assert newest.dropped >= 3 and kept.dropped == 0


def test_a_fast_tracker_drops_nothing():
    stats = Stats()
    frames = list(frames_paced(FakeCapture(30), 200.0, False, stats, threading.Event()))
    assert [f.index for f in frames] == list(range(30)) and stats.dropped == 0
    assert all(f.rgb is not None for f in frames)


def _cfg(tmp_path: Path, cache_dir: Path, *overrides: str):
    return compose_cfg("live", list(overrides), tmp_path / "run", cache_dir)


def test_bad_sources_and_models_get_one_clear_message(tmp_path, cache_dir, small_corpus, capsys):
    from tests.test_export import write_tiny_checkpoint

    missing = _cfg(tmp_path, cache_dir, f"source={tmp_path / 'nope.mp4'}", f"ckpt_path={tmp_path / 'x.ckpt'}")
    assert run(missing) == 2
    assert "source not found" in capsys.readouterr().err
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS], tmp_path / "teacher", cache_dir)
    teacher = write_tiny_checkpoint(cfg, tmp_path / "teacher" / "best.ckpt")
    assert run(_cfg(tmp_path, cache_dir, f"source={DATA / 'signer_58f.mp4'}", f"ckpt_path={teacher}")) == 2
    err = capsys.readouterr().err
    assert "this model cannot stream: I3DTeacher has no streaming step" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "live.json").exists()  # refused before any work


def test_live_decodes_with_beam_search_and_a_gloss_lm(tmp_path, cache_dir, small_corpus, capsys):
    """``decoding=beam decoding.lm_path=...``: the live command searches with the LM and answers what
    sign-ctc-predict answers with the same decoding on the same video; a missing LM is one clear error."""
    import json

    from omegaconf import OmegaConf

    from sign_ctc.api import Recognizer
    from sign_ctc.decoding.lm import train_kneser_ney, write_arpa
    from sign_ctc.models.checkpoint import load_module
    from tests.test_export import write_tiny_checkpoint

    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "model.net.blank_bias=-1"],
                      tmp_path / "student", cache_dir)
    ckpt = write_tiny_checkpoint(cfg, tmp_path / "student" / "best.ckpt")
    glosses = load_module(ckpt).vocab.tokens[2:]
    lm = tmp_path / "gloss.arpa"
    write_arpa(train_kneser_ney([glosses[i : i + 3] for i in range(0, len(glosses), 2)], order=2), lm)
    video = DATA / "signer_58f.mp4"
    assert run(_cfg(tmp_path, cache_dir, f"source={video}", f"ckpt_path={ckpt}", "decoding=beam",
                    f"decoding.lm_path={tmp_path / 'none.arpa'}")) == 2
    err = capsys.readouterr().err
    assert "language model not found" in err and "Traceback" not in err
    live = _cfg(tmp_path, cache_dir, f"source={video}", f"ckpt_path={ckpt}", "decoding=beam", f"decoding.lm_path={lm}",
                "decoding.lm_weight=0.5", "decoding.word_bonus=1.0")
    assert run(live) == 0
    result = json.loads((tmp_path / "run" / "live.json").read_text())
    assert result["decoder"]["name"] == "beam" and result["decoder"]["lm_path"] == str(lm)
    decoding = OmegaConf.to_container(live.decoding)
    expected = Recognizer.from_checkpoint(ckpt, decoding).predict(video=video).glosses
    assert result["glosses"].split() == expected and expected
