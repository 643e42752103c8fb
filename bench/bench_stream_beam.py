"""Streamed beam search with pruning against the offline beam search, on every test sentence.

    python bench/bench_stream_beam.py --ckpt outputs/train/runs/<student run>/checkpoints/best.ckpt

Every test sentence of the checkpoint's corpus (the default synthetic corpus for the default student) goes
through the streaming recognizer in chunks of 4 frames (160 ms at 25 fps) with a beam decoder
(``sign_ctc/streaming/beam.py``: commit what every hypothesis agrees on every ``commit_every`` output
frames, the best hypothesis' frames older than ``lookback``), one segment per sentence; the offline answer
is :class:`sign_ctc.api.Recognizer` with the same decoder on the whole sentence. The gloss LM is a
trigram trained here on the corpus' train sentences (:mod:`sign_ctc.decoding.lm`). The settings of
``sign_ctc/conf/decoding/beam.yaml`` run through the recognizer itself; tighter look-backs (forced commits
within a sentence, as an endless stream has them) and no LM run :class:`BeamStream` on the same streamed
log-probs. A sentence that differs is listed with why, found by decoding again:

- ``forced commit``: the stream without pruning equals offline; a commit of frames the hypotheses still
  disagreed on (older than ``lookback``) chose the path that lost in the end;
- ``streamed log-probs``: the offline decoder on the streamed log-probs (equal to the offline forward within
  1e-5) already answers differently: a near tie in the model's output, not the decoder;
- ``prune's score shift``: neither; pruning subtracts the best score from the beam (flashlight), whose
  rounding decided a near tie.

Results: bench/results/stream_beam.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, apply_default_backend, machine, write_result  # noqa: E402

DEFAULT_CKPT = REPO / "outputs" / "train" / "runs" / "2026-12-06_18-27-52-707429" / "checkpoints" / "best.ckpt"
CHUNK = 4  # input frames a push


def test_sentences(module: Any) -> tuple[Any, list[tuple[str, Any, list[str]]]]:
    """The checkpoint's data module and its test sentences: (id, landmarks, reference glosses)."""
    import hydra
    from omegaconf import OmegaConf

    from sign_ctc.features.landmarks import Landmarks

    datamodule = hydra.utils.instantiate(OmegaConf.create(module.recipe["data"]))
    datamodule.prepare_data()
    datamodule.vocab = module.vocab
    dataset = datamodule.dataset("test")
    out = []
    for i in range(len(dataset)):
        sample = dataset.raw(i)
        lm = Landmarks(points=np.asarray(sample.points, np.float32), presence=np.asarray(sample.presence, bool),
                       fps=25.0)
        out.append((dataset.sentences[i].id, lm, list(dataset.sentences[i].glosses)))
    return datamodule, out


def train_lm(datamodule: Any, folder: Path) -> Path:
    from sign_ctc.decoding.lm import train_kneser_ney, write_arpa

    path = folder / "gloss3.arpa"
    write_arpa(train_kneser_ney([s.glosses for s in datamodule.corpus.sentences("train")], order=3), path)
    return path


def stream_sentence(module: Any, beam: Any, lm: Any) -> dict[str, Any]:
    """The recognizer with ``beam`` over one sentence in chunks: glosses, times, raw log-probs, forced
    commits, the most frames its search held."""
    from sign_ctc.streaming.recognizer import StreamingRecognizer

    rec = StreamingRecognizer(module, fps=lm.fps, pause_frames=None, tentative=False, decoder=beam)
    got, parts, held, forced = [], [], 0, 0
    for a in range(0, len(lm), CHUNK):
        update = rec.push(lm.points[a : a + CHUNK], lm.presence[a : a + CHUNK])
        got += update.committed
        parts.append(update.log_probs)
        if rec.decoder is not None:
            held, forced = max(held, rec.decoder.frames_held), rec.decoder.forced
    end = rec.end()
    got += end.committed
    parts.append(end.log_probs)
    return {"glosses": got, "log_probs": torch.cat(parts), "forced": forced, "held": held}


