"""Streamed beam search with pruning against the offline beam search, on every test sentence.

    python bench/bench_stream_beam.py --ckpt outputs/train/runs/<student run>/checkpoints/best.ckpt

Every test sentence of the checkpoint's corpus (the default synthetic corpus for the default student) goes
through the streaming recognizer in chunks of 4 frames (160 ms at 25 fps) with a beam decoder
(``sign_ctc/streaming/beam.py``: commit what every hypothesis agrees on every ``commit_every`` output
frames, the best hypothesis' frames older than ``lookback``), one segment per sentence; the offline answer
is :class:`sign_ctc.api.Recognizer` with the same decoder on the whole sentence. The gloss LM is a
trigram trained here on the corpus' train sentences (:mod:`sign_ctc.decoding.lm`). The settings of
``sign_ctc/conf/decoding/beam.yaml`` run through the recognizer itself; other look-backs (64 down to 4 output
frames) and no LM run :class:`BeamStream` on the same streamed log-probs. The test sentences are short (a
few seconds), so the same settings also run on **one endless segment**: all test sentences end to end
without a pause, where the look-back forces commits as on an endless stream. Per setting: identical
sentences, commits forced by the look-back, the most frames the search held, and the commit delay (from a
gloss's last frame to the push that committed it). A sentence that differs is listed with why, found by decoding again:

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

from common import REPO, apply_default_backend, machine, student_or_exit, write_result  # noqa: E402

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
    got, parts, held, forced, delays = [], [], 0, 0, []
    for a in range(0, len(lm), CHUNK):
        update = rec.push(lm.points[a : a + CHUNK], lm.presence[a : a + CHUNK])
        got += update.committed
        delays += [min(a + CHUNK, len(lm)) / lm.fps - g.end for g in update.committed]
        parts.append(update.log_probs)
        if rec.decoder is not None:
            held, forced = max(held, rec.decoder.frames_held), rec.decoder.forced
    end = rec.end()
    got += end.committed
    delays += [len(lm) / lm.fps - g.end for g in end.committed]
    parts.append(end.log_probs)
    return {"glosses": got, "log_probs": torch.cat(parts), "forced": forced, "held": held, "delays": delays}


def beam_stream(beam: Any, log_probs: torch.Tensor, commit_every: int | None, lookback: int,
                spf: float = 0.16) -> tuple[list[str], int, int, list[float]]:
    """BeamStream over output frames one a push (a 4-frame chunk at stride 4): glosses, forced commits,
    frames held, and each gloss's commit delay (seconds from its end to the push that committed it)."""
    from sign_ctc.streaming.beam import BeamStream

    s = BeamStream(beam, spf, commit_every=commit_every, lookback=lookback)
    held, got, delays = 0, [], []
    for t in range(log_probs.shape[0]):
        s.push(log_probs[t : t + 1])
        held = max(held, s.frames_held)
        new = s.take()
        got += new
        delays += [(t + 1) * spf - g.end for g in new]
    last = s.finish()
    delays += [log_probs.shape[0] * spf - g.end for g in last]
    return [g.gloss for g in got + last], s.forced, held, delays


def joined_sentences(sentences: list[tuple[str, Any, list[str]]]) -> Any:
    """All test sentences end to end without a pause: one segment as long as an endless stream without
    rests, where the look-back forces commits."""
    from sign_ctc.features.landmarks import Landmarks

    return Landmarks(points=np.concatenate([lm.points for _, lm, _ in sentences]),
                     presence=np.concatenate([lm.presence for _, lm, _ in sentences]), fps=25.0)


