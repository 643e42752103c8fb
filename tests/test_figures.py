"""The pictures (sign_ctc.viz: figures, skeleton_video, posteriorgram, errors), headless: skeleton video frames, gloss tracks, posteriorgram, error plots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sign_ctc.features.layout import RAW_PARTS
from sign_ctc.features.pose_io import read_pose
from sign_ctc.viz.errors import error_statistics, write_error_plots
from sign_ctc.viz.figures import OP_COLORS, PART_COLORS, FigureStyle, edit_ops, sentence_view
from sign_ctc.viz.posteriorgram import posteriorgram_glosses, write_posteriorgram
from sign_ctc.viz.skeleton_video import (
    _framing,
    _Projector,
    _track_height,
    video_frames,
    video_size,
    write_skeleton_video,
    write_video,
)

VOCAB = ["<blank>", "<unk>", "A", "B", "C"]


def peaked_log_probs(peaks: list[tuple[int, int]], T: int) -> np.ndarray:
    """Blank everywhere except the given (frame, token) peaks."""
    lp = np.full((T, len(VOCAB)), math.log(0.02))
    lp[:, 0] = math.log(0.92)
    for t, c in peaks:
        lp[t] = math.log(0.02)
        lp[t, c] = math.log(0.92)
    return lp


@pytest.fixture(scope="module")
def landmarks(small_corpus):
    """A real sentence of the synthetic corpus (its hands do go undetected in places)."""
    sentence = small_corpus.sentences("test")[0]
    return read_pose(small_corpus.landmark_path("test", sentence))


@pytest.fixture
def view(landmarks):
    T = len(landmarks)
    Tp = math.ceil(T / 4)
    # hypothesis A C B: A correct, C inserted... against reference A B B: see edit_ops
    lp = peaked_log_probs([(1, 2), (Tp // 2, 4), (Tp - 2, 3)], Tp)
    return sentence_view("sent_1", landmarks.points, landmarks.presence, landmarks.fps, lp, 4, VOCAB,
                         hypothesis=["A", "C", "B"], reference=["A", "B"])


def test_edit_ops_colour_every_gloss_as_the_wer_counts_it() -> None:
    from sign_ctc.scoring.wer import wer

    ref, hyp = ["A", "B", "C", "D", "E"], ["Y", "A", "X", "C", "E"]
    ref_ops, hyp_ops, pairs = edit_ops(ref, hyp)
    assert ref_ops == ["correct", "substitution", "correct", "deletion", "correct"]
    assert hyp_ops == ["insertion", "correct", "substitution", "correct", "correct"]
    assert pairs == [("B", "X")]
    s = wer([ref], [hyp])
    assert (s.substitutions, s.deletions, s.insertions) == (1, 1, 1)
    assert edit_ops(["A"], []) == (["deletion"], [], [])
    assert edit_ops([], ["A"]) == ([], ["insertion"], [])
    stats = error_statistics([(ref, hyp), (["A", "B"], ["A", "B"]), (["B", "C"], ["X", "C"])])
    assert stats.substitutions.most_common() == [(("B", "X"), 2)]
    assert stats.occurrences["B"] == 3 and stats.substituted["B"] == 2 and stats.deleted["D"] == 1
    assert stats.inserted == {"Y": 1}
    # WER by reference length: 5 glosses -> 3 errors / 5; 2 glosses -> 0 + 1 errors / 4
    assert stats.by_length == {5: [1, 3, 5], 2: [2, 1, 4]}
    assert stats.gloss_rows()[0] == ("B", 3, 2, 0, pytest.approx(200 / 3))


def test_view_aligns_both_tracks_to_the_log_probs(view, landmarks) -> None:
    T = len(landmarks)
    Tp = math.ceil(T / 4)
    assert [(s.gloss, s.start) for s in view.hyp_alignment.spans] == [("A", 1), ("C", Tp // 2), ("B", Tp - 2)]
    assert view.hyp_ops == ["correct", "insertion", "correct"] and view.ref_ops == ["correct", "correct"]
    # the reference A B is forced onto the same peaks of A and B
    assert [(s.gloss, s.start, s.input_start) for s in view.ref_alignment.spans] == [("A", 1, 4), ("B", Tp - 2, 4 * (Tp - 2))]


def test_video_frames_size_count_skeleton_and_missing_hands(view, landmarks) -> None:
    style = FigureStyle(width=320, skeleton_height=240)
    frames = list(video_frames(view, style))
    W, H = video_size(style)
    assert len(frames) == len(landmarks) and all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert H == 240 + _track_height() and W % 2 == 0 and H % 2 == 0
    project = _Projector(_framing(view.points, view.presence), W, 240 - 30)
    right = np.array(PART_COLORS["right_hand"][::-1])
    grey_hand = np.array((110, 110, 110))
    seen_missing = seen_drawn = 0
    for t, frame in enumerate(frames):
        panel = frame[:240]
        has_right = bool(view.presence[t, 2])
        # right-hand pixels where the wrist is projected: drawn exactly when the hand was detected
        wx, wy = project(view.points[t, RAW_PARTS["right_hand"][0], :2])
        patch = panel[max(wy - 3, 0) : wy + 4, max(wx - 3, 0) : wx + 4].reshape(-1, 3)
        assert bool((np.abs(patch.astype(int) - right).sum(-1) < 40).any()) == has_right, t
        # the R icon (top right) is grey when the hand is missing, in the hand's colour when not
        icon = panel[10:26, W - 36 : W - 24].reshape(-1, 3).astype(int)
        if has_right:
            seen_drawn += 1
            assert (np.abs(icon - right).sum(-1) < 40).any()
        else:
            seen_missing += 1
            assert (np.abs(icon - grey_hand).sum(-1) < 20).any() and not (np.abs(icon - right).sum(-1) < 40).any()
        assert (panel > 60).sum() > 400  # a skeleton, not a blank image
    assert seen_missing and seen_drawn  # this sentence has both


def test_track_highlight_follows_the_alignment(view) -> None:
    """The REF/HYP box of a gloss is lit (full op colour) exactly on the input frames of its span."""
    style = FigureStyle(width=320, skeleton_height=240)
    frames = list(video_frames(view, style))
    T = len(frames)
    from sign_ctc.viz.skeleton_video import _GAP, _ROW_H, _frame_x

    for row, (spans, ops) in enumerate([(view.ref_alignment.spans, view.ref_ops),
                                         (view.hyp_alignment.spans, view.hyp_ops)]):
        y = 240 + _GAP + row * (_ROW_H + _GAP) + 4
        for span, op in zip(spans, ops):
            x = _frame_x(span.input_start, T, 320) + 3
            lit = np.array(OP_COLORS[op][::-1])
            on = [t for t in range(T) if np.abs(frames[t][y, x].astype(int) - lit).sum() < 10]
            assert on == list(range(span.input_start, span.input_end)), (row, span)


def test_video_files_mp4_and_gif_have_every_frame(view, tmp_path) -> None:
    import cv2
    from PIL import Image

    style = FigureStyle(width=320, skeleton_height=240)
    mp4 = write_skeleton_video(view, tmp_path / "v.mp4", style)
    cap = cv2.VideoCapture(str(mp4))
    assert mp4.suffix == ".mp4" and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == view.num_frames
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(view.fps)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == video_size(style)
    ok, first = cap.read()
    assert ok and first.max() > 100
    cap.release()
    gif = write_skeleton_video(view, tmp_path / "g.mp4", FigureStyle(width=320, skeleton_height=240, video_format="gif"))
    with Image.open(gif) as im:
        assert gif.suffix == ".gif" and im.n_frames == view.num_frames and im.size == video_size(style)
        assert im.info["duration"] == round(1000 / view.fps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.gif", "v.mp4"]  # no temp files left


def test_gif_when_no_mp4_encoder(monkeypatch, tmp_path) -> None:
    import cv2

    class NoEncoder:
        def __init__(self, *a, **k) -> None:
            pass

        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(cv2, "VideoWriter", NoEncoder)
    frames = (np.full((40, 60, 3), i * 20, np.uint8) for i in range(7))
    out = write_video(frames, tmp_path / "clip.mp4", fps=10.0)
    from PIL import Image

    with Image.open(out) as im:
        assert out.name == "clip.gif" and im.n_frames == 7
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


def test_posteriorgram_and_error_plots_are_written(view, tmp_path) -> None:
    from PIL import Image

    rows = posteriorgram_glosses(view)
    assert [VOCAB[r] for r in rows] == ["A", "B", "C"]
    png = write_posteriorgram(view, tmp_path / "p.png")
    with Image.open(png) as im:
        w, h = im.size
        assert w > 400 and h > 250 and len(set(im.convert("L").getdata())) > 20
    stats = error_statistics([(["A", "B", "C"], ["A", "X"]), (["A"], ["A", "Y"])])
    out = write_error_plots(stats, tmp_path / "figs", "test")
    assert {p.name for p in out.values()} == {"substitutions.png", "gloss_errors.png", "gloss_errors.csv",
                                              "wer_by_length.png"}
    csv = (tmp_path / "figs" / "gloss_errors.csv").read_text().splitlines()
    assert csv[0] == "gloss,occurrences,substituted,deleted,inserted,error_rate"
    assert set(csv[1:3]) == {"B,1,1,0,0,100.00", "C,1,0,1,0,100.00"}


def test_bad_inputs_are_refused_by_name(landmarks) -> None:
    lp = peaked_log_probs([(1, 2)], 3)
    with pytest.raises(ValueError, match="sample s9 .reference.: 3 output frames cannot hold 4 glosses"):
        sentence_view("s9", landmarks.points, landmarks.presence, 25.0, lp, 4, VOCAB, ["A"], ["A", "A", "B", "B"])
    with pytest.raises(ValueError, match="sample s9: frame rate 0"):
        sentence_view("s9", landmarks.points, landmarks.presence, 0, lp, 4, VOCAB, ["A"])
    with pytest.raises(ValueError, match="video_format must be mp4 or gif"):
        FigureStyle(video_format="avi")