def beam_stream(beam: Any, log_probs: torch.Tensor, commit_every: int | None, lookback: int) -> tuple[list[str], int, int]:
    """BeamStream over output frames one a push (a 4-frame chunk at stride 4): glosses, forced, frames held."""
    from sign_ctc.streaming.beam import BeamStream

    s = BeamStream(beam, 0.16, commit_every=commit_every, lookback=lookback)
    held = 0
    for t in range(log_probs.shape[0]):
        s.push(log_probs[t : t + 1])
        held = max(held, s.frames_held)
    return [g.gloss for g in s.finish()], s.forced, held


def endless_segment(module: Any, beam: Any, sentences: list[tuple[str, Any, list[str]]]) -> dict[str, Any]:
    """All test sentences joined without a pause: one segment, as an endless stream without rests, so the
    look-back forces commits. Streamed (the recognizer) against the offline decode of the whole."""
    from sign_ctc.features.landmarks import Landmarks
    from sign_ctc.models.inference import forward_landmarks, without_idle
    from sign_ctc.scoring.wer import wer

    joined = Landmarks(points=np.concatenate([lm.points for _, lm, _ in sentences]),
                       presence=np.concatenate([lm.presence for _, lm, _ in sentences]), fps=25.0)
    log_probs, lengths = forward_landmarks(module, joined)
    lp = without_idle(log_probs, lengths, torch.from_numpy(joined.presence), int(module.net.total_stride),
                      module.vocab.blank_id)
    offline = module.vocab.decode(beam.decode(lp, lengths)[0])
    streamed = stream_sentence(module, beam, joined)
    got = [g.gloss for g in streamed["glosses"]]
    return {"sentences": len(sentences), "output_frames": int(lengths[0]), "identical": got == offline,
            "offline_glosses": len(offline), "streamed_glosses": len(got),
            "edit_distance": wer([offline], [got]).errors, "forced_commits": streamed["forced"],
            "max_frames_held": streamed["held"]}