def seconds(values: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(values)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def why(beam: Any, vocab: Any, offline_lp: torch.Tensor, streamed_lp: torch.Tensor, offline: list[str]) -> str:
    def decode(lp: torch.Tensor) -> list[str]:
        return vocab.decode(beam.decode(lp[None], torch.tensor([lp.shape[0]]))[0])

    if decode(streamed_lp) != offline:
        return "streamed log-probs"
    unpruned, *_ = beam_stream(beam, streamed_lp, None, 1)
    return "forced commit" if unpruned == offline else "prune's score shift"


def shown_path(path: str) -> str:
    """A checkpoint path as results show it: from its ``outputs/`` folder on (no machine path)."""
    parts = Path(path).parts
    return str(Path(*parts[parts.index("outputs"):])) if "outputs" in parts else Path(path).name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="a streaming (student) checkpoint (default: the newest under outputs/train/runs)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test sentences (a smoke run)")
    args = parser.parse_args()
    args.ckpt = student_or_exit(args.ckpt, "bench_stream_beam")
    if args.ckpt is None:
        return
    info = machine([shown_path(a) if a.endswith(".ckpt") else a for a in sys.argv])  # no machine paths
    apply_default_backend()
    torch.set_num_threads(1)
    from omegaconf import OmegaConf

    from sign_ctc.decoding.decoders import BeamSearchDecoder
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.models.inference import forward_landmarks, without_idle
    from sign_ctc.scoring.wer import wer

    module = load_module(args.ckpt)
    vocab, stride = module.vocab, int(module.net.total_stride)
    datamodule, sentences = test_sentences(module)
    sentences = sentences[: args.limit] if args.limit else sentences
    conf = OmegaConf.to_container(OmegaConf.load(REPO / "sign_ctc" / "conf" / "decoding" / "beam.yaml"))
    conf = {k: conf[k] for k in ("beam_width", "lm_weight", "word_bonus", "commit_every", "lookback")}
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lm_path = train_lm(datamodule, Path(tmp))
        with_lm = BeamSearchDecoder(vocab.tokens, lm_path=str(lm_path), **conf)
        no_lm = BeamSearchDecoder(vocab.tokens, **{**conf, "lm_weight": 0.0})
        # (name, decoder, commit_every, lookback); the first runs through the recognizer itself, the others
        # run BeamStream on the recognizer's log-probs.
        settings = [("beam.yaml + LM, recognizer", with_lm, conf["commit_every"], conf["lookback"])]
        for lookback in sorted({conf["lookback"], 64, 16, 12, 8, 4}, reverse=True):
            every = conf["commit_every"] if lookback >= 16 else (4 if lookback >= 12 else 2)
            settings += [(f"LM, lookback {lookback}", with_lm, every, lookback),
                         (f"no LM, lookback {lookback}", no_lm, every, lookback)]

        def inputs(lm: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
            """Offline and streamed log-probs (nobody-in-view frames blank, as both paths decode them) and
            the recognizer's own streamed result with the configured decoder."""
            log_probs, lengths = forward_landmarks(module, lm)
            presence = torch.from_numpy(lm.presence)
            offline_lp = without_idle(log_probs, lengths, presence, stride, vocab.blank_id)[0, : int(lengths[0])]
            streamed = stream_sentence(module, with_lm, lm)
            streamed_lp = without_idle(streamed["log_probs"][None], lengths, presence, stride, vocab.blank_id)[0]
            return offline_lp, streamed_lp, streamed

        def compare(name: str, beam: Any, commit_every: int, lookback: int, offline_lp: torch.Tensor,
                    streamed_lp: torch.Tensor, streamed: dict[str, Any], spf: float) -> dict[str, Any]:
            offline = vocab.decode(beam.decode(offline_lp[None], torch.tensor([offline_lp.shape[0]]))[0])
            if name.endswith("recognizer"):
                got = [x.gloss for x in streamed["glosses"]]
                forced, held, delays = streamed["forced"], streamed["held"], streamed["delays"]
            else:
                got, forced, held, delays = beam_stream(beam, streamed_lp, commit_every, lookback, spf)
            return {"offline": offline, "streamed": got, "forced": forced, "held": held, "delays": delays}

        rows = {name: {"identical": 0, "forced_commits": 0, "max_frames_held": 0, "delays": [], "differ": []}
                for name, *_ in settings}
        times_ok, out_frames = 0, []
        for n, (sid, lm, _ref) in enumerate(sentences):
            offline_lp, streamed_lp, streamed = inputs(lm)
            out_frames.append(offline_lp.shape[0])
            g = streamed["glosses"]
            times_ok += all(0 <= x.start < x.end <= len(lm) / lm.fps + 1e-6 for x in g) and all(
                a.end <= b.start + 1e-9 for a, b in zip(g, g[1:]))
            for name, beam, commit_every, lookback in settings:
                c = compare(name, beam, commit_every, lookback, offline_lp, streamed_lp, streamed, stride / lm.fps)
                row = rows[name]
                row["forced_commits"] += c["forced"]
                row["max_frames_held"] = max(row["max_frames_held"], c["held"])
                row["delays"] += c["delays"]
                if c["streamed"] == c["offline"]:
                    row["identical"] += 1
                else:
                    row["differ"].append({"id": sid, "output_frames": offline_lp.shape[0],
                                          "forced_commits": c["forced"],
                                          "why": why(beam, vocab, offline_lp, streamed_lp, c["offline"]),
                                          "offline": " ".join(c["offline"]), "streamed": " ".join(c["streamed"])})
            if (n + 1) % 25 == 0:
                print(f"{n + 1}/{len(sentences)} sentences", flush=True)
        joined = joined_sentences(sentences)
        offline_lp, streamed_lp, streamed = inputs(joined)
        endless = []
        for name, beam, commit_every, lookback in settings:
            c = compare(name, beam, commit_every, lookback, offline_lp, streamed_lp, streamed, stride / joined.fps)
            endless.append({"setting": name, "identical": c["streamed"] == c["offline"],
                            "edit_distance": wer([c["offline"]], [c["streamed"]]).errors,
                            "offline_glosses": len(c["offline"]), "forced_commits": c["forced"],
                            "max_frames_held": c["held"], "commit_delay_s": seconds(c["delays"]),
                            "why": None if c["streamed"] == c["offline"] else
                            why(beam, vocab, offline_lp, streamed_lp, c["offline"])})
    total = len(sentences)
    result: dict[str, Any] = {
        "checkpoint": shown_path(str(args.ckpt)),
        "sentences": total, "chunk_frames": CHUNK, "stride": stride, "fps": 25.0,
        "output_frames_per_sentence": {"min": min(out_frames), "median": float(np.median(out_frames)),
                                       "max": max(out_frames)},
        "lm": "trigram (Kneser-Ney) on the corpus' train sentences", "decoding": conf,
        "times_increasing_and_inside": f"{times_ok}/{total}", "wall_s": round(time.perf_counter() - wall, 1),
        "sentences_one_segment_each": [
            {"setting": name, "commit_every": ce, "lookback": lb, "identical": rows[name]["identical"],
             "identical_percent": round(100.0 * rows[name]["identical"] / total, 2),
             "commit_delay_s": seconds(rows[name]["delays"]),
             **{k: v for k, v in rows[name].items() if k not in ("identical", "delays")}}
            for name, _, ce, lb in settings],
        "endless_segment": {"sentences": total, "output_frames": int(offline_lp.shape[0]), "settings": endless},
    }
    print(f"{total} test sentences, output frames per sentence {result['output_frames_per_sentence']}")
    for s in result["sentences_one_segment_each"]:
        print(f"{s['setting']:28s} commit_every {s['commit_every']:>2} lookback {s['lookback']:>2}: identical "
              f"{s['identical']}/{total} ({s['identical_percent']}%), forced commits {s['forced_commits']}, frames "
              f"held <= {s['max_frames_held']}, commit delay median {s['commit_delay_s']['median']} s "
              f"p95 {s['commit_delay_s']['p95']} s")
        for d in s["differ"]:
            print(f"    {d['id']}: {d['why']} ({d['forced_commits']} forced) offline [{d['offline']}] "
                  f"streamed [{d['streamed']}]")
    print(f"times increasing and inside the sentence: {result['times_increasing_and_inside']}")
    print(f"one endless segment: the {total} sentences end to end, {result['endless_segment']['output_frames']} "
          "output frames, no pause:")
    for e in endless:
        print(f"{e['setting']:28s} {'identical' if e['identical'] else 'differs: ' + str(e['why'])}, edit distance "
              f"{e['edit_distance']} of {e['offline_glosses']} glosses, forced commits {e['forced_commits']}, frames "
              f"held <= {e['max_frames_held']}, commit delay median {e['commit_delay_s']['median']} s "
              f"p95 {e['commit_delay_s']['p95']} s")
    if not args.limit:
        write_result("stream_beam", result, info)


if __name__ == "__main__":
    main()