def why(beam: Any, vocab: Any, offline_lp: torch.Tensor, streamed_lp: torch.Tensor, offline: list[str]) -> str:
    def decode(lp: torch.Tensor) -> list[str]:
        return vocab.decode(beam.decode(lp[None], torch.tensor([lp.shape[0]]))[0])

    if decode(streamed_lp) != offline:
        return "streamed log-probs"
    unpruned, _, _ = beam_stream(beam, streamed_lp, None, 1)
    return "forced commit" if unpruned == offline else "prune's score shift"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="a streaming (student) checkpoint")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test sentences (a smoke run)")
    args = parser.parse_args()
    info = machine(sys.argv)
    apply_default_backend()
    torch.set_num_threads(1)
    from omegaconf import OmegaConf

    from sign_ctc.decoding.decoders import BeamSearchDecoder
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.models.inference import forward_landmarks, without_idle

    module = load_module(args.ckpt)
    vocab, stride = module.vocab, int(module.net.total_stride)
    datamodule, sentences = test_sentences(module)
    sentences = sentences[: args.limit] if args.limit else sentences
    conf = OmegaConf.to_container(OmegaConf.load(REPO / "sign_ctc" / "conf" / "decoding" / "beam.yaml"))
    conf = {k: conf[k] for k in ("beam_width", "lm_weight", "word_bonus", "commit_every", "lookback")}
    with tempfile.TemporaryDirectory() as tmp:
        lm_path = train_lm(datamodule, Path(tmp))
        with_lm = BeamSearchDecoder(vocab.tokens, lm_path=str(lm_path), **conf)
        no_lm = BeamSearchDecoder(vocab.tokens, **{**conf, "lm_weight": 0.0})
        # (name, decoder, commit_every, lookback); the first runs through the recognizer itself.
        settings = [("beam.yaml + LM (recognizer)", with_lm, conf["commit_every"], conf["lookback"])]
        for lookback in (conf["lookback"], 16, 8, 4):
            settings.append((f"LM, lookback {lookback}", with_lm, conf["commit_every"] if lookback > 8 else 2, lookback))
            settings.append((f"no LM, lookback {lookback}", no_lm, conf["commit_every"] if lookback > 8 else 2, lookback))
        rows = {name: {"identical": 0, "forced_commits": 0, "max_frames_held": 0, "differ": []} for name, *_ in settings}
        times_ok, out_frames, wall = 0, [], time.perf_counter()
        for n, (sid, lm, _ref) in enumerate(sentences):
            log_probs, lengths = forward_landmarks(module, lm)
            presence = torch.from_numpy(lm.presence)
            offline_lp = without_idle(log_probs, lengths, presence, stride, vocab.blank_id)[0, : int(lengths[0])]
            streamed = stream_sentence(module, with_lm, lm)
            streamed_lp = without_idle(streamed["log_probs"][None], lengths, presence, stride, vocab.blank_id)[0]
            out_frames.append(int(lengths[0]))
            g = streamed["glosses"]
            times_ok += all(0 <= x.start < x.end <= len(lm) / lm.fps + 1e-6 for x in g) and all(
                a.end <= b.start + 1e-9 for a, b in zip(g, g[1:]))
            for name, beam, commit_every, lookback in settings:
                offline = vocab.decode(beam.decode(offline_lp[None], lengths[:1])[0])
                if name.endswith("(recognizer)"):
                    got, forced, held = [x.gloss for x in g], streamed["forced"], streamed["held"]
                else:
                    got, forced, held = beam_stream(beam, streamed_lp, commit_every, lookback)
                row = rows[name]
                row["forced_commits"] += forced
                row["max_frames_held"] = max(row["max_frames_held"], held)
                if got == offline:
                    row["identical"] += 1
                else:
                    row["differ"].append({"id": sid, "output_frames": int(lengths[0]), "forced_commits": forced,
                                          "why": why(beam, vocab, offline_lp, streamed_lp, offline),
                                          "offline": " ".join(offline), "streamed": " ".join(got)})
            if (n + 1) % 25 == 0:
                print(f"{n + 1}/{len(sentences)} sentences", flush=True)
        endless = endless_segment(module, with_lm, sentences)
    total = len(sentences)
    result: dict[str, Any] = {
        "checkpoint": f"{args.ckpt.parent.parent.name}/{args.ckpt.parent.name}/{args.ckpt.name}",  # the run, no machine path
        "sentences": total, "chunk_frames": CHUNK, "stride": stride,
        "output_frames_per_sentence": {"min": min(out_frames), "median": float(np.median(out_frames)),
                                       "max": max(out_frames)},
        "lm": "trigram (Kneser-Ney) on the corpus' train sentences", "decoding": conf,
        "times_increasing_and_inside": f"{times_ok}/{total}", "wall_s": round(time.perf_counter() - wall, 1),
        "endless_segment": endless,
        "settings": [{"setting": name, "commit_every": ce, "lookback": lb, "identical": rows[name]["identical"],
                      "identical_percent": round(100.0 * rows[name]["identical"] / total, 2),
                      **{k: v for k, v in rows[name].items() if k != "identical"}}
                     for name, _, ce, lb in settings],
    }
    print(f"{total} test sentences, output frames per sentence {result['output_frames_per_sentence']}")
    for s in result["settings"]:
        print(f"{s['setting']:30s} commit_every {s['commit_every']!s:>4} lookback {s['lookback']:>3}: identical "
              f"{s['identical']}/{total} ({s['identical_percent']}%), forced commits {s['forced_commits']}, "
              f"frames held <= {s['max_frames_held']}")
        for d in s["differ"]:
            print(f"    {d['id']}: {d['why']} ({d['forced_commits']} forced) offline [{d['offline']}] "
                  f"streamed [{d['streamed']}]")
    print(f"times increasing and inside the sentence: {result['times_increasing_and_inside']}")
    e = endless
    print(f"endless segment ({e['output_frames']} output frames, {e['sentences']} sentences, no pause): streamed "
          f"{'==' if e['identical'] else '!='} offline, edit distance {e['edit_distance']} of {e['offline_glosses']} "
          f"glosses, {e['forced_commits']} forced commits, frames held <= {e['max_frames_held']}")
    if not args.limit:
        write_result("stream_beam", result, info)


if __name__ == "__main__":
    main()
